"""Feeding the local cloud a folder of files, and waiting for it honestly.

Uploads go up a few at a time and never run far ahead of what the pipeline has settled, as Lambda's
concurrency limits would pace a real stack: a folder of hundreds of photos becomes a steady stream, not a
flood. Waiting lasts while any message is queued or in flight or any function is running; it stops early only
on a real stall (nothing queued, nothing in flight, nothing settling) and then says why. A live line shows
settled / in flight / retried / dead-lettered, the rate and an ETA (rich's live display on a terminal, a plain
line every few seconds otherwise).
"""
from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handlers.names import StackOutput
from localcloud import report
from localcloud.cloud import LocalCloud

UPLOAD_THREADS = 4
# At most this many uploads waiting to settle at once: enough to keep every function busy, few enough that the
# emulator answers the pipeline as quickly as the uploads.
WINDOW = 32
PLAIN_EVERY_S = 5.0
# How often the wait loop looks at the queues (one request), and how often it scans the table for statuses
# otherwise (a scan of a few hundred records is tens of milliseconds of the emulator's time, which the pipeline
# would rather have). When nothing is queued or in flight it scans at once: that may be the end.
LOOK_EVERY_S = 1.0
SCAN_EVERY_S = 2.0


@dataclass
class Progress:
    total: int
    settled: int = 0
    queued: int = 0  # messages waiting in the work queues
    in_flight: int = 0  # messages being handled (or waiting out a visibility timeout after a failure)
    retried: int = 0  # deliveries that were not the first
    dead_lettered: int = 0
    uploaded: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None  # when the last upload settled
    scanned: float = 0.0  # when the table was last scanned
    seen: tuple[dict, list] | None = None  # what it found: records (key and status) and dead letters
    history: deque = field(default_factory=lambda: deque(maxlen=60))  # (time, settled)

    @property
    def elapsed(self) -> float:
        """From the first upload until the last settled (until now while some have not)."""
        return (self.finished or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        """Settled per second over the last half minute or so."""
        if len(self.history) < 2:
            return 0.0
        (t0, s0), (t1, s1) = self.history[0], self.history[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0

    def line(self) -> str:
        eta = f"ETA {(self.total - self.settled) / self.rate:.0f} s" if self.rate > 0 and self.settled < self.total else "ETA -"
        return (f"settled {self.settled}/{self.total} (uploaded {self.uploaded}) | queued {self.queued} | "
                f"in flight {self.in_flight} | retried {self.retried} | dead-lettered {self.dead_lettered} | "
                f"{self.elapsed:.0f} s | {self.rate:.1f}/s | {eta}")


class Stalled(Exception):
    """Nothing is queued, in flight or settling, yet some uploads have not settled: the reason says which."""


def observe(cloud: LocalCloud, keys: list[str], progress: Progress) -> report.Summary:
    """Statuses (key and status only) and queue depths; the dead letters' bodies only when there are some."""
    depths = cloud.queue_depths()
    work = [depths[url] for url in cloud.outputs[StackOutput.QUEUE_URLS].values()]
    lettered = sum(sum(depths[url]) for url in cloud.outputs[StackOutput.DEAD_LETTER_QUEUE_URLS].values())
    progress.queued = sum(waiting for waiting, _ in work)
    progress.in_flight = sum(flying for _, flying in work) + sum(p.busy for p in cloud.pollers.values())
    idle = not (progress.queued or progress.in_flight)
    if progress.seen is None or idle or time.monotonic() - progress.scanned >= SCAN_EVERY_S:
        progress.seen = (cloud.records(brief=True), cloud.dead_letters() if lettered else [])
        progress.scanned = time.monotonic()
    summary = report.Summary(list(dict.fromkeys(keys)), *progress.seen)
    progress.settled = len(keys) - len(summary.unaccounted())
    progress.retried = sum(s.get("redeliveries", 0) for s in cloud.stats().values())
    progress.dead_lettered = len(summary.dead_letters)
    progress.history.append((time.monotonic(), progress.settled))
    return summary


def stall_seconds(cloud: LocalCloud) -> float:
    """How long nothing may happen before the wait gives up: past the longest visibility timeout, after which
    any failed message would be back in its queue."""
    longest = max((float(q.inputs.get("visibilityTimeoutSeconds", 30)) for q in cloud.deployed.of_type("aws:sqs/queue:Queue")),
                  default=30.0)
    return longest + 30.0


def upload(cloud: LocalCloud, uploads: dict[str, Path | bytes], progress: Progress,
           show: Callable[[Progress], None]) -> None:
    """Put every file, a few at a time, never more than WINDOW ahead of what has settled."""
    keys = list(uploads)
    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        futures: list[Any] = []
        for key in keys:
            while progress.uploaded - progress.settled >= WINDOW:
                observe(cloud, keys[:progress.uploaded], progress)
                show(progress)
                time.sleep(LOOK_EVERY_S)
            data = uploads[key]
            futures.append(pool.submit(cloud.upload, key, data.read_bytes() if isinstance(data, Path) else data))
            progress.uploaded += 1
        for future in futures:
            future.result()


def upload_and_wait(cloud: LocalCloud, uploads: dict[str, Path | bytes], timeout: float | None = None,
                    show: Callable[[Progress], None] | None = None) -> tuple[report.Summary, Progress]:
    """Upload everything, then wait until every upload settles: the final Summary and the progress figures."""
    show = show or (lambda p: None)
    progress = Progress(total=len(uploads))
    upload(cloud, uploads, progress, show)
    return wait(cloud, list(uploads), timeout, show, progress), progress


def wait(cloud: LocalCloud, keys: list[str], timeout: float | None = None, show: Callable[[Progress], None] | None = None,
         progress: Progress | None = None) -> report.Summary:
    """Until every key settles and nothing is queued or in flight; raises Stalled on a real stall."""
    show = show or (lambda p: None)
    progress = progress or Progress(total=len(keys), uploaded=len(keys))
    quiet_since = time.monotonic()
    last_settled = -1
    limit = stall_seconds(cloud)
    while True:
        summary = observe(cloud, keys, progress)
        show(progress)
        busy = progress.queued or progress.in_flight
        if progress.settled == len(keys) and not busy:
            progress.finished = time.monotonic()
            return report.collect(cloud, keys)
        if progress.settled != last_settled or busy:
            quiet_since, last_settled = time.monotonic(), progress.settled
        elif time.monotonic() - quiet_since > limit:
            missing = summary.unaccounted()
            raise Stalled(f"{len(missing)} upload(s) have not settled and nothing has been queued, in flight or settled "
                          f"for {limit:.0f} s (their S3 events never reached a queue?): {', '.join(missing[:5])}")
        if timeout is not None and progress.elapsed > timeout:
            return report.collect(cloud, keys)
        time.sleep(LOOK_EVERY_S)


def live(stream: Any = None) -> tuple[Callable[[Progress], None], Callable[[], None]]:
    """(show, close): rich's live line on a terminal, a plain line every few seconds elsewhere."""
    stream = stream or sys.stdout
    if stream.isatty():
        from rich.console import Console
        from rich.live import Live

        display = Live("", console=Console(file=stream), refresh_per_second=4, transient=False)
        display.start()
        return (lambda p: display.update(p.line())), display.stop
    last = [0.0]

    def plain(p: Progress) -> None:
        if time.monotonic() - last[0] >= PLAIN_EVERY_S or p.settled == p.total:
            last[0] = time.monotonic()
            print("  " + p.line(), file=stream, flush=True)

    return plain, (lambda: None)
