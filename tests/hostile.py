"""Hostile and broken images, generated: the cases an attacker (or a broken camera) sends.

Each generator returns bytes; `corpus()` gathers the whole suite: the named cases, every truncation of a few
small files, and seeded single-byte mutations of valid ones.
"""
from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Iterator
from functools import cache

from PIL import Image

from localcloud import samples
from localcloud.samples import encode


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def progressive_scan_bomb(width: int, height: int, scans: int) -> bytes:
    """A grey progressive JPEG whose image data is one DC scan and then `scans` AC scans of end-of-band runs
    only: a few bytes each, yet libjpeg passes over every block of the image for each of them."""
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    dqt = _segment(0xDB, b"\x00" + bytes([1] * 64))
    sof = _segment(0xC2, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    # DC table: one code ("0") for difference category 0. AC table: one code ("0") for EOBRUN category 14.
    dht_dc = _segment(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00")
    dht_ac = _segment(0xC4, b"\x10" + bytes([1] + [0] * 15) + b"\xe0")
    dc_scan = _segment(0xDA, b"\x01\x01\x00\x00\x00\x00") + b"\x00" * ((blocks + 7) // 8)
    # EOBRUN = 2**14 + 14 extra bits; runs of 32767 blocks until every block is covered.
    bits = ""
    remaining = blocks
    while remaining > 0:
        run = min(remaining, 32767)
        bits += "0" + format(run - 2**14, "014b") if run >= 2**14 else "0" + format(0, "014b")
        remaining -= max(run, 2**14)
    bits += "1" * (-len(bits) % 8)
    data = bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)).replace(b"\xff", b"\xff\x00")
    ac_scan = _segment(0xDA, b"\x01\x01\x00\x01\x3f\x00") + data
    return b"\xff\xd8" + dqt + sof + dht_dc + dht_ac + dc_scan + ac_scan * scans + b"\xff\xd9"


def app_marker_flood(count: int, base: bytes | None = None) -> bytes:
    """A valid JPEG with `count` empty APP15 segments before its frame: Pillow keeps each one."""
    base = base or samples.jpeg(64, 48)
    return base[:2] + b"\xff\xef\x00\x02" * count + base[2:]


def tiff_page_bomb(pages: int) -> bytes:
    """A little-endian TIFF whose IFD chain has `pages` minimal pages (each 1x1, uncompressed)."""
    header = b"II*\x00" + struct.pack("<I", 8)
    body = b""
    offset = 8
    entry_count = 6
    ifd_size = 2 + entry_count * 12 + 4
    for index in range(pages):
        pixel_at = offset + ifd_size
        next_at = 0 if index == pages - 1 else pixel_at + 2
        entries = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (262, 3, 1, 1), (273, 4, 1, pixel_at), (279, 4, 1, 1)]
        ifd = struct.pack("<H", entry_count) + b"".join(struct.pack("<HHII", *e) for e in entries) + struct.pack("<I", next_at)
        body += ifd + b"\x7f\x00"
        offset = pixel_at + 2
    return header + body


def tiff_page_loop() -> bytes:
    """A TIFF whose second page links back to the first."""
    data = bytearray(tiff_page_bomb(2))
    # The last page's next-IFD link is the 4 bytes before its pixel (2 bytes) at the end.
    data[-6:-2] = struct.pack("<I", 8)
    return bytes(data)


def oriented_tiff(orientation: int) -> bytes:
    """The upright sample photo stored the way a camera would store it under `orientation`, tagged so."""
    stored = samples.as_stored(samples.photo(240, 160), orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "TIFF", exif=exif.tobytes(), compression="tiff_deflate")


def gif_on_canvas(width: int, height: int, frames: int) -> bytes:
    """A GIF whose logical screen is `width` x `height` and whose `frames` frames are one pixel each: about 20 bytes
    a frame, each of which a decoder that composes every frame pays for as a whole canvas."""
    screen = struct.pack("<6sHHBBB", b"GIF89a", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    body = b""
    for index in range(frames):
        # Graphic control (disposal 1, 4/100 s), a 1x1 image at the origin, its LZW data: clear, pixel, end
        # (3-bit codes, least significant bit first).
        code = 4 | (index % 2) << 3 | 5 << 6
        body += (b"\x21\xf9\x04\x04\x04\x00\x00\x00" + struct.pack("<BHHHHB", 0x2C, 0, 0, 1, 1, 0)
                 + b"\x02\x02" + code.to_bytes(2, "little") + b"\x00")
    return screen + body + b"\x3b"


def webp_bomb(width: int = 8000, height: int = 6250) -> bytes:
    """A solid-colour WebP of `width` x `height`: a few KB that decode to 4 bytes per pixel, twice over."""
    return encode(Image.new("RGB", (width, height), (12, 34, 56)), "WEBP", quality=10, method=0)


def mpo(width: int = 2400, height: int = 1800) -> bytes:
    """A two-picture MPO (stereo cameras, some phones): Pillow opens it as MPO, not JPEG."""
    first, second = samples.photo(width, height), samples.photo(width, height).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return encode(first, "MPO", save_all=True, append_images=[second], quality=85)


def commented(fmt: str, comment: bytes) -> bytes:
    image = samples.photo(120, 80)
    if fmt == "GIF":
        image = image.convert("P")
    if fmt == "PNG":
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("comment", comment.decode())
        return encode(image, "PNG", pnginfo=info)
    return encode(image, fmt, comment=comment)


def with_icc(fmt: str) -> bytes:
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return encode(samples.photo(120, 80), fmt, icc_profile=profile)


# Display P3's colorants adapted to the D50 PCS, as Apple's profile carries them.
DISPLAY_P3 = ((0.515121, 0.241196, -0.001053), (0.291977, 0.692245, 0.041885), (0.157104, 0.066574, 0.784073))


def matrix_profile(description: str, colorants=DISPLAY_P3, gamma: float = 2.2) -> bytes:
    """An ICC v2 RGB display profile (matrix and gamma curves), as cameras and phones embed one."""
    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(v) -> bytes:
        return b"XYZ " + bytes(4) + b"".join(s15(c) for c in v)

    text = description.encode("ascii") + b"\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 2 + 1 + 67)
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)
    d50 = (0.9642, 1.0, 0.8249)
    tags = [(b"desc", desc), (b"wtpt", xyz(d50)), (b"rXYZ", xyz(colorants[0])), (b"gXYZ", xyz(colorants[1])),
            (b"bXYZ", xyz(colorants[2])), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve),
            (b"cprt", b"text" + bytes(4) + b"none\0")]
    offset = 128 + 4 + 12 * len(tags)
    table, body = [], b""
    for signature, data in tags:
        data += bytes(-len(data) % 4)
        table.append(signature + struct.pack(">II", offset + len(body), len(data)))
        body += data
    size = offset + len(body)
    header = (struct.pack(">I", size) + bytes(4) + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ " + bytes(12) + b"acsp"
              + bytes(4 + 4 + 4 + 4 + 8 + 4) + b"".join(s15(c) for c in d50) + bytes(4 + 16 + 28))
    return header + struct.pack(">I", len(tags)) + b"".join(table) + body


