"""Image events: each settle of an image record publishes exactly one EventBridge event of the schema's shape, read
from the table's stream as Lambda's mapping would deliver it (through the mapping's filter), and received by a
consumer's rule; a retried settle publishes nothing more, and a redelivered one the same id."""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import jsonschema
import pytest
from botocore.config import Config
from moto import mock_aws

from handlers import aws, environment, image_events, records
from infra.image_events import STREAM_FILTER
from localcloud.lambda_events import LambdaContext, stream_record
from localcloud.seams.moto_server import pattern_matches

REGION = "us-east-1"
SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "schemas" / "events" / "image.v1.json").read_text())
TABLE, BUS = "images", "image-events"
IMAGE = "a" * 32
RESULTS = ("moderation", "thumbnails", "labels")


def seq(n: int) -> str:
    return str(n).rjust(32, "0")


class Stream:
    """The table's stream, read from where the last read stopped, and the consumer queue a rule on image.* feeds."""

    def __init__(self) -> None:
        # botocore addresses a stream by its account's endpoint, which moto does not know: the regional one.
        self.streams = boto3.client("dynamodbstreams", region_name=REGION,
                                    config=Config(account_id_endpoint_mode="disabled"))
        self.sqs = boto3.client("sqs", region_name=REGION)
        arn = boto3.client("dynamodb", region_name=REGION).describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
        self.arn = arn
        shard = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        self.iterator = self.streams.get_shard_iterator(StreamArn=arn, ShardId=shard,
                                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        self.queue = self.sqs.create_queue(QueueName="consumer")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = boto3.client("events", region_name=REGION)
        events.put_rule(Name="every-image-event", EventBusName=BUS,
                        EventPattern=json.dumps({"source": ["claimcheck"], "detail-type": [{"prefix": "image."}]}))
        events.put_targets(Rule="every-image-event", EventBusName=BUS, Targets=[{"Id": "consumer", "Arn": queue_arn}])

    def new_records(self) -> list[dict[str, Any]]:
        """What the mapping hands the function since the last call: the stream's new records that pass its filter."""
        answer = self.streams.get_records(ShardIterator=self.iterator)
        self.iterator = answer["NextShardIterator"]
        delivered = [stream_record(r, self.arn) for r in answer["Records"]]
        return [r for r in delivered if pattern_matches(STREAM_FILTER, json.loads(json.dumps(r, default=str)))]

    def publish(self) -> dict[str, Any]:
        return image_events.handler({"Records": self.new_records()}, LambdaContext(function_name="image-events"))

    def received(self) -> list[dict[str, Any]]:
        """Every event the consumer queue received since the last call."""
        found = []
        while batch := self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", []):
            for message in batch:
                found.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        return found


@pytest.fixture
def stream(monkeypatch):
    with mock_aws():
        aws.reset()
        environment.load.cache_clear()
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "image_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "image_id", "AttributeType": "S"}],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
        boto3.client("events", region_name=REGION).create_event_bus(Name=BUS)
        monkeypatch.setenv("TABLE_NAME", TABLE)
        monkeypatch.setenv("EVENT_BUS_NAME", BUS)
        monkeypatch.setattr(image_events, "BACKOFF_S", 0.0)
        yield Stream()
        aws.reset()
        environment.load.cache_clear()


def accepted(sequencer: str, expected: tuple[str, ...] = ("thumbnails", "labels"), gate: str | None = None) -> None:
    records.record_event(TABLE, IMAGE, sequencer, {
        "status": "accepted", "reason": "", "bucket": "uploads", "key": "uploads/api/ana/beach.jpg", "owner": "ana",
        "version_id": f"v{sequencer[-2:]}", "expected_stages": list(expected), **({records.GATE: gate} if gate else {})},
        stages=RESULTS)


def done(sequencer: str) -> None:
    accepted(sequencer)
    records.record_stage(TABLE, IMAGE, sequencer, "labels", {"status": "done", "labels": [{"name": "Beach", "confidence": Decimal("97.5")}]})
    records.record_stage(TABLE, IMAGE, sequencer, "thumbnails", {"status": "done", "outputs": [
        {"key": f"thumbnails/{IMAGE}/v/s/256.jpg", "width": 256, "height": 171}]}, metadata={"format": "jpeg", "width": 1200})


def rejected(sequencer: str) -> None:
    records.record_event(TABLE, IMAGE, sequencer, {"status": "rejected", "reason": "not an image: a text file",
                                                   "bucket": "uploads", "key": "uploads/notes.jpg"}, stages=RESULTS)


def failed(sequencer: str) -> None:
    accepted(sequencer, expected=("thumbnails",))
    records.record_stage(TABLE, IMAGE, sequencer, "thumbnails", {"status": "failed", "reason": "the image data is truncated"})


def quarantined(sequencer: str) -> None:
    accepted(sequencer, expected=("moderation", "thumbnails"), gate="moderation")
    records.record_stage(TABLE, IMAGE, sequencer, "moderation", {"status": "held", "reason": "held for review: Violence 98.6%"})


def deleted(sequencer: str) -> None:
    done(sequencer)
    records.record_event(TABLE, IMAGE, seq(int(sequencer) + 1), {
        "status": "deleted", "reason": "the upload was deleted", "bucket": "uploads", "key": "uploads/api/ana/beach.jpg"},
        stages=RESULTS)


SETTLES = {"image.ready": (done, "done", ""), "image.rejected": (rejected, "rejected", "not an image: a text file"),
           "image.failed": (failed, "failed", "thumbnails: the image data is truncated"),
           "image.quarantined": (quarantined, "quarantined", "held for review: Violence 98.6%"),
           "image.deleted": (deleted, "deleted", "the upload was deleted")}


@pytest.mark.parametrize("detail_type", sorted(SETTLES))
def test_each_settle_publishes_exactly_one_event_of_the_schemas_shape(stream, detail_type):
    settle, status, reason = SETTLES[detail_type]
    settle(seq(10))
    assert stream.publish() == {"batchItemFailures": []}
    received = stream.received()
    # A deletion of a done image: the image was ready first, then deleted; each is one settle.
    expected = ["image.ready", "image.deleted"] if detail_type == "image.deleted" else [detail_type]
    assert [e["detail-type"] for e in received] == expected
    event = received[-1]
    jsonschema.validate(event, SCHEMA, format_checker=jsonschema.FormatChecker())
    detail = event["detail"]
    assert (event["source"], detail["status"], detail["reason"], detail["image_id"]) == ("claimcheck", status, reason, IMAGE)


def test_a_ready_event_carries_the_records_outputs_owner_and_version(stream):
    done(seq(10))
    stream.publish()
    [event] = stream.received()
    detail = event["detail"]
    assert (detail["key"], detail["owner"], detail["version_id"]) == ("uploads/api/ana/beach.jpg", "ana", "v10")
    assert detail["outputs"]["thumbnails"]["outputs"][0]["key"] == f"thumbnails/{IMAGE}/v/s/256.jpg"
    assert detail["outputs"]["labels"]["labels"] == [{"name": "Beach", "confidence": 97.5}]
    assert detail["outputs"]["metadata"] == {"format": "jpeg", "width": 1200}


def test_a_retried_settle_publishes_nothing_more(stream):
    done(seq(10))
    # The thumbnail stage's message delivered again: its conditional write finds the record settled and writes
    # nothing, so the stream has no record of it.
    again = records.record_stage(TABLE, IMAGE, seq(10), "thumbnails", {"status": "done", "outputs": []})
    assert again.outcome == records.Outcome.DUPLICATE
    stream.publish()
    assert [e["detail-type"] for e in stream.received()] == ["image.ready"]


def test_a_redelivered_stream_batch_publishes_the_same_id_again(stream):
    done(seq(10))
    batch = stream.new_records()
    image_events.handler({"Records": batch}, LambdaContext(function_name="image-events"))
    image_events.handler({"Records": batch}, LambdaContext(function_name="image-events"))  # Lambda retried it
    first, second = stream.received()
    assert first["detail"]["id"] == second["detail"]["id"]  # consumers deduplicate on it


def test_writes_that_do_not_settle_publish_nothing(stream):
    accepted(seq(10))
    records.record_stage(TABLE, IMAGE, seq(10), "labels", {"status": "done", "labels": []})  # still accepted
    assert stream.new_records() == []  # the mapping's filter keeps them from the function
    records.record_stage(TABLE, IMAGE, seq(10), "thumbnails", {"status": "done", "outputs": []})
    stream.publish()
    assert len(stream.received()) == 1
    # A write that keeps the status, the version and every stage's outputs (here a reprocess that made none again).
    assert records.record_reprocessed(TABLE, IMAGE, seq(10), "thumbnails", {"status": "done", "outputs": [],
                                                                           "settings": "new"}, None).outcome == records.Outcome.WRITTEN
    assert stream.publish() == {"batchItemFailures": []}
    assert stream.received() == []


def test_a_reprocess_that_replaces_a_ready_image_s_thumbnails_publishes_one_image_updated(stream):
    done(seq(10))
    stream.publish()
    [ready] = stream.received()
    new = [{"key": f"thumbnails/{IMAGE}/v/wide/640.webp", "width": 640, "height": 427}]
    assert records.record_reprocessed(TABLE, IMAGE, seq(10), "thumbnails", {"status": "done", "outputs": new,
                                                                           "settings": "wide"}, None).outcome == records.Outcome.WRITTEN
    batch = stream.new_records()
    image_events.handler({"Records": batch}, LambdaContext(function_name="image-events"))
    image_events.handler({"Records": batch}, LambdaContext(function_name="image-events"))  # Lambda retried it
    updated, again = stream.received()
    jsonschema.validate(updated, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert (updated["detail-type"], updated["detail"]["status"]) == ("image.updated", "done")
    assert updated["detail"]["outputs"]["thumbnails"]["outputs"] == new  # the keys the ready event named are gone
    assert updated["detail"]["id"] == again["detail"]["id"] != ready["detail"]["id"]


def test_a_newer_version_that_settles_alike_is_a_new_event_and_a_second_deletion_is_not(stream):
    rejected(seq(10))
    rejected(seq(11))  # overwritten by another file that is no image
    records.record_event(TABLE, IMAGE, seq(12), {"status": "deleted", "reason": "deleted", "key": "uploads/notes.jpg"},
                         stages=RESULTS)
    records.record_event(TABLE, IMAGE, seq(13), {"status": "deleted", "reason": "deleted", "key": "uploads/notes.jpg"},
                         stages=RESULTS)  # a later S3 event of the same deletion (a version removed for good)
    stream.publish()
    received = stream.received()
    assert [e["detail-type"] for e in received] == ["image.rejected", "image.rejected", "image.deleted"]
    assert len({e["detail"]["id"] for e in received}) == 3


def test_a_quarantined_image_a_person_approves_is_announced_ready_after_it(stream):
    quarantined(seq(10))
    held = records.get(TABLE, IMAGE)
    assert held is not None
    assert records.record_decision(TABLE, held, "moderation", {"decision": "approved", "by": "ops"}, approved=True)
    records.record_stage(TABLE, IMAGE, seq(10), "thumbnails", {"status": "done", "outputs": []})
    stream.publish()
    received = stream.received()
    assert [e["detail-type"] for e in received] == ["image.quarantined", "image.ready"]
    assert received[0]["detail"]["id"] != received[1]["detail"]["id"]


class Refusing:
    """EventBridge refusing the entries of the images in `refuse` (by detail.image_id) in its first `times` calls; the
    rest go through to the emulator."""

    def __init__(self, real: Any, refuse: set[str], times: int) -> None:
        self.real, self.refuse, self.times, self.calls = real, refuse, times, []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's parameter name
        images = [json.loads(e["Detail"])["image_id"] for e in Entries]
        self.calls.append(images)
        refused = [image in self.refuse and len(self.calls) <= self.times for image in images]
        accepted = [e for e, no in zip(Entries, refused, strict=True) if not no]
        passed = iter(self.real.put_events(Entries=accepted)["Entries"] if accepted else [])
        answers = [{"ErrorCode": "InternalException", "ErrorMessage": "try again"} if no else next(passed) for no in refused]
        return {"FailedEntryCount": sum(refused), "Entries": answers}


def settle_three() -> None:
    for n, image in enumerate(("b" * 32, "c" * 32, "d" * 32)):
        records.record_event(TABLE, image, seq(n + 1), {"status": "rejected", "reason": "no", "key": f"uploads/{n}.txt"},
                             stages=RESULTS)


def test_refused_entries_are_sent_again_and_only_they(stream, monkeypatch, emitted):
    settle_three()
    refusing = Refusing(aws.client("events"), {"c" * 32, "d" * 32}, times=1)
    monkeypatch.setattr(image_events, "aws", SimpleNamespace(client=lambda service: refusing))
    assert stream.publish() == {"batchItemFailures": []}
    assert refusing.calls == [["b" * 32, "c" * 32, "d" * 32], ["c" * 32, "d" * 32]]
    assert sorted(e["detail"]["image_id"] for e in stream.received()) == ["b" * 32, "c" * 32, "d" * 32]
    assert emitted["EventsPublished"] == 3


def test_an_event_eventbridge_keeps_refusing_fails_its_stream_record(stream, monkeypatch, emitted):
    settle_three()
    batch = stream.new_records()
    refusing = Refusing(aws.client("events"), {"c" * 32, "d" * 32}, times=100)
    monkeypatch.setattr(image_events, "aws", SimpleNamespace(client=lambda service: refusing))
    answer = image_events.handler({"Records": batch}, LambdaContext(function_name="image-events"))
    # Lambda retries the batch from the first of these (and, after its retries, sends it to the on-failure queue).
    assert answer == {"batchItemFailures": [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]} for r in batch[1:]]}
    assert len(refusing.calls) == image_events.SENDS
    assert (emitted["EventsPublished"], emitted["EventsRefused"]) == (1, 2)


