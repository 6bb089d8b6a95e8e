"""Thumbnail stage: claim check -> the named object version -> thumbnails + metadata.

Output keys are derived from the image id, the object's version and the name of the thumbnail settings, so doing
the same work twice writes the same objects, a key's content never changes (caches may keep it for good), and a
public thumbnail URL says nothing about the original's bytes (an ETag would be its MD5). A reprocess request
(`python -m ops reprocess`) makes a done image's thumbnails again only when its record names other settings.
Whenever the image ends anything but `done` (failed, deleted, replaced by a rejected upload), or a newer
version's thumbnails replace an older one's, what no longer belongs to the record is removed, and, when a
CDN serves them, a purge is asked of the purge function (handlers/cdn_purge.py) first; a redelivery that finds
its work recorded finishes that clean-up if it was cut short. When the record has moved on to a newer event while
this one ran, what it wrote is removed again.
"""
from __future__ import annotations

import os
from time import perf_counter
from typing import TYPE_CHECKING, Any

from handlers import aws, contracts, environment, imaging, isolation, originals, records
from handlers.failures import PermanentFailure, classified
from handlers.names import ClaimEvent, Env, Function, Metric, StageStatus, Status
from handlers.observability import count, duration, logger, run_batch
from handlers.stage import for_claim_check, pending, refuse

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

# What a record says when its key no longer holds an image the stages should show.
REMOVED = (Status.REJECTED, Status.DELETED)
# Thumbnail keys never change content, so caches may keep them for a year.
CACHE_CONTROL = "public, max-age=31536000, immutable"


# The invocation's context, for the time it has left (Powertools hands record handlers only the record).
_invocation: dict[str, Any] = {}
# Memory the decode of one image may add, beyond what the function holds already, is what is left of the
# function's memory after its own footprint and this margin for the allocator.
MEMORY_MARGIN_MB = 48
# Kept back from the invocation's deadline for storing and recording the results: 15% of the function's
# timeout, at most 3 s.
WALL_MARGIN_SHARE, WALL_MARGIN_MAX_S = 0.15, 3.0


def _prepare() -> list[str]:
    """As Lambda starts the function (its init phase, billed like the rest but before any image waits): the
    Pillow plugins of this stack's formats and nothing else (imaging.prepare); the decode child forked for the
    first image inherits them. Imported where no stack configures it (tests, tools), it prepares nothing: the
    first image then imports its own decoder."""
    if not (os.environ.get(Env.ALLOWED_FORMATS) and os.environ.get(Env.OUTPUT_FORMAT)):
        return []
    env = environment.load()
    return imaging.prepare(env.allowed_formats, env.output_format)


PREPARED = _prepare()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    _invocation["context"] = context
    _invocation["margin"] = min(WALL_MARGIN_MAX_S, WALL_MARGIN_SHARE * context.get_remaining_time_in_millis() / 1000)
    return run_batch(event, context, record_handler)


def _budget(env: environment.Environment) -> isolation.Budget:
    """One image's limits: its CPU seconds, the memory left to it, and the wall time the invocation can spare."""
    context = _invocation.get("context")
    remaining = context.get_remaining_time_in_millis() / 1000 if context else 900.0
    wall = remaining - _invocation.get("margin", WALL_MARGIN_MAX_S)
    if wall <= 0.5:
        # Starting now would let Lambda's timeout end the batch: hand it back for another invocation.
        raise isolation.OutOfTime(f"only {remaining:.1f} s left in this invocation")
    memory = int(env.function_memory_mb - isolation.resident_mb() - MEMORY_MARGIN_MB)
    return isolation.Budget(cpu_seconds=env.image_cpu_seconds, memory_mb=max(memory, 64), wall_seconds=wall)


def _thumbnails_of(claim: contracts.ClaimCheck, env: environment.Environment) -> imaging.Result:
    budget = _budget(env)
    data = _fetch(claim)
    limits = imaging.Limits(env.max_pixels, env.max_frames, env.max_jpeg_scans, env.max_jpeg_segments,
                            max_decode_mb=budget.memory_mb, bytes_per_pixel=env.decode_bytes_per_pixel)
    result, usage = isolation.run(
        imaging.make_thumbnails, data, env.thumbnail_sizes, env.output_format, env.output_quality, limits,
        env.store_gps, claim.format, budget=budget)
    logger.debug("decoded", extra={"cpu_seconds": usage.cpu_seconds, "peak_rss_mb": usage.peak_rss_mb})
    return result


