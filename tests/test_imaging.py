"""The engine on inputs people bring and the settings they choose: every mode, extreme shapes, quality, outputs,
and the time a photo was taken."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from bench.engines import psnr_images
from handlers import imaging, jpeg_markers
from localcloud import samples
from localcloud.samples import encode
from tests.conftest import handler_environment

LIMITS = imaging.Limits(10**8, 10)


def opened(thumbnail: imaging.Thumbnail) -> Image.Image:
    image = Image.open(io.BytesIO(thumbnail.data))
    image.load()
    return image


def test_gray_with_alpha_keeps_its_transparency_and_flattens_onto_white_for_jpeg():
    la = Image.new("LA", (200, 100), (30, 255))
    la.paste((30, 0), (100, 0, 200, 100))  # right half transparent
    data = encode(la, "PNG")
    [png] = imaging.make_thumbnails(data, (64,), "png", 90, LIMITS).thumbnails
    out = opened(png)
    assert out.mode == "RGBA" and out.size == (64, 32)
    assert out.getpixel((5, 16))[3] == 255 and out.getpixel((60, 16))[3] == 0
    [jpeg] = imaging.make_thumbnails(data, (64,), "jpeg", 90, LIMITS).thumbnails
    flat = opened(jpeg).convert("L")
    assert flat.getpixel((5, 16)) < 60 and flat.getpixel((60, 16)) > 240


def test_a_one_bit_image_becomes_gray_with_its_black_and_white():
    bits = Image.new("1", (300, 150), 0)
    bits.paste(1, (150, 0, 300, 150))
    [out] = imaging.make_thumbnails(encode(bits, "PNG"), (100,), "png", 90, LIMITS).thumbnails
    image = opened(out)
    assert image.mode == "L" and image.size == (100, 50)
    assert image.getpixel((5, 25)) == 0 and image.getpixel((95, 25)) == 255


@pytest.mark.parametrize("size", [(4000, 1), (1, 4000)])
def test_a_one_pixel_line_keeps_one_pixel_at_every_size(size):
    data = encode(Image.new("RGB", size, (10, 20, 30)), "PNG")
    outputs = imaging.make_thumbnails(data, (1024, 512, 128), "jpeg", 82, LIMITS).thumbnails
    long_side = [1024, 512, 128]
    assert [(t.width, t.height) for t in outputs] == [
        (side, 1) if size[0] > 1 else (1, side) for side in long_side]


def test_the_configured_quality_is_what_the_encoder_used():
    photo = Image.effect_mandelbrot((400, 300), (-2, -1.5, 1, 1.5), 60).convert("RGB")
    data = encode(photo, "PNG")
    low, high = (imaging.make_thumbnails(data, (256,), "jpeg", q, LIMITS).thumbnails[0] for q in (30, 95))
    assert len(low.data) < len(high.data)
    for quality, thumbnail in ((30, low), (95, high)):
        reference = Image.open(io.BytesIO(encode(opened(thumbnail).convert("RGB"), "JPEG", quality=quality)))
        assert opened(thumbnail).quantization == reference.quantization, quality  # the same tables: this quality


@pytest.mark.parametrize("fmt, mime", [("png", "image/png"), ("webp", "image/webp"), ("jpeg", "image/jpeg")])
def test_each_output_format_is_that_format_at_the_fitted_size(fmt, mime):
    data = encode(Image.new("RGB", (800, 400), (200, 40, 40)), "PNG")
    outputs = imaging.make_thumbnails(data, (512, 128), fmt, 82, LIMITS).thumbnails
    assert [(t.box, t.width, t.height, t.content_type, t.extension) for t in outputs] == [
        (512, 512, 256, mime, "jpg" if fmt == "jpeg" else fmt), (128, 128, 64, mime, "jpg" if fmt == "jpeg" else fmt)]
    for thumbnail in outputs:
        image = opened(thumbnail)
        assert image.format == fmt.upper() and image.size == (thumbnail.width, thumbnail.height)
    if fmt == "png":  # lossless: the colour is exact
        assert opened(outputs[1]).convert("RGB").getpixel((10, 10)) == (200, 40, 40)


def test_every_format_of_outputformats_decodes_as_that_format_at_each_size_and_carries_no_metadata():
    # stored sideways with GPS, maker notes, XMP, IPTC: each format shows it upright, with none of them
    data = samples.camera_jpeg(samples.photo_like(200, 150), everything=True)
    made = imaging.make_thumbnails(data, (128, 100), "jpeg", 95, LIMITS, sniffed="jpeg",
                                   preferred=(("avif", 10), ("webp", 50))).thumbnails  # each smaller than the next
    assert [(t.box, t.format) for t in made] == [(128, "avif"), (128, "webp"), (128, "jpeg"),
                                                 (100, "avif"), (100, "webp"), (100, "jpeg")]
    for thumbnail in made:
        image = opened(thumbnail)
        assert image.format == thumbnail.format.upper() and image.get_format_mimetype() == thumbnail.content_type
        assert image.size == (thumbnail.width, thumbnail.height) == ((128, 96) if thumbnail.box == 128 else (100, 75))
        assert not image.getexif() and "exif" not in image.info and "icc_profile" not in image.info
        assert not any(mark in thumbnail.data for mark in samples.CAMERA_MARKS.values())


def test_a_rendition_not_smaller_than_the_next_format_kept_is_not_made():
    data = encode(samples.photo_like(300, 200), "PNG")
    # WebP at 100 is larger than JPEG at 30 everywhere: only the fallback is kept; at 30 against JPEG at 95, smaller.
    larger = imaging.make_thumbnails(data, (256, 64), "jpeg", 30, LIMITS, preferred=(("webp", 100),)).thumbnails
    assert [(t.box, t.format) for t in larger] == [(256, "jpeg"), (64, "jpeg")]
    smaller = imaging.make_thumbnails(data, (256, 64), "jpeg", 95, LIMITS, preferred=(("webp", 30),)).thumbnails
    assert [(t.box, t.format) for t in smaller] == [(256, "webp"), (256, "jpeg"), (64, "webp"), (64, "jpeg")]
    # AVIF is compared with the next one kept: the JPEG, where the WebP was not kept
    jpeg, webp, avif = (imaging.Thumbnail(box=1, width=1, height=1, data=b"x" * n, format=f) for n, f in
                        ((10, "jpeg"), (12, "webp"), (11, "avif")))
    assert imaging.smaller_first([avif, webp, jpeg]) == [jpeg]
    assert imaging.smaller_first([replace(avif, data=b"x" * 9), webp, jpeg]) == [replace(avif, data=b"x" * 9), jpeg]


def test_a_small_photo_has_one_rendition_per_format_for_every_box_above_its_size():
    data = encode(samples.photo_like(100, 68), "JPEG", quality=90)
    made = imaging.make_thumbnails(data, (1024, 512, 128, 64), "jpeg", 95, LIMITS, sniffed="jpeg",
                                   preferred=(("webp", 30),)).thumbnails
    assert [(t.format, t.width, t.boxes) for t in made] == [("webp", 100, (1024, 512, 128)), ("jpeg", 100, (1024, 512, 128)),
                                                            ("webp", 64, (64,)), ("jpeg", 64, (64,))]


@pytest.mark.parametrize("tag, raw, expected", [
    (0x9003, "2026:03:04 05:06:07", "2026-03-04T05:06:07"),  # DateTimeOriginal
    (0x0132, "2025:12:31 23:59:59", "2025-12-31T23:59:59"),  # DateTime, when there is no DateTimeOriginal
    (0x9003, "2026:03:04 05:06:07.123", "2026-03-04T05:06:07"),
])
def test_taken_at_is_the_iso_time_the_camera_wrote(tag, raw, expected):
    exif = Image.Exif()
    if tag == 0x9003:
        exif.get_ifd(0x8769)[tag] = raw
    else:
        exif[tag] = raw
    data = encode(Image.new("RGB", (64, 48)), "JPEG", exif=exif.tobytes())
    assert imaging.make_thumbnails(data, (32,), "jpeg", 80, LIMITS).metadata["taken_at"] == expected


def test_the_original_time_wins_over_the_file_time():
    exif = Image.Exif()
    exif[0x0132] = "2020:01:01 00:00:00"
    exif.get_ifd(0x8769)[0x9003] = "2026:03:04 05:06:07"
    data = encode(Image.new("RGB", (64, 48)), "JPEG", exif=exif.tobytes())
    assert imaging.make_thumbnails(data, (32,), "jpeg", 80, LIMITS).metadata["taken_at"] == "2026-03-04T05:06:07"


def detailed(width: int, height: int) -> Image.Image:
    """Colour detail at every scale down to a few pixels, as foliage and fabric give photos: where a soft
    resampling filter loses most (a bilinear first step was 0.6 dB below Lanczos here, 1.6 dB on a real photo)."""
    return Image.merge("RGB", [Image.effect_noise((width // 5, height // 5), 80).resize((width, height), Image.Resampling.BICUBIC)
                               for _ in range(3)])


@pytest.mark.parametrize("width, height", [(1800, 1200), (2600, 1950)], ids=["full-decode", "draft-decode"])
def test_every_size_after_encoding_is_as_close_to_the_full_image_as_a_full_decode_lanczos_resize(width, height):
    """The engine decodes at a reduced scale and cascades, but each thumbnail, as delivered (encoded), is within
    0.2 dB PSNR of the best Pillow can do: the full decode resized by Lanczos and encoded the same way.
    (make bench holds the same measure against sharp: README, Performance.)"""
    data = encode(detailed(width, height), "JPEG", quality=92)
    full = Image.open(io.BytesIO(data)).convert("RGB")
    for thumbnail in imaging.make_thumbnails(data, (1024, 512, 128), "jpeg", 82, LIMITS, sniffed="jpeg").thumbnails:
        reference = full.resize((thumbnail.width, thumbnail.height), Image.Resampling.LANCZOS)
        best = Image.open(io.BytesIO(encode(reference, "JPEG", quality=82, optimize=True))).convert("RGB")
        ours = opened(thumbnail).convert("RGB")
        assert psnr_images(ours, reference) >= psnr_images(best, reference) - 0.2, thumbnail.box


# libjpeg's standard Huffman tables (ITU T.81 Annex K.3): counts of codes per length, DC and AC, luminance and
# chrominance. A JPEG written with tables made for its own image (optimize_coding) carries none of them.
_STANDARD_HUFFMAN_COUNTS = {
    bytes([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]), bytes([0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]),
    bytes([0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D]), bytes([0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77]),
}


def _jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of each segment before the first scan's data."""
    return [(s.marker, s.payload(data)) for s in jpeg_markers.segments(data)]


