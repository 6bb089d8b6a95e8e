"""The decode child: kept warm across images, each image under its own limits, retired by anything that ends badly."""
from __future__ import annotations

import hashlib
import os
import signal
import time

import pytest

from handlers import isolation
from handlers.failures import PermanentFailure

BUDGET = isolation.Budget(cpu_seconds=2, memory_mb=512, wall_seconds=30)
_calls = {"n": 0}


def pid_of_child() -> int:
    return os.getpid()


def burn(seconds: float) -> float:
    began = time.process_time()
    while time.process_time() - began < seconds:
        pass
    return time.process_time() - began


def digest(data: bytes) -> tuple[int, str]:
    return len(data), hashlib.sha256(data).hexdigest()


def fails_after_the_first_call() -> str:
    """Stands for an image whose failure depends on what the child did before it."""
    _calls["n"] += 1
    if _calls["n"] > 1:
        raise PermanentFailure("failed because of an earlier image")
    return "fine"


def crash() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def refuse() -> None:
    raise PermanentFailure("the image is 1x1, too small")


def sleep(seconds: float) -> None:
    time.sleep(seconds)


@pytest.fixture(autouse=True)
def fresh():
    isolation.reset()
    yield
    isolation.reset()


def test_one_warm_child_serves_image_after_image():
    first, _ = isolation.run(pid_of_child, budget=BUDGET)
    second, _ = isolation.run(pid_of_child, budget=BUDGET)
    assert first == second != os.getpid()


def test_a_failure_retires_the_child():
    before, _ = isolation.run(pid_of_child, budget=BUDGET)
    with pytest.raises(PermanentFailure, match=r"^the image is 1x1, too small$"):
        isolation.run(refuse, budget=BUDGET)
    after, _ = isolation.run(pid_of_child, budget=BUDGET)
    assert after != before


def test_the_cpu_limit_is_each_image_s_own_not_the_child_s_total():
    # Three images of 0.8 s each in one child (2.4 s in all) under a 2 s limit per image: none is stopped.
    for _ in range(3):
        used, usage = isolation.run(burn, 0.8, budget=BUDGET)
        assert used >= 0.8 and 0.8 <= usage.cpu_seconds < 1.5
    with pytest.raises(PermanentFailure, match=r"^decoding the image took more than 2 s of CPU, the limit per image$"):
        isolation.run(burn, 5.0, budget=BUDGET)


def test_a_failure_in_a_child_that_did_other_work_is_judged_again_in_a_fresh_one():
    _calls["n"] = 0  # every child is forked with this count
    assert isolation.run(fails_after_the_first_call, budget=BUDGET)[0] == "fine"
    # The same child now fails it (its own count is 2): the image is run again in a fresh child, which succeeds.
    assert isolation.run(fails_after_the_first_call, budget=BUDGET)[0] == "fine"


def test_large_arguments_arrive_whole_through_the_shared_region():
    for size in (10 * 1024 * 1024, (isolation.SHARED_MIN_MB + 8) * 1024 * 1024):  # the second outgrows the region
        data = os.urandom(size)
        assert isolation.run(digest, data, budget=isolation.Budget(2, 1024, 30))[0] == digest(data)


def test_a_crash_is_recorded_with_its_signal_and_the_next_image_gets_a_new_child():
    with pytest.raises(PermanentFailure, match=r"^the decoder crashed on this image \(signal SIGSEGV\)$"):
        isolation.run(crash, budget=BUDGET)
    assert isolation.run(digest, b"ok", budget=BUDGET)[0] == digest(b"ok")


def test_the_wall_clock_stops_a_stuck_image_and_the_next_one_runs():
    with pytest.raises(isolation.OutOfTime, match="not done within 1 s of wall time"):
        isolation.run(sleep, 5, budget=isolation.Budget(2, 512, 1))
    assert isolation.run(digest, b"next", budget=BUDGET)[0] == digest(b"next")


def test_a_child_is_retired_after_max_jobs(monkeypatch):
    monkeypatch.setattr(isolation, "MAX_JOBS", 2)
    pids = [isolation.run(pid_of_child, budget=BUDGET)[0] for _ in range(3)]
    assert pids[0] == pids[1] != pids[2]
