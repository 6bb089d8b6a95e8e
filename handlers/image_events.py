"""Image events: one EventBridge event for each time an image record settles, read from the results table's stream,
and `image.updated` when a done record's stage outputs change at the same version (a reprocess's new thumbnails).

Publishing follows the record's change, never a stage's code: the table's stream (NEW_AND_OLD_IMAGES) feeds this
function through an event source mapping whose filter passes only records whose new image has a settled status
(infra/image_events.py); here each is checked to be a transition into a settle (the status changed, or a newer
version of the key settled) and described as one event. A settling write is conditional on the record still
awaiting it, so a retried settle that finds it settled writes nothing, and DynamoDB writes a stream record only for
a modification of an item (DynamoDB Developer Guide, "Change data capture for DynamoDB Streams"): no second event.

The stream and PutEvents deliver at least once (a batch is retried whole from its first failed record), so the
event's `detail.id` is derived from the change itself (image id, sequencer, status and the settling write's
updated_at): the same settle always carries the same id, and consumers deduplicate on it. PutEvents may refuse
single entries (FailedEntryCount; EventBridge User Guide, "Sending events with PutEvents", "Handling failures"):
exactly those are sent again, a few times. Requests go in stream order and stop at the first whose entries are
still refused: that record and every later one are reported as batch item failures, so Lambda retries from it (no
later settle overtakes an earlier one) and, after the mapping's retries, sends it to the on-failure queue.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from handlers import aws, environment, records
from handlers.names import DETAIL_TYPES, EVENT_SOURCE, EVENT_VERSION, SETTLED, UPDATED_DETAIL_TYPE, Metric, Status
from handlers.observability import count, item_failures, logger

# PutEvents takes at most 10 entries a request (EventBridge API Reference, PutEvents: Entries, 1 to 10 items), and
# their total size must be under 256 KB (EventBridge User Guide, "Calculating PutEvents event entry size").
ENTRIES_PER_REQUEST = 10
REQUEST_BYTES = 256 * 1024
# A reason shortened to this many characters when an event is trimmed to fit (keys are at most 1,024 bytes).
TRIMMED_REASON = 1000
# Sends of a refused entry before its stream record is reported failed (Lambda then retries the batch from it).
SENDS = 4
BACKOFF_S = 0.2
# What a record settled with, besides each stage's result: handlers/records.py's RESULT_ATTRIBUTES that describe it.
METADATA = "metadata"

_deserialize = TypeDeserializer().deserialize


class NotAnImageRecord(ValueError):
    """A stream record that passed the filter but does not describe an image record; it is logged and skipped."""


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    return item_failures(lambda: publish(event.get("Records", [])))


def publish(stream_records: list[dict[str, Any]]) -> list[str]:
    """Publish an event for each settle in the batch, in stream order; returns the sequence numbers of the records to
    try again: the first whose event did not get through and every later one."""
    pending: list[tuple[str, dict[str, Any]]] = []  # (sequence number, PutEvents entry), in stream order
    bus = environment.load().event_bus_name
    for stream_record in stream_records:
        sequence = str((stream_record.get("dynamodb") or {}).get("SequenceNumber", ""))
        try:
            detail = settle_of(stream_record)
        except NotAnImageRecord as exc:
            # No retry can make it one; the alarm on this metric tells a person.
            logger.error("a settled stream record that is not an image record; skipped",
                         extra={"error": str(exc), "sequence_number": sequence})
            count(Metric.INVALID_STREAM_RECORDS)
            continue
        if detail is not None:
            pending.append((sequence, entry(bus, detail)))
        elif (updated := update_of(stream_record)) is not None:
            pending.append((sequence, entry(bus, updated, UPDATED_DETAIL_TYPE)))
    through, published, refused = _put(pending)
    if refused:
        count(Metric.EVENTS_REFUSED, refused)
    if published:
        count(Metric.EVENTS_PUBLISHED, published)
    return [sequence for sequence, _ in pending[through:]]


def image(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A stream image (DynamoDB's typed JSON) as plain values (numbers as int or float)."""
    if attributes is None:
        return None
    return {name: records.plain(_deserialize(value)) for name, value in attributes.items()}


