"""Moderation gate: claim check -> Rekognition DetectModerationLabels -> the image goes on, or is quarantined.

A gate stage (handlers/stages.py, "gates"): with `moderation` on, every accepted image comes here before any other
stage sees it. Rekognition judges the very version the claim check names: a JPEG it can read from S3 as it is,
anything else (PNG, WebP, GIF's first frame, TIFF, HEIC, AVIF, and a JPEG over Rekognition's S3 limit or outside its
dimensions) as a JPEG rendition made here, inside the same decode limits and warm decode child as the thumbnail
stage, and sent as bytes; a transparent one as it shows over white and over black (OPAQUE_FORMATS, BACKGROUNDS).
The record says which was screened. Labels in the blocked top-level categories hold the image back: its record
becomes quarantined with the labels, its original is tagged (a lifecycle rule expires it after
rejectedRetentionDays), and nothing else runs until a person decides (`python -m ops review`: a decision on this
stage's queue, which it carries out, see _decide).
Otherwise the labels are recorded and the claim check is published again, marked as passed, for the other stages.
A reprocess request for a done image no gate saw (done before moderation was on) is screened the same way; if it
is held back then, its thumbnails are removed.
"""
from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from time import perf_counter
from typing import TYPE_CHECKING, Any

from handlers import aws, contracts, environment, imaging, originals, records
from handlers.failures import PermanentFailure, classified
from handlers.names import LABEL_LIST, ClaimEvent, Decision, Function, Metric, StageStatus, Status
from handlers.observability import count, duration, logger, run_batch
from handlers.settings import Accepts, StageSettings, between, setting, shared
from handlers.stage import handle, pending, refuse
from handlers.stages import Capacity, Configured, Grant, Limit, Stage, paced_warnings
from handlers.thumbnails import (
    MEMORY_HEADROOM,
    decode_original,
    engine_seconds,
    image_cpu_seconds,
    invocation_margin,
    memory_problems,
    peak_mb,
)

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

NAME = "moderation"
# Rekognition's moderation taxonomy, its top-level (L1) categories (Rekognition Developer Guide, "Using the image and
# video moderation APIs", Label Categories; model version 7). Each label it returns names its parent, and a top-level
# one the empty string (API reference, ModerationLabel).
TOP_LEVEL = ("Explicit", "Non-Explicit Nudity of Intimate parts and Kissing", "Swimwear or Underwear", "Violence",
             "Visually Disturbing", "Drugs & Tobacco", "Alcohol", "Rude Gestures", "Gambling", "Hate Symbols")
# What is held back unless the stack says otherwise: what no public gallery should show before a person looked.
# Swimwear, drugs and tobacco, alcohol, rude gestures and gambling are recorded and pass.
BLOCKED = ("Explicit", "Non-Explicit Nudity of Intimate parts and Kissing", "Violence", "Visually Disturbing",
           "Hate Symbols")
# What DetectModerationLabels reads (Rekognition Developer Guide, "Guidelines and quotas in Amazon Rekognition"):
# JPEG or PNG, up to 15 MB from S3 or 5 MB as bytes (the API's megabytes: Image.Bytes' length constraint is
# 5,242,880), 80 to 10,000 pixels a side.
S3_BYTES, IMAGE_BYTES = 15 * 2**20, 5 * 2**20
MIN_SIDE, MAX_SIDE = 80, 10_000
# The rendition of an image Rekognition cannot read as it is: a JPEG fitting this box, at this quality, smaller and
# coarser until it fits in IMAGE_BYTES (a photo of 2,048 px is ~1 MB at 85).
RENDITIONS = ((2048, 85), (2048, 60), (1024, 60))
# Formats whose pixels cannot be transparent: screened from S3 as they are. A PNG can be (Rekognition reads PNG, but
# its documentation does not say how it reads an alpha channel), and what a page shows of a transparent image is what
# it is drawn over: a transparent image is screened as it shows on each of BACKGROUNDS (content hidden in the alpha
# channel shows on one of them whatever colour its pixels are: drawn over white it is 255 - a * (255 - c), over
# black a * c, and no colour c hides a varying alpha from both). Every other allowed format is screened as a
# rendition anyway.
OPAQUE_FORMATS = ("jpeg",)  # each of them one Rekognition reads from S3 (JPEG and PNG)
BACKGROUNDS = (("white", (255, 255, 255)), ("black", (0, 0, 0)))
# A DetectModerationLabels call takes about this long (ASSUMED: no AWS account here to measure it).
CALL_SECONDS = 0.3


