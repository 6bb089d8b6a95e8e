"""The image record in the results table: one item per image, keyed by image id.

Every write is conditional on the S3 sequencer the record reflects, so events that arrive twice or out of order
change nothing, and each stage writes only its own attribute (`thumbnails`, `labels`). A write whose condition
fails hands back the item that stopped it (ReturnValuesOnConditionCheckFailure), never a second read.
`ImageRecord` is what the stages read of an item.

While an image may need a person (accepted and not yet settled, rejected, failed) its record carries `attention`,
the partition key of the table's sparse index ATTENTION_INDEX (sorted by `updated_at`), in the same write that
sets its status; the write that settles it as done or deleted removes it. So the operator tools list what needs
attention without scanning the table, and the index holds only those records.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from handlers import aws
from handlers.names import ATTENTION_SHARDS, FOCAL_POINT, NEEDS_ATTENTION, ClaimEvent, StageStatus, Status

# Attributes of the stages' results besides each stage's own (named after it); a newer event clears them with the old
# version's results. (A reprocess that failed leaves a note under the event's name; a newer event clears it too.)
RESULT_ATTRIBUTES = ("metadata", ClaimEvent.REPROCESS, FOCAL_POINT, "phash", "duplicate_of", "duplicate_distance")
ATTENTION = "attention"
# The gate stage whose verdict decides the image's fate, when the stack has one: the last of its gates (the intake
# writes it: handlers/stages.py, gates); with several, GATES lists them all, in the order the image meets them.
GATE = "gate"
GATES = "gates"
# A person's decision on an image its gate held back ({decision, by, at, version_id, reason}): a new version clears
# it; a deletion keeps it, since it may be why the key was deleted.
DECISION = "decision"


# A rendition's content type or key extension -> its format.
_FORMAT_OF = {"image/jpeg": "jpeg", "image/png": "png", "image/webp": "webp", "image/avif": "avif",
              "jpg": "jpeg", "png": "png", "webp": "webp", "avif": "avif"}


def renditions(outputs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The thumbnail stage's outputs (one per box) as stored renditions, each once, in the order of their first box,
    with its `format` and `boxes`: every box it serves (a photo smaller than several boxes has one rendition for all
    of them). A page builds one `srcset` per format (a <picture>'s <source type>), each width once: a repeated width
    descriptor makes the attribute invalid (HTML Standard, "srcset attributes")."""
    stored: dict[str, dict[str, Any]] = {}
    for output in outputs:
        shown = stored.setdefault(output["key"], {**{k: v for k, v in output.items() if k != "box"}, "boxes": []})
        # A record made before outputFormats names no format: its content type (or key) says it.
        shown.setdefault("format", _FORMAT_OF.get(str(output.get("content_type") or output["key"].rsplit(".", 1)[-1])))
        if "box" in output:
            shown["boxes"].append(output["box"])
    return list(stored.values())


def gated(gates: list[str]) -> dict[str, Any]:
    """The attributes an accepted image's record names its gates with (`gates` in the order it meets them)."""
    if not gates:
        return {}
    return {GATE: gates[-1], **({GATES: gates} if len(gates) > 1 else {})}


def attention_key(status: str, image_id: str) -> str:
    """The index partition an image of `status` belongs to: the status and one of ATTENTION_SHARDS shards (the
    image id's first hex digit), because one partition of an index takes at most 1,000 writes a second and a
    throttled index throttles the table's own writes (DynamoDB Developer Guide, "Partitions and data distribution";
    AWS Knowledge Center, "Why is my DynamoDB global secondary index throttled?")."""
    return f"{status}#{int(image_id[0], 16) % ATTENTION_SHARDS:x}"


def _attention(status: str, image_id: str) -> tuple[dict[str, str], tuple[str, ...]]:
    """(attributes to set, attributes to remove) for the index, in the write that gives the record `status`."""
    if status in NEEDS_ATTENTION:
        return {ATTENTION: attention_key(status, image_id)}, ()
    return {}, (ATTENTION,)


class Outcome(StrEnum):
    WRITTEN = "written"
    DUPLICATE = "duplicate"  # the same sequencer is recorded already
    STALE = "stale"  # a newer one is