def settles(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    """Whether this change settles the image: its status becomes a settled one, or a newer version of the key settles
    (a rejected upload overwritten by another rejected one). A deletion recorded again for a later S3 event of the
    same key (a version deleted after its delete marker) is no new settle; nor is a write that keeps the status and
    the version (a reprocess's new thumbnails, a decision's note)."""
    status = new.get("status")
    if status not in SETTLED:
        return False
    if old is None or old.get("status") != status:
        return True
    return old.get("sequencer") != new.get("sequencer") and status != Status.DELETED


def event_id(new: Mapping[str, Any], kind: str = "") -> str:
    """The same for every delivery of one change, different for any other: the change's image, version (sequencer),
    status, the time the write stamped, and (for an update, never a settle) its kind."""
    parts = [str(new.get(name, "")) for name in ("image_id", "sequencer", "status", "updated_at")]
    return hashlib.sha256("\n".join(parts + ([kind] if kind else [])).encode()).hexdigest()[:32]


def _outputs(record: records.ImageRecord) -> dict[str, Any]:
    """What each stage stored for the image (its result's `outputs`, such as the thumbnails' keys), by stage."""
    return {stage: (record.result(stage) or {}).get("outputs") for stage in record.expected_stages}


def updates(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    """Whether this change is a done image's stage outputs changing at the same version: a reprocess replaced its
    thumbnails (and deleted those an image.ready pointed to), which a consumer holding them must learn."""
    if old is None or new.get("status") != Status.DONE or old.get("status") != Status.DONE:
        return False
    if new.get("sequencer") != old.get("sequencer"):
        return False
    return _outputs(records.ImageRecord(new)) != _outputs(records.ImageRecord(old))


def settle_of(stream_record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The event's `detail` when this stream record is a settle, else None."""
    return _detail_of(stream_record, settles, "")


def update_of(stream_record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The `image.updated` event's `detail` when this stream record changes a done image's outputs, else None."""
    return _detail_of(stream_record, updates, UPDATED_DETAIL_TYPE)


def _detail_of(stream_record: Mapping[str, Any],
               change_is: Callable[[Mapping[str, Any], Mapping[str, Any] | None], bool], kind: str) -> dict[str, Any] | None:
    change = stream_record.get("dynamodb") or {}
    new, old = image(change.get("NewImage")), image(change.get("OldImage"))
    if new is None or stream_record.get("eventName") == "REMOVE":
        return None
    if not change_is(new, old):
        return None
    missing = [name for name in ("image_id", "sequencer", "updated_at", "key") if not isinstance(new.get(name), str)]
    if missing:
        raise NotAnImageRecord(f"the record has no {', '.join(missing)}")
    record = records.ImageRecord(new)
    outputs = {stage: record.result(stage) for stage in record.expected_stages if record.result(stage) is not None}
    if new.get(METADATA):
        outputs[METADATA] = new[METADATA]
    return {
        "v": EVENT_VERSION, "id": event_id(new, kind), "image_id": new["image_id"], "bucket": new.get("bucket"),
        "key": new["key"], "version_id": record.version_id, "owner": new.get("owner"), "status": new["status"],
        "reason": str(new.get("reason") or ""), "settled_at": new["updated_at"], "outputs": outputs,
    }


def entry(bus: str, detail: Mapping[str, Any], detail_type: str | None = None) -> dict[str, Any]:
    """The PutEvents entry for a settle. One too large for a request alone is sent with its outputs left out (and
    `outputs_trimmed`; the record still holds them): the settle is announced rather than dead-lettered unsent."""
    made = _entry(bus, detail, detail_type)
    if entry_size(made) >= REQUEST_BYTES:
        logger.warning("an event over PutEvents' size limit; sent without its outputs",
                       extra={"image_id": detail.get("image_id"), "bytes": entry_size(made)})
        made = _entry(bus, {**detail, "outputs": {}, "outputs_trimmed": True,
                            "reason": str(detail.get("reason", ""))[:TRIMMED_REASON]}, detail_type)
    return made


def _entry(bus: str, detail: Mapping[str, Any], detail_type: str | None) -> dict[str, Any]:
    return {"EventBusName": bus, "Source": EVENT_SOURCE,
            "DetailType": detail_type or DETAIL_TYPES[Status(detail["status"])],
            "Detail": json.dumps(detail, separators=(",", ":"), sort_keys=True)}


def entry_size(made: Mapping[str, Any]) -> int:
    """PutEvents' measure of an entry (EventBridge User Guide, "Calculating PutEvents event entry size"): Time 14 bytes
    if present; Source, DetailType, Detail and each of Resources as UTF-8."""
    texts = [made["Source"], made["DetailType"], made.get("Detail") or "", *made.get("Resources", [])]
    return (14 if made.get("Time") else 0) + sum(len(text.encode("utf-8")) for text in texts)


def _chunks(entries: list[dict[str, Any]]) -> list[list[int]]:
    """The entries' indexes cut into requests of at most ENTRIES_PER_REQUEST entries and under REQUEST_BYTES."""
    chunks: list[list[int]] = []
    size = 0
    for index, made in enumerate(entries):
        measured = entry_size(made)
        if not chunks or len(chunks[-1]) >= ENTRIES_PER_REQUEST or size + measured >= REQUEST_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(index)
        size += measured
    return chunks


def _put(pending: list[tuple[str, dict[str, Any]]]) -> tuple[int, int, int]:
    """Send the entries in order, again only the ones EventBridge refused; stop at the first request that still has
    refused entries, so that no later settle of an image overtakes an earlier one and Lambda's retry from the first
    failed record resends as little as it can. Returns (how many entries, from the first, got through; how many got
    through in all; how many were refused for good)."""
    events = aws.client("events")
    entries = [made for _, made in pending]
    published = 0
    for chunk in _chunks(entries):
        waiting = list(chunk)
        for attempt in range(SENDS):
            answer = events.put_events(Entries=[entries[index] for index in waiting])
            if not answer.get("FailedEntryCount"):
                waiting = []
                break
            # The answer's entries are in the request's order (same page): an entry with an ErrorCode was refused.
            failed = [(index, result) for index, result in zip(waiting, answer["Entries"], strict=True)
                      if result.get("ErrorCode")]
            logger.warning("EventBridge refused entries; sending those again",
                           extra={"refused": len(failed), "codes": sorted({r["ErrorCode"] for _, r in failed}),
                                  "attempt": attempt + 1})
            waiting = [index for index, _ in failed]
            if attempt + 1 < SENDS:
                time.sleep(BACKOFF_S * 2 ** attempt)
        published += len(chunk) - len(waiting)
        if waiting:
            return waiting[0], published, len(waiting)
    return len(entries), published, 0
