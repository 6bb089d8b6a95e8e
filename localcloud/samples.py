"""Images generated on the fly: the demo's sample set, the inputs the tests need and the bench's photo-like ones.

Nothing is shipped: every image, good or bad, is made here, and encoded by `encode`.
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

from handlers.names import Status
from localcloud.rekognition import MAGENTA


def photo(width: int = 640, height: int = 480, mode: str = "RGB") -> Image.Image:
    """A smooth gradient with a marker in the top-left corner, so orientation can be checked."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    blue = Image.new("RGB", (width, height), (30, 60, 200))
    image = Image.blend(image, blue, 0.3)
    marker = Image.new("RGB", (width // 4, height // 4), (255, 0, 0))
    image.paste(marker, (0, 0))
    return image.convert(mode) if mode != "RGB" else image


def photo_like(width: int, height: int, seed: int = 1) -> Image.Image:
    """Smooth light, texture and edges, so encoders and decoders work as hard as they do on photographs (flat test
    patterns compress and decode unrealistically fast): the bench's inputs."""
    base = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    sky = Image.new("RGB", (width, height), (70, 120, 190))
    image = Image.blend(base, sky, 0.55)
    draw = ImageDraw.Draw(image)
    step = max(width, height) // 24
    for i in range(24):  # hard edges: buildings and a horizon
        x = (i * 7919 * seed) % width
        h = height // 3 + (i * 104729) % (height // 2)
        draw.rectangle([x, height - h, x + step, height], fill=((i * 37) % 255, (i * 91) % 255, (i * 53) % 255))
    # Fine texture, as foliage and sensor noise give real photos; generated small and scaled up to stay quick.
    noise = Image.effect_noise((max(1, width // 4), max(1, height // 4)), 40).resize((width, height), Image.Resampling.BILINEAR)
    image = Image.composite(image, image.filter(ImageFilter.GaussianBlur(2)), noise.point(lambda v: 255 if v > 128 else 0))
    # Full-resolution grain and colour detail: real 12 MP camera JPEGs are 3-6 MB, not a few hundred KB.
    grain = Image.merge("RGB", [Image.effect_noise((width, height), 64) for _ in range(3)])
    return Image.blend(image, grain, 0.22)


def textured(width: int, height: int, seed: int = 1) -> Image.Image:
    """photo_like with detail at every scale (noise summed over seven octaves, coarser ones weighing more, as
    natural scenes' spectra fall off): a resize that blurs shows here as it does on real photos (a 4608 px phone
    photo lost 1.9 dB at 1024 px) and hardly on photo_like, whose fine grain averages away. The scale sweep's input."""
    detail = Image.new("L", (width, height), 128)
    for octave in range(7):
        coarse = (max(2, width >> octave), max(2, height >> octave))
        noise = Image.effect_noise(coarse, 64).resize((width, height), Image.Resampling.BICUBIC)
        detail = Image.blend(detail, noise, 1.0 / (octave + 1.6))
    return Image.blend(photo_like(width, height, seed), detail.convert("RGB"), 0.5)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    """`image` in `fmt` with Pillow's save `options`: the one encoder of every generated file."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


# How a camera stores an upright picture under each EXIF orientation (the turn or flip that showing it undoes).
STORED = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
          5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
          8: Image.Transpose.ROTATE_270}


def as_stored(upright: Image.Image, orientation: int) -> Image.Image:
    """`upright` as a camera stores it under EXIF `orientation`."""
    transpose = STORED[orientation]
    return upright if transpose is None else upright.transpose(transpose)


def with_orientation_field(tiff: bytes, kind: int, values: tuple[int, ...]) -> bytes:
    """`tiff` (a TIFF file, or an EXIF block with or without its "Exif" header) with its first directory's Orientation
    entry rewritten as TIFF field type `kind` (2 ASCII, 3 SHORT, 4 LONG) holding `values` inline (4 bytes at most):
    the malformed tags some tools write."""
    start = 6 if tiff.startswith(b"Exif\x00\x00") else 0
    order = "<" if tiff[start:start + 2] == b"II" else ">"
    (directory,) = struct.unpack_from(order + "I", tiff, start + 4)
    (entries,) = struct.unpack_from(order + "H", tiff, start + directory)
    value = struct.pack(order + {2: "B", 3: "H", 4: "I"}[kind] * len(values), *values).ljust(4, b"\x00")
    out = bytearray(tiff)
    for index in range(entries):
        at = start + directory + 2 + 12 * index
        if struct.unpack_from(order + "H", tiff, at)[0] == 0x0112:
            struct.pack_into(order + "HHI4s", out, at, 0x0112, kind, len(values), value)
            return bytes(out)
    raise ValueError("the block has no Orientation entry")


# Text a camera-like file carries in each kind of metadata (camera_jpeg's `everything`): a thumbnail holding any of
# them leaked that kind.
CAMERA_MARKS = {"gps": b"CC-GPS-DATUM", "maker notes": b"CC-MAKER-NOTE", "embedded thumbnail": b"CC-EMBEDDED-THUMB",
                "xmp": b"CC-XMP-TITLE", "iptc": b"CC-IPTC-CAPTION"}
CAMERA_GPS = {"latitude": "52.500000", "longitude": "-1.250000"}


def camera_jpeg(upright: Image.Image, exif: Image.Exif | None = None, orientation: int = 6, quality: int = 90,
                everything: bool = False, icc_profile: bytes | None = None) -> bytes:
    """`upright` stored as a camera stores it (by default held upright: sideways, orientation 6), tagged so.
    `everything`: with what a phone or camera adds besides (GPS, maker notes and an embedded thumbnail in the EXIF,
    an XMP packet, an IPTC caption), each holding its CAMERA_MARKS text; `icc_profile`: that profile embedded."""
    exif = exif or Image.Exif()
    exif[0x0112] = orientation
    options: dict[str, object] = {"icc_profile": icc_profile} if icc_profile else {}
    if not everything:
        return encode(as_stored(upright, orientation), "JPEG", quality=quality, exif=exif.tobytes(), **options)
    exif[0x010F], exif[0x0110] = exif.get(0x010F, "Fujifilm"), exif.get(0x0110, "X-T5")
    exif.get_ifd(0x8769)[0x927C] = CAMERA_MARKS["maker notes"] + bytes(range(64))  # MakerNote, UNDEFINED
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 30.0, 0.0), 3: "W", 4: (1.0, 15.0, 0.0),
                                 0x12: CAMERA_MARKS["gps"].decode()})  # GPSMapDatum
    preview = encode(as_stored(upright, orientation).resize((160, 120)), "JPEG", quality=70,
                     comment=CAMERA_MARKS["embedded thumbnail"])
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:title="' + CAMERA_MARKS["xmp"] + b'"/>'
           b"</rdf:RDF></x:xmpmeta>")
    data = encode(as_stored(upright, orientation), "JPEG", quality=quality, exif=with_exif_thumbnail(exif.tobytes(), preview),
                  xmp=xmp, **options)
    caption = b"\x1c\x02\x78" + struct.pack(">H", len(CAMERA_MARKS["iptc"])) + CAMERA_MARKS["iptc"]  # IPTC 2:120
    iptc = b"Photoshop 3.0\x00" + b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(caption)) + caption + b"\x00" * (len(caption) & 1)
    return data[:2] + b"\xff\xed" + struct.pack(">H", len(iptc) + 2) + iptc + data[2:]  # APP13, as cameras write it


def with_exif_thumbnail(block: bytes, preview: bytes) -> bytes:
    """An EXIF block ("Exif" header, IFD0 at offset 8, as Pillow writes it) with `preview` as its embedded thumbnail:
    IFD1 (Compression 6, JPEGInterchangeFormat and its length) and the JPEG, appended, IFD0 pointing at them."""
    tiff = block[6:]
    order = "<" if tiff[:2] == b"II" else ">"
    (first,) = struct.unpack_from(order + "I", tiff, 4)
    (entries,) = struct.unpack_from(order + "H", tiff, first)
    ifd1 = len(tiff) + (len(tiff) & 1)
    jpeg_at = ifd1 + 2 + 3 * 12 + 4
    directory = struct.pack(order + "H", 3) + b"".join(
        struct.pack(order + "HHI", tag, kind, 1) + struct.pack(order + ("HH" if kind == 3 else "I"), *((value, 0) if kind == 3 else (value,)))
        for tag, kind, value in ((0x0103, 3, 6), (0x0201, 4, jpeg_at), (0x0202, 4, len(preview)))) + b"\x00" * 4
    out = bytearray(tiff + b"\x00" * (ifd1 - len(tiff)) + directory + preview)
    struct.pack_into(order + "I", out, first + 2 + 12 * entries, ifd1)
    return block[:6] + bytes(out)


def jpeg(width: int = 640, height: int = 480, orientation: int | None = None, exif: Image.Exif | None = None,
         mode: str = "RGB") -> bytes:
    image = photo(width, height, mode)
    exif = exif or Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    return encode(image, "JPEG", quality=90, exif=exif.tobytes())


def png(width: int = 320, height: int = 200, mode: str = "RGB") -> bytes:
    return encode(photo(width, height, "RGB").convert(mode), "PNG")


def webp(width: int = 320, height: int = 200) -> bytes:
    return encode(photo(width, height), "WEBP", quality=80)


def gif(frames: int = 1, width: int = 64, height: int = 64) -> bytes:
    palette = [channel for i in range(256) for channel in (i, 255 - i, (i * 7) % 256)]
    images = []
    for i in range(frames):
        frame = Image.new("P", (width, height), 0)
        frame.putpalette(palette)
        frame.paste(i % 256, (0, 0, width // 2, height // 2))  # each frame differs, so none is merged
        images.append(frame)
    return encode(images[0], "GIF", save_all=frames > 1, append_images=images[1:])


def heic(width: int = 400, height: int = 300, orientation: int | None = None) -> bytes:
    """An iPhone-style HEIC photo (pillow-heif encodes it)."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Apple", "iPhone 15"
    if orientation is not None:
        exif[0x0112] = orientation
    return encode(photo(width, height), "HEIF", quality=80, exif=exif.tobytes())


def avif(width: int = 400, height: int = 300) -> bytes:
    return encode(photo(width, height), "AVIF", quality=70)


def marked(fmt: str = "jpeg", width: int = 640, height: int = 480, marker: tuple[int, int, int] = MAGENTA,
           noise: bool = False, **options: object) -> bytes:
    """A photo with a block of a marker colour in its lower right corner (16% of it): the local cloud's
    DetectModerationLabels flags it by its rule (localcloud/rekognition.py; magenta: Violence). `noise`: random
    pixels instead of the gradient, which no encoder can make small (an oversize JPEG)."""
    import os

    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)) if noise else photo(width, height)
    block = Image.new("RGB", (width * 2 // 5, height * 2 // 5), marker)
    image.paste(block, (width - block.width, height - block.height))
    return encode(image, fmt.upper(), **options)


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming any size, with one tiny IDAT: a decompression bomb header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def sixteen_bit_png(width: int = 64, height: int = 48) -> bytes:
    image = Image.new("I;16", (width, height))
    image.putdata([(x * 1000) % 65536 for x in range(width * height)])
    return encode(image, "PNG")


def palette_png_with_transparency(width: int = 64, height: int = 48) -> bytes:
    image = Image.new("P", (width, height), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    image.paste(1, (0, 0, width // 2, height))
    return encode(image, "PNG", transparency=0)


def psd_header() -> bytes:
    return b"8BPS\x00\x01" + b"\x00" * 20


def sample_set() -> dict[str, bytes]:
    """The demo's uploads (name -> bytes): a few good images and a few bad inputs, each for a reason."""
    camera = Image.Exif()
    camera[0x010F], camera[0x0110] = "Fujifilm", "X-T5"
    camera.get_ifd(0x8769)[0x9003] = "2026:07:14 18:42:05"
    return {
        "beach-portrait.jpg": camera_jpeg(photo(2000, 3000), camera),  # stored sideways with orientation 6, shown upright
        "harbour.jpg": jpeg(1600, 1200),
        "diagram.png": png(1200, 800),
        "sunset.webp": webp(1024, 640),
        "spinner.gif": gif(frames=12, width=96, height=96),
        "logo-transparent.png": palette_png_with_transparency(400, 200),
        "scan-16bit.png": sixteen_bit_png(600, 400),
        "notes.jpg": b"meeting notes, definitely not a photo\n",  # text with an image's name
        "empty.jpg": b"",
        "bomb.png": png_header_only(20000, 20000),  # 400 MP claimed in 100 bytes
        "truncated.jpg": jpeg(1200, 900)[:6000],  # cut off mid-scan
        "flagged.webp": marked("webp", 1024, 768),  # the emulated moderation flags it: quarantined, no thumbnail
    }


def renamed_copy() -> tuple[str, bytes]:
    """(name, bytes) of a copy of the sample set's harbour.jpg under another name, re-encoded at a lower quality: what
    the demo uploads once that one is done, and its record names it (duplicate_of)."""
    shown = Image.open(io.BytesIO(sample_set()["harbour.jpg"]))
    return "harbour (copy).jpg", encode(shown, "JPEG", quality=70)


def write_sample_set(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in sample_set().items():
        path = directory / name
        path.write_bytes(data)
        paths.append(path)
    return paths


def with_frame_size(data: bytes, width: int, height: int) -> bytes:
    """A JPEG whose frame header claims another size (the scan data stays small)."""
    start = data.index(b"\xff\xc0")
    return data[: start + 5] + struct.pack(">HH", height, width) + data[start + 9:]


def nasty_set() -> dict[str, tuple[bytes, str]]:
    """Hostile inputs (name -> (bytes, the final status a person would call right)). Names lie on purpose."""
    big_exif = Image.Exif()
    big_exif[0x010F] = "Canon"
    big_exif[0x9286] = b"UNICODE\x00" + b"\x00A" * 30000  # a ~60 KB UserComment, near the APP1 limit
    garbage_exif = jpeg(200, 150)
    garbage_exif = garbage_exif[:2] + b"\xff\xe1\x00\x20Exif\x00\x00II*\x00\xff\xff\xff\x7f" + b"\xee" * 16 + garbage_exif[2:]
    return {
        "bomb.png": (png_header_only(30000, 30000), Status.REJECTED),
        "bomb.jpg": (with_frame_size(jpeg(64, 64), 60000, 60000), Status.REJECTED),
        "bomb.gif": (b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00;", Status.REJECTED),
        "bomb.webp": (b"RIFF\x1e\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00\x00\x00\x00"
                      + (16383 - 1).to_bytes(3, "little") + (16383 - 1).to_bytes(3, "little"), Status.REJECTED),
        "truncated.png": (png(400, 300)[:700], Status.FAILED),
        "truncated.jpg": (jpeg(800, 600)[:3000], Status.FAILED),
        "polyglot-zip.jpg": (jpeg(300, 200) + b"PK\x03\x04" + b"\x00" * 26 + b"evil.sh", Status.DONE),
        "gifar.gif": (gif(frames=2) + b"PK\x03\x04" + b"\x00" * 40, Status.DONE),
        "huge-exif.jpg": (jpeg(200, 150, exif=big_exif), Status.DONE),
        "garbage-exif.jpg": (garbage_exif, Status.DONE),
        "really-a-png.gif": (png(120, 80), Status.DONE),
        "zero.jpg": (b"", Status.REJECTED),
        "random.jpg": (bytes(random_bytes(4096)), Status.REJECTED),
        "page.png": (b"<!doctype html><html><body>hi</body></html>", Status.REJECTED),
        "drawing.png": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', Status.REJECTED),
        "layers.jpg": (psd_header(), Status.REJECTED),
        "tiny.png": (png(1, 1), Status.DONE),
    }


def random_bytes(count: int, seed: int = 3) -> list[int]:
    import random

    rng = random.Random(seed)
    data = [rng.randrange(256) for _ in range(count)]
    data[0] = 0x00  # never a known signature by chance
    return data
