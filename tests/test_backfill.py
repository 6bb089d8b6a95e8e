"""The backfill function's per-task contract (S3 Batch Operations' "Invoke AWS Lambda function"), on moto: an object
already in the bucket goes the intake's way, one already judged at its current version is skipped, one gone fails
for good with the reason, a throttled call is retried, and a real event about the key wins over the backfill."""
from __future__ import annotations

from urllib.parse import quote

import pytest
from botocore.stub import Stubber

from handlers import aws, backfill, contracts, intake, records
from handlers.names import Metric
from localcloud import samples as images
from tests.conftest import failed_ids, invoke, s3_message


def request(cloud, *keys: str, version: str | None = None, schema: str = "2.0") -> dict:
    """What S3 Batch Operations sends: keys URL-encoded, the bucket by name (2.0) or ARN (1.0)."""
    where = {"s3Bucket": cloud.uploads} if schema == "2.0" else {"s3BucketArn": f"arn:aws:s3:::{cloud.uploads}"}
    return {"invocationSchemaVersion": schema, "invocationId": "inv-1", "job": {"id": "job-1"},
            "tasks": [{"taskId": f"t{i}", "s3Key": quote(key), "s3VersionId": version, **where}
                      for i, key in enumerate(keys)]}


def results(cloud, *keys: str, **kwargs) -> list[tuple[str, str]]:
    answer = backfill.handler(request(cloud, *keys, **kwargs), None)
    assert answer["invocationId"] == "inv-1" and answer["invocationSchemaVersion"] == kwargs.get("schema", "2.0")
    assert [r["taskId"] for r in answer["results"]] == [f"t{i}" for i in range(len(keys))]
    return [(r["resultCode"], r["resultString"]) for r in answer["results"]]


def test_an_object_already_in_the_bucket_is_accepted_and_its_claim_check_published(cloud):
    put = cloud.s3.put_object(Bucket=cloud.uploads, Key="uploads/old/holiday photo.jpg", Body=images.jpeg(64, 48))
    assert results(cloud, "uploads/old/holiday photo.jpg") == [("Succeeded", "accepted")]
    record = cloud.record("uploads/old/holiday photo.jpg")
    assert (record["status"], record["version_id"], record["format"]) == ("accepted", put["VersionId"], "jpeg")
    assert record["sequencer"] == contracts.BACKFILL_SEQUENCER
    [published] = cloud.published()
    assert (published["claim"]["key"], published["claim"]["version_id"]) == ("uploads/old/holiday photo.jpg", put["VersionId"])


def test_schema_1_names_the_bucket_by_arn(cloud):
    cloud.s3.put_object(Bucket=cloud.uploads, Key="uploads/a.png", Body=images.png(40, 30))
    assert results(cloud, "uploads/a.png", schema="1.0") == [("Succeeded", "accepted")]


def test_an_object_already_processed_at_its_current_version_is_skipped(cloud):
    invoke(intake, [s3_message(cloud.put("uploads/seen.jpg", images.jpeg(64, 48)))])
    cloud.published()
    cloud.table.update_item(Key={"image_id": contracts.image_id(cloud.uploads, "uploads/seen.jpg")},
                            UpdateExpression="SET #s = :done", ExpressionAttributeNames={"#s": "status"},
                            ExpressionAttributeValues={":done": "done"})  # the stages finished it
    before = cloud.record("uploads/seen.jpg")
    assert results(cloud, "uploads/seen.jpg") == [("Succeeded", "skipped: already done at its current version")]
    assert cloud.record("uploads/seen.jpg") == before
    assert cloud.published() == []


def test_an_object_on_its_way_is_said_to_be_and_not_sent_again(cloud):
    invoke(intake, [s3_message(cloud.put("uploads/busy-now.jpg", images.jpeg(64, 48)))])
    cloud.published()
    before = cloud.record("uploads/busy-now.jpg")
    assert results(cloud, "uploads/busy-now.jpg") == [("Succeeded", f"accepted: {backfill.ON_ITS_WAY}")]
    assert cloud.record("uploads/busy-now.jpg") == before
    assert cloud.published() == []


