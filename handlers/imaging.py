"""The thumbnail engine: one bounded decode, every size, oriented, no metadata.

Decoding is where time and memory go, so the image is decoded once, at the smallest JPEG draft scale that
still covers the largest size, and each smaller size is resized from the one before it. EXIF orientation, read
as browsers read it (exif_orientation), is applied to the small outputs, never to the full image (`exif_transpose`
would force a full-size decode), and the record's width and height are those of the thumbnails.

Every byte is untrusted. Only the decoder of the format the intake sniffed runs (Pillow would otherwise try
plugins without signatures, such as SPIDER or IM, when the right one gives up); the file's structure is bounded
before it is decoded (handlers/preflight.py); any error from opening, counting frames, decoding or encoding is
a PermanentFailure with a reason; and the outputs carry no metadata at all: Pillow's writers would otherwise
copy the source's comment, ICC profile or EXIF from `info`.

Colour: a thumbnail without a profile is shown as sRGB, so a source with another embedded profile (a phone's
Display P3, a print's CMYK) is converted to sRGB with littlecms once, on the largest output, before its profile
is dropped; the smaller sizes cascade from the converted pixels. A profile that cannot be read, or that does not
match the pixels, is ignored as browsers ignore it.
"""
from __future__ import annotations

import importlib
import io
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from PIL import ExifTags, Image, ImageFile

from handlers import focal, placeholder, preflight
from handlers.failures import PermanentFailure
from handlers.limits import check_pixels
from handlers.sniff import SNIFF_BYTES, sniff

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file fails; it is never padded

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "avif": "image/avif"}
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif"}
# Sniffed format -> (the Pillow plugin module to import, the Pillow formats allowed to open it). Importing the one
# plugin keeps Pillow from importing every plugin it has (Image.init) on a first call.
DECODERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "jpeg": ("PIL.JpegImagePlugin", ("JPEG",)),  # an MPO (a JPEG with more pictures) opens as one too
    "png": ("PIL.PngImagePlugin", ("PNG",)),
    "gif": ("PIL.GifImagePlugin", ("GIF",)),
    "webp": ("PIL.WebPImagePlugin", ("WEBP",)),
    "tiff": ("PIL.TiffImagePlugin", ("TIFF",)),
    "avif": ("PIL.AvifImagePlugin", ("AVIF",)),
    "heic": ("pillow_heif", ("HEIF",)),
}
# What each Pillow format means in the pipeline's terms.
FORMAT_NAMES = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "TIFF": "tiff",
                "AVIF": "avif", "HEIF": "heic"}
# The formats whose frames are an animation (an MPO's second picture, a HEIF's other images are not): the record
# says so and counts them; the thumbnails are of the first frame.
ANIMATED = ("GIF", "WEBP", "PNG", "AVIF")
ENCODERS = {"jpeg": "PIL.JpegImagePlugin", "png": "PIL.PngImagePlugin", "webp": "PIL.WebPImagePlugin",
            "avif": "PIL.AvifImagePlugin"}
# Pillow reads every format's EXIF (orientation, camera, time taken) with its TIFF directory reader.
EXIF_READER = "PIL.TiffImagePlugin"

