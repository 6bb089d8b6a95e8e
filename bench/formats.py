"""make bench's formats part: the AVIF and WebP qualities that match a JPEG's SSIM, libavif's speed, and each format's
time and bytes per size (against sharp's AVIF and WebP at the same SSIM when sharp runs).

    python -m bench.formats [--quick] [--out FILE]

SSIM (Wang et al. 2004: 11-tap Gaussian window, sigma 1.5, K1 0.01, K2 0.03) on luma, of each encoded thumbnail
against the very pixels it was encoded from (the engine's lossless output), so only the encoder's loss is judged.
A format's matched quality is the lowest whose mean SSIM over the sample library and the default sizes reaches the
JPEG's at the reference quality.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from bench import engines
from handlers import imaging
from localcloud.samples import encode, photo_like, textured

ROOT = Path(__file__).resolve().parent.parent
SIZES = (1024, 512, 128)
REFERENCE_QUALITIES = (60, 70, 82, 90)
REFERENCE = 82  # the default outputQuality: the JPEG quality the other formats are compared at
SPEEDS = (6, 7, 8, 9)


def library(quick: bool = False) -> list[bytes]:
    """The sample library: generated photo-like and textured JPEGs in camera aspects, and the real photos beside the
    project when there are (generated inputs flatter WebP). --quick: one small generated photo (keeps it working)."""
    if quick:
        return [encode(photo_like(480, 320, seed=1), "JPEG", quality=92)]
    made = [encode(photo_like(w, h, seed=seed), "JPEG", quality=92)
            for seed, (w, h) in enumerate([(2400, 1600), (1600, 2400), (2048, 1536)])]
    made.append(encode(textured(2304, 1536, seed=7), "JPEG", quality=92))
    corpus = ROOT.parent / "shared" / "corpus" / "exif-orientation"
    made += [p.read_bytes() for p in sorted(corpus.glob("Landscape_[0-2].jpg"))]
    return made


def pixels(data: bytes, sizes: tuple[int, ...] = SIZES) -> list[Image.Image]:
    """The engine's pixels at each size before any lossy encoding (its PNG output, decoded)."""
    made = imaging.make_thumbnails(data, sizes, "png", 100, engines.LIMITS, sniffed="jpeg").thumbnails
    return [Image.open(io.BytesIO(t.data)).convert("RGB") for t in made]


