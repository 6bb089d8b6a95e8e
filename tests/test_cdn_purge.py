"""A CDN purge is durable: asked before the thumbnails are deleted, tried again until CloudFront accepts it.

CloudFront refuses an invalidation past 3,000 file paths (or 15 wildcard paths) in progress per distribution with
TooManyInvalidationsInProgress (CloudFront Developer Guide, "Concurrent invalidation request maximum"); a deleted
photo it keeps would be served for the cache's year. Here the thumbnail stage and the purge function run on moto,
with CloudFront's refusals played by a stand-in where moto has none.
"""
from __future__ import annotations

import json

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import ClientError

from handlers import aws, cdn_purge, contracts, environment, intake, thumbnails
from localcloud import samples as images
from localcloud.lambda_events import LambdaContext, sqs_event, sqs_record
from tests.conftest import failed_ids, invoke, s3_message
from tests.test_versions import assert_thumbnails_only_for_done, deliver


@pytest.fixture
def cdn(cloud, monkeypatch):
    """A distribution and the purge queue, wired as the program wires them; returns the distribution's id."""
    cf = aws.client("cloudfront")
    distribution = cf.create_distribution(DistributionConfig={
        "CallerReference": "t", "Comment": "", "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [{"Id": "o", "DomainName": "thumbs.s3.us-east-1.amazonaws.com",
                                              "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
        "DefaultCacheBehavior": {"TargetOriginId": "o", "ViewerProtocolPolicy": "https-only",
                                 "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                                 "MinTTL": 0}})["Distribution"]["Id"]
    queue = cloud.sqs.create_queue(QueueName="purge")["QueueUrl"]
    monkeypatch.setenv("DISTRIBUTION_ID", distribution)
    monkeypatch.setenv("PURGE_QUEUE_URL", queue)
    environment.load.cache_clear()
    return distribution


def waiting_requests(cloud) -> list[dict]:
    """Every purge request on the queue, received (and so in flight) as Lambda's poller would."""
    url = environment.load().purge_queue_url
    found = []
    while batch := cloud.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", []):
        found.extend(batch)
        for message in batch:
            cloud.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def run_purge(cloud, messages: list[dict] | None = None) -> tuple[list[dict], list[str]]:
    """The purge function on the waiting requests (or `messages`); returns (those messages, ids it handed back)."""
    messages = waiting_requests(cloud) if messages is None else messages
    records = [sqs_record(m["Body"], "arn:aws:sqs:us-east-1:123456789012:purge", message_id=m["MessageId"])
               for m in messages]
    response = cdn_purge.handler(sqs_event(records), LambdaContext(function_name="purge"))
    return messages, failed_ids(response)


def invalidations(distribution: str) -> list[list[str]]:
    cf = aws.client("cloudfront")
    listed = cf.list_invalidations(DistributionId=distribution)["InvalidationList"].get("Items", [])
    return [sorted(cf.get_invalidation(DistributionId=distribution, Id=i["Id"])["Invalidation"]["InvalidationBatch"]
                   ["Paths"]["Items"]) for i in listed]


def paths(record: dict) -> list[str]:
    return sorted(f"/{o['key']}" for o in record["thumbnails"]["outputs"])


def done(cloud, key: str) -> dict:
    deliver(cloud, cloud.put(key, images.webp(300, 200)))
    record = cloud.record(key)
    assert record["status"] == "done"
    return record


def test_a_deleted_image_s_thumbnails_are_invalidated_file_by_file(cloud, cdn):
    record = done(cloud, "uploads/a.webp")
    deliver(cloud, cloud.delete("uploads/a.webp"))
    assert cloud.thumbnail_keys() == []
    _, deferred = run_purge(cloud)
    assert deferred == [] and invalidations(cdn) == [paths(record)]  # exact paths: 3,000 may be in progress, not 15


def test_a_small_photo_is_stored_once_for_every_size_and_deleted_and_purged_once(cloud, cdn, monkeypatch):
    monkeypatch.setenv("THUMBNAIL_SIZES", "1024,512,128")
    environment.load.cache_clear()
    deliver(cloud, cloud.put("uploads/small.jpg", images.jpeg(100, 68)))
    record = cloud.record("uploads/small.jpg")
    [key] = cloud.thumbnail_keys()  # one object, not three identical ones
    assert record["status"] == "done" and key.endswith("/1024.jpg")
    assert [(int(o["box"]), o["key"], int(o["width"]), int(o["height"])) for o in record["thumbnails"]["outputs"]] == [
        (1024, key, 100, 68), (512, key, 100, 68), (128, key, 100, 68)]
    deliver(cloud, cloud.delete("uploads/small.jpg"))
    assert cloud.thumbnail_keys() == []
    messages, deferred = run_purge(cloud)
    assert len(messages) == 1 and deferred == [] and invalidations(cdn) == [[f"/{key}"]]


def test_many_images_are_forgotten_in_one_invalidation(cloud, cdn):
    records = [done(cloud, f"uploads/many/{i}.webp") for i in range(5)]
    for i in range(5):
        deliver(cloud, cloud.delete(f"uploads/many/{i}.webp"))
    messages, deferred = run_purge(cloud)
    assert len(messages) == 5 and deferred == []
    assert invalidations(cdn) == [sorted(p for r in records for p in paths(r))]


def refusing(monkeypatch, times: int) -> list[dict]:
    """CloudFront answers TooManyInvalidationsInProgress the first `times` calls, then accepts; returns the calls."""
    cf = aws.client("cloudfront")
    real, calls = cf.create_invalidation, []

    def create_invalidation(**kwargs):
        calls.append(kwargs)
        if len(calls) <= times:
            raise ClientError({"Error": {"Code": "TooManyInvalidationsInProgress", "Message": "Processing your request "
                               "will cause you to exceed the maximum number of in-progress wildcard invalidations."},
                               "ResponseMetadata": {"HTTPStatusCode": 400}}, "CreateInvalidation")
        return real(**kwargs)

    monkeypatch.setattr(cf, "create_invalidation", create_invalidation)
    return calls


def test_a_purge_cloudfront_refuses_is_tried_again_until_it_is_accepted(cloud, cdn, monkeypatch, emitted):
    record = done(cloud, "uploads/r.webp")
    deliver(cloud, cloud.delete("uploads/r.webp"))
    calls = refusing(monkeypatch, times=2)
    messages, deferred = run_purge(cloud)
    assert deferred == [messages[0]["MessageId"]] and invalidations(cdn) == []  # handed back to its queue, not acked
    assert run_purge(cloud, messages)[1] == [messages[0]["MessageId"]]  # refused again: back again
    assert run_purge(cloud, messages)[1] == []  # CloudFront accepts the third time
    assert invalidations(cdn) == [paths(record)] and emitted["PurgesDeferred"] == 2
    # Every try asks for the same purge: a batch CloudFront accepted but whose answer was lost gets it back.
    assert len({c["InvalidationBatch"]["CallerReference"] for c in calls}) == 1


def test_the_purge_is_asked_before_the_delete_so_a_failed_delete_loses_nothing(cloud, cdn, monkeypatch):
    record = done(cloud, "uploads/d.webp")
    s3, real = aws.client("s3"), aws.client("s3").delete_objects
    attempts = []

    def delete_objects(**kwargs):
        attempts.append(kwargs)
        if len(attempts) == 1:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "Reduce your request rate."}}, "DeleteObjects")
        return real(**kwargs)

    monkeypatch.setattr(s3, "delete_objects", delete_objects)
    assert invoke(intake, [s3_message(cloud.delete("uploads/d.webp"))])["batchItemFailures"] == []
    [removal] = [p["claim"] for p in cloud.published()]
    with pytest.raises(BatchProcessingError):  # the whole batch failed: SQS delivers it again
        invoke(thumbnails, [json.dumps(removal)])
    early = waiting_requests(cloud)
    assert len(early) == 1  # asked for already: durable before anything was deleted
    assert run_purge(cloud, early)[1] == [early[0]["MessageId"]]  # the thumbnails are still there: it waits
    assert invoke(thumbnails, [json.dumps(removal)])["batchItemFailures"] == []  # the retry deletes them
    assert cloud.thumbnail_keys() == []
    assert run_purge(cloud, early)[1] == []
    assert invalidations(cdn) == [paths(record)]


