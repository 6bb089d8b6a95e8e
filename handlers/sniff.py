"""Tell an image's format (and, where the header says, its dimensions) from its first bytes.

The intake reads only a small prefix of each upload, so this stays a few
header checks: the file's name and Content-Type never decide the format.
No Pillow here: the intake function must start fast.
"""
from __future__ import annotations

import itertools
import re
import struct
from dataclasses import dataclass

from handlers.jpeg_markers import first_frame

# Enough for the signatures below and, almost always, a JPEG's frame header.
SNIFF_BYTES = 64 * 1024


@dataclass(frozen=True)
class Sniffed:
    format: str | None  # an image format name, or None when this is not an image
    description: str  # what the bytes look like, for a person
    width: int | None = None
    height: int | None = None


_OTHER_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"8BPS", "a Photoshop document (PSD)"),
    (b"\x7fELF", "an executable"),
    (b"MZ", "a Windows executable"),
    (b"<?xml", "an XML/SVG document"),
    (b"<svg", "an SVG document"),
)

_HEIF_BRANDS = {b"heic": "heic", b"heix": "heic", b"hevc": "heic", b"heim": "heic", b"heis": "heic",
                b"mif1": "heic", b"msf1": "heic", b"avif": "avif", b"avis": "avif"}


def sniff(head: bytes) -> Sniffed:
    """Identify `head`, the first bytes of a file."""
    if not head:
        return Sniffed(None, "an empty file")
    if head.startswith(b"\xff\xd8\xff"):
        frame = first_frame(head)
        if frame:
            return Sniffed("jpeg", "a JPEG image", frame.width, frame.height)
        return Sniffed("jpeg", "a JPEG image")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(head) >= 24 and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            return Sniffed("png", "a PNG image", width, height)
        return Sniffed("png", "a PNG image")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        if len(head) >= 10:
            width, height = struct.unpack("<HH", head[6:10])
            return Sniffed("gif", "a GIF image", width, height)
        return Sniffed("gif", "a GIF image")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        width, height = _webp_size(head)
        return Sniffed("webp", "a WebP image", width, height)
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return Sniffed("tiff", "a TIFF image")
    if head[:2] == b"BM" and len(head) >= 26:
        return Sniffed("bmp", "a BMP image")
    if head[4:8] == b"ftyp":
        fmt = _heif_family(head)
        if fmt:
            return Sniffed(fmt, f"an {fmt.upper()} image")
    for signature, description in _OTHER_SIGNATURES:
        if head.startswith(signature):
            return Sniffed(None, description)
    if head[:64].lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return Sniffed(None, "an HTML document")
    if _looks_like_text(head):
        return Sniffed(None, "a text file")
    return Sniffed(None, "unrecognised binary data")


# The ftyp box's brands read at most (real files list a handful; a hostile one may list thousands).
MAX_BRANDS = 62
_WORD = re.compile(rb".{4}", re.DOTALL)
# Text: UTF-8 without control characters other than tab, line feed and carriage return.
_TEXT_CONTROLS = (0x09, 0x0A, 0x0D)


def _heif_family(head: bytes) -> str | None:
    """heic or avif from the ftyp box's major and compatible brands (AVIF files may say mif1 first): its whole
    4-byte words after the box header, to the box's end. ISO/IEC 14496-12, 4.2: a box's 32-bit size counts its
    8-byte header, and 0 means the box runs to the end of the file."""
    size = struct.unpack(">I", head[:4])[0]
    words = _WORD.finditer(head, 8, size or len(head))
    brands = {word.group() for word in itertools.islice(words, MAX_BRANDS)}
    families = {_HEIF_BRANDS[b] for b in brands if b in _HEIF_BRANDS}
    if "avif" in families:
        return "avif"
    return "heic" if families else None


def _looks_like_text(head: bytes) -> bool:
    sample = head[:512]
    try:
        sample.decode()  # UTF-8
    except UnicodeDecodeError:
        return False
    return all(b >= 0x20 or b in _TEXT_CONTROLS for b in sample)


def _webp_size(data: bytes) -> tuple[int | None, int | None]:
    chunk = data[12:16]
    try:
        if chunk == b"VP8X" and len(data) >= 30:
            width = 1 + int.from_bytes(data[24:27], "little")
            height = 1 + int.from_bytes(data[27:30], "little")
            return width, height
        if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
            width, height = struct.unpack("<HH", data[26:30])
            return width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    except (struct.error, IndexError):
        pass
    return None, None
