"""Sniffing: the format by content and the size by header, exactly, for every way the intake meets a file."""
from __future__ import annotations

import struct

import pytest
from PIL import Image

from handlers.sniff import SNIFF_BYTES, Sniffed, sniff
from localcloud.samples import encode


def encoded(fmt: str, size: tuple[int, int], mode: str = "RGB", **options) -> bytes:
    return encode(Image.new(mode, size, (200, 100, 50, 128)[:len(mode)] if mode != "1" else 1), fmt, **options)


@pytest.mark.parametrize("fmt, mode, options, chunk", [
    ("WEBP", "RGB", {"quality": 80}, b"VP8 "),
    ("WEBP", "RGBA", {"quality": 80}, b"VP8X"),  # alpha: the extended header
    ("WEBP", "RGB", {"lossless": True}, b"VP8L"),
    ("WEBP", "RGB", {"quality": 80, "exif": Image.Exif().tobytes()}, b"VP8X"),  # EXIF: extended too
])
def test_every_webp_header_gives_the_real_size(fmt, mode, options, chunk):
    data = encoded(fmt, (3001, 1234), mode, **options)
    assert data[12:16] == chunk
    assert sniff(data[:SNIFF_BYTES]) == Sniffed("webp", "a WebP image", 3001, 1234)


def test_an_extended_webp_at_the_largest_size_webp_allows():
    # VP8X stores width-1 and height-1 in 24 bits each: 16383 is the encoder's limit, 2**24 the format's.
    header = b"RIFF" + struct.pack("<I", 30) + b"WEBP" + b"VP8X" + struct.pack("<I", 10) + b"\x10\0\0\0"
    data = header + (2**24 - 1).to_bytes(3, "little") + (4999).to_bytes(3, "little")
    assert sniff(data) == Sniffed("webp", "a WebP image", 2**24, 5000)
    assert sniff(data + b"\xff" * 8).height == 5000  # what follows the header is not part of the size


@pytest.mark.parametrize("data", [
    b"RIFF\0\0\0\0WEBPVP8X" + b"\0" * 8,  # extended header cut short
    b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 18,  # lossy frame without its start code
    b"RIFF\0\0\0\0WEBPVP8L" + b"\0" * 13,  # lossless without its signature byte
    b"RIFF\0\0\0\0WEBPXXXX" + b"\0" * 20,
], ids=["vp8x-short", "vp8-no-start-code", "vp8l-no-signature", "unknown-chunk"])
def test_a_webp_whose_size_cannot_be_read_is_still_webp_with_no_size(data):
    assert sniff(data) == Sniffed("webp", "a WebP image", None, None)


@pytest.mark.parametrize("options", [{}, {"progressive": True}], ids=["baseline", "progressive"])
def test_jpeg_size_comes_from_the_frame_header(options):
    data = encoded("JPEG", (4000, 3000), **options)
    assert sniff(data[:SNIFF_BYTES]) == Sniffed("jpeg", "a JPEG image", 4000, 3000)


def test_a_jpeg_frame_header_past_the_window_gives_no_size_not_a_wrong_one():
    big_comment = b"\xff\xfe" + struct.pack(">H", 65535) + b"c" * 65533
    data = b"\xff\xd8" + big_comment + encoded("JPEG", (640, 480))[2:]
    assert sniff(data[:SNIFF_BYTES]) == Sniffed("jpeg", "a JPEG image", None, None)
    assert sniff(data) == Sniffed("jpeg", "a JPEG image", 640, 480)  # with the whole file it is found


@pytest.mark.parametrize("tail", [
    b"\x00\x00\x00\x00",  # not a marker where one must be
    b"\xff\xe0\x00\x01",  # a segment length under 2
    b"\xff\xc0\x00\x11\x08\x01",  # a frame header cut short
], ids=["not-a-marker", "impossible-length", "frame-cut-short"])
def test_a_jpeg_whose_markers_do_not_lead_to_a_frame_has_no_size(tail):
    assert sniff(b"\xff\xd8\xff\xe0\x00\x02" + tail) == Sniffed("jpeg", "a JPEG image", None, None)


def test_fill_bytes_restart_markers_and_tables_are_walked_past():
    frame = b"\xff\xc2\x00\x11\x08" + struct.pack(">HH", 300, 500) + b"\x03" + b"\0" * 9
    data = b"\xff\xd8\xff\xff\xd0" + b"\xff\xc4\x00\x04\0\0" + b"\xff\xc8\x00\x04\0\0" + frame
    assert sniff(data) == Sniffed("jpeg", "a JPEG image", 500, 300)


