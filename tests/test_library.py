"""A camera library through the local cloud, as a user runs it: `python -m localcloud demo DIR --json`, once on an
idle machine and once with both cores kept busy by four busy loops. Load may change the speed, never the outcome.

Marked `library` (minutes): .ci/run runs it after `make test`; `make test-library` runs it by hand.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import engines
from bench.library import write_library
from infra.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BUSY_LOOP = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
# The pipeline through the emulator against the engine alone on the same photos and the same machine. A run varies
# by about 5% on a laptop, so the better of two runs is held to it, as benchmarks take the best of a few.
SHARE = 0.5
RUNS = 2


@pytest.fixture(scope="module")
def library() -> Path:
    write_library()
    return ROOT / "build" / "library"


def engine_rate(paths: list[Path]) -> float:
    """Images per second of the thumbnail engine alone, one after another in one process."""
    s = Settings()
    data = [p.read_bytes() for p in paths]
    started = time.perf_counter()
    for item in data:
        engines.engine(item, s.thumbnail_sizes, s.output_format, s.output_quality)
    return len(data) / (time.perf_counter() - started)


def demo(library: Path, tmp_path: Path) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    summary = tmp_path / "summary.json"
    run = subprocess.run([sys.executable, "-m", "localcloud", "demo", str(library), "--json", str(summary),
                          "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=1500,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads(summary.read_text())


def check(library: Path, tmp_path: Path, photos: int, rate: float, label: str) -> None:
    """Every run: every upload done, nothing dead-lettered. The better run: half the engine's speed or more."""
    shares = []
    for run in range(RUNS):
        result = demo(library, tmp_path / str(run))
        share = result["uploads_per_second"] / rate
        shares.append(share)
        print(f"\n{label}, run {run + 1}: {result['uploaded']} uploads settled in {result['elapsed_seconds']} s "
              f"({result['uploads_per_second']}/s); engine alone {rate:.2f}/s; share {share:.0%}; "
              f"redeliveries {result['redeliveries']}; dead letters {result['dead_lettered']}")
        assert result["uploaded"] == photos
        assert result["unaccounted"] == 0 and result["dead_lettered"] == 0 and result["dead_letters"] == []
        assert result["done"] == photos, [i for i in result["images"] if i["status"] != "done"][:3]
    assert max(shares) >= SHARE


@pytest.mark.library
def test_a_camera_library_settles_on_an_idle_machine(library, tmp_path):
    paths = sorted(p for p in library.iterdir() if not p.name.startswith("."))
    assert len(paths) >= 100 and sum(p.stat().st_size for p in paths) > 300e6
    check(library, tmp_path, len(paths), engine_rate(paths), "idle")


@pytest.mark.library
def test_a_camera_library_settles_with_both_cores_busy(library, tmp_path):
    paths = sorted(p for p in library.iterdir() if not p.name.startswith("."))
    # Four busy loops, as when a build runs beside it; each ends by itself after 20 minutes whatever happens.
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP.format(seconds=1200)]) for _ in range(4)]
    try:
        time.sleep(1)
        rate = engine_rate(paths)
        check(library, tmp_path, len(paths), rate, "both cores busy")
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
