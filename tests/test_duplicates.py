"""The duplicates gate on moto, in this process: copies of an owner's done image are found (re-encoded, resized,
renamed), different photos and other owners' photos are not, `duplicates: reject` ends a copy rejected before any
Rekognition call, the index answers in one BatchGetItem at any size, and the stack gives the gate exactly its index."""
from __future__ import annotations

import io
import json
import random
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import ClientError
from PIL import Image

from handlers import aws, duplicates, environment, intake, labels, moderation, phash, thumbnails
from infra import settings
from localcloud import program, samples
from tests.conftest import REGION, handler_environment, invoke, s3_message

INDEX = "duplicates-index"


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


PHOTO = samples.photo_like(640, 480, seed=3)
OTHER = samples.photo_like(640, 480, seed=5)  # a different photo of the same style: same sky, ground and buildings


@pytest.fixture
def gate(cloud, monkeypatch, request):
    """The stores with the duplicates gate (and the moderation gate after it) deployed; each Rekognition call the
    stages make is counted."""
    mode = getattr(request, "param", "record")
    for name, value in handler_environment(duplicates=mode, moderation="true").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DUPLICATES_TABLE_NAME", INDEX)
    environment.load.cache_clear()
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName=INDEX, BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "band", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "band", "AttributeType": "S"}])
    calls: list[str] = []

    def screen(image: dict[str, Any], s: Any) -> dict[str, Any]:
        calls.append("DetectModerationLabels")
        return {"ModerationLabels": [], "ModerationModelVersion": "7.0"}

    monkeypatch.setattr(moderation, "_detect", screen)
    aws.client("rekognition").meta.events.register("before-call.rekognition.DetectLabels",
                                                   lambda **kwargs: calls.append("DetectLabels"))
    return cloud, calls


def upload(cloud, key: str, data: bytes) -> dict[str, Any]:
    """S3 event -> intake -> the duplicates gate -> (when it passes) the moderation gate -> the thumbnail and label
    stages: the record it ends with."""
    assert invoke(intake, [s3_message(cloud.put(key, data))])["batchItemFailures"] == []
    for stage in (duplicates, moderation):
        published = cloud.published()
        if not published:
            return cloud.record(key)
        [one] = published
        assert invoke(stage, [json.dumps(one["claim"])])["batchItemFailures"] == []
    [passed] = cloud.published()
    assert passed["attributes"]["gate"] == "clear"
    for stage in (thumbnails, labels):
        assert invoke(stage, [json.dumps(passed["claim"])])["batchItemFailures"] == []
    return cloud.record(key)


def test_copies_are_found_and_different_photos_are_not(gate):
    cloud, _ = gate
    first = upload(cloud, "uploads/team/IMG_1.jpg", _jpeg(PHOTO))
    assert first["status"] == "done" and len(first["phash"]) == 16 and "duplicate_of" not in first
    resized = PHOTO.resize((320, 240), Image.Resampling.LANCZOS)
    for key, data in (("uploads/team/copy of IMG_1.jpg", _jpeg(PHOTO)),  # renamed, the same bytes
                      ("uploads/team/small.jpg", _jpeg(resized, quality=60)),  # resized and re-encoded
                      ("uploads/team/IMG_1.webp", samples.encode(PHOTO, "WEBP", quality=80))):
        copy = upload(cloud, key, data)
        assert copy["status"] == "done", key  # recorded, not rejected: `duplicates: record`
        assert copy["duplicate_of"] == first["image_id"] and 0 <= copy["duplicate_distance"] <= 5, key
        assert copy["duplicates"]["reason"].startswith(f"a duplicate of {first['image_id']} (distance ")
    different = upload(cloud, "uploads/team/IMG_2.jpg", _jpeg(OTHER))
    assert different["status"] == "done" and "duplicate_of" not in different


def test_another_owners_identical_photo_and_the_same_key_again_are_not_duplicates(gate):
    cloud, _ = gate
    alices = upload(cloud, "uploads/api/alice/IMG_1.jpg", _jpeg(PHOTO))
    bobs = upload(cloud, "uploads/api/bob/IMG_1.jpg", _jpeg(PHOTO))
    assert (alices["owner"], bobs["owner"]) == ("alice", "bob")
    assert bobs["status"] == "done" and bobs["phash"] == alices["phash"] and "duplicate_of" not in bobs
    again = upload(cloud, "uploads/api/alice/IMG_1.jpg", _jpeg(PHOTO, quality=70))  # a new version of the same key
    assert again["status"] == "done" and again["version_id"] != alices["version_id"] and "duplicate_of" not in again


def test_a_deleted_image_is_no_longer_matched(gate):
    cloud, _ = gate
    upload(cloud, "uploads/team/gone.jpg", _jpeg(PHOTO))
    assert invoke(intake, [s3_message(cloud.delete("uploads/team/gone.jpg"))])["batchItemFailures"] == []
    cloud.published()  # the removal
    assert cloud.record("uploads/team/gone.jpg")["status"] == "deleted"
    copy = upload(cloud, "uploads/team/copy.jpg", _jpeg(PHOTO))
    assert copy["status"] == "done" and "duplicate_of" not in copy


