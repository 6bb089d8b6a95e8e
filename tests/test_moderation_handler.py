"""The moderation gate's handler on moto, in this process: what a delivery cut short leaves behind is finished by
the next delivery of the same message (SQS redelivers what the handler did not acknowledge)."""
from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import ClientError

from handlers import environment, intake, moderation, thumbnails
from localcloud import samples
from tests.conftest import handler_environment, invoke, s3_message

VIOLENCE = {"ModerationLabels": [{"Name": "Violence", "ParentName": "", "Confidence": 98.6, "TaxonomyLevel": 1}],
            "ModerationModelVersion": "7.0"}


@pytest.fixture
def gated(cloud, monkeypatch):
    """The stores with the gate deployed: the functions' environments of a stack with `moderation` on, and
    Rekognition's answer set by the test (flagged or clean)."""
    for name, value in handler_environment(moderation="true").items():
        monkeypatch.setenv(name, value)
    environment.load.cache_clear()
    answer: dict[str, Any] = {"ModerationLabels": [], "ModerationModelVersion": "7.0"}
    monkeypatch.setattr(moderation, "_detect", lambda image, settings: answer)
    return cloud, answer


def through_the_gate(cloud, event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """S3 event -> intake -> the claim check it published (the gate's); returns it and the gate's batch response."""
    assert invoke(intake, [s3_message(event)])["batchItemFailures"] == []
    [published] = cloud.published()
    return published["claim"], invoke(moderation, [json.dumps(published["claim"])])


def test_a_hold_whose_removal_was_never_published_publishes_it_when_the_message_comes_back(gated, monkeypatch):
    cloud, answer = gated
    key = "uploads/overwritten.jpg"
    claim, response = through_the_gate(cloud, cloud.put(key, samples.jpeg(640, 480)))
    assert response["batchItemFailures"] == []
    [passed] = cloud.published()
    assert invoke(thumbnails, [json.dumps(passed["claim"])])["batchItemFailures"] == []
    first = cloud.thumbnail_keys()
    assert first and cloud.record(key)["thumbnails"]["status"] == "done"
    # The key is overwritten with an image the model flags; the removal of the old version's thumbnails fails once.
    answer.update(VIOLENCE)
    real, failures = moderation._publish, []

    def publish_failing_once(claim, passed):
        if claim.event == "removed" and not failures:
            failures.append(claim)
            raise ClientError({"Error": {"Code": "InternalError", "Message": "SNS failed"},
                               "ResponseMetadata": {"HTTPStatusCode": 500}}, "Publish")
        real(claim, passed)

    monkeypatch.setattr(moderation, "_publish", publish_failing_once)
    assert invoke(intake, [s3_message(cloud.put(key, samples.jpeg(800, 600)))])["batchItemFailures"] == []
    [published] = cloud.published()
    claim = published["claim"]
    with pytest.raises(BatchProcessingError):  # the whole batch failed: Lambda reports an error, SQS delivers it again
        invoke(moderation, [json.dumps(claim)])
    assert failures
    assert cloud.record(key)["status"] == "quarantined" and cloud.published() == []
    assert invoke(moderation, [json.dumps(claim)])["batchItemFailures"] == []  # the redelivery
    [removal] = cloud.published()
    assert removal["claim"]["event"] == "removed" and removal["claim"]["sequencer"] == claim["sequencer"]
    assert invoke(thumbnails, [json.dumps(removal["claim"])])["batchItemFailures"] == []
    assert cloud.thumbnail_keys() == []  # nothing of the key is published while a person has not decided
    assert cloud.record(key)["status"] == "quarantined"