def ssim(a: Image.Image, b: Image.Image) -> float:
    """Mean SSIM of two same-sized images, on luma (libvips does the arithmetic)."""
    import pyvips

    def luma(image: Image.Image) -> Any:
        grey = image.convert("L")
        return pyvips.Image.new_from_memory(grey.tobytes(), grey.width, grey.height, 1, "uchar").cast("float")

    x, y = luma(a), luma(b)

    def blur(image: Any) -> Any:
        return image.gaussblur(1.5, precision="float", min_ampl=0.01)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    index = ((mx * my * 2 + c1) * (sxy * 2 + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(index.avg())


def encoded(image: Image.Image, fmt: str, quality: int) -> bytes:
    """`image` as the engine encodes a thumbnail of `fmt` (imaging's own options: Huffman tables, AVIF speed...)."""
    return imaging._encode(image, max(image.size), fmt, quality).data


Encoder = Callable[[list[Image.Image], str, int], list[tuple[bytes, float]]]


def engine_encoder(images: list[Image.Image], fmt: str, quality: int) -> list[tuple[bytes, float]]:
    """Each image as the engine encodes it, with the encode's time (ms)."""
    found = []
    for image in images:
        started = time.perf_counter()
        data = encoded(image, fmt, quality)
        found.append((data, (time.perf_counter() - started) * 1000))
    return found


def sharp_encoder(modules: Path, effort: str, workdir: Path) -> Encoder:
    """sharp encoding the same pixels (bench/sharp/encode.js), in one Node process per format and quality."""
    def run(images: list[Image.Image], fmt: str, quality: int) -> list[tuple[bytes, float]]:
        inputs = []
        for index, image in enumerate(images):
            raw = workdir / f"{index}.rgb"
            raw.write_bytes(image.tobytes())
            inputs.append(f"{image.width}x{image.height}:{raw}")
        environment = {**os.environ, "NODE_PATH": str(modules), "UV_THREADPOOL_SIZE": "1", "VIPS_CONCURRENCY": "1"}
        done = subprocess.run(["node", str(engines.SHARP_SOURCE / "encode.js"), fmt, str(quality), effort,
                               str(workdir / "out"), *inputs], capture_output=True, text=True, check=True, env=environment)
        return [(Path(o["path"]).read_bytes(), o["ms"]) for o in json.loads(done.stdout)["outputs"]]
    return run


def judged(sources: list[Image.Image], fmt: str, quality: int, encoder: Encoder = engine_encoder) -> dict[str, Any]:
    """Mean SSIM, bytes and median encode time by size of every source image in `fmt` at `quality`."""
    scores, by_size, times = [], {}, {}
    for image, (data, ms) in zip(sources, encoder(sources, fmt, quality), strict=True):
        side = str(max(image.size))
        by_size[side] = by_size.get(side, 0) + len(data)
        times.setdefault(side, []).append(ms)
        scores.append(ssim(image, Image.open(io.BytesIO(data)).convert("RGB")))
    return {"quality": quality, "ssim": round(statistics.mean(scores), 5), "bytes": sum(by_size.values()),
            "bytes_by_size": by_size, "ms_by_size": {side: round(statistics.median(t), 1) for side, t in times.items()}}


def matched(sources: list[Image.Image], fmt: str, target: float, encoder: Encoder = engine_encoder,
            around: int | None = None) -> dict[str, Any]:
    """The lowest quality of `fmt` whose mean SSIM reaches `target` (SSIM grows with quality: a bisection), within 12
    of `around` when it is given (a slow encoder's search)."""
    low, high = (1, 100) if around is None else (max(1, around - 12), min(100, around + 12))
    best = judged(sources, fmt, high, encoder)
    while low < high:
        middle = (low + high) // 2
        found = judged(sources, fmt, middle, encoder)
        if found["ssim"] >= target:
            high, best = middle, found
        else:
            low = middle + 1
    return best if best["quality"] == low else judged(sources, fmt, low, encoder)


def avif_speeds(sources: list[Image.Image], quality: int, speeds: tuple[int, ...] = SPEEDS) -> dict[str, Any]:
    """libavif's encode time per size (median over the sources) and total bytes at each speed."""
    found = {}
    for speed in speeds:
        times: dict[int, list[float]] = {}
        total = 0
        for image in sources:
            started = time.perf_counter()
            buffer = io.BytesIO()
            image.save(buffer, "AVIF", quality=quality, speed=speed, max_threads=imaging.AVIF_THREADS)
            times.setdefault(max(image.size), []).append((time.perf_counter() - started) * 1000)
            total += buffer.tell()
        found[str(speed)] = {"ms": {str(side): round(statistics.median(t), 1) for side, t in sorted(times.items(), reverse=True)},
                             "bytes": total}
    return found


def quality_table(sources: list[Image.Image], references: tuple[int, ...] = REFERENCE_QUALITIES) -> dict[str, Any]:
    """For each JPEG reference quality: its SSIM and bytes, and the WebP and AVIF qualities that reach that SSIM."""
    table = {}
    for reference in references:
        jpeg = judged(sources, "jpeg", reference)
        table[str(reference)] = {"jpeg": jpeg, **{fmt: matched(sources, fmt, jpeg["ssim"]) for fmt in ("webp", "avif")}}
    return table


def against_sharp(sources: list[Image.Image], reference: dict[str, Any], modules: Path, quick: bool = False,
                  ours: dict[str, Any] | None = None) -> dict[str, Any]:
    """sharp's WebP and AVIF of the same pixels at the JPEG reference's SSIM: its AVIF at the effort of the engine's
    speed (9 - AVIF_SPEED, at least 0) and, but with --quick, at its default effort (4: slow)."""
    found = {}
    efforts = [("webp", "default"), ("avif", str(max(0, 9 - imaging.AVIF_SPEED)))] + ([] if quick else [("avif", "default")])
    with tempfile.TemporaryDirectory() as scratch:
        for fmt, effort in efforts:
            name = f"sharp_{fmt}" + ("" if effort == "default" else f"_effort{effort}")
            around = (ours or {}).get(fmt, {}).get("quality")  # sharp's scale is libvips', near Pillow's
            found[name] = matched(sources, fmt, reference["ssim"], sharp_encoder(modules, effort, Path(scratch)), around)
    return found


def run(quick: bool, modules: Path | None) -> dict[str, Any]:
    """The formats part of make bench: libavif's speeds, the matched qualities, and at the configured JPEG quality
    each format's bytes and time by size, the engine's and sharp's (when `modules`, sharp_ready's, is set)."""
    photos = library(quick)
    sources = [image for data in photos for image in pixels(data)]
    table = quality_table(sources, (REFERENCE,) if quick else REFERENCE_QUALITIES)
    at_reference = table[str(REFERENCE)]
    results: dict[str, Any] = {"sources": len(photos), "sizes": list(SIZES), "avif_speed": imaging.AVIF_SPEED,
                               "metric": "mean SSIM on luma against the pixels encoded", "qualities": table,
                               "avif_speeds": avif_speeds(sources, at_reference["avif"]["quality"],
                                                          (imaging.AVIF_SPEED,) if quick else SPEEDS)}
    if modules is not None:
        results["sharp"] = against_sharp(sources, at_reference["jpeg"], modules, quick, at_reference)
    return results


def verdicts(results: dict[str, Any]) -> list[str]:
    """One line per format: bytes and encode time by size against the JPEG and against sharp at the same SSIM."""
    ours = results["qualities"][str(REFERENCE)]
    jpeg = ours["jpeg"]
    lines = []
    for name, row in [*((f"engine {fmt}", ours[fmt]) for fmt in ("jpeg", "webp", "avif")),
                      *results.get("sharp", {}).items()]:
        fmt = name.split("_")[1] if name.startswith("sharp") else name.split()[-1]
        mine = ours[fmt]
        sizes = ", ".join(f"{side}: {row['bytes_by_size'][side]:,} B {row['ms_by_size'][side]:.0f} ms" for side in row["bytes_by_size"])
        versus = (f"; engine/sharp bytes {mine['bytes'] / row['bytes']:.2f}" if name.startswith("sharp") else
                  f"; bytes/JPEG {row['bytes'] / jpeg['bytes']:.2f}")
        lines.append(f"{name} q{row['quality']} (SSIM {row['ssim']:.4f}): {sizes}{versus}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.formats")
    parser.add_argument("--quick", action="store_true", help="one small photo, one reference quality, one speed")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "formats.json")
    parser.add_argument("--speed", type=int, default=imaging.AVIF_SPEED, help="libavif's speed for the quality table")
    args = parser.parse_args(argv)
    imaging.AVIF_SPEED = args.speed  # the engine's encoder at this speed (the speed table tries each)
    modules, why_not = engines.sharp_ready()
    results = run(args.quick, modules)
    results["verdicts"] = verdicts(results)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "verdicts"}))
    for line in results["verdicts"]:
        print(" ", line)
    if why_not:
        print("sharp:", why_not)
    return 0


if __name__ == "__main__":
    sys.exit(main())