def _categories_ok(value: Any) -> bool:
    """At least one of the taxonomy's top-level categories, none twice (a gate that blocks nothing would publish
    everything it screens: turn `moderation` off instead)."""
    return isinstance(value, tuple) and 0 < len(set(value)) == len(value) and all(v in TOP_LEVEL for v in value)


@dataclass(frozen=True)
class ModerationSettings:
    allowed_formats: tuple[str, ...] = shared("allowedFormats")
    max_pixels: int = shared("maxPixels")
    enabled: bool = setting(False, "moderation", "bool",
                            "Screen every accepted image with Rekognition's DetectModerationLabels before any stage "
                            "publishes anything of it; what moderationBlock flags is quarantined until a person "
                            "decides (python -m ops review).")
    min_confidence: int = setting(50, "moderationMinConfidence", "int",
                                  "Lowest moderation label confidence kept, in percent (Rekognition's own default).",
                                  between(0, 100), env="MODERATION_MIN_CONFIDENCE")
    block: tuple[str, ...] = setting(
        BLOCKED, "moderationBlock", "list",
        "Rekognition's top-level moderation categories that quarantine an image; labels of the others are recorded "
        "and pass.", Accepts(_categories_ok, "a non-empty list without repeats of Rekognition's top-level categories: "
                             + ", ".join(TOP_LEVEL)), env="MODERATION_BLOCK")
    # DetectModerationLabels has a quota of its own, per account and Region (Service Quotas: "Transactions per
    # second per account for the Amazon Rekognition Image operation DetectModerationLabels"); the default is the
    # smallest we know, as rekognitionTps's is: set the stack's from the Service Quotas console.
    moderation_tps: int = setting(5, "moderationTps", "int",
                                  "Your Region's DetectModerationLabels quota, in calls a second; the moderation gate "
                                  "paces itself to it and capacity plans with it.", between(1, 10_000))
    # Completed by the program: each environment's share of the quota, and the thumbnail stage's decode limits.
    calls_per_second: float = setting(0.0, None, "float", "Calls a second one environment makes at most.",
                                      env="MODERATION_CALLS_PER_SECOND")
    max_frames: int = setting(100, None, "int", "The thumbnail stage's maxFrames.", env="MAX_FRAMES")
    max_jpeg_scans: int = setting(100, None, "int", "The thumbnail stage's maxJpegScans.", env="MAX_JPEG_SCANS")
    max_jpeg_segments: int = setting(1000, None, "int", "The thumbnail stage's maxJpegSegments.", env="MAX_JPEG_SEGMENTS")
    image_cpu_seconds: int = setting(10, None, "int", "CPU seconds one rendition may take.", env="IMAGE_CPU_SECONDS")


def _complete(configured: Configured, others: Any) -> ModerationSettings:
    """Its share of the quota, and the decode limits the thumbnail stage holds every image to."""
    shown = others[Function.THUMBNAILS].settings
    return replace(configured.settings, calls_per_second=configured.settings.moderation_tps / configured.sizing.max_concurrency,
                   max_frames=shown.max_frames, max_jpeg_scans=shown.max_jpeg_scans,
                   max_jpeg_segments=shown.max_jpeg_segments, image_cpu_seconds=image_cpu_seconds(configured.sizing))


