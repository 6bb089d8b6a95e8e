"""A generated camera library: a hundred-odd photos of 8 to 24 MP, as a folder a user would bring.

Six photo-like scenes are rendered once at 24 MP; every photo is a different crop of one of them, at a
camera's size and aspect, stored the way cameras store them (portraits sideways with EXIF orientation 6 or 8,
some upside down with 3), with camera tags and a time taken; a few PNG and WebP files come along. The folder is
kept under build/ and reused while its recipe stays the same.

    python -m bench.library DIR [--count N]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
from pathlib import Path

from PIL import Image

from bench.inputs import encode, photo_like

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "build" / "library"
# (width, height) of common sensors: 8, 12, 16, 20 and 24 MP.
SENSORS = [(3264, 2448), (4000, 3000), (4608, 3456), (5472, 3648), (6000, 4000)]
CAMERAS = [("Canon", "EOS R6"), ("NIKON CORPORATION", "NIKON Z 6_2"), ("FUJIFILM", "X-T5"), ("SONY", "ILCE-7M4"),
           ("Apple", "iPhone 13"), ("samsung", "SM-S918B"), ("OLYMPUS CORPORATION", "E-M1MarkIII")]
STORED = {1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
RECIPE = 2  # bump when what is generated changes


def write_library(directory: Path = DEFAULT_DIR, count: int = 100, extras: int = 6, seed: int = 17) -> list[Path]:
    """`count` JPEGs plus `extras` PNG and `extras` WebP files in `directory` (made once, then reused)."""
    stamp = hashlib.sha256(json.dumps([RECIPE, count, extras, seed]).encode()).hexdigest()[:12]
    marker = directory / f".made-{stamp}"
    if marker.exists():
        return sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        old.unlink()
    rng = random.Random(seed)
    scenes = [photo_like(6000, 4000, seed=index + 1) for index in range(6)]
    paths = []
    for index in range(count):
        width, height = rng.choice(SENSORS)
        scene = rng.choice(scenes)
        left, top = rng.randint(0, 6000 - width), rng.randint(0, 4000 - height)
        upright = scene.crop((left, top, left + width, top + height))
        portrait = rng.random() < 0.35
        if portrait:
            upright = upright.transpose(Image.Transpose.ROTATE_90)  # a portrait, as shown
        orientation = rng.choice([6, 8]) if portrait else rng.choice([1, 1, 1, 3])
        stored = upright if STORED[orientation] is None else upright.transpose(STORED[orientation])
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = rng.choice(CAMERAS)
        exif[0x0112] = orientation
        exif.get_ifd(0x8769)[0x9003] = f"2026:{rng.randint(1, 12):02d}:{rng.randint(1, 28):02d} {rng.randint(6, 21):02d}:{rng.randint(0, 59):02d}:00"
        path = directory / f"IMG_{index:04d}.JPG"
        path.write_bytes(encode(stored, "JPEG", quality=rng.choice([85, 90, 95]), exif=exif.tobytes()))
        paths.append(path)
    for index in range(extras):
        scene = rng.choice(scenes)
        left, top = rng.randint(0, 3000), rng.randint(0, 2000)
        crop = scene.crop((left, top, left + 3000, top + 2000))
        for fmt, suffix in (("PNG", "png"), ("WEBP", "webp")):
            path = directory / f"export_{index:02d}.{suffix}"
            path.write_bytes(encode(crop, fmt, **({"compress_level": 6} if fmt == "PNG" else {"quality": 85})))
            paths.append(path)
    marker.write_text("")
    return sorted(paths)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.library", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, nargs="?", default=DEFAULT_DIR)
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args(argv)
    paths = write_library(args.directory, args.count)
    print(f"{len(paths)} files, {sum(p.stat().st_size for p in paths) / 1e6:.0f} MB, in {args.directory}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
