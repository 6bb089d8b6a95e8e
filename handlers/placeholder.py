"""A ThumbHash of an image: the placeholder a page paints while the image loads (about 25 bytes, base64 in the record).

A port of the reference implementation (evanw/thumbhash, js/thumbhash.js: rgbaToThumbHash and thumbHashToRGBA): it
gives the same hash, or one within one quantization step of one coefficient (math.cos and V8's Math.cos may differ in
the last bit, which moves a value on a rounding tie by one step); tests/test_placeholder.py compares hashes and decoded
pixels with vectors the reference made.
Why ThumbHash and not BlurHash (bytes, quality on our samples, alpha, aspect ratio): README "What a page gets".
"""
from __future__ import annotations

import base64
import io
from functools import lru_cache
from math import cos, floor, pi

from PIL import Image

# The reference refuses larger inputs ("Encoding an image larger than 100x100 is slow with no benefit").
MAX_SIDE = 100
# What a thumbnail is shrunk to before it is hashed: a hash keeps at most 7 cosine terms a side, and on our samples a
# 32 px input gives the same placeholders as a 100 px one (23.91 vs 23.90 dB) in a tenth of the time (README).
HASHED_SIDE = 32
DECODED_SIDE = 32  # the reference decodes to at most 32 px a side


def _round(value: float) -> int:
    return floor(value + 0.5)  # JavaScript's Math.round (half up), not Python's round (half to even)


def _byte(value: float) -> int:
    return int(max(0.0, 255 * min(1.0, value)))  # a Uint8Array store truncates


def encode(width: int, height: int, rgba: bytes) -> bytes:
    """The ThumbHash of `width` x `height` RGBA pixels (not premultiplied), each side at most MAX_SIDE."""
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise ValueError(f"{width}x{height} doesn't fit in {MAX_SIDE}x{MAX_SIDE}")
    if len(rgba) != width * height * 4:
        raise ValueError(f"{len(rgba)} bytes are not {width}x{height} RGBA pixels")
    count = width * height
    avg_r = avg_g = avg_b = avg_a = 0.0
    for j in range(0, count * 4, 4):
        alpha = rgba[j + 3] / 255
        avg_r += alpha / 255 * rgba[j]
        avg_g += alpha / 255 * rgba[j + 1]
        avg_b += alpha / 255 * rgba[j + 2]
        avg_a += alpha
    if avg_a:
        avg_r, avg_g, avg_b = avg_r / avg_a, avg_g / avg_a, avg_b / avg_a
    has_alpha = avg_a < count
    l_limit = 5 if has_alpha else 7  # fewer luminance terms when alpha takes bytes
    lx = max(1, _round(l_limit * width / max(width, height)))
    ly = max(1, _round(l_limit * height / max(width, height)))
    lum, yb, rg, al = [0.0] * count, [0.0] * count, [0.0] * count, [0.0] * count
    for i in range(count):  # RGBA to LPQA, composited atop the average colour
        j = i * 4
        alpha = rgba[j + 3] / 255
        r = avg_r * (1 - alpha) + alpha / 255 * rgba[j]
        g = avg_g * (1 - alpha) + alpha / 255 * rgba[j + 1]
        b = avg_b * (1 - alpha) + alpha / 255 * rgba[j + 2]
        lum[i], yb[i], rg[i], al[i] = (r + g + b) / 3, (r + g) / 2 - b, r - g, alpha

    def channel(values: list[float], nx: int, ny: int) -> tuple[float, list[float], float]:
        dc, ac, scale = 0.0, [], 0.0
        fx = [[cos(pi / width * cx * (x + 0.5)) for x in range(width)] for cx in range(nx)]
        rows = [values[y * width:(y + 1) * width] for y in range(height)]
        # v * c of each pixel for each horizontal term, made once and reused by every vertical one: the same
        # products, so the same sums (a third of the time of making them again).
        products = [[[v * c for v, c in zip(row, wx, strict=True)] for row in rows] for wx in fx]
        for cy in range(ny):
            fy = [cos(pi / height * cy * (y + 0.5)) for y in range(height)]
            cx = 0
            while cx * ny < nx * (ny - cy):
                f = 0.0
                # The reference's order of operations, exactly ((v * c) * wy, added pixel by pixel): a term that should
                # be 0 quantizes by the sign of its rounding error (sum() would compensate, a separable sum rounds
                # otherwise).
                for row, wy in zip(products[cx], fy, strict=True):
                    for vc in row:
                        f += vc * wy
                f /= count
                if cx or cy:
                    ac.append(f)
                    scale = max(scale, abs(f))
                else:
                    dc = f
                cx += 1
        if scale:
            ac = [0.5 + 0.5 / scale * f for f in ac]
        return dc, ac, scale

    l_dc, l_ac, l_scale = channel(lum, max(3, lx), max(3, ly))
    p_dc, p_ac, p_scale = channel(yb, 3, 3)
    q_dc, q_ac, q_scale = channel(rg, 3, 3)
    landscape = width > height
    header24 = (_round(63 * l_dc) | (_round(31.5 + 31.5 * p_dc) << 6) | (_round(31.5 + 31.5 * q_dc) << 12)
                | (_round(31 * l_scale) << 18) | (int(has_alpha) << 23))
    header16 = (ly if landscape else lx) | (_round(63 * p_scale) << 3) | (_round(63 * q_scale) << 9) | (int(landscape) << 15)
    hashed = [header24 & 255, (header24 >> 8) & 255, header24 >> 16, header16 & 255, header16 >> 8]
    factors = [l_ac, p_ac, q_ac]
    if has_alpha:
        a_dc, a_ac, a_scale = channel(al, 5, 5)
        hashed.append(_round(15 * a_dc) | (_round(15 * a_scale) << 4))
        factors.append(a_ac)
    start, index = len(hashed), 0
    for ac in factors:
        for f in ac:
            if start + (index >> 1) == len(hashed):
                hashed.append(0)
            hashed[start + (index >> 1)] |= _round(15 * f) << ((index & 1) << 2)
            index += 1
    return bytes(hashed)