def _dispatch(claim: contracts.ClaimCheck) -> None:
    if claim.event == ClaimEvent.REMOVED:
        _remove(claim)
    elif claim.event == ClaimEvent.REPROCESS:
        _reprocess(claim)
    else:
        _create(claim)


def _create(claim: contracts.ClaimCheck) -> None:
    env = environment.load()
    current, waiting = pending(env.table_name, claim)
    if not waiting:
        if not _owns_keys(current, claim):
            # An earlier delivery may have stored thumbnails and died before recording them.
            _discard(env, _stored(env.thumbnails_bucket, claim.thumbnail_prefix))
        elif current is not None and current.status in (Status.DONE, Status.FAILED):
            # This work is recorded; an earlier delivery may have died while it cleared what the record replaced.
            _clear(claim, keep=_recorded_keys(current))
        return
    started = perf_counter()
    try:
        with classified():  # anything else is transient: retried through batchItemFailures
            result = _thumbnails_of(claim, env)
    except PermanentFailure as failure:
        originals.tag_status(claim, Status.FAILED)  # first: a retry after the record tags again
        written = records.record_stage(env.table_name, claim.image_id, claim.sequencer, Function.THUMBNAILS,
                                       {"status": StageStatus.FAILED, "reason": failure.reason}, known=current)
        logger.info("thumbnails failed", extra={"reason": failure.reason})
        count(Metric.FAILED)
        if written.outcome == records.Outcome.WRITTEN:
            # The image is now failed: an earlier version's thumbnails must not outlive it.
            _clear(claim, keep=set())
        return
    outputs = [_store(claim, thumbnail, env) for thumbnail in result.thumbnails]
    written = records.record_stage(env.table_name, claim.image_id, claim.sequencer, Function.THUMBNAILS,
                                   {"status": StageStatus.DONE, "outputs": outputs, "settings": env.thumbnail_settings},
                                   metadata=result.metadata, known=current)
    if written.outcome == records.Outcome.STALE:
        if not _owns_keys(written.record, claim):
            _delete(env.thumbnails_bucket, [o["key"] for o in outputs])
        count(Metric.SKIPPED_CLAIM_CHECKS)
        return
    if current is not None and not current.made_by_its_event:
        _clear(claim, keep={o["key"] for o in outputs})  # an earlier version's thumbnails go
    duration(Metric.THUMBNAIL_DURATION, (perf_counter() - started) * 1000)
    count(Metric.PROCESSED)
    logger.info("thumbnails stored", extra={"outputs": [o["key"] for o in outputs]})


def _fetch(claim: contracts.ClaimCheck) -> bytes:
    return aws.client("s3").get_object(**claim.object_version())["Body"].read()


def _reprocess(claim: contracts.ClaimCheck) -> None:
    """Make a done image's thumbnails with the settings deployed now, record them, then remove the ones they replace.
    Nothing happens when the image changed since the request was made or was already made with these settings."""
    env = environment.load()
    current = records.get(env.table_name, claim.image_id)
    if current is None or current.status != Status.DONE or current.sequencer != claim.sequencer:
        logger.info("reprocess request is stale: the image changed or is not done")
        count(Metric.SKIPPED_CLAIM_CHECKS)
        return
    if not current.names(claim.version_id, claim.etag, claim.format):
        refuse(claim, f"the done record names version {current.version_id} ({current.format}, ETag {current.etag})")
        return
    made_with = (current.result(Function.THUMBNAILS) or {}).get("settings")
    if made_with == env.thumbnail_settings:
        count(Metric.ALREADY_CURRENT)
        _clear(claim, keep=_recorded_keys(current))  # a reprocess cut short after it was recorded: finish it
        return
    try:
        with classified():
            result = _thumbnails_of(claim, env)
    except PermanentFailure as failure:
        # The thumbnails it has stay; the record says why new ones could not be made (python -m ops show).
        records.record_reprocess_failure(env.table_name, claim.image_id, claim.sequencer, {
            "status": StageStatus.FAILED, "reason": failure.reason, "settings": env.thumbnail_settings})
        count(Metric.FAILED)
        return
    outputs = [_store(claim, thumbnail, env) for thumbnail in result.thumbnails]
    written = records.record_reprocessed(env.table_name, claim.image_id, claim.sequencer, {
        "status": StageStatus.DONE, "outputs": outputs, "settings": env.thumbnail_settings}, made_with)
    if written.outcome != records.Outcome.WRITTEN:
        theirs = written.record.result(Function.THUMBNAILS) if written.record else None
        if not (written.record and written.record.sequencer == claim.sequencer
                and (theirs or {}).get("settings") == env.thumbnail_settings):
            _delete(env.thumbnails_bucket, [o["key"] for o in outputs])  # not the record's keys: take them back
        count(Metric.SKIPPED_CLAIM_CHECKS)
        return
    _clear(claim, keep={o["key"] for o in outputs})  # the thumbnails of the old settings go
    count(Metric.REPROCESSED)