@dataclass(frozen=True)
class ImageRecord:
    """What the stages read of an image record; `item` is the whole item."""

    item: Mapping[str, Any]

    @classmethod
    def of(cls, item: Mapping[str, Any] | None) -> ImageRecord | None:
        return None if item is None else cls(item)

    @property
    def status(self) -> str | None:
        return self.item.get("status")

    @property
    def sequencer(self) -> str:
        return str(self.item.get("sequencer", ""))

    @property
    def version_id(self) -> str | None:
        return self.item.get("version_id")

    @property
    def etag(self) -> str | None:
        return self.item.get("etag")

    @property
    def format(self) -> str | None:
        return self.item.get("format")

    @property
    def size(self) -> int | None:
        return None if self.item.get("size") is None else int(self.item["size"])

    def names(self, version_id: str | None, etag: str | None, fmt: str | None, size: int) -> bool:
        """Whether the record is about exactly this object: its version, ETag, format and size (the intake read the
        ETag and size from S3 and the format from the bytes; a claim check that names others is not one the intake
        published, and a stage that believed its size could judge the image by a figure S3 never gave)."""
        return (self.version_id, self.etag, self.format, self.size) == (version_id, etag, fmt, size)

    @property
    def expected_stages(self) -> list[str]:
        return list(self.item.get("expected_stages") or [])

    @property
    def gate(self) -> str | None:
        return self.item.get(GATE) or None

    @property
    def gates(self) -> list[str]:
        """Its gates in the order it meets them (none, one, or several in a row)."""
        return list(self.item.get(GATES) or ([self.gate] if self.gate else []))

    @property
    def decision(self) -> Mapping[str, Any]:
        return self.item.get(DECISION) or {}

    def admits(self, stage: str) -> bool:
        """Whether `stage` may work on the image: every gate before it (all of them, for a stage that is not one)
        passed it."""
        gates = self.gates
        before = gates[:gates.index(stage)] if stage in gates else gates
        return all((self.result(gate) or {}).get("status") == StageStatus.DONE for gate in before)

    def result(self, stage: str) -> Mapping[str, Any] | None:
        """A stage's result ({status, reason, …}), or None while it has none."""
        return self.item.get(stage)

    def awaits(self, sequencer: str) -> bool:
        """Whether the record still waits for the work of the event `sequencer` (not stale, not settled)."""
        return self.sequencer == sequencer and self.status == Status.ACCEPTED

    @property
    def made_by_its_event(self) -> bool:
        """Whether the record was created by the event it reflects: then no earlier version of the key had outputs
        (the intake stamps created_at and updated_at in the same write the first time, and only updated_at after)."""
        created = self.item.get("created_at")
        return bool(created) and created == self.item.get("updated_at")

    def settled(self) -> tuple[Status, str] | None:
        """(status, reason) once every expected stage has a result (each is final), else None; as soon as its gate
        holds it back (quarantined) or fails, since no other stage will see it then."""
        for name in self.gates:
            gate = self.result(name) or {}
            if gate.get("status") == StageStatus.HELD:
                return Status.QUARANTINED, str(gate.get("reason") or "")
            if gate.get("status") == StageStatus.REJECTED:
                return Status.REJECTED, str(gate.get("reason") or "")
            if gate.get("status") == StageStatus.FAILED:
                return Status.FAILED, f"{name}: {gate.get('reason') or gate['status']}"
        results = {stage: self.result(stage) for stage in self.expected_stages}
        if any(r is None or r.get("status") not in StageStatus.__members__.values() for r in results.values()):
            return None
        failed = [f"{stage}: {r.get('reason') or r['status']}" for stage, r in results.items()
                  if r is not None and r["status"] == StageStatus.FAILED]
        if failed:
            return Status.FAILED, "; ".join(failed)
        return Status.DONE, ""


@dataclass(frozen=True)
class WriteResult:
    outcome: Outcome
    record: ImageRecord | None  # after the write; when it was refused, the record that refused it
    previous_status: str | None = None  # for an intake write: the status the record had before it (None: no record)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_CONDITION_NAMES = {"#seq": "sequencer", "#status": "status"}
_deserialize = TypeDeserializer().deserialize


def _update(table_name: str, image_id: str, set_values: dict[str, Any], condition: str,
            condition_values: dict[str, Any], remove: tuple[str, ...] = (), if_not_exists: dict[str, Any] | None = None,
            return_values: str = "ALL_NEW", condition_names: dict[str, str] | None = None,
            ) -> tuple[bool, dict[str, Any] | None]:
    """One conditional UpdateItem. Returns (written, item): what `return_values` asks for, or, when the condition
    failed, the item that failed it, as DynamoDB hands it back with the error (UpdateItem's
    ReturnValuesOnConditionCheckFailure=ALL_OLD; the exception's `Item`, in the API's typed form)."""
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
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        return True, response.get("Attributes")
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        item = exc.response.get("Item")
        return False, {name: _deserialize(value) for name, value in item.items()} if item else None


def get(table_name: str, image_id: str) -> ImageRecord | None:
    """The record as it is now: a strongly consistent read (an eventually consistent one may miss the intake's
    write, and a stage would then take its claim check for stale)."""
    return ImageRecord.of(aws.table(table_name).get_item(Key={"image_id": image_id}, ConsistentRead=True).get("Item"))


