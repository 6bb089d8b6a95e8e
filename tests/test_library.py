"""A camera library through the local cloud, as a user runs it: `python -m localcloud demo DIR --json`, once on an
idle machine and once with both cores kept busy by four busy loops. Load may change the speed, never the outcome.

Marked `library` (minutes): .ci/run runs it after `make test`; `make test-library` runs it by hand.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.library import engine_rate, pipeline_share, write_library

ROOT = Path(__file__).resolve().parent.parent
BUSY_LOOP = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
# The pipeline through the emulator against the engine alone on the same photos and the same machine. A run varies
# by about 5% on a laptop, so the best of three runs is held to it, as benchmarks take the best of a few.
SHARE = 0.5
RUNS = 3


@pytest.fixture(scope="module")
def library() -> Path:
    write_library()
    return ROOT / "build" / "library"


def check(library: Path, tmp_path: Path, photos: int, rate: float, label: str) -> None:
    """Every run: every upload done, nothing dead-lettered. The best run: half the engine's speed or more."""
    shares = []
    for run in range(RUNS):
        measured = pipeline_share(library, tmp_path / str(run), rate)
        result, share = measured["summary"], measured["share"]
        shares.append(share)
        print(f"\n{label}, run {run + 1}: {result['uploaded']} uploads settled in {result['elapsed_seconds']} s "
              f"({result['uploads_per_second']}/s); engine alone {rate:.2f}/s; share {share:.0%}; "
              f"redeliveries {result['redeliveries']}; dead letters {result['dead_lettered']}")
        assert result["uploaded"] == photos
        assert result["unaccounted"] == 0 and result["dead_lettered"] == 0 and result["dead_letters"] == []
        assert result["done"] == photos, [i for i in result["images"] if i["status"] != "done"][:3]
        for image in result["images"]:  # every output a page gets, in each done image's --json entry
            assert image["placeholder"] and image["focal_point"]["source"] and len(image["phash"]) == 16, image["key"]
            stored = image["thumbnails"]
            assert {t["crop"] for t in stored if t.get("crop")} == {"256x256"}, image["key"]
            assert {t["format"] for t in stored} >= {"webp", "jpeg"} and all(t["bytes"] > 0 for t in stored), image["key"]
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