def _store(claim: contracts.ClaimCheck, thumbnail: imaging.Thumbnail, env: environment.Environment) -> dict[str, Any]:
    key = f"{claim.thumbnail_prefix}{env.thumbnail_settings}/{thumbnail.box}.{thumbnail.extension}"
    aws.client("s3").put_object(
        Bucket=env.thumbnails_bucket, Key=key, Body=thumbnail.data, ContentType=thumbnail.content_type,
        CacheControl=CACHE_CONTROL, Metadata={"image-id": claim.image_id},
    )
    output = {"key": key, "box": thumbnail.box, "width": thumbnail.width, "height": thumbnail.height,
              "bytes": len(thumbnail.data), "content_type": thumbnail.content_type}
    if env.thumbnails_base_url:
        output["url"] = f"{env.thumbnails_base_url}/{key}"
    return output


def _owns_keys(current: records.ImageRecord | None, claim: contracts.ClaimCheck) -> bool:
    """Whether the record's current version is this claim check's (its thumbnails live under the same keys)."""
    return (current is not None and current.status != Status.DELETED
            and contracts.version_tag(current.version_id, current.sequencer)
            == contracts.version_tag(claim.version_id, claim.sequencer))


def _recorded_keys(record: records.ImageRecord) -> set[str]:
    return {o["key"] for o in (record.result(Function.THUMBNAILS) or {}).get("outputs", [])}


def _discard(env: environment.Environment, keys: list[str]) -> None:
    """Delete thumbnails that a record may have handed out, and make the CDN forget them. The purge is asked first:
    once the request is on its queue it is durable (SQS keeps it, the purge function retries it until CloudFront
    accepts it, and it alarms when it cannot), whereas a retry of this message after the delete would find nothing
    left to ask about. The purge function waits until the objects are gone before it invalidates them, so no
    request in between can cache them again."""
    if not keys:
        return
    if env.purge_queue_url:
        sqs = aws.client("sqs")
        for start in range(0, len(keys), contracts.MAX_PURGE_KEYS):
            request = contracts.PurgeRequest(tuple(keys[start:start + contracts.MAX_PURGE_KEYS]))
            sqs.send_message(QueueUrl=env.purge_queue_url, MessageBody=request.to_json())
    _delete(env.thumbnails_bucket, keys)


def _delete(bucket: str, keys: list[str]) -> None:
    s3 = aws.client("s3")
    for start in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]], "Quiet": True})


def _stored(bucket: str, prefix: str) -> list[str]:
    s3 = aws.client("s3")
    return [obj["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])]


def _remove(claim: contracts.ClaimCheck) -> None:
    """The key no longer holds an accepted image (deleted, or overwritten by a rejected upload): its thumbnails go."""
    env = environment.load()
    current = records.get(env.table_name, claim.image_id)
    if current is None or current.sequencer != claim.sequencer:
        logger.info("removal is stale; the key was uploaded again")
        count(Metric.SKIPPED_CLAIM_CHECKS)
        return
    if current.status not in REMOVED:
        # The intake sends a removal only with the event that made the record rejected or deleted.
        refuse(claim, f"the record shows the image {current.status}, not removed")
        return
    removed = _clear(claim, keep=set())
    logger.info("thumbnails removed", extra={"count": removed})
    count(Metric.PROCESSED)


def _clear(claim: contracts.ClaimCheck, keep: set[str]) -> int:
    """Delete every thumbnail of the image but `keep`, and have the CDN forget them."""
    env = environment.load()
    doomed = [key for key in _stored(env.thumbnails_bucket, contracts.thumbnail_prefix(claim.image_id)) if key not in keep]
    _discard(env, doomed)
    return len(doomed)


# Defined last: it wraps the work above.
record_handler = for_claim_check(_dispatch)