# EXIF orientation -> the transpose that makes the image display upright.
_ORIENT = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}
# The orientation whose transpose undoes each one's (the turns by 90 degrees undo each other; flips undo themselves).
_UNDO = {6: 8, 8: 6}
_MAX_TEXT = 128
# The resize and the JPEG encoding, chosen by make bench (see _resize and _encode).
FIRST_FILTER = Image.Resampling.BICUBIC
# The shortcuts before the first resample (a JPEG's DCT-scaled draft, the whole-factor box reduce) leave it at least
# this much reduction: a near-1x bicubic step blurs. make bench's scale sweep (source widths 1025-4700 to 1024, 512,
# 128) measured the worst size against sharp's per-size pipelines at -1.65 dB with 1.0 (a 4275 px JPEG's 1/4 draft
# leaves 1.04x), -0.61 with 1.4 and -0.06 with 1.5, 1.5 costing 22% more time over the sweep and 2.0 (libvips'
# own gap) 47%. README, Performance.
RESAMPLE_HEADROOM = 1.5
PROGRESSIVE_MIN_PIXELS = 500_000
# The saliency point (_saliency): smartcrop's interest map of a copy of the largest thumbnail 256 px on its long side,
# in a grid of 32 cells on that side, each cell's density the mean of the 5 x 5 cells around it (about a sixth of the
# image: a subject's size). Measured here: 15-45 ms a thumbnail at load 12-16; the tests' off-centre subjects found
# within 2% of the image.
ANALYSIS_SIDE = 256
GRID_CELLS = 32
DENSITY_CELLS = 5
PEAK_SHARE = 0.8  # the subject's area: the connected cells at least this dense, of the peak's density
# Something stands out when the peak density is over the average by this much of it: measured 0.06 for a 16-bit scan
# sample, 0.24 for a plain blue JPEG, 0.78 for a 96 px spinner; 1.4 for a transparent logo, 3 for the tests'
# off-centre subjects, 6 for the demo's samples with a red square.
SALIENT_MARGIN = 1.0
# libavif's (aom's) speed, 0 slowest to 10: python -m bench.formats measured a 1024 px thumbnail at 2.3 s with
# Pillow's default 6, 0.32 s with 8 and 0.16 s with 9, 9 making files 2.8% larger than 8 and 5.4% than 6 at one
# quality (README, "Output formats"). One thread: the function has less than a vCPU; Pillow's default is every CPU.
AVIF_SPEED = 9
AVIF_THREADS = 1


@dataclass(frozen=True)
class Limits:
    max_pixels: int
    max_frames: int
    max_jpeg_scans: int = 100
    max_jpeg_segments: int = 1000
    # Memory one decode may take, and what a decode takes per pixel by format (the program's model, measured by
    # the hostile suite): a decode that cannot fit is refused with its reason before it starts.
    max_decode_mb: int | None = None
    bytes_per_pixel: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Thumbnail:
    box: int  # the bounding box it was made for (box x box pixels), which names its key
    width: int
    height: int
    data: bytes
    format: str
    # Every box it serves: the boxes at or above the original's size all get the original's size, made once.
    boxes: tuple[int, ...] = ()
    crop: str = ""  # a crop's name ("256x256"), which names its key; "" for a size that fits a box

    def __post_init__(self) -> None:
        if not self.boxes:
            object.__setattr__(self, "boxes", (self.box,))

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


@dataclass
class Result:
    thumbnails: list[Thumbnail]
    metadata: dict[str, Any] = field(default_factory=dict)
    placeholder: str | None = None  # the base64 ThumbHash of the smallest thumbnail (handlers/placeholder.py)
    # Why there is no placeholder though there are thumbnails (the hash failed): the stage logs it; the image is done.
    unhashed: str = ""
    # The subject's point the crops were cut around: the one the stage was given (the label stage's), else saliency.
    focal_point: focal.Point | None = None


def prepare(formats: Iterable[str], output_format: str, *more: str) -> list[str]:
    """Import the decoders of `formats`, the encoders of `output_format` (and `more`) and the EXIF reader, and no other Pillow
    plugin; returns the modules imported. The thumbnail stage calls it as Lambda starts it, so its first image pays
    no import.

    Pillow's Image.open first imports five plugins whatever the file (preinit: BMP, GIF, JPEG, PPM, PNG, ~10 ms
    here), and a format it has not imported yet makes it import all of its ~45 (init, 80-130 ms). With the
    plugins a stack needs imported here, preinit is marked done; a file of any other format is still refused by
    make_thumbnails (it opens only the sniffed format's plugin) and Image.open without `formats` still falls back
    to importing every plugin (init), so nothing else changes."""
    imported = [importlib.import_module(EXIF_READER).__name__]
    for name in dict.fromkeys([*formats]):
        if name in DECODERS:
            _import_decoder(name, DECODERS[name][0])
            imported.append(DECODERS[name][0])
    imported += [importlib.import_module(ENCODERS[name]).__name__ for name in (output_format, *more)]
    imported.append(importlib.import_module("smartcrop").__name__)  # and numpy: ~0.2 s idle, 1 s at load 6
    Image._initialized = max(Image._initialized, 1)  # preinit's flag (PIL/Image.py)
    return list(dict.fromkeys(imported))