def test_an_interrupted_clean_up_is_finished_by_the_redelivery(cloud, cdn, monkeypatch):
    first = done(cloud, "uploads/o.webp")
    event = cloud.put("uploads/o.webp", images.webp(320, 200))
    assert invoke(intake, [s3_message(event)])["batchItemFailures"] == []
    [claim] = [p["claim"] for p in cloud.published()]
    real = thumbnails._clear
    monkeypatch.setattr(thumbnails, "_clear", lambda *a, **k: (_ for _ in ()).throw(TimeoutError("the invocation ended")))
    with pytest.raises(BatchProcessingError):  # recorded done, then cut short
        invoke(thumbnails, [json.dumps(claim)])
    assert cloud.record("uploads/o.webp")["status"] == "done"
    monkeypatch.setattr(thumbnails, "_clear", real)
    assert invoke(thumbnails, [json.dumps(claim)])["batchItemFailures"] == []  # SQS delivers it again
    assert_thumbnails_only_for_done(cloud)  # the first version's thumbnails are gone
    run_purge(cloud)
    assert invalidations(cdn) == [paths(first)]


def test_each_purge_of_one_image_is_its_own_invalidation(cloud, cdn, monkeypatch):
    record = done(cloud, "uploads/p.webp")
    gone = []
    for sizes in ("100", "50"):  # two settings changes, each reprocessed: each replaces the image's thumbnails
        monkeypatch.setenv("THUMBNAIL_SIZES", sizes)
        environment.load.cache_clear()
        before = cloud.record("uploads/p.webp")
        request = {"v": 1, "bucket": before["bucket"], "key": before["key"], "version_id": before["version_id"],
                   "etag": before["etag"], "size": int(before["size"]), "format": before["format"],
                   "sequencer": before["sequencer"], "event": "reprocess", "event_time": before["event_time"]}
        assert invoke(thumbnails, [json.dumps(request)])["batchItemFailures"] == []
        gone.append(paths(before))
        run_purge(cloud)
    # The same image and version twice: the old caller reference ({image}-{sequencer}) made CloudFront answer the
    # second purge with the first invalidation, and purge nothing.
    assert sorted(invalidations(cdn)) == sorted(gone) and gone[0] == paths(record)


