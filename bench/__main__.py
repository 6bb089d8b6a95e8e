"""make bench: python -m bench [--images DIR] [--quick] [--repeats N] [--out FILE]

Writes bench/results.json and prints a table. Every figure is compared as a ratio with another measured
in the same run; absolute times vary from machine to machine and run to run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from bench import engines, inputs, library
from bench import formats as output_formats
from handlers.names import Function
from handlers.thumbnails import ThumbnailSettings
from infra import capacity, costs, packaging
from infra.settings import RUNTIME_GLIBC, Settings

ROOT = Path(__file__).resolve().parent.parent
INPUT_DIR = ROOT / "build" / "bench-inputs"
# Why a target can be missed on some runs, and what the real limit is (see README, Performance).
LIMITS = {
    "no_draft_vs_pyvips": "Pillow decodes PNG and WebP only at full size; its decode alone (floor_ms) is 0.9-1.2x "
                          "pyvips' whole run, which shrinks while it decodes",
    "engine_vs_sharp_once": "sharp decoding once and cascading (sharp_once_ms) resamples with libvips' SIMD code; "
                            "Pillow's resampler is plain C, so the engine is 1.1-1.4x that, against 0.5x sharp's "
                            "usual one pipeline per size",
    "intake_import_ms": "botocore (~105 ms) and Powertools' batch utility (~70 ms) alone take about 150 ms here",
    "pipeline_share": "the emulator answers ~25 calls per image in Python and uses about as much CPU per image "
                      "as the engine, on the same cores",
    "small_photo_vs_pyvips": "a photo below the boxes is one decode and one encode for both; the engine also computes "
                             "the placeholder (a ThumbHash in pure Python, ~8.6 ms idle), which pyvips does not, and "
                             "that is most of its time on a 100 x 68 photo",
}
# The engine's quality steps around the configured one, to find its bytes at another engine's PSNR.
QUALITY_SWEEP = (-12, -8, -4, 0, 4, 8, 12)
TARGETS = {"engine_vs_pyvips": 1.0, "naive_vs_engine": 3.0, "engine_vs_floor": 2.5, "psnr_db": 40.0,
           "rss_vs_pyvips": 1.5, "no_draft_vs_pyvips": 1.1, "intake_import_ms": 150.0, "archive_bytes": 100_000,
           "pipeline_share": 0.5, "engine_vs_sharp": 0.75, "engine_vs_sharp_once": 1.0, "psnr_vs_sharp_db": -0.2, "bytes_vs_sharp": 1.0,
           "first_vs_warm": 1.2}


def measure(engine: str, path: Path, repeats: int, settings: ThumbnailSettings, *extra: str) -> dict[str, Any]:
    """bench.worker ENGINE (or cold) on one input with the stack's sizes, format and quality, in a fresh process."""
    # One thread for libvips too: the thumbnail function's share of a CPU at its memory size is under one vCPU.
    environment = {**os.environ, "VIPS_CONCURRENCY": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "bench.worker", engine, str(path), str(repeats),
         ",".join(map(str, settings.thumbnail_sizes)), settings.output_format, str(settings.output_quality), *extra],
        capture_output=True, text=True, cwd=ROOT, check=True, env=environment)
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def bench_inputs(paths: list[Path], repeats: int, settings: ThumbnailSettings, sharp: Path | None) -> dict[str, Any]:
    """Each input through every engine (sharp when `sharp`, its node_modules, is set): time, peak RSS, and PSNR
    and bytes per size after encoding."""
    results: dict[str, Any] = {}
    have_vips = engines.pyvips_available()
    sizes, fmt, quality = settings.thumbnail_sizes, settings.output_format, settings.output_quality
    for path in paths:
        row: dict[str, Any] = {"bytes": path.stat().st_size}
        for name in ("engine", "naive", "pyvips", "floor"):
            if name == "pyvips" and not have_vips:
                row["pyvips_ms"] = row["pyvips_rss_mb"] = None
                continue
            figures = measure(name, path, repeats, settings)
            row[f"{name}_ms"] = round(figures["median_ms"], 1)
            row[f"{name}_rss_mb"] = round(figures["peak_rss_mb"], 1)
        row["peak_rss_mb"] = row.pop("engine_rss_mb")
        data = path.read_bytes()
        reference = engines.Reference(data)
        row["psnr_db"] = round(engines.psnr(data, sizes, reference), 2)
        outputs = {"engine": engines.engine(data, sizes, fmt, quality)}
        if have_vips:
            outputs["pyvips"] = engines.pyvips_engine(data, sizes, fmt, quality)
        if sharp is not None:
            with tempfile.TemporaryDirectory() as out:
                for mode in engines.SHARP_MODES:
                    name = "sharp" if mode == "sizes" else f"sharp_{mode}"
                    figures = engines.sharp_run(sharp, mode, path, repeats, sizes, fmt, quality, Path(out) / mode)
                    row[f"{name}_ms"] = round(figures["median_ms"], 1)
                    row[f"{name}_rss_mb"] = round(figures["peak_rss_mb"], 1)
                    outputs[name] = figures["outputs"]
        # PSNR after encoding, per size, against the full-decode Lanczos reference; and the engine's bytes at
        # sharp's PSNR, from a sweep of its own quality around the configured one.
        row["quality"] = {name: reference.judge(encoded) for name, encoded in outputs.items()}
        if "sharp" in outputs and fmt != "png":
            sweep = [reference.judge(engines.engine(data, sizes, fmt, q))
                     for q in sorted({max(1, min(100, quality + step)) for step in QUALITY_SWEEP})]
            row["engine_bytes_at_sharp_psnr"] = [
                engines.bytes_at_psnr([(run[i]["psnr_db"], run[i]["bytes"]) for run in sweep], theirs["psnr_db"])
                for i, theirs in enumerate(row["quality"]["sharp"])]
        results[path.name] = row
    return results


