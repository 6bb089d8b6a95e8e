"""Intake: S3 events in, image records and claim checks out."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from handlers import intake
from localcloud import samples as images
from tests.conftest import failed_ids, invoke, s3_message


def test_s3_test_event_is_acknowledged_and_does_nothing(cloud):
    body = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": cloud.uploads})
    response = invoke(intake, [body])
    assert response["batchItemFailures"] == []
    assert cloud.published() == []
    assert cloud.table.scan()["Items"] == []


def test_s3_test_event_is_not_counted_as_a_malformed_message(cloud, counted):
    invoke(intake, [json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": cloud.uploads})])
    assert counted == []


@pytest.mark.parametrize("key", [
    "uploads/holiday photo.jpg",
    "uploads/a+b=c.jpg",
    "uploads/100% real.jpg",
    "uploads/café/日本/naïve ☃.jpg",
    "uploads/deep/er/and/deeper/x.jpg",
    "uploads/%2B already encoded %2B.jpg",
])
def test_keys_are_decoded_once_and_correctly(cloud, key):
    event = cloud.put(key, images.jpeg(100, 80))
    invoke(intake, [s3_message(event)])
    record = cloud.record(key)
    assert record["status"] == "accepted", record
    assert record["key"] == key
    [published] = cloud.published()
    assert published["claim"]["key"] == key
    assert published["claim"]["v"] == 1


def test_accepted_jpeg_publishes_one_claim_check_with_format_attribute(cloud):
    event = cloud.put("uploads/cat.jpg", images.jpeg(400, 300))
    response = invoke(intake, [s3_message(event)])
    assert response["batchItemFailures"] == []
    record = cloud.record("uploads/cat.jpg")
    assert (record["status"], record["format"], record["width"], record["height"]) == ("accepted", "jpeg", 400, 300)
    assert record["expected_stages"] == ["thumbnails", "labels"]
    [published] = cloud.published()
    claim = published["claim"]
    # "gate": with a gate deployed only it takes a pending claim check first (handlers/stages.py); else no filter reads it
    assert published["attributes"] == {"format": "jpeg", "event": "created", "gate": "pending"}
    assert set(claim) == {"v", "bucket", "key", "version_id", "etag", "size", "format", "sequencer", "event", "event_time"}
    assert claim["version_id"] == event["s3"]["object"]["versionId"]
    assert claim["size"] == event["s3"]["object"]["size"]
    # the event's own time, on the claim check and the record; the bucket and (not an API upload) no owner
    assert claim["event_time"] == record["event_time"] == event["eventTime"] != ""
    assert claim["bucket"] == record["bucket"] == cloud.uploads
    assert record["reason"] == "" and record.get("owner") is None


def test_webp_is_accepted_without_a_label_stage(cloud):
    invoke(intake, [s3_message(cloud.put("uploads/w.webp", images.webp()))])
    record = cloud.record("uploads/w.webp")
    assert record["status"] == "accepted" and record["expected_stages"] == ["thumbnails"]
    assert cloud.published()[0]["attributes"]["format"] == "webp"


@pytest.mark.parametrize("key, data, reason", [
    ("uploads/empty.jpg", b"", "the file is empty (0 bytes)"),
    ("uploads/notes.jpg", b"just some text, not an image\n", "not an image: the content is a text file despite its .jpg name"),
    ("uploads/layers.jpg", images.psd_header(), "not an image: the content is a Photoshop document (PSD) despite its .jpg name"),
    ("uploads/huge.png", images.png_header_only(20000, 20000), "the image is 20000x20000 (400.0 MP), over the limit of 50.0 MP"),
    ("uploads/big.png", images.png_header_only(10000, 10000), "the image is 10000x10000 (100.0 MP), over the limit of 50.0 MP"),
    # A byte that is no marker before the frame header: the decoders walk past it, and so does the sniffing.
    ("uploads/hidden.jpg", images.with_frame_size(images.jpeg(64, 64), 60000, 60000).replace(b"\xff\xc0", b"\x00\xff\xc0", 1),
     "the image is 60000x60000 (3600.0 MP), over the limit of 50.0 MP"),
])
def test_bad_uploads_are_rejected_with_a_reason_and_publish_nothing(cloud, key, data, reason):
    response = invoke(intake, [s3_message(cloud.put(key, data))])
    assert response["batchItemFailures"] == []
    record = cloud.record(key)
    assert record["status"] == "rejected"
    assert record["reason"] == reason
    assert record["expected_stages"] == []  # no stage will report on it
    assert cloud.published() == []


def test_a_gif_named_jpg_is_judged_by_content(cloud, monkeypatch):
    monkeypatch.setenv("ALLOWED_FORMATS", "jpeg,png")
    invoke(intake, [s3_message(cloud.put("uploads/anim.jpg", images.gif(3)))])
    record = cloud.record("uploads/anim.jpg")
    assert record["status"] == "rejected"
    assert record["reason"] == "GIF images are not accepted despite its .jpg name (allowed: jpeg, png)"


def test_a_format_that_is_not_allowed_is_named_without_blaming_a_name_that_tells_the_truth(cloud, monkeypatch):
    monkeypatch.setenv("ALLOWED_FORMATS", "jpeg")
    invoke(intake, [s3_message(cloud.put("uploads/diagram.png", images.png(40, 30)))])
    assert cloud.record("uploads/diagram.png")["reason"] == "PNG images are not accepted (allowed: jpeg)"


@pytest.mark.parametrize("key, fmt, note", [
    ("uploads/notes.v2.JPG", None, " despite its .jpg name"),  # the last suffix, in any case
    ("uploads/a.b/c.d/notes.png", "jpeg", " despite its .png name"),
    ("uploads/my.photos/notes", None, ""),  # a dot in a folder is no extension
    ("uploads/photo.jpeg", "jpeg", ""),
    ("uploads/scan.tif", "tiff", ""),
    ("uploads/readme.txt", None, ""),  # a name that promises no image format
])
def test_the_name_is_blamed_only_when_it_promises_another_format(key, fmt, note):
    assert intake._extension_note(key, fmt) == note


@pytest.mark.parametrize("key, metadata, owner", [
    ("uploads/api/3f2a/2026/12/02/x-a.jpg", {}, "3f2a"),  # the namespace the API chose
    ("uploads/api/3f2a/2026/12/02/x-a.jpg", {"owner": "3f2a"}, "3f2a"),  # and signed into the metadata
    # A direct writer's metadata that disagrees with the key names nobody: the key's namespace stands.
    ("uploads/api/3f2a/2026/12/02/x-a.jpg", {"owner": "victim"}, "3f2a"),
    ("uploads/holiday.jpg", {"owner": "victim"}, None),  # outside the API's namespace nobody is the owner
    ("uploads/api//x.jpg", {}, None),  # an empty namespace names nobody
    ("uploads/api/solo.jpg", {}, "solo.jpg"),
    ("uploads/holiday.jpg", {}, None),  # not through the API
])
def test_the_owner_is_the_api_s_namespace_never_metadata_that_disagrees(key, metadata, owner):
    assert intake._owner(key, metadata) == owner


@pytest.mark.parametrize("key, claimed, owner", [
    ("uploads/api/attacker/a.jpg", "victim", "attacker"),  # metadata claiming another caller's owner id
    ("uploads/shared/a.jpg", "victim", None),  # a direct write outside the API's namespace
    ("uploads/api/victim/a.jpg", "victim", "victim"),  # what a grant signs: key and metadata agree
])
def test_a_direct_writer_cannot_file_an_image_under_another_owner(cloud, key, claimed, owner):
    from handlers.names import OWNER_METADATA

    data = images.jpeg(64, 48)
    put = cloud.s3.put_object(Bucket=cloud.uploads, Key=key, Body=data, Metadata={OWNER_METADATA: claimed})
    invoke(intake, [s3_message(cloud.s3_event("ObjectCreated:Put", key, size=len(data),
                                              etag=put["ETag"].strip('"'), version_id=put.get("VersionId")))])
    record = cloud.record(key)
    assert record["status"] == "accepted" and record["owner"] == owner


def test_only_the_head_the_sniffer_reads_is_fetched(cloud, monkeypatch):
    from handlers import aws
    from handlers.sniff import SNIFF_BYTES

    s3 = aws.client("s3")
    asked: list[dict] = []
    real = s3.get_object
    monkeypatch.setattr(s3, "get_object", lambda **kwargs: asked.append(kwargs) or real(**kwargs))
    event = cloud.put("uploads/big-enough.jpg", images.jpeg(800, 600))
    invoke(intake, [s3_message(event)])
    assert cloud.record("uploads/big-enough.jpg")["status"] == "accepted"
    assert asked == [{"Bucket": cloud.uploads, "Key": "uploads/big-enough.jpg",
                      "VersionId": event["s3"]["object"]["versionId"], "Range": f"bytes=0-{SNIFF_BYTES - 1}"}]


def test_an_upload_of_exactly_the_limit_is_taken(cloud, monkeypatch):
    data = images.jpeg(300, 300)
    monkeypatch.setenv("MAX_UPLOAD_BYTES", str(len(data)))
    invoke(intake, [s3_message(cloud.put("uploads/exact.jpg", data))])
    assert cloud.record("uploads/exact.jpg")["status"] == "accepted"


def test_oversized_upload_is_rejected_without_reading_it(cloud, monkeypatch):
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "1000")
    invoke(intake, [s3_message(cloud.put("uploads/big.jpg", images.jpeg(300, 300)))])
    record = cloud.record("uploads/big.jpg")
    assert record["status"] == "rejected"
    assert "over the upload limit of 1,000 bytes" in record["reason"]


def test_a_version_deleted_before_intake_is_settled_by_its_deletion_not_judged(cloud, counted):
    event = cloud.put("uploads/gone.jpg", images.jpeg())
    removal = cloud.delete_version("uploads/gone.jpg", event["s3"]["object"]["versionId"])
    # The ObjectCreated event finds its version gone: nothing to judge, nothing recorded, no retry.
    assert invoke(intake, [s3_message(event)])["batchItemFailures"] == []
    assert cloud.record("uploads/gone.jpg") is None and ("StaleEvents", 1) in counted
    # The deletion's own event (S3 sends one for every version deleted) says what the key holds now.
    invoke(intake, [s3_message(removal)])
    record = cloud.record("uploads/gone.jpg")
    assert (record["status"], record["reason"]) == ("deleted", "the upload was deleted")


def test_the_same_event_twice_gives_one_record_and_republishes_while_pending(cloud):
    event = cloud.put("uploads/dup.jpg", images.jpeg())
    invoke(intake, [s3_message(event)])
    first = cloud.record("uploads/dup.jpg")
    invoke(intake, [s3_message(event)])
    assert cloud.table.scan()["Count"] == 1
    second = cloud.record("uploads/dup.jpg")
    assert second["sequencer"] == first["sequencer"] and second["created_at"] == first["created_at"]
    # Still pending: the claim check is published again (the first publish may have been lost); stages are idempotent.
    assert len(cloud.published()) == 2


def test_an_older_event_changes_nothing(cloud):
    old = cloud.put("uploads/k.jpg", images.jpeg(100, 100))
    new = cloud.put("uploads/k.jpg", images.png(50, 40))
    invoke(intake, [s3_message(new)])
    invoke(intake, [s3_message(old)])
    record = cloud.record("uploads/k.jpg")
    assert (record["format"], record["version_id"]) == ("png", new["s3"]["object"]["versionId"])
    assert [p["claim"]["format"] for p in cloud.published()] == ["png"]


def test_delete_marks_record_deleted_and_publishes_removed_claim(cloud):
    invoke(intake, [s3_message(cloud.put("uploads/d.jpg", images.jpeg()))])
    cloud.published()
    invoke(intake, [s3_message(cloud.delete("uploads/d.jpg"))])
    record = cloud.record("uploads/d.jpg")
    assert record["status"] == "deleted"
    [published] = cloud.published()
    assert published["claim"]["event"] == "removed"
    assert published["attributes"] == {"format": "none", "event": "removed", "gate": "clear"}  # a removal waits for no gate


def test_batch_of_ten_with_one_poison_record_fails_alone(cloud, monkeypatch):
    bodies = [s3_message(cloud.put(f"uploads/{i}.jpg", images.jpeg(60, 40))) for i in range(9)]
    poison = cloud.s3_event("ObjectCreated:Put", "uploads/poison.jpg", size=10, etag="x")
    poison["s3"]["bucket"]["name"] = "no-such-bucket"  # S3 answers NoSuchBucket: not a known permanent error
    bodies.insert(4, s3_message(poison))
    response = invoke(intake, bodies)
    assert failed_ids(response) == ["m4"]
    assert sum(1 for i in range(9) if cloud.record(f"uploads/{i}.jpg")["status"] == "accepted") == 9


def test_importing_intake_does_not_import_pillow():
    code = "import sys, handlers.intake; print('PIL' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture
def counted(monkeypatch):
    seen: list[tuple[str, int]] = []
    monkeypatch.setattr(intake, "count", lambda name, value=1: seen.append((name, value)))
    return seen


@pytest.mark.parametrize("broken", [
    {"eventName": "ObjectCreated:Put"},  # no s3 block at all
    {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}}},  # no object
    {"s3": {"bucket": {"name": "b"}, "object": {"key": "uploads/x.jpg", "sequencer": "00AB"}}},  # no event name
    {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": "uploads/x.jpg"}}},  # no order
    {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": "uploads/x.jpg", "sequencer": "00AB"}}},  # no time
    {"eventName": "ObjectCreated:Put", "eventTime": "2026-11-23T10:00:00Z",
     "s3": {"bucket": {"name": "b"}, "object": {"key": "uploads/x.jpg", "sequencer": "not hex"}}},
    "not an object",
], ids=["no-s3", "no-object", "no-event-name", "no-sequencer-or-time", "no-time", "bad-sequencer", "not-an-object"])
def test_a_malformed_record_is_dropped_and_counted_while_its_batch_mates_go_on(cloud, counted, broken):
    good = cloud.put("uploads/fine.jpg", images.jpeg(64, 48))
    response = invoke(intake, [json.dumps({"Records": [broken, good]})])
    assert response["batchItemFailures"] == []  # no retry can fix it: acknowledged, not sent to the DLQ
    assert ("InvalidEvents", 1) in counted
    assert cloud.record("uploads/fine.jpg")["status"] == "accepted"
    assert [p["claim"]["key"] for p in cloud.published()] == ["uploads/fine.jpg"]


@pytest.mark.parametrize("body", ["{not json", json.dumps({"Records": "x"}), json.dumps({"Message": "hello"})],
                         ids=["not-json", "records-not-a-list", "not-an-s3-notification"])
def test_a_message_that_is_not_an_s3_notification_is_dropped_and_counted(cloud, counted, body):
    assert invoke(intake, [body])["batchItemFailures"] == []
    assert counted == [("InvalidEvents", 1)]
    assert cloud.published() == [] and cloud.table.scan()["Items"] == []


def test_without_a_sequencer_the_event_time_orders_and_the_image_is_still_processed(cloud):
    event = cloud.put("uploads/old-emulator.jpg", images.jpeg(64, 48))
    del event["s3"]["object"]["sequencer"]
    assert invoke(intake, [s3_message(event)])["batchItemFailures"] == []
    record = cloud.record("uploads/old-emulator.jpg")
    assert record["status"] == "accepted" and record["sequencer"].startswith("T")
    [published] = cloud.published()
    assert published["claim"]["sequencer"] == record["sequencer"]  # the stages compare the same value
    from handlers import thumbnails

    assert invoke(thumbnails, [json.dumps(published["claim"])])["batchItemFailures"] == []
    assert cloud.record("uploads/old-emulator.jpg")["thumbnails"]["status"] == "done"  # not dropped as stale


def test_a_rejected_original_is_tagged_with_its_status_and_listed_for_attention(cloud):
    event = cloud.put("uploads/notes.jpg", b"not an image at all\n")
    invoke(intake, [s3_message(event)])
    record = cloud.record("uploads/notes.jpg")
    assert record["status"] == "rejected" and record["attention"] == f"rejected#{record['image_id'][0]}"
    tags = cloud.s3.get_object_tagging(Bucket=cloud.uploads, Key="uploads/notes.jpg",
                                       VersionId=event["s3"]["object"]["versionId"])["TagSet"]
    assert tags == [{"Key": "claimcheck-status", "Value": "rejected"}]


def test_an_accepted_upload_is_not_tagged_and_waits_in_the_attention_index_until_settled(cloud):
    event = cloud.put("uploads/ok.jpg", images.jpeg())
    invoke(intake, [s3_message(event)])
    record = cloud.record("uploads/ok.jpg")
    assert record["attention"].startswith("accepted#")
    assert cloud.s3.get_object_tagging(Bucket=cloud.uploads, Key="uploads/ok.jpg")["TagSet"] == []
    invoke(intake, [s3_message(cloud.delete("uploads/ok.jpg"))])
    assert "attention" not in cloud.record("uploads/ok.jpg")  # deleted: nothing to look at


def test_an_original_expired_by_its_lifecycle_rule_is_recorded_deleted_with_that_reason(cloud):
    invoke(intake, [s3_message(cloud.put("uploads/old.txt.jpg", b"plain text, rejected\n"))])
    # The rule's expiry puts a delete marker, and S3 reports it as a LifecycleExpiration event of its own.
    marker = cloud.delete("uploads/old.txt.jpg")
    marker["eventName"] = "LifecycleExpiration:DeleteMarkerCreated"
    invoke(intake, [s3_message(marker)])
    record = cloud.record("uploads/old.txt.jpg")
    assert (record["status"], record["reason"]) == ("deleted", "the original expired (a lifecycle rule of the uploads bucket)")
    assert "attention" not in record
