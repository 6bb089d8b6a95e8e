"""A throwaway stage, declared exactly as a module of handlers/ declares one (tests/test_adding_a_stage.py adds it
with `handlers.stages.also`): each accepted JPEG or PNG's SHA-256, read from the very version its claim check names,
written onto the image record. Nothing else in the project names it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from handlers import aws, contracts, environment, records
from handlers.failures import classified
from handlers.names import ClaimAttribute, ClaimEvent, Metric, StageStatus
from handlers.observability import count, logger, run_batch
from handlers.settings import StageSettings, one_of, setting, shared
from handlers.stage import for_claim_check, pending
from handlers.stages import Capacity, Stage

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

NAME = "checksums"
DIGESTS = ("sha256", "sha512")


@dataclass(frozen=True)
class ChecksumSettings:
    allowed_formats: tuple[str, ...] = shared("allowedFormats")
    digest: str = setting("sha256", "checksumDigest", "str", "The digest the checksum stage writes.",
                          one_of(*DIGESTS), env="CHECKSUM_DIGEST")

    @property
    def formats(self) -> tuple[str, ...]:
        return tuple(f for f in self.allowed_formats if f in ("jpeg", "png"))


STAGE = Stage(
    name=NAME, component="ChecksumStage", resource="checksum-stage", description="The checksum function.", order=40,
    settings=ChecksumSettings,
    sizing=StageSettings(memory=256, timeout=30, batch_size=10, batching_window=1, max_concurrency=2),
    subscription=lambda s: {ClaimAttribute.FORMAT: list(s.formats), ClaimAttribute.EVENT: [ClaimEvent.CREATED]},
    uses=("records", "uploads"),
    calls=("s3.GetObject",),
    reported=(("checksummed", Metric.PROCESSED), ("dropped claim checks", Metric.INVALID_CLAIM_CHECKS)),
    capacity=Capacity(seconds=lambda c, megapixels, fmt, speed: 0.05 + megapixels * 0.002 * speed,
                      applies=lambda c, fmt: fmt in c.settings.formats, upload_reads=1, priced=lambda c: {"s3_get": 1.0}),
)


def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return run_batch(event, context, record_handler)


def _checksum(claim: contracts.ClaimCheck) -> None:
    if claim.event != ClaimEvent.CREATED:
        return
    env = environment.load()
    settings = env.settings(ChecksumSettings)
    current, waiting = pending(env.table_name, claim, NAME)
    if not waiting:
        return
    with classified():
        body = aws.client("s3").get_object(**claim.object_version())["Body"].read()
    digest = hashlib.new(settings.digest, body).hexdigest()
    records.record_stage(env.table_name, claim.image_id, claim.sequencer, NAME,
                         {"status": StageStatus.DONE, settings.digest: digest}, known=current)
    count(Metric.PROCESSED)
    logger.info("checksum stored", extra={"digest": settings.digest})


record_handler = for_claim_check(_checksum)