def make_thumbnails(data: bytes, sizes: tuple[int, ...], output_format: str, quality: int, limits: Limits,
                    store_gps: bool = False, sniffed: str | None = None, crops: tuple[tuple[int, int], ...] = (),
                    point: focal.Point | None = None, preferred: tuple[tuple[str, int], ...] = (),
                    saliency: bool = True) -> Result:
    """Decode `data` (as the `sniffed` format; None: any the pipeline takes) once and return a thumbnail for
    each size (fit in a size x size box) and each of `crops` (width, height: cut around `point`, or the saliency
    point of the largest thumbnail when None), in `output_format` at `quality`, and before it, in each (format,
    quality) of `preferred` (the most preferred first) that is smaller than the next one kept (smaller_first). Raises
    PermanentFailure with a reason for anything wrong in the bytes. `saliency` False (a gate's one rendition): no
    point is looked for unless a crop needs one."""
    encodings = (*preferred, (output_format, quality))
    for name, _ in encodings:
        if name not in CONTENT_TYPES:
            raise ValueError(f"unsupported output format {name!r}")
    sizes = tuple(sorted(set(sizes), reverse=True))
    try:
        image, metadata = _open(data, limits, store_gps, sniffed)
        profile = image.info.get("icc_profile") or None
        # Pillow's TIFF reader applies the orientation it reads (of any integer type and count) as it loads
        # (TiffImagePlugin, load_end); where that is not the browsers' reading, its turn is undone, at full size.
        applied = _pillow_tiff_orientation(image) if image.format == "TIFF" else 1
        stored = image.size  # before a JPEG's draft scales it
        shown_size = (metadata["width"], metadata["height"])
        base = _decode(image, max([sizes[0], *(_crop_side(shown_size, crop) for crop in crops)]), keep_cmyk=profile is not None)
        if applied not in (1, metadata["orientation"]):
            base = _turned(base, _UNDO.get(applied, applied))
        left = 1 if applied == metadata["orientation"] else metadata["orientation"]  # to apply to the outputs
        image_size = base.size if image.format == "TIFF" else image.size
        # The record's size is the one the thumbnails show.
        metadata["width"], metadata["height"] = _turned_size(base.size if image.format == "TIFF" else stored, left)
        outputs: list[Thumbnail] = []
        levels: list[Image.Image] = []  # each size's pixels as stored (not yet turned), the largest first
        current, previous, kept = base, (0, 0), 0
        for index, size in enumerate(sizes):
            # Each size is resized from the one before it, to dimensions computed from the original,
            # so every size is exact whatever the draft scale and the cascade did.
            current = _resize(current, _fit(image_size, size), first=index == 0)
            if index == 0:
                current, described = _to_srgb(current, profile)
                if described:
                    metadata["color_profile"] = described
            if current is not base:
                current.info = {}  # a new image (resized, converted): the source's metadata is not copied on
            if current.size == previous:  # unresized (a box at or above the original's size): the same pixels
                outputs[-kept:] = [replace(o, boxes=(*o.boxes, size)) for o in outputs[-kept:]]
                continue
            previous = current.size
            levels.append(current)
            turned = _turned(current, left)
            shown_as = {name: _as_shown(turned, name) for name, _ in encodings}
            shown = shown_as[output_format]
            if not outputs:
                largest = shown  # the saliency point's source: the largest thumbnail as displayed
            made = smaller_first([_encode(shown_as[name], size, name, q) for name, q in encodings])
            kept = len(made)
            outputs += made
        if point is None and (saliency or crops):
            point = _saliency(largest)
        shown_size = (metadata["width"], metadata["height"])
        for crop in dict.fromkeys(crops):
            assert point is not None  # looked for above whenever there are crops
            outputs += _crop(levels, base, left, shown_size, crop, point, profile, encodings)
        # From the smallest thumbnail as its file shows it (a JPEG's flattened onto white), still in memory: no other
        # decode. A placeholder is an extra: its failure leaves it out, never the thumbnails.
        hashed, unhashed = _placeholder(shown) if outputs else (None, "")
    except PermanentFailure:
        raise
    except MemoryError:
        raise  # the isolation reports it against its memory budget
    except Image.DecompressionBombError as exc:
        raise PermanentFailure(f"the image is too large to decode safely ({exc})") from exc
    except Exception as exc:
        raise PermanentFailure(_decode_reason(exc)) from exc
    return Result(outputs, metadata, hashed, unhashed, point)


