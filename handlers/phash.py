"""A perceptual hash of an image (pHash: 64 bits, hex in the record) and the bands the duplicates index keys it by.

pHash as `imagehash.phash` computes it (the image in grey, resized to 32x32 with a Lanczos filter, its 2-D DCT-II,
the 8x8 lowest frequencies, one bit each: above their median or not), written on Pillow alone: the DCT of 32x32
values to 8x8 is 16k multiplications, a few milliseconds in Python, where `imagehash` brings numpy, SciPy and
PyWavelets into the Lambda layer (why this one and not PDQ, measured: README "Duplicates"; bench/duplicates.py).
"""
from __future__ import annotations

from math import cos, pi
from statistics import median

from PIL import Image

SIDE = 32  # the image is reduced to SIDE x SIDE before the DCT
KEEP = 8  # the KEEP x KEEP lowest frequencies make the hash
BITS = KEEP * KEEP
_COS = [[cos(pi * (2 * n + 1) * k / (2 * SIDE)) for n in range(SIDE)] for k in range(KEEP)]


def coefficients(image: Image.Image) -> list[list[float]]:
    """The KEEP x KEEP lowest DCT-II coefficients of the image in grey at SIDE x SIDE ([vertical][horizontal])."""
    grey = image.convert("L").resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    values = list(grey.tobytes())
    rows = [values[y * SIDE:(y + 1) * SIDE] for y in range(SIDE)]
    across = [[sum(c * v for c, v in zip(basis, row, strict=True)) for basis in _COS] for row in rows]  # SIDE x KEEP
    return [[sum(_COS[u][y] * across[y][k] for y in range(SIDE)) for k in range(KEEP)] for u in range(KEEP)]


def of_coefficients(coeffs: list[list[float]]) -> int:
    """The hash of these coefficients: one bit each, row by row, the first the most significant."""
    flat = [c for row in coeffs for c in row]
    middle = median(flat)
    bits = 0
    for c in flat:
        bits = bits << 1 | (c > middle)
    return bits


def phash(image: Image.Image) -> int:
    return of_coefficients(coefficients(image))


def rotations(image: Image.Image) -> list[int]:
    """The hashes of the image as it is and turned by 90, 180 and 270 degrees, from one DCT: turning an image a
    quarter transposes its coefficients and negates those of odd frequency along the flipped axis."""
    c = coefficients(image)
    r = range(KEEP)
    turned = [
        c,
        [[c[k][u] * (-1) ** k for k in r] for u in r],  # a quarter clockwise
        [[c[u][k] * (-1) ** (u + k) for k in r] for u in r],  # 180
        [[c[k][u] * (-1) ** u for k in r] for u in r],  # a quarter counter-clockwise
    ]
    return [of_coefficients(t) for t in turned]


def hex_of(value: int) -> str:
    return f"{value:0{BITS // 4}x}"


def distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def bands(value: int, count: int) -> list[tuple[int, int]]:
    """(band, its bits) for `count` bands of the hash, as equal as can be: two hashes within `count - 1` bits of
    each other agree exactly on at least one band (pigeonhole), so looking up every band finds every such hash."""
    found, start = [], 0
    for band in range(count):
        width = BITS // count + (band < BITS % count)
        found.append((band, value >> (BITS - start - width) & ((1 << width) - 1)))
        start += width
    return found
