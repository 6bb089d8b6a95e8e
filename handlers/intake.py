"""Intake: S3 event -> validated image record -> one claim check.

Reads only the first bytes of each upload (format by content, never by name),
applies the size and pixel gates, records the verdict and publishes a claim
check for accepted uploads, and a `removed` claim check whenever the key no
longer holds an accepted image (deleted, or overwritten by a rejected upload)
so its thumbnails go too. In a versioned bucket an `ObjectRemoved` event only
says "this key changed": S3 itself says whether the image is gone, replaced or
back. Never imports Pillow.

An event is a request, not a fact: anyone who may send to the intake queue (an operator's redrive, a replay, a
forgery) could have written it. So the verdict rests on what S3 says of the version the event names (its size,
ETag and bytes, read here), and the event's sequencer is held to what S3 says of the key: an ObjectCreated event
cannot order a version after the current one, nor name again, with a later sequencer, the version the record holds. A record whose sequencer no event of S3's current version can pass (one a forgery put there) is set right by
the next event about that current version.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from handlers import aws, contracts, environment, originals, records
from handlers.failures import PermanentFailure, classified, error_code, names_a_gone_object
from handlers.limits import check_pixels
from handlers.names import (
    API_UPLOADS_PREFIX,
    OWNER_METADATA,
    ClaimAttribute,
    ClaimEvent,
    Decision,
    Function,
    Metric,
    Status,
)
from handlers.observability import count, logger, run_batch
from handlers.records import Outcome
from handlers.settings import StageSettings, setting, shared
from handlers.sniff import SNIFF_BYTES, Sniffed, sniff
from handlers.stages import Capacity, Configured, Feed, Stage, gate_order, matches, passed_state, subscriptions

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord


# The intake's whole time per image (a ranged GET, a read and a write of the record, a publish): ASSUMED, no AWS account
# here to measure it; it waits on the network, so more memory buys it nothing.
INTAKE_SECONDS = 0.04


@dataclass(frozen=True)
class IntakeSettings:
    allowed_formats: tuple[str, ...] = shared("allowedFormats")
    max_upload_bytes: int = shared("maxUploadBytes")
    max_pixels: int = shared("maxPixels")
    # The subscription filter of every stage that writes a result onto the record (completed by the program from
    # their declarations): an accepted image waits for the stages whose filter its claim check passes, by the very
    # policies their subscriptions apply, so the two cannot disagree.
    stage_filters: dict[str, Any] | None = setting(None, None, "json", "The result stages' subscription filters.",
                                                   env="STAGE_FILTERS")
    # Which of them are gates (handlers/stages.py): an image waits for its gate, then for what the gate lets through.
    gate_stages: tuple[str, ...] = setting((), None, "list", "The deployed gate stages, in order.", env="GATE_STAGES")


def stage_filters(configured: Configured, others: Mapping[str, Configured]) -> IntakeSettings:
    """The intake's settings with the filters of the deployed stages that write results, and which are gates."""
    policies = subscriptions(others.values())
    results = [other for other in others.values() if other.name in policies and other.stage.results]
    return dataclasses.replace(configured.settings, stage_filters={other.name: policies[other.name] for other in results},
                               gate_stages=tuple(name for name in gate_order(results) if name in policies))


STAGE = Stage(
    name=Function.INTAKE, component="IntakeStage", resource="intake", description="The intake function.", order=10,
    settings=IntakeSettings, feed=Feed.UPLOADS, results=False,
    sizing=StageSettings(memory=256, timeout=30, batch_size=10, batching_window=0, max_concurrency=10),
    uses=("records", "uploads", "claim_checks", "status_tags"),
    dropped=Metric.INVALID_EVENTS,
    reported=((Status.ACCEPTED, Metric.ACCEPTED), (Status.REJECTED, Metric.REJECTED), (Status.DELETED, Metric.DELETED),
              ("dropped messages", Metric.INVALID_EVENTS)),
    complete=stage_filters,
    capacity=Capacity(seconds=lambda c, megapixels, fmt, speed: INTAKE_SECONDS, upload_reads=1, record_writes=1,
                      priced=lambda c: {"sns_publish": 1.0, "s3_get": 1.0}),
    calls=("s3.GetObject", "sns.Publish"),
)