def _saliency(shown: Image.Image) -> focal.Point:
    """The centre of the densest salient area of `shown` (a thumbnail as displayed): smartcrop's interest map (edges,
    saturation, skin tones, weighted as smartcrop.js weighs them) of a small copy, averaged over GRID_CELLS cells and
    areas of DENSITY_CELLS a side, its peak grown to the connected cells within PEAK_SHARE of it, their weighted
    centre. smartcrop's own window search is not used: it scores a window down for cutting through interest at its
    edges, which a point has no reason to. An image with nothing standing out (the peak under SALIENT_MARGIN over the
    average), or that the analysis fails on, gets the centre: a point is an extra, never a reason to fail."""
    import numpy as np
    import smartcrop  # imported as the stage starts (prepare)

    try:
        small = shown.convert("RGB")
        small.thumbnail((ANALYSIS_SIDE, ANALYSIS_SIDE), Image.Resampling.BOX)
        cropper = smartcrop.SmartCrop()
        interest = cropper.precompute_features(cropper.prepare_features_image(small))
        width, height = small.size
        cells = (max(1, round(GRID_CELLS * width / max(small.size))), max(1, round(GRID_CELLS * height / max(small.size))))
        grid = np.asarray(Image.fromarray(interest.astype(np.float32), "F").resize(cells, Image.Resampling.BOX),
                          dtype=np.float64)
    except MemoryError:
        raise  # the isolation reports it against its memory budget
    except Exception:
        return focal.Point(0.5, 0.5, focal.CENTRE)
    reach = DENSITY_CELLS // 2
    # Each cell's area mean, over the cells inside the image (a summed-area table: the edges are not diluted by zeros).
    density = _box_sum(np.pad(grid, reach), DENSITY_CELLS) / _box_sum(np.pad(np.ones_like(grid), reach), DENSITY_CELLS)
    mean, peak = float(grid.mean()), float(density.max())
    if peak - mean <= SALIENT_MARGIN * mean:
        return focal.Point(0.5, 0.5, focal.CENTRE)
    start = np.unravel_index(int(density.argmax()), density.shape)
    region, todo = {start}, [start]
    while todo:
        row, col = todo.pop()
        for near in ((row - 1, col), (row + 1, col), (row, col - 1), (row, col + 1)):
            if (near not in region and 0 <= near[0] < density.shape[0] and 0 <= near[1] < density.shape[1]
                    and density[near] >= PEAK_SHARE * peak):
                region.add(near)
                todo.append(near)
    weight = sum(float(density[cell]) for cell in region)
    x = sum((cell[1] + 0.5) * float(density[cell]) for cell in region) / weight / cells[0]
    y = sum((cell[0] + 0.5) * float(density[cell]) for cell in region) / weight / cells[1]
    return focal.Point(x, y, focal.SALIENCY)