def deflate_bomb_png(width: int = 7000, height: int = 7000) -> bytes:
    """A PNG whose IDAT inflates to width x height x 3 bytes of zeros from a few KB."""
    raw = zlib.compress(b"\x00" * ((width * 3 + 1) * height), 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


# Small valid files whose every truncation and many mutations are tried.
def small_files() -> dict[str, tuple[bytes, str]]:
    return {
        "anim.gif": (samples.gif(frames=4, width=24, height=16), "gif"),
        "photo.jpg": (samples.jpeg(48, 32, orientation=6), "jpeg"),
        "progressive.jpg": (encode(samples.photo(48, 32), "JPEG", progressive=True, quality=80), "jpeg"),
        "photo.png": (samples.png(32, 24), "png"),
        "photo.webp": (encode(samples.photo(32, 24), "WEBP", quality=70), "webp"),
        "pages.tif": (encode(samples.photo(24, 16), "TIFF", compression="tiff_deflate"), "tiff"),
    }


@cache
def named_cases() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, sniffed format): the cases the README's reliability table counts by name."""
    cases = {
        "truncated-gif-bang": (samples.gif(frames=1, width=1, height=1)[:-1] + b"!", "gif"),
        "jpeg-with-junk-after-soi": (b"\xff\xd8\xff\xe0" + bytes(random.Random(5).randrange(256) for _ in range(2000)), "jpeg"),
        "jpeg-spider-like": (b"\xff\xd8\xff" + struct.pack(">f", 0.0) * 64, "jpeg"),
        "scan-bomb": (progressive_scan_bomb(2048, 2048, 3000), "jpeg"),
        "app-flood": (app_marker_flood(200_000), "jpeg"),
        "tiff-page-bomb": (tiff_page_bomb(20_000), "tiff"),
        "tiff-page-loop": (tiff_page_loop(), "tiff"),
        "webp-50mp": (webp_bomb(), "webp"),
        "png-deflate-bomb": (deflate_bomb_png(), "png"),
        "png-header-bomb": (samples.png_header_only(30000, 30000), "png"),
        "mpo": (mpo(), "jpeg"),
        "gif-long-comment": (commented("GIF", b"x" * 70_000), "gif"),
        "png-long-comment": (commented("PNG", b"x" * 70_000), "png"),
        "jpeg-comment": (commented("JPEG", b"owner: jane@example.com"), "jpeg"),
        "jpeg-icc": (with_icc("JPEG"), "jpeg"),
        "cmyk-progressive": (encode(samples.photo(800, 600).convert("CMYK"), "JPEG", progressive=True), "jpeg"),
        "one-bit-png": (encode(Image.new("1", (300, 200), 1), "PNG"), "png"),
        "la-png": (encode(Image.new("LA", (300, 200), (100, 30)), "PNG"), "png"),
        "sliver-4000x1": (samples.png(4000, 1), "png"),
        "sliver-1x4000": (samples.png(1, 4000), "png"),
        "sixteen-bit-png": (samples.sixteen_bit_png(640, 480), "png"),
    }
    for orientation in range(1, 9):
        cases[f"tiff-orientation-{orientation}"] = (oriented_tiff(orientation), "tiff")
    return cases


def truncations() -> Iterator[tuple[str, bytes, str]]:
    for name, (data, fmt) in small_files().items():
        for end in range(1, len(data)):
            yield f"{name}[:{end}]", data[:end], fmt


def mutations(per_file: int, seed: int = 21) -> Iterator[tuple[str, bytes, str]]:
    rng = random.Random(seed)
    for name, (data, fmt) in small_files().items():
        for index in range(per_file):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                mutated[rng.randrange(4, len(mutated))] = rng.randrange(256)  # keep the signature: it sniffs the same
            yield f"{name}~{index}", bytes(mutated), fmt
