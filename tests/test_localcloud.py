"""End to end through the local cloud: the unchanged program and handlers, every upload accounted for."""
from __future__ import annotations

import os
import socket
import threading

import pytest

from localcloud import samples
from localcloud.__main__ import wait_until_settled
from localcloud.cloud import LocalCloud
from localcloud.mocks import CloudMocks
from localcloud.outputs import UnknownResourceType
from localcloud.pollers import Chaos
from localcloud.program import RecordingMocks
from tests.infra_helpers import unused_grants

POISON_FAULT = {"thumbnails": [{"operation": "s3.GetObject", "match": {"Key": "poison"}, "code": "InternalError", "status": 500}]}
# Two seconds leave room for a cold first invocation (it creates its AWS clients) on a busy machine; the
# queues' visibility timeouts are then 12 s, so the poison message is dead-lettered within about 40 s.
# Timeouts of 2 s dead-letter a poison message in seconds; a batch of the largest images maxPixels allows must still
# fit in them (the settings refuse it otherwise), and these tests' photos are small.
FAST = {"intake": {"timeout": 2}, "thumbnails": {"timeout": 2}, "labels": {"timeout": 2}, "maxReceiveCount": 3,
        "maxPixels": 4_000_000}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Deploy, upload a mixed batch, wait until everything settles, stop; return what happened."""
    workdir = tmp_path_factory.mktemp("localcloud")
    # Every S3 event reaches the intake twice, as S3's at-least-once delivery allows.
    duplicates = {"intake": Chaos(duplicate_rate=1.0, seed=1)}
    with LocalCloud(config=FAST, faults=POISON_FAULT, workdir=workdir, chaos=duplicates) as cloud:
        endpoint = cloud.endpoint
        keys = []

        def put(key: str, data: bytes) -> None:
            cloud.upload(key, data)
            keys.append(key)

        put("uploads/good/photo.jpg", samples.jpeg(1200, 800, orientation=6))
        put("uploads/good/chart.png", samples.png(900, 600))
        put("uploads/good/sunset.webp", samples.webp(800, 500))
        twice = samples.jpeg(500, 400)
        put("uploads/dup/same.jpg", twice)
        put("uploads/dup/same.jpg", twice)  # the same bytes again: a second event for the same object
        put("uploads/over/written.jpg", samples.jpeg(640, 480))
        put("uploads/over/soon.jpg", samples.jpeg(640, 480))
        put("uploads/gone/deleted.webp", samples.webp(300, 300))
        put("uploads/gone/soon.webp", samples.webp(300, 300))
        old_version = cloud.upload("uploads/versions/kept.jpg", samples.jpeg(400, 300))["VersionId"]
        put("uploads/versions/kept.jpg", samples.jpeg(420, 300))
        wait_until_settled(cloud, ["uploads/over/written.jpg", "uploads/gone/deleted.webp", "uploads/versions/kept.jpg"],
                           timeout=60)
        # An old version deleted for good: the intake asks S3 for the current one, and the record, and changes nothing.
        cloud.client("s3").delete_object(Bucket=cloud.outputs["uploadsBucket"], Key="uploads/versions/kept.jpg",
                                         VersionId=old_version)
        put("uploads/over/written.jpg", samples.png(300, 200))  # overwrite a finished image with another format
        cloud.delete("uploads/gone/deleted.webp")  # and delete one: its thumbnails must go
        put("uploads/over/soon.jpg", samples.png(200, 200))  # the same, racing the first version's work
        cloud.delete("uploads/gone/soon.webp")
        put("uploads/bad/notes.jpg", b"not an image at all\n")
        put("uploads/bad/empty.png", b"")
        put("uploads/bad/bomb.png", samples.png_header_only(20000, 20000))
        put("uploads/bad/truncated.webp", samples.webp(400, 300)[:600])  # sniffs as WebP; fails to decode
        put("uploads/bad/poison.jpg", samples.jpeg(320, 240))  # its thumbnail stage fails every time
        summary = wait_until_settled(cloud, keys, timeout=120)
        thumbnails = sorted(o["Key"] for o in cloud.client("s3").list_objects_v2(
            Bucket=cloud.outputs["thumbnailsBucket"]).get("Contents", []))
        scanned = cloud.client("dynamodb").scan(TableName=cloud.outputs["tableName"])["Count"]
        stats = cloud.stats()
        threads = [t for t in threading.enumerate() if t.name.startswith("poller-")]
        pids = [pid for poller in cloud.pollers.values() for pid in poller.pids]
        used = cloud.emulator.stats()["used"]
        deployment = cloud.deployment
        depths = cloud.queue_depths()
        asked = {url: cloud.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"] for url in depths}
    return {"depths": depths, "asked": asked, "pids": pids, "used": used, "deployment": deployment, "summary": summary, "thumbnails": thumbnails, "records": scanned, "endpoint": endpoint,
            "stats": stats, "threads": threads}


def test_every_upload_is_accounted_for(run):
    summary = run["summary"]
    assert summary.unaccounted() == []
    expected = {
        "uploads/good/photo.jpg": "done", "uploads/good/chart.png": "done", "uploads/good/sunset.webp": "done",
        "uploads/dup/same.jpg": "done", "uploads/over/written.jpg": "done", "uploads/gone/deleted.webp": "deleted",
        "uploads/over/soon.jpg": "done", "uploads/gone/soon.webp": "deleted", "uploads/versions/kept.jpg": "done",
        "uploads/bad/notes.jpg": "rejected", "uploads/bad/empty.png": "rejected", "uploads/bad/bomb.png": "rejected", "uploads/bad/truncated.webp": "failed",
        "uploads/bad/poison.jpg": "dead-lettered",
    }
    assert {key: summary.status(key) for key in summary.uploaded} == expected


def test_one_record_per_upload_key_and_reasons_a_person_can_read(run):
    summary = run["summary"]
    assert run["records"] == len(summary.uploaded)
    assert summary.records["uploads/bad/notes.jpg"]["reason"] == "not an image: the content is a text file despite its .jpg name"
    assert summary.records["uploads/bad/empty.png"]["reason"] == "the file is empty (0 bytes)"
    assert "20000x20000" in summary.records["uploads/bad/bomb.png"]["reason"]
    assert summary.records["uploads/over/written.jpg"]["format"] == "png"  # the newer version won


def test_thumbnails_exist_exactly_for_finished_images(run):
    summary = run["summary"]
    referenced = sorted({o["key"] for r in summary.records.values() if r.get("status") == "done"
                         for o in r["thumbnails"]["outputs"]})  # sizes at or above a photo's share one key
    assert run["thumbnails"] == referenced  # nothing missing, no orphans (overwritten or deleted versions)
    photo = summary.records["uploads/good/photo.jpg"]
    assert [(o["width"], o["height"]) for o in photo["thumbnails"]["outputs"]] == [(683, 1024), (341, 512), (85, 128)]


def test_labels_are_marked_emulated(run):
    records = run["summary"].records
    assert records["uploads/good/photo.jpg"]["labels"]["source"] == "emulated"
    assert "labels" not in records["uploads/good/sunset.webp"]  # WebP is never sent to Rekognition


def test_only_the_poison_message_is_dead_lettered_after_max_receives(run):
    letters = run["summary"].dead_letters
    # The intake saw the poison upload's event twice while it was pending, so it may have published it twice.
    assert {(d.queue, d.key) for d in letters} == {("thumbnails", "uploads/bad/poison.jpg")}
    assert 1 <= len(letters) <= 2
    assert all(d.receive_count >= FAST["maxReceiveCount"] for d in letters)  # reading a DLQ counts as a receive too
    # Each copy was delivered maxReceiveCount times, failing each time (alone in a batch, or reported alone);
    # a batch that timed out would add its other messages, which were then retried and finished.
    assert run["stats"]["thumbnails"]["failed_deliveries"] >= FAST["maxReceiveCount"] * len(letters), run["stats"]


def test_the_wait_loop_reads_the_queue_depths_sqs_reports(run):
    # One request for every queue's depth, and the same numbers GetQueueAttributes gives for each.
    assert len(run["depths"]) == 6
    assert {url: (int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"]))
            for url, a in run["asked"].items()} == run["depths"]
    assert sum(sum(depth) for depth in run["depths"].values()) >= 1  # the poison message waits in its DLQ


def test_nothing_is_left_running(run):
    host, port = run["endpoint"].removeprefix("http://").split(":")
    assert host == "127.0.0.1"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=1).close()
    assert not [t for t in run["threads"] if t.is_alive()]
    assert run["pids"]
    for pid in run["pids"]:  # every execution environment was stopped and reaped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize("mocks", [RecordingMocks, CloudMocks])
def test_an_unknown_resource_type_is_an_error_that_names_it(mocks):
    with pytest.raises(UnknownResourceType, match="aws:ec2/instance:Instance"):
        mocks().create("aws:ec2/instance:Instance", "web", {})


STAGE_FUNCTIONS = {"intake": "claimcheck-intake-function", "thumbnails": "claimcheck-thumbnail-stage-function",
                   "labels": "claimcheck-label-stage-function"}


@pytest.mark.parametrize("stage", sorted(STAGE_FUNCTIONS))
def test_each_role_allows_what_its_function_used_and_nothing_else(run, stage):
    """The emulator judged every call each function made (and its poller made with its role) against the role,
    so nothing was refused (every upload settled); here every action the role grants must have been used."""
    deployment = run["deployment"]
    used = run["used"].get(deployment.named(STAGE_FUNCTIONS[stage]).state["name"], [])
    assert used, f"no calls were judged for {stage}"
    assert unused_grants(deployment, STAGE_FUNCTIONS[stage], used, reads_uploads=stage in ("intake", "thumbnails")) == set()