@pytest.mark.parametrize("fmt, name, description", [("PNG", "png", "a PNG image"), ("GIF", "gif", "a GIF image")])
def test_png_and_gif_sizes_come_from_their_headers(fmt, name, description):
    assert sniff(encoded(fmt, (1234, 567))) == Sniffed(name, description, 1234, 567)


def test_headers_too_short_for_a_size_still_name_the_format():
    assert sniff(b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR") == Sniffed("png", "a PNG image")
    assert sniff(b"GIF89a\x01\x00") == Sniffed("gif", "a GIF image")
    assert sniff(b"BM" + b"\0" * 24).format == "bmp" and sniff(b"BM" + b"\0" * 23).format is None


@pytest.mark.parametrize("head, expected", [
    (b"II*\x00" + b"\0" * 8, ("tiff", "a TIFF image")),
    (b"MM\x00*" + b"\0" * 8, ("tiff", "a TIFF image")),
    (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", ("heic", "an HEIC image")),
    (b"\0\0\0\x1cftypmif1\0\0\0\0mif1avifmiaf", ("avif", "an AVIF image")),
    (b"\0\0\0\x18ftypisom\0\0\0\0isommp41", (None, "unrecognised binary data")),
    (b"%PDF-1.7\n", (None, "a PDF document")),
    (b"PK\x03\x04rest", (None, "a ZIP archive")),
    (b"\x7fELF\x02", (None, "an executable")),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", (None, "an SVG document")),
    (b"  <!DOCTYPE html><html></html>", (None, "an HTML document")),
    (b"just some notes\n", (None, "a text file")),
    (b"\x00\x01\x02\x03", (None, "unrecognised binary data")),
    (b"", (None, "an empty file")),
])
def test_what_is_not_an_image_is_named_for_a_person(head, expected):
    found = sniff(head)
    assert (found.format, found.description) == expected and found.width is None


# Boundaries the sniffing code decides on (each found by a mutant that survived the tests above).
FRAME = b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", 300, 500) + b"\x03" + b"\0" * 9  # SOF0: 500x300


@pytest.mark.parametrize("before", [
    b"\xff\xd8",  # a second start-of-image marker: standalone, no length
    b"\xff\xe0\x00\x02",  # an empty segment (length 2: just the length field) is valid
    b"\xff\xcc\x00\x06\0\0\0\0",  # DAC (arithmetic-coding conditioning) is not a frame header
    b"\xff\xc4\x00\x04\0\0",  # neither is DHT
])
def test_segments_that_are_not_frame_headers_are_walked_past(before):
    assert sniff(b"\xff\xd8" + before + FRAME) == Sniffed("jpeg", "a JPEG image", 500, 300)


def test_every_sof_marker_is_a_frame_header_including_the_arithmetic_ones():
    for marker in (0xC1, 0xC2, 0xC3, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
        assert sniff(b"\xff\xd8" + bytes([0xFF, marker]) + FRAME[2:]).width == 500, hex(marker)


def test_webp_headers_exactly_as_long_as_their_size_fields_are_read():
    lossy = encoded("WEBP", (3001, 1234), quality=80)
    assert sniff(lossy[:30]) == Sniffed("webp", "a WebP image", 3001, 1234)
    lossless = encoded("WEBP", (3001, 1234), lossless=True)
    assert sniff(lossless[:25]) == Sniffed("webp", "a WebP image", 3001, 1234)


def test_text_is_judged_by_its_first_512_bytes():
    assert sniff(b"a" * 512 + b"\x00").description == "a text file"
    assert sniff(b"a" * 511 + b"\x00").description == "unrecognised binary data"


def ftyp(*brands: bytes, size: int | None = None) -> bytes:
    """An ftyp box: `size` (default: its length), then the brands (the minor version is one of the words)."""
    body = b"ftyp" + b"".join(brands)
    return (len(body) + 4 if size is None else size).to_bytes(4, "big") + body


@pytest.mark.parametrize("head, fmt", [
    (ftyp(b"isom", b"\0\0\0\0", b"mp41", b"avif"), "avif"),  # the last word of the box counts
    (ftyp(b"isom", b"\0\0\0\0", b"mp41", b"avif", size=0) + b"\0" * 40, "avif"),  # size 0: to the end of the file
    (ftyp(b"isom", b"\0\0\0\0", *[b"mp41"] * 59, b"heic"), "heic"),  # the 62nd word is read
    (ftyp(b"isom", b"\0\0\0\0", *[b"mp41"] * 60, b"heic"), None),  # the 63rd is not: reading stops
    (ftyp(b"isom", b"\0\0\0\0", b"mp41", size=0x01000018) + b"heic", "heic"),  # a size over 16 MB is read whole
    (ftyp(b"isom", b"\0\0\0\0", b"mp41", size=0x00000014) + b"heic", None),  # ... and 20 bytes are 20 bytes
])
def test_heif_brands_are_the_whole_words_of_the_ftyp_box_up_to_its_size(head, fmt):
    assert sniff(head).format == fmt


@pytest.mark.parametrize("head, text", [
    (b"line one\tcolumn\r\nline two\n", True),
    (b"tab\tonly", True), (b"line\nfeed", True), (b"carriage\rreturn", True),
    (b"a vertical\x0btab", False), (b"a form\x0cfeed", False), (b"escape\x1b[0m", False),
    ("caf\u00e9 \u2014 na\u00efve".encode(), True),  # UTF-8 beyond ASCII is text
    (b"\xff\xfe\xfd" * 20, False),  # every byte printable as Latin-1, but not UTF-8
])
def test_text_is_utf8_without_control_characters_but_tab_and_line_ends(head, text):
    assert (sniff(head).description == "a text file") is text


@pytest.mark.parametrize("head", [
    # The ftyp box ends at its size (16 bytes here): a brand in the next box is not the file's.
    b"\0\0\0\x10ftypisom\0\0\0\0" + b"\0\0\0\x10freeheic\0\0\0\0",
    # Brands are whole 4-byte words: "heic" across two of them is no brand.
    b"\0\0\0\x14ftypahei" + b"c\0\0\0" + b"mp41",
])
def test_a_heif_brand_counts_only_as_a_whole_word_inside_the_ftyp_box(head):
    assert sniff(head) == Sniffed(None, "unrecognised binary data")


# Headers cut exactly where their size fields end, and sizes past the signed 16- and 32-bit ranges: the sniffer
# reads what the format's own spec says (unsigned, big- or little-endian) and nothing past the bytes it has.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SOF0 = b"\xff\xc0\x00\x11\x08"


@pytest.mark.parametrize("head, expected", [
    (PNG_SIGNATURE + b"\x00\x00\x00\x0dIHDR" + struct.pack(">II", 640, 480), ("png", 640, 480)),  # exactly 24 bytes
    (PNG_SIGNATURE + b"\x00\x00\x00\x0dIHDR" + struct.pack(">II", 2**31, 1), ("png", 2**31, 1)),
    (b"GIF89a" + struct.pack("<HH", 40000, 3), ("gif", 40000, 3)),  # exactly 10 bytes, over 32767
    (b"\xff\xd8" + SOF0 + struct.pack(">HH", 40000, 50000), ("jpeg", 50000, 40000)),  # SOF ends where the bytes end
    (b"\xff\xd8\xff\xd7" + SOF0 + struct.pack(">HH", 30, 20), ("jpeg", 20, 30)),  # RST7 stands alone
    (b"\xff\xd8\xff\x01" + SOF0 + struct.pack(">HH", 30, 20), ("jpeg", 20, 30)),  # so does TEM
])
def test_sizes_are_read_to_the_last_byte_and_unsigned(head, expected):
    found = sniff(head)
    assert (found.format, found.width, found.height) == expected


@pytest.mark.parametrize("head, description", [
    (b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(20), "unrecognised binary data"),  # RIFF, but a WAV, not a WebP
    (b"BM" + bytes(24), "a BMP image"),
    (b"<html><body>hi</body></html>", "an HTML document"),
    (b" " * 59 + b"<html>", "an HTML document"),  # leading space counts within the first 64 bytes
    (b" " * 60 + b"<html>", "a text file"),  # the tag no longer starts within them
])
def test_what_is_not_an_accepted_image_is_described_exactly(head, description):
    assert sniff(head).description == description


def test_an_ftyp_box_declaring_more_than_2_gib_is_read_to_the_end_of_what_there_is():
    head = struct.pack(">I", 2**31 + 16) + b"ftypheic" + bytes(4) + b"mif1heic"
    assert sniff(head).format == "heic"
