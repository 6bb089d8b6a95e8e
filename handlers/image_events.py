"""Image events: one EventBridge event for each time an image record settles, read from the results table's stream.

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
exactly those are sent again, a few times, and a record whose event does not get through is reported as a batch
item failure, so Lambda retries from it and, after the mapping's retries, sends it to the on-failure queue.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from handlers import aws, environment, records
from handlers.names import DETAIL_TYPES, EVENT_SOURCE, EVENT_VERSION, SETTLED, Metric, Status
from handlers.observability import count, item_failures, logger

# PutEvents takes at most 10 entries a request (EventBridge API Reference, PutEvents: Entries, 1 to 10 items).
ENTRIES_PER_REQUEST = 10
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
    """Publish an event for each settle in the batch; returns the sequence numbers of the records to try again."""
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
    refused = _put(pending)
    if refused:
        count(Metric.EVENTS_REFUSED, len(refused))
    if len(pending) > len(refused):
        count(Metric.EVENTS_PUBLISHED, len(pending) - len(refused))
    return refused


def image(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A stream image (DynamoDB's typed JSON) as plain values (numbers as int or float)."""
    if attributes is None:
        return None
    return {name: _plain(_deserialize(value)) for name, value in attributes.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in (sorted(value) if isinstance(value, set) else value)]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


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


def event_id(new: Mapping[str, Any]) -> str:
    """The same for every delivery of one settle, different for any other: the change's image, version (sequencer),
    status and the time the settling write stamped."""
    parts = [str(new.get(name, "")) for name in ("image_id", "sequencer", "status", "updated_at")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def settle_of(stream_record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The event's `detail` when this stream record is a settle, else None."""
    change = stream_record.get("dynamodb") or {}
    new, old = image(change.get("NewImage")), image(change.get("OldImage"))
    if new is None or stream_record.get("eventName") == "REMOVE":
        return None
    if not settles(new, old):
        return None
    missing = [name for name in ("image_id", "sequencer", "updated_at", "key") if not isinstance(new.get(name), str)]
    if missing:
        raise NotAnImageRecord(f"the record has no {', '.join(missing)}")
    record = records.ImageRecord(new)
    outputs = {stage: record.result(stage) for stage in record.expected_stages if record.result(stage) is not None}
    if new.get(METADATA):
        outputs[METADATA] = new[METADATA]
    return {
        "v": EVENT_VERSION, "id": event_id(new), "image_id": new["image_id"], "bucket": new.get("bucket"),
        "key": new["key"], "version_id": record.version_id, "owner": new.get("owner"), "status": new["status"],
        "reason": str(new.get("reason") or ""), "settled_at": new["updated_at"], "outputs": outputs,
    }


def entry(bus: str, detail: Mapping[str, Any]) -> dict[str, Any]:
    return {"EventBusName": bus, "Source": EVENT_SOURCE, "DetailType": DETAIL_TYPES[Status(detail["status"])],
            "Detail": json.dumps(detail, separators=(",", ":"), sort_keys=True)}


def _put(pending: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Send every entry, again only the ones EventBridge refused; the sequence numbers of those it kept refusing."""
    events = aws.client("events")
    refused: list[str] = []
    for start in range(0, len(pending), ENTRIES_PER_REQUEST):
        batch = pending[start:start + ENTRIES_PER_REQUEST]
        for attempt in range(SENDS):
            answer = events.put_events(Entries=[e for _, e in batch])
            if not answer.get("FailedEntryCount"):
                batch = []
                break
            # The answer's entries are in the request's order (same page): an entry with an ErrorCode was refused.
            failed = [(pending_entry, result) for pending_entry, result in zip(batch, answer["Entries"], strict=True)
                      if result.get("ErrorCode")]
            logger.warning("EventBridge refused entries; sending those again",
                           extra={"refused": len(failed), "codes": sorted({r["ErrorCode"] for _, r in failed}),
                                  "attempt": attempt + 1})
            batch = [pending_entry for pending_entry, _ in failed]
            if attempt + 1 < SENDS:
                time.sleep(BACKOFF_S * 2 ** attempt)
        refused.extend(sequence for sequence, _ in batch)
    return refused
