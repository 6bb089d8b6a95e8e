"""The image record in the results table: one item per image, keyed by image id.

Every write is conditional on the S3 sequencer the record reflects, so events
that arrive twice or out of order change nothing, and each stage writes only
its own attribute (`thumbnails`, `labels`).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import ClientError

from handlers import aws

ACCEPTED, REJECTED, DONE, FAILED, DELETED = "accepted", "rejected", "done", "failed", "deleted"
FINAL_STAGE_STATES = {"done", "failed", "unavailable"}
STAGES = ("thumbnails", "labels")
# Attributes the stages own; a newer event clears them with the old version's results.
STAGE_ATTRIBUTES = (*STAGES, "metadata")

WRITTEN, DUPLICATE, STALE = "written", "duplicate", "stale"


@dataclass(frozen=True)
class WriteResult:
    outcome: str  # WRITTEN, DUPLICATE (same sequencer already recorded) or STALE (a newer one is)
    item: dict[str, Any] | None
    previous_status: str | None = None  # for an intake write: the status the record had before it (None: no record)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_CONDITION_NAMES = {"#seq": "sequencer", "#status": "status"}


def _update(table_name: str, image_id: str, set_values: dict[str, Any], condition: str,
            condition_values: dict[str, Any], remove: tuple[str, ...] = (), if_not_exists: dict[str, Any] | None = None,
            return_values: str = "ALL_NEW", condition_names: dict[str, str] | None = None,
            ) -> tuple[bool, dict[str, Any] | None]:
    """One conditional UpdateItem. Returns (written, item): what `return_values` asks for, or the stored item
    when the condition failed."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    sets = []
    for i, (attr, value) in enumerate(set_values.items()):
        names[f"#s{i}"] = attr
        values[f":s{i}"] = value
        sets.append(f"#s{i} = :s{i}")
    for i, (attr, value) in enumerate((if_not_exists or {}).items()):
        names[f"#n{i}"] = attr
        values[f":n{i}"] = value
        sets.append(f"#n{i} = if_not_exists(#n{i}, :n{i})")
    expression = "SET " + ", ".join(sets)
    if remove:
        for i, attr in enumerate(remove):
            names[f"#r{i}"] = attr
        expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
    names.update(condition_names or _CONDITION_NAMES)
    values.update(condition_values)
    try:
        response = aws.table(table_name).update_item(
            Key={"image_id": image_id},
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues=return_values,
        )
        return True, response.get("Attributes")
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        return False, get(table_name, image_id)


def get(table_name: str, image_id: str) -> dict[str, Any] | None:
    return aws.table(table_name).get_item(Key={"image_id": image_id}, ConsistentRead=True).get("Item")


def record_event(table_name: str, image_id: str, sequencer: str, attributes: dict[str, Any]) -> WriteResult:
    """Write the intake's view of an event (accepted, rejected or deleted) if it is the newest.

    A newer event replaces the record and clears the stages' results of the
    previous version; the same event again changes nothing.
    """
    stamp = now()
    written, item = _update(
        table_name, image_id,
        set_values={**attributes, "sequencer": sequencer, "updated_at": stamp},
        if_not_exists={"created_at": stamp},
        remove=STAGE_ATTRIBUTES,
        condition="attribute_not_exists(#seq) OR #seq < :seq",
        condition_values={":seq": sequencer},
        condition_names={"#seq": "sequencer"},
        return_values="UPDATED_OLD",  # what the record said before: whether an earlier version may have outputs
    )
    if written:
        return WriteResult(WRITTEN, None, (item or {}).get("status"))
    if item is not None and item.get("sequencer") == sequencer:
        return WriteResult(DUPLICATE, item)
    return WriteResult(STALE, item)


def record_stage(table_name: str, image_id: str, sequencer: str, stage: str, result: dict[str, Any],
                 metadata: dict[str, Any] | None = None, known: dict[str, Any] | None = None) -> WriteResult:
    """Store one stage's result for the event `sequencer`, then settle the image's status.

    Nothing is written when the record has moved on to a newer event or is
    already final (a repeated delivery of work that was recorded). `known` is the record as the stage read it:
    when that says this result settles the image, one write stores it and settles, on condition that the other
    stages' results are still the ones read (otherwise the two writes below do it).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    values = {stage: {**result, "updated_at": now()}, **({"metadata": metadata} if metadata else {})}
    settled_at_once = _settle_at_once(table_name, image_id, sequencer, stage, values, known)
    if settled_at_once is not None:
        return settled_at_once
    written, item = _update(
        table_name, image_id, set_values=values,
        condition="#seq = :seq AND #status = :accepted",
        condition_values={":seq": sequencer, ":accepted": ACCEPTED},
    )
    if not written:
        outcome = DUPLICATE if item is not None and item.get("sequencer") == sequencer else STALE
        return WriteResult(outcome, item)
    assert item is not None
    final = _settled_status(item)
    if final is not None:
        status, reason = final
        done, settled = _update(
            table_name, image_id,
            set_values={"status": status, "reason": reason, "updated_at": now()},
            condition="#seq = :seq AND #status = :accepted",
            condition_values={":seq": sequencer, ":accepted": ACCEPTED},
        )
        if done:
            item = settled
    return WriteResult(WRITTEN, item)


def _settle_at_once(table_name: str, image_id: str, sequencer: str, stage: str, values: dict[str, Any],
                    known: dict[str, Any] | None) -> WriteResult | None:
    if known is None or known.get("sequencer") != sequencer or known.get("status") != ACCEPTED:
        return None
    final = _settled_status({**known, **values})
    if final is None:
        return None
    others = [s for s in known.get("expected_stages", []) if s != stage]
    names = {**_CONDITION_NAMES, **({"#st": "status"} if others else {}), **{f"#o{i}": other for i, other in enumerate(others)}}
    written, item = _update(
        table_name, image_id, set_values={**values, "status": final[0], "reason": final[1], "updated_at": now()},
        condition=" AND ".join(["#seq = :seq", "#status = :accepted", *(f"#o{i}.#st = :o{i}" for i in range(len(others)))]),
        condition_values={":seq": sequencer, ":accepted": ACCEPTED,
                          **{f":o{i}": known[other]["status"] for i, other in enumerate(others)}},
        condition_names=names,
    )
    return WriteResult(WRITTEN, item) if written else None


def _settled_status(item: dict[str, Any]) -> tuple[str, str] | None:
    """(status, reason) once every expected stage has a final result, else None."""
    results = {stage: item.get(stage) for stage in item.get("expected_stages", [])}
    if any(r is None or r.get("status") not in FINAL_STAGE_STATES for r in results.values()):
        return None
    failed = [f"{stage}: {r.get('reason', 'failed')}" for stage, r in results.items() if r["status"] == "failed"]
    if failed:
        return FAILED, "; ".join(failed)
    return DONE, ""
