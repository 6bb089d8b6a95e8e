"""Label stage: claim check -> Rekognition DetectLabels on the S3 object -> labels on the record.

Rekognition reads the object from S3 itself; the image bytes never pass
through this function. Rekognition's DetectLabels quota is per account and
Region; each execution environment calls at most its share of it
(rekognitionTps / labels.maxConcurrency), so that a burst waits in the queue
instead of being throttled into the dead-letter queue.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from time import perf_counter
from typing import TYPE_CHECKING, Any

from handlers import aws, contracts, environment, focal, records
from handlers.failures import PermanentFailure, classified
from handlers.names import FOCAL_POINT, LABEL_LIST, ClaimAttribute, ClaimEvent, Function, Metric, StageStatus
from handlers.observability import count, duration, logger, run_batch
from handlers.settings import StageSettings, between, setting, shared
from handlers.stage import for_claim_check, pending
from handlers.stages import Capacity, Configured, Grant, Limit, Stage, paced_warnings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

NAME = Function.LABELS
# The formats DetectLabels reads (Rekognition Developer Guide, "Working with images": JPEG and PNG).
REKOGNITION_FORMATS = ("jpeg", "png")
# A DetectLabels call takes about this long (ASSUMED: no AWS account here to measure it); the stage waits on the
# network, not the CPU, so more memory buys it nothing.
LABEL_SECONDS = 0.3


@dataclass(frozen=True)
class LabelSettings:
    allowed_formats: tuple[str, ...] = shared("allowedFormats")
    max_labels: int = setting(20, "maxLabels", "int", "Most labels Rekognition returns per image.", between(1, 1000),
                              env="MAX_LABELS")
    min_confidence: int = setting(70, "minConfidence", "int", "Lowest label confidence kept, in percent.",
                                  between(0, 100), env="MIN_CONFIDENCE")
    # Rekognition's DetectLabels quota is per account and Region and differs between Regions (AWS General Reference,
    # "Amazon Rekognition endpoints and quotas"; Service Quotas: "Transactions per second per account for the Amazon
    # Rekognition Image operation DetectLabels"). The default is the smallest figure we know a Region to have, not
    # read from that table here: set the stack's from the Service Quotas console.
    rekognition_tps: int = setting(5, "rekognitionTps", "int",
                                   "Your Region's DetectLabels quota, in calls a second (Service Quotas shows it); the "
                                   "label stage paces itself to it and capacity plans with it.", between(1, 10_000))
    # Each environment's share of the quota (completed by the program): all of them together stay within it.
    calls_per_second: float = setting(0.0, None, "float", "Calls a second one environment makes at most.",
                                      env="REKOGNITION_CALLS_PER_SECOND")

    @property
    def label_formats(self) -> tuple[str, ...]:
        """Formats sent to Rekognition: the allowed ones it can read."""
        return tuple(f for f in self.allowed_formats if f in REKOGNITION_FORMATS)


def _warnings(configured: Configured, stack: Any) -> list[str]:
    """Label environments the quota keeps waiting: the stage paces itself, so more only wait."""
    return paced_warnings(configured, "DetectLabels", "rekognitionTps", configured.settings.rekognition_tps, LABEL_SECONDS)


def _shown(result: Mapping[str, Any], emulated: bool) -> list[str]:
    """Its result in `python -m ops show`: the labels and their confidence, marked when the local cloud made them."""
    names = ", ".join(f"{label['name']} {float(label['confidence']):.0f}%" for label in result.get(LABEL_LIST, []))
    source = result.get("source")
    marked = " (emulated)" if source == "emulated" or (emulated and source != "rekognition") else ""
    return [f"  labels: {result.get('status')}{marked}" + (f": {names}" if names else "")
            + (f" ({result['reason']})" if result.get("reason") else "")]


STAGE = Stage(
    name=NAME, component="LabelStage", resource="label-stage", description="The label function.", order=30,
    settings=LabelSettings,
    # 2 environments: a DetectLabels call takes ~0.3 s, so two make the ~6 calls a second a default quota of 5 lets
    # through (the stage paces each environment to rekognitionTps / maxConcurrency); more would only wait.
    sizing=StageSettings(memory=256, timeout=30, batch_size=10, batching_window=1, max_concurrency=2),
    subscription=lambda s: {ClaimAttribute.FORMAT: list(s.label_formats), ClaimAttribute.EVENT: [ClaimEvent.CREATED]},
    deployed=lambda s: bool(s.label_formats),
    # Rekognition reads the S3 object with the caller's permissions; DetectLabels takes no resource-level ones.
    uses=("records", "rekognition_reads_uploads", Grant(("rekognition:DetectLabels",))),
    reported=(("labelled", Metric.PROCESSED), ("dropped claim checks", Metric.INVALID_CLAIM_CHECKS)),
    complete=lambda c, others: replace(c.settings, calls_per_second=c.settings.rekognition_tps / c.sizing.max_concurrency),
    warnings=_warnings,
    calls=("rekognition.DetectLabels",),
    shown=_shown,
    capacity=Capacity(
        seconds=lambda c, megapixels, fmt, speed: LABEL_SECONDS, applies=lambda c, fmt: fmt in c.settings.label_formats,
        upload_reads=1, priced=lambda c: {"rekognition_image": 1.0},
        limits=lambda c: [Limit(f"Rekognition's DetectLabels quota (rekognitionTps {c.settings.rekognition_tps:,})",
                                float(c.settings.rekognition_tps), "rekognition.DetectLabels")]),
)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return run_batch(event, context, record_handler)


_pace = aws.Pace()
# The largest image DetectLabels reads from S3: 15 MB (Rekognition Developer Guide, "Guidelines and quotas in Amazon
# Rekognition"), in the API's own megabytes (Image.Bytes' "5 MBs" is 5,242,880 bytes in its length constraint). A
# call with a larger one is paid for nothing: it fails with ImageTooLargeException.
DETECT_LABELS_S3_BYTES = 15 * 2**20


def _label(claim: contracts.ClaimCheck) -> None:
    if claim.event != ClaimEvent.CREATED:
        return  # a deleted image has no labels to compute
    env = environment.load()
    settings = env.settings(LabelSettings)
    current, waiting = pending(env.table_name, claim, NAME)
    if not waiting:
        return
    if claim.format not in settings.label_formats:
        _record(env, claim, current, {"status": StageStatus.UNAVAILABLE, "reason": (
            f"Rekognition reads only {', '.join(settings.label_formats).upper()}; this image is {claim.format}")})
        return
    if claim.size > DETECT_LABELS_S3_BYTES:
        _record(env, claim, current, {"status": StageStatus.UNAVAILABLE, "reason": (
            f"Rekognition reads images of at most {DETECT_LABELS_S3_BYTES / 2**20:g} MB from S3; this one is "
            f"{claim.size / 2**20:.1f} MB")})
        return
    _pace.wait(settings.calls_per_second)
    started = perf_counter()
    try:
        with classified():  # throttling, 5xx, timeouts: retried through batchItemFailures
            response = aws.client("rekognition").detect_labels(
                Image={"S3Object": _s3_object(claim)}, MaxLabels=settings.max_labels,
                MinConfidence=settings.min_confidence)
    except PermanentFailure as failure:
        _record(env, claim, current, {"status": StageStatus.UNAVAILABLE, "reason": failure.reason})
        logger.info("labels unavailable", extra={"reason": failure.reason})
        return
    labels = [{"name": label["Name"], "confidence": Decimal(str(round(label["Confidence"], 2)))}
              for label in response.get("Labels", [])]
    source = "emulated" if env.emulates("rekognition") else "rekognition"
    result: dict[str, Any] = {"status": StageStatus.DONE, LABEL_LIST: labels, "source": source}
    # The subject's point from the boxes: the record's, whatever the thumbnail stage found (its saliency is a guess).
    # An emulator's boxes are canned, not this image's: the thumbnail stage's saliency point stands there.
    point = None if env.emulates("rekognition") else focal.from_labels(response.get("Labels", []), settings.min_confidence)
    if point is not None:
        result[FOCAL_POINT] = point.as_record()
    _record(env, claim, current, result, {FOCAL_POINT: point.as_record()} if point else None)
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
            result: dict[str, Any], shared: dict[str, Any] | None = None) -> None:
    records.record_stage(env.table_name, claim.image_id, claim.sequencer, NAME, result, known=current, shared=shared)


# Defined last: it wraps the work above.
record_handler = for_claim_check(_label)
