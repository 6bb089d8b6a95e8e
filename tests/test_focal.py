"""The focal point and the crops cut around it: the saliency point finds an off-centre subject, a crop holds it, a
label box gives the record's point, an EXIF-turned photo's point is where it is displayed, a photo smaller than the
crop is never upscaled, and cropSizes refuses what is not WIDTHxHEIGHT within the thumbnails' bounds."""
from __future__ import annotations

import io
import json
import random
from decimal import Decimal

import pytest
from botocore.stub import Stubber
from PIL import Image, ImageDraw

from handlers import aws, focal, imaging, intake, labels, records, thumbnails
from handlers.names import FOCAL_POINT
from infra.settings import SettingsError, load
from tests.conftest import invoke, s3_message
from tests.test_upload_api import api  # noqa: F401 - api is a fixture
from tests.test_upload_status import ask, granted, uploaded

RED = (220, 30, 30)


def photo(width: int, height: int, x: float, y: float, seed: int = 7) -> Image.Image:
    """A textured red subject centred at (x, y) (fractions) on a noisy grey-green background."""
    rng = random.Random(seed)
    image = Image.blend(Image.effect_noise((width, height), 30).convert("RGB"),
                        Image.new("RGB", (width, height), (90, 110, 100)), 0.6)
    draw = ImageDraw.Draw(image)
    cx, cy, r = x * width, y * height, 0.06 * width
    for _ in range(300):
        px, py = cx + rng.uniform(-r, r), cy + rng.uniform(-r, r)
        draw.ellipse((px - 4, py - 4, px + 4, py + 4), fill=(rng.randint(180, 255), rng.randint(0, 60), rng.randint(0, 60)))
    return image


