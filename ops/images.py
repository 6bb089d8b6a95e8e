"""Image records: one of them (`show`), and those that need a person (`failures`), read through the table's sparse
attention index, never by scanning the table."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from handlers.contracts import image_id
from handlers.names import ATTENTION_INDEX, ATTENTION_SHARDS, UPLOADS_PREFIX, StackOutput, Status
from handlers.records import ATTENTION, attention_key
from ops.queues import OpsError
from ops.target import Target

_deserialize = TypeDeserializer().deserialize
# What "stuck" means: accepted, and not settled for longer than a message should take to get through every stage.
STUCK_AFTER = timedelta(minutes=15)
STUCK = "stuck"
KINDS = (Status.FAILED, Status.REJECTED, STUCK)  # what `failures` lists


def show(target: Target, key: str) -> dict[str, Any]:
    """The record of the upload at `key` (with or without the uploads/ prefix)."""
    key = key if key.startswith(UPLOADS_PREFIX) else UPLOADS_PREFIX + key
    item = target.client("dynamodb").get_item(
        TableName=target.outputs[StackOutput.TABLE_NAME], ConsistentRead=True,
        Key={"image_id": {"S": image_id(target.outputs[StackOutput.UPLOADS_BUCKET], key)}}).get("Item")
    if item is None:
        raise OpsError(f"no record of {key}: nothing was uploaded there, or its event has not reached the intake yet")
    return {name: _deserialize(value) for name, value in item.items()}


@dataclass
class Attention:
    key: str
    kind: str  # failed, rejected or stuck
    since: str  # when the record last changed
    reason: str
    expires: str | None  # when the lifecycle rule removes the original (rejected and failed ones), if it does


def expiry(uploaded_at: str, days: int) -> str | None:
    """When S3's lifecycle rule expires an object uploaded at `uploaded_at`: that many days after its creation,
    rounded up to the next midnight UTC (S3 User Guide, "Lifecycle configuration elements")."""
    if not days or not uploaded_at:
        return None
    created = datetime.fromisoformat(uploaded_at.replace("Z", "+00:00")).astimezone(UTC)
    due = created + timedelta(days=days)
    midnight = due.replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight if midnight == due else midnight + timedelta(days=1)).isoformat().replace("+00:00", "Z")


def failures(target: Target, kinds: tuple[str, ...] = KINDS, since: datetime | None = None,
             limit: int = 50, now: datetime | None = None) -> list[Attention]:
    """The newest records that need a person, `limit` at most: failed and rejected ones changed since `since`, and
    uploads accepted more than STUCK_AFTER ago and still not settled. One Query per status and shard of the index."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise OpsError(f"no such kind of failure: {', '.join(sorted(unknown))} (accepted: {', '.join(KINDS)})")
    now = now or datetime.now(UTC)
    days = int(target.outputs.get(StackOutput.REJECTED_RETENTION_DAYS) or 0)
    found: list[Attention] = []
    for kind in kinds:
        status = Status.ACCEPTED if kind == STUCK else Status(kind)
        if kind == STUCK:
            condition, values = "#a = :a AND updated_at <= :t", {":t": _iso(now - STUCK_AFTER)}
        elif since is not None:
            condition, values = "#a = :a AND updated_at >= :t", {":t": _iso(since)}
        else:
            condition, values = "#a = :a", {}
        for shard in range(ATTENTION_SHARDS):
            partition = attention_key(status, f"{shard:x}")
            for item in _query(target, condition, {":a": partition, **values}, limit):
                found.append(Attention(
                    item.get("key", "?"), kind, item.get("updated_at", ""), item.get("reason", "") or "",
                    expiry(item.get("event_time", ""), days) if kind != STUCK else None))
    found.sort(key=lambda a: a.since, reverse=True)
    return found[:limit]


def listed(target: Target, status: str, limit: int = 50) -> list[dict[str, Any]]:
    """The newest `limit` records of `status` (one that may need a person), from the attention index."""
    found = [item for shard in range(ATTENTION_SHARDS)
             for item in _query(target, "#a = :a", {":a": attention_key(status, f"{shard:x}")}, limit)]
    return sorted(found, key=lambda item: str(item.get("updated_at", "")), reverse=True)[:limit]


def counts(target: Target, now: datetime | None = None) -> dict[str, int]:
    """How many records need a person now, by kind (and how many uploads are in progress at all)."""
    now = now or datetime.now(UTC)
    in_progress = "in progress"
    counted = {Status.FAILED: 0, Status.REJECTED: 0, Status.QUARANTINED: 0, in_progress: 0, STUCK: 0}
    for status, label in ((Status.FAILED, Status.FAILED), (Status.REJECTED, Status.REJECTED),
                          (Status.QUARANTINED, Status.QUARANTINED), (Status.ACCEPTED, in_progress)):
        for shard in range(ATTENTION_SHARDS):
            counted[label] += _count(target, "#a = :a", {":a": attention_key(status, f"{shard:x}")})
            if status == Status.ACCEPTED:
                counted[STUCK] += _count(target, "#a = :a AND updated_at <= :t",
                                           {":a": attention_key(status, f"{shard:x}"), ":t": _iso(now - STUCK_AFTER)})
    return counted


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _typed(values: dict[str, str]) -> dict[str, dict[str, str]]:
    return {name: {"S": value} for name, value in values.items()}


def _query(target: Target, condition: str, values: dict[str, str], limit: int) -> list[dict[str, Any]]:
    answer = target.client("dynamodb").query(
        TableName=target.outputs[StackOutput.TABLE_NAME], IndexName=ATTENTION_INDEX, KeyConditionExpression=condition,
        ExpressionAttributeNames={"#a": ATTENTION}, ExpressionAttributeValues=_typed(values),
        ScanIndexForward=False, Limit=limit)
    return [{name: _deserialize(value) for name, value in item.items()} for item in answer.get("Items", [])]


def _count(target: Target, condition: str, values: dict[str, str]) -> int:
    total, start = 0, None
    while True:
        page = target.client("dynamodb").query(
            TableName=target.outputs[StackOutput.TABLE_NAME], IndexName=ATTENTION_INDEX, KeyConditionExpression=condition,
            ExpressionAttributeNames={"#a": ATTENTION}, ExpressionAttributeValues=_typed(values), Select="COUNT",
            **({"ExclusiveStartKey": start} if start else {}))
        total += int(page["Count"])
        start = page.get("LastEvaluatedKey")
        if not start:
            return total


def since_from(text: str, now: datetime | None = None) -> datetime:
    """`--since`: an age (90m, 6h, 2d) or an ISO date or time (2026-12-01, 2026-12-01T08:00Z)."""
    now = now or datetime.now(UTC)
    units = {"m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].isdigit():
        return now - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise OpsError(f"--since {text!r} is neither an age (90m, 6h, 2d) nor a date (2026-12-01)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
