"""Bound the work an image asks for before any decoder runs.

A decoder does what the file says: libjpeg makes one pass over the whole image per progressive scan and
keeps every marker segment, and Pillow's TIFF reader walks the page chain again for every page it counts. So
the file's own structure is read first, cheaply and without decoding: the marker segments before a JPEG's
first scan and its number of scans, a TIFF's pages. Each limit gives a reason a person can read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from handlers import jpeg_markers
from handlers.failures import PermanentFailure

SOS = b"\xff\xda"


@dataclass(frozen=True)
class JpegShape:
    segments: int  # marker segments before the first scan
    scans: int


def jpeg(data: bytes, max_segments: int, max_scans: int) -> JpegShape:
    """Walk a JPEG's markers up to its first scan, then count its scans (an MPO's frames included)."""
    count, first_scan, ended = 0, -1, False
    try:
        for segment in jpeg_markers.segments(data):
            ended = segment.marker == jpeg_markers.EOI
            if segment.marker == jpeg_markers.SOS:
                first_scan = segment.offset
            elif segment.length:  # a stand-alone marker is no segment
                count += 1
                if count > max_segments:
                    raise PermanentFailure(f"the JPEG has more than {max_segments:,} marker segments before its image "
                                           f"data (the limit is {max_segments:,})")
    except jpeg_markers.MalformedJpeg as malformed:
        raise PermanentFailure(str(malformed)) from malformed
    if ended:
        raise PermanentFailure("the JPEG has no image data: it ends (EOI) before its first scan")
    if first_scan < 0:
        raise PermanentFailure("the image data is truncated (the JPEG has no image data)")
    # Entropy-coded data cannot hold FF DA (FF is always stuffed or a marker), so counting it counts scans.
    scans = data.count(SOS, first_scan)
    if scans > max_scans:
        raise PermanentFailure(f"the JPEG has {scans:,} scans, over the limit of {max_scans:,} "
                               "(each progressive scan is another pass over the whole image)")
    return JpegShape(count, scans)


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
