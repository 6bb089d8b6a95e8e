"""Run one image's work in a child process with its own CPU-time and memory limits.

A decoder that loops, or allocates past the function's memory, would otherwise end the whole invocation
(Lambda kills the environment on a timeout or when it runs out of memory) and every image in the batch would
be retried with it, until all of them were dead-lettered. In a child, the one image that exceeds its limits is
stopped and recorded with a reason; its batch-mates go on. The limits are CPU seconds (RLIMIT_CPU: the same
on a busy laptop as on Lambda, unlike a wall clock) and address space (RLIMIT_AS). Lambda allows child
processes.

The child is forked once and kept warm for the images that follow, each under its own limits: a fresh fork
per image cost about 30 ms of CPU on a 12 MP photo (the fork, and the kernel faulting in and zeroing the
decode's memory anew every time), a third of the decode itself. Whatever does not end well retires the child:
it is replaced, and an image that failed in a child that had done other work is run once more in a fresh one,
so that a verdict against an image never depends on the images before it. A child is also retired after
`MAX_JOBS` images.
"""
from __future__ import annotations

import math
import mmap
import os
import pickle
import resource
import select
import signal
import struct
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


def resident_mb() -> float:
    """This process's resident memory now, in MB."""
    return _vm("VmRSS") / 2**20


def _vm(field: str) -> int:
    with open("/proc/self/status") as status:  # read several times per image in the child: closed each time
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


MAX_JOBS = 200
_LENGTH = struct.Struct("!Q")
# Large bytes arguments (the image) reach the child through memory the two share, not through the pipe: a pipe
# moved a 6 MB photo in 20-30 ms here, more than a tenth of its decode.
SHARED_OVER = 64 * 1024
SHARED_MIN_MB = 64


def _goes_shared(arg: Any) -> bool:
    return isinstance(arg, bytes) and len(arg) > SHARED_OVER


@dataclass(frozen=True)
class _Shared:
    """Where a large argument sits in the shared region."""

    offset: int
    length: int


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(_LENGTH.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view):]


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes | None:
    """`size` bytes from `fd`, or None at end of file; TimeoutError once `deadline` (monotonic) passes."""
    chunks, wanted = [], size
    while wanted:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(wanted, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        wanted -= len(chunk)
    return b"".join(chunks)


def _read_message(fd: int, deadline: float | None) -> Any:
    header = _read_exactly(fd, _LENGTH.size, deadline)
    if header is None:
        return None
    payload = _read_exactly(fd, _LENGTH.unpack(header)[0], deadline)
    return None if payload is None else pickle.loads(payload)


def _cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _one_job(work: Callable[..., Any], args: tuple[Any, ...], budget: Budget, base_vm: int) -> tuple[Any, ...]:
    """In the child: one image under its own limits. (outcome kind, value, CPU it took, peak and start RSS MB)."""
    try:  # the high-water mark is this image's, not an earlier one's (Linux: 5 resets VmHWM)
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass
    start_rss = _vm("VmRSS") / _MB
    began = _cpu_used()
    # RLIMIT_CPU counts the process's CPU since it began, in whole seconds: the soft limit is raised for each image
    # to what it has used, rounded up, plus the image's budget (the hard limit stays where it was).
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (math.ceil(began) + budget.cpu_seconds, hard))
    limit = base_vm + budget.memory_mb * _MB
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    peak_before = _vm("VmPeak")
    try:
        outcome: tuple[str, Any] = ("ok", work(*args))
    except MemoryError:
        outcome = ("memory", None)
    except BaseException as exc:
        if _vm("VmPeak") > max(peak_before, limit - 64 * _MB):
            # A decoder that cannot allocate says so its own way ("could not create decoder object"):
            # whatever it said, it failed at the memory limit.
            outcome = ("memory", None)
        elif isinstance(exc, PermanentFailure):
            outcome = ("permanent", exc.reason)
        else:
            outcome = ("error", f"{type(exc).__name__}: {exc}"[:300] or "".join(traceback.format_exception_only(exc)))
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))  # reading the next job is not this image's work
    return (*outcome, round(_cpu_used() - began, 3), _vm("VmHWM") / _MB, start_rss)


def _serve(work: Callable[..., Any], requests: int, replies: int, region: mmap.mmap) -> None:
    """The child's loop: a job in, its outcome out, until the parent closes the pipe."""
    base_vm = _vm("VmSize")
    while True:
        job = _read_message(requests, None)
        if job is None:
            return
        sent, budget = job
        args = tuple(region[a.offset:a.offset + a.length] if isinstance(a, _Shared) else a for a in sent)
        _write_all(replies, pickle.dumps(_one_job(work, args, budget, base_vm), protocol=pickle.HIGHEST_PROTOCOL))


