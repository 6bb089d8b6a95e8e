"""Fault injection under load: many uploads, hostile delivery, failing AWS calls, then a reconciliation.

Faults come from outside the handlers: AWS errors through botocore hooks in
each execution environment (runtime.install_faults), duplicate and delayed
deliveries and killed environments from the pollers (pollers.Chaos). At the
end the uploads bucket is reconciled against the results table, the
thumbnails bucket and the dead-letter queues.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handlers import stages
from handlers.contracts import image_id, thumbnail_prefix
from handlers.names import SETTLED, UPLOADS_PREFIX, Function, Metric, StackOutput, Status
from localcloud import samples
from localcloud.cloud import LocalCloud
from localcloud.pollers import Chaos
from localcloud.report import DEAD_LETTERED
from ops import gallery

POISON_KEY_PART = "poison"


@dataclass(frozen=True)
class SoakPlan:
    images: int = 300
    fault_rate: float = 0.05  # each matching AWS call fails with this probability
    duplicate_rate: float = 0.1
    delay_rate: float = 0.05
    kill_rate: float = 0.02
    seed: int = 7
    timeout: float = 600.0
    # Enough retries that random faults almost never exhaust them; the poison message always does.
    max_receive_count: int = 10
    # Short enough that a killed batch comes back within half a minute; long enough that a busy machine never
    # turns a batch of these small images into a timeout.
    function_timeout: int = 3


@dataclass
class SoakResult:
    uploaded: int  # objects put (overwrites included)
    keys: int  # distinct upload keys, each of which must reach one final state
    done: int
    rejected: int
    failed: int
    deleted: int
    dead_lettered: int
    retried: int
    duplicates_suppressed: int
    lost: int
    images_per_second: float
    problems: list[str] = field(default_factory=list)
    poller_stats: dict[str, dict[str, int]] = field(default_factory=dict)
    operations: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        ops = " ".join(f"{name}={count}" for name, count in self.operations.items() if name != "put")
        return (f"uploaded={self.uploaded} {ops} keys={self.keys} done={self.done} rejected={self.rejected} failed={self.failed} "
                f"deleted={self.deleted} dead-lettered={self.dead_lettered} retried={self.retried} "
                f"duplicates-suppressed={self.duplicates_suppressed} lost={self.lost} "
                f"images/s={self.images_per_second:.1f}")


# What each service answers when it is overloaded or failing for a moment (each a documented transient error: S3
# SlowDown 503, SNS Throttling, Rekognition ThrottlingException, DynamoDB's throughput exceeded, 5xx).
TRANSIENT = {"s3": ("SlowDown", 503), "sns": ("Throttling", 400), "rekognition": ("ThrottlingException", 400),
             "dynamodb": ("ProvisionedThroughputExceededException", 400)}


def faults(rate: float) -> dict[str, list[dict[str, Any]]]:
    """Transient errors at `rate` on every call each declared stage makes (its declaration's `calls`) and on its
    record's reads and writes, plus one upload every thumbnail read fails on (the poison)."""
    def rule(operation: str, code: str, status: int) -> dict[str, Any]:
        return {"operation": operation, "code": code, "status": status, "rate": rate}

    table = [rule("dynamodb.UpdateItem", *TRANSIENT["dynamodb"]), rule("dynamodb.GetItem", "InternalServerError", 500)]
    found = {stage.name: [*(rule(call, *TRANSIENT[call.split(".")[0]]) for call in stage.calls), *table]
             for stage in stages.declared()}
    found[Function.THUMBNAILS].append({"operation": "s3.GetObject", "match": {"Key": POISON_KEY_PART},
                                       "code": "InternalError", "status": 500, "rate": 1.0})
    return found


def workload(count: int, rng: random.Random) -> list[tuple[str, str, bytes | None]]:
    """(action, key, bytes) in upload order: mostly good images of mixed formats and sizes, some bad
    inputs, some overwrites of an earlier key (some of them with a file that is rejected), some deletes, some
    deletes of an old version, some undeletes, and one poison upload."""
    actions: list[tuple[str, str, bytes | None]] = []
    makers = [
        lambda w, h: ("jpg", samples.jpeg(w, h, orientation=rng.choice([None, 1, 3, 6, 8]))),
        lambda w, h: ("png", samples.png(w, h)),
        lambda w, h: ("webp", samples.webp(w, h)),
        lambda w, h: ("gif", samples.gif(frames=rng.randint(1, 4), width=min(w, 200), height=min(h, 200))),
    ]
    bad = [b"", b"plain text, not an image\n", samples.png_header_only(30000, 30000), samples.jpeg(400, 300)[:900]]
    keys: list[str] = []
    for index in range(count - 1):
        roll = rng.random()
        if roll < 0.08:
            actions.append(("put", f"{UPLOADS_PREFIX}soak/bad-{index}.jpg", rng.choice(bad)))
            continue
        if roll < 0.16 and keys:
            key = rng.choice(keys)  # overwrite: the newest version must win
        elif roll < 0.21 and keys:
            actions.append(("delete", rng.choice(keys), None))
            continue
        elif roll < 0.24 and keys:
            actions.append(("delete-version", rng.choice(keys), None))  # version clean-up: the live image stays
            continue
        elif roll < 0.27 and keys:
            actions.append(("undelete", rng.choice(keys), None))  # the image comes back, when it was deleted
            continue
        elif roll < 0.30 and keys:
            actions.append(("put", rng.choice(keys), rng.choice(bad)))  # a rejected overwrite: old thumbnails go
            continue
        else:
            key = ""
        width, height = rng.choice([(160, 120), (640, 480), (1024, 768), (1600, 1200), (300, 900)])
        extension, data = rng.choice(makers)(width, height)
        key = key or f"{UPLOADS_PREFIX}soak/{index}.{extension}"
        keys.append(key)
        actions.append(("put", key, data))
    actions.append(("put", f"{UPLOADS_PREFIX}soak/{POISON_KEY_PART}.jpg", samples.jpeg(320, 240)))
    return actions


def run(plan: SoakPlan, workdir: Path | None = None, progress: Any = None) -> SoakResult:
    rng = random.Random(plan.seed)
    actions = workload(plan.images, rng)
    timeouts = {"timeout": plan.function_timeout}
    # Short timeouts need a small maxPixels: a batch of the largest allowed images must fit in them (the settings
    # refuse it otherwise); the soak's photos are 2 MP at most.
    config: dict[str, Any] = {**{stage.config_key: timeouts for stage in stages.declared()},
                              "maxReceiveCount": plan.max_receive_count, "maxPixels": 4_000_000}
    chaos = Chaos(duplicate_rate=plan.duplicate_rate, delay_rate=plan.delay_rate, kill_rate=plan.kill_rate, seed=plan.seed)
    options: dict[str, Any] = {"workdir": workdir} if workdir else {}
    with LocalCloud(config=config, faults=faults(plan.fault_rate), chaos=chaos, **options) as cloud:
        started = time.monotonic()
        for action, key, data in actions:
            apply(cloud, action, key, data)
        keys = list(dict.fromkeys(key for _, key, _ in actions))
        while time.monotonic() - started < plan.timeout:
            if cloud.idle() and not _unsettled(cloud, keys):
                break
            if progress:
                progress(cloud, keys)
            time.sleep(1)
        elapsed = time.monotonic() - started
        result = reconcile(cloud, keys, elapsed)
        result.uploaded = sum(1 for action, _, _ in actions if action == "put")
        result.operations = {action: sum(1 for a, _, _ in actions if a == action) for action in dict.fromkeys(a for a, _, _ in actions)}
        return result


def apply(cloud: LocalCloud, action: str, key: str, data: bytes | None) -> None:
    """One step of the workload, as S3 clients do it: a version delete and an undelete name a version id."""
    if action == "put":
        cloud.upload(key, data or b"")
        return
    if action == "delete":
        cloud.delete(key)
        return
    s3, bucket = cloud.client("s3"), cloud.outputs[StackOutput.UPLOADS_BUCKET]
    listed = s3.list_object_versions(Bucket=bucket, Prefix=key)
    versions = [v for v in listed.get("Versions", []) if v["Key"] == key]
    markers = [m for m in listed.get("DeleteMarkers", []) if m["Key"] == key]
    if action == "delete-version":
        old = [v for v in versions if not v["IsLatest"]]
        if old:
            s3.delete_object(Bucket=bucket, Key=key, VersionId=min(old, key=lambda v: v["LastModified"])["VersionId"])
    elif action == "undelete":
        latest = [m for m in markers if m["IsLatest"]]
        if latest and versions:
            s3.delete_object(Bucket=bucket, Key=key, VersionId=latest[0]["VersionId"])
    else:
        raise ValueError(f"unknown soak action {action!r}")


def _unsettled(cloud: LocalCloud, keys: list[str]) -> list[str]:
    records = cloud.records()
    letters = {d.key for d in cloud.dead_letters()}
    return [k for k in keys if records.get(k, {}).get("status") not in SETTLED and k not in letters]


def reconcile(cloud: LocalCloud, keys: list[str], elapsed: float) -> SoakResult:
    """Hold the uploads bucket against the table, the thumbnails bucket and the DLQs; count what is lost."""
    s3 = cloud.client("s3")
    uploads_bucket, thumbs_bucket = cloud.outputs[StackOutput.UPLOADS_BUCKET], cloud.outputs[StackOutput.THUMBNAILS_BUCKET]
    current: dict[str, str] = {}  # key -> current version id, for every object still in the bucket
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=uploads_bucket, Prefix=UPLOADS_PREFIX):
        for version in page.get("Versions", []):
            if version["IsLatest"]:
                current[version["Key"]] = version["VersionId"]
    records = cloud.records()
    letters = cloud.dead_letters()
    lettered = {d.key for d in letters}
    thumbnails = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=thumbs_bucket)
                  for o in page.get("Contents", [])}
    problems: list[str] = []
    statuses: dict[str, str] = {}
    for key in keys:
        record = records.get(key)
        if key in lettered:
            statuses[key] = DEAD_LETTERED
        elif record is None or record.get("status") not in SETTLED:
            problems.append(f"{key}: no final record ({record.get('status') if record else 'none'})")
        elif key in current and record["status"] == Status.DELETED:
            problems.append(f"{key}: still in the bucket but recorded as deleted")
        elif key not in current and record["status"] != Status.DELETED:
            problems.append(f"{key}: deleted from the bucket but recorded as {record['status']}")
        elif key in current and record.get("version_id") != current[key]:
            problems.append(f"{key}: record reflects version {record.get('version_id')}, the bucket holds {current[key]}")
        else:
            statuses[key] = record["status"]
    referenced: set[str] = set()
    sizes = sorted(cloud.settings().configured(Function.THUMBNAILS).settings.thumbnail_sizes)
    for key, record in records.items():
        if key not in keys:
            problems.append(f"{key}: a record for no upload")
        if record.get("status") == Status.DONE:
            outputs = {o["key"] for o in gallery.outputs(record)}
            missing = outputs - thumbnails
            if missing:
                problems.append(f"{key}: {len(missing)} thumbnail(s) missing")
            if sorted(int(o["box"]) for o in gallery.outputs(record) if "box" in o) != sizes:  # crops serve no box
                problems.append(f"{key}: thumbnails of other sizes than {sizes}")
            referenced |= outputs
    # A dead-lettered image may hold thumbnails its unfinished work stored: redriving the DLQ finishes it.
    parked = {thumbnail_prefix(image_id(uploads_bucket, key)) for key in lettered if key}
    for orphan in sorted(thumbnails - referenced):
        if not any(orphan.startswith(prefix) for prefix in parked):
            problems.append(f"{orphan}: a thumbnail without a finished upload")
    stats = cloud.stats()
    metrics = cloud.metrics()
    suppressed = sum(m.get(name, 0) for m in metrics.values()
                     for name in (Metric.DUPLICATE_EVENTS, Metric.STALE_EVENTS, Metric.SKIPPED_CLAIM_CHECKS))
    counts = {status: sum(1 for s in statuses.values() if s == status) for status in (*SETTLED, DEAD_LETTERED)}
    return SoakResult(
        uploaded=len(keys), keys=len(keys), done=counts[Status.DONE], rejected=counts[Status.REJECTED],
        failed=counts[Status.FAILED], deleted=counts[Status.DELETED], dead_lettered=counts[DEAD_LETTERED],
        retried=sum(s.get("redeliveries", 0) for s in stats.values()),
        duplicates_suppressed=int(suppressed), lost=len(problems),
        images_per_second=len(statuses) / elapsed if elapsed else 0.0, problems=problems, poller_stats=stats)