def record_event(table_name: str, image_id: str, sequencer: str, attributes: dict[str, Any], *,
                 stages: Iterable[str], replacing: str | None = None) -> WriteResult:
    """Write the intake's view of an event (accepted, rejected or deleted) if it is the newest.

    A newer event replaces the record and clears the results of the previous version (each of `stages` writes its own
    under its name); the same event again changes nothing. `replacing`: write over a record that holds exactly this
    (later) sequencer, which the intake found no event of S3's current version could pass.
    """
    stamp = now()
    indexed, unindexed = _attention(attributes["status"], image_id)
    # A new version has no gate but the one the intake names, and no decision yet; a deletion keeps the decision.
    cleared = [a for a in (GATE, GATES, DECISION) if a not in attributes and not (a == DECISION and attributes["status"] == Status.DELETED)]
    written, item = _update(
        table_name, image_id,
        set_values={**attributes, **indexed, "sequencer": sequencer, "updated_at": stamp},
        if_not_exists={"created_at": stamp},
        remove=(*stages, *RESULT_ATTRIBUTES, *unindexed, *cleared),
        condition="attribute_not_exists(#seq) OR #seq < :seq" if replacing is None else "#seq = :seq",
        condition_values={":seq": sequencer if replacing is None else replacing},
        condition_names={"#seq": "sequencer"},
        return_values="UPDATED_OLD",  # what the record said before: whether an earlier version may have outputs
    )
    if written:
        return WriteResult(Outcome.WRITTEN, None, (item or {}).get("status"))
    record = ImageRecord.of(item)
    if record is not None and record.sequencer == sequencer:
        return WriteResult(Outcome.DUPLICATE, record)
    return WriteResult(Outcome.STALE, record)


def record_stage(table_name: str, image_id: str, sequencer: str, stage: str, result: dict[str, Any],
                 metadata: dict[str, Any] | None = None, known: ImageRecord | None = None,
                 shared: Mapping[str, Any] | None = None, shared_if_absent: Mapping[str, Any] | None = None,
                 ) -> WriteResult:
    """Store one stage's result for the event `sequencer`, then settle the image's status.

    `shared`: top-level record attributes of its result, set in the same write (a page reads them,
    handlers/upload_status.py: the focal point, the pHash and duplicate_of); `shared_if_absent`: set only where no
    stage gave them yet (DynamoDB's if_not_exists), so a better source written first stays.

    Nothing is written when the record has moved on to a newer event or is
    already final (a repeated delivery of work that was recorded). `known` is the record as the stage read it:
    when that says this result settles the image, one write stores it and settles, on condition that the other
    stages' results are still the ones read (otherwise the two writes below do it).
    """
    values = {stage: {**result, "updated_at": now()}, **({"metadata": metadata} if metadata else {}), **(shared or {})}
    absent = dict(shared_if_absent or {})
    settled_at_once = _settle_at_once(table_name, image_id, sequencer, stage, values, known, absent)
    if settled_at_once is not None:
        return settled_at_once
    written, item = _update(
        table_name, image_id, set_values=values, if_not_exists=absent,
        condition="#seq = :seq AND #status = :accepted",
        condition_values={":seq": sequencer, ":accepted": Status.ACCEPTED},
    )
    record = ImageRecord.of(item)
    if not written:
        outcome = Outcome.DUPLICATE if record is not None and record.sequencer == sequencer else Outcome.STALE
        return WriteResult(outcome, record)
    assert record is not None
    final = record.settled()
    if final is not None:
        status, reason = final
        indexed, unindexed = _attention(status, image_id)
        done, settled = _update(
            table_name, image_id,
            set_values={"status": status, "reason": reason, **indexed, "updated_at": now()}, remove=unindexed,
            condition="#seq = :seq AND #status = :accepted",
            condition_values={":seq": sequencer, ":accepted": Status.ACCEPTED},
        )
        if done:
            record = ImageRecord.of(settled)
    return WriteResult(Outcome.WRITTEN, record)


def record_reprocessed(table_name: str, image_id: str, sequencer: str, stage: str, result: dict[str, Any],
                       made_with: str | None, shared_if_absent: Mapping[str, Any] | None = None) -> WriteResult:
    """Replace a done image's result of `stage` with one made with other settings, unless the record moved on since
    it was read: a newer event, or the result already made again (`made_with`: the settings the stage found).
    `shared_if_absent`: as record_stage's (an image done before the focal point existed gets one)."""
    made = "attribute_not_exists(#t.#set)" if made_with is None else "#t.#set = :made"
    written, item = _update(
        table_name, image_id, set_values={stage: {**result, "updated_at": now()}, "updated_at": now()},
        if_not_exists=dict(shared_if_absent or {}),
        remove=(ClaimEvent.REPROCESS,),
        condition=f"#seq = :seq AND #status = :done AND {made}",
        condition_values={":seq": sequencer, ":done": Status.DONE, **({":made": made_with} if made_with else {})},
        condition_names={**_CONDITION_NAMES, "#t": stage, "#set": "settings"})
    return WriteResult(Outcome.WRITTEN if written else Outcome.STALE, ImageRecord.of(item))


