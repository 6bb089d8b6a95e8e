"""Forged, replayed and edited messages: a claim check or an S3 event is a request, not a fact.

Whoever may send to a queue (an operator redriving a dead letter may SendMessage to every stage's queue, and
sns:Publish to the claim-check topic) could put any message there, so IAM cannot keep these out: each stage checks
what it is asked against the image record and S3 before it acts, and refuses what they contradict (counted under the
metric the dropped-message alarm watches). Each test sends one forged shape and checks that nothing a user sees
changed, then that the genuine traffic after it still works.
"""
from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from handlers import aws, intake, labels, thumbnails
from localcloud import samples as images
from tests.conftest import invoke, s3_message
from tests.test_versions import assert_thumbnails_only_for_done, deliver

FFFF = "F" * 18  # as long as the sequencers S3 sends, and after every one of them


@pytest.fixture
def done(cloud):
    """A finished upload (a JPEG: both stages ran): its key, record and the claim check the intake published."""
    key = "uploads/live.jpg"
    [claim] = deliver(cloud, cloud.put(key, images.jpeg(400, 300)))
    record = cloud.record(key)
    assert record["status"] == "done" and cloud.thumbnail_keys()
    return key, record, claim


def to_stage(module, claim: dict) -> None:
    assert invoke(module, [json.dumps(claim)])["batchItemFailures"] == []


def test_a_removal_copied_from_a_live_image_s_own_claim_deletes_nothing(cloud, done, emitted):
    key, record, claim = done
    kept = cloud.thumbnail_keys()
    # The sequencer and version are the record's own (anyone with GetItem reads them); only the event is changed.
    to_stage(thumbnails, {**claim, "event": "removed", "etag": None, "size": 0, "format": None})
    assert cloud.thumbnail_keys() == kept
    assert cloud.record(key) == record
    assert emitted["InvalidClaimChecks"] == 1


def overwritten(cloud, key) -> tuple[dict, str]:
    """Overwrite `key` with a new image and finish it; returns (its record, the version it replaced)."""
    first = cloud.record(key)["version_id"]
    deliver(cloud, cloud.put(key, images.jpeg(200, 100)))
    record = cloud.record(key)
    assert record["status"] == "done" and record["version_id"] != first
    return record, first


def test_a_reprocess_naming_a_noncurrent_version_renders_nothing(cloud, done, monkeypatch, emitted):
    key, _, _ = done
    record, old_version = overwritten(cloud, key)
    monkeypatch.setenv("THUMBNAIL_SIZES", "100")  # new settings: a genuine reprocess would make new thumbnails
    thumbnails.environment.load.cache_clear()
    kept = cloud.thumbnail_keys()
    forged = {"v": 1, "bucket": record["bucket"], "key": key, "version_id": old_version, "etag": record["etag"],
              "size": int(record["size"]), "format": "jpeg", "sequencer": record["sequencer"], "event": "reprocess",
              "event_time": record["event_time"]}
    to_stage(thumbnails, forged)
    assert cloud.thumbnail_keys() == kept  # nothing made from the old version (kept noncurrentVersionDays)
    assert cloud.record(key)["thumbnails"] == record["thumbnails"]
    assert emitted["InvalidClaimChecks"] == 1


@pytest.mark.parametrize("event", ["created", "reprocess"])
def test_a_claim_check_without_a_format_opens_no_decoder(cloud, done, monkeypatch, event):
    key, _, claim = done
    if event == "created":  # the record must still wait for the stage: a fresh upload, before its stages ran
        assert invoke(intake, [s3_message(cloud.put("uploads/fresh.jpg", images.jpeg(120, 90)))])["batchItemFailures"] == []
        [published] = cloud.published()
        claim, key = published["claim"], "uploads/fresh.jpg"
    else:
        monkeypatch.setenv("THUMBNAIL_SIZES", "100")
        thumbnails.environment.load.cache_clear()
        claim = {**claim, "event": "reprocess"}
    decoded: list[object] = []
    monkeypatch.setattr(thumbnails.imaging, "make_thumbnails", lambda *a, **k: decoded.append(a))
    monkeypatch.setattr(thumbnails.isolation, "run", lambda fn, *a, **k: decoded.append(a))
    before = cloud.record(key)
    to_stage(thumbnails, {**claim, "format": None})
    assert decoded == []  # `format: null` would let Pillow try every decoder it has
    assert cloud.record(key) == before


def test_a_created_claim_with_the_record_s_sequencer_but_another_version_is_refused_by_both_stages(cloud, emitted,
                                                                                                   monkeypatch):
    key = "uploads/pending.jpg"
    first = cloud.put(key, images.jpeg(300, 200))
    second = cloud.put(key, images.jpeg(100, 80))
    assert invoke(intake, [s3_message(second)])["batchItemFailures"] == []
    [genuine] = [p["claim"] for p in cloud.published()]
    forged = {**genuine, "version_id": first["s3"]["object"]["versionId"], "etag": first["s3"]["object"]["eTag"]}
    called: list[dict] = []
    monkeypatch.setattr(aws.client("rekognition"), "detect_labels", lambda **kw: called.append(kw) or {"Labels": []})
    to_stage(thumbnails, forged)
    to_stage(labels, forged)
    record = cloud.record(key)
    assert "thumbnails" not in record and "labels" not in record and cloud.thumbnail_keys() == []
    assert called == [] and emitted["InvalidClaimChecks"] == 2
    to_stage(thumbnails, genuine)  # the genuine one still works
    assert cloud.record(key)["thumbnails"]["outputs"][0]["width"] == 100


