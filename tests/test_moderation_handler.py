"""The moderation gate's handler on moto, in this process: what a delivery cut short leaves behind is finished by
the next delivery of the same message (SQS redelivers what the handler did not acknowledge)."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import ClientError

from handlers import environment, intake, labels, moderation, thumbnails
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


def passed_and_done(cloud, key: str) -> dict[str, Any]:
    """A clean JPEG through the intake, the gate (which passes it), the thumbnail and the label stages: its record."""
    _, response = through_the_gate(cloud, cloud.put(key, samples.jpeg(640, 480)))
    assert response["batchItemFailures"] == []
    [passed] = cloud.published()
    for stage in (thumbnails, labels):
        assert invoke(stage, [json.dumps(passed["claim"])])["batchItemFailures"] == []
    return cloud.record(key)


def publish_failing_once(monkeypatch, which: Callable[[Any], bool]) -> list[Any]:
    """SNS answers the gate's first publish of a claim check `which` picks with a 500 (the environment dies there
    as far as the message is concerned); the claim checks it refused are listed in what this returns."""
    real, failures = moderation._publish, []

    def publish(claim, passed):
        if which(claim) and not failures:
            failures.append(claim)
            raise ClientError({"Error": {"Code": "InternalError", "Message": "SNS failed"},
                               "ResponseMetadata": {"HTTPStatusCode": 500}}, "Publish")
        real(claim, passed)

    monkeypatch.setattr(moderation, "_publish", publish)
    return failures


def test_a_hold_whose_removal_was_never_published_publishes_it_when_the_message_comes_back(gated, monkeypatch):
    cloud, answer = gated
    key = "uploads/overwritten.jpg"
    assert passed_and_done(cloud, key)["thumbnails"]["status"] == "done" and cloud.thumbnail_keys()
    # The key is overwritten with an image the model flags; the removal of the old version's thumbnails fails once.
    answer.update(VIOLENCE)
    failures = publish_failing_once(monkeypatch, lambda claim: claim.event == "removed")
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


def test_an_approve_clears_what_an_earlier_pass_left_and_is_finished_by_the_redelivery(gated, monkeypatch):
    """A done image held back when a reprocess had the gate screen it (done before the gate), then approved: the
    gate records the decision, the record is accepted with none of the earlier pass's results (a stage finishing
    first would settle it with the other's stale one), and when the publish fails the redelivered decision takes
    the tag off and publishes."""
    from handlers import contracts
    from handlers.names import STATUS_TAG

    cloud, answer = gated
    key = "uploads/before.jpg"
    record = passed_and_done(cloud, key)
    assert record["status"] == "done"
    cloud.table.update_item(Key={"image_id": record["image_id"]}, UpdateExpression="REMOVE #g, #m",
                            ExpressionAttributeNames={"#g": "gate", "#m": "moderation"})  # done before the gate
    answer.update(VIOLENCE)
    reprocess = contracts.ClaimCheck.of_record(cloud.record(key), "reprocess")
    assert invoke(moderation, [reprocess.to_json()])["batchItemFailures"] == []
    held = cloud.record(key)
    assert held["status"] == "quarantined" and "thumbnails" in held  # its removal is on its way
    [removal] = cloud.published()
    assert invoke(thumbnails, [json.dumps(removal["claim"])])["batchItemFailures"] == []
    assert cloud.thumbnail_keys() == []
    tagging = {"Bucket": cloud.uploads, "Key": key, "VersionId": held["version_id"]}
    assert cloud.s3.get_object_tagging(**tagging)["TagSet"] == [{"Key": STATUS_TAG, "Value": "quarantined"}]

    publish_failing_once(monkeypatch, lambda claim: True)
    decision = contracts.DecisionRequest(bucket=cloud.uploads, key=key, version_id=held["version_id"],
                                         sequencer=held["sequencer"], decision="approved", by="arn:aws:iam::1:user/ana",
                                         at="2026-12-07T10:00:00Z")
    with pytest.raises(BatchProcessingError):
        invoke(moderation, [decision.to_json()])
    approved = cloud.record(key)
    assert approved["status"] == "accepted" and approved["moderation"]["status"] == "done"
    assert "thumbnails" not in approved and "labels" not in approved
    assert approved["decision"]["by"] == "arn:aws:iam::1:user/ana" and cloud.published() == []
    assert invoke(moderation, [decision.to_json()])["batchItemFailures"] == []  # the redelivery finishes it
    [released] = cloud.published()
    assert released["claim"]["event"] == "created" and released["attributes"]["gate"] == "clear"
    assert cloud.s3.get_object_tagging(**tagging)["TagSet"] == []
    assert invoke(moderation, [decision.to_json()])["batchItemFailures"] == []  # a third delivery: nothing new
    assert cloud.record(key)["decision"] == approved["decision"]
