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
from localcloud.program import RecordingMocks

POISON_FAULT = {"thumbnails": [{"operation": "s3.GetObject", "match": {"Key": "poison"}, "code": "InternalError", "status": 500}]}
FAST = {  # visibility timeouts of 6 s, so the poison message is retried and dead-lettered within ~20 s
    "intake": {"timeout": 1}, "thumbnails": {"timeout": 1}, "labels": {"timeout": 1}, "maxReceiveCount": 3,
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Deploy, upload a mixed batch, wait until everything settles, stop; return what happened."""
    workdir = tmp_path_factory.mktemp("localcloud")
    with LocalCloud(config=FAST, faults=POISON_FAULT, workdir=workdir) as cloud:
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
        put("uploads/over/written.jpg", samples.png(300, 200))  # overwrite with another format
        put("uploads/gone/deleted.webp", samples.webp(300, 300))
        cloud.delete("uploads/gone/deleted.webp")
        put("uploads/bad/notes.jpg", b"not an image at all\n")
        put("uploads/bad/empty.png", b"")
        put("uploads/bad/bomb.png", samples.png_header_only(20000, 20000))
        put("uploads/bad/poison.jpg", samples.jpeg(320, 240))  # its thumbnail stage fails every time
        summary = wait_until_settled(cloud, keys, timeout=120)
        thumbnails = sorted(o["Key"] for o in cloud.client("s3").list_objects_v2(
            Bucket=cloud.outputs["thumbnailsBucket"]).get("Contents", []))
        scanned = cloud.client("dynamodb").scan(TableName=cloud.outputs["tableName"])["Count"]
        stats = cloud.stats()
        threads = [t for t in threading.enumerate() if t.name.startswith("poller-")]
        pids = [pid for poller in cloud.pollers.values() for pid in poller.pids]
    return {"pids": pids, "summary": summary, "thumbnails": thumbnails, "records": scanned, "endpoint": endpoint,
            "stats": stats, "threads": threads}


def test_every_upload_is_accounted_for(run):
    summary = run["summary"]
    assert summary.unaccounted() == []
    expected = {
        "uploads/good/photo.jpg": "done", "uploads/good/chart.png": "done", "uploads/good/sunset.webp": "done",
        "uploads/dup/same.jpg": "done", "uploads/over/written.jpg": "done", "uploads/gone/deleted.webp": "deleted",
        "uploads/bad/notes.jpg": "rejected", "uploads/bad/empty.png": "rejected", "uploads/bad/bomb.png": "rejected",
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
    referenced = sorted(o["key"] for r in summary.records.values() if r.get("status") == "done"
                        for o in r["thumbnails"]["outputs"])
    assert run["thumbnails"] == referenced  # nothing missing, no orphans (overwritten or deleted versions)
    photo = summary.records["uploads/good/photo.jpg"]
    assert [(o["width"], o["height"]) for o in photo["thumbnails"]["outputs"]] == [(683, 1024), (341, 512), (85, 128)]


def test_labels_are_marked_emulated(run):
    records = run["summary"].records
    assert records["uploads/good/photo.jpg"]["labels"]["source"] == "emulated"
    assert "labels" not in records["uploads/good/sunset.webp"]  # WebP is never sent to Rekognition


def test_only_the_poison_message_is_dead_lettered_after_max_receives(run):
    letters = run["summary"].dead_letters
    assert [(d.queue, d.key) for d in letters] == [("thumbnails", "uploads/bad/poison.jpg")]
    assert letters[0].receive_count >= FAST["maxReceiveCount"]  # reading a DLQ counts as a receive too
    # A batch holding only the poison message fails as a whole; one with others reports it alone.
    stats = run["stats"]["thumbnails"]
    assert stats["item_failures"] + stats.get("function_errors", 0) == FAST["maxReceiveCount"]


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