def event_for(cloud, key: str, version: dict, sequencer: str, name: str = "ObjectCreated:Put", **changes) -> dict:
    """An S3-shaped event as anyone with sqs:SendMessage on the intake queue could write it."""
    event = cloud.s3_event(name, key, size=version["size"], etag=version["etag"], version_id=version["version_id"])
    event["s3"]["object"].update(sequencer=sequencer, **changes)
    return event


def current_of(record: dict) -> dict:
    return {"size": int(record["size"]), "etag": record["etag"], "version_id": record["version_id"]}


def test_an_event_with_a_sequencer_past_every_real_one_is_refused_and_later_events_still_count(cloud, done, emitted):
    key, record, _ = done
    assert deliver(cloud, event_for(cloud, key, current_of(record), FFFF)) == []
    assert cloud.record(key) == record and emitted["InvalidEvents"] == 1
    # The next real event for the key (an overwrite) is not stale behind the forged sequencer.
    deliver(cloud, cloud.put(key, images.png(90, 60)))
    assert cloud.record(key)["format"] == "png" and cloud.record(key)["status"] == "done"
    # And its delete removes its thumbnails.
    deliver(cloud, cloud.delete(key))
    assert cloud.record(key)["status"] == "deleted" and cloud.thumbnail_keys() == []


@pytest.mark.parametrize("lie", [{"size": 0}, {"size": 1}, {"eTag": "0" * 32}], ids=["empty", "tiny", "etag"])
def test_an_event_that_misstates_the_object_rejects_nothing(cloud, done, emitted, lie):
    key, record, _ = done
    # A later sequencer than the record's, but a size or ETag S3 does not hold for that version: had it been
    # believed, "the file is empty" would have rejected the live image and removed its thumbnails.
    assert deliver(cloud, event_for(cloud, key, current_of(record), FFFF, **lie)) == []
    assert cloud.record(key) == record and emitted["InvalidEvents"] == 1
    assert_thumbnails_only_for_done(cloud)


@pytest.mark.parametrize("answer", ["NoSuchVersion", "InvalidArgument"])
def test_an_event_naming_a_version_that_never_existed_changes_nothing(cloud, done, monkeypatch, answer):
    key, record, _ = done
    made_up = {**current_of(record), "version_id": "made-up"}
    if answer == "InvalidArgument":  # what S3 answers for a version id it never issued (moto: NoSuchVersion)
        s3, real = aws.client("s3"), aws.client("s3").get_object

        def get_object(**kwargs):
            if kwargs.get("VersionId") == "made-up":
                raise ClientError({"Error": {"Code": "InvalidArgument", "Message": "Invalid version id specified"},
                                   "ResponseMetadata": {"HTTPStatusCode": 400}}, "GetObject")
            return real(**kwargs)

        monkeypatch.setattr(s3, "get_object", get_object)
    assert deliver(cloud, event_for(cloud, key, made_up, FFFF)) == []
    assert cloud.record(key) == record
    deliver(cloud, cloud.delete(key))  # the real delete still removes its thumbnails
    assert cloud.record(key)["status"] == "deleted" and cloud.thumbnail_keys() == []


def test_an_event_ordering_an_old_version_after_a_newer_one_is_refused(cloud, done, emitted):
    key, _, _ = done
    old = cloud.versions(key)[0]
    record, _ = overwritten(cloud, key)
    old_version = {"size": old["Size"], "etag": old["ETag"].strip('"'), "version_id": old["VersionId"]}
    assert deliver(cloud, event_for(cloud, key, old_version, FFFF)) == []
    assert cloud.record(key) == record and emitted["InvalidEvents"] == 1


def test_a_forgery_that_front_runs_a_new_version_is_set_right_by_the_next_real_event(cloud, done, emitted):
    key, _, _ = done
    # The forger sees a new version land and sends its event first, with a sequencer past every real one.
    genuine = cloud.put(key, images.jpeg(220, 100))
    obj = genuine["s3"]["object"]
    forged = event_for(cloud, key, {"size": obj["size"], "etag": obj["eTag"], "version_id": obj["versionId"]}, FFFF)
    deliver(cloud, forged)
    assert cloud.record(key)["sequencer"].startswith(FFFF)  # the content is the real one; only its order is forged
    deliver(cloud, genuine)  # the genuine event is older than the forged sequencer: nothing to do
    # The next upload is S3's current version: its event sets the record right although its sequencer is lower.
    deliver(cloud, cloud.put(key, images.png(64, 64)))
    record = cloud.record(key)
    assert (record["status"], record["format"]) == ("done", "png") and emitted["Reconciled"] == 1
    deliver(cloud, cloud.delete(key))
    assert cloud.record(key)["status"] == "deleted" and cloud.thumbnail_keys() == []