def _box_sum(values: Any, side: int) -> Any:
    """The sum of each side x side window of `values` (a numpy array padded by side // 2), by a summed-area table."""
    import numpy as np

    table = np.pad(values.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return table[side:, side:] - table[:-side, side:] - table[side:, :-side] + table[:-side, :-side]


def _crop_side(shown: tuple[int, int], crop: tuple[int, int]) -> int:
    """The long side, in pixels, the whole image needs for `crop` (the decode must keep at least that many)."""
    size, (left, _, right, _) = focal.crop_box(shown, crop, focal.Point(0.5, 0.5, focal.CENTRE))
    return math.ceil(max(shown) * size[0] / (right - left))


def _crop(levels: list[Image.Image], base: Image.Image, left: int, shown: tuple[int, int], crop: tuple[int, int],
          point: focal.Point, profile: bytes | None, encodings: tuple[tuple[str, int], ...]) -> list[Thumbnail]:
    """The crop `crop` (width, height) around `point` in each (format, quality) of `encodings` as smaller_first keeps
    them, resized from the smallest size's pixels that still have enough of them (the decoded image only when no
    thumbnail does: it is then converted to sRGB here)."""
    size, region = focal.crop_box(shown, crop, point)
    needed = size[0] / (region[2] - region[0])  # of the displayed image's scale
    source = next((level for level in reversed(levels)
                   if _turned_size(level.size, left)[0] >= needed * shown[0] - 0.5), base)
    width, height = _turned_size(source.size, left)
    # Each axis scaled on its own: a size's sides are rounded separately, so one factor could step past an edge.
    sx, sy = width / shown[0], height / shown[1]
    box = (region[0] * sx, region[1] * sy, min(width, region[2] * sx), min(height, region[3] * sy))
    # Cut from the pixels as stored, then turn the cut: turning the decoded image whole would hold it twice in memory.
    cut = source.resize(_turned_size(size, left), FIRST_FILTER if source is base else Image.Resampling.LANCZOS,
                        box=_stored_box(box, source.size, left), reducing_gap=RESAMPLE_HEADROOM if source is base else None)
    cut = _turned(cut, left)
    if source is base:
        cut, _ = _to_srgb(cut, profile)
    cut.info = {}
    name = f"{crop[0]}x{crop[1]}"
    made = smaller_first([_encode(_as_shown(cut, fmt), max(crop), fmt, q) for fmt, q in encodings])
    return [replace(thumbnail, crop=name) for thumbnail in made]


def _stored_box(box: tuple[float, float, float, float], size: tuple[int, int],
                orientation: int) -> tuple[float, float, float, float]:
    """`box` (left, top, right, bottom) of an image as EXIF `orientation` displays it, in the coordinates of the image
    as stored (`size`): where each displayed corner comes from under _ORIENT's transposes."""
    sw, sh = size
    stored = {2: lambda x, y: (sw - x, y), 3: lambda x, y: (sw - x, sh - y), 4: lambda x, y: (x, sh - y),
              5: lambda x, y: (y, x), 6: lambda x, y: (y, sh - x), 7: lambda x, y: (sw - y, sh - x),
              8: lambda x, y: (sw - y, x)}.get(orientation, lambda x, y: (x, y))
    corners = [stored(x, y) for x in (box[0], box[2]) for y in (box[1], box[3])]
    return (min(u for u, _ in corners), min(v for _, v in corners), max(u for u, _ in corners), max(v for _, v in corners))


def _turned(image: Image.Image, orientation: int) -> Image.Image:
    """`image` shown as EXIF `orientation` says."""
    for method in _ORIENT.get(orientation, ()):
        image = image.transpose(method)
    return image


def _turned_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def _pillow_tiff_orientation(image: Image.Image) -> int:
    """The orientation Pillow's TIFF reader will apply as it loads: ImageOps.exif_transpose's reading of the tag."""
    value = _safe(lambda: image.getexif().get(ExifTags.Base.Orientation))
    return value if value in _ORIENT else 1


def _decode_reason(exc: BaseException) -> str:
    text = str(exc)
    if "truncated" in text or isinstance(exc, (EOFError, IndexError)):
        return "the image data is truncated"
    if "cannot identify image file" in text:
        return "the image data cannot be decoded"
    return f"the image cannot be decoded: {type(exc).__name__}: {text[:200]}"


def _open(data: bytes, limits: Limits, store_gps: bool, sniffed: str | None) -> tuple[Image.Image, dict[str, Any]]:
    """Bound the file's structure, open it (header only) with its own decoder, and check the limits before any
    pixel is decoded."""
    formats: tuple[str, ...] | None = None
    if sniffed is not None:
        if sniffed not in DECODERS:
            raise PermanentFailure(f"the thumbnail stage does not decode {sniffed} images")
        module, formats = DECODERS[sniffed]
        _import_decoder(sniffed, module)
        if sniffed == "jpeg":
            preflight.jpeg(data, limits.max_jpeg_segments, limits.max_jpeg_scans)
        elif sniffed == "tiff":
            preflight.tiff_pages(data, limits.max_frames)
        # Some decoders allocate the whole canvas as they open (WebP): judge the size from the header first.
        header = sniff(data[:SNIFF_BYTES])
        if header.width and header.height:
            check_pixels(header.width, header.height, limits.max_pixels)
            _check_memory(sniffed, header.width, header.height, limits)
    # Pillow's own check only warns between the limit and twice the limit; the
    # limit here is strict and checked on the header, before any pixel is decoded.
    Image.MAX_IMAGE_PIXELS = None
    image = Image.open(io.BytesIO(data), formats=list(formats) if formats else None)
    check_pixels(*image.size, limits.max_pixels)
    _check_memory(FORMAT_NAMES.get(image.format or "", ""), *image.size, limits)
    Image.MAX_IMAGE_PIXELS = limits.max_pixels  # frames read later are checked by Pillow too
    frames = 1
    if image.format != "TIFF":  # a TIFF's pages were counted by the preflight, without Pillow's quadratic walk
        frames = getattr(image, "n_frames", 1)
        if frames > limits.max_frames:
            raise PermanentFailure(f"the image has {frames} frames, over the limit of {limits.max_frames}")
    # A TIFF's orientation is in its own first directory; every other format's, in its EXIF block.
    metadata = extract_metadata(image, store_gps, data if image.format == "TIFF" else None)
    if frames > 1 and image.format in ANIMATED:
        # Only the first frame is decoded and made into thumbnails (README, "Hostile images": animations).
        metadata.update(animated=True, frames=frames)
    return image, metadata


def _check_memory(fmt: str, width: int, height: int, limits: Limits) -> None:
    per_pixel = dict(limits.bytes_per_pixel).get(fmt)
    if limits.max_decode_mb is None or per_pixel is None:
        return
    needed = width * height * per_pixel / 2**20
    if needed > limits.max_decode_mb:
        raise PermanentFailure(f"decoding the image needs about {needed:,.0f} MB, more than the {limits.max_decode_mb:,} MB "
                               "an image may use")


def _import_decoder(sniffed: str, module: str) -> None:
    try:
        imported = importlib.import_module(module)
    except ImportError:  # pragma: no cover - depends on the layer (pillow-heif only when HEIC is allowed)
        raise PermanentFailure(f"{sniffed.upper()} images cannot be decoded here (their decoder is not installed)") from None
    if sniffed == "heic":
        imported.register_heif_opener()


def _decode(image: Image.Image, largest: int, keep_cmyk: bool = False) -> Image.Image:
    """Decode once, at the smallest draft scale that still covers `largest` RESAMPLE_HEADROOM times over.
    `keep_cmyk`: a CMYK image with a profile stays CMYK until its profile converts it (_to_srgb)."""
    if image.format in ("JPEG", "MPO"):
        scale = largest * RESAMPLE_HEADROOM / max(image.size)
        if scale < 1:
            target = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
            image.draft(None, target)
    image.load()
    if keep_cmyk and image.mode == "CMYK":
        return image
    return _normalize_mode(image)


_SRGB: Any = None
# The profile's colour space -> the image modes it can describe.
_PROFILE_MODES = {"RGB": ("RGB", "RGBA"), "CMYK": ("CMYK",)}


def _to_srgb(image: Image.Image, profile: bytes | None) -> tuple[Image.Image, str | None]:
    """The image in sRGB, and the embedded profile's description (None: no profile, or sRGB already)."""
    if profile is None:
        return image, None
    from PIL import ImageCms  # only images with a profile pay for littlecms

    global _SRGB
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        described = _text(source.profile.profile_description) or "unnamed"
        space = source.profile.xcolor_space.strip()
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError, AttributeError):
        return _normalize_mode(image), None  # unreadable: ignored, as browsers ignore it
    if "sRGB" in described or image.mode not in _PROFILE_MODES.get(space, ()):
        return _normalize_mode(image), None if "sRGB" in described else described
    if _SRGB is None:
        _SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    out_mode = "RGBA" if image.mode == "RGBA" else "RGB"
    try:
        transform = ImageCms.buildTransform(
            source, _SRGB, image.mode, out_mode, renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
            flags=ImageCms.Flags.COPY_ALPHA if out_mode == "RGBA" else ImageCms.Flags.NONE)
        converted = ImageCms.applyTransform(image, transform)
        assert converted is not None  # inPlace=False: a new image
        return converted, described
    except (ImageCms.PyCMSError, OSError, ValueError):
        return _normalize_mode(image), None


