"""Onboarding a bucket that already holds images: every object under a prefix (ListObjectsV2) or in an S3 Inventory
list (its manifest.json and CSV files) goes to the stack's backfill function (handlers/backfill.py), a few tasks an
invocation in S3 Batch Operations' own request, which puts it on the intake's path as an upload would be.

At most `rate` objects a second go out, so live uploads keep their share of the intake's stages. After each
invocation the place reached, the tallies and the keys still on their way are written to a checkpoint (a new file
moved over the old: a kill leaves one or the other, whole), so the same command after a kill goes on from there; a
batch sent twice is harmless (the function skips what its record names at the current version). At the end it
waits for the accepted objects' records to settle, and reports processed (done), skipped, rejected and failed.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_plus

from boto3.dynamodb.types import TypeDeserializer

from handlers.backfill import Outcome, ResultCode
from handlers.contracts import image_id
from handlers.names import SETTLED, UPLOADS_PREFIX, StackOutput, Status
from ops.queues import OpsError
from ops.reprocess import RateLimit
from ops.target import Target

DEFAULT_RATE = 20.0  # objects a second
BATCH = 10  # tasks an invocation: one invocation's round trip per ten objects, and a kill repeats ten at most
TEMPORARY_TRIES = 5  # a task the function answers TemporaryFailure is sent again this many times, as Batch Operations does
LOOK_EVERY_S = 2.0  # how often the records of the objects on their way are read
# The oldest this many of them each time, one read each: a small share of the table (and, locally, of the emulator
# the stages need) while objects are being sent; more once only the wait is left.
LOOK_AT, LOOK_AT_THE_END = 50, 200
SHOWN_FAILURES = 20  # failures kept with their reasons for the report (all are counted)
_deserialize = TypeDeserializer().deserialize


@dataclass
class Tally:
    processed: int = 0  # accepted, and settled done
    skipped: int = 0  # already judged at its current version, superseded, or deleted meanwhile
    rejected: int = 0  # not an image the pipeline takes: its record says why
    failed: int = 0  # the task failed for good, or a stage failed it
    quarantined: int = 0  # a gate stage held it back for a person (`review list`)
    pending: list[str] = field(default_factory=list)  # accepted, not yet settled
    failures: list[dict[str, str]] = field(default_factory=list)  # the first SHOWN_FAILURES, with reasons
    sent: int = 0  # objects sent, this run and the runs it resumed

    def fail(self, key: str, reason: str) -> None:
        self.failed += 1
        if len(self.failures) < SHOWN_FAILURES:
            self.failures.append({"key": key, "reason": reason})

    @property
    def accounted(self) -> int:
        return self.processed + self.skipped + self.rejected + self.failed + self.quarantined + len(self.pending)


@dataclass
class Run:
    source: str  # the prefix's or the manifest's description
    tally: Tally
    resumed_from: int = 0  # objects the checkpoint said earlier runs had sent
    settled: bool = False  # every accepted object's record settled before the wait ended


@dataclass(frozen=True)
class Item:
    key: str
    version_id: str | None
    position: dict[str, Any]  # where the walk is once this item is sent


# --- sources -------------------------------------------------------------------------------------------------------

def listed(target: Target, prefix: str, after: str | None) -> Iterator[Item]:
    """Every object under uploads/<prefix>, in key order, after the key `after`."""
    s3, bucket = target.client("s3"), target.outputs[StackOutput.UPLOADS_BUCKET]
    token: dict[str, str] = {"StartAfter": after} if after else {}
    while True:
        page = s3.list_objects_v2(Bucket=bucket, Prefix=UPLOADS_PREFIX + prefix, **token)
        for entry in page.get("Contents", []):
            yield Item(entry["Key"], None, {"after": entry["Key"]})
        if not page.get("IsTruncated"):
            return
        token = {"ContinuationToken": page["NextContinuationToken"]}


def inventoried(target: Target, manifest: str, at: dict[str, Any] | None) -> Iterator[Item]:
    """The current objects an S3 Inventory list holds, from its manifest.json: `fileSchema` names the CSV columns,
    `files` the gzipped CSV files in the destination bucket, keys URL-encoded (S3 User Guide, "Locating your inventory
    list" and "Amazon S3 Inventory list"). `manifest`: s3://bucket/key, or a file here whose CSV files lie beside it."""
    document = json.loads(_read(target, manifest, None))
    if document.get("fileFormat") != "CSV":
        raise OpsError(f"{manifest}: an inventory in {document.get('fileFormat')!r}; backfill reads CSV inventories")
    columns = [name.strip() for name in str(document.get("fileSchema", "")).split(",")]
    if "Key" not in columns or "Bucket" not in columns:
        raise OpsError(f"{manifest}: its fileSchema ({document.get('fileSchema')!r}) has no Bucket and Key columns")
    uploads = target.outputs[StackOutput.UPLOADS_BUCKET]
    if document.get("sourceBucket") not in (None, uploads):
        raise OpsError(f"{manifest} lists the bucket {document['sourceBucket']}; this stack's uploads bucket is {uploads}")
    destination = str(document.get("destinationBucket", "")).rpartition(":")[2]
    start_file, start_line = (at or {}).get("file", 0), (at or {}).get("line", 0)
    for index, entry in enumerate(document.get("files", [])):
        if index < start_file:
            continue
        rows = csv.reader(io.StringIO(gzip.decompress(_read(target, manifest, (destination, entry["key"]))).decode()))
        for line, row in enumerate(rows, start=1):
            if index == start_file and line <= start_line:
                continue
            values = dict(zip(columns, row, strict=False))
            key = unquote_plus(values["Key"])
            if values.get("IsDeleteMarker") == "true" or values.get("IsLatest") == "false" \
                    or not key.startswith(UPLOADS_PREFIX):
                continue  # not a current object under uploads/: nothing the pipeline would take
            yield Item(key, values.get("VersionId") or None, {"file": index, "line": line})


def _read(target: Target, manifest: str, data: tuple[str, str] | None) -> bytes:
    """The manifest (`data` None) or one of its data files (destination bucket, key)."""
    if manifest.startswith("s3://"):
        bucket, _, key = manifest[len("s3://"):].partition("/")
        if data is not None:
            bucket, key = data
        return bytes(target.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    path = Path(manifest) if data is None else Path(manifest).parent / Path(data[1]).name
    try:
        return path.read_bytes()
    except OSError as exc:
        raise OpsError(f"{path} cannot be read: {exc.strerror}") from None


# --- the run -------------------------------------------------------------------------------------------------------

def checkpoint_path(target: Target, source: str) -> Path:
    digest = hashlib.sha256(f"{target.outputs[StackOutput.TABLE_NAME]}|{source}".encode()).hexdigest()[:16]
    return target.state_dir / f"backfill-{digest}.json"


def _save(path: Path, source: str, position: dict[str, Any] | None, tally: Tally) -> None:
    """Written whole or not at all: a new file, flushed to disk, renamed over the old (rename is atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w") as file:
        json.dump({"source": source, "position": position, "tally": asdict(tally)}, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def backfill(target: Target, prefix: str = "", manifest: str | None = None, rate: float = DEFAULT_RATE,
             restart: bool = False, wait_seconds: float = 600.0, batch: int = BATCH,
             show: Callable[[Tally, str], None] = lambda t, phase: None, limiter: RateLimit | None = None) -> Run:
    function = target.outputs.get(StackOutput.BACKFILL_FUNCTION_NAME)
    if not function:
        raise OpsError(f"the stack {target.name} has no backfill function: it was deployed by an earlier version; "
                       "run `pulumi up` to add it")
    source = f"manifest {manifest}" if manifest else f"prefix {UPLOADS_PREFIX}{prefix}"
    path = checkpoint_path(target, source)
    tally, position, resumed = Tally(), None, 0
    if path.exists() and not restart:
        saved = json.loads(path.read_text())
        tally, position = Tally(**saved["tally"]), saved["position"]
        resumed = tally.sent
    items = inventoried(target, manifest, position) if manifest else listed(target, prefix, (position or {}).get("after"))
    limiter = limiter or RateLimit(rate)
    looked = time.monotonic()
    chunk: list[Item] = []
    for item in items:
        limiter.wait()
        chunk.append(item)
        if len(chunk) >= batch:
            position = _sent(target, function, chunk, tally, path, source)
            chunk = []
            show(tally, "sending")
        if time.monotonic() - looked >= LOOK_EVERY_S:
            _settle(target, tally, LOOK_AT)
            looked = time.monotonic()
    if chunk:
        position = _sent(target, function, chunk, tally, path, source)
    deadline = time.monotonic() + wait_seconds
    while True:
        _settle(target, tally, LOOK_AT_THE_END)
        _save(path, source, position, tally)
        show(tally, "settling")
        if not tally.pending or time.monotonic() >= deadline:
            break
        time.sleep(LOOK_EVERY_S)
    run = Run(source, tally, resumed, settled=not tally.pending)
    if run.settled:
        path.unlink(missing_ok=True)  # finished: the same command starts afresh next time
    return run


def _sent(target: Target, function: str, items: list[Item], tally: Tally, path: Path, source: str) -> dict[str, Any]:
    """Send `items`, then write the checkpoint past them; returns the position reached."""
    _send(target, function, items, tally)
    _save(path, source, items[-1].position, tally)
    return items[-1].position


def _send(target: Target, function: str, items: list[Item], tally: Tally) -> None:
    """One invocation with S3 Batch Operations' request for `items`; what fails for now is sent again (at most
    TEMPORARY_TRIES times, backing off), then counted failed with the function's reason."""
    bucket = target.outputs[StackOutput.UPLOADS_BUCKET]
    waiting = {str(i): item for i, item in enumerate(items)}
    reasons: dict[str, str] = {}
    for attempt in range(TEMPORARY_TRIES):
        if not waiting:
            break
        if attempt:
            time.sleep(min(2.0 ** attempt, 30.0))
        request = {"invocationSchemaVersion": "2.0", "invocationId": str(uuid.uuid4()), "job": {"id": "ops-backfill"},
                   "tasks": [{"taskId": task, "s3Bucket": bucket, "s3Key": quote(item.key),
                              "s3VersionId": item.version_id} for task, item in waiting.items()]}
        answer = target.client("lambda").invoke(FunctionName=function, Payload=json.dumps(request).encode())
        reply = json.loads(answer["Payload"].read() or b"null")
        if answer.get("FunctionError"):
            message = reply.get("errorMessage") if isinstance(reply, dict) else reply
            raise OpsError(f"the backfill function failed: {message}")
        for result in reply["results"]:
            item = waiting[result["taskId"]]
            if result["resultCode"] == ResultCode.TEMPORARY_FAILURE:
                reasons[result["taskId"]] = result["resultString"]
                continue
            del waiting[result["taskId"]]
            outcome, _, reason = str(result["resultString"]).partition(": ")
            _count(tally, item.key, outcome, reason)
    for task, item in waiting.items():
        tally.fail(item.key, f"still failing after {TEMPORARY_TRIES} tries: {reasons.get(task, '')}")
    tally.sent += len(items)


def _count(tally: Tally, key: str, outcome: str, reason: str) -> None:
    if outcome == Outcome.ACCEPTED:
        tally.pending.append(key)
    elif outcome == Outcome.SKIPPED:
        tally.skipped += 1
    elif outcome == Outcome.REJECTED:
        tally.rejected += 1
    else:
        tally.fail(key, reason or outcome)


def _settle(target: Target, tally: Tally, limit: int) -> None:
    """Count the objects on their way whose records have settled since (of the oldest `limit`: those sent first
    settle first, mostly). Those still on their way go to the back, so keys stuck `accepted` (a stage message
    dead-lettered) cannot hide the rest from every later look."""
    if not tally.pending:
        return
    dynamodb, table = target.client("dynamodb"), target.outputs[StackOutput.TABLE_NAME]
    bucket = target.outputs[StackOutput.UPLOADS_BUCKET]
    still = []
    for key in tally.pending[:limit]:
        item = dynamodb.get_item(TableName=table, ConsistentRead=True,
                                 Key={"image_id": {"S": image_id(bucket, key)}}).get("Item") or {}
        status = _deserialize(item["status"]) if "status" in item else None
        if status not in SETTLED:
            still.append(key)
        elif status == Status.DONE:
            tally.processed += 1
        elif status == Status.REJECTED:
            tally.rejected += 1
        elif status == Status.QUARANTINED:
            tally.quarantined += 1
        elif status == Status.FAILED:
            tally.fail(key, str(_deserialize(item["reason"])) if "reason" in item else Status.FAILED)
        else:  # deleted meanwhile: nothing left to process
            tally.skipped += 1
    tally.pending = tally.pending[limit:] + still