def awaited(settings: IntakeSettings, fmt: str) -> tuple[list[str], list[str]]:
    """(the stages an accepted image of `fmt` waits for, its gates in order): those whose subscription its claim check
    passes as the intake publishes it, the gates in a row that pass it on, and those it passes once the last did."""
    filters = settings.stage_filters or {}
    created = contracts.attributes(fmt, ClaimEvent.CREATED)
    first = [name for name, policy in filters.items() if matches(policy, created)]
    met = []  # the gates it meets in a row (handlers/stages.py, gates), each taking what the one before passed
    state = created
    for gate in settings.gate_stages:
        if not matches(filters.get(gate), state):
            break
        met.append(gate)
        state = {**created, ClaimAttribute.GATE: passed_state(settings.gate_stages, gate)}
    then = [name for name, policy in filters.items() if met and matches(policy, state)]
    return list(dict.fromkeys([*first, *met, *then])), met


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return run_batch(event, context, record_handler)


def record_handler(record: SQSRecord) -> None:
    try:
        body = json.loads(record.body)
    except ValueError:
        logger.error("message is not JSON; dropped", extra={"message_id": record.message_id})
        count(Metric.INVALID_EVENTS)
        return
    if body.get("Event") == "s3:TestEvent":
        logger.info("s3:TestEvent acknowledged")
        return
    events = body.get("Records")
    if not isinstance(events, list):
        logger.error("message is not an S3 event notification; dropped", extra={"message_id": record.message_id})
        count(Metric.INVALID_EVENTS)
        return
    for s3_event in events:
        handle_s3_event(s3_event)


def handle_s3_event(s3_event: dict[str, Any]) -> None:
    try:
        bucket = s3_event["s3"]["bucket"]["name"]
        obj = s3_event["s3"]["object"]
        key = unquote_plus(obj["key"])  # S3 encodes keys like a form: '+' is a space
        event_name = s3_event["eventName"]
        # Every S3 event record carries eventTime (S3 User Guide, "Event message structure"); without a sequencer
        # it also orders the events of a key.
        event_time = s3_event["eventTime"]
        sequencer = contracts.normalize_sequencer(obj.get("sequencer"), event_time)
    except (KeyError, TypeError, contracts.InvalidClaimCheck) as exc:
        logger.error("malformed S3 event record; dropped", extra={"error": str(exc)})
        count(Metric.INVALID_EVENTS)
        return
    logger.append_keys(image_id=contracts.image_id(bucket, key), key=key)
    try:
        if event_name.startswith("ObjectCreated"):
            _created(bucket, key, obj, sequencer, event_time)
        elif event_name.startswith(("ObjectRemoved", "LifecycleExpiration")):
            _removed(bucket, key, obj, sequencer, event_time, expired=event_name.startswith("LifecycleExpiration"))
        else:
            logger.info("event ignored", extra={"event_name": event_name})
    finally:
        logger.remove_keys(["image_id", "key", "owner"])


class Untrusted(Exception):
    """An event that S3 cannot have sent as it stands (it contradicts the object or the key's history)."""


class Stale(Exception):
    """An event that a later one supersedes: nothing to do."""


@dataclass(frozen=True)
class Head:
    """What S3 says of one object version: its first bytes, size, ETag and user metadata."""

    data: bytes
    size: int
    etag: str
    metadata: dict[str, str]
    version_id: str | None = None  # S3 names the version of every object in a versioned bucket


