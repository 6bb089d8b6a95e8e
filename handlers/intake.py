"""Intake: S3 event -> validated image record -> one claim check.

Reads only the first bytes of each upload (format by content, never by name),
applies the size and pixel gates, records the verdict and publishes a claim
check for accepted uploads, and a `removed` claim check whenever the key no
longer holds an accepted image (deleted, or overwritten by a rejected upload)
so its thumbnails go too. In a versioned bucket an `ObjectRemoved` event only
says "this key changed": S3 itself says whether the image is gone, replaced or
back. Never imports Pillow.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from handlers import aws, contracts, environment, originals, records
from handlers.failures import PermanentFailure, classified, error_code
from handlers.limits import check_pixels
from handlers.names import API_UPLOADS_PREFIX, OWNER_METADATA, ClaimAttribute, ClaimEvent, Function, Metric, Status
from handlers.observability import count, logger, run_batch
from handlers.records import Outcome
from handlers.sniff import SNIFF_BYTES, Sniffed, sniff

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord


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


def _created(bucket: str, key: str, obj: dict[str, Any], sequencer: str, event_time: str) -> None:
    env = environment.load()
    size = int(obj.get("size") or 0)
    claim = contracts.ClaimCheck(
        bucket=bucket, key=key, version_id=obj.get("versionId") or None, etag=obj.get("eTag") or None,
        size=size, format=None, sequencer=sequencer, event=ClaimEvent.CREATED, event_time=event_time,
    )
    metadata: dict[str, str] = {}
    try:
        found = _inspect(claim, env, metadata)
        reason = ""
    except PermanentFailure as failure:
        found, reason = None, failure.reason
    owner = _owner(key, metadata)
    if owner:
        logger.append_keys(owner=owner)
    status = Status.ACCEPTED if found else Status.REJECTED
    if status == Status.REJECTED:
        # Tagged first: a retry after the record is written tags again, and a tag on a version that turns out to be
        # stale is still true of its content.
        originals.tag_status(claim, Status.REJECTED)
    fmt = found.format if found else None
    expected = [Function.THUMBNAILS, *([Function.LABELS] if fmt in env.label_formats else [])]
    result = records.record_event(env.table_name, claim.image_id, sequencer, {
        "status": status, "reason": reason, "bucket": bucket, "key": key, "format": fmt, "size": size,
        "etag": claim.etag, "version_id": claim.version_id, "event_time": event_time,
        "width": found.width if found else None, "height": found.height if found else None,
        "expected_stages": expected if found else [], "owner": owner,
    })
    if result.outcome == Outcome.STALE:
        logger.info("older than the recorded event; nothing changed")
        count(Metric.STALE_EVENTS)
        return
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
    logger.info(Status.ACCEPTED, extra={"format": fmt, "size": size})
    count(Metric.ACCEPTED)


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
    current = _current_version(bucket, key)
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
        _created(bucket, key, current, sequencer, event_time)
        return
    claim = contracts.ClaimCheck(
        bucket=bucket, key=key, version_id=obj.get("versionId") or None, etag=None, size=0, format=None,
        sequencer=sequencer, event=ClaimEvent.REMOVED, event_time=event_time,
    )
    result = records.record_event(env.table_name, claim.image_id, sequencer, {
        "status": Status.DELETED, "bucket": bucket, "key": key,
        "reason": "the original expired (a lifecycle rule of the uploads bucket)" if expired else "the upload was deleted",
        "event_time": event_time, "expected_stages": [],
    })
    if result.outcome == Outcome.STALE:
        count(Metric.STALE_EVENTS)
        return
    _publish(claim)
    logger.info(Status.DELETED)
    count(Metric.DELETED)


def _owner(key: str, metadata: dict[str, str]) -> str | None:
    """Who uploaded it, when the upload API granted it: the owner the grant signed into the object's metadata
    (S3 refused the PUT without it), else the namespace of the key the API chose."""
    if metadata.get(OWNER_METADATA):
        return metadata[OWNER_METADATA]
    if key.startswith(API_UPLOADS_PREFIX):
        return key[len(API_UPLOADS_PREFIX):].partition("/")[0] or None
    return None


def _inspect(claim: contracts.ClaimCheck, env: environment.Environment, metadata: dict[str, str]) -> Sniffed:
    """Decide from size and the first bytes whether an upload is an image this pipeline takes
    (`metadata` receives the object's user metadata when it is read)."""
    if claim.size == 0:
        raise PermanentFailure("the file is empty (0 bytes)")
    if claim.size > env.max_upload_bytes:
        raise PermanentFailure(f"the file is {claim.size:,} bytes, over the upload limit of {env.max_upload_bytes:,} bytes")
    head = _read_head(claim, metadata)
    found = sniff(head)
    named = _extension_note(claim.key, found.format)
    if found.format is None:
        raise PermanentFailure(f"not an image: the content is {found.description}{named}")
    if found.format not in env.allowed_formats:
        allowed = ", ".join(env.allowed_formats)
        raise PermanentFailure(f"{found.format.upper()} images are not accepted{named} (allowed: {allowed})")
    if found.width is not None and found.height is not None:
        check_pixels(found.width, found.height, env.max_pixels)
    return found


def _current_version(bucket: str, key: str) -> dict[str, Any] | None:
    """The key's current version as an S3 event would describe it ({versionId, eTag, size}), or None when it has
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
    return {"versionId": head.get("VersionId"), "eTag": head["ETag"].strip('"'), "size": head["ContentLength"]}


def _read_head(claim: contracts.ClaimCheck, metadata: dict[str, str]) -> bytes:
    """The first bytes of exactly the object version the event names (and its user metadata, into `metadata`)."""
    with classified():
        response = aws.client("s3").get_object(**claim.object_version(), Range=f"bytes=0-{SNIFF_BYTES - 1}")
        metadata.update(response.get("Metadata") or {})
        return response["Body"].read()


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
    aws.client("sns").publish(
        TopicArn=environment.load().topic_arn,
        Message=claim.to_json(),
        MessageAttributes={
            # Subscriptions filter on these: labels only for formats Rekognition reads.
            ClaimAttribute.FORMAT: {"DataType": "String", "StringValue": claim.format or "none"},
            ClaimAttribute.EVENT: {"DataType": "String", "StringValue": claim.event},
        },
    )
