"""Which perceptual hash finds duplicates: pHash (handlers/phash.py) against PDQ, on copies of generated photos.

    python -m bench.duplicates [--photos N] [--out FILE]

The originals are photo-like images of one style (localcloud.samples.photo_like: the same sky, ground and kinds of
buildings, in other places, other grain), half of them crops of two shared scenes at least a third of a frame
apart, as a camera library's different photos of one place: the hard case for false matches. Each original is
copied rotated (a quarter turn, 2 and 5 degrees), re-encoded (JPEG at 50, 75 and 95, WebP at 80), resized (0.25x,
0.5x, 2x) and cropped (5%, 10% and 20% off the edges). A pair is a true duplicate when both come from one original.
For each hash, the threshold is the largest distance at which no pair of different originals (or of their copies)
matches, over every such pair; recall is the share of true pairs within it. PDQ is measured when `pdqhash` (and
numpy) can be imported: PyPI has only its source (0.2.8), which needs a C++ compiler, so it is not in the bench's
requirements; install it into a throwaway venv to compare (README "Duplicates").
"""
from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from handlers import phash
from localcloud.samples import photo_like

ROOT = Path(__file__).resolve().parent.parent
SIZE = (960, 720)


def originals(count: int) -> list[Image.Image]:
    """`count` different photos of one style: half each drawn on its own, half crops of two shared scenes."""
    own = [photo_like(*SIZE, seed=index + 1) for index in range(count - count // 2)]
    scenes = [photo_like(SIZE[0] * 3, SIZE[1] * 2, seed=90 + s) for s in range(2)]
    crops = []
    for index in range(count // 2):
        scene = scenes[index % 2]
        step = index // 2  # a third of a frame apart (half a frame down every row): different, overlapping photos
        left, top = (step % 7) * SIZE[0] // 3, (step // 7 % 3) * SIZE[1] // 2
        crops.append(scene.crop((left, top, left + SIZE[0], top + SIZE[1])))
    return own + crops


def _encoded(image: Image.Image, fmt: str, quality: int) -> Image.Image:
    out = io.BytesIO()
    image.save(out, fmt, quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def _cropped(image: Image.Image, share: float) -> Image.Image:
    dx, dy = int(image.width * share / 2), int(image.height * share / 2)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


def _resized(image: Image.Image, factor: float) -> Image.Image:
    return image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS)


COPIES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "rotated 90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "rotated 2": lambda im: im.rotate(2, Image.Resampling.BICUBIC),
    "rotated 5": lambda im: im.rotate(5, Image.Resampling.BICUBIC),
    "jpeg 50": lambda im: _encoded(im, "JPEG", 50),
    "jpeg 75": lambda im: _encoded(im, "JPEG", 75),
    "jpeg 95": lambda im: _encoded(im, "JPEG", 95),
    "webp 80": lambda im: _encoded(im, "WEBP", 80),
    "resized 0.25": lambda im: _resized(im, 0.25),
    "resized 0.5": lambda im: _resized(im, 0.5),
    "resized 2": lambda im: _resized(im, 2.0),
    "cropped 5%": lambda im: _cropped(im, 0.05),
    "cropped 10%": lambda im: _cropped(im, 0.10),
    "cropped 20%": lambda im: _cropped(im, 0.20),
}


def _hashes() -> dict[str, tuple[int, Callable[[Image.Image], list[int]]]]:
    """Each hash: (its bits, what it gives for an image: the stored hash first, then what a lookup also tries)."""
    found: dict[str, tuple[int, Callable[[Image.Image], list[int]]]] = {
        "phash": (phash.BITS, lambda im: [phash.phash(im)]),
        "phash+turns": (phash.BITS, phash.rotations),
    }
    try:
        import numpy
        import pdqhash  # type: ignore[import-not-found]
    except ImportError:
        return found

    def as_int(bits: Any) -> int:
        return int("".join("1" if b else "0" for b in bits), 2)

    def pdq(im: Image.Image) -> list[int]:
        return [as_int(pdqhash.compute(numpy.asarray(im.convert("RGB")))[0])]

    def pdq_turns(im: Image.Image) -> list[int]:
        # compute_dihedral's first four: the image as it is and turned by 90, 180 and 270 degrees
        vectors = pdqhash.compute_dihedral(numpy.asarray(im.convert("RGB")))[0]
        return [as_int(v) for v in vectors[:4]]

    found.update({"pdq": (256, pdq), "pdq+turns": (256, pdq_turns)})
    return found


def measure(count: int) -> dict[str, Any]:
    photos = originals(count)
    copies = {(i, name): make(photo) for i, photo in enumerate(photos) for name, make in COPIES.items()}
    results: dict[str, Any] = {"photos": count, "copies": len(copies), "size": list(SIZE)}
    for name, (bits, hashes_of) in _hashes().items():
        started = time.perf_counter()
        stored = [hashes_of(p)[0] for p in photos]
        looked = {key: hashes_of(image) for key, image in copies.items()}
        seconds = (time.perf_counter() - started) / (len(photos) + len(copies))

        def nearest(tried: list[int], target: int) -> int:
            return min((a ^ target).bit_count() for a in tried)

        true = {key: nearest(tried, stored[key[0]]) for key, tried in looked.items()}
        false = [nearest(tried, stored[j]) for (i, _), tried in looked.items() for j in range(count) if j != i]
        false += [nearest(hashes_of(photos[i]), stored[j]) for i in range(count) for j in range(count) if j != i]
        threshold = min(false) - 1
        by_copy = {copy: sum(true[(i, copy)] <= threshold for i in range(count)) / count for copy in COPIES}
        results[name] = {
            "bits": bits, "threshold": threshold, "false_pairs": len(false), "closest_false": min(false),
            "recall": sum(d <= threshold for d in true.values()) / len(true),
            "recall_without_turns": sum(true[k] <= threshold for k in true if k[1] != "rotated 90") / (len(true) - count),
            "by_copy": by_copy, "ms_per_image": round(seconds * 1000, 1)}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=32)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "duplicates.json")
    args = parser.parse_args(argv)
    results = measure(args.photos)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"{results['photos']} photos, {results['copies']} copies; threshold: the largest distance no pair of "
          f"different photos reaches")
    copies = list(COPIES)
    print(f"{'hash':12} {'bits':>4} {'thr':>4} {'false pairs':>11} {'recall':>7} {'w/o 90':>7} {'ms':>6}  "
          + "  ".join(copies))
    for name, r in results.items():
        if isinstance(r, dict):
            print(f"{name:12} {r['bits']:>4} {r['threshold']:>4} {r['false_pairs']:>11,} {r['recall']:>7.1%} "
                  f"{r['recall_without_turns']:>7.1%} {r['ms_per_image']:>6}  "
                  + "  ".join(f"{r['by_copy'][c]:.0%}".rjust(len(c)) for c in copies))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