def _created(bucket: str, key: str, obj: dict[str, Any], sequencer: str, event_time: str, *,
             restored: bool = False) -> None:
    """An object version to judge. `restored`: not an ObjectCreated event but a removal that made this version
    current again (its sequencer is the removal's, later than the version's own creation)."""
    env = environment.load()
    claim = contracts.ClaimCheck(
        bucket=bucket, key=key, version_id=obj.get("versionId") or None, etag=obj.get("eTag") or None,
        size=int(obj.get("size") or 0), format=None, sequencer=sequencer, event=ClaimEvent.CREATED,
        event_time=event_time,
    )
    try:
        head = _read_head(claim)
        if head is None:
            # That version is gone (or, unversioned, was overwritten): the event that removed or replaced it says
            # what the key holds now, with a later sequencer. Nothing to judge here.
            logger.info("the version the event names is gone; its removal's own event settles the key")
            count(Metric.STALE_EVENTS)
            return
        _check_event(obj, head)
        current = records.get(env.table_name, claim.image_id)
        replacing = _ordering(claim, current, restored)
    except Untrusted as untrusted:
        logger.error("event refused: S3 cannot have sent it as it stands", extra={"reason": str(untrusted)})
        count(Metric.INVALID_EVENTS)
        return
    except Stale as stale:
        logger.info("nothing changed: a later event settles the key", extra={"reason": str(stale)})
        count(Metric.STALE_EVENTS)
        return
    claim = dataclasses.replace(claim, etag=head.etag, size=head.size)
    try:
        found = _inspect(claim, head, env)
        reason = ""
    except PermanentFailure as failure:
        found, reason = None, failure.reason
    owner = _owner(key, head.metadata)
    if owner:
        logger.append_keys(owner=owner)
    status = Status.ACCEPTED if found else Status.REJECTED
    if status == Status.REJECTED:
        # Tagged first: a retry after the record is written tags again, and a tag on a version that turns out to be
        # stale is still true of its content.
        originals.tag_status(claim, Status.REJECTED)
    fmt = found.format if found else None
    settings = env.settings(IntakeSettings)
    expected, gates = awaited(settings, fmt) if fmt else ([], [])
    result = records.record_event(env.table_name, claim.image_id, sequencer, {
        "status": status, "reason": reason, "bucket": bucket, "key": key, "format": fmt, "size": head.size,
        "etag": head.etag, "version_id": claim.version_id, "event_time": event_time,
        "width": found.width if found else None, "height": found.height if found else None,
        "expected_stages": expected, "owner": owner, **records.gated(gates),
    }, stages=settings.stage_filters or {}, replacing=replacing)
    if result.outcome == Outcome.STALE:
        logger.info("older than the recorded event; nothing changed")
        count(Metric.STALE_EVENTS)
        return
    if replacing is not None:
        logger.warning("the record's sequencer was one no event of the key's current version could pass; replaced",
                       extra={"recorded_sequencer": replacing})
        count(Metric.RECONCILED)
    if result.outcome == Outcome.DUPLICATE:
        count(Metric.DUPLICATE_EVENTS)
        recorded = result.record.status if result.record else None
        if recorded == Status.REJECTED:
            # The first delivery may have died before its removal claim went out: send it again (idempotent).
            _publish(_removal(claim))
            return
        if recorded != Status.ACCEPTED:
            return  # already finished: nothing downstream is waiting
    if status == Status.REJECTED:
        logger.info(Status.REJECTED, extra={"reason": reason})
        count(Metric.REJECTED)
        if result.previous_status not in (None, Status.REJECTED, Status.DELETED):
            # An earlier version of this key was an image: its thumbnails must not outlive it.
            _publish(_removal(claim))
        return
    _publish(dataclasses.replace(claim, format=fmt))
    logger.info(Status.ACCEPTED, extra={"format": fmt, "size": head.size})
    count(Metric.ACCEPTED)


def judge_existing(bucket: str, key: str, current: dict[str, Any], event_time: str) -> None:
    """Judge S3's current version of a key that was in the bucket before the pipeline (a backfill): exactly as its
    ObjectCreated event would be, with the sequencer that orders it before every real event (BACKFILL_SEQUENCER),
    so an event about the key (an overwrite, a delete) wins whichever comes first. `current` is what HEAD said
    ({versionId, eTag, size}); `event_time`, when S3 made that version."""
    _created(bucket, key, current, contracts.BACKFILL_SEQUENCER, event_time)