def decode(hashed: bytes) -> tuple[int, int, bytes]:
    """(width, height, RGBA pixels) of the placeholder a ThumbHash describes, at most DECODED_SIDE a side."""
    if len(hashed) < 5:
        raise ValueError(f"a ThumbHash has at least 5 bytes, not {len(hashed)}")
    header24 = hashed[0] | (hashed[1] << 8) | (hashed[2] << 16)
    header16 = hashed[3] | (hashed[4] << 8)
    l_dc = (header24 & 63) / 63
    p_dc = ((header24 >> 6) & 63) / 31.5 - 1
    q_dc = ((header24 >> 12) & 63) / 31.5 - 1
    l_scale = ((header24 >> 18) & 31) / 31
    has_alpha = bool(header24 >> 23)
    if has_alpha and len(hashed) < 6:
        raise ValueError("a ThumbHash with alpha has at least 6 bytes, not 5")
    ratio = aspect_ratio(hashed)
    p_scale = ((header16 >> 3) & 63) / 63
    q_scale = ((header16 >> 9) & 63) / 63
    landscape = bool(header16 >> 15)
    lx = max(3, (5 if has_alpha else 7) if landscape else header16 & 7)
    ly = max(3, header16 & 7 if landscape else (5 if has_alpha else 7))
    a_dc = (hashed[5] & 15) / 15 if has_alpha else 1.0
    a_scale = (hashed[5] >> 4) / 15 if has_alpha else 0.0
    start = 6 if has_alpha else 5
    position = 0

    def factors(nx: int, ny: int, scale: float) -> list[float]:
        nonlocal position
        ac = []
        for cy in range(ny):
            cx = 0 if cy else 1
            while cx * ny < nx * (ny - cy):
                at = start + (position >> 1)
                nibble = (hashed[at] >> ((position & 1) << 2)) & 15 if at < len(hashed) else 0
                ac.append((nibble / 7.5 - 1) * scale)
                position += 1
                cx += 1
        return ac

    l_ac = factors(lx, ly, l_scale)
    p_ac = factors(3, 3, p_scale * 1.25)  # the reference boosts saturation to make up for quantization
    q_ac = factors(3, 3, q_scale * 1.25)
    a_ac = factors(5, 5, a_scale) if has_alpha else []
    width = _round(DECODED_SIDE if ratio > 1 else DECODED_SIDE * ratio)
    height = _round(DECODED_SIDE / ratio if ratio > 1 else DECODED_SIDE)
    terms = max(lx, 5 if has_alpha else 3), max(ly, 5 if has_alpha else 3)
    l_terms = [(cx, cy, l_ac[j]) for j, (cx, cy) in enumerate(_triangle(lx, ly))]
    pq_terms = [(cx, cy, p_ac[j], q_ac[j]) for j, (cx, cy) in enumerate(_triangle(3, 3))]
    a_terms = [(cx, cy, a_ac[j]) for j, (cx, cy) in enumerate(_triangle(5, 5))] if has_alpha else []
    out = bytearray(width * height * 4)
    i = 0
    for y in range(height):
        fy = [cos(pi / height * (y + 0.5) * cy) * 2 for cy in range(terms[1])]
        for x in range(width):
            fx = [cos(pi / width * (x + 0.5) * cx) for cx in range(terms[0])]
            lum, p, q, a = l_dc, p_dc, q_dc, a_dc
            for cx, cy, f in l_terms:
                lum += f * fx[cx] * fy[cy]
            for cx, cy, fp, fq in pq_terms:
                weight = fx[cx] * fy[cy]
                p += fp * weight
                q += fq * weight
            for cx, cy, f in a_terms:
                a += f * fx[cx] * fy[cy]
            b = lum - 2 / 3 * p
            r = (3 * lum - b + q) / 2
            out[i:i + 4] = bytes((_byte(r), _byte(r - q), _byte(b), _byte(a)))
            i += 4
    return width, height, bytes(out)