def bench_formats(path: Path, repeats: int, settings: ThumbnailSettings) -> dict[str, Any]:
    """Time and bytes of the configured sizes in each output format (one decode), and the encoder's loss:
    PSNR of the largest size against the same pixels saved losslessly (comparable quality: similar dB)."""
    data = path.read_bytes()
    lossless = engines.engine(data, settings.thumbnail_sizes, "png", 100)[0]
    found = {}
    for fmt, quality in (("jpeg", settings.output_quality), ("webp", settings.output_quality), ("png", 100)):
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            outputs = engines.engine(data, settings.thumbnail_sizes, fmt, quality)
            times.append((time.perf_counter() - started) * 1000)
        found[fmt] = {"quality": quality, "ms": round(statistics.median(times), 1), "bytes": sum(map(len, outputs)),
                      "psnr_db": round(engines.psnr_between(outputs[0], lossless), 2)}
    return found


def bench_scale_sweep(modules: Path | None, repeats: int, settings: ThumbnailSettings,
                      widths: tuple[int, ...] = engines.SWEEP_WIDTHS) -> dict[str, Any]:
    """Every scale factor, not only the inputs': textured JPEGs 1025-4700 px wide (engines.SWEEP_WIDTHS) to the
    stack's sizes: per width the engine's PSNR minus sharp's per size, and the engine's time against sharp's both
    ways. Without sharp, nothing to compare with."""
    if modules is None:
        return {}
    sizes, fmt, quality = settings.thumbnail_sizes, settings.output_format, settings.output_quality
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for width in widths:
            data = engines.sweep_source(width)
            path = work / f"{width}.jpg"
            path.write_bytes(data)
            row: dict[str, Any] = {"psnr_vs_sharp_db": engines.sweep_gaps(modules, data, sizes, fmt, quality, work),
                                   "engine_ms": round(measure("engine", path, repeats, settings)["median_ms"], 1)}
            for mode in engines.SHARP_MODES:
                timed = engines.sharp_run(modules, mode, path, repeats, sizes, fmt, quality, work / mode)
                row["sharp_ms" if mode == "sizes" else f"sharp_{mode}_ms"] = round(timed["median_ms"], 1)
            rows[str(width)] = row
    worst = {str(size): min((row["psnr_vs_sharp_db"][size], width) for width, row in rows.items())
             for size in sorted(sizes, reverse=True)}
    total = {key: sum(row[key] for row in rows.values()) for key in ("engine_ms", "sharp_ms", "sharp_once_ms")}
    return {"widths": rows, "worst_psnr_vs_sharp_db": {size: {"db": db, "width": int(width)} for size, (db, width) in worst.items()},
            "engine_vs_sharp": round(total["engine_ms"] / total["sharp_ms"], 2),
            "engine_vs_sharp_once": round(total["engine_ms"] / total["sharp_once_ms"], 2)}