def _check_event(obj: dict[str, Any], head: Head) -> None:
    """S3's ObjectCreated events state the version's size and ETag, and in a versioned bucket its version id (S3 User
    Guide, "Event message structure"): an event that states others, or names no version of a versioned object, did
    not come from S3 (without a version it could not be held to the key's history, and its sequencer would stand)."""
    if head.version_id and head.version_id != "null" and not obj.get("versionId"):
        raise Untrusted(f"the event names no version; S3 holds version {head.version_id} of that key")
    if obj.get("size") is not None and int(obj["size"]) != head.size:
        raise Untrusted(f"the event says {obj['size']} bytes; S3 holds {head.size:,} for that version")
    if obj.get("eTag") and obj["eTag"].strip('"') != head.etag:
        raise Untrusted(f"the event's ETag {obj['eTag']!r} is not that version's ({head.etag!r})")


def _ordering(claim: contracts.ClaimCheck, current: records.ImageRecord | None, restored: bool) -> str | None:
    """Hold the event's sequencer to the key's history before the record is written. Returns the recorded sequencer
    to replace when the record must be set right (else None: the usual ordering by sequencer applies); raises Stale
    for an event a later one supersedes and Untrusted for one S3 cannot have sent."""
    if current is None or not current.sequencer:
        return None
    version, recorded = claim.version_id, current.version_id
    if claim.sequencer == current.sequencer:
        if claim.sequencer == contracts.BACKFILL_SEQUENCER and version != recorded:
            # Two backfills of the key, each judging the version current then: the one S3 holds now wins.
            if _current_version_id(claim.bucket, claim.key) != version:
                raise Stale(f"version {version} is no longer current")
            return current.sequencer
        if version and recorded and version != recorded:
            raise Untrusted(f"it repeats the recorded sequencer for version {version}; the record's is {recorded}")
        return None
    if claim.sequencer > current.sequencer:
        if not version or not recorded or restored:
            return None  # a restored version is S3's current one, by the HEAD that found it
        if version == recorded and current.sequencer == contracts.BACKFILL_SEQUENCER:
            if current.status != Status.DELETED:
                # A backfill judged the version first; its own event, late, would be the same judgement made again
                # (the stages run twice, a second image.ready): the work is done once. Another version's event still
                # sorts after the backfill's all-zero sequencer.
                raise Stale(f"the backfill already judged version {version}")
            return None
        if version == recorded:
            # One version is created once: its ObjectCreated event cannot come again with a later sequencer.
            raise Untrusted("an ObjectCreated event for the version the record holds, with a later sequencer")
        now = _current_version_id(claim.bucket, claim.key)
        if now == version:
            return None
        if now == recorded:
            # The current version is the newest S3 has: a version after it by sequencer would be current instead.
            raise Untrusted(f"its sequencer orders version {version} after {recorded}, which S3 made later")
        # Neither is current: a later version (or a delete marker) superseded both, and its own event settles the key.
        raise Stale(f"version {version} is no longer current")
    # An earlier sequencer: stale, unless the event is about S3's current version and the record says otherwise.
    # Then no event S3 sends later can carry a sequencer past the recorded one (a forgery put it there): S3 wins.
    holds_current = current.status != Status.DELETED and recorded == version
    if holds_current or not version or _current_version_id(claim.bucket, claim.key) != version:
        raise Stale("older than the recorded event")
    return current.sequencer


def _removal(claim: contracts.ClaimCheck) -> contracts.ClaimCheck:
    """The removal of what a rejected upload replaced (`claim`, the rejected version's, has no format: only an
    accepted upload's claim check gets one)."""
    return dataclasses.replace(claim, etag=None, size=0, event=ClaimEvent.REMOVED)