def _huffman_counts(segments: list[tuple[int, bytes]]) -> list[bytes]:
    counts = []
    for marker, payload in segments:
        at = 0
        while marker == 0xC4 and at < len(payload):
            counts.append(payload[at + 1:at + 17])
            at += 17 + sum(payload[at + 1:at + 17])
    return counts


def test_jpeg_thumbnails_are_coded_with_tables_of_their_own_and_the_large_ones_progressively():
    """Optimised Huffman coding (sharp's default; 5-16% fewer bytes for the same pixels in make bench),
    progressive only where make bench measured it smaller (from PROGRESSIVE_MIN_PIXELS up), and no JFIF header."""
    data = encode(detailed(1600, 1200), "JPEG", quality=90)
    for thumbnail in imaging.make_thumbnails(data, (1024, 512, 128), "jpeg", 82, LIMITS, sniffed="jpeg").thumbnails:
        segments = _jpeg_segments(thumbnail.data)
        frames = [marker for marker, _ in segments if marker in (0xC0, 0xC1, 0xC2)]
        large = thumbnail.width * thumbnail.height >= imaging.PROGRESSIVE_MIN_PIXELS
        assert frames == [0xC2 if large else 0xC0], (thumbnail.box, frames)
        counts = _huffman_counts(segments)
        assert counts and not _STANDARD_HUFFMAN_COUNTS & set(counts), thumbnail.box
        # No APP segment (JFIF's 18 bytes are left out, as libvips does); three components with the ids 1, 2, 3,
        # which decoders read as YCbCr without JFIF (libjpeg's default_decompress_parms); and so they decode.
        assert not [marker for marker, _ in segments if 0xE0 <= marker <= 0xEF], thumbnail.box
        [frame] = [payload for marker, payload in segments if marker in (0xC0, 0xC2)]
        assert frame[5] == 3 and [frame[6 + 3 * i] for i in range(3)] == [1, 2, 3]
        assert opened(thumbnail).mode == "RGB"