def needs_rendition(fmt: str | None, size: int, width: Any, height: Any) -> bool:
    """Whether the original cannot be screened from S3 as it is: a format Rekognition does not read, or one that can
    be transparent, or over its bytes or outside its dimensions."""
    sides = [int(side) for side in (width, height) if side is not None]
    return (fmt not in OPAQUE_FORMATS or size > S3_BYTES or len(sides) < 2
            or not all(MIN_SIDE <= side <= MAX_SIDE for side in sides))


def _seconds(configured: Configured, megapixels: float, fmt: str, speed: float) -> float:
    """A call, and for a format not screened from S3 a rendition first (the engine at one size; a transparent image
    takes a second call, ASSUMED rare and left out)."""
    rendition = 0.0 if fmt in OPAQUE_FORMATS else engine_seconds(megapixels, fmt) * speed / min(1.0, configured.sizing.vcpus)
    return CALL_SECONDS + rendition


def _shown(verdict: Mapping[str, Any], emulated: bool) -> list[str]:
    """Its verdict in `python -m ops show`: what it screened, the labels found, and why it held an image back."""
    screened = verdict.get("screened") or {}
    what = ("the original" if screened.get("rendition") == "original" else
            f"a JPEG rendition {screened.get('width')}x{screened.get('height')}" if screened else "-")
    if screened.get("backgrounds"):
        what += " over " + " and over ".join(screened["backgrounds"])
    found = ", ".join(f"{label['name']} {float(label['confidence']):.1f}%" for label in verdict.get(LABEL_LIST, []))
    return [f"  {NAME}: {verdict.get('status')}" + (" (emulated)" if verdict.get("source") == "emulated" else "")
            + f", screened {what}" + (f": {found}" if found else ": no labels")
            + (f" ({verdict['reason']})" if verdict.get("reason") and verdict.get("status") != StageStatus.HELD else "")]


STAGE = Stage(
    name=NAME, component="ModerationStage", resource="moderation-stage", key="moderationGate",
    description="The moderation gate's function (with moderation).", order=15, gate=True,
    settings=ModerationSettings,
    # Renditions decode like the thumbnail stage (a 50 MP WebP needs ~930 MB); two environments make the ~6 calls a
    # second a default quota of 5 lets through, as for the label stage.
    sizing=StageSettings(memory=1536, timeout=60, batch_size=5, batching_window=1, max_concurrency=2),
    deployed=lambda s: s.enabled,
    # It reads the version it screens (Rekognition reads it with these permissions too, or the stage makes a
    # rendition of it), records its verdict, tags what it holds back and publishes what it passes.
    uses=("records", "uploads", "status_tags", "held_releases", "claim_checks",
          Grant(("rekognition:DetectModerationLabels",))),
    # `python -m ops review`: look at a held-back original, release it, or delete every version of it.
    # A decision is carried out by the gate itself (a message on its queue, which operators may send to for
    # redrive): operators hold no write on the table.
    operator=("held_originals", "upload_versions"),
    reported=(("passed moderation", Metric.PROCESSED), (Status.QUARANTINED, Metric.QUARANTINED),
              ("dropped claim checks", Metric.INVALID_CLAIM_CHECKS)),
    alarmed=(Metric.QUARANTINED,),
    calls=("rekognition.DetectModerationLabels", "s3.GetObject", "s3.PutObjectTagging", "sns.Publish"),
    shown=_shown,
    demo={"moderation": "true"},
    complete=_complete,
    problems=lambda c, stack: memory_problems(c, peak_mb(c.settings.allowed_formats, c.settings.max_pixels)),
    warnings=lambda c, stack: paced_warnings(c, "DetectModerationLabels", "moderationTps", c.settings.moderation_tps,
                                             CALL_SECONDS),
    capacity=Capacity(
        seconds=_seconds, upload_reads=1, record_writes=2,
        priced=lambda c: {"rekognition_moderation": 1.0, "sns_publish": 1.0},
        # DetectModerationLabels, first million images a month: in the same price group as DetectLabels (Amazon
        # Rekognition pricing, "Group 2 APIs"; checked 2026-12-07).
        prices=(("rekognition_moderation", 1.00 / 1000, "rekognition", "Amazon Rekognition pricing, Group 2 APIs"),),
        limits=lambda c: [Limit(f"Rekognition's DetectModerationLabels quota (moderationTps {c.settings.moderation_tps:,})",
                                float(c.settings.moderation_tps), "rekognition.DetectModerationLabels")],
        memory_needed=lambda c: math.ceil(max(peak_mb(c.settings.allowed_formats, c.settings.max_pixels).values())
                                          / MEMORY_HEADROOM)),
)

