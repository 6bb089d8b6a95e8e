"""A JPEG's markers, walked once by the rules of ITU-T T.81 for every reader of a JPEG's structure: the intake's
sniffing (the frame's size) and the thumbnail stage's preflight (its segments and scans).

No Pillow here: the intake function must start fast.
"""
from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
# T.81 Table B.1, the codes marked *: TEM, RST0-RST7, SOI and EOI stand alone (no length, no segment).
STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), SOI, EOI})
# T.81 Table B.1: the frame headers SOF0-SOF15, less the three codes among them that are not: DHT, JPG and DAC.
SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# T.81 B.1.1.2: a marker is X'FF' and a byte neither 0 nor X'FF', after any number of X'FF' fill bytes. Anything
# else where a marker should begin is passed over to the next marker, as libjpeg (jdmarker.c, next_marker) and
# Pillow do: the walk sees the segments the decoder will act on. (No repetition in the pattern: it cannot backtrack.)
_MARKER = re.compile(rb"\xff[^\x00\xff]")


class MalformedJpeg(ValueError):
    """The markers break a rule no decoder walks past; the message says which, for a person."""


@dataclass(frozen=True)
class Segment:
    marker: int
    offset: int  # of the X'FF' that starts the marker (after any fill bytes)
    length: int  # the length field (T.81 B.1.1.4: it counts itself, not the marker); 0 for a stand-alone marker

    def payload(self, data: bytes) -> bytes:
        """The segment's parameters after its length field, as far as `data` goes."""
        return data[self.offset + 4:self.offset + 2 + self.length]


@dataclass(frozen=True)
class Frame:
    """A frame header's size (T.81 B.2.2: P, Y, X after the length)."""
    marker: int
    width: int
    height: int


def segments(data: bytes) -> Iterator[Segment]:
    """The markers after SOI in order, up to the first SOS (the entropy-coded data after it has no lengths to walk
    by) or EOI (the image ends there), both included; quietly to the end of `data` if it ends first."""
    pos, frames = 2, 0
    while (found := _MARKER.search(data, pos)) is not None:
        at, marker = found.start(), data[found.start() + 1]
        if marker in STANDALONE:
            yield Segment(marker, at, 0)
            if marker == EOI:
                return
            pos = at + 2
            continue
        if at + 4 > len(data):
            return
        (length,) = struct.unpack_from(">H", data, at + 2)
        if length < 2:
            raise MalformedJpeg("the JPEG has a marker segment of impossible length")
        frames += marker in SOF
        if frames > 1:  # T.81 B.2.1: one frame header before the scans (libjpeg stops at a second one)
            raise MalformedJpeg("the JPEG has a second frame header before its image data")
        yield Segment(marker, at, length)
        if marker == SOS:
            return
        pos = at + 2 + length


def frame(data: bytes, segment: Segment) -> Frame | None:
    """The frame header that `segment` starts (an SOF), or None when `data` ends before its size."""
    fields = segment.payload(data)
    if len(fields) < 5:
        return None
    height, width = struct.unpack_from(">HH", fields, 1)
    return Frame(segment.marker, width, height)


def first_frame(data: bytes) -> Frame | None:
    """The frame header, or None when the markers do not lead to one within `data` (or break a rule first)."""
    try:
        for segment in segments(data):
            if segment.marker in SOF:
                return frame(data, segment)
    except MalformedJpeg:
        pass
    return None