def test_a_purge_request_for_thumbnails_a_record_shows_purges_nothing(cloud, cdn):
    record = done(cloud, "uploads/live.webp")
    forged = {"Body": contracts.PurgeRequest(tuple(o["key"] for o in record["thumbnails"]["outputs"])).to_json(),
              "MessageId": "forged"}
    assert run_purge(cloud, [forged])[1] == []  # acknowledged: nothing to forget
    assert invalidations(cdn) == [] and cloud.thumbnail_keys() == sorted(o["key"] for o in record["thumbnails"]["outputs"])


@pytest.mark.parametrize("body", [
    "not json", json.dumps({"v": 2, "keys": ["thumbnails/x"]}), json.dumps({"v": 1, "keys": []}),
    json.dumps({"v": 1, "keys": ["/*"]}), json.dumps({"v": 1, "keys": [f"thumbnails/{'a' * 32}/*"]}),
    json.dumps({"v": 1, "keys": ["uploads/secret.jpg"]}),
], ids=["not-json", "unknown-version", "no-keys", "everything", "wildcard", "not-a-thumbnail"])
def test_a_message_that_is_not_a_purge_request_is_dropped_and_counted(cloud, cdn, body, emitted):
    assert run_purge(cloud, [{"Body": body, "MessageId": "m"}])[1] == []  # no retry can fix it
    assert invalidations(cdn) == [] and emitted["InvalidPurgeRequests"] == 1


def test_a_purge_request_for_an_image_nobody_recorded_is_dropped_and_counted(cloud, cdn, emitted):
    # Well-formed keys of no image: CloudFront would charge for each path and spend its in-progress budget on them.
    made_up = contracts.PurgeRequest(tuple(f"thumbnails/{'e' * 32}/x/{n}.jpg" for n in range(100)))
    assert run_purge(cloud, [{"Body": made_up.to_json(), "MessageId": "forged"}])[1] == []
    assert invalidations(cdn) == [] and emitted["InvalidPurgeRequests"] == 1


def test_one_invocation_starts_one_invalidation_and_hands_the_rest_back(cloud, cdn, monkeypatch):
    monkeypatch.setattr(cdn_purge, "MAX_PATHS", 6)  # two images' three sizes (CloudFront's figure is 1,000 here)
    records = [done(cloud, f"uploads/cap/{i}.webp") for i in range(3)]
    for i in range(3):
        deliver(cloud, cloud.delete(f"uploads/cap/{i}.webp"))
    messages, deferred = run_purge(cloud)
    assert len(messages) == 3 and len(deferred) == 1 and len(invalidations(cdn)) == 1
    assert len(invalidations(cdn)[0]) == 6
    assert run_purge(cloud, [m for m in messages if m["MessageId"] in deferred])[1] == []
    assert sorted(p for batch in invalidations(cdn) for p in batch) == sorted(p for r in records for p in paths(r))