def record_verdict_on_done(table_name: str, image_id: str, sequencer: str, gate: str, result: dict[str, Any],
                           status: Status) -> bool:
    """A gate's verdict on a done image it never saw (done before the gate was deployed; a reprocess request brought
    it): the image now names its gate and the result, and is quarantined when `status` says so. False when the record
    moved on, or the gate's verdict is there already."""
    stamp = now()
    values: dict[str, Any] = {gate: {**result, "updated_at": stamp}, GATE: gate, "updated_at": stamp}
    if status != Status.DONE:
        values.update({"status": status, "reason": result.get("reason", ""), **_attention(status, image_id)[0]})
    written, _ = _update(
        table_name, image_id, set_values=values,
        condition="#seq = :seq AND #status = :done AND attribute_not_exists(#g)",
        condition_values={":seq": sequencer, ":done": Status.DONE}, condition_names={**_CONDITION_NAMES, "#g": gate})
    return written


def record_decision(table_name: str, current: ImageRecord, gate: str, decided: dict[str, Any], approved: bool) -> bool:
    """A person's decision on the image `gate` held back, written by the gate, on condition that the record still
    holds it back at the same sequencer and nobody decided about it yet (one decision per held version). Approved:
    the record is accepted again, the gate's verdict a pass (its labels kept), and the results other stages left
    from an earlier pass (a reprocess held a done image back) are removed, so they work afresh. False when the
    record moved on."""
    stamp = now()
    values: dict[str, Any] = {DECISION: decided, "updated_at": stamp}
    remove: tuple[str, ...] = ()
    if approved:
        indexed, _ = _attention(Status.ACCEPTED, current.item["image_id"])
        values.update({"status": Status.ACCEPTED, "reason": "", **indexed,
                       gate: {**(current.result(gate) or {}), "status": StageStatus.DONE, "updated_at": stamp}})
        # the gates before this one passed it: their results stay
        remove = tuple(stage for stage in current.expected_stages if stage not in current.gates and stage in current.item)
    written, _ = _update(
        table_name, current.item["image_id"], set_values=values, remove=remove,
        condition="#seq = :seq AND #status = :quarantined AND #g.#st = :held AND attribute_not_exists(#d)",
        condition_values={":seq": current.sequencer, ":quarantined": Status.QUARANTINED, ":held": StageStatus.HELD},
        condition_names={**_CONDITION_NAMES, "#g": gate, "#st": "status", "#d": DECISION})
    return written


def record_reprocess_failure(table_name: str, image_id: str, sequencer: str, note: dict[str, Any]) -> bool:
    """Note on a done image that making its thumbnails again failed (they stay as they were); False if it moved on."""
    written, _ = _update(
        table_name, image_id, set_values={ClaimEvent.REPROCESS: {**note, "updated_at": now()}},
        condition="#seq = :seq AND #status = :done", condition_values={":seq": sequencer, ":done": Status.DONE})
    return written


def _settle_at_once(table_name: str, image_id: str, sequencer: str, stage: str, values: dict[str, Any],
                    known: ImageRecord | None, absent: dict[str, Any]) -> WriteResult | None:
    if known is None or not known.awaits(sequencer):
        return None
    final = ImageRecord({**known.item, **values}).settled()
    if final is None:
        return None
    others = [s for s in known.expected_stages if s != stage]
    indexed, unindexed = _attention(final[0], image_id)
    names = {**_CONDITION_NAMES, **({"#st": "status"} if others else {}), **{f"#o{i}": other for i, other in enumerate(others)}}
    written, item = _update(
        table_name, image_id, set_values={**values, "status": final[0], "reason": final[1], **indexed, "updated_at": now()},
        if_not_exists=absent, remove=unindexed, condition=" AND ".join(["#seq = :seq", "#status = :accepted", *(f"#o{i}.#st = :o{i}" for i in range(len(others)))]),
        condition_values={":seq": sequencer, ":accepted": Status.ACCEPTED,
                          **{f":o{i}": (known.result(other) or {}).get("status") for i, other in enumerate(others)}},
        condition_names=names,
    )
    return WriteResult(Outcome.WRITTEN, ImageRecord.of(item)) if written else None


def plain(value: Any) -> Any:
    """A record's values as JSON takes them: DynamoDB's numbers (Decimal) as int or float, sets as sorted lists, binary
    as text (the status route's answer, the image events' detail)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in (sorted(value) if isinstance(value, set) else value)]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
