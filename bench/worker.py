"""Time one engine on one input in a fresh process, so peak RSS is that engine's alone.

python -m bench.worker ENGINE PATH REPEATS SIZES FORMAT QUALITY  ->  {"median_ms", "peak_rss_mb"}
python -m bench.worker cold PATH REPEATS SIZES FORMAT QUALITY ALLOWED
    ->  {"start_ms", "first_ms", "warm_ms", "plugins"}: the thumbnail stage's start in a fresh interpreter (import
    the engine, prepare the ALLOWED formats' plugins as the function's init does), its first thumbnail, and the
    median of REPEATS warm ones after it.
"""
from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path


def main(name: str, path: str, repeats: int, sizes: str, fmt: str, quality: int) -> None:
    from bench.engines import ENGINES

    data = Path(path).read_bytes()
    size_tuple = tuple(int(s) for s in sizes.split(","))
    run = ENGINES[name]
    run(data, size_tuple, fmt, quality)  # warm-up: imports, codec tables
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(data, size_tuple, fmt, quality)
        times.append((time.perf_counter() - started) * 1000)
    print(json.dumps({"median_ms": statistics.median(times), "peak_rss_mb": peak_rss_kb() / 1024}))


def cold(path: str, repeats: int, sizes: str, fmt: str, quality: int, allowed: str) -> None:
    data = Path(path).read_bytes()
    size_tuple = tuple(int(s) for s in sizes.split(","))
    started = time.perf_counter()
    from handlers import imaging

    imaging.prepare(allowed.split(","), fmt)
    start_ms = (time.perf_counter() - started) * 1000
    from bench.engines import engine  # after the start is timed: the bench's own imports are not the function's

    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        engine(data, size_tuple, fmt, quality)
        times.append((time.perf_counter() - started) * 1000)
    plugins = sorted(m for m in sys.modules if m.startswith("PIL.") and m.endswith("ImagePlugin"))
    print(json.dumps({"start_ms": start_ms, "first_ms": times[0], "warm_ms": statistics.median(times[1:]),
                      "plugins": plugins}))


def peak_rss_kb() -> int:
    """This process's high-water RSS. (ru_maxrss is not used: after fork+exec it can still carry the parent's.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


if __name__ == "__main__":
    if sys.argv[1] == "cold":
        cold(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6]), sys.argv[7])
    else:
        main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6]))
