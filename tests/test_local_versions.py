"""Versions, overwrites and deletes through the local cloud, whose emulator sends what S3 sends: ObjectRemoved:Delete
with the version id for a version deleted for good (a delete marker too), DeleteMarkerCreated for a plain delete."""
from __future__ import annotations

import pytest

from localcloud import samples
from localcloud.__main__ import wait_until_settled
from localcloud.cloud import LocalCloud
from localcloud.soak import apply


def thumbnails_of(cloud: LocalCloud) -> set[str]:
    listed = cloud.client("s3").list_objects_v2(Bucket=cloud.outputs["thumbnailsBucket"]).get("Contents", [])
    return {o["Key"] for o in listed}


def done_outputs(record: dict) -> set[str]:
    return {o["key"] for o in record["thumbnails"]["outputs"]} if record.get("status") == "done" else set()


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    keys = ["uploads/v/old-version.webp", "uploads/v/undelete.webp", "uploads/v/rejected.webp"]
    with LocalCloud(workdir=tmp_path_factory.mktemp("versions")) as cloud:
        for key in keys:
            cloud.upload(key, samples.webp(320, 200))
        wait_until_settled(cloud, keys, timeout=120)
        cloud.upload(keys[0], samples.webp(200, 320))  # a second version; then its first is cleaned up
        cloud.delete(keys[1])
        wait_until_settled(cloud, keys, timeout=120)
        seen = {"deleted": cloud.records()[keys[1]]["status"], "thumbnails": len(thumbnails_of(cloud))}
        apply(cloud, "delete-version", keys[0], None)
        apply(cloud, "undelete", keys[1], None)
        cloud.upload(keys[2], b"these are notes, not a photo\n")
        summary = wait_until_settled(cloud, keys, timeout=120)
        current = {key: cloud.client("s3").head_object(Bucket=cloud.outputs["uploadsBucket"], Key=key)["VersionId"]
                   for key in keys}
        return {"keys": keys, "summary": summary, "seen": seen, "current": current, "thumbnails": thumbnails_of(cloud)}


def test_deleting_an_old_version_leaves_the_live_image_alone(versions):
    key = versions["keys"][0]
    record = versions["summary"].records[key]
    assert record["status"] == "done" and record["version_id"] == versions["current"][key]
    assert (int(record["metadata"]["width"]), int(record["metadata"]["height"])) == (200, 320)  # the second version


def test_an_undelete_brings_the_image_back_with_thumbnails(versions):
    key = versions["keys"][1]
    assert versions["seen"]["deleted"] == "deleted"
    record = versions["summary"].records[key]
    assert record["status"] == "done" and record["version_id"] == versions["current"][key]
    assert done_outputs(record) <= versions["thumbnails"] and len(done_outputs(record)) == 2  # 1024 and 512 share its 320x200


def test_a_rejected_overwrite_takes_the_old_thumbnails_with_it(versions):
    record = versions["summary"].records[versions["keys"][2]]
    assert record["status"] == "rejected" and "not an image" in record["reason"]


def test_thumbnails_exist_only_for_done_records_and_exactly_their_sizes(versions):
    expected = set().union(*(done_outputs(r) for r in versions["summary"].records.values()))
    assert versions["thumbnails"] == expected
    for record in versions["summary"].records.values():
        if record["status"] == "done":
            assert sorted(int(o["box"]) for o in record["thumbnails"]["outputs"]) == [128, 512, 1024]


def test_formats_rekognition_cannot_read_are_processed_without_a_label_stage_on_a_dotted_stack(tmp_path):
    config = {"allowedFormats": ["webp", "gif"]}
    with LocalCloud(config=config, stack="prod.eu", workdir=tmp_path) as cloud:
        assert set(cloud.outputs["queueUrls"]) == {"intake", "thumbnails"}
        assert cloud.outputs["dashboardUrl"].endswith("#dashboards:name=claimcheck-prod-eu")
        cloud.upload("uploads/a.webp", samples.webp(300, 200))
        cloud.upload("uploads/b.gif", samples.gif(frames=3))
        cloud.upload("uploads/c.jpg", samples.jpeg(100, 100))
        summary = wait_until_settled(cloud, ["uploads/a.webp", "uploads/b.gif", "uploads/c.jpg"], timeout=120)
    assert [summary.status(k) for k in summary.uploaded] == ["done", "done", "rejected"]
    assert summary.records["uploads/c.jpg"]["reason"] == "JPEG images are not accepted (allowed: webp, gif)"