def test_a_second_backfill_of_the_same_object_sends_it_once(cloud):
    cloud.s3.put_object(Bucket=cloud.uploads, Key="uploads/twice.jpg", Body=images.jpeg(64, 48))
    assert results(cloud, "uploads/twice.jpg") == [("Succeeded", "accepted")]
    assert results(cloud, "uploads/twice.jpg") == [("Succeeded", f"accepted: {backfill.ON_ITS_WAY}")]
    assert len(cloud.published()) == 1


def test_what_is_not_an_image_is_recorded_rejected_with_its_reason(cloud):
    cloud.s3.put_object(Bucket=cloud.uploads, Key="uploads/notes.jpg", Body=b"just some text, not a photo\n" * 4)
    [(code, text)] = results(cloud, "uploads/notes.jpg")
    assert code == "Succeeded" and text.startswith("rejected: not an image") and "despite its .jpg name" in text
    assert cloud.record("uploads/notes.jpg")["status"] == "rejected"
    assert cloud.published() == []


def test_a_missing_object_fails_for_good_with_the_reason(cloud):
    assert results(cloud, "uploads/never-there.jpg") == [
        ("PermanentFailure", "failed: the key has no current version (deleted since it was listed)")]
    assert cloud.record("uploads/never-there.jpg") is None


def test_a_key_outside_the_uploads_prefix_fails_for_good(cloud):
    cloud.s3.put_object(Bucket=cloud.uploads, Key="elsewhere/a.jpg", Body=images.jpeg(64, 48))
    [(code, text)] = results(cloud, "elsewhere/a.jpg")
    assert code == "PermanentFailure" and "outside uploads/" in text
    assert cloud.published() == []


def test_throttling_is_a_temporary_failure(cloud):
    cloud.s3.put_object(Bucket=cloud.uploads, Key="uploads/busy.jpg", Body=images.jpeg(64, 48))
    with Stubber(aws.client("s3")) as s3:
        s3.add_client_error("head_object", service_error_code="SlowDown", http_status_code=503)
        [(code, text)] = results(cloud, "uploads/busy.jpg")
    assert code == "TemporaryFailure" and "SlowDown" in text
    assert cloud.record("uploads/busy.jpg") is None


def test_a_task_naming_an_older_version_is_skipped(cloud):
    old = cloud.s3.put_object(Bucket=cloud.uploads, Key="uploads/v.jpg", Body=images.jpeg(64, 48))["VersionId"]
    cloud.s3.put_object(Bucket=cloud.uploads, Key="uploads/v.jpg", Body=images.jpeg(80, 60))
    [(code, text)] = results(cloud, "uploads/v.jpg", version=old)
    assert code == "Succeeded" and text.startswith(f"skipped: version {old} is not the key's current one")
    assert cloud.record("uploads/v.jpg") is None


def test_an_overwrite_recorded_first_wins_over_a_backfill_that_read_the_old_version(cloud):
    old = cloud.s3.put_object(Bucket=cloud.uploads, Key="uploads/race.jpg", Body=images.jpeg(64, 48))
    head = intake.current_version(cloud.uploads, "uploads/race.jpg")
    invoke(intake, [s3_message(cloud.put("uploads/race.jpg", images.png(50, 40)))])
    new = cloud.record("uploads/race.jpg")
    # The backfill read the old version before the overwrite and judges it only now.
    intake.judge_existing(cloud.uploads, "uploads/race.jpg", head, "2026-11-01T00:00:00.000Z")
    assert cloud.record("uploads/race.jpg") == new and new["version_id"] != old["VersionId"]


