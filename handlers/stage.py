"""What every stage does with one SQS record: read the claim check, find whether the image still waits for its
work, then hand it to the stage."""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from handlers import contracts, records
from handlers.names import Metric
from handlers.observability import count, logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord


def for_claim_check(work: Callable[[contracts.ClaimCheck], None]) -> Callable[[SQSRecord], None]:
    """The record handler of a stage whose work is `work`."""
    return partial(handle, work=work)


def handle(record: SQSRecord, work: Callable[[Any], None],
           parse: Callable[[str], Any] = contracts.ClaimCheck.from_json) -> None:
    """Parse the message (a claim check, or what `parse` reads: a gate's decision; a malformed one is logged, counted
    and dropped: no retry can fix it, and the InvalidClaimChecks alarm tells a person) and run `work` with the image
    id in every log line."""
    try:
        message = parse(record.body)
    except contracts.InvalidClaimCheck as exc:
        logger.error("not a message this stage understands; dropped", extra={"error": str(exc)})
        count(Metric.INVALID_CLAIM_CHECKS)
        return
    logger.append_keys(image_id=message.image_id, key=message.key)
    try:
        work(message)
    finally:
        logger.remove_keys(["image_id", "key"])


def pending(table_name: str, claim: contracts.ClaimCheck, stage: str) -> tuple[records.ImageRecord | None, bool]:
    """(the record as it is now, whether it still waits for `stage`'s work on this claim check: not stale, not
    settled, about the very object the record names, and passed by its gate if it has one)."""
    current = records.get(table_name, claim.image_id)
    if current is None or not current.awaits(claim.sequencer):
        logger.info("claim check is stale or already settled; nothing to do")
        count(Metric.SKIPPED_CLAIM_CHECKS)
        return current, False
    if not current.names(claim.version_id, claim.etag, claim.format, claim.size):
        refuse(claim, f"the record names version {current.version_id} ({current.format}, ETag {current.etag}, "
                      f"{current.size} bytes)")
        return current, False
    if not current.admits(stage):
        refuse(claim, f"the image has not passed its gate ({current.gate}) yet")
        return current, False
    return current, True


def refuse(claim: contracts.ClaimCheck, why: str) -> None:
    """A claim check the record contradicts: the intake never published it (a forgery, or a message edited on its
    way back from a dead-letter queue). Nothing is done; it is logged and counted where an alarm watches."""
    logger.error("claim check refused: the record contradicts it", extra={
        "reason": why, "claimed": {"event": claim.event, "version_id": claim.version_id, "etag": claim.etag,
                                   "format": claim.format, "sequencer": claim.sequencer}})
    count(Metric.INVALID_CLAIM_CHECKS)