_invocation: dict[str, Any] = {}
_pace = aws.Pace()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    _invocation.update(context=context, margin=invocation_margin(context))
    return run_batch(event, context, record_handler)


def _dispatch(claim: contracts.ClaimCheck) -> None:
    if claim.event == ClaimEvent.REPROCESS:
        _rescreen(claim)
    elif claim.event == ClaimEvent.CREATED:
        _screen(claim)
    # a removal waits for no gate: it is never published to one


def _screen(claim: contracts.ClaimCheck) -> None:
    env = environment.load()
    current, waiting = pending(env.table_name, claim, NAME)
    if not waiting or current is None:
        if current is not None and _held_here(current, claim.sequencer):
            # An earlier delivery held it back and may have died before the removal below was published: publish it
            # again (a removal finding nothing to remove removes nothing), or an earlier version's thumbnails stay.
            _publish(_removal(claim), passed=True)
        return
    if (current.result(NAME) or {}).get("status") == StageStatus.DONE:
        _pass(claim)  # recorded by an earlier delivery that may have died before it published
        return
    try:
        verdict = _verdict(claim, current, env)
    except PermanentFailure as failure:
        originals.tag_status(claim, Status.FAILED)  # first: a retry after the record tags again
        records.record_stage(env.table_name, claim.image_id, claim.sequencer, NAME,
                             {"status": StageStatus.FAILED, "reason": failure.reason}, known=current)
        logger.info("not screened: nothing is published", extra={"reason": failure.reason})
        count(Metric.FAILED)
        return
    if verdict["status"] == StageStatus.HELD:
        originals.tag_status(claim, Status.QUARANTINED)
        written = records.record_stage(env.table_name, claim.image_id, claim.sequencer, NAME, verdict, known=current)
        _held(verdict)
        if written.outcome == records.Outcome.WRITTEN and not current.made_by_its_event:
            # It replaced an earlier version of the key: that one's thumbnails must not outlive it.
            _publish(_removal(claim), passed=True)
        return
    written = records.record_stage(env.table_name, claim.image_id, claim.sequencer, NAME, verdict, known=current)
    if written.outcome == records.Outcome.WRITTEN:
        _pass(claim)
    count(Metric.PROCESSED)


