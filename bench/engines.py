"""The contenders, each making the same sizes in the same format from the same bytes."""
from __future__ import annotations

import io
import math
from collections.abc import Callable

from PIL import Image, ImageChops, ImageOps, ImageStat

from handlers import imaging

Engine = Callable[[bytes, tuple[int, ...], str, int], list[bytes]]
LIMITS = imaging.Limits(max_pixels=200_000_000, max_frames=1000)
PSNR_IDENTICAL = 100.0  # reported when the pixels match the reference exactly


def engine(data: bytes, sizes: tuple[int, ...], fmt: str, quality: int) -> list[bytes]:
    """The project's thumbnail engine, as the thumbnail stage runs it."""
    return [t.data for t in imaging.make_thumbnails(data, sizes, fmt, quality, LIMITS).thumbnails]


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
    largest = pyvips.Image.thumbnail_buffer(data, ordered[0], height=ordered[0]).copy_memory()
    outputs = [largest.write_to_buffer(suffix)]
    for size in ordered[1:]:
        outputs.append(largest.thumbnail_image(size, height=size).write_to_buffer(suffix))
    return outputs


def pyvips_available() -> bool:
    try:
        import pyvips  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


ENGINES: dict[str, Engine] = {"engine": engine, "naive": naive, "floor": floor, "pyvips": pyvips_engine}


def _psnr(a: Image.Image, b: Image.Image) -> float:
    mse = sum(v * v for v in ImageStat.Stat(ImageChops.difference(a, b)).rms) / 3
    return PSNR_IDENTICAL if mse == 0 else min(PSNR_IDENTICAL, 10 * math.log10(255 ** 2 / mse))


def psnr_between(encoded: bytes, reference: bytes) -> float:
    return _psnr(Image.open(io.BytesIO(encoded)).convert("RGB"), Image.open(io.BytesIO(reference)).convert("RGB"))


def psnr(data: bytes, sizes: tuple[int, ...]) -> float:
    """The lowest PSNR (dB) over the sizes of the engine's pixels (lossless output, so the encoder is left
    out) against a full decode, oriented, resized with Lanczos to the same size."""
    full = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    lowest = PSNR_IDENTICAL
    for ours in imaging.make_thumbnails(data, sizes, "png", 100, LIMITS).thumbnails:
        candidate = Image.open(io.BytesIO(ours.data)).convert("RGB")
        lowest = min(lowest, _psnr(candidate, full.resize(candidate.size, Image.Resampling.LANCZOS)))
    return lowest
