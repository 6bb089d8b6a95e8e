"""CDN purge: thumbnails the thumbnail stage deleted -> one CloudFront invalidation for a whole batch of them.

The thumbnail stage puts a purge request on this function's queue before it deletes anything, so a purge is never
lost to a failure between the two. Here a batch of requests becomes one invalidation of exact file paths (CloudFront
allows 3,000 file paths in progress per distribution, 15 wildcard ones: CloudFront Developer Guide, "Concurrent
invalidation request maximum"). Before anything is invalidated the records and S3 are asked: a request for an
image nobody recorded is forged and dropped; one that arrived before its delete waits; one whose thumbnails a record
shows (a forgery, or an image that came back) has nothing to purge.
When CloudFront refuses (TooManyInvalidationsInProgress while earlier invalidations finish, throttling, 5xx) the
requests go back to the queue and are tried again until it accepts; the queue's oldest-message alarm says when a
purge cannot get through, and after many tries its dead-letter queue and alarm. The caller reference names the
batch (its messages), so a batch retried after CloudFront accepted it gets the same invalidation back, and no two
different purges share one.
"""
from __future__ import annotations

import hashlib
from typing import Any

from handlers import aws, contracts, environment, records
from handlers.failures import error_code
from handlers.names import Function, Metric, Status
from handlers.observability import count, item_failures, logger

# Paths per invalidation: a third of what CloudFront lets be in progress at once, so a few batches can overlap.
MAX_PATHS = 1000


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    return item_failures(lambda: purge(event.get("Records", [])))


def purge(messages: list[dict[str, Any]]) -> list[str]:
    """Invalidate what the batch's requests name; returns the ids of the messages to try again."""
    env = environment.load()
    requests: dict[str, contracts.PurgeRequest] = {}
    for message in messages:
        try:
            requests[message["messageId"]] = contracts.PurgeRequest.from_json(message["body"])
        except contracts.InvalidPurgeRequest as exc:
            # No retry can fix it; the dropped-message alarm tells a person.
            logger.error("not a purge request; dropped", extra={"error": str(exc), "message_id": message["messageId"]})
            count(Metric.INVALID_PURGE_REQUESTS)
    known, shown = _recorded(env.table_name, {_image_of(key) for r in requests.values() for key in r.keys})
    for unknown in [m for m, r in requests.items() if not {_image_of(key) for key in r.keys} <= known]:
        # A purge is asked for by the thumbnail stage, for an image with a record; one that names an image nobody
        # recorded is forged, and would spend CloudFront's paths (and the account's money) on nothing.
        logger.error("purge request names images without a record; dropped", extra={"message_id": unknown})
        count(Metric.INVALID_PURGE_REQUESTS)
        del requests[unknown]
    stored = _still_stored(env.thumbnails_bucket, {image for r in requests.values() for image in r.images})
    for moot in [m for m, r in requests.items() if stored.intersection(r.keys) and stored.intersection(r.keys) <= shown]:
        # Every key it names that exists is one a record shows: the image is live (or came back, as an undelete
        # remakes the same keys). Nothing to forget; a forged request ends here too.
        logger.info("purge request names thumbnails a record shows; nothing to purge", extra={"message_id": moot})
        del requests[moot]
    waiting = [m for m, r in requests.items() if stored.intersection(r.keys)]
    if waiting:
        logger.info("thumbnails still stored: their purge waits until they are deleted", extra={"messages": len(waiting)})
    ready = {m: r for m, r in requests.items() if m not in waiting}
    deferred = list(waiting)
    # One invalidation per invocation (at most MAX_PATHS paths): with the function's two environments, two at a
    # time at most are started, well inside CloudFront's 3,000 paths in progress; the rest wait their turn.
    first, *later = _batches(ready) or [{}]
    for batch in later:
        deferred.extend(batch)
    if first:
        try:
            _invalidate(env.distribution_id, first)
            count(Metric.INVALIDATIONS)
        except Exception as exc:
            logger.warning("CloudFront refused the invalidation; it is tried again",
                           extra={"error": error_code(exc) or type(exc).__name__, "messages": len(first)})
            deferred.extend(first)
    if deferred:
        count(Metric.PURGES_DEFERRED, len(deferred))
    return deferred


def _still_stored(bucket: str, images: set[str]) -> set[str]:
    """Which of these images' thumbnails are in the bucket now (one listing per image)."""
    s3 = aws.client("s3")
    return {obj["Key"] for prefix in sorted(images)
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])}


def _image_of(key: str) -> str:
    """The image id a thumbnail key is under (thumbnails/<image id>/…)."""
    return key.split("/")[1]


def _recorded(table_name: str, images: set[str]) -> tuple[set[str], set[str]]:
    """(the images that have a record, the thumbnail keys a done record shows), one read per image."""
    known: set[str] = set()
    shown: set[str] = set()
    for image in sorted(images):
        record = records.get(table_name, image)
        if record is None:
            continue
        known.add(image)
        if record.status == Status.DONE:
            shown |= {o["key"] for o in (record.result(Function.THUMBNAILS) or {}).get("outputs", [])}
    return known, shown


def _batches(requests: dict[str, contracts.PurgeRequest]) -> list[dict[str, contracts.PurgeRequest]]:
    """The requests in groups of at most MAX_PATHS paths (a request is never split)."""
    batches: list[dict[str, contracts.PurgeRequest]] = []
    size = MAX_PATHS
    for message, request in requests.items():
        if size + len(request.keys) > MAX_PATHS:
            batches.append({})
            size = 0
        batches[-1][message] = request
        size += len(request.keys)
    return batches


def _invalidate(distribution: str, batch: dict[str, contracts.PurgeRequest]) -> None:
    paths = sorted({contracts.invalidation_path(key) for request in batch.values() for key in request.keys})
    # Unique to this purge, and the same when this very batch is retried (CloudFront then answers with the
    # invalidation it made, instead of a second one: API reference, CreateInvalidation, CallerReference).
    reference = hashlib.sha256("\n".join(sorted(batch)).encode()).hexdigest()[:32]
    aws.client("cloudfront").create_invalidation(DistributionId=distribution, InvalidationBatch={
        "Paths": {"Quantity": len(paths), "Items": paths}, "CallerReference": reference})
    logger.info("invalidation created", extra={"paths": len(paths), "requests": len(batch)})