def _normalize_mode(image: Image.Image) -> Image.Image:
    """8-bit RGB, RGBA or L: what the encoders and resamplers take."""
    mode = image.mode
    if mode in ("RGB", "RGBA", "L"):
        return image
    if mode.startswith("I;16") or mode == "I":
        # Scale 16-bit samples down rather than clipping them to white.
        return image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if mode == "P" or mode == "PA":
        return image.convert("RGBA" if "transparency" in image.info or mode == "PA" else "RGB")
    if mode in ("LA", "La", "RGBa"):
        return image.convert("RGBA")
    if mode == "1":
        return image.convert("L")
    return image.convert("RGB")  # CMYK, YCbCr, LAB, F, ...


def _fit(size: tuple[int, int], box: int) -> tuple[int, int]:
    """The largest size with the same aspect that fits in box x box; never larger than the original."""
    width, height = size
    scale = min(box / width, box / height, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resize(image: Image.Image, target: tuple[int, int], first: bool) -> Image.Image:
    """The first step works on the most pixels: a box reduce by whole factors while RESAMPLE_HEADROOM times the
    target remains (none after a JPEG's draft, which leaves less than twice that), then bicubic; the cascade's smaller
    steps use Lanczos. Chosen by make bench on PSNR after encoding, against sharp at the same quality (README,
    Performance)."""
    if target == image.size:
        return image
    if first:
        return image.resize(target, FIRST_FILTER, reducing_gap=RESAMPLE_HEADROOM)
    return image.resize(target, Image.Resampling.LANCZOS)


def _as_shown(image: Image.Image, output_format: str) -> Image.Image:
    """`image` as a file of `output_format` shows it: JPEG has no alpha, so a transparent image is flattened onto white."""
    if output_format == "jpeg" and image.mode == "RGBA":
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        return flat
    return image


def _placeholder(shown: Image.Image) -> tuple[str | None, str]:
    """(the placeholder of `shown`, "") or (None, why not)."""
    try:
        return placeholder.of_image(shown), ""
    except MemoryError:
        raise  # the isolation reports it against its memory budget
    except Exception as exc:
        return None, f"no placeholder: {type(exc).__name__}: {exc}"


def _encode(image: Image.Image, size: int, output_format: str, quality: int) -> Thumbnail:
    """`image` (already as shown: _as_shown) as a thumbnail file of `output_format`."""
    if image.info:
        image = image.copy()  # its own `info`, so clearing it below leaves the cascade's images alone
    # Pillow's writers fall back to the image's own `info` (comment, ICC profile, EXIF, XMP, DPI): none of the
    # source's metadata goes into a thumbnail, so there is none to fall back to.
    image.info = {}
    importlib.import_module(ENCODERS[output_format])
    buffer = io.BytesIO()
    options: dict[str, Any] = {"quality": quality}
    if output_format == "jpeg":
        # Huffman tables made for the image (libjpeg's optimize_coding, sharp's default): the same pixels in fewer
        # bytes. Progressive only from PROGRESSIVE_MIN_PIXELS up: smaller there on ten photos measured, up to 17%
        # larger below (README, Performance).
        options.update(optimize=True, progressive=image.width * image.height >= PROGRESSIVE_MIN_PIXELS)
    elif output_format == "png":
        options = {"optimize": False, "compress_level": 6}
    elif output_format == "avif":
        options.update(speed=AVIF_SPEED, max_threads=AVIF_THREADS)
    image.save(buffer, format=output_format.upper(), **options)
    data = _without_jfif(buffer.getvalue()) if output_format == "jpeg" else buffer.getvalue()
    return Thumbnail(box=size, width=image.width, height=image.height, data=data, format=output_format)


def smaller_first(made: list[Thumbnail]) -> list[Thumbnail]:
    """One size's renditions, most preferred first, the last (the most compatible) always kept: each other one only
    when it is smaller than the next one kept, since a browser that takes it would otherwise load more bytes for the
    same pixels."""
    kept = [made[-1]]
    for rendition in reversed(made[:-1]):
        if len(rendition.data) < len(kept[0].data):
            kept.insert(0, rendition)
    return kept


def _without_jfif(data: bytes) -> bytes:
    """A JPEG without its JFIF APP0 segment, which Pillow always writes and which says here only "JFIF 1.01, no
    density": 18 bytes, 1% of a 128 px thumbnail. libvips (sharp) writes none, nor do cameras (EXIF instead). The
    rule decoders follow without it (libjpeg's jdapimin.c, default_decompress_parms): three components with the ids
    1, 2, 3, as libjpeg writes them, are YCbCr ("assume JFIF w/out marker"); one component is grayscale."""
    if data[2:4] == b"\xff\xe0" and data[6:11] == b"JFIF\x00":
        return data[:2] + data[4 + int.from_bytes(data[4:6], "big"):]
    return data


def extract_metadata(image: Image.Image, store_gps: bool, tiff: bytes | None = None) -> dict[str, Any]:
    """Format, size, mode, orientation, camera and time taken; GPS only when asked. Bad tags are skipped. `tiff`:
    the bytes that hold the orientation, when they are not the image's EXIF block (a TIFF file's)."""
    metadata: dict[str, Any] = {"format": FORMAT_NAMES.get(image.format or "", (image.format or "").lower()),
                                "mode": image.mode}
    width, height = image.size
    try:
        exif = image.getexif()
    except Exception:
        exif = Image.Exif()
    # A WebP's EXIF chunk is not read by the browsers' WebP decoders (Chromium: WEBPImageDecoder reads only the ICCP
    # chunk; Firefox: nsWebPDecoder::ReadHeader posts its size without an orientation): shown as stored there, so here.
    orientation = 1 if image.format == "WEBP" else exif_orientation(tiff or getattr(image, "info", {}).get("exif"))
    metadata["orientation"] = orientation
    # Width and height as displayed, after orientation (a TIFF's are set once it is decoded: make_thumbnails).
    metadata["width"], metadata["height"] = _turned_size((width, height), orientation)
    make = _safe(lambda: _text(exif.get(ExifTags.Base.Make)))
    model = _safe(lambda: _text(exif.get(ExifTags.Base.Model)))
    if make:
        metadata["camera_make"] = make
    if model:
        metadata["camera_model"] = model
    taken = _safe(lambda: _taken_at(exif))
    if taken:
        metadata["taken_at"] = taken
    if store_gps:
        gps = _safe(lambda: _gps(exif))
        if gps:
            metadata["gps"] = gps
    return metadata


def exif_orientation(exif: bytes | None) -> int:
    """The EXIF Orientation as browsers read it: the first Orientation entry of the first directory, taken only as
    a SHORT of count 1 with a value 1-8; any other type, count or value, a broken structure, or an orientation
    found elsewhere (XMP, a PNG text chunk, which Pillow's getexif also reads) shows the image as stored (1).
    Rule: Firefox's image/decoders/EXIF.cpp, EXIFParser::ParseOrientation; Exif 2.3 (CIPA DC-008) 4.6.4, Table 4.
    `exif`: the EXIF block (JPEG APP1, PNG eXIf, with or without its "Exif" header) or a whole TIFF. (A WebP's is
    never applied: extract_metadata.)"""
    tiff = (exif or b"").removeprefix(b"Exif\x00\x00")
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(tiff[:4])
    if order is None:
        return 1
    try:
        (directory,) = struct.unpack_from(order + "I", tiff, 4)
        (entries,) = struct.unpack_from(order + "H", tiff, directory)
        for index in range(entries):
            tag, kind, count, value = struct.unpack_from(order + "HHIH", tiff, directory + 2 + 12 * index)
            if tag == ExifTags.Base.Orientation:
                return value if kind == _SHORT and count == 1 and 1 <= value <= 8 else 1
    except struct.error:  # an offset past the end
        return 1
    return 1


_SHORT = 3  # the TIFF field type of a 16-bit unsigned integer


def _safe(read):
    try:
        return read()
    except Exception:
        return None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    cleaned = "".join(ch for ch in value if ch.isprintable()).strip()
    return cleaned[:_MAX_TEXT] or None


def _taken_at(exif: Image.Exif) -> str | None:
    ifd = exif.get_ifd(ExifTags.IFD.Exif)
    raw = _text(ifd.get(ExifTags.Base.DateTimeOriginal) or exif.get(ExifTags.Base.DateTime))
    if not raw:
        return None
    return datetime.strptime(raw[:19], "%Y:%m:%d %H:%M:%S").isoformat()


def _gps(exif: Image.Exif) -> dict[str, str] | None:
    ifd = exif.get_ifd(ExifTags.IFD.GPSInfo)
    if not ifd:
        return None

    def degrees(values: Any, ref: Any) -> float:
        d, m, s = (float(v) for v in values)
        value = d + m / 60 + s / 3600
        if not (0 <= value <= 180):
            raise ValueError("out of range")
        return -value if _text(ref) in ("S", "W") else value

    lat = degrees(ifd[ExifTags.GPS.GPSLatitude], ifd.get(ExifTags.GPS.GPSLatitudeRef))
    lon = degrees(ifd[ExifTags.GPS.GPSLongitude], ifd.get(ExifTags.GPS.GPSLongitudeRef))
    return {"latitude": f"{lat:.6f}", "longitude": f"{lon:.6f}"}