def _rescreen(claim: contracts.ClaimCheck) -> None:
    """A reprocess request: passed on at once for a done image this gate passed; a done image it never saw is
    screened first, and when held back now, its thumbnails are removed."""
    env = environment.load()
    current = records.get(env.table_name, claim.image_id)
    if current is None or current.status != Status.DONE or current.sequencer != claim.sequencer:
        if current is not None and _held_here(current, claim.sequencer):
            _publish(_removal(claim), passed=True)  # held back by an earlier delivery, which may have died first
            return
        logger.info("reprocess request is stale: the image changed or is not done")
        count(Metric.SKIPPED_CLAIM_CHECKS)
        return
    if not current.names(claim.version_id, claim.etag, claim.format, claim.size):
        refuse(claim, f"the done record names version {current.version_id} ({current.format}, ETag {current.etag})")
        return
    if current.result(NAME) is not None:
        _pass(claim)  # only a passed image is done
        return
    try:
        verdict = _verdict(claim, current, env)
    except PermanentFailure as failure:
        # Nothing new is published of an image that cannot be screened; what it has stays, with the reason.
        records.record_reprocess_failure(env.table_name, claim.image_id, claim.sequencer,
                                         {"status": StageStatus.FAILED, "reason": f"{NAME}: {failure.reason}"})
        count(Metric.FAILED)
        return
    held = verdict["status"] == StageStatus.HELD
    if held:
        originals.tag_status(claim, Status.QUARANTINED)
    if records.record_verdict_on_done(env.table_name, claim.image_id, claim.sequencer, NAME, verdict,
                                      Status.QUARANTINED if held else Status.DONE):
        if held:
            _held(verdict)
            _publish(_removal(claim), passed=True)  # its thumbnails go
        else:
            _pass(claim)
        count(Metric.PROCESSED)


def _held_here(current: records.ImageRecord, sequencer: str) -> bool:
    """Whether this gate holds back the very version of `sequencer` (its removal may still be due; a person may
    decide about it)."""
    return (current.status == Status.QUARANTINED and current.sequencer == sequencer
            and (current.result(NAME) or {}).get("status") == StageStatus.HELD)


def _held(verdict: dict[str, Any]) -> None:
    logger.info("quarantined: held for a person", extra={"reason": verdict["reason"]})
    count(Metric.QUARANTINED)


def _removal(claim: contracts.ClaimCheck) -> contracts.ClaimCheck:
    """What tells the thumbnail stage the key no longer holds an image it should show (the record is quarantined)."""
    return dataclasses.replace(claim, etag=None, size=0, event=ClaimEvent.REMOVED)


def _pass(claim: contracts.ClaimCheck) -> None:
    """The same claim check again, marked as passed: now the other stages take it."""
    _publish(claim, passed=True)


def _publish(claim: contracts.ClaimCheck, passed: bool) -> None:
    aws.client("sns").publish(TopicArn=environment.load().topic_arn, Message=claim.to_json(),
                              MessageAttributes=claim.message_attributes(passed=passed))


def _verdict(claim: contracts.ClaimCheck, current: records.ImageRecord, env: environment.Environment) -> dict[str, Any]:
    """Rekognition's labels for the claim's version and what they mean here: held (StageStatus.HELD) when one of
    them is in a blocked category, else passed (DONE)."""
    settings = env.settings(ModerationSettings)
    images, screened = _image(claim, current, env, settings)
    try:
        responses = [_detect(image, settings) for image in images]
    except PermanentFailure:
        if screened["rendition"] != "original":
            raise
        # Rekognition refused the original as it is (a JPEG it cannot decode: InvalidImageFormatException; a
        # side it refuses): screen what the thumbnail stage would decode of it; if that cannot be made either, the
        # image fails with the decoder's reason and nothing of it is published.
        logger.info("Rekognition refused the original: screening a JPEG rendition of it")
        images, screened = _image(claim, current, env, settings, force_rendition=True)
        responses = [_detect(image, settings) for image in images]
    # A transparent image is judged by every view of it: each label at the highest confidence any view gave it.
    strongest: dict[tuple[str, str], dict[str, Any]] = {}
    for label in (label for response in responses for label in response.get("ModerationLabels", [])):
        known = strongest.setdefault((label.get("Name", ""), label.get("ParentName", "")), label)
        if label.get("Confidence", 0.0) > known.get("Confidence", 0.0):
            strongest[(label.get("Name", ""), label.get("ParentName", ""))] = label
    found = list(strongest.values())
    labels = [{"name": label.get("Name", ""), "parent": label.get("ParentName", ""),
               "confidence": Decimal(str(round(label.get("Confidence", 0.0), 2))),
               "level": int(label.get("TaxonomyLevel") or (1 if not label.get("ParentName") else 2))} for label in found]
    tops = [_top_level(label, labels) for label in labels]
    blocked = sorted({top for top in tops if top in settings.block or top not in TOP_LEVEL})
    verdict: dict[str, Any] = {
        "status": StageStatus.HELD if blocked else StageStatus.DONE, LABEL_LIST: labels, "screened": screened,
        "source": "emulated" if env.emulates("rekognition") else "rekognition",
        "model": responses[0].get("ModerationModelVersion", ""), "blocked": blocked}
    if blocked:
        # The emulated rule's verdict says so wherever the reason is shown (the demo's table, the gallery, ops).
        verdict["reason"] = "held for review" + (" (emulated)" if verdict["source"] == "emulated" else "") + ": " + "; ".join(
            f"{label['name']} {label['confidence']}%" for label, top in zip(labels, tops, strict=True) if top in blocked)
    return verdict


