"""Run one image's work in a forked child with its own CPU-time and memory limits.

A decoder that loops, or allocates past the function's memory, would otherwise end the whole invocation
(Lambda kills the environment on a timeout or when it runs out of memory) and every image in the batch would
be retried with it, until all of them were dead-lettered. In a child, the one image that exceeds its limits is
stopped and recorded with a reason; its batch-mates go on. The limits are CPU seconds (RLIMIT_CPU: the same
on a busy laptop as on Lambda, unlike a wall clock) and address space (RLIMIT_AS). Lambda allows child
processes; `fork` shares the parent's memory copy-on-write, so a child costs a few milliseconds.
"""
from __future__ import annotations

import os
import pickle
import resource
import select
import signal
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from handlers.failures import PermanentFailure

_MB = 1024 * 1024


@dataclass(frozen=True)
class Budget:
    cpu_seconds: int  # CPU time one image may take
    memory_mb: int  # memory one image's decode may add to the function's own
    wall_seconds: float  # the child is stopped after this long whatever it did (the invocation must survive)


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    peak_rss_mb: float  # the child's high-water mark (what it shares with the parent included)
    start_rss_mb: float = 0.0  # its resident memory as it began, shared with the parent

    @property
    def added_mb(self) -> float:
        """What the work itself took, beyond the memory it shared with the parent."""
        return round(self.peak_rss_mb - self.start_rss_mb, 1)


class OutOfTime(Exception):
    """The invocation ran short of time before the image was done: transient, it is retried."""


def _vm(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def run(work: Callable[..., Any], *args: Any, budget: Budget) -> tuple[Any, Usage]:
    """`work(*args)` in a child within `budget`: its result, or its PermanentFailure, or a PermanentFailure that
    names the limit it broke. Any other exception in the child is a PermanentFailure too: the same bytes would
    fail the same way again."""
    reader, writer = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.close(reader)
            start_rss = _vm("VmRSS") / _MB
            resource.setrlimit(resource.RLIMIT_CPU, (budget.cpu_seconds, budget.cpu_seconds + 1))
            limit = _vm("VmSize") + budget.memory_mb * _MB
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            try:
                outcome: tuple[str, Any] = ("ok", work(*args))
            except MemoryError:
                outcome = ("memory", None)
            except BaseException as exc:  # noqa: BLE001 - every error is reported to the parent
                if _vm("VmPeak") > limit - 64 * _MB:
                    # A decoder that cannot allocate says so its own way ("could not create decoder object"):
                    # whatever it said, it failed at the memory limit.
                    outcome = ("memory", None)
                elif isinstance(exc, PermanentFailure):
                    outcome = ("failed", exc.reason)
                else:
                    outcome = ("error", f"{type(exc).__name__}: {exc}"[:300] or "".join(traceback.format_exception_only(exc)))
            payload = pickle.dumps((start_rss, outcome), protocol=pickle.HIGHEST_PROTOCOL)
            view = memoryview(payload)
            while view:
                view = view[os.write(writer, view):]
        finally:
            os._exit(0)
    os.close(writer)
    chunks: list[bytes] = []
    deadline = started + budget.wall_seconds
    timed_out = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([reader], [], [], remaining)[0]:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(reader, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(reader)
        _, status, rusage = os.wait4(pid, 0)
    cpu = round(rusage.ru_utime + rusage.ru_stime, 3)
    if timed_out:
        raise OutOfTime(f"the image was not done within {budget.wall_seconds:.0f} s of wall time")
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number in (signal.SIGXCPU, signal.SIGKILL) and cpu >= budget.cpu_seconds - 0.05:
            raise PermanentFailure(f"decoding the image took more than {budget.cpu_seconds} s of CPU, the limit per image")
        raise PermanentFailure(f"the decoder crashed on this image (signal {signal.Signals(number).name})")
    if not chunks:
        raise PermanentFailure(f"the decoder stopped without an answer (exit status {os.WEXITSTATUS(status)})")
    start_rss, (kind, value) = pickle.loads(b"".join(chunks))
    usage = Usage(cpu, round(rusage.ru_maxrss / 1024, 1), round(start_rss, 1))
    if kind == "ok":
        return value, usage
    if kind == "failed":
        raise PermanentFailure(value)
    if kind == "memory":
        raise PermanentFailure(f"decoding the image needs more than the {budget.memory_mb:,} MB an image may use")
    raise PermanentFailure(f"the image cannot be decoded ({value})")
