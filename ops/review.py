"""python -m ops review: the images a gate stage held back (quarantined), and a person's decision on each.

  list [--out DIR]   newest first, with the labels and confidence that held each back; with --out, DIR/review.html,
                     a page of them whose pictures are presigned GETs of the held-back originals, signed with your
                     credentials (the operator policy may read an original only while it is tagged quarantined) and
                     valid --expires seconds: never public
  approve KEY        release it: it goes on to the other stages as if its gate had passed it
  reject KEY         delete it, every version of the key; its record becomes deleted with the decision as reason

Each decision is written onto the image's record (`decision`): which, who (the caller, as STS's GetCallerIdentity
names them: it needs no permission), when, and the version decided on. Both are conditional on the record still
holding the version that was held back, and a decision cut short (a publish that failed) is finished by asking
again.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from handlers.failures import error_code
from handlers.names import LABEL_LIST, Decision, Function, StackOutput, StageStatus, Status
from handlers.records import DECISION, GATE, attention_key
from ops import gallery, images
from ops.queues import OpsError
from ops.reprocess import request_for
from ops.target import Target

LINK_SECONDS = 900  # the review page's presigned GETs: a quarter of an hour
DELETED_WITHIN_S = 30.0  # how long `reject` waits to see the intake record the deletion


@dataclass
class Held:
    key: str
    since: str  # when it was held back
    reason: str
    labels: list[dict[str, Any]]  # {name, parent, confidence, level}
    screened: str  # what its gate screened: the original, or a JPEG rendition
    expires: str | None  # when the lifecycle rule removes the original, unless someone decides first
    record: dict[str, Any]


def held(target: Target, limit: int = 50) -> list[Held]:
    """The quarantined images, newest first (from the attention index: a Query per shard, then each record)."""
    days = int(target.outputs.get(StackOutput.REJECTED_RETENTION_DAYS) or 0)
    found = []
    for item in images.listed(target, Status.QUARANTINED, limit):
        record = images.show(target, item["key"])
        verdict = record.get(record.get(GATE) or "") or {}
        screened = verdict.get("screened") or {}
        found.append(Held(record["key"], record.get("updated_at", ""), record.get("reason") or "",
                          list(verdict.get(LABEL_LIST) or []),
                          "original" if screened.get("rendition") == "original" else
                          f"jpeg rendition {screened.get('width')}x{screened.get('height')}" if screened else "-",
                          images.expiry(record.get("event_time", ""), days), record))
    return found


def page(target: Target, found: list[Held], out: Path, expires: int = LINK_SECONDS) -> Path:
    """DIR/review.html: each held-back original through a presigned GET of its very version."""
    s3 = target.client("s3")

    def link(key: str, output: dict[str, Any]) -> str:
        return s3.generate_presigned_url("get_object", ExpiresIn=expires, Params={
            "Bucket": target.outputs[StackOutput.UPLOADS_BUCKET], "Key": key, "VersionId": output["key"]})

    shown = [{"key": h.key, "status": Status.QUARANTINED, "reason": h.reason, "format": h.record.get("format"),
              "width": _int(h.record.get("width")), "height": _int(h.record.get("height")),
              Function.THUMBNAILS: [{"key": h.record.get("version_id"), "width": _int(h.record.get("width")),
                                     "height": _int(h.record.get("height")), "bytes": _int(h.record.get("size"))}],
              Function.LABELS: [{"name": f"{label['name']} {float(label['confidence']):.1f}%"} for label in h.labels],
              "labels_emulated": False, "camera": None, "taken_at": None} for h in found]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "review.html"
    title = f"claimcheck {target.name}: {len(found)} image(s) held back for review (links valid {expires} s)"
    path.write_text(gallery.page(shown, link, title, emulated=target.emulated), encoding="utf-8")
    return path


def approve(target: Target, key: str) -> dict[str, Any]:
    """Release a quarantined image: its record is accepted again with its gate's verdict made a pass, its original's
    quarantine tag comes off (no lifecycle rule expires it then), and its claim check goes to the other stages."""
    record = images.show(target, key)
    decided = record.get(DECISION) or {}
    again = (record.get("status") == Status.ACCEPTED and decided.get("decision") == Decision.APPROVED
             and decided.get("version_id") == record.get("version_id"))
    if not again:
        _held_back(record, "approve")
        decided = _decision(target, record, Decision.APPROVED)
        gate = record[GATE]
        _write(target, record, decided, gate_passed=gate, values={
            ":accepted": {"S": Status.ACCEPTED}, ":attention": {"S": attention_key(Status.ACCEPTED, record["image_id"])},
            ":done": {"S": StageStatus.DONE}, ":held": {"S": StageStatus.HELD}})
    version = {"Bucket": record["bucket"], "Key": record["key"],
               **({"VersionId": record["version_id"]} if record.get("version_id") else {})}
    try:
        target.client("s3").delete_object_tagging(**version)
    except ClientError as error:
        # Asked again after the tag came off: the policy lets an operator tag an original only while it is held.
        if not again or error_code(error) not in ("AccessDenied", "403"):
            raise
    claim = request_for(record, created=True)
    target.client("sns").publish(TopicArn=target.outputs[StackOutput.CLAIM_CHECK_TOPIC_ARN], Message=claim.to_json(),
                                 MessageAttributes=claim.message_attributes(passed=True))
    return decided


def reject(target: Target, key: str) -> tuple[dict[str, Any], int, str]:
    """Delete a quarantined image for good: the decision goes onto its record first, then every version and delete
    marker of the key; (the decision, how many were deleted, the record's status once the intake has seen it)."""
    record = images.show(target, key)
    decided = record.get(DECISION) or {}
    if not (decided.get("decision") == Decision.REJECTED and decided.get("version_id") == record.get("version_id")):
        _held_back(record, "reject")
        decided = _decision(target, record, Decision.REJECTED)
        _write(target, record, decided)
    s3, bucket = target.client("s3"), record["bucket"]
    versions = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=record["key"])
                for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])] if v["Key"] == record["key"]]
    for start in range(0, len(versions), 1000):
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": versions[start:start + 1000], "Quiet": True})
        if answer.get("Errors"):
            error = answer["Errors"][0]
            raise OpsError(f"S3 did not delete {error.get('Key')} version {error.get('VersionId')}: {error.get('Code')} "
                           f"{error.get('Message')}; run `review reject` again")
    deadline = time.monotonic() + DELETED_WITHIN_S
    status = record.get("status", "")
    while status != Status.DELETED and time.monotonic() < deadline:
        time.sleep(1)
        status = images.show(target, key).get("status", "")
    return decided, len(versions), status


