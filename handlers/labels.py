"""Label stage: claim check -> Rekognition DetectLabels on the S3 object -> labels on the record.

Rekognition reads the object from S3 itself; the image bytes never pass
through this function. Rekognition's DetectLabels quota is per account and
Region; each execution environment calls at most its share of it
(rekognitionTps / labels.maxConcurrency), so that a burst waits in the queue
instead of being throttled into the dead-letter queue.
"""
from __future__ import annotations

from decimal import Decimal
from time import monotonic, perf_counter, sleep
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


class Pace:
    """At most `rate` calls a second from this execution environment: each call waits for its turn."""

    def __init__(self) -> None:
        self._next = 0.0

    def wait(self, rate: float) -> None:
        if rate <= 0:
            return
        now = monotonic()
        if self._next > now:
            sleep(self._next - now)
        self._next = max(now, self._next) + 1 / rate


_pace = Pace()
# The largest image DetectLabels reads from S3: 15 MB (Rekognition Developer Guide, "Guidelines and quotas in Amazon
# Rekognition"), in the API's own megabytes (Image.Bytes' "5 MBs" is 5,242,880 bytes in its length constraint). A
# call with a larger one is paid for nothing: it fails with ImageTooLargeException.
DETECT_LABELS_S3_BYTES = 15 * 2**20


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
    if claim.size > DETECT_LABELS_S3_BYTES:
        _record(env, claim, current, {"status": StageStatus.UNAVAILABLE, "reason": (
            f"Rekognition reads images of at most {DETECT_LABELS_S3_BYTES / 2**20:g} MB from S3; this one is "
            f"{claim.size / 2**20:.1f} MB")})
        return
    _pace.wait(env.rekognition_calls_per_second)
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