def _real_photos() -> list[Path]:
    """Real camera photos, when the shared corpus is beside the project (generated inputs flatter WebP and the
    resize): the first of its EXIF-orientation set (1800 x 1200)."""
    photo = ROOT.parent / "shared" / "corpus" / "exif-orientation" / "Landscape_0.jpg"
    return [photo] if photo.is_file() else []


def bench_cold_start(repeats: int = 5) -> dict[str, Any]:
    """Each function's import in a clean interpreter, the median of `repeats` (--quick: one, which still says every
    figure exists; each interpreter costs a second or more on a busy machine)."""
    found: dict[str, Any] = {"import_ms": {}, "archive_bytes": {}, "loads_pillow": {}}
    for name, package in packaging.FUNCTIONS.items():
        archive = packaging.function_archive(name)
        found["archive_bytes"][name] = archive.stat().st_size
        with tempfile.TemporaryDirectory() as code:
            zipfile.ZipFile(archive).extractall(code)
            script = (f"import sys, time; sys.path.insert(0, {code!r}); t = time.perf_counter(); "
                      f"import {package.module}; ms = (time.perf_counter() - t) * 1000; "
                      "print(ms, 'PIL' in sys.modules)")
            runs = [subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, check=True).stdout.split()
                    for _ in range(repeats)]
        found["import_ms"][name] = round(statistics.median(float(r[0]) for r in runs), 1)
        found["loads_pillow"][name] = runs[0][1] == "True"
    try:
        s = Settings()
        layer = packaging.pillow_layer(s.architecture, s.runtime, RUNTIME_GLIBC[s.runtime])
        found["layer_bytes"] = {"zipped": layer.stat().st_size,
                                "unzipped": sum(i.file_size for i in zipfile.ZipFile(layer).infolist())}
    except RuntimeError as exc:  # no access to PyPI
        found["layer_bytes"] = {"error": str(exc)[:200]}
    return found


def bench_cost(stack: Settings, engine_ms: float) -> dict[str, float]:
    """Dollars per million JPEGs: the measured stage at the engine's time here, the others at their declared ones."""
    stages = []
    for configured in capacity.reaching(stack, "jpeg"):
        model = configured.stage.capacity
        assert model is not None
        seconds = engine_ms / 1000 if model.measured else model.seconds(configured, 0.0, "jpeg", 1.0)
        stages.append(costs.StageCost.of(configured, seconds))
    return costs.per_million(stages, stack.architecture)


def bench_first_thumbnail(paths: list[Path], repeats: int, settings: ThumbnailSettings) -> dict[str, Any]:
    """The thumbnail stage's first image in a fresh interpreter against the warm ones after it (bench.worker cold):
    with the stack's formats prepared as the function starts, the first pays no plugin import."""
    found = {}
    for path in paths:
        row = measure("cold", path, repeats, settings, ",".join(settings.allowed_formats))
        found[path.name] = {**{k: round(v, 1) for k, v in row.items() if k.endswith("_ms")}, "plugins": row["plugins"]}
    return found