def jpeg(image: Image.Image, orientation: int | None = None) -> bytes:
    out = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation  # Pillow writes it as a SHORT of count 1, the form browsers apply
    image.save(out, "JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


def engine(data: bytes, crops=(), point=None, sizes=(512, 128)) -> imaging.Result:
    return imaging.make_thumbnails(data, sizes, "jpeg", 85, imaging.Limits(10**8, 10), sniffed="jpeg", crops=crops,
                                   point=point)


def red_centre(image: Image.Image) -> tuple[float, float, int]:
    """The red subject's centre in `image` (fractions) and how many of its pixels are red."""
    rgb = image.convert("RGB")
    found = [(i % rgb.width, i // rgb.width) for i, (r, g, b) in enumerate(rgb.get_flattened_data()) if r > 150 and g < 90 and b < 90]
    if not found:
        return -1.0, -1.0, 0
    return (sum(p[0] for p in found) / len(found) / rgb.width, sum(p[1] for p in found) / len(found) / rgb.height,
            len(found))


def opened(thumbnail: imaging.Thumbnail) -> Image.Image:
    return Image.open(io.BytesIO(thumbnail.data))


@pytest.mark.parametrize("x, y", [(0.8, 0.25), (0.15, 0.75)])
def test_the_saliency_point_lands_on_an_off_centre_subject(x, y):
    result = engine(jpeg(photo(600, 400, x, y)))
    point = result.focal_point
    assert point is not None and point.source == "saliency"
    assert abs(point.x - x) <= 0.06 and abs(point.y - y) <= 0.06, point


def test_a_crop_is_exactly_its_size_and_holds_the_subject_a_centre_crop_would_cut_off():
    # GIVEN a subject near the right edge (x = 0.88): a 128x128 crop from the centre would show x 0.17-0.83 only
    result = engine(jpeg(photo(600, 400, 0.88, 0.25)), crops=((128, 128), (200, 50)))
    square, strip = [t for t in result.thumbnails if t.crop]
    assert (square.crop, square.width, square.height, square.box) == ("128x128", 128, 128, 128)
    assert (strip.crop, strip.width, strip.height) == ("200x50", 200, 50)
    # THEN the square crop holds the subject, pushed against the image's right edge (the point as central as it allows)
    x, y, red = red_centre(opened(square))
    whole = red_centre(opened(result.thumbnails[0]))[2] * (128 / 400) ** 2 / (512 / 600) ** 2
    assert red >= 0.8 * whole and 0.6 < x < 0.95 and 0.1 < y < 0.4, (x, y, red, whole)
    # and the wide strip (the image's full width, a quarter of its height) is cut at the subject's height
    assert red_centre(opened(strip))[2] > 0 and 0.2 < red_centre(opened(strip))[1] < 0.8


def test_a_given_point_cuts_the_crop_and_is_the_results():
    given = focal.Point(0.1, 0.9, "labels")
    result = engine(jpeg(photo(600, 400, 0.8, 0.25)), crops=((100, 100),), point=given)
    assert result.focal_point == given  # no saliency run: the label stage's point stands
    crop = opened(result.thumbnails[-1])
    assert red_centre(crop)[2] == 0  # cut at the bottom left, far from the red subject


def test_an_exif_6_photos_point_is_where_it_is_displayed():
    # GIVEN a photo displayed 400 x 600 with its subject at (0.8, 0.25), stored turned (EXIF orientation 6)
    shown = photo(400, 600, 0.8, 0.25)
    stored = shown.transpose(Image.Transpose.ROTATE_90)  # orientation 6 turns it back clockwise
    result = engine(jpeg(stored, orientation=6), crops=((64, 64),))
    # THEN the point is in display coordinates, as are the record's size and the crop
    assert (result.metadata["orientation"], result.metadata["width"], result.metadata["height"]) == (6, 400, 600)
    point = result.focal_point
    assert point is not None and abs(point.x - 0.8) <= 0.06 and abs(point.y - 0.25) <= 0.06, point
    x, y, red = red_centre(opened(result.thumbnails[-1]))
    assert red > 0 and x > 0.5 and y < 0.6
    # and a crop larger than every thumbnail, cut from the decoded image as stored, then turned, lands there too
    [large] = [t for t in engine(jpeg(stored, orientation=6), crops=((380, 380),), sizes=(128,)).thumbnails if t.crop]
    x, y, red = red_centre(opened(large))
    assert (large.width, large.height) == (380, 380) and red > 0 and abs(x - 0.8) < 0.05 and abs(y - 0.375) < 0.05


def test_a_photo_smaller_than_the_crop_is_cut_to_its_shape_never_upscaled():
    # GIVEN a 100 x 68 photo and crops larger than it
    result = engine(jpeg(photo(100, 68, 0.8, 0.3)), crops=((256, 256), (300, 40)))
    cut = {t.crop: (t.width, t.height) for t in result.thumbnails if t.crop}
    # THEN each crop keeps its shape at the photo's own scale: 68 x 68, and the full width at 300:40
    assert cut == {"256x256": (68, 68), "300x40": (100, 13)}
    # and the boxes still share one rendition of the photo's size
    assert [(t.width, t.height, t.boxes) for t in result.thumbnails if not t.crop] == [(100, 68, (512, 128))]


def test_a_plain_image_has_nothing_salient_and_gets_the_centre():
    result = engine(jpeg(Image.new("RGB", (300, 200), (40, 80, 160))), crops=((50, 50),))
    assert result.focal_point == focal.Point(0.5, 0.5, "centre")


def test_the_largest_box_rekognition_found_gives_the_point():
    found = [{"Name": "Dog", "Instances": [{"Confidence": 95.0, "BoundingBox": {"Left": 0.7, "Top": 0.15, "Width": 0.2, "Height": 0.2}}]},
             {"Name": "Ball", "Instances": [{"Confidence": 99.0, "BoundingBox": {"Left": 0.1, "Top": 0.1, "Width": 0.05, "Height": 0.05}},
                                           {"Confidence": 40.0, "BoundingBox": {"Left": 0.0, "Top": 0.5, "Width": 0.9, "Height": 0.5}}]},
             {"Name": "Outdoors", "Instances": []}]
    point = focal.from_labels(found, min_confidence=70)
    assert point is not None and (round(point.x, 3), round(point.y, 3), point.source) == (0.8, 0.25, "labels")
    assert focal.from_labels([{"Name": "Outdoors", "Instances": []}], 70) is None  # no box: saliency's turn


# --- through the stages, on the emulated AWS ---------------------------------------------------------------------

def accept(cloud, key: str, data: bytes) -> dict:
    invoke(intake, [s3_message(cloud.put(key, data))])
    return cloud.published()[-1]["claim"]


DOG = {"Labels": [{"Name": "Dog", "Confidence": 97.0,
                   "Instances": [{"Confidence": 96.0, "BoundingBox": {"Left": 0.05, "Top": 0.6, "Width": 0.2, "Height": 0.3}}]}]}


def labelled(claim: dict, answer: dict) -> None:
    with Stubber(aws.client("rekognition")) as stub:
        stub.add_response("detect_labels", answer)
        assert invoke(labels, [json.dumps(claim)])["batchItemFailures"] == []


def test_labels_first_the_crops_are_cut_around_the_label_box(cloud, monkeypatch):
    monkeypatch.setenv("CROP_SIZES", "64x64")
    claim = accept(cloud, "uploads/dog.jpg", jpeg(photo(300, 200, 0.8, 0.25)))
    # GIVEN the label stage first: its box (centre 0.15, 0.75) is the record's point
    labelled(claim, DOG)
    record = cloud.record("uploads/dog.jpg")
    assert record["focal_point"] == {"x": Decimal("0.15"), "y": Decimal("0.75"), "source": "labels"}
    # WHEN the thumbnail stage runs: it cuts its crop around that point, not its own saliency point
    assert invoke(thumbnails, [json.dumps(claim)])["batchItemFailures"] == []
    record = cloud.record("uploads/dog.jpg")
    [crop] = [o for o in record["thumbnails"]["outputs"] if o.get("crop")]
    assert (crop["crop"], int(crop["width"]), int(crop["height"])) == ("64x64", 64, 64) and "box" not in crop
    assert crop["focal_point"] == record["focal_point"] == record["thumbnails"]["focal_point"]
    assert crop["key"].endswith("/64x64.jpg") and record["status"] == "done"


def test_thumbnails_first_the_label_point_becomes_the_records_and_the_crop_says_its_own(cloud, monkeypatch):
    monkeypatch.setenv("CROP_SIZES", "64x64")
    claim = accept(cloud, "uploads/race.jpg", jpeg(photo(300, 200, 0.8, 0.25)))
    # GIVEN the thumbnail stage first: the saliency point is the record's and the crop's
    assert invoke(thumbnails, [json.dumps(claim)])["batchItemFailures"] == []
    saliency = cloud.record("uploads/race.jpg")["focal_point"]
    assert saliency["source"] == "saliency" and abs(float(saliency["x"]) - 0.8) <= 0.08
    # WHEN the label stage finds a box elsewhere
    labelled(claim, DOG)
    record = cloud.record("uploads/race.jpg")
    # THEN the record's point is the label box's, and the crop still says which point it was cut around
    assert record["focal_point"]["source"] == "labels" and record["status"] == "done"
    [crop] = [o for o in record["thumbnails"]["outputs"] if o.get("crop")]
    assert crop["focal_point"] == saliency != record["focal_point"]


def test_emulated_label_boxes_give_no_point(cloud, monkeypatch):
    monkeypatch.setenv("CLAIMCHECK_EMULATED", "rekognition")  # moto's canned boxes are not this image's
    claim = accept(cloud, "uploads/e.jpg", jpeg(photo(300, 200, 0.8, 0.25)))
    assert invoke(labels, [json.dumps(claim)])["batchItemFailures"] == []
    record = cloud.record("uploads/e.jpg")
    assert record["labels"]["status"] == "done" and "focal_point" not in record and "focal_point" not in record["labels"]
    invoke(thumbnails, [json.dumps(claim)])
    assert cloud.record("uploads/e.jpg")["focal_point"]["source"] == "saliency"


def test_the_status_route_names_a_crop_its_size_and_point(api, cloud, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CROP_SIZES", "96x96")
    grant = granted(api)
    uploaded(cloud, grant["key"], webp(photo(400, 200, 0.8, 0.25)))
    invoke(thumbnails, [json.dumps(claim["claim"]) for claim in cloud.published()])
    status, answer = ask(grant["id"])
    assert status == 200 and answer["focal_point"]["source"] == "saliency"
    crops = [r for r in answer["renditions"] if r.get("crop")]
    assert [(r["crop"], r["width"], r["height"], r["boxes"]) for r in crops] == [("96x96", 96, 96, [])]
    assert crops[0]["focal_point"] == answer["focal_point"] and crops[0]["url"]
    assert all("crop" not in r for r in answer["renditions"] if r["boxes"])  # a size for a srcset is no crop
    assert len(records.renditions(cloud.record(grant["key"])["thumbnails"]["outputs"])) == 4


@pytest.mark.parametrize("value", ['["256x"]', '["0x5"]', '["5000x10"]', '["256x256", "256x256"]', "[256]", '["256 x 256"]'])
def test_crop_sizes_refuse_what_is_not_width_x_height_within_bounds(value):
    with pytest.raises(SettingsError) as refused:
        load({"cropSizes": value})
    assert (f"claimcheck:cropSizes = {json.loads(value)!r} is out of range (accepted: up to 10 different WIDTHxHEIGHT "
            'texts such as "256x256", each side 16 to 4,096 pixels)') in str(refused.value)


def test_crop_sizes_reach_the_function_and_rename_its_keys_only_when_set():
    from handlers.settings import from_environment, to_environment

    plain = thumbnails.ThumbnailSettings()
    cropped = thumbnails.ThumbnailSettings(crop_sizes=("256x256", "1200x630"))
    carried = from_environment(thumbnails.ThumbnailSettings, to_environment(cropped))
    assert carried.crops == ((256, 256), (1200, 630)) and thumbnails.renditions_at_most(carried) == 5
    # Without crops the settings keep the name they had before crops existed: no thumbnail is made again for them
    from handlers.names import thumbnail_settings

    assert plain.name == thumbnail_settings((1024, 512, 128), "jpeg", 82) != cropped.name


def test_the_gallery_shows_a_crop_as_its_own_tile_never_in_the_srcset():
    from ops import gallery

    point = {"x": Decimal("0.8"), "y": Decimal("0.25"), "source": "saliency"}
    image = gallery.view("uploads/c.jpg", "done", {
        "status": "done", "format": "jpeg", "metadata": {"width": 600, "height": 400}, "focal_point": point,
        "thumbnails": {"outputs": [{"key": "thumbnails/c/512.jpg", "box": 512, "width": 512, "height": 341, "bytes": 9000},
                                   {"key": "thumbnails/c/64x64.jpg", "crop": "64x64", "width": 64, "height": 64,
                                    "bytes": 900, "focal_point": point}]}})
    # The JSON summary's entry names the point and the crop
    assert image["focal_point"] == {"x": 0.8, "y": 0.25, "source": "saliency"}
    assert [(t["key"], t.get("crop")) for t in image["thumbnails"]] == [("thumbnails/c/512.jpg", None),
                                                                         ("thumbnails/c/64x64.jpg", "64x64")]
    page = gallery.page([image], lambda key, output: output["key"], "t", emulated=False)
    # The picture's srcset has the sizes only (a square crop would be a wrong candidate); the crop has its own figure
    assert 'srcset="thumbnails/c/512.jpg 512w"' in page and "64x64.jpg 64w" not in page
    assert "<figcaption>crop 64x64: 64 × 64" in page and page.count("<figure>") == 2


def test_a_reprocess_for_crops_cuts_them_and_gives_an_image_done_before_points_its_point(cloud, monkeypatch):
    from tests.test_thumbnails import reprocess_request

    claim = accept(cloud, "uploads/old.webp", webp(photo(400, 200, 0.8, 0.25)))
    assert invoke(thumbnails, [json.dumps(claim)])["batchItemFailures"] == []
    # GIVEN an image done before there were points or crops (its record has none)
    cloud.table.update_item(Key={"image_id": cloud.record("uploads/old.webp")["image_id"]},
                            UpdateExpression="REMOVE focal_point")
    # WHEN the stack gets a crop size and the image is reprocessed
    monkeypatch.setenv("CROP_SIZES", "80x80")
    thumbnails.environment.load.cache_clear()
    assert invoke(thumbnails, [json.dumps(reprocess_request(cloud.record("uploads/old.webp")))])["batchItemFailures"] == []
    # THEN it has its crop, and the point the crop was cut around is the record's
    record = cloud.record("uploads/old.webp")
    [crop] = [o for o in record["thumbnails"]["outputs"] if o.get("crop")]
    assert (crop["crop"], int(crop["width"]), int(crop["height"])) == ("80x80", 80, 80)
    assert record["focal_point"] == crop["focal_point"] and record["focal_point"]["source"] == "saliency"


def webp(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "WEBP")
    return out.getvalue()


def test_ops_show_names_a_crop_and_the_point_it_was_cut_around():
    point = {"x": Decimal("0.8"), "y": Decimal("0.25"), "source": "saliency"}
    result = {"status": "done", "settings": "abc", FOCAL_POINT: point, "outputs": [
        {"key": "t/abc/512.jpg", "box": 512, "width": 512, "height": 341},
        {"key": "t/abc/64x64.jpg", "crop": "64x64", "width": 64, "height": 64, FOCAL_POINT: point}]}
    assert thumbnails.STAGE.shown(result, False)[1:] == [
        "    512x341  t/abc/512.jpg", "    64x64  t/abc/64x64.jpg  (crop 64x64)",
        "    crops cut around (0.800, 0.250), from saliency"]
    # Without crops, no line about a point nothing was cut around
    result["outputs"] = result["outputs"][:1]
    assert thumbnails.STAGE.shown(result, False)[1:] == ["    512x341  t/abc/512.jpg"]