def test_after_a_request_whose_entries_keep_being_refused_no_later_request_is_sent(stream, monkeypatch, emitted):
    images = [f"{n:032x}" for n in range(1, 13)]  # twelve settles: two requests
    for n, image in enumerate(images):
        records.record_event(TABLE, image, seq(n + 1), {"status": "rejected", "reason": "no", "key": f"uploads/{n}.txt"},
                             stages=RESULTS)
    batch = stream.new_records()
    refusing = Refusing(aws.client("events"), {images[3]}, times=100)
    monkeypatch.setattr(image_events, "aws", SimpleNamespace(client=lambda service: refusing))
    answer = image_events.handler({"Records": batch}, LambdaContext(function_name="image-events"))
    # The refused record and every later one: Lambda's retry sends the second request's settles once, in order.
    assert answer == {"batchItemFailures": [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]} for r in batch[3:]]}
    assert refusing.calls == [images[:10]] + [[images[3]]] * (image_events.SENDS - 1)
    assert sorted(e["detail"]["image_id"] for e in stream.received()) == images[:3] + images[4:10]
    assert (emitted["EventsPublished"], emitted["EventsRefused"]) == (9, 1)


def _sized(image: str, detail_bytes: int) -> dict[str, Any]:
    detail = {"v": 1, "id": image, "image_id": image, "bucket": "uploads", "key": f"uploads/{image}.jpg",
              "version_id": None, "owner": None, "status": "done", "reason": "", "settled_at": "2026-12-07T10:00:00.000Z",
              "outputs": {"labels": {"status": "done", "labels": [{"name": "x" * detail_bytes}]}}}
    return image_events.entry(BUS, detail)