def _detect(image: dict[str, Any], settings: ModerationSettings) -> dict[str, Any]:
    _pace.wait(settings.calls_per_second)
    started = perf_counter()
    with classified():  # throttling, 5xx, timeouts: retried through batchItemFailures
        response = aws.client("rekognition").detect_moderation_labels(Image=image, MinConfidence=settings.min_confidence)
    duration(Metric.MODERATION_DURATION, (perf_counter() - started) * 1000)
    return response


def _top_level(label: dict[str, Any], labels: list[dict[str, Any]]) -> str:
    """A label's top-level category, through the parents the answer names (it lists a label's parents too: API
    reference, DetectModerationLabels, the example response). A category the taxonomy does not know (a parent the
    answer leaves out, a newer model's) holds the image back: nothing unknown passes for allowed."""
    parents = {found["name"]: found["parent"] for found in labels}
    name, parent, seen = label["name"], label["parent"], {label["name"]}
    while parent and parent not in seen:  # a parent the answer does not list ends the walk at that parent
        seen.add(parent)
        name, parent = parent, parents.get(parent, "")
    return name


def _image(claim: contracts.ClaimCheck, current: records.ImageRecord, env: environment.Environment,
           settings: ModerationSettings, force_rendition: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(Rekognition's Image parameter for each view to screen, what the record says was screened): the S3 object
    when it can be screened as it is, else (or when Rekognition refused the object) a JPEG rendition of it, one per
    background when it is transparent."""
    if not force_rendition and not needs_rendition(claim.format, claim.size, current.item.get("width"), current.item.get("height")):
        version = claim.object_version()
        s3_object = {"Bucket": version["Bucket"], "Name": version["Key"],
                     **({"Version": version["VersionId"]} if "VersionId" in version else {})}
        return [{"S3Object": s3_object}], {"rendition": "original", "format": claim.format, "bytes": claim.size}
    views = decode_original(claim, env, settings, _invocation, rendition)
    screened = {"rendition": "jpeg", "format": claim.format, "width": views[0][1], "height": views[0][2],
                "bytes": sum(len(jpeg) for jpeg, _, _, _ in views)}
    if len(views) > 1:
        screened["backgrounds"] = [background for _, _, _, background in views]
    return [{"Bytes": jpeg} for jpeg, _, _, _ in views], screened


def rendition(data: bytes, limits: imaging.Limits, fmt: str | None) -> list[tuple[bytes, int, int, str]]:
    """JPEGs of the image as the thumbnail stage sees it (its first frame, oriented, sRGB) that Rekognition reads as
    bytes: [(jpeg, width, height, background)], one view of an opaque image (background ""), one per BACKGROUNDS of
    a transparent one. Each at most IMAGE_BYTES, at least MIN_SIDE pixels a side (a smaller image is enlarged: its
    thumbnails would show it whole). Runs in the decode child."""
    from PIL import Image

    for box, quality in RENDITIONS:
        # The opaque formats straight to JPEG; the others through PNG, which keeps their alpha channel.
        opaque = fmt in OPAQUE_FORMATS
        [made] = imaging.make_thumbnails(data, (box,), "jpeg" if opaque else "png", quality, limits, sniffed=fmt,
                                         saliency=False).thumbnails
        small = min(made.width, made.height) < MIN_SIDE
        if opaque and not small:
            views = [(made.data, made.width, made.height, "")]
        else:
            picture: Image.Image = Image.open(io.BytesIO(made.data))
            picture.load()
            if small:
                scale = MIN_SIDE / min(picture.size)
                picture = picture.resize((min(MAX_SIDE, math.ceil(picture.width * scale)),
                                          min(MAX_SIDE, math.ceil(picture.height * scale))), Image.Resampling.NEAREST)
            lowest = picture.getchannel("A").getextrema()[0] if picture.mode == "RGBA" else 255
            transparent = isinstance(lowest, int) and lowest < 255
            shown = ([(_over(picture, colour), name) for name, colour in BACKGROUNDS] if transparent
                     else [(picture.convert("RGB"), "")])
            views = [(_jpeg(view, quality), view.width, view.height, name) for view, name in shown]
        if all(len(jpeg) <= IMAGE_BYTES for jpeg, _, _, _ in views):
            return views
    raise PermanentFailure(f"no JPEG rendition of the image fits Rekognition's {IMAGE_BYTES // 2**20} MB")


def _over(picture: Any, colour: tuple[int, int, int]) -> Any:
    """A transparent picture as it shows drawn over `colour`."""
    from PIL import Image

    flat = Image.new("RGB", picture.size, colour)
    flat.paste(picture, mask=picture.getchannel("A"))
    return flat


def _jpeg(picture: Any, quality: int) -> bytes:
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _decide(request: contracts.DecisionRequest) -> None:
    """A person's decision (`python -m ops review`), carried out only for the very version this gate holds back:
    recorded on the image; approved, the original's quarantine tag comes off and the claim check goes on to the other
    stages as passed. A delivery that finds the decision recorded finishes what an earlier one began."""
    env = environment.load()
    current = records.get(env.table_name, request.image_id)
    if (current is None or current.gate != NAME or current.sequencer != request.sequencer
            or (current.version_id or "") != request.version_id):
        logger.warning("decision about a version the record does not hold back; refused",
                       extra={"key": request.key, "version_id": request.version_id})
        count(Metric.INVALID_CLAIM_CHECKS)
        return
    approved = request.decision == Decision.APPROVED
    recorded = current.decision
    if not (recorded.get("decision") == request.decision and recorded.get("version_id") == request.version_id):
        if not _held_here(current, request.sequencer):
            logger.warning("decision about an image that is not held back; refused", extra={"status": current.status})
            count(Metric.INVALID_CLAIM_CHECKS)
            return
        decided = {"decision": request.decision, "by": request.by, "at": request.at, "version_id": request.version_id}
        if not approved:
            decided["reason"] = f"rejected by {request.by} at {request.at}: every version deleted"
        if not records.record_decision(env.table_name, current, NAME, decided, approved):
            logger.info("the record moved on while the decision was on its way; nothing to do")
            count(Metric.SKIPPED_CLAIM_CHECKS)
            return
        current = records.get(env.table_name, request.image_id)
        logger.info("decision recorded", extra={"decision": request.decision, "by": request.by})
    if approved and current is not None:
        claim = contracts.ClaimCheck.of_record(current.item, ClaimEvent.CREATED)
        originals.release(claim)
        if current.awaits(claim.sequencer):
            _pass(claim)


def record_handler(record: SQSRecord) -> None:
    """A decision (`python -m ops review`), or a claim check."""
    if contracts.DecisionRequest.is_one(record.body):
        handle(record, work=_decide, parse=contracts.DecisionRequest.from_json)
    else:
        handle(record, work=_dispatch)