def _held_back(record: dict[str, Any], verb: str) -> None:
    if record.get("status") != Status.QUARANTINED or not record.get(GATE):
        raise OpsError(f"{record['key']} is {record.get('status')}, not quarantined: there is nothing to {verb} "
                       "(`review list` shows what is)")


def _decision(target: Target, record: dict[str, Any], decision: Decision) -> dict[str, Any]:
    who = target.client("sts").get_caller_identity()["Arn"]
    when = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    decided = {"decision": decision, "by": who, "at": when, "version_id": record.get("version_id") or ""}
    if decision == Decision.REJECTED:
        decided["reason"] = f"rejected by {who} at {when}: every version deleted"
    return decided


def _write(target: Target, record: dict[str, Any], decided: dict[str, Any], gate_passed: str | None = None,
           values: dict[str, Any] | None = None) -> None:
    """The decision onto the record, on condition it still holds the version that was held back, quarantined;
    `gate_passed`: also make it accepted, its gate's verdict a pass."""
    names = {"#d": DECISION, "#status": "status", "#seq": "sequencer"}
    update = "SET #d = :d"
    if gate_passed:
        names.update({"#g": gate_passed, "#st": "status", "#a": "attention", "#r": "reason"})
        update += ", #status = :accepted, #a = :attention, #g.#st = :done, #r = :none"
        values = {**(values or {}), ":none": {"S": ""}}
    condition = "#status = :quarantined AND #seq = :seq" + (" AND #g.#st = :held" if gate_passed else "")
    try:
        target.client("dynamodb").update_item(
            TableName=target.outputs[StackOutput.TABLE_NAME], Key={"image_id": {"S": record["image_id"]}},
            UpdateExpression=update, ConditionExpression=condition, ExpressionAttributeNames=names,
            ExpressionAttributeValues={":d": {"M": {k: {"S": str(v)} for k, v in decided.items()}},
                                       ":quarantined": {"S": Status.QUARANTINED}, ":seq": {"S": record["sequencer"]},
                                       **(values or {})})
    except target.client("dynamodb").exceptions.ConditionalCheckFailedException:
        raise OpsError(f"{record['key']} changed while you decided (a new version, or someone else's decision): "
                       "look again with `review list`") from None


def _int(value: Any) -> int | None:
    return None if value is None else int(value)