class _Child:
    """A forked child that runs `work` for one job after another."""

    def __init__(self, work: Callable[..., Any], shared_bytes: int) -> None:
        self.work = work
        self.jobs = 0
        self.region = mmap.mmap(-1, max(SHARED_MIN_MB * _MB, shared_bytes))  # anonymous and shared: the child sees it
        self.cpu_reported = 0.0  # CPU the jobs it answered took, to tell the one that killed it
        requests_out, requests_in = os.pipe()
        replies_out, replies_in = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(requests_in)
                os.close(replies_out)
                _serve(work, requests_out, replies_in, self.region)
            finally:
                os._exit(0)
        os.close(requests_out)
        os.close(replies_in)
        self.pid, self._requests, self._replies = pid, requests_in, replies_out

    def ask(self, args: tuple[Any, ...], budget: Budget) -> tuple[Any, ...] | None:
        """The job's outcome, or None when the child died on it; OutOfTime when the wall-clock budget runs out."""
        deadline = time.monotonic() + budget.wall_seconds
        sent, offset = [], 0
        for arg in args:
            if _goes_shared(arg):
                self.region[offset:offset + len(arg)] = arg
                sent.append(_Shared(offset, len(arg)))
                offset += len(arg)
            else:
                sent.append(arg)
        try:
            _write_all(self._requests, pickle.dumps((tuple(sent), budget), protocol=pickle.HIGHEST_PROTOCOL))
            reply = _read_message(self._replies, deadline)
        except BrokenPipeError:
            return None
        except TimeoutError:
            raise OutOfTime(f"the image was not done within {budget.wall_seconds:.0f} s of wall time") from None
        if reply is not None:
            self.jobs += 1
            self.cpu_reported += reply[2]
        return reply

    def stop(self) -> tuple[int, float]:
        """Ends the child: (its wait status, the CPU seconds it used beyond the jobs it answered)."""
        for fd in (self._requests, self._replies):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, status, rusage = os.wait4(self.pid, 0)
        self.region.close()
        return status, rusage.ru_utime + rusage.ru_stime - self.cpu_reported


_child: _Child | None = None
_lock = threading.Lock()


def _retire() -> tuple[int, float]:
    global _child
    assert _child is not None
    child, _child = _child, None
    return child.stop()


def reset() -> None:
    """Retire the child, if there is one (the next image forks a fresh one)."""
    with _lock:
        if _child is not None:
            _retire()


def run(work: Callable[..., Any], *args: Any, budget: Budget) -> tuple[Any, Usage]:
    """`work(*args)` in a child within `budget`: its result, or its PermanentFailure, or a PermanentFailure that
    names the limit it broke. Any other exception in the child is a PermanentFailure too: the same bytes would
    fail the same way again."""
    global _child
    shared = sum(len(a) for a in args if _goes_shared(a))
    with _lock:
        while True:
            if _child is not None and (_child.work is not work or _child.jobs >= MAX_JOBS or len(_child.region) < shared):
                _retire()
            if _child is None:
                _child = _Child(work, 1 << max(0, shared - 1).bit_length())
            seasoned = _child.jobs > 0
            try:
                reply = _child.ask(args, budget)
            except OutOfTime:
                _retire()  # stopped where it was
                raise
            if reply is not None and reply[0] == "ok":
                _, value, cpu, peak_mb, start_mb = reply
                return value, Usage(cpu, round(peak_mb, 1), round(start_mb, 1))
            status, cpu = _retire()  # whatever did not end well retires the child
            if not seasoned:
                break
            # Run it once more in a child that has done nothing else: the verdict is the image's own.
    if reply is None:
        if os.WIFSIGNALED(status):
            number = os.WTERMSIG(status)
            if number in (signal.SIGXCPU, signal.SIGKILL) and cpu >= budget.cpu_seconds - 0.05:
                raise PermanentFailure(f"decoding the image took more than {budget.cpu_seconds} s of CPU, the limit per image")
            raise PermanentFailure(f"the decoder crashed on this image (signal {signal.Signals(number).name})")
        raise PermanentFailure(f"the decoder stopped without an answer (exit status {os.WEXITSTATUS(status)})")
    kind, value = reply[0], reply[1]
    if kind == "permanent":
        raise PermanentFailure(value)
    if kind == "memory":
        raise PermanentFailure(f"decoding the image needs more than the {budget.memory_mb:,} MB an image may use")
    raise PermanentFailure(f"the image cannot be decoded ({value})")
