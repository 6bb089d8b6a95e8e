"""Versions, overwrites and deletes, the way S3 defines them, through the real handlers on moto.

In a versioned bucket S3 sends ObjectRemoved:Delete for a version deleted for good (a delete marker too:
that is an undelete) and ObjectRemoved:DeleteMarkerCreated for a plain delete (S3 User Guide, "Event
notification types and destinations"). Every case ends with the README's invariant: thumbnails exist only for
`done` records, exactly the configured sizes.
"""
from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from handlers import aws, contracts, environment, intake, labels, thumbnails
from localcloud import samples as images
from tests.conftest import HANDLER_ENV, failed_ids, handler_environment, invoke, s3_message

SIZES = sorted(int(s) for s in HANDLER_ENV["THUMBNAIL_SIZES"].split(","))


def deliver(cloud, event) -> list[dict]:
    """S3 event -> intake -> every claim check it published -> both stages; returns the claims."""
    assert invoke(intake, [s3_message(event)])["batchItemFailures"] == []
    claims = [p["claim"] for p in cloud.published()]
    for claim in claims:
        assert invoke(thumbnails, [json.dumps(claim)])["batchItemFailures"] == []
        if claim["event"] == "created" and claim["format"] in ("jpeg", "png"):
            assert invoke(labels, [json.dumps(claim)])["batchItemFailures"] == []
    return claims


def assert_thumbnails_only_for_done(cloud) -> None:
    """The invariant over the whole table and bucket."""
    stored = set(cloud.thumbnail_keys())
    expected: set[str] = set()
    for item in cloud.table.scan()["Items"]:
        prefix = thumbnails.contracts.thumbnail_prefix(item["image_id"])
        mine = {k for k in stored if k.startswith(prefix)}
        if item["status"] == "done":
            outputs = {o["key"] for o in item["thumbnails"]["outputs"]}
            assert mine == outputs, item["key"]
            assert sorted(int(o["box"]) for o in item["thumbnails"]["outputs"]) == SIZES
            expected |= outputs
        else:
            assert mine == set(), f"{item['key']} is {item['status']} but has thumbnails {sorted(mine)}"
    assert stored == expected, "thumbnails that belong to no record"


@pytest.fixture
def done(cloud):
    """A finished upload: (key, its version id, its thumbnail keys)."""
    key = "uploads/live.webp"
    deliver(cloud, cloud.put(key, images.webp(400, 300)))
    record = cloud.record(key)
    assert record["status"] == "done"
    return key, record["version_id"], sorted(o["key"] for o in record["thumbnails"]["outputs"])


def test_deleting_an_old_version_leaves_the_live_image_alone(cloud, done):
    key, first, _ = done
    # GIVEN the image was overwritten, and the new version finished
    deliver(cloud, cloud.put(key, images.webp(200, 100)))
    live = cloud.record(key)
    assert live["status"] == "done" and live["version_id"] != first
    kept = sorted(o["key"] for o in live["thumbnails"]["outputs"])
    # WHEN the old version is deleted for good (version clean-up)
    claims = deliver(cloud, cloud.delete_version(key, first))
    # THEN nothing changes: no claim check, the same record, the same thumbnails
    assert claims == []
    assert cloud.record(key) == live
    assert cloud.thumbnail_keys() == kept
    assert_thumbnails_only_for_done(cloud)


def test_undeleting_brings_the_image_back_with_thumbnails(cloud, done):
    key, version, _ = done
    marker = cloud.delete(key)
    deliver(cloud, marker)
    assert cloud.record(key)["status"] == "deleted" and cloud.thumbnail_keys() == []
    # WHEN the delete marker is deleted (S3's undelete): ObjectRemoved:Delete, and no create event
    claims = deliver(cloud, cloud.delete_version(key, marker["s3"]["object"]["versionId"]))
    # THEN the current version is processed like a new upload, ordered by the undelete's own sequencer
    assert [c["event"] for c in claims] == ["created"]
    record = cloud.record(key)
    assert (record["status"], record["version_id"]) == ("done", version)
    assert len(cloud.thumbnail_keys()) == len(SIZES)
    assert_thumbnails_only_for_done(cloud)


