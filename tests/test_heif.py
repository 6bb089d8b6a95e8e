"""iPhone photos (HEIC) and AVIF: sniffed by content, thumbnailed like any format, never sent to Rekognition."""
from __future__ import annotations

import io
import json
import zipfile

import pytest
from PIL import Image

from handlers import intake, labels, thumbnails
from infra import packaging
from localcloud import program
from localcloud import samples as images
from tests.conftest import invoke, s3_message

ALLOWED = "jpeg,png,webp,heic,avif"


@pytest.fixture
def heif_allowed(monkeypatch):
    monkeypatch.setenv("ALLOWED_FORMATS", ALLOWED)


@pytest.mark.parametrize("name, data, fmt", [
    ("uploads/IMG_0001.HEIC", images.heic(640, 480), "heic"),
    ("uploads/photo.avif", images.avif(640, 480), "avif"),
    ("uploads/misnamed.jpg", images.heic(320, 240), "heic"),  # the name does not decide
])
def test_heic_and_avif_get_thumbnails_and_no_labels(cloud, heif_allowed, name, data, fmt):
    invoke(intake, [s3_message(cloud.put(name, data))])
    record = cloud.record(name)
    assert (record["status"], record["format"], record["expected_stages"]) == ("accepted", fmt, ["thumbnails"])
    [published] = cloud.published()
    assert published["attributes"]["format"] == fmt  # the label subscription's filter leaves it out
    invoke(thumbnails, [json.dumps(published["claim"])])
    record = cloud.record(name)
    assert record["status"] == "done"
    largest = record["thumbnails"]["outputs"][0]
    out = Image.open(io.BytesIO(cloud.s3.get_object(Bucket=cloud.thumbnails, Key=largest["key"])["Body"].read()))
    assert out.format == "JPEG" and out.size == (int(largest["width"]), int(largest["height"]))


def test_an_upright_iphone_photo_stays_upright(cloud, heif_allowed):
    # The camera stored it sideways: a 400x300 sensor image with orientation 6 shows as 300x400.
    invoke(intake, [s3_message(cloud.put("uploads/portrait.heic", images.heic(400, 300, orientation=6)))])
    invoke(thumbnails, [json.dumps(cloud.published()[0]["claim"])])
    record = cloud.record("uploads/portrait.heic")
    assert (record["metadata"]["width"], record["metadata"]["height"]) == (300, 400)
    assert record["metadata"]["camera_make"] == "Apple"
    assert [(int(o["width"]), int(o["height"])) for o in record["thumbnails"]["outputs"]] == [(192, 256), (96, 128), (48, 64)]


def test_heic_is_rejected_when_not_allowed(cloud):
    invoke(intake, [s3_message(cloud.put("uploads/IMG_0002.HEIC", images.heic()))])
    record = cloud.record("uploads/IMG_0002.HEIC")
    assert record["status"] == "rejected"
    assert record["reason"] == "HEIC images are not accepted (allowed: jpeg, png, webp, gif)"


def test_the_label_stage_says_why_heic_has_no_labels(cloud, heif_allowed):
    invoke(intake, [s3_message(cloud.put("uploads/x.heic", images.heic()))])
    claim = cloud.published()[0]["claim"]
    from botocore.stub import Stubber

    from handlers import aws

    cloud.table.update_item(Key={"image_id": labels.contracts.image_id(cloud.uploads, "uploads/x.heic")},
                            UpdateExpression="SET expected_stages = :s", ExpressionAttributeValues={":s": ["thumbnails", "labels"]})
    with Stubber(aws.client("rekognition")):  # any call would fail: none is made
        invoke(labels, [json.dumps(claim)])
    assert cloud.record("uploads/x.heic")["labels"]["reason"] == "Rekognition reads only JPEG, PNG; this image is heic"


def test_allowing_heic_puts_pillow_heif_in_the_layer_and_keeps_labels_to_jpeg_and_png():
    stack = program.run(program.RecordingMocks(), {"allowedFormats": ["jpeg", "png", "heic", "avif"]})
    [layer] = stack.of_type("aws:lambda/layerVersion:LayerVersion")
    assert packaging.HEIF_REQUIREMENT in layer.inputs["description"]
    assert "pillow-heif" in layer.inputs["code"].path
    [label] = [s for s in stack.of_type("aws:sns/topicSubscription:TopicSubscription") if "filterPolicy" in s.inputs]
    assert json.loads(label.inputs["filterPolicy"])["format"] == ["jpeg", "png"]
    intake_env = stack.named("claimcheck-intake-function").inputs["environment"]["variables"]
    assert intake_env["ALLOWED_FORMATS"] == "jpeg,png,heic,avif"


@pytest.mark.network
def test_heif_layer_for_arm64_holds_pillow_heif_for_aarch64():
    layer = packaging.pillow_layer("arm64", "python3.13", (2, 34), heif=True)
    names = zipfile.ZipFile(layer).namelist()
    assert "python/pillow_heif/__init__.py" in names
    assert any(n.startswith("python/_pillow_heif.cpython-313-aarch64") and n.endswith(".so") for n in names)
    assert any(n.startswith("python/PIL/_imaging.cpython-313-aarch64") for n in names)
