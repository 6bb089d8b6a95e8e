"""Photo-like benchmark inputs, generated: smooth light, texture and edges, so encoders and decoders work
as hard as they do on photographs (flat test patterns compress and decode unrealistically fast)."""
from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter


def photo_like(width: int, height: int, seed: int = 1) -> Image.Image:
    base = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    sky = Image.new("RGB", (width, height), (70, 120, 190))
    image = Image.blend(base, sky, 0.55)
    draw = ImageDraw.Draw(image)
    step = max(width, height) // 24
    for i in range(24):  # hard edges: buildings and a horizon
        x = (i * 7919 * seed) % width
        h = height // 3 + (i * 104729) % (height // 2)
        draw.rectangle([x, height - h, x + step, height], fill=((i * 37) % 255, (i * 91) % 255, (i * 53) % 255))
    # Fine texture, as foliage and sensor noise give real photos; generated small and scaled up to stay quick.
    noise = Image.effect_noise((max(1, width // 4), max(1, height // 4)), 40).resize((width, height), Image.Resampling.BILINEAR)
    image = Image.composite(image, image.filter(ImageFilter.GaussianBlur(2)), noise.point(lambda v: 255 if v > 128 else 0))
    # Full-resolution grain and colour detail: real 12 MP camera JPEGs are 3-6 MB, not a few hundred KB.
    grain = Image.merge("RGB", [Image.effect_noise((width, height), 64) for _ in range(3)])
    return Image.blend(image, grain, 0.22)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpeg_sideways(width: int, height: int) -> bytes:
    """A camera JPEG: pixels stored rotated, EXIF orientation 6, camera tags."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F], exif[0x0110] = "Bench", "Camera"
    return encode(photo_like(height, width).transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90, exif=exif.tobytes())


STANDARD = {
    "jpeg-12mp-orient6.jpg": lambda: jpeg_sideways(4000, 3000),
    "jpeg-24mp-orient6.jpg": lambda: jpeg_sideways(6000, 4000),
    "png-6mp.png": lambda: encode(photo_like(3000, 2000), "PNG", compress_level=6),
    "webp-6mp.webp": lambda: encode(photo_like(3000, 2000), "WEBP", quality=85),
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