def _removed(bucket: str, key: str, obj: dict[str, Any], sequencer: str, event_time: str, *, expired: bool) -> None:
    """S3 sends ObjectRemoved:Delete when one version is deleted for good, including a delete marker (an
    undelete), and ObjectRemoved:DeleteMarkerCreated for a plain delete (S3 User Guide, "Event notification
    types and destinations", "Working with delete markers"); a lifecycle rule's expiry sends
    LifecycleExpiration:Delete or :DeleteMarkerCreated the same way. Which of gone, replaced or back it is, only
    the bucket can say: its current version."""
    env = environment.load()
    current = current_version(bucket, key)
    if current is not None:
        record = records.get(env.table_name, contracts.image_id(bucket, key))
        if record is not None and record.status != Status.DELETED and record.version_id == current["versionId"]:
            logger.info("an older version was removed; the current one is unchanged",
                        extra={"removed_version": obj.get("versionId"), "current_version": current["versionId"]})
            count(Metric.NONCURRENT_VERSIONS_REMOVED)
            return
        # Back (a delete marker was removed) or replaced by another version: the current one is processed as an
        # upload, ordered by this event's sequencer.
        logger.info("the key's current version changed; processing it", extra={"current_version": current["versionId"]})
        count(Metric.RESTORED)
        _created(bucket, key, current, sequencer, event_time, restored=True)
        return
    claim = contracts.ClaimCheck(
        bucket=bucket, key=key, version_id=obj.get("versionId") or None, etag=None, size=0, format=None,
        sequencer=sequencer, event=ClaimEvent.REMOVED, event_time=event_time,
    )
    # S3 holds no current version: the key is deleted, whatever the record's sequencer says. A record that still
    # shows the key behind a later sequencer got it from an event no real one can pass (a forgery): S3 wins.
    record = records.get(env.table_name, claim.image_id)
    replacing = (record.sequencer if record is not None and record.status != Status.DELETED and record.sequencer
                 and record.sequencer > sequencer else None)
    result = records.record_event(env.table_name, claim.image_id, sequencer, {
        "status": Status.DELETED, "bucket": bucket, "key": key, "reason": _deletion_reason(env, claim, expired),
        "event_time": event_time, "expected_stages": [],
    }, stages=env.settings(IntakeSettings).stage_filters or {}, replacing=replacing)
    if result.outcome == Outcome.STALE:
        count(Metric.STALE_EVENTS)
        return
    if replacing is not None:
        logger.warning("the record showed a deleted key behind a sequencer no real event could pass; set right",
                       extra={"replaced_sequencer": replacing})
        count(Metric.RECONCILED)
    _publish(claim)
    logger.info(Status.DELETED)
    count(Metric.DELETED)


def _deletion_reason(env: environment.Environment, claim: contracts.ClaimCheck, expired: bool) -> str:
    """Why the key has no version left: a lifecycle rule's expiry, a person's rejection of what its gate held back
    (the record keeps their decision), or a delete."""
    if expired:
        return "the original expired (a lifecycle rule of the uploads bucket)"
    record = records.get(env.table_name, claim.image_id)
    decided = record.decision if record is not None else {}
    if decided.get("decision") == Decision.REJECTED and decided.get("reason"):
        return str(decided["reason"])
    return "the upload was deleted"


def _owner(key: str, metadata: dict[str, str]) -> str | None:
    """Who uploaded it, when the upload API granted it: the namespace of the key the API chose, which is the owner
    the grant signed into the object's metadata too (S3 refused the PUT without it). Anything else may have been
    written by whoever can put objects in the bucket: metadata that disagrees with the key names nobody, and a key
    outside the API's namespace has no owner."""
    if not key.startswith(API_UPLOADS_PREFIX):
        return None
    namespace = key[len(API_UPLOADS_PREFIX):].partition("/")[0] or None
    claimed = metadata.get(OWNER_METADATA)
    if claimed and claimed != namespace:
        logger.warning("the object's owner metadata disagrees with its key's namespace; the key's is kept",
                       extra={"claimed_owner": claimed})
    return namespace