def test_an_undelete_sends_the_current_versions_claim_check_as_an_upload_would(cloud):
    key, data = "uploads/back.webp", images.webp(320, 200)
    upload = cloud.put(key, data)
    deliver(cloud, upload)
    marker = cloud.delete(key)
    deliver(cloud, marker)
    undelete = cloud.delete_version(key, marker["s3"]["object"]["versionId"])
    [claim] = deliver(cloud, undelete)
    # The claim check names the version that is current again, as its create event did: its id, ETag (without
    # S3's quotes) and size, ordered and timed by the undelete that brought it back.
    uploaded = upload["s3"]["object"]
    assert {k: claim[k] for k in ("event", "version_id", "etag", "size", "format", "sequencer", "event_time")} == {
        "event": "created", "version_id": uploaded["versionId"], "etag": uploaded["eTag"], "size": len(data),
        "format": "webp", "event_time": undelete["eventTime"],
        "sequencer": contracts.normalize_sequencer(undelete["s3"]["object"]["sequencer"], undelete["eventTime"])}
    record = cloud.record(key)
    assert (record["etag"], record["size"], record["event_time"]) == (uploaded["eTag"], len(data), undelete["eventTime"])


def test_a_delete_sends_a_removal_naming_the_delete_and_records_when_it_happened(cloud, done):
    key, _, _ = done
    marker = cloud.delete(key)
    [claim] = deliver(cloud, marker)
    assert {k: claim[k] for k in ("event", "bucket", "key", "version_id", "etag", "size", "format", "event_time")} == {
        "event": "removed", "bucket": cloud.uploads, "key": key, "version_id": marker["s3"]["object"]["versionId"],
        "etag": None, "size": 0, "format": None, "event_time": marker["eventTime"]}
    record = cloud.record(key)
    assert (record["status"], record["bucket"], record["key"], record["event_time"]) == (
        "deleted", cloud.uploads, key, marker["eventTime"])
    assert record["expected_stages"] == []


def test_deleting_a_key_never_seen_records_it_deleted_with_where_and_when(cloud):
    # Uploaded before the stack existed (no event, no record), then deleted.
    key = "uploads/older-than-the-stack.jpg"
    cloud.s3.put_object(Bucket=cloud.uploads, Key=key, Body=images.jpeg(40, 30))
    marker = cloud.delete(key)
    deliver(cloud, marker)
    record = cloud.record(key)
    assert {k: record[k] for k in ("status", "bucket", "key", "event_time", "expected_stages", "reason")} == {
        "status": "deleted", "bucket": cloud.uploads, "key": key, "event_time": marker["eventTime"],
        "expected_stages": [], "reason": "the upload was deleted"}


def test_a_rejected_overwrite_sends_a_removal_that_carries_nothing_of_the_rejected_file(cloud, done):
    key, _, _ = done
    overwrite = cloud.put(key, b"meeting notes, not a photo\n")
    [claim] = deliver(cloud, overwrite)
    assert {k: claim[k] for k in ("event", "version_id", "etag", "size", "format")} == {
        "event": "removed", "version_id": overwrite["s3"]["object"]["versionId"], "etag": None, "size": 0,
        "format": None}


def test_deleting_the_only_version_deletes_the_image(cloud, done):
    key, version, _ = done
    deliver(cloud, cloud.delete_version(key, version))
    record = cloud.record(key)
    assert (record["status"], record["reason"]) == ("deleted", "the upload was deleted")
    assert_thumbnails_only_for_done(cloud)


def test_deleting_the_current_version_falls_back_to_the_previous_one(cloud, done):
    key, first, _ = done
    second = cloud.put(key, images.png(120, 90))
    deliver(cloud, second)
    # WHEN the current version is deleted for good, the older one is current again
    deliver(cloud, cloud.delete_version(key, second["s3"]["object"]["versionId"]))
    record = cloud.record(key)
    assert (record["status"], record["version_id"], record["format"]) == ("done", first, "webp")
    assert_thumbnails_only_for_done(cloud)


