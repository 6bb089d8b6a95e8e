"""Bound the work an image asks for before any decoder runs.

A decoder does what the file says: libjpeg makes one pass over the whole image per progressive scan and
keeps every marker segment, and Pillow's TIFF reader walks the page chain again for every page it counts. So
the file's own structure is read first, cheaply and without decoding: the marker segments before a JPEG's
first scan and its number of scans, a TIFF's pages. Each limit gives a reason a person can read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from handlers.failures import PermanentFailure

# Markers without a length (ITU T.81, table B.1): TEM, RSTn, SOI, EOI.
_STANDALONE = {0x01, *range(0xD0, 0xD8), 0xD8, 0xD9}
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}
SOS = b"\xff\xda"


@dataclass(frozen=True)
class JpegShape:
    segments: int  # marker segments before the first scan
    scans: int
    progressive: bool
    components: int


def jpeg(data: bytes, max_segments: int, max_scans: int) -> JpegShape:
    """Walk a JPEG's markers up to its first scan, then count its scans (an MPO's frames included)."""
    pos, segments, progressive, components = 2, 0, False, 0
    first_scan = -1
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            pos = data.find(b"\xff", pos)  # libjpeg skips stray bytes between segments; so does the walk
            if pos < 0:
                break
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker == 0xDA:
            first_scan = pos
            break
        segments += 1
        if segments > max_segments:
            raise PermanentFailure(f"the JPEG has more than {max_segments:,} marker segments before its image data "
                                   f"(the limit is {max_segments:,})")
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker in _SOF and pos + 9 < len(data):
            progressive = marker in _PROGRESSIVE
            components = data[pos + 9]
        if length < 2:
            raise PermanentFailure("the JPEG has a marker segment of impossible length")
        pos += 2 + length
    if first_scan < 0:
        raise PermanentFailure("the image data is truncated (the JPEG has no image data)")
    # Entropy-coded data cannot hold FF DA (FF is always stuffed or a marker), so counting it counts scans.
    scans = data.count(SOS, first_scan)
    if scans > max_scans:
        raise PermanentFailure(f"the JPEG has {scans:,} scans, over the limit of {max_scans:,} "
                               "(each progressive scan is another pass over the whole image)")
    return JpegShape(segments, scans, progressive, components)


def tiff_pages(data: bytes, max_pages: int) -> int:
    """Count a TIFF's pages by its IFD chain, stopping past `max_pages` or at a loop."""
    little = data[:2] == b"II"
    order: Literal["little", "big"] = "little" if little else "big"
    big = int.from_bytes(data[2:4], order) == 43  # BigTIFF
    offset_size, count_size, entry_size = (8, 8, 20) if big else (4, 2, 12)
    offset = int.from_bytes(data[8:16] if big else data[4:8], order)
    seen: set[int] = set()
    while offset and len(seen) <= max_pages:
        if offset in seen:
            raise PermanentFailure("the TIFF's pages form a loop")
        if offset + count_size > len(data):
            raise PermanentFailure("the image data is truncated (a TIFF page lies past the end of the file)")
        seen.add(offset)
        entries = int.from_bytes(data[offset:offset + count_size], order)
        next_at = offset + count_size + entries * entry_size
        if next_at + offset_size > len(data):
            break  # the last page's link is cut off: what was read stands
        offset = int.from_bytes(data[next_at:next_at + offset_size], order)
    if len(seen) > max_pages:
        raise PermanentFailure(f"the image has more than {max_pages:,} pages, over the limit of {max_pages:,}")
    return max(1, len(seen))