def bench_pipeline(quick: bool) -> dict[str, Any]:
    """The generated camera library (bench/library.py) through `python -m localcloud demo`, against the engine
    alone on the same photos: the same measure `make test-library` holds to half or more. --quick: two small photos."""
    if quick:
        directory = ROOT / "build" / "library-quick"
        library.write_library(directory, count=2, extras=0, sensors=[(800, 600)], scene_size=(1200, 900))
    else:
        directory = library.DEFAULT_DIR
        library.write_library(directory)
    result = library.pipeline_share(directory)
    result.pop("summary")
    return result


def verdicts(results: dict[str, Any]) -> list[str]:
    lines = []
    for name, row in results["inputs"].items():
        jpeg = name.lower().endswith((".jpg", ".jpeg"))
        if row.get("pyvips_ms") and jpeg:
            lines.append(f"{name}: engine/pyvips {row['engine_ms'] / row['pyvips_ms']:.2f} (target <= {TARGETS['engine_vs_pyvips']}), "
                         f"naive/engine {row['naive_ms'] / row['engine_ms']:.1f}x (>= {TARGETS['naive_vs_engine']}), "
                         f"engine/floor {row['engine_ms'] / row['floor_ms']:.2f} (<= {TARGETS['engine_vs_floor']}), "
                         f"PSNR {row['psnr_db']} dB (>= {TARGETS['psnr_db']}), "
                         f"RSS/pyvips {row['peak_rss_mb'] / row['pyvips_rss_mb']:.2f} (<= {TARGETS['rss_vs_pyvips']})")
        elif row.get("pyvips_ms"):
            lines.append(f"{name}: engine/pyvips {row['engine_ms'] / row['pyvips_ms']:.2f} (target <= {TARGETS['no_draft_vs_pyvips']}), "
                         f"floor/pyvips {row['floor_ms'] / row['pyvips_ms']:.2f}, PSNR {row['psnr_db']} dB")
        if row.get("sharp_ms"):
            lines.append(f"{name}: " + sharp_verdict(row, jpeg))
    sweep = results.get("scale_sweep")
    if sweep:
        lines.append(f"scale sweep ({len(sweep['widths'])} widths {min(map(int, sweep['widths']))}-{max(map(int, sweep['widths']))} px): "
                     "worst PSNR engine-sharp " + " ".join(f"{size}:{w['db']:+.2f} at {w['width']} px"
                                                           for size, w in sweep["worst_psnr_vs_sharp_db"].items())
                     + f" dB (each >= {TARGETS['psnr_vs_sharp_db']}); time engine/sharp {sweep['engine_vs_sharp']}, "
                     f"engine/sharp-once {sweep['engine_vs_sharp_once']} (goal <= {TARGETS['engine_vs_sharp_once']})")
    first = results["first_thumbnail"]
    lines.append("first thumbnail in a fresh process / warm: " + ", ".join(
        f"{name} {row['first_ms'] / row['warm_ms']:.2f}" for name, row in first.items())
        + f" (each <= {TARGETS['first_vs_warm']}); plugins imported: {next(iter(first.values()))['plugins']}")
    cold = results["cold_start"]
    lines.append(f"intake import {cold['import_ms'][Function.INTAKE]} ms (<= {TARGETS['intake_import_ms']}), loads Pillow: "
                 f"{cold['loads_pillow'][Function.INTAKE]}; archives {cold['archive_bytes']} (each <= {TARGETS['archive_bytes']:,})")
    if "pipeline" in results:
        p = results["pipeline"]
        lines.append(f"pipeline {p['pipeline_images_per_s']} img/s vs engine {p['engine_images_per_s']} img/s: "
                     f"{p['share']:.0%} (>= {TARGETS['pipeline_share']:.0%})")
    return lines


