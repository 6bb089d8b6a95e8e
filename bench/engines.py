"""The contenders, each making the same sizes in the same format from the same bytes."""
from __future__ import annotations

import io
import itertools
import json
import math
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, ImageOps, ImageStat

from handlers import imaging
from handlers.sniff import SNIFF_BYTES, sniff
from localcloud.samples import encode, textured

Engine = Callable[[bytes, tuple[int, ...], str, int], list[bytes]]
LIMITS = imaging.Limits(max_pixels=200_000_000, max_frames=1000)
PSNR_IDENTICAL = 100.0  # reported when the pixels match the reference exactly


def engine(data: bytes, sizes: tuple[int, ...], fmt: str, quality: int, crops: tuple[tuple[int, int], ...] = (),
           preferred: tuple[tuple[str, int], ...] = ()) -> list[bytes]:
    """The project's thumbnail engine, as the thumbnail stage runs it: with the format the intake sniffed (and the
    stage's crops and preferred formats, when given)."""
    sniffed = sniff(data[:SNIFF_BYTES]).format
    made = imaging.make_thumbnails(data, sizes, fmt, quality, LIMITS, sniffed=sniffed, crops=crops,
                                   preferred=preferred).thumbnails
    return [t.data for t in made for _ in t.boxes]  # one per size, as every engine answers (sizes may share one)


