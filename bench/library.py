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
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from bench import engines
from handlers.names import Status
from localcloud.samples import camera_jpeg, encode, photo_like

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "build" / "library"
# (width, height) of common sensors: 8, 12, 16, 20 and 24 MP.
SENSORS = [(3264, 2448), (4000, 3000), (4608, 3456), (5472, 3648), (6000, 4000)]
CAMERAS = [("Canon", "EOS R6"), ("NIKON CORPORATION", "NIKON Z 6_2"), ("FUJIFILM", "X-T5"), ("SONY", "ILCE-7M4"),
           ("Apple", "iPhone 13"), ("samsung", "SM-S918B"), ("OLYMPUS CORPORATION", "E-M1MarkIII")]
RECIPE = 2  # bump when what is generated changes


def write_library(directory: Path = DEFAULT_DIR, count: int = 100, extras: int = 6, seed: int = 17,
                  sensors: list[tuple[int, int]] = SENSORS, scene_size: tuple[int, int] = (6000, 4000)) -> list[Path]:
    """`count` JPEGs plus `extras` PNG and `extras` WebP files in `directory` (made once, then reused). `sensors` and
    `scene_size`: smaller for a quick run (every sensor must fit in the scene)."""
    stamp = hashlib.sha256(json.dumps([RECIPE, count, extras, seed, sensors, scene_size]).encode()).hexdigest()[:12]
    marker = directory / f".made-{stamp}"
    if marker.exists():
        return sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        old.unlink()
    rng = random.Random(seed)
    scene_w, scene_h = scene_size
    scenes = [photo_like(scene_w, scene_h, seed=index + 1) for index in range(6)]
    paths = []
    for index in range(count):
        width, height = rng.choice(sensors)
        scene = rng.choice(scenes)
        left, top = rng.randint(0, scene_w - width), rng.randint(0, scene_h - height)
        upright = scene.crop((left, top, left + width, top + height))
        portrait = rng.random() < 0.35
        if portrait:
            upright = upright.transpose(Image.Transpose.ROTATE_90)  # a portrait, as shown
        orientation = rng.choice([6, 8]) if portrait else rng.choice([1, 1, 1, 3])
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = rng.choice(CAMERAS)
        exif.get_ifd(0x8769)[0x9003] = f"2026:{rng.randint(1, 12):02d}:{rng.randint(1, 28):02d} {rng.randint(6, 21):02d}:{rng.randint(0, 59):02d}:00"
        path = directory / f"IMG_{index:04d}.JPG"
        path.write_bytes(camera_jpeg(upright, exif, orientation, quality=rng.choice([85, 90, 95])))
        paths.append(path)
    for index in range(extras):
        scene = rng.choice(scenes)
        left, top = rng.randint(0, scene_w // 2), rng.randint(0, scene_h // 2)
        crop = scene.crop((left, top, left + scene_w // 2, top + scene_h // 2))
        for fmt, suffix in (("PNG", "png"), ("WEBP", "webp")):
            path = directory / f"export_{index:02d}.{suffix}"
            path.write_bytes(encode(crop, fmt, **({"compress_level": 6} if fmt == "PNG" else {"quality": 85})))
            paths.append(path)
    marker.write_text("")
    return sorted(paths)


# What keeps the pipeline's share of the engine's speed where it is (bench/results.json carries it).
WHERE_THE_REST_GOES = ("the emulator: moto answers every S3, SQS, SNS and DynamoDB call (about 20 per photo) in Python, "
                       "spending about as much CPU per photo as the thumbnail stage (S3 PUTs most, then DynamoDB's "
                       "parsed conditional updates); it, the pollers and the intake and label functions share the "
                       "machine's cores with the thumbnail stage, while the engine figure has a core to itself")


def files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if not p.name.startswith("."))


def engine_rate(paths: list[Path]) -> float:
    """Images per second of the work the library's runs ask of the machine's cores for each photo, one after another
    in one process, at the settings they deploy (the demo's, with LIBRARY_CONFIG): the thumbnail engine with its crops
    and formats, and, with the duplicates gate on, its hash (a second decode, at a JPEG's smallest draft)."""
    from handlers import duplicates
    from handlers.names import Function
    from handlers.sniff import SNIFF_BYTES, sniff
    from infra.settings import load
    from localcloud.overrides import showcase

    deployed = load({**showcase(), **LIBRARY_CONFIG})
    s = deployed.configured(Function.THUMBNAILS).settings
    hashed = duplicates.NAME in deployed.stages and deployed.configured(duplicates.NAME).settings.mode != "off"
    *preferred, (fallback, quality) = s.encodings
    data = [p.read_bytes() for p in paths]
    started = time.perf_counter()
    for item in data:
        engines.engine(item, s.thumbnail_sizes, fallback, quality, s.crops, tuple(preferred))
        if hashed:
            duplicates.hashes_of(item, engines.LIMITS, sniff(item[:SNIFF_BYTES]).format)
    return len(data) / (time.perf_counter() - started)


# The library measures the thumbnail stage against its engine. Rekognition's DetectLabels quota is a limit of its
# own (5 a second by default here, which 112 photos at the engine's ~10/s would hit first): `make test-capacity`
# holds the pipeline to it, and these runs set one they cannot reach, as a stack with a raised quota would. The
# moderation gate the demo turns on is left off: these runs measure the thumbnail stage. With it on (moderationTps
# 100), idle, the 112 photos took 46-47 s, 2.4/s, 39-40% of the engine's 6.06/s (67-72% without it, earlier runs);
# where the rest goes is not measured yet: the gate is one more hop (two environments, batches of 5, a 1 s batching
# window), and the emulated DetectModerationLabels reads and decodes every original on the same two cores (in AWS
# that work is Rekognition's). The duplicates gate, the crop and the formats the demo turns on stay on: the
# library's records carry every output a page gets, and the engine's rate counts the crop's and formats' encodes.
LIBRARY_CONFIG = {"rekognitionTps": "100", "moderation": "false"}


def demo(directory: Path, workdir: Path, config: dict[str, str] = LIBRARY_CONFIG) -> dict:
    """`python -m localcloud demo DIR --json [--set KEY=VALUE]…` as a user runs it; its JSON summary."""
    workdir.mkdir(parents=True, exist_ok=True)
    summary = workdir / "summary.json"
    sets = [arg for key, value in config.items() for arg in ("--set", f"{key}={value}")]
    run = subprocess.run([sys.executable, "-m", "localcloud", "demo", str(directory), "--json", str(summary),
                          "--out", str(workdir / "out"), *sets], cwd=ROOT, capture_output=True, text=True, timeout=1500,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if run.returncode != 0:
        raise RuntimeError(f"the demo failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    return json.loads(summary.read_text())


def pipeline_share(directory: Path, workdir: Path | None = None, rate: float | None = None) -> dict:
    """The library through the demo against the engine alone on the same photos and machine."""
    rate = engine_rate(files(directory)) if rate is None else rate
    with tempfile.TemporaryDirectory() as scratch:
        result = demo(directory, workdir or Path(scratch))
    return {"images": result["uploaded"], Status.DONE: result[Status.DONE], "dead_lettered": result["dead_lettered"],
            "redeliveries": result["redeliveries"], "elapsed_seconds": result["elapsed_seconds"],
            "pipeline_images_per_s": result["uploads_per_second"], "engine_images_per_s": round(rate, 2),
            "share": round(result["uploads_per_second"] / rate, 2), "config": result.get("config", {}),
            "where_the_rest_goes": WHERE_THE_REST_GOES,
            "summary": result}


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