def sharp_verdict(row: dict[str, Any], jpeg: bool) -> str:
    """Time against sharp both ways, PSNR after encoding per size against sharp's per-size pipelines, and the
    engine's bytes at sharp's PSNR against sharp's bytes."""
    ours, theirs = row["quality"]["engine"], row["quality"]["sharp"]
    time_target = f" (target <= {TARGETS['engine_vs_sharp']} on 12 MP+ JPEG)" if jpeg else ""
    parts = [f"engine/sharp {row['engine_ms'] / row['sharp_ms']:.2f}, engine/sharp-once "
             f"{row['engine_ms'] / row['sharp_once_ms']:.2f}{time_target}",
             "PSNR engine-sharp " + " ".join(f"{o['side']}:{o['psnr_db'] - t['psnr_db']:+.2f}" for o, t in zip(ours, theirs, strict=True))
             + f" dB (each >= {TARGETS['psnr_vs_sharp_db']})"]
    if "engine_bytes_at_sharp_psnr" in row:
        parts.append("bytes at sharp's PSNR / sharp's " + " ".join(
            f"{t['side']}:{b / t['bytes']:.3f}" if b else f"{t['side']}:out of sweep"
            for b, t in zip(row["engine_bytes_at_sharp_psnr"], theirs, strict=True)) + f" (each <= {TARGETS['bytes_vs_sharp']})")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--images", type=Path, help="a folder of your own images to add")
    parser.add_argument("--quick", action="store_true", help="one tiny input, one repeat, a tiny pipeline (keeps the bench working)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args(argv)
    stack = Settings()
    settings = stack.configured(Function.THUMBNAILS).settings
    repeats = 1 if args.quick else args.repeats
    paths = inputs.write(INPUT_DIR, inputs.TINY if args.quick else inputs.STANDARD)
    if not args.quick:
        paths += _real_photos()
    if args.images:
        paths += sorted(p for p in args.images.iterdir() if p.is_file())
    sharp, why_not = engines.sharp_ready()
    results: dict[str, Any] = {
        "settings": {"sizes": list(settings.thumbnail_sizes), "format": settings.output_format,
                     "quality": settings.output_quality, "architecture": stack.architecture,
                     "pyvips_threads": 1, "repeats": repeats},
        "inputs": bench_inputs(paths, repeats, settings, sharp),
        "formats": {path.name: bench_formats(path, repeats, settings) for path in [paths[0], *_real_photos()]},
        "sharp": engines.sharp_status(why_not),
        "output_formats": output_formats.run(args.quick, sharp),
        "scale_sweep": bench_scale_sweep(sharp, repeats, settings, engines.SWEEP_WIDTHS[4:5] if args.quick else engines.SWEEP_WIDTHS),
        "cold_start": bench_cold_start(1 if args.quick else 5),
        "first_thumbnail": bench_first_thumbnail(paths, max(repeats, 5), settings),
        "pipeline": bench_pipeline(args.quick),
    }
    first = results["inputs"][paths[0].name]
    results["usd_per_million"] = bench_cost(stack, first["engine_ms"])
    results["prices_date"] = costs.PRICES_DATE
    results["verdicts"] = verdicts(results) + output_formats.verdicts(results["output_formats"])
    results["limits"] = LIMITS
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'input':<24}{'engine':>9}{'naive':>9}{'pyvips':>9}{'sharp':>9}{'sharp1':>9}{'floor':>9}{'PSNR':>8}{'RSS MB':>8}")
    for name, row in results["inputs"].items():
        vips = f"{row['pyvips_ms']:.0f}" if row.get("pyvips_ms") else "-"
        sharp = [f"{row[k]:.0f}" if row.get(k) else "-" for k in ("sharp_ms", "sharp_once_ms")]
        print(f"{name:<24}{row['engine_ms']:>9.0f}{row['naive_ms']:>9.0f}{vips:>9}{sharp[0]:>9}{sharp[1]:>9}{row['floor_ms']:>9.0f}"
              f"{row['psnr_db']:>8.1f}{row['peak_rss_mb']:>8.0f}")
    print("sharp:", json.dumps(results["sharp"]), "(sharp: a pipeline per size; sharp1: one decode, then each size from the largest)")
    for name, formats in results["formats"].items():
        print(f"formats for {name} (configured sizes, one decode):", json.dumps(formats))
    print(f"USD per million images ({costs.PRICES_DATE} prices):", json.dumps(results["usd_per_million"]))
    for line in results["verdicts"]:
        print(" ", line)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