def _inspect(claim: contracts.ClaimCheck, head: Head, env: environment.Environment) -> Sniffed:
    """Decide from the size and the first bytes S3 holds whether an upload is an image this pipeline takes."""
    if head.size == 0:
        raise PermanentFailure("the file is empty (0 bytes)")
    settings = env.settings(IntakeSettings)
    if head.size > settings.max_upload_bytes:
        raise PermanentFailure(f"the file is {head.size:,} bytes, over the upload limit of {settings.max_upload_bytes:,} bytes")
    found = sniff(head.data)
    named = _extension_note(claim.key, found.format)
    if found.format is None:
        raise PermanentFailure(f"not an image: the content is {found.description}{named}")
    if found.format not in settings.allowed_formats:
        allowed = ", ".join(settings.allowed_formats)
        raise PermanentFailure(f"{found.format.upper()} images are not accepted{named} (allowed: {allowed})")
    if found.width is not None and found.height is not None:
        check_pixels(found.width, found.height, settings.max_pixels)
    return found


def current_version(bucket: str, key: str) -> dict[str, Any] | None:
    """The key's current version as an S3 event would describe it ({versionId, eTag, size, lastModified}), or None when it has
    none (deleted: a delete marker is current, or no version is left). HEAD answers 404 for both, given
    s3:ListBucket (without it S3 answers 403, which stays a transient error and alarms). A HEAD response has no
    body, so botocore reports the status code itself as the error code (S3 API reference, HeadObject; its answer
    always carries ETag and Content-Length)."""
    try:
        head = aws.client("s3").head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if error_code(exc) == "404":
            return None
        raise
    return {"versionId": head.get("VersionId"), "eTag": head["ETag"].strip('"'), "size": head["ContentLength"],
            "lastModified": head["LastModified"]}


def _current_version_id(bucket: str, key: str) -> str | None:
    current = current_version(bucket, key)
    return current["versionId"] if current else None


def _read_head(claim: contracts.ClaimCheck) -> Head | None:
    """The first bytes of exactly the object version the event names, with S3's size, ETag and user metadata for it;
    None when that version is gone; Untrusted when S3 never made it. A ranged GET answers the whole size in Content-Range (S3 API reference,
    GetObject); an empty object has no range to give (InvalidRange), so its HEAD says what it is."""
    s3 = aws.client("s3")
    version = claim.object_version()
    try:
        response = s3.get_object(**version, Range=f"bytes=0-{SNIFF_BYTES - 1}")
    except Exception as exc:
        if names_a_gone_object(exc):
            return None
        if error_code(exc) == "InvalidArgument" and "VersionId" in version:
            # S3 answers a version id it never issued with 400 "Invalid version id specified" (one it issued and
            # deleted: NoSuchVersion); moto answers NoSuchVersion for both.
            raise Untrusted(f"S3 calls the version id {claim.version_id!r} invalid") from exc
        if error_code(exc) != "InvalidRange":
            with classified():  # anything else is transient: retried through batchItemFailures
                raise
        try:
            empty = s3.head_object(**version)
        except Exception as gone:
            if names_a_gone_object(gone):
                return None
            raise
        return Head(b"", empty["ContentLength"], empty["ETag"].strip('"'), empty.get("Metadata") or {},
                    empty.get("VersionId"))
    size = int(response["ContentRange"].rpartition("/")[2]) if response.get("ContentRange") else response["ContentLength"]
    return Head(response["Body"].read(), size, response["ETag"].strip('"'), response.get("Metadata") or {},
                response.get("VersionId"))


_EXTENSIONS = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "gif": "gif", "webp": "webp", "tif": "tiff",
               "tiff": "tiff", "bmp": "bmp", "heic": "heic", "heif": "heic", "avif": "avif"}


def _extension_note(key: str, fmt: str | None) -> str:
    """' despite its .jpg name' when the name promises a format the content is not."""
    extension = PurePosixPath(key).suffix[1:].lower()  # of the name, not of a folder: "a.b/notes" has none
    claimed = _EXTENSIONS.get(extension)
    if claimed and claimed != fmt:
        return f" despite its .{extension} name"
    return ""


def _publish(claim: contracts.ClaimCheck) -> None:
    # Subscriptions filter on its attributes: labels only for formats Rekognition reads, a gate's first.
    aws.client("sns").publish(TopicArn=environment.load().topic_arn, Message=claim.to_json(),
                              MessageAttributes=claim.message_attributes())
