"""Image events through the local cloud: the table's stream read by the events function under its own role (the
emulator judges every call by it), published to the stack's bus, and delivered by a consumer's rule to its queue, as
another team's service would receive them."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from localcloud import samples
from localcloud.__main__ import wait_until_settled
from localcloud.cloud import LocalCloud

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "schemas" / "events" / "image.v1.json").read_text())


@pytest.fixture(scope="module")
def delivered(tmp_path_factory):
    keys = ["uploads/e/harbour.jpg", "uploads/e/notes.jpg", "uploads/e/gone.webp"]
    with LocalCloud(workdir=tmp_path_factory.mktemp("events")) as cloud:
        ready = cloud.event_consumer("ready-consumer", {"source": ["claimcheck"], "detail-type": ["image.ready"]})
        every = cloud.event_consumer("every-consumer", {"source": ["claimcheck"], "detail-type": [{"prefix": "image."}]})
        cloud.upload(keys[0], samples.jpeg(640, 480))
        cloud.upload(keys[1], b"these are notes, not a photo\n")
        cloud.upload(keys[2], samples.webp(320, 200))
        wait_until_settled(cloud, keys, timeout=120)
        cloud.delete(keys[2])
        summary = wait_until_settled(cloud, keys, timeout=120)
        assert cloud.wait_for_events(timeout=60)
        [events_dlq] = [url for url in (cloud.client("sqs").list_queues().get("QueueUrls") or []) if "image-events-dlq" in url]
        waiting = cloud.client("sqs").get_queue_attributes(QueueUrl=events_dlq, AttributeNames=["ApproximateNumberOfMessages"])
        used = cloud.emulator.stats()["used"]
        function = cloud.deployed.functions()["image_events"].state["name"]
        first = {"ready": cloud.consumed(ready), "every": cloud.consumed(every)}
        # A settings change restarts every function (`pulumi up`): the stream is read on from where it was, as
        # Lambda keeps a mapping's position, so nothing settled before is announced again.
        cloud.update({"outputQuality": 80})
        cloud.upload("uploads/e/after.jpg", samples.jpeg(320, 240))
        wait_until_settled(cloud, ["uploads/e/after.jpg"], timeout=120)
        assert cloud.wait_for_events(timeout=60)
        return {"keys": keys, "summary": summary, **first, "after_update": cloud.consumed(every),
                "dlq": int(waiting["Attributes"]["ApproximateNumberOfMessages"]), "used": used.get(function, []),
                "bus_arn": cloud.outputs["eventBusArn"], "table": cloud.outputs["tableName"]}


def test_a_consumer_rule_on_image_ready_receives_the_ready_images_only(delivered):
    harbour, _, gone = delivered["keys"]
    assert sorted(e["detail"]["key"] for e in delivered["ready"]) == [gone, harbour]  # gone.webp was ready before its delete
    [event] = [e for e in delivered["ready"] if e["detail"]["key"] == harbour]
    jsonschema.validate(event, SCHEMA, format_checker=jsonschema.FormatChecker())
    record = delivered["summary"].records[harbour]
    detail = event["detail"]
    assert (event["detail-type"], detail["status"], detail["reason"]) == ("image.ready", "done", "")
    assert (detail["version_id"], detail["settled_at"]) == (record["version_id"], record["updated_at"])
    assert {o["key"] for o in detail["outputs"]["thumbnails"]["outputs"]} == {o["key"] for o in record["thumbnails"]["outputs"]}


def test_every_settle_is_one_event_and_nothing_is_dead_lettered(delivered):
    harbour, notes, gone = delivered["keys"]
    seen = sorted((e["detail"]["key"], e["detail-type"]) for e in delivered["every"])
    # gone.webp was ready, then deleted: two settles, one event each.
    assert seen == [(gone, "image.deleted"), (gone, "image.ready"), (harbour, "image.ready"), (notes, "image.rejected")]
    for event in delivered["every"]:
        jsonschema.validate(event, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert len({e["detail"]["id"] for e in delivered["every"]}) == 4
    assert delivered["dlq"] == 0


def test_after_a_settings_change_only_the_new_settle_is_announced(delivered):
    assert [(e["detail"]["key"], e["detail-type"]) for e in delivered["after_update"]] == [("uploads/e/after.jpg", "image.ready")]


def test_the_events_function_used_its_role_for_the_stream_and_the_bus_and_nothing_else(delivered):
    actions = {action for action, _ in delivered["used"]}
    assert {"dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:DescribeStream", "events:PutEvents"} <= actions
    assert actions <= {"dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:DescribeStream",
                       "events:PutEvents", "logs:CreateLogStream", "logs:PutLogEvents"}
    assert {resource for action, resource in delivered["used"] if action == "events:PutEvents"} == {delivered["bus_arn"]}
    assert all(f"table/{delivered['table']}/stream/" in resource
               for action, resource in delivered["used"] if action.startswith("dynamodb:"))
