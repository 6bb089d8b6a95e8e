"""Through the local cloud with the edges on: the upload API's presigned POST, an iPhone photo, CDN URLs."""
from __future__ import annotations

import pytest

from localcloud import samples
from localcloud.__main__ import UPLOAD_CONFIG, wait_until_settled
from localcloud.cloud import LocalCloud

LIMIT = 300_000


@pytest.fixture(scope="module")
def uploaded(tmp_path_factory):
    config = {**UPLOAD_CONFIG, "maxUploadBytes": LIMIT, "intake": {"timeout": 2}, "thumbnails": {"timeout": 2}}
    with LocalCloud(config=config, workdir=tmp_path_factory.mktemp("upload")) as cloud:
        results = {
            "iphone": cloud.upload_through_api("IMG_4021.HEIC", samples.heic(1200, 900, orientation=6)),
            "jpeg": cloud.upload_through_api("holiday.jpg", samples.jpeg(800, 600)),
            "path": cloud.upload_through_api("../../etc/passwd.jpg", samples.jpeg()),
            "svg": cloud.upload_through_api("logo.svg", b"<svg/>", "image/svg+xml"),
            "too-big": cloud.upload_through_api("big.jpg", b"\xff" * (LIMIT + 1)),
            # A client that lies about the size: real S3 refuses the POST (content-length-range), the emulator does not.
            "liar": cloud.upload_through_api("liar.png", samples.png(200, 200) + b"\0" * LIMIT, declared_size=1000),
        }
        keys = [r.key for r in results.values() if r.key]
        summary = wait_until_settled(cloud, keys, timeout=90)
        return {"results": results, "summary": summary, "cdn": cloud.outputs["thumbnailsUrl"]}


def test_the_api_chooses_unique_keys_under_uploads(uploaded):
    results = uploaded["results"]
    assert results["iphone"].api_status == 201 and results["iphone"].s3_status == 204
    assert results["iphone"].key.startswith("uploads/") and results["iphone"].key.endswith("-IMG_4021.HEIC")


def test_bad_requests_are_refused_with_4xx_and_a_message(uploaded):
    results = uploaded["results"]
    assert (results["path"].api_status, results["path"].key) == (400, None)
    assert "plain file name" in results["path"].message
    assert results["svg"].api_status == 415 and "not accepted" in results["svg"].message
    assert results["too-big"].api_status == 413 and "over the upload limit" in results["too-big"].message


def test_an_iphone_photo_gets_upright_thumbnails_served_through_the_distribution(uploaded):
    record = uploaded["summary"].records[uploaded["results"]["iphone"].key]
    assert (record["status"], record["format"]) == ("done", "heic")
    assert (record["metadata"]["width"], record["metadata"]["height"]) == (900, 1200)
    outputs = record["thumbnails"]["outputs"]
    assert [(int(o["width"]), int(o["height"])) for o in outputs] == [(768, 1024), (384, 512), (96, 128)]
    assert all(o["url"] == f"{uploaded['cdn']}/{o['key']}" for o in outputs)
    assert "labels" not in record  # HEIC never goes to Rekognition


def test_the_intake_size_gate_catches_what_the_emulator_let_through(uploaded):
    record = uploaded["summary"].records[uploaded["results"]["liar"].key]
    assert record["status"] == "rejected"
    assert f"over the upload limit of {LIMIT:,} bytes" in record["reason"]


def test_everything_uploaded_is_accounted_for(uploaded):
    assert uploaded["summary"].unaccounted() == []
    assert uploaded["summary"].records[uploaded["results"]["jpeg"].key]["status"] == "done"