def test_every_hash_the_index_holds_for_an_image_is_a_candidate(gate, monkeypatch):
    # An image's earlier version leaves its entries in band items its new one does not share: the lookup may read
    # both, in any order, and the record decides which is current; keeping only the last read could drop it.
    current, stale = phash.phash(PHOTO), phash.phash(PHOTO) ^ 0b111
    items = [{"band": {"S": "x"}, "iK": {"S": phash.hex_of(current)}}, {"band": {"S": "y"}, "iK": {"S": phash.hex_of(stale)}}]
    client = aws.client("dynamodb")
    monkeypatch.setattr(client, "batch_get_item", lambda **kwargs: {"Responses": {INDEX: items}, "UnprocessedKeys": {}})
    assert duplicates.candidates(INDEX, "alice", [current], 5) == {"K": {current, stale}}


def test_unprocessed_keys_are_asked_for_again_and_at_last_fail_the_message(gate, monkeypatch):
    client = aws.client("dynamodb")
    answers: list[dict[str, Any]] = []

    def batch_get_item(**kwargs: Any) -> dict[str, Any]:
        answers.append(kwargs)
        return {"Responses": {INDEX: []}, "UnprocessedKeys": {INDEX: kwargs["RequestItems"][INDEX]}}

    monkeypatch.setattr(client, "batch_get_item", batch_get_item)
    monkeypatch.setattr(duplicates.time, "sleep", lambda seconds: None)
    with pytest.raises(RuntimeError, match="unprocessed after 8 tries"):
        duplicates.candidates(INDEX, "alice", [phash.phash(PHOTO)], 5)
    assert len(answers) == duplicates.UNPROCESSED_TRIES


@pytest.mark.parametrize("gate", ["reject"], indirect=True)
def test_reject_ends_a_copy_rejected_before_any_rekognition_call(gate):
    cloud, calls = gate
    first = upload(cloud, "uploads/team/IMG_1.jpg", _jpeg(PHOTO))
    paid = len(calls)
    assert first["status"] == "done" and paid >= 1  # the first was screened (and labelled)
    copy = upload(cloud, "uploads/team/IMG_1 (1).jpg", _jpeg(PHOTO, quality=75))
    assert copy["status"] == "rejected"
    assert copy["reason"] == f"a duplicate of {first['image_id']} (distance {copy['duplicate_distance']} of 64 bits)"
    assert len(calls) == paid  # no moderation or label call for it
    assert "moderation" not in copy and "thumbnails" not in copy and cloud.published() == []
    tags = cloud.s3.get_object_tagging(Bucket=cloud.uploads, Key="uploads/team/IMG_1 (1).jpg", VersionId=copy["version_id"])
    assert tags["TagSet"] == [{"Key": "claimcheck-status", "Value": "rejected"}]  # the lifecycle rule expires it


def test_a_forged_claim_check_is_refused_and_nothing_is_published(gate, emitted):
    cloud, _ = gate
    assert invoke(intake, [s3_message(cloud.put("uploads/team/a.jpg", _jpeg(PHOTO)))])["batchItemFailures"] == []
    [published] = cloud.published()
    forged = {**published["claim"], "etag": "0" * 32}
    assert invoke(duplicates, [json.dumps(forged)])["batchItemFailures"] == []
    assert emitted["InvalidClaimChecks"] == 1 and cloud.published() == []
    assert "duplicates" not in cloud.record("uploads/team/a.jpg")


def test_a_throttled_lookup_is_retried_and_an_undecodable_image_fails_with_its_reason(gate, monkeypatch):
    cloud, _ = gate
    assert invoke(intake, [s3_message(cloud.put("uploads/team/a.jpg", _jpeg(PHOTO)))])["batchItemFailures"] == []
    [published] = cloud.published()

    def throttled(**kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"},
                           "ResponseMetadata": {"HTTPStatusCode": 400}}, "BatchGetItem")

    client = aws.client("dynamodb")
    monkeypatch.setattr(client, "batch_get_item", throttled)
    with pytest.raises(BatchProcessingError):  # transient: the batch fails, and SQS delivers it again
        invoke(duplicates, [json.dumps(published["claim"])])
    assert cloud.record("uploads/team/a.jpg")["status"] == "accepted" and cloud.published() == []
    monkeypatch.setattr(client, "batch_get_item", type(client).batch_get_item.__get__(client))
    truncated = _jpeg(PHOTO)[:2000]
    record = upload(cloud, "uploads/team/broken.jpg", truncated)
    assert record["status"] == "failed" and record["reason"].startswith("duplicates: ")