def test_the_stage_starts_with_the_plugins_of_its_formats_and_no_others():
    """Cold start without waste: as the thumbnail function starts it imports the decoders of the stack's formats,
    its encoder, the EXIF reader and smartcrop (the saliency point); its first JPEG imports nothing more (Pillow would import five plugins on the
    first open and all ~45 on the first format it had not seen). Pillow still opens any other format for any
    other code in the process."""
    script = """
import io, json, sys
from PIL import Image
from handlers import imaging, thumbnails
started = sorted(m for m in sys.modules if m.startswith("PIL.") and m.endswith("ImagePlugin"))
photo = io.BytesIO(); Image.new("RGB", (300, 200), (10, 120, 200)).save(photo, "JPEG")
[out] = imaging.make_thumbnails(photo.getvalue(), (64,), "webp", 80, imaging.Limits(10**8, 10), sniffed="jpeg").thumbnails
after = sorted(m for m in sys.modules if m.startswith("PIL.") and m.endswith("ImagePlugin"))
bmp = io.BytesIO(); Image.new("RGB", (4, 4)).save(bmp, "BMP")
print(json.dumps({"prepared": thumbnails.PREPARED, "started": started, "after": after, "out": out.format,
                  "bmp": Image.open(io.BytesIO(bmp.getvalue())).format}))
"""
    root = Path(__file__).resolve().parent.parent
    environment = {**os.environ, **handler_environment(allowedFormats='["jpeg","png"]', outputFormat="webp"),
                   "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root, env=environment,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout)
    needed = ["PIL.JpegImagePlugin", "PIL.PngImagePlugin", "PIL.TiffImagePlugin", "PIL.WebPImagePlugin"]
    assert sorted(found["prepared"]) == [*needed, "smartcrop"]  # and the saliency point's library
    assert found["started"] == found["after"] == needed
    assert found["out"] == "webp" and found["bmp"] == "BMP"


def test_a_transparent_png_with_a_display_p3_profile_keeps_its_alpha_through_the_conversion():
    # Kills the alpha checks of the sRGB conversion inverted (COPY_ALPHA only for an RGB output) or RGBA left out of
    # the modes an RGB profile describes: the transparent half turned opaque black, or the colours went unconverted.
    from tests.hostile import matrix_profile

    rgba = Image.new("RGBA", (200, 100), (200, 100, 50, 255))
    rgba.paste((0, 0, 0, 0), (100, 0, 200, 100))  # right half transparent (and black underneath)
    data = encode(rgba, "PNG", icc_profile=matrix_profile("Display P3"))
    png = imaging.make_thumbnails(data, (64,), "png", 90, LIMITS, sniffed="png")
    out = opened(png.thumbnails[0])
    assert png.metadata["color_profile"] == "Display P3" and out.mode == "RGBA"
    left, right = out.getpixel((5, 16)), out.getpixel((60, 16))
    assert left[3] == 255 and right[3] == 0
    assert max(abs(a - b) for a, b in zip(left[:3], (216, 93, 24), strict=True)) <= 3  # P3's orange, in sRGB
    [jpeg] = imaging.make_thumbnails(data, (64,), "jpeg", 90, LIMITS, sniffed="png").thumbnails
    flat = opened(jpeg)
    assert min(flat.getpixel((60, 16))) > 240  # flattened onto white, not black


def test_a_palette_png_with_a_transparent_colour_keeps_it_and_one_without_is_opaque():
    palette = Image.new("P", (200, 100), 1)
    palette.putpalette([255, 255, 255, 200, 30, 30] + [0] * 762)
    palette.paste(0, (100, 0, 200, 100))
    with_transparency = imaging.make_thumbnails(encode(palette, "PNG", transparency=0), (64,), "png", 90, LIMITS)
    assert opened(with_transparency.thumbnails[0]).getpixel((60, 16))[3] == 0
    opaque = opened(imaging.make_thumbnails(encode(palette, "PNG"), (64,), "png", 90, LIMITS).thumbnails[0])
    assert opaque.mode == "RGB" and opaque.getpixel((60, 16)) == (255, 255, 255)


def test_a_gif_is_decoded_as_a_gif_and_named_one():
    # Kills the GIF entry dropped from the decoders (the stage refused every GIF the intake accepted) or from the
    # format names.
    gif = encode(Image.new("RGB", (120, 60), (0, 128, 255)).convert("P"), "GIF")
    result = imaging.make_thumbnails(gif, (32,), "png", 90, LIMITS, sniffed="gif")
    assert result.metadata["format"] == "gif" and opened(result.thumbnails[0]).size == (32, 16)
    assert imaging.FORMAT_NAMES["GIF"] == "gif" and imaging.DECODERS["gif"][1] == ("GIF",)


def test_bytes_the_decoder_cannot_read_are_a_permanent_failure_with_a_reason():
    # Kills the engine's `except Exception` turned to pass (or to a bare raise: an OSError, retried for ever).
    truncated = encode(Image.new("RGB", (400, 300), (10, 200, 30)), "PNG")[:-200]
    with pytest.raises(imaging.PermanentFailure) as failed:
        imaging.make_thumbnails(truncated, (64,), "jpeg", 90, LIMITS, sniffed="png")
    assert failed.value.reason == "the image data is truncated"


def test_an_unreadable_exif_block_gives_the_defaults_not_a_failure():
    class Broken:
        format, mode, size = "JPEG", "RGB", (40, 30)

        def getexif(self):
            raise SyntaxError("bad EXIF")

    assert imaging.extract_metadata(Broken(), store_gps=True) == {
        "format": "jpeg", "mode": "RGB", "orientation": 1, "width": 40, "height": 30}


# Orientation as browsers read it: only a SHORT of count 1 with a value 1-8 turns the image (imaging.exif_orientation).
FIELDS = {"a SHORT 6": (3, (6,), True), 'ASCII "6"': (2, (0x36, 0), False), "two SHORTs 6, 6": (3, (6, 6), False),
          "a LONG 6": (4, (6,), False), "a SHORT 9": (3, (9,), False)}


def oriented(fmt: str, orientation: int, field: tuple[int, tuple[int, ...]] | None = None) -> bytes:
    """The sample photo (240x160, red marker top-left) stored as a camera stores it under `orientation`, in `fmt`,
    its EXIF Orientation entry rewritten as `field` (type, values) when given."""
    stored = samples.as_stored(samples.photo(240, 160), orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    if fmt == "tiff":  # the orientation is in the TIFF's own first directory
        data = encode(stored, "TIFF", exif=exif.tobytes())
        return samples.with_orientation_field(data, *field) if field else data
    block = samples.with_orientation_field(exif.tobytes(), *field) if field else exif.tobytes()
    return encode(stored, fmt.upper(), exif=block, **({"lossless": True} if fmt == "webp" else {}))


def shown(data: bytes, fmt: str) -> tuple[dict, Image.Image]:
    result = imaging.make_thumbnails(data, (128,), "png", 90, LIMITS, sniffed=fmt)
    return result.metadata, opened(result.thumbnails[0]).convert("RGB")


def red(pixel: tuple[int, ...]) -> bool:
    return pixel[0] > 180 and pixel[1] < 80 and pixel[2] < 80


@pytest.mark.parametrize("fmt", ["jpeg", "png", "tiff"])
@pytest.mark.parametrize("field", list(FIELDS))
def test_only_a_short_of_count_one_turns_the_image(fmt, field):
    kind, values, turns = FIELDS[field]
    metadata, out = shown(oriented(fmt, 6, (kind, values)), fmt)
    if turns:  # shown upright: landscape, the marker top-left
        assert (metadata["orientation"], metadata["width"], metadata["height"]) == (6, 240, 160)
        assert out.size == (128, 85) and red(out.getpixel((4, 4)))
    else:  # shown as stored: portrait, the marker where the camera's turn left it (bottom-left)
        assert (metadata["orientation"], metadata["width"], metadata["height"]) == (1, 160, 240)
        assert out.size == (85, 128) and not red(out.getpixel((4, 4))) and red(out.getpixel((4, 124)))


@pytest.mark.parametrize("fmt", ["jpeg", "png", "tiff"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_of_every_format_shows_upright_and_the_record_says_that_size(fmt, orientation):
    metadata, out = shown(oriented(fmt, orientation), fmt)
    assert (metadata["orientation"], metadata["width"], metadata["height"]) == (orientation, 240, 160)
    assert out.size == (128, 85) and red(out.getpixel((4, 4))), out.getpixel((4, 4))
    assert not red(out.getpixel((124, 81)))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_webp_s_exif_orientation_is_not_applied_as_browsers_do_not(orientation):
    # Chromium's and Firefox's WebP decoders never read the EXIF chunk: the picture shows as stored, and so here.
    metadata, out = shown(oriented("webp", orientation), "webp")
    stored = samples.as_stored(samples.photo(240, 160), orientation).size
    assert (metadata["orientation"], metadata["width"], metadata["height"]) == (1, *stored)
    assert out.size == ((128, 85) if stored[0] > stored[1] else (85, 128)) and not red(out.getpixel((4, 4)))


def test_an_orientation_only_in_xmp_is_not_applied():
    # Pillow's getexif reads tiff:Orientation from XMP when EXIF has none; browsers do not.
    stored = samples.as_stored(samples.photo(240, 160), 6)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    metadata, out = shown(encode(stored, "JPEG", quality=95, xmp=xmp), "jpeg")
    assert (metadata["orientation"], metadata["width"], metadata["height"]) == (1, 160, 240) and out.size == (85, 128)


def test_sizes_at_or_above_the_original_share_one_encoded_rendition():
    # A 100x68 photo fits every box of the defaults as it is: encoded once, serving all three.
    [shared] = imaging.make_thumbnails(samples.jpeg(100, 68), (1024, 512, 128), "jpeg", 82, LIMITS).thumbnails
    assert (shared.box, shared.boxes, opened(shared).size) == (1024, (1024, 512, 128), (100, 68))
    # A 300x200 one: 1024 and 512 share its own size, 128 is made smaller.
    large, small = imaging.make_thumbnails(samples.jpeg(300, 200), (1024, 512, 128), "jpeg", 82, LIMITS).thumbnails
    assert (large.boxes, opened(large).size, small.boxes, opened(small).size) == ((1024, 512), (300, 200), (128,), (128, 85))


def test_a_jpeg_decoded_at_a_draft_scale_records_its_full_size():
    # The draft decode (1/8 here) changes the image's size; the record keeps the photo's, as displayed.
    result = imaging.make_thumbnails(samples.camera_jpeg(samples.photo(1500, 2000)), (128,), "jpeg", 82, LIMITS)
    assert (result.metadata["width"], result.metadata["height"], opened(result.thumbnails[0]).size) == (1500, 2000, (96, 128))


def test_the_placeholder_is_hashed_from_what_the_thumbnail_shows_a_transparent_png_as_jpeg_is_on_white():
    import base64

    from handlers import placeholder

    rgba = Image.new("RGBA", (200, 100), (20, 40, 160, 255))
    rgba.paste((20, 40, 160, 0), (100, 0, 200, 100))  # right half transparent (a blue stored under it)
    data = encode(rgba, "PNG")
    as_jpeg = imaging.make_thumbnails(data, (64,), "jpeg", 90, LIMITS)
    assert as_jpeg.placeholder is not None
    # THEN the JPEG's placeholder has no alpha (its thumbnail has none), and its right half is the white it shows
    assert not base64.b64decode(as_jpeg.placeholder)[2] & 0x80
    width, height, pixels = placeholder.decode(base64.b64decode(as_jpeg.placeholder))
    right = pixels[((height // 2) * width + width - 3) * 4:][:4]
    assert min(right[:3]) > 200 and right[3] == 255, right
    # while a PNG output keeps its transparency, and so does its placeholder
    as_png = imaging.make_thumbnails(data, (64,), "png", 90, LIMITS)
    assert as_png.placeholder is not None and base64.b64decode(as_png.placeholder)[2] & 0x80


def test_a_placeholder_that_fails_is_left_out_with_its_reason_and_the_thumbnails_stand(monkeypatch):
    from handlers import placeholder

    def broken(image):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(placeholder, "of_image", broken)
    result = imaging.make_thumbnails(encode(Image.new("RGB", (300, 200), (10, 20, 30)), "PNG"), (128, 64), "jpeg", 82,
                                     LIMITS)
    assert [(t.width, t.height) for t in result.thumbnails] == [(128, 85), (64, 43)]
    assert result.placeholder is None and result.unhashed == "no placeholder: ZeroDivisionError: division by zero"
