"""A bucket that held uploads before the pipeline: generated objects put into the local cloud's uploads bucket while
its event notification is off (as objects put before the stack existed had none), plus some uploaded the usual way
and settled first (already processed), for `python -m ops backfill` to onboard. Tiny images keep the stages quick."""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from handlers.names import StackOutput
from localcloud import samples
from localcloud.cloud import LocalCloud
from ops.__main__ import main as ops_main
from ops.target import LOCAL_HOME_VARIABLE
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent
KINDS = {  # what one object of each kind holds; every eighth is not an image
    "jpg": lambda: samples.jpeg(32, 24), "png": lambda: samples.png(32, 24), "webp": lambda: samples.webp(32, 24),
    "gif": lambda: samples.gif(1, 32, 24),
}


@dataclass
class Generated:
    new_images: set[str]  # in the bucket, never seen by the pipeline
    not_images: set[str]  # likewise, and not images
    processed: set[str]  # uploaded the usual way and settled before the backfill

    @property
    def keys(self) -> set[str]:
        return self.new_images | self.not_images | self.processed


@contextlib.contextmanager
def events_off(cloud: LocalCloud) -> Iterator[None]:
    """The uploads bucket without its event notification meanwhile (the bucket before the pipeline)."""
    s3, bucket = cloud.client("s3"), cloud.outputs[StackOutput.UPLOADS_BUCKET]
    saved = {k: v for k, v in s3.get_bucket_notification_configuration(Bucket=bucket).items() if k != "ResponseMetadata"}
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    try:
        yield
    finally:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=saved)


def generate(cloud: LocalCloud, count: int, processed: int, prefix: str = "uploads/archive/") -> Generated:
    kinds = list(KINDS)
    new_images, not_images = set(), set()
    bodies = {kind: make() for kind, make in KINDS.items()}
    with events_off(cloud):
        def put(i: int) -> None:
            if i % 8 == 7:
                key = f"{prefix}{i:05}.jpg"
                cloud.upload(key, b"%d: minutes of a meeting, not a photo\n" % i)
                not_images.add(key)
            else:
                kind = kinds[i % len(kinds)]
                key = f"{prefix}{i:05}.{kind}"
                cloud.upload(key, bodies[kind])
                new_images.add(key)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(put, range(count)))
    done = {f"{prefix}seen-{i:03}.png" for i in range(processed)}
    for key in done:
        cloud.upload(key, samples.png(32, 24))
    wait_until(lambda: all(cloud.records(brief=True).get(key, {}).get("status") == "done" for key in done), 180)
    return Generated(new_images, not_images, done)


def ops(cloud: LocalCloud, *args: str) -> tuple[int, dict]:
    """`python -m ops --local --json ...` in this process: (exit status, its JSON)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), mock.patch.dict(os.environ, {LOCAL_HOME_VARIABLE: str(cloud.workdir)}):
        status = ops_main(["--local", "--json", *args])
    return status, json.loads(out.getvalue())


def killed_halfway(cloud: LocalCloud, args: list[str], sent_at_least: int, within: float = 300) -> dict:
    """Start `python -m ops --local backfill ARGS` as its own process and SIGKILL it once its checkpoint says it has
    sent `sent_at_least` objects; returns that checkpoint as the kill left it."""
    command = [sys.executable, "-m", "ops", "--local", "backfill", *args]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, LOCAL_HOME_VARIABLE: str(cloud.workdir)})
    checkpoints = cloud.workdir / "ops"

    def far_enough() -> dict | None:
        for path in checkpoints.glob("backfill-*.json"):
            with contextlib.suppress(ValueError, OSError):
                saved = json.loads(path.read_text())
                if saved["tally"]["sent"] >= sent_at_least:
                    return saved
        return None

    try:
        wait_until(far_enough, within, every=0.1)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    [path] = checkpoints.glob("backfill-*.json")
    return json.loads(path.read_text())


def accounted(cloud: LocalCloud, generated: Generated, run: dict, batch: int) -> None:
    """Every object ends in exactly one count, and its record says what that count says: the images done, what is
    not an image rejected with its reason. A kill repeats at most one batch, whose objects the resumed run finds
    judged already (skipped) or on their way (then processed)."""
    assert run["failed"] == 0 and run["quarantined"] == 0 and run["not_settled"] == [], run
    assert run["processed"] + run["skipped"] + run["rejected"] == len(generated.keys), run
    assert len(generated.new_images) - batch <= run["processed"] <= len(generated.new_images)
    assert len(generated.not_images) - batch <= run["rejected"] <= len(generated.not_images)
    assert 0 <= run["skipped"] - len(generated.processed) <= batch
    records = cloud.records()
    for key in generated.new_images | generated.processed:
        assert records[key]["status"] == "done", (key, records[key]["status"], records[key].get("reason"))
    for key in generated.not_images:
        assert (records[key]["status"], records[key]["reason"][:13]) == ("rejected", "not an image:"), key
