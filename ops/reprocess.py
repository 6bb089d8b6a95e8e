"""After a thumbnail settings change: ask the thumbnail stage to make again the thumbnails of every done image whose
record names other settings, through the pipeline's own topic and queue (retries and the DLQ cover it).

The table is scanned (every done image must be looked at; the filter keeps only those made with other settings)
a page at a time; each page's requests are published, then the place reached is written to a checkpoint, so a
run stopped anywhere resumes after the last whole page (a page sent twice is harmless: the stage does each image
once per settings). Requests go out at most `rate` a second, so live uploads keep their share of the stage.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from handlers import stages
from handlers.contracts import ClaimCheck
from handlers.moderation import NAME as SCREENING
from handlers.names import ClaimEvent, Function, StackOutput, Status
from handlers.records import GATE
from ops.queues import OpsError
from ops.target import Target

DEFAULT_RATE = 10.0  # requests a second
PAGE_SIZE = 100  # items a scan page evaluates
_deserialize = TypeDeserializer().deserialize
FIELDS = ("image_id", "bucket", "key", "version_id", "etag", "size", "format", "sequencer", "event_time")


class RateLimit:
    """At most `rate` events a second, evenly spaced (a token bucket of one)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self._interval, self._clock, self._sleep = 1.0 / rate, clock, sleep
        self._next = clock()

    def wait(self) -> None:
        now = self._clock()
        if now < self._next:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self._interval


@dataclass
class Progress:
    scanned: int = 0  # records the scan looked at
    requested: int = 0  # reprocess requests published, this run and the runs it resumed
    resumed_from: int = 0  # requests the checkpoint said earlier runs had made
    finished: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def checkpoint_path(target: Target, settings: str, prefix: str, unscreened: bool = False) -> Path:
    what = f"{target.outputs[StackOutput.TABLE_NAME]}|{settings}|{prefix}" + ("|unscreened" if unscreened else "")
    digest = hashlib.sha256(what.encode()).hexdigest()[:16]
    return target.state_dir / f"reprocess-{digest}.json"


def _scan(target: Target, settings: str, prefix: str, start: dict[str, Any] | None, page_size: int,
          unscreened: str = "") -> dict[str, Any]:
    names = {"#s": "status", **{f"#f{i}": name for i, name in enumerate(FIELDS)}}
    if unscreened:  # done before the gate `unscreened` was deployed: the record names no gate, or one met before it
        condition = "#s = :done AND (attribute_not_exists(#g) OR #g <> :last)"
        values: dict[str, Any] = {":done": {"S": Status.DONE}, ":last": {"S": unscreened}}
        names["#g"] = GATE
    else:
        condition = "#s = :done AND (attribute_not_exists(#t.#set) OR #t.#set <> :current)"
        values = {":done": {"S": Status.DONE}, ":current": {"S": settings}}
        names.update({"#t": Function.THUMBNAILS, "#set": "settings"})
    if prefix:
        condition += " AND begins_with(#k, :prefix)"
        names["#k"] = "key"
        values[":prefix"] = {"S": prefix}
    return target.client("dynamodb").scan(
        TableName=target.outputs[StackOutput.TABLE_NAME], FilterExpression=condition, ExpressionAttributeNames=names,
        ExpressionAttributeValues=values, ProjectionExpression=", ".join(f"#f{i}" for i in range(len(FIELDS))),
        Limit=page_size, ConsistentRead=True, **({"ExclusiveStartKey": start} if start else {}))


def gates(target: Target) -> list[str]:
    """The gate stages the stack has deployed (their queues are among its outputs), in the order an upload meets them."""
    deployed = [stage for stage in stages.declared() if stage.gate and stage.name in target.outputs[StackOutput.QUEUE_URLS]]
    return [stage.name for stage in sorted(deployed, key=lambda stage: (stage.order, stage.name))]


def request_for(record: dict[str, Any], created: bool = False) -> ClaimCheck:
    """The claim check a record stands for: asking for a done image's thumbnails again, or (`created`) the one the
    intake published for it."""
    return ClaimCheck.of_record(record, ClaimEvent.CREATED if created else ClaimEvent.REPROCESS)


def reprocess(target: Target, prefix: str = "", dry_run: bool = False, rate: float = DEFAULT_RATE,
              restart: bool = False, show: Callable[[Progress], None] = lambda p: None,
              limiter: RateLimit | None = None, page_size: int = PAGE_SIZE, unscreened: bool = False) -> Progress:
    """`unscreened`: instead of images made with other thumbnail settings, the done images no gate has screened
    (done before `moderation` was turned on); the gate screens each, passes it on (its thumbnails are current, so
    nothing is made again) or holds it back (its thumbnails are removed)."""
    settings = target.outputs[StackOutput.THUMBNAIL_SETTINGS]
    deployed = gates(target)
    if unscreened and SCREENING not in deployed:
        raise OpsError("this stack has no moderation gate (turn `moderation` on first): there is nothing to screen with")
    # The record names the last gate it met; an image done before the moderation gate names none or an earlier one.
    screened_by = deployed[-1] if unscreened else ""
    path = checkpoint_path(target, settings, prefix, unscreened)
    progress, start = Progress(), None
    if path.exists() and not restart and not dry_run:
        saved = json.loads(path.read_text())
        start, progress.requested = saved["start_key"], saved["requested"]
        progress.resumed_from = progress.requested
    limiter = limiter or RateLimit(rate)
    sns = target.client("sns")
    while True:
        page = _scan(target, settings, prefix, start, page_size, screened_by)
        progress.scanned += int(page.get("ScannedCount", 0))
        for item in page.get("Items", []):
            record = {name: _deserialize(value) for name, value in item.items()}
            if not dry_run:
                limiter.wait()
                claim = request_for(record)
                # Published as the intake publishes: with a gate deployed, it sees the request first.
                sns.publish(TopicArn=target.outputs[StackOutput.CLAIM_CHECK_TOPIC_ARN], Message=claim.to_json(),
                            MessageAttributes=claim.message_attributes())
            progress.requested += 1
            show(progress)
        start = page.get("LastEvaluatedKey")
        if not dry_run:
            if start:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"settings": settings, "prefix": prefix, "start_key": start,
                                            "requested": progress.requested}))
            else:
                path.unlink(missing_ok=True)
        show(progress)
        if not start:
            progress.finished = True
            return progress
