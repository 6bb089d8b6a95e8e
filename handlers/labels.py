"""Label stage: claim check -> Rekognition DetectLabels on the S3 object -> labels on the record.

Rekognition reads the object from S3 itself; the image bytes never pass
through this function.
"""
from __future__ import annotations

from decimal import Decimal
from time import perf_counter
from typing import Any

from handlers import aws, contracts, environment, records
from handlers.failures import as_permanent
from handlers.observability import count, duration, logger, run_batch
from handlers.stage import for_claim_check, is_pending

STAGE = "labels"


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run_batch(event, context, record_handler)



def _label(claim: contracts.ClaimCheck) -> None:
    if claim.event != contracts.CREATED:
        return  # a deleted image has no labels to compute
    env = environment.load()
    current = records.get(env.table_name, claim.image_id)
    if not is_pending(current, claim):
        return
    if claim.format not in env.label_formats:
        _record(env, claim, current, {"status": "unavailable",
                             "reason": f"Rekognition reads only {', '.join(env.label_formats).upper()}; this image is {claim.format}"})
        return
    started = perf_counter()
    s3_object: dict[str, str] = {"Bucket": claim.bucket, "Name": claim.key}
    if claim.version_id:
        s3_object["Version"] = claim.version_id
    try:
        response = aws.client("rekognition").detect_labels(
            Image={"S3Object": s3_object}, MaxLabels=env.max_labels, MinConfidence=env.min_confidence)
    except Exception as exc:
        permanent = as_permanent(exc)
        if permanent is None:
            raise  # throttling, 5xx, timeouts: retried through batchItemFailures
        _record(env, claim, current, {"status": "unavailable", "reason": permanent.reason})
        logger.info("labels unavailable", extra={"reason": permanent.reason})
        return
    labels = [{"name": label["Name"], "confidence": Decimal(str(round(label["Confidence"], 2)))}
              for label in response.get("Labels", [])]
    source = "emulated" if env.labels_emulated else "rekognition"
    _record(env, claim, current, {"status": "done", "labels": labels, "source": source})
    duration("LabelDuration", (perf_counter() - started) * 1000)
    count("Processed")
    logger.info("labels stored", extra={"count": len(labels), "source": source})


def _record(env: environment.Environment, claim: contracts.ClaimCheck, current: dict[str, Any] | None,
            result: dict[str, Any]) -> None:
    records.record_stage(env.table_name, claim.image_id, claim.sequencer, STAGE, result, known=current)


# Defined last: it wraps the work above.
record_handler = for_claim_check(_label)
