"""Label stage: Rekognition reads the object from S3; permanent refusals are recorded, throttling is retried."""
from __future__ import annotations

import json

import pytest
from botocore.stub import Stubber

from handlers import aws, intake, labels, thumbnails
from localcloud import samples as images
from tests.conftest import failed_ids, invoke, s3_message


def accept(cloud, key, data):
    invoke(intake, [s3_message(cloud.put(key, data))])
    return cloud.published()[-1]["claim"]


def run(claims):
    return invoke(labels, [json.dumps(c) for c in claims])


def test_labels_come_from_the_s3_object_and_settle_the_record(cloud):
    claim = accept(cloud, "uploads/l.jpg", images.jpeg(200, 150))
    with Stubber(aws.client("rekognition")) as stub:
        stub.add_response("detect_labels", {"Labels": [{"Name": "Cat", "Confidence": 98.123}, {"Name": "Pet", "Confidence": 91.0}]},
                          expected_params={"Image": {"S3Object": {"Bucket": cloud.uploads, "Name": "uploads/l.jpg",
                                                                  "Version": claim["version_id"]}},
                                           "MaxLabels": 10, "MinConfidence": 50.0})
        assert run([claim])["batchItemFailures"] == []
        stub.assert_no_pending_responses()
    record = cloud.record("uploads/l.jpg")
    assert record["labels"]["status"] == "done" and record["labels"]["source"] == "rekognition"
    assert [(label["name"], float(label["confidence"])) for label in record["labels"]["labels"]] == [("Cat", 98.12), ("Pet", 91.0)]
    assert record["status"] == "accepted"  # thumbnails still to come
    invoke(thumbnails, [json.dumps(claim)])
    assert cloud.record("uploads/l.jpg")["status"] == "done"


def test_emulated_labels_are_marked_as_emulated(cloud, monkeypatch):
    monkeypatch.setenv("CLAIMCHECK_EMULATED", "rekognition")  # what the local cloud tells every function
    claim = accept(cloud, "uploads/e.png", images.png())
    run([claim])  # moto's Rekognition answers its canned labels
    record = cloud.record("uploads/e.png")
    assert record["labels"]["status"] == "done"
    assert record["labels"]["source"] == "emulated"
    assert record["labels"]["labels"]


@pytest.mark.parametrize("code, reason", [
    ("InvalidImageFormatException", "Rekognition cannot read this image format"),
    ("ImageTooLargeException", "the image is larger than Rekognition accepts"),
    ("InvalidS3ObjectException", "Rekognition could not read the object from S3"),
    ("InvalidParameterException", "Rekognition refused the image (too small or invalid dimensions)"),
])
def test_permanent_rekognition_errors_are_recorded_and_not_retried(cloud, code, reason):
    claim = accept(cloud, "uploads/p.jpg", images.jpeg(60, 40))
    with Stubber(aws.client("rekognition")) as stub:
        stub.add_client_error("detect_labels", service_error_code=code, http_status_code=400)
        response = run([claim])
    assert response["batchItemFailures"] == []
    record = cloud.record("uploads/p.jpg")
    assert record["labels"] == {**record["labels"], "status": "unavailable", "reason": reason}
    invoke(thumbnails, [json.dumps(claim)])
    assert cloud.record("uploads/p.jpg")["status"] == "done"  # no labels is not a failed image


@pytest.mark.parametrize("code, status", [
    ("ThrottlingException", 400), ("ProvisionedThroughputExceededException", 400),
    ("InternalServerError", 500), ("ServiceUnavailableException", 503),
])
def test_transient_rekognition_errors_fail_only_that_record(cloud, code, status):
    stuck = accept(cloud, "uploads/t.jpg", images.jpeg(60, 40))
    fine = accept(cloud, "uploads/f.jpg", images.jpeg(80, 40))
    with Stubber(aws.client("rekognition")) as stub:
        stub.add_client_error("detect_labels", service_error_code=code, http_status_code=status)
        stub.add_response("detect_labels", {"Labels": []})
        response = run([stuck, fine])
    assert failed_ids(response) == ["m0"]
    assert "labels" not in cloud.record("uploads/t.jpg")
    assert cloud.record("uploads/f.jpg")["labels"]["status"] == "done"


def test_formats_rekognition_cannot_read_are_never_sent(cloud):
    claim = accept(cloud, "uploads/w.webp", images.webp())
    # Intake does not expect labels for WebP and the subscription filters it out; if one arrives anyway:
    cloud.table.update_item(Key={"image_id": labels.contracts.image_id(cloud.uploads, "uploads/w.webp")},
                            UpdateExpression="SET expected_stages = :s", ExpressionAttributeValues={":s": ["thumbnails", "labels"]})
    with Stubber(aws.client("rekognition")):  # no responses queued: any call would fail the test
        assert run([claim])["batchItemFailures"] == []
    record = cloud.record("uploads/w.webp")
    assert record["labels"]["status"] == "unavailable"
    assert record["labels"]["reason"] == "Rekognition reads only JPEG, PNG; this image is webp"


def test_stale_claim_is_ignored(cloud):
    old = accept(cloud, "uploads/s.jpg", images.jpeg(60, 40))
    accept(cloud, "uploads/s.jpg", images.jpeg(90, 40))
    with Stubber(aws.client("rekognition")):
        assert run([old])["batchItemFailures"] == []
    assert "labels" not in cloud.record("uploads/s.jpg")


def test_an_image_over_detect_labels_s3_limit_is_recorded_without_a_call(cloud, monkeypatch):
    monkeypatch.setenv("MAX_UPLOAD_BYTES", str(20 * 2**20))
    # A JPEG padded past 15 MB (bytes after its end marker, as some cameras append), as S3 holds it.
    data = images.jpeg(320, 240) + bytes(16 * 2**20)
    claim = accept(cloud, "uploads/huge.jpg", data)
    with Stubber(aws.client("rekognition")) as stub:  # no response queued: any call would fail the test
        assert run([claim])["batchItemFailures"] == []
    record = cloud.record("uploads/huge.jpg")
    assert record["labels"] == {**record["labels"], "status": "unavailable",
                                "reason": "Rekognition reads images of at most 15 MB from S3; this one is 16.0 MB"}
    stub.assert_no_pending_responses()
