"""python -m ops review: the images a gate stage held back (quarantined), and a person's decision on each.

  list [--out DIR]   newest first, with the labels and confidence that held each back; with --out, DIR/review.html,
                     a page of them whose pictures are presigned GETs of the held-back originals, signed with your
                     credentials (the operator policy may read an original only while it is tagged quarantined) and
                     valid --expires seconds: never public
  approve KEY        release it: it goes on to the other stages as if its gate had passed it
  reject KEY         delete it, every version of the key; its record becomes deleted with the decision as reason

A decision goes to the image's gate as a message on the gate's own queue (contracts.DecisionRequest; operators may
send to every stage's queue for redrive); the gate checks it against the record and writes it there (`decision`:
which, who as STS's GetCallerIdentity names the caller, when, and the version decided on), only while the record
holds that version back and nobody decided yet. Operators hold no write on the table. A decision whose work was
cut short (a publish that failed) is retried by SQS, and asking again sends it again.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from handlers.contracts import DecisionRequest
from handlers.names import LABEL_LIST, Decision, Function, StackOutput, Status
from handlers.records import DECISION, GATE
from ops import gallery, images
from ops.queues import OpsError
from ops.target import Target

LINK_SECONDS = 900  # the review page's presigned GETs: a quarter of an hour
DELETED_WITHIN_S = 30.0  # how long `reject` waits to see the intake record the deletion
DECIDED_WITHIN_S = 60.0  # how long approve and reject wait to see the gate record the decision


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
    """Release a quarantined image: the gate records the decision, the record is accepted again with the gate's
    verdict made a pass, the original's quarantine tag comes off (no lifecycle rule expires it then), and its claim
    check goes to the other stages. Returns the decision as recorded."""
    return _decide(target, images.show(target, key), Decision.APPROVED)


def reject(target: Target, key: str) -> tuple[dict[str, Any], int, str]:
    """Delete a quarantined image for good: the gate records the decision first, then this deletes every version and
    delete marker of the key, unless a version newer than the one held back has arrived (it is screened on its own);
    (the decision, how many were deleted, the record's status once the intake has seen it)."""
    record = images.show(target, key)
    decided = _decide(target, record, Decision.REJECTED)
    s3, bucket = target.client("s3"), record["bucket"]
    listed = [v for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=record["key"])
              for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])] if v["Key"] == record["key"]]
    latest = [v for v in listed if v.get("IsLatest")]
    if latest and latest[0]["VersionId"] != record.get("version_id") and "ETag" in latest[0]:
        raise OpsError(f"{record['key']} has a version newer than the one rejected ({latest[0]['VersionId']}): it is "
                       "screened on its own; nothing was deleted. `review list` shows it if it is held back too")
    versions = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in listed]
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


def _decide(target: Target, record: dict[str, Any], decision: Decision) -> dict[str, Any]:
    """Send the decision to the image's gate, on its own queue, and wait until the record shows it (the gate checks
    it against the record and writes it: operators hold no write on the table). Asked again once it is recorded,
    the same decision is sent again: the gate finishes what an earlier delivery of it began."""
    recorded = record.get(DECISION) or {}
    if not (recorded.get("decision") == decision and recorded.get("version_id") == (record.get("version_id") or "")):
        if record.get("status") != Status.QUARANTINED or not record.get(GATE):
            raise OpsError(f"{record['key']} is {record.get('status')}, not quarantined: there is nothing to "
                           f"{'approve' if decision == Decision.APPROVED else 'reject'} (`review list` shows what is)")
        if recorded:
            raise OpsError(f"{record['key']} was {recorded.get('decision')} by {recorded.get('by')} at "
                           f"{recorded.get('at')} already")
    gate = record.get(GATE) or ""
    request = DecisionRequest(bucket=record["bucket"], key=record["key"], version_id=record.get("version_id") or "",
                              sequencer=record["sequencer"], decision=decision,
                              by=target.client("sts").get_caller_identity()["Arn"],
                              at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"))
    target.client("sqs").send_message(QueueUrl=target.outputs[StackOutput.QUEUE_URLS][gate], MessageBody=request.to_json())
    deadline = time.monotonic() + DECIDED_WITHIN_S
    while True:
        now = images.show(target, record["key"])
        found = now.get(DECISION) or {}
        if found.get("version_id") == request.version_id and found.get("decision"):
            if found["decision"] != decision:
                raise OpsError(f"{record['key']} was {found['decision']} by {found.get('by')} at {found.get('at')}")
            return found
        if now.get("sequencer") != record["sequencer"]:
            raise OpsError(f"{record['key']} changed while you decided (a new version): look again with `review list`")
        if time.monotonic() > deadline:
            raise OpsError(f"the {gate} stage has not recorded the decision within {DECIDED_WITHIN_S:.0f} s: is it "
                           f"paused (`status`)? The decision waits in its queue and is carried out when it runs")
        time.sleep(0.5)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)