def _late_event_of_the_backfilled_version(cloud, key: str) -> dict:
    """The version's own ObjectCreated event, delayed past a backfill that judged the version."""
    version = cloud.record(key)["version_id"]
    head = cloud.s3.head_object(Bucket=cloud.uploads, Key=key)
    return cloud.s3_event("ObjectCreated:Put", key, size=head["ContentLength"], etag=head["ETag"].strip('"'),
                          version_id=version)


def test_a_late_event_of_the_backfilled_version_is_neither_refused_nor_judged_again_and_a_later_version_wins(
        cloud, emitted):
    cloud.s3.put_object(Bucket=cloud.uploads, Key="uploads/late.jpg", Body=images.jpeg(64, 48))
    assert results(cloud, "uploads/late.jpg") == [("Succeeded", "accepted")]
    judged = cloud.record("uploads/late.jpg")
    # The same judgement again, not a forgery: nothing to do.
    assert failed_ids(invoke(intake, [s3_message(_late_event_of_the_backfilled_version(cloud, "uploads/late.jpg"))])) == []
    assert (emitted[Metric.INVALID_EVENTS], emitted[Metric.STALE_EVENTS]) == (0, 1)
    assert cloud.record("uploads/late.jpg") == judged and judged["sequencer"] == contracts.BACKFILL_SEQUENCER
    # An overwrite's event, later: the record follows it.
    invoke(intake, [s3_message(cloud.put("uploads/late.jpg", images.png(50, 40)))])
    assert cloud.record("uploads/late.jpg")["format"] == "png"


def test_a_backfilled_version_s_late_event_makes_one_claim_check_and_one_record_write_in_all(cloud, monkeypatch):
    cloud.s3.put_object(Bucket=cloud.uploads, Key="uploads/once.jpg", Body=images.jpeg(64, 48))
    writes = []
    record_event = records.record_event
    monkeypatch.setattr(records, "record_event", lambda *args, **kwargs: writes.append(args[1]) or record_event(
        *args, **kwargs))
    assert results(cloud, "uploads/once.jpg") == [("Succeeded", "accepted")]
    invoke(intake, [s3_message(_late_event_of_the_backfilled_version(cloud, "uploads/once.jpg"))])
    assert writes == [contracts.image_id(cloud.uploads, "uploads/once.jpg")]
    [published] = cloud.published()  # the stages (and their image.ready) run once
    assert published["claim"]["key"] == "uploads/once.jpg"


def test_more_tasks_than_the_function_s_timeout_is_sized_for_are_refused(cloud):
    with pytest.raises(backfill.BadRequest, match=r"send at most 100 tasks an invocation \(got 101\)"):
        backfill.handler(request(cloud, *[f"uploads/{n}.jpg" for n in range(101)]), None)


def test_a_request_that_is_not_batch_operations_is_refused_with_the_shape_to_send(cloud):
    with pytest.raises(backfill.BadRequest, match=r"invocationSchemaVersion 1\.0 or 2\.0"):
        backfill.handler({"key": "uploads/a.jpg"}, None)


def test_a_version_newer_than_an_earlier_backfill_s_is_judged_by_the_next_backfill(cloud):
    """Two backfills of one key, an overwrite between them that sent no event (the notification was not there yet):
    both records carry the backfill sequencer, and the version S3 holds now wins."""
    cloud.s3.put_object(Bucket=cloud.uploads, Key="uploads/again.jpg", Body=images.jpeg(64, 48))
    assert results(cloud, "uploads/again.jpg") == [("Succeeded", "accepted")]
    newer = cloud.s3.put_object(Bucket=cloud.uploads, Key="uploads/again.jpg", Body=images.png(50, 40))["VersionId"]
    assert results(cloud, "uploads/again.jpg") == [("Succeeded", "accepted")]
    record = cloud.record("uploads/again.jpg")
    assert (record["version_id"], record["format"], record["status"]) == (newer, "png", "accepted")
    assert [p["claim"]["version_id"] for p in cloud.published()][-1] == newer
