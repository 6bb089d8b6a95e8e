"""Photo-like benchmark inputs (`localcloud.samples.photo_like`), generated once and kept between runs."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from localcloud.samples import camera_jpeg, encode, photo_like


def jpeg_sideways(width: int, height: int) -> bytes:
    """A camera JPEG: width x height pixels stored rotated, EXIF orientation 6, camera tags."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Bench", "Camera"
    return camera_jpeg(photo_like(height, width), exif)


STANDARD = {
    "jpeg-12mp-orient6.jpg": lambda: jpeg_sideways(4000, 3000),
    "jpeg-24mp-orient6.jpg": lambda: jpeg_sideways(6000, 4000),
    "png-6mp.png": lambda: encode(photo_like(3000, 2000), "PNG", compress_level=6),
    "webp-6mp.webp": lambda: encode(photo_like(3000, 2000), "WEBP", quality=85),
    # Small photos, below the largest boxes: each box at or above their size shares one rendition (issue 30 measured
    # them at 1.6x pyvips when each box was encoded again).
    "jpeg-640x427.jpg": lambda: jpeg_sideways(640, 427),
    "jpeg-100x68.jpg": lambda: jpeg_sideways(100, 68),
}
TINY = {"tiny.jpg": lambda: jpeg_sideways(320, 240)}


def write(directory: Path, which: dict = STANDARD) -> list[Path]:
    """Generate the inputs once into `directory` (kept between runs)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, make in which.items():
        path = directory / name
        if not path.exists():
            path.write_bytes(make())
        paths.append(path)
    return paths