def test_a_rejected_overwrite_takes_the_old_thumbnails_with_it(cloud, done):
    key, _, old = done
    assert cloud.thumbnail_keys() == old
    claims = deliver(cloud, cloud.put(key, b"meeting notes, not a photo\n"))
    record = cloud.record(key)
    assert record["status"] == "rejected" and "not an image" in record["reason"]
    assert [c["event"] for c in claims] == ["removed"]
    assert cloud.thumbnail_keys() == []
    assert_thumbnails_only_for_done(cloud)


def test_a_first_rejection_publishes_nothing(cloud):
    assert deliver(cloud, cloud.put("uploads/new.jpg", b"")) == []
    assert cloud.record("uploads/new.jpg")["status"] == "rejected"


def test_a_rejection_delivered_twice_sends_its_removal_again(cloud, done):
    key, _, _ = done
    event = cloud.put(key, b"text\n")
    deliver(cloud, event)
    # The first delivery might have died between recording and publishing: the second publishes again.
    assert [c["event"] for c in deliver(cloud, event)] == ["removed"]
    assert_thumbnails_only_for_done(cloud)


def test_an_overwrite_that_fails_to_decode_takes_the_old_thumbnails_with_it(cloud, done):
    key, _, _ = done
    good = images.webp(800, 600)
    deliver(cloud, cloud.put(key, good[: len(good) // 3]))  # sniffs as WebP, cannot be decoded
    record = cloud.record(key)
    assert record["status"] == "failed" and record["reason"].startswith("thumbnails: ")
    assert cloud.thumbnail_keys() == []
    assert_thumbnails_only_for_done(cloud)


def test_a_late_removal_for_a_replaced_image_changes_nothing(cloud, done):
    key, _, _ = done
    marker = cloud.delete(key)
    deliver(cloud, cloud.put(key, images.webp(90, 60)))  # uploaded again before the delete was processed
    assert deliver(cloud, marker) == []  # the key's current version is the one the record holds
    assert cloud.record(key)["status"] == "done"
    assert_thumbnails_only_for_done(cloud)


def test_without_rekognition_formats_every_upload_is_processed_without_labels(cloud, monkeypatch):
    # What the program sets for a stack that allows no format Rekognition reads: no label stage to wait for.
    for name, value in handler_environment(allowedFormats='["webp", "gif"]').items():
        monkeypatch.setenv(name, value)
    environment.load.cache_clear()
    deliver(cloud, cloud.put("uploads/a.gif", images.gif(frames=3)))
    record = cloud.record("uploads/a.gif")
    assert (record["status"], record["expected_stages"]) == ("done", ["thumbnails"])


def test_a_missing_stage_filter_setting_is_a_configuration_error(cloud, monkeypatch):
    monkeypatch.delenv("STAGE_FILTERS")
    with pytest.raises(environment.ConfigurationError, match="STAGE_FILTERS is not set"):
        environment.load().settings(intake.IntakeSettings)


def test_a_head_refused_for_lack_of_list_bucket_is_retried_not_recorded(cloud, done, monkeypatch):
    key, _, _ = done
    event = cloud.delete(key)

    def refused(**_):
        # What S3 answers for a missing key when the caller may not s3:ListBucket (S3 API reference, HeadObject).
        raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")

    monkeypatch.setattr(aws.client("s3"), "head_object", refused)
    healthy = s3_message(cloud.put("uploads/other.webp", images.webp(50, 50)))
    assert failed_ids(invoke(intake, [s3_message(event), healthy])) == ["m0"]
    assert cloud.record(key)["status"] == "done"  # nothing recorded: retried, then dead-lettered with an alarm


def test_thumbnail_keys_reveal_nothing_about_the_originals_bytes(cloud, done):
    key, version, keys = done
    etag = cloud.s3.head_object(Bucket=cloud.uploads, Key=key)["ETag"].strip('"')
    assert all(etag not in k and f"/{version}/" in k for k in keys)
    head = cloud.s3.head_object(Bucket=cloud.thumbnails, Key=keys[0])
    assert etag not in json.dumps(head["Metadata"])