def _save(image: Image.Image, fmt: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    if fmt == "jpeg" and image.mode != "RGB":
        image = image.convert("RGB")
    image.save(buffer, format=fmt.upper(), **({"quality": quality} if fmt != "png" else {}))
    return buffer.getvalue()


def naive(data: bytes, sizes: tuple[int, ...], fmt: str, quality: int) -> list[bytes]:
    """What most code does: full decode, exif_transpose, then each size from the full image."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    image = image.convert("RGB")
    outputs = []
    for size in sizes:
        copy = image.copy()
        copy.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=None)
        outputs.append(_save(copy, fmt, quality))
    return outputs


def floor(data: bytes, sizes: tuple[int, ...], fmt: str, quality: int) -> list[bytes]:
    """The decoder's floor: decode only, at the smallest draft scale the largest size allows; no resize, no encode."""
    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG":
        largest = max(sizes)
        scale = largest / max(image.size)
        if scale < 1:
            image.draft("RGB", (math.ceil(image.size[0] * scale), math.ceil(image.size[1] * scale)))
    image.load()
    return []


def pyvips_engine(data: bytes, sizes: tuple[int, ...], fmt: str, quality: int) -> list[bytes]:
    """libvips at its best for several sizes: one shrink-on-load decode (autorotated) to the largest size,
    kept in memory, and each smaller size made from it (decoding per size measured slower)."""
    import pyvips

    suffix = {"jpeg": f".jpg[Q={quality},strip]", "webp": f".webp[Q={quality},strip]", "png": ".png[strip]"}[fmt]
    ordered = sorted(sizes, reverse=True)
    # size="down": never enlarged, as the engine and sharp (withoutEnlargement) work.
    largest = pyvips.Image.thumbnail_buffer(data, ordered[0], height=ordered[0], size="down").copy_memory()
    outputs = [largest.write_to_buffer(suffix)]
    for size in ordered[1:]:
        outputs.append(largest.thumbnail_image(size, height=size, size="down").write_to_buffer(suffix))
    return outputs


def pyvips_available() -> bool:
    try:
        import pyvips  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


ENGINES: dict[str, Engine] = {"engine": engine, "naive": naive, "floor": floor, "pyvips": pyvips_engine}


def psnr_images(a: Image.Image, b: Image.Image) -> float:
    """PSNR (dB) of two RGB images of one size, over the three channels."""
    mse = sum(v * v for v in ImageStat.Stat(ImageChops.difference(a, b)).rms) / 3
    return PSNR_IDENTICAL if mse == 0 else min(PSNR_IDENTICAL, 10 * math.log10(255 ** 2 / mse))


def psnr_between(encoded: bytes, reference: bytes) -> float:
    return psnr_images(Image.open(io.BytesIO(encoded)).convert("RGB"), Image.open(io.BytesIO(reference)).convert("RGB"))


def psnr(data: bytes, sizes: tuple[int, ...], reference: Reference | None = None) -> float:
    """The lowest PSNR (dB) over the sizes of the engine's pixels (lossless output, so the encoder is left
    out) against the reference (a full decode, oriented, resized with Lanczos to the same size)."""
    judged = (reference or Reference(data)).judge(engine(data, sizes, "png", 100))
    return min(row["psnr_db"] for row in judged)


# sharp (Node), measured when Node.js is on the PATH: installed from bench/sharp/package-lock.json into a cache
# beside the Pillow layer's, as `npm ci` installs it (the registry must be reachable the first time).
SHARP_SOURCE = Path(__file__).resolve().parent / "sharp"
SHARP_CACHE = Path(__file__).resolve().parent.parent / "build" / "sharp"
SHARP_MODES = ("sizes", "once")


def sharp_ready() -> tuple[Path | None, str]:
    """The cache's node_modules when sharp can run here, or None and why not (reported in results.json)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None, "Node.js (node and npm) not found: sharp not measured"
    lock = SHARP_SOURCE / "package-lock.json"
    installed = SHARP_CACHE / "package-lock.json"
    if not installed.is_file() or installed.read_bytes() != lock.read_bytes():
        SHARP_CACHE.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(SHARP_SOURCE / name, SHARP_CACHE / name)
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=SHARP_CACHE,
                              capture_output=True, text=True)
        if done.returncode != 0:
            installed.unlink(missing_ok=True)
            return None, f"npm ci failed: sharp not measured ({done.stderr.strip()[-300:]})"
    return SHARP_CACHE / "node_modules", ""


def sharp_run(modules: Path, mode: str, path: Path, repeats: int, sizes: tuple[int, ...], fmt: str, quality: int,
              outdir: Path) -> dict[str, Any]:
    """Time sharp (installed in `modules`, from sharp_ready) in a fresh Node process on one thread; its outputs land
    in `outdir` (bench/sharp/worker.js)."""
    environment = {**os.environ, "NODE_PATH": str(modules), "UV_THREADPOOL_SIZE": "1", "VIPS_CONCURRENCY": "1"}
    done = subprocess.run(["node", str(SHARP_SOURCE / "worker.js"), mode, str(path), str(repeats),
                           ",".join(map(str, sizes)), fmt, str(quality), str(outdir)],
                          capture_output=True, text=True, check=True, env=environment)
    found: dict[str, Any] = json.loads(done.stdout)
    found["outputs"] = [Path(p).read_bytes() for p in found["outputs"]]
    return found


class Reference:
    """The quality reference: a full decode, oriented, in RGB, resized with Lanczos to each output's size."""

    def __init__(self, data: bytes) -> None:
        self.full = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
        self._sized: dict[tuple[int, int], Image.Image] = {}

    def at(self, size: tuple[int, int]) -> Image.Image:
        if size not in self._sized:
            self._sized[size] = self.full.resize(size, Image.Resampling.LANCZOS)
        return self._sized[size]

    def judge(self, outputs: list[bytes]) -> list[dict[str, Any]]:
        """Each encoded output, largest first: its longer side, bytes and PSNR (dB) after encoding."""
        rows = []
        for encoded in outputs:
            image = Image.open(io.BytesIO(encoded)).convert("RGB")
            rows.append({"side": max(image.size), "bytes": len(encoded),
                         "psnr_db": round(psnr_images(image, self.at(image.size)), 2)})
        return sorted(rows, key=lambda row: -row["side"])


def bytes_at_psnr(curve: list[tuple[float, int]], psnr_db: float) -> float | None:
    """Bytes at `psnr_db` on a (PSNR, bytes) curve from a quality sweep, interpolated on log bytes between the
    two points around it; None when the sweep does not reach it."""
    points = sorted(curve)
    for (low_db, low_bytes), (high_db, high_bytes) in itertools.pairwise(points):
        if low_db <= psnr_db <= high_db and high_db > low_db:
            share = (psnr_db - low_db) / (high_db - low_db)
            return round(math.exp(math.log(low_bytes) + share * (math.log(high_bytes) - math.log(low_bytes))))
    return None


def sharp_status(why_not: str) -> dict[str, Any]:
    """What results.json says of sharp: its pinned version, whether it was measured, and why not (sharp_ready's)."""
    version = json.loads((SHARP_SOURCE / "package.json").read_text())["dependencies"]["sharp"]
    return {"version": version, "measured": not why_not, **({"note": why_not} if why_not else {})}


# The scale sweep: source widths across the JPEG draft's powers of two (1/2 at 2048 px, 1/4 at 4096 px for a 1024 px
# box) and either side of each, in a phone photo's aspect (4608 x 1976), to the default sizes.
SWEEP_WIDTHS = (1025, 1300, 1600, 2049, 2150, 2400, 2600, 3025, 3300, 3700, 4097, 4275, 4608, 4700)


def sweep_source(width: int) -> bytes:
    """A textured JPEG `width` px wide (localcloud.samples.textured: detail at every scale, as real photos have)."""
    return encode(textured(width, round(width * 1976 / 4608), seed=width), "JPEG", quality=90)


def sweep_gaps(modules: Path, data: bytes, sizes: tuple[int, ...], fmt: str, quality: int, workdir: Path) -> dict[int, float]:
    """The engine's PSNR minus sharp's (one pipeline per size: its best) at each size, both after encoding and
    against the full-decode Lanczos reference; `data` is written to `workdir` for sharp."""
    path = workdir / "source.jpg"
    path.write_bytes(data)
    reference = Reference(data)
    theirs = reference.judge(sharp_run(modules, "sizes", path, 1, sizes, fmt, quality, workdir / "sharp")["outputs"])
    ours = reference.judge(engine(data, sizes, fmt, quality))
    return {o["side"]: round(o["psnr_db"] - t["psnr_db"], 2) for o, t in zip(ours, theirs, strict=True)}