def test_requests_are_cut_under_putevents_256_kb_as_well_as_at_ten_entries():
    entries = [_sized(f"{n:032x}", 60_000) for n in range(10)]  # about 60 KB each: four a request
    chunks = image_events._chunks(entries)
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert all(sum(image_events.entry_size(entries[i]) for i in c) < 256 * 1024 for c in chunks)
    small = [_sized(f"{n:032x}", 10) for n in range(23)]
    assert [len(c) for c in image_events._chunks(small)] == [10, 10, 3]


def test_an_event_too_large_for_putevents_alone_is_sent_without_its_outputs_and_says_so():
    made = _sized(IMAGE, 300_000)
    detail = json.loads(made["Detail"])
    assert image_events.entry_size(made) < 256 * 1024
    assert (detail["outputs"], detail["outputs_trimmed"], detail["status"]) == ({}, True, "done")
    jsonschema.validate({"source": made["Source"], "detail-type": made["DetailType"], "detail": detail}, SCHEMA)
    assert "outputs_trimmed" not in json.loads(_sized(IMAGE, 1000)["Detail"])


def test_a_settled_record_without_a_key_is_skipped_in_words(stream, emitted):
    records.record_event(TABLE, IMAGE, seq(1), {"status": "rejected", "reason": "no"}, stages=RESULTS)
    assert stream.publish() == {"batchItemFailures": []}
    assert stream.received() == []
    assert emitted["InvalidStreamRecords"] == 1


def test_the_schema_refuses_an_event_whose_detail_type_and_status_disagree():
    event = {"source": "claimcheck", "detail-type": "image.ready", "detail": {
        "v": 1, "id": "0" * 32, "image_id": IMAGE, "bucket": None, "key": "uploads/x.jpg", "version_id": None,
        "owner": None, "status": "failed", "reason": "x", "settled_at": "2026-12-07T10:00:00.000Z", "outputs": {}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(event, SCHEMA)
    jsonschema.validate({**event, "detail-type": "image.failed"}, SCHEMA)