def test_the_index_answers_in_one_batch_get_at_any_size(gate):
    rng = random.Random(7)
    wanted = phash.phash(PHOTO)
    turns = phash.rotations(PHOTO)
    table = boto3.resource("dynamodb", region_name=REGION).Table(INDEX)
    with AwsCalls("BatchGetItem") as counted:
        for size in (5, 200):
            # Every item the lookup reads full of `size` other images of the owner's (far from it but for one band)
            for key in duplicates.band_keys("alice", turns, 5):
                table.put_item(Item={"band": key, **{f"i{size}-{n:05d}": phash.hex_of(_far(wanted, rng)) for n in range(size)}})
            duplicates.index(INDEX, "bob", f"bob-{size}", wanted, 5)  # another owner's very image
            duplicates.index(INDEX, "alice", f"near-{size}", wanted ^ 0b10101, 5)  # 3 bits away
            before = len(counted)
            found = duplicates.candidates(INDEX, "alice", turns, 5)
            assert len(counted) - before == 1
            assert f"near-{size}" in found and f"bob-{size}" not in found


def _far(value: int, rng: random.Random) -> int:
    """A hash 20 or more bits from `value`."""
    while True:
        other = rng.getrandbits(64)
        if phash.distance(other, value) >= 20:
            return other


class AwsCalls:
    """Counts the calls of one DynamoDB operation made through handlers.aws's client while the block runs."""

    def __init__(self, operation: str) -> None:
        self.operation, self.calls = operation, []

    def __enter__(self) -> list[str]:
        aws.client("dynamodb").meta.events.register(f"before-call.dynamodb.{self.operation}", self._count)
        return self.calls

    def _count(self, **kwargs: Any) -> None:
        self.calls.append(self.operation)

    def __exit__(self, *exc: Any) -> None:
        aws.client("dynamodb").meta.events.unregister(f"before-call.dynamodb.{self.operation}", self._count)


def test_the_hash_sees_turns_and_the_bands_find_every_hash_within_the_distance():
    turned = [phash.phash(PHOTO.transpose(t)) for t in (Image.Transpose.ROTATE_270, Image.Transpose.ROTATE_180,
                                                         Image.Transpose.ROTATE_90)]
    rotations = phash.rotations(PHOTO)
    assert rotations[0] == phash.phash(PHOTO)
    assert all(phash.distance(a, b) <= 2 for a, b in zip(rotations[1:], turned, strict=True))
    rng = random.Random(3)
    for _ in range(500):
        a, d = rng.getrandbits(64), rng.randint(0, 12)
        b = a
        for bit in rng.sample(range(64), d):
            b ^= 1 << bit
        assert set(phash.bands(a, d + 1)) & set(phash.bands(b, d + 1))  # pigeonhole: one band agrees


def test_the_stack_gives_the_gate_exactly_its_index_and_settings_are_checked():
    deployed = program.run(program.RecordingMocks(), {"duplicates": "reject", "moderation": True})
    [index] = [t for t in deployed.of_type("aws:dynamodb/table:Table") if t.name.endswith("-duplicates")]
    assert index.inputs["hashKey"] == "band" and index.inputs["serverSideEncryption"]["enabled"]
    [policy] = [p for p in deployed.of_type("aws:iam/rolePolicy:RolePolicy") if "duplicates-stage" in p.name]
    statements = json.loads(policy.inputs["policy"])["Statement"]
    on_index = [s for s in statements if any(":table/" in r and "duplicates" in r for r in _listed(s["Resource"]))]
    assert [sorted(_listed(s["Action"])) for s in on_index] == [["dynamodb:BatchGetItem", "dynamodb:UpdateItem"]]
    others = [p for p in deployed.of_type("aws:iam/rolePolicy:RolePolicy") if "duplicates-stage" not in p.name]
    assert not any("BatchGetItem" in p.inputs["policy"] for p in others)  # no other function reads the index
    subscriptions = {s.name: json.loads(s.inputs.get("filterPolicy") or "{}").get("gate")
                     for s in deployed.of_type("aws:sns/topicSubscription:TopicSubscription")}
    assert {k: v for k, v in subscriptions.items() if "duplicates" in k or "moderation" in k} == {
        "claimcheck-duplicates-stage-subscription": ["pending"],
        "claimcheck-moderation-stage-subscription": ["duplicates-passed"]}
    assert "claimcheck-duplicates" not in {t.name for t in program.run(program.RecordingMocks(), {}).of_type(
        "aws:dynamodb/table:Table")}  # off by default: no index
    with pytest.raises(settings.SettingsError, match=r"duplicates = 'maybe' is out of range \(accepted: off \| record \| reject\)"):
        settings.load({"duplicates": "maybe"})
    with pytest.raises(settings.SettingsError, match=r"duplicateDistance = 13 is out of range \(accepted: 0 to 12\)"):
        settings.load({"duplicates": "record", "duplicateDistance": "13"})


def _listed(value: Any) -> list[str]:
    return [str(v) for v in (value if isinstance(value, list) else [value])]