def test_a_replayed_removal_of_an_old_version_leaves_the_live_image_alone(cloud, done):
    key, _, _ = done
    record, old_version = overwritten(cloud, key)
    replay = cloud.s3_event("ObjectRemoved:Delete", key, version_id=old_version)
    replay["s3"]["object"]["sequencer"] = FFFF
    assert deliver(cloud, replay) == []  # S3's current version is the record's: nothing removed
    assert cloud.record(key) == record
    assert_thumbnails_only_for_done(cloud)


def test_a_genuine_event_overtaken_by_two_newer_versions_is_stale_not_refused(cloud, done, emitted):
    key, _, _ = done
    second = cloud.put(key, images.jpeg(210, 100))
    third = cloud.put(key, images.png(80, 60))
    # The second version's event arrives after the third version landed: superseded, not a forgery (no alarm).
    assert deliver(cloud, second) == []
    assert emitted["InvalidEvents"] == 0 and emitted["StaleEvents"] == 1
    deliver(cloud, third)
    record = cloud.record(key)
    assert (record["status"], record["format"], record["version_id"]) == ("done", "png", third["s3"]["object"]["versionId"])
    assert_thumbnails_only_for_done(cloud)


def locked_then_deleted(cloud, key: str) -> dict:
    """The user deletes the key after a forgery; what the record and the bucket say then."""
    deliver(cloud, cloud.delete(key))
    return cloud.record(key)


def test_an_event_that_names_no_version_is_refused_and_the_delete_after_it_counts(cloud, done, emitted):
    key, record, _ = done
    # Every event of a versioned bucket names its version (S3 User Guide, "Event message structure": versionId);
    # one that names none, with a sequencer past every real one, would have locked the key.
    forged = cloud.s3_event("ObjectCreated:Put", key)
    forged["s3"]["object"] = {"key": key, "sequencer": FFFF}
    assert deliver(cloud, forged) == []
    assert cloud.record(key) == record and emitted["InvalidEvents"] == 1
    assert locked_then_deleted(cloud, key)["status"] == "deleted" and cloud.thumbnail_keys() == []


def test_a_forgery_that_front_runs_a_new_version_cannot_outlive_the_users_delete(cloud, done, emitted):
    key, _, _ = done
    genuine = cloud.put(key, images.jpeg(220, 100))
    obj = genuine["s3"]["object"]
    deliver(cloud, event_for(cloud, key, {"size": obj["size"], "etag": obj["eTag"], "version_id": obj["versionId"]}, FFFF))
    assert cloud.record(key)["sequencer"].startswith(FFFF)
    deliver(cloud, genuine)
    # The delete's sequencer is lower than the forged one; S3 has no current version: the bucket wins.
    record = locked_then_deleted(cloud, key)
    assert record["status"] == "deleted" and cloud.thumbnail_keys() == [] and emitted["Reconciled"] == 1


def test_a_forged_removal_past_every_real_sequencer_cannot_outlive_the_users_delete(cloud, done, emitted):
    key, _, _ = done
    genuine = cloud.put(key, images.jpeg(220, 100))  # a new version whose event has not arrived yet
    # A removal with a sequencer past every real one: S3's current version is not the record's, so it is processed
    # as that version (restored), and the record carries the forged sequencer.
    removal = cloud.s3_event("ObjectRemoved:Delete", key, version_id="made-up")
    removal["s3"]["object"]["sequencer"] = FFFF
    deliver(cloud, removal)
    assert cloud.record(key)["sequencer"].startswith(FFFF)
    deliver(cloud, genuine)
    record = locked_then_deleted(cloud, key)
    assert record["status"] == "deleted" and cloud.thumbnail_keys() == []


def test_a_claim_check_that_misstates_the_size_is_refused_not_judged_by_it(cloud, emitted, monkeypatch):
    key = "uploads/small.jpg"
    assert invoke(intake, [s3_message(cloud.put(key, images.jpeg(300, 200)))])["batchItemFailures"] == []
    [genuine] = [p["claim"] for p in cloud.published()]
    called: list[dict] = []
    monkeypatch.setattr(aws.client("rekognition"), "detect_labels",
                        lambda **kw: called.append(kw) or {"Labels": [{"Name": "Sea", "Confidence": 99.0}]})
    # Over the 15 MB DetectLabels reads from S3: believed, it would have settled the labels as unavailable unpaid.
    to_stage(labels, {**genuine, "size": 16 * 2**20})
    assert "labels" not in cloud.record(key) and called == [] and emitted["InvalidClaimChecks"] == 1
    to_stage(labels, genuine)
    assert cloud.record(key)["labels"]["status"] == "done" and len(called) == 1
