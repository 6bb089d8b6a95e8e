"""Label stage: claim check -> Rekognition DetectLabels on the S3 object -> labels on the record.

Rekognition reads the object from S3 itself; the image bytes never pass
through this function.
"""
from __future__ import annotations

from decimal import Decimal
from time import perf_counter
from typing import TYPE_CHECKING, Any

from handlers import aws, contracts, environment, records
from handlers.failures import PermanentFailure, classified
from handlers.names import LABEL_LIST, ClaimEvent, Function, Metric, StageStatus
from handlers.observability import count, duration, logger, run_batch
from handlers.stage import for_claim_check, pending

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return run_batch(event, context, record_handler)



def _label(claim: contracts.ClaimCheck) -> None:
    if claim.event != ClaimEvent.CREATED:
        return  # a deleted image has no labels to compute
    env = environment.load()
    current, waiting = pending(env.table_name, claim)
    if not waiting:
        return
    if claim.format not in env.label_formats:
        _record(env, claim, current, {"status": StageStatus.UNAVAILABLE,
                             "reason": f"Rekognition reads only {', '.join(env.label_formats).upper()}; this image is {claim.format}"})
        return
    started = perf_counter()
    try:
        with classified():  # throttling, 5xx, timeouts: retried through batchItemFailures
            response = aws.client("rekognition").detect_labels(
                Image={"S3Object": _s3_object(claim)}, MaxLabels=env.max_labels, MinConfidence=env.min_confidence)
    except PermanentFailure as failure:
        _record(env, claim, current, {"status": StageStatus.UNAVAILABLE, "reason": failure.reason})
        logger.info("labels unavailable", extra={"reason": failure.reason})
        return
    labels = [{"name": label["Name"], "confidence": Decimal(str(round(label["Confidence"], 2)))}
              for label in response.get("Labels", [])]
    source = "emulated" if env.labels_emulated else "rekognition"
    _record(env, claim, current, {"status": StageStatus.DONE, LABEL_LIST: labels, "source": source})
    duration(Metric.LABEL_DURATION, (perf_counter() - started) * 1000)
    count(Metric.PROCESSED)
    logger.info("labels stored", extra={"count": len(labels), "source": source})


def _s3_object(claim: contracts.ClaimCheck) -> dict[str, str]:
    """The claim's exact object version in Rekognition's S3Object terms (it takes no If-Match: an unversioned
    object is read as it is now)."""
    version = claim.object_version()
    return {"Bucket": version["Bucket"], "Name": version["Key"],
            **({"Version": version["VersionId"]} if "VersionId" in version else {})}


def _record(env: environment.Environment, claim: contracts.ClaimCheck, current: records.ImageRecord | None,
            result: dict[str, Any]) -> None:
    records.record_stage(env.table_name, claim.image_id, claim.sequencer, Function.LABELS, result, known=current)


# Defined last: it wraps the work above.
record_handler = for_claim_check(_label)