def _triangle(nx: int, ny: int) -> list[tuple[int, int]]:
    """The AC terms (cx, cy) the reference keeps, in its order: a triangle of the nx x ny grid, without (0, 0)."""
    return [(cx, cy) for cy in range(ny) for cx in range(0 if cy else 1, nx) if cx * ny < nx * (ny - cy)]


def aspect_ratio(hashed: bytes) -> float:
    """The approximate width / height of the image a ThumbHash describes."""
    if len(hashed) < 5:
        raise ValueError(f"a ThumbHash has at least 5 bytes, not {len(hashed)}")
    has_alpha, landscape = hashed[2] & 0x80, hashed[4] & 0x80
    lx = (5 if has_alpha else 7) if landscape else hashed[3] & 7
    ly = hashed[3] & 7 if landscape else (5 if has_alpha else 7)
    # The encoder writes a count of 1 to 7 (a side of at least one pixel); 0 is no image (the reference would divide by
    # it and paint nothing), so the hash is refused rather than a page failing on a ZeroDivisionError.
    if not lx or not ly:
        raise ValueError(f"a ThumbHash's {'height' if landscape else 'width'} count is 0: no encoder wrote this hash")
    return lx / ly


def of_image(image: Image.Image) -> str:
    """The base64 ThumbHash of a thumbnail already in memory (shrunk to fit HASHED_SIDE first if it is larger)."""
    small = image if max(image.size) <= HASHED_SIDE else image.copy()
    if small is not image:
        small.thumbnail((HASHED_SIDE, HASHED_SIDE), Image.Resampling.BOX)
    rgba = small.convert("RGBA")
    return base64.b64encode(encode(rgba.width, rgba.height, rgba.tobytes())).decode("ascii")


@lru_cache(maxsize=4096)  # the live gallery redraws every tile each second: decode each hash once
def data_url(placeholder: str) -> str:
    """The placeholder a base64 ThumbHash describes, as a PNG data: URL a page can paint without JavaScript."""
    width, height, rgba = decode(base64.b64decode(placeholder, validate=True))
    png = io.BytesIO()
    Image.frombytes("RGBA", (width, height), rgba).save(png, "PNG")
    return "data:image/png;base64," + base64.b64encode(png.getvalue()).decode("ascii")
