"""The moderation gate through the local cloud: nothing a client can reach (the thumbnails bucket, and so the CDN)
ever holds a flagged image's pixels, watched while the stages run; every format is screened (a WebP and a JPEG over
Rekognition's S3 limit through a JPEG rendition); a person approves or rejects with `python -m ops review` under
exactly the stack's operator policy, and each decision is on the record; reprocess and overwrite go through the gate
again. The emulated DetectModerationLabels flags what carries its marker (localcloud/rekognition.py)."""
from __future__ import annotations

import contextlib
import html
import io
import json
import os
import re
import threading
import time
from decimal import Decimal
from unittest import mock

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from handlers import contracts, imaging, moderation, stages
from handlers.names import STATUS_TAG
from infra import capacity, settings
from localcloud import program, rekognition, samples
from localcloud.__main__ import wait_until_settled
from localcloud.cloud import LocalCloud
from ops.__main__ import main as ops_main
from ops.reprocess import request_for
from ops.target import LOCAL_HOME_VARIABLE, from_local
from tests.infra_helpers import ALARM, SUBSCRIPTION, statements

ON = {"moderation": True}
# A JPEG over Rekognition's 15 MB S3 limit: noise no encoder can make small, the marker in its corner.
OVERSIZE = {"width": 4000, "height": 3000, "noise": True, "quality": 100}


class ThumbnailWatch:
    """Every key that appears under thumbnails/ while the stages run, listed as often as the emulator answers."""

    def __init__(self, cloud: LocalCloud):
        self.cloud, self.seen, self.looks = cloud, set(), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        s3 = boto3.Session(**_admin(self.cloud)).client("s3", endpoint_url=self.cloud.endpoint)
        while not self._stop.is_set():
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.cloud.outputs["thumbnailsBucket"],
                                                                     Prefix="thumbnails/"):
                self.seen.update(obj["Key"] for obj in page.get("Contents", []))
            self.looks += 1
            time.sleep(0.02)

    def of(self, key: str) -> set[str]:
        return {k for k in self.seen if k.startswith(contracts.thumbnail_prefix(contracts.image_id(self.cloud.outputs["uploadsBucket"], key)))}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _admin(cloud: LocalCloud) -> dict[str, str]:
    env = cloud.emulator.environment()
    return {"aws_access_key_id": env["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
            "region_name": env["AWS_DEFAULT_REGION"]}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with LocalCloud(config=ON, workdir=tmp_path_factory.mktemp("moderation")) as running:
        running.write_discovery()
        yield running


@pytest.fixture(scope="module")
def watch(cloud):
    watching = ThumbnailWatch(cloud)
    yield watching
    watching.stop()


def ops(cloud: LocalCloud, *args: str) -> tuple[int, dict | str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), mock.patch.dict(os.environ, {LOCAL_HOME_VARIABLE: str(cloud.workdir)}):
        status = ops_main(["--local", *args])
    return status, json.loads(out.getvalue()) if "--json" in args else out.getvalue()


def settle(cloud: LocalCloud, uploads: dict[str, bytes]) -> dict[str, dict]:
    for key, data in uploads.items():
        cloud.upload(key, data)
    return wait_until_settled(cloud, list(uploads), 240).records


def tags(cloud: LocalCloud, key: str) -> dict[str, str]:
    record = cloud.records()[key]
    found = cloud.client("s3").get_object_tagging(Bucket=cloud.outputs["uploadsBucket"], Key=key,
                                                  VersionId=record["version_id"])["TagSet"]
    return {t["Key"]: t["Value"] for t in found}


def test_a_flagged_upload_never_has_a_thumbnail_while_the_stages_run(cloud, watch):
    records = settle(cloud, {"uploads/gate/clean.jpg": samples.jpeg(1200, 900),
                             "uploads/gate/flagged.jpg": samples.marked("jpeg", 1200, 900),
                             "uploads/gate/flagged.png": samples.marked("png", 800, 600)})
    looks = watch.looks
    assert records["uploads/gate/clean.jpg"]["status"] == "done"
    assert watch.of("uploads/gate/clean.jpg")  # the watch sees thumbnails as they are made
    for key in ("uploads/gate/flagged.jpg", "uploads/gate/flagged.png"):
        assert watch.of(key) == set()  # not one thumbnail, at any moment of its processing
        record = records[key]
        assert (record["status"], record["expected_stages"]) == ("quarantined", ["moderation", "thumbnails", "labels"])
        assert record["reason"] == "held for review (emulated): Violence 98.6%; Weapon Violence 98.6%"
        assert "thumbnails" not in record and "labels" not in record  # no other stage ever saw it
        assert tags(cloud, key) == {STATUS_TAG: "quarantined"}  # a lifecycle rule expires it unless someone decides
    time.sleep(1)
    assert watch.looks > looks and watch.of("uploads/gate/flagged.jpg") == set()


def _forge_passed(cloud: LocalCloud, key: str) -> None:
    """What an operator may send (sns:Publish to the topic for reprocess, sqs:SendMessage to every stage's queue for
    redrive): the image's claim check published marked as passed, and sent straight to the thumbnail and label queues;
    then wait until those two stages have taken it."""
    claim = request_for(cloud.records()[key], created=True)
    cloud.client("sns").publish(TopicArn=cloud.outputs["claimCheckTopicArn"], Message=claim.to_json(),
                                MessageAttributes=claim.message_attributes(passed=True))
    stages_urls = [cloud.outputs["queueUrls"][stage] for stage in ("thumbnails", "labels")]
    for url in stages_urls:
        cloud.client("sqs").send_message(QueueUrl=url, MessageBody=claim.to_json())
    time.sleep(2)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (any(sum(cloud.queue_depths()[url]) for url in stages_urls)
                                           or cloud.pollers["thumbnails"].busy or cloud.pollers["labels"].busy):
        time.sleep(0.5)


def test_a_claim_check_forged_as_passed_gets_nothing_of_an_image_the_gate_has_not_passed(cloud, watch):
    # Each stage reads the gate's verdict on the record (ImageRecord.admits), never the message's mark: forged while
    # the gate has not judged the image yet (paused here) and again once it has held it back, nothing is published.
    key = "uploads/gate/forged.jpg"
    assert ops(cloud, "pause", "moderation")[0] == 0
    try:
        cloud.upload(key, samples.marked("jpeg", 800, 600))
        deadline = time.monotonic() + 60
        while cloud.records().get(key, {}).get("status") != "accepted" and time.monotonic() < deadline:
            time.sleep(0.5)
        _forge_passed(cloud, key)
        record = cloud.records()[key]
        assert record["status"] == "accepted" and "thumbnails" not in record and "labels" not in record
        assert watch.of(key) == set()
    finally:
        assert ops(cloud, "resume", "moderation")[0] == 0
    assert wait_until_settled(cloud, [key], 120).records[key]["status"] == "quarantined"
    _forge_passed(cloud, key)
    record = cloud.records()[key]
    assert record["status"] == "quarantined" and "thumbnails" not in record and "labels" not in record
    assert watch.of(key) == set() and cloud.dead_letters() == []


def test_a_flagged_webp_and_an_oversize_jpeg_are_screened_through_a_jpeg_rendition(cloud, watch):
    oversize = samples.marked("jpeg", **OVERSIZE)
    assert len(oversize) > rekognition.S3_BYTES  # Rekognition would refuse the S3 object: ImageTooLargeException
    records = settle(cloud, {"uploads/gate/flagged.webp": samples.marked("webp", 1024, 768),
                             "uploads/gate/oversize.jpg": oversize})
    webp, big = records["uploads/gate/flagged.webp"], records["uploads/gate/oversize.jpg"]
    assert webp["status"] == big["status"] == "quarantined"
    assert {k: webp["moderation"]["screened"][k] for k in ("rendition", "format", "width", "height")} == {
        "rendition": "jpeg", "format": "webp", "width": 1024, "height": 768}
    assert {k: big["moderation"]["screened"][k] for k in ("rendition", "format", "width", "height")} == {
        "rendition": "jpeg", "format": "jpeg", "width": 2048, "height": 1536}
    assert big["moderation"]["screened"]["bytes"] <= rekognition.IMAGE_BYTES
    assert [{k: label[k] for k in ("name", "parent", "confidence", "level")} for label in webp["moderation"]["labels"]] == [
        {"name": "Violence", "parent": "", "confidence": Decimal("98.6"), "level": 1},
        {"name": "Weapon Violence", "parent": "Violence", "confidence": Decimal("98.6"), "level": 2}]
    assert webp["moderation"]["source"] == "emulated" and webp["moderation"]["blocked"] == ["Violence"]
    assert watch.of("uploads/gate/flagged.webp") == watch.of("uploads/gate/oversize.jpg") == set()


def test_a_category_that_is_not_blocked_is_recorded_and_passes(cloud):
    record = settle(cloud, {"uploads/gate/toast.png": samples.marked("png", marker=rekognition.YELLOW)})["uploads/gate/toast.png"]
    assert record["status"] == "done" and record["thumbnails"]["status"] == "done"
    assert [(label["name"], label["parent"]) for label in record["moderation"]["labels"]] == [
        ("Alcohol", ""), ("Alcoholic Beverages", "Alcohol")]
    assert record["moderation"]["status"] == "done" and record["moderation"]["screened"]["rendition"] == "jpeg"


def test_an_original_rekognition_refuses_is_screened_as_a_rendition_and_fails_when_none_can_be_made(cloud, watch):
    # A JPEG cut off mid-scan: Rekognition cannot read it from S3, and the thumbnail stage's decoder cannot make a
    # rendition of it either. It fails with the decoder's reason and nothing of it is ever published.
    key = "uploads/gate/truncated.jpg"
    record = settle(cloud, {key: samples.jpeg(1200, 900)[:6000]})[key]
    assert record["status"] == "failed"
    assert record["reason"] == "moderation: the image data is truncated"
    assert record["moderation"]["status"] == "failed" and "thumbnails" not in record and "labels" not in record
    assert watch.of(key) == set()


def test_review_lists_what_is_held_newest_first_on_a_page_only_the_operator_s_signature_opens(cloud, tmp_path):
    status, listed = ops(cloud, "--json", "review", "list", "--out", str(tmp_path))
    assert status == 0
    held = [item["key"] for item in listed["quarantined"]]
    assert held[:2] == ["uploads/gate/oversize.jpg", "uploads/gate/flagged.webp"]  # newest first
    assert {"uploads/gate/flagged.jpg", "uploads/gate/flagged.png"} <= set(held)
    assert listed["quarantined"][0]["screened"] == "jpeg rendition 2048x1536"
    page = (tmp_path / "review.html").read_text()
    for key in ("uploads/gate/flagged.jpg", "uploads/gate/flagged.webp"):
        tile = page.split(f'data-key="{key}"')[1].split("</article>")[0]
        [link] = {html.unescape(src) for src in re.findall(r'<img src="([^"]+)"', tile)}
        assert "X-Amz-Signature" in link and requests.get(link, timeout=10).status_code == 200
    # The operator may read a held original, and no other: the same signature on a passed one is refused.
    target = from_local(cloud.workdir / "up.json")
    clean = cloud.records()["uploads/gate/clean.jpg"]
    refused = target.client("s3").generate_presigned_url("get_object", ExpiresIn=60, Params={
        "Bucket": cloud.outputs["uploadsBucket"], "Key": "uploads/gate/clean.jpg", "VersionId": clean["version_id"]})
    assert requests.get(refused, timeout=10).status_code == 403


def operator_arn(cloud: LocalCloud) -> str:
    [policy] = [p.state["name"] for p in cloud.deployed.of_type("aws:iam/policy:Policy") if p.name.endswith("-operator")]
    return f"arn:aws:sts::123456789012:assumed-role/{policy}/localcloud"


def test_approve_releases_it_to_the_stages_with_the_decision_recorded(cloud, watch):
    status, text = ops(cloud, "review", "approve", "gate/flagged.jpg")
    assert status == 0 and text.startswith(f"uploads/gate/flagged.jpg: approved by {operator_arn(cloud)} at ")
    record = wait_until_settled(cloud, ["uploads/gate/flagged.jpg"], 120).records["uploads/gate/flagged.jpg"]
    assert record["status"] == "done" and record["thumbnails"]["status"] == "done" and record["labels"]["status"] == "done"
    assert {k: record["decision"][k] for k in ("decision", "by", "version_id")} == {
        "decision": "approved", "by": operator_arn(cloud), "version_id": record["version_id"]}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["decision"]["at"])
    assert tags(cloud, "uploads/gate/flagged.jpg") == {}  # no lifecycle rule expires it any more
    assert watch.of("uploads/gate/flagged.jpg")
    # Only a quarantined image is decided on: asking again for another one is refused with the reason.
    assert ops(cloud, "review", "approve", "gate/clean.jpg")[0] == 1


def test_reject_deletes_every_version_and_the_record_says_who_and_why(cloud):
    s3, bucket = cloud.client("s3"), cloud.outputs["uploadsBucket"]
    cloud.upload("uploads/gate/flagged.png", samples.marked("png", 640, 480))  # a second version, held back again
    wait_until_settled(cloud, ["uploads/gate/flagged.png"], 120)
    assert len(s3.list_object_versions(Bucket=bucket, Prefix="uploads/gate/flagged.png")["Versions"]) == 2
    status, text = ops(cloud, "review", "reject", "gate/flagged.png")
    assert status == 0 and "2 version(s) deleted; its record is deleted." in text
    listed = s3.list_object_versions(Bucket=bucket, Prefix="uploads/gate/flagged.png")
    assert listed.get("Versions", []) == [] and listed.get("DeleteMarkers", []) == []
    record = cloud.records()["uploads/gate/flagged.png"]
    assert record["status"] == "deleted"
    assert record["reason"] == f"rejected by {operator_arn(cloud)} at {record['decision']['at']}: every version deleted"
    assert (record["decision"]["decision"], record["decision"]["by"]) == ("rejected", operator_arn(cloud))


def test_an_operator_cannot_write_a_record_and_the_gate_carries_out_only_a_decision_about_what_it_holds(cloud, watch):
    # Operators decide through the gate: with exactly the operator policy the table refuses their writes (a record
    # set quarantined, or a gate verdict set to a pass, would delete a live image's thumbnails or skip the gate).
    target = from_local(cloud.workdir / "up.json")
    clean = cloud.records()["uploads/gate/clean.jpg"]
    with pytest.raises(ClientError) as refused:
        target.client("dynamodb").update_item(
            TableName=cloud.outputs["tableName"], Key={"image_id": {"S": clean["image_id"]}},
            UpdateExpression="SET #s = :q", ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":q": {"S": "quarantined"}})
    assert refused.value.response["Error"]["Code"] in ("AccessDeniedException", "AccessDenied")
    # A decision sent straight to the gate's queue about an image it does not hold back (done, passed), and one about
    # a held image naming another version, change nothing.
    held_key = "uploads/gate/decoy.jpg"
    held = settle(cloud, {held_key: samples.marked("jpeg", 640, 480)})[held_key]
    assert held["status"] == "quarantined"
    queue = cloud.outputs["queueUrls"]["moderation"]
    for record, version in ((clean, clean["version_id"]), (held, "another-version")):
        request = contracts.DecisionRequest(bucket=record["bucket"], key=record["key"], version_id=version,
                                            sequencer=record["sequencer"], decision="approved", by="someone",
                                            at="2026-12-07T00:00:00Z")
        target.client("sqs").send_message(QueueUrl=queue, MessageBody=request.to_json())
    time.sleep(2)
    deadline = time.monotonic() + 60
    while not cloud.idle() and time.monotonic() < deadline:
        time.sleep(0.5)
    now = cloud.records()
    assert now[held_key]["status"] == "quarantined" and "decision" not in now[held_key] and watch.of(held_key) == set()
    assert now["uploads/gate/clean.jpg"]["status"] == "done" and "decision" not in now["uploads/gate/clean.jpg"]
    assert tags(cloud, held_key) == {STATUS_TAG: "quarantined"}


def test_an_overwrite_is_screened_again_even_of_an_approved_image(cloud, watch):
    key = "uploads/gate/flagged.jpg"  # approved above: done, with thumbnails
    approved = cloud.records()[key]
    cloud.upload(key, samples.marked("jpeg", 900, 600))
    record = wait_until_settled(cloud, [key], 120).records[key]
    assert record["status"] == "quarantined" and "decision" not in record  # a new version, a new decision to take
    assert record["version_id"] != approved["version_id"]
    new_version = contracts.thumbnail_prefix(record["image_id"]) + record["version_id"]
    assert not any(k.startswith(new_version) for k in watch.seen)

    def gone() -> bool:  # the approved version's thumbnails go with it
        listed = cloud.client("s3").list_objects_v2(Bucket=cloud.outputs["thumbnailsBucket"],
                                                     Prefix=contracts.thumbnail_prefix(record["image_id"]))
        return "Contents" not in listed
    deadline = time.monotonic() + 60
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert gone()
    # and a passed image overwritten with a flagged one
    cloud.upload("uploads/gate/clean.jpg", samples.marked("jpeg", 640, 480))
    assert wait_until_settled(cloud, ["uploads/gate/clean.jpg"], 120).records["uploads/gate/clean.jpg"]["status"] == "quarantined"


def test_a_reprocess_goes_through_the_gate_and_never_republishes_what_it_never_saw(cloud, watch):
    """A done image the gate passed is reprocessed to the new sizes. A done image it never saw (one done before
    moderation was switched on: its record names no gate) is screened first, and held back now: its thumbnails go."""
    settle(cloud, {"uploads/gate/earlier.jpg": samples.marked("jpeg", 640, 480), "uploads/gate/fine.jpg": samples.jpeg()})
    assert ops(cloud, "review", "approve", "gate/earlier.jpg")[0] == 0
    records = wait_until_settled(cloud, ["uploads/gate/earlier.jpg"], 120).records
    earlier = records["uploads/gate/earlier.jpg"]
    assert earlier["status"] == "done" and watch.of("uploads/gate/earlier.jpg")
    # What a stack that turned moderation on holds for an image done before: no gate, no verdict, no decision.
    cloud._session().resource("dynamodb", endpoint_url=cloud.endpoint_of("dynamodb")).Table(cloud.outputs["tableName"]).update_item(
        Key={"image_id": earlier["image_id"]}, UpdateExpression="REMOVE #g, #m, #d",
        ExpressionAttributeNames={"#g": "gate", "#m": "moderation", "#d": "decision"})
    cloud.update({"thumbnailSizes": [300, 100]})  # `pulumi config set` and `pulumi up`
    cloud.write_discovery()
    status, run = ops(cloud, "--json", "reprocess", "--prefix", "uploads/gate/", "--rate", "50")
    assert status == 0 and run["requested"] >= 3  # earlier, fine, toast (and flagged.jpg if it is done)

    def both() -> dict[str, dict] | None:
        now = cloud.records()
        fine, again = now["uploads/gate/fine.jpg"], now["uploads/gate/earlier.jpg"]
        remade = {int(o["width"]) for o in fine["thumbnails"]["outputs"]} == {300, 100}
        return now if remade and again["status"] == "quarantined" else None
    deadline = time.monotonic() + 120
    while not both() and time.monotonic() < deadline:
        time.sleep(1)
    now = both()
    assert now is not None, {k: (r["status"], r.get("thumbnails", {}).get("settings")) for k, r in cloud.records().items()}
    assert now["uploads/gate/earlier.jpg"]["reason"].startswith("held for review (emulated): Violence")
    deadline = time.monotonic() + 60
    prefix = contracts.thumbnail_prefix(earlier["image_id"])
    while "Contents" in cloud.client("s3").list_objects_v2(Bucket=cloud.outputs["thumbnailsBucket"], Prefix=prefix):
        assert time.monotonic() < deadline, "the thumbnails of an image held back on reprocess were not removed"
        time.sleep(0.5)
    cloud.update({"thumbnailSizes": [1024, 512, 128]})
    cloud.write_discovery()


def test_turning_moderation_on_screens_the_images_already_done_and_an_approve_makes_their_thumbnails_again(cloud, watch):
    """`reprocess --unscreened` sends the done images no gate saw (done before `moderation` was on) to the gate: a
    clean one gains its verdict and keeps its thumbnails; a flagged one is held back and loses them; approved, its
    thumbnails are made again (the results of its earlier pass are cleared, not taken for the new ones)."""
    keys = {"uploads/before/flagged.jpg": samples.marked("jpeg", 640, 480), "uploads/before/clean.jpg": samples.jpeg()}
    settle(cloud, keys)
    assert ops(cloud, "review", "approve", "before/flagged.jpg")[0] == 0  # done, as if before moderation
    records = wait_until_settled(cloud, list(keys), 120).records
    table = cloud._session().resource("dynamodb", endpoint_url=cloud.endpoint_of("dynamodb")).Table(cloud.outputs["tableName"])
    for key in keys:  # what a stack that turned moderation on holds for an image done before: no gate, no verdict
        table.update_item(Key={"image_id": records[key]["image_id"]}, UpdateExpression="REMOVE #g, #m, #d",
                          ExpressionAttributeNames={"#g": "gate", "#m": "moderation", "#d": "decision"})
    clean_thumbnails = {o["key"] for o in records["uploads/before/clean.jpg"]["thumbnails"]["outputs"]}
    status, dry = ops(cloud, "--json", "reprocess", "--prefix", "uploads/before/", "--unscreened", "--dry-run")
    assert status == 0 and dry["requested"] == 2
    assert ops(cloud, "--json", "reprocess", "--prefix", "uploads/before/", "--unscreened")[0] == 0
    flagged_prefix = contracts.thumbnail_prefix(records["uploads/before/flagged.jpg"]["image_id"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = cloud.records()
        thumbs = cloud.client("s3").list_objects_v2(Bucket=cloud.outputs["thumbnailsBucket"], Prefix=flagged_prefix)
        if (now["uploads/before/flagged.jpg"]["status"] == "quarantined" and "Contents" not in thumbs
                and "moderation" in now["uploads/before/clean.jpg"]):
            break
        time.sleep(0.5)
    now = cloud.records()
    assert now["uploads/before/flagged.jpg"]["status"] == "quarantined"
    assert "Contents" not in cloud.client("s3").list_objects_v2(Bucket=cloud.outputs["thumbnailsBucket"], Prefix=flagged_prefix)
    clean = now["uploads/before/clean.jpg"]
    assert clean["status"] == "done" and clean["moderation"]["status"] == "done"
    assert {o["key"] for o in clean["thumbnails"]["outputs"]} == clean_thumbnails
    assert ops(cloud, "--json", "reprocess", "--prefix", "uploads/before/", "--unscreened", "--dry-run")[1]["requested"] == 0
    assert ops(cloud, "review", "approve", "before/flagged.jpg")[0] == 0
    again = wait_until_settled(cloud, ["uploads/before/flagged.jpg"], 120).records["uploads/before/flagged.jpg"]
    assert again["status"] == "done" and again["labels"]["status"] == "done"
    made = {o["key"] for o in again["thumbnails"]["outputs"]}
    listed = {o["Key"] for o in cloud.client("s3").list_objects_v2(Bucket=cloud.outputs["thumbnailsBucket"],
                                                                    Prefix=flagged_prefix).get("Contents", [])}
    assert made and listed == made


def test_the_emulated_quota_refuses_calls_over_moderation_tps(cloud):
    from concurrent.futures import ThreadPoolExecutor

    from botocore.config import Config

    # No retries of its own: botocore retries a throttled call, which would hide the refusal.
    client = boto3.Session(**_admin(cloud)).client("rekognition", endpoint_url=cloud.endpoint,
                                                   config=Config(retries={"mode": "standard", "max_attempts": 1}))
    image = samples.jpeg(200, 150)

    def call(_: int) -> str:
        try:
            client.detect_moderation_labels(Image={"Bytes": image})
        except ClientError as error:
            return str(error.response["Error"]["Code"])
        return "answered"
    started = time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(call, range(40)))  # 40 at once against a bucket of moderationTps (5) a second
    elapsed = time.monotonic() - started
    assert set(answers) == {"answered", "ProvisionedThroughputExceededException"}
    assert answers.count("answered") <= 5 + 5 * elapsed + 1  # a full bucket, then 5 a second
    assert cloud.emulator.stats()["refused_over_quota"]["rekognition.DetectModerationLabels"] >= answers.count(
        "ProvisionedThroughputExceededException")


def test_the_gate_s_role_allows_exactly_what_it_used(cloud):
    fn = cloud.deployed.named("claimcheck-moderation-stage-function")
    used = {action for action, _ in cloud.emulator.stats()["used"][fn.state["name"]]}
    role = next(r.state["name"] for r in cloud.deployed.of_type("aws:iam/role:Role") if r.state["arn"] == fn.inputs["role"])
    granted = {a for p in cloud.deployed.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == role
               for s in statements(p) for a in s["Action"]}
    # s3:GetObject covers a GET without a version, s3:ListBucket lets S3 say 404 for a missing upload (iam.read_uploads)
    platform = {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords",
                "sqs:GetQueueAttributes", "s3:GetObject", "s3:ListBucket"}
    assert granted - platform == used - platform == {
        "dynamodb:GetItem", "dynamodb:UpdateItem", "rekognition:DetectModerationLabels", "s3:GetObjectVersion",
        "s3:PutObjectVersionTagging", "s3:GetObjectVersionTagging", "s3:DeleteObjectVersionTagging", "sns:Publish", "kms:GenerateDataKey", "kms:Decrypt", "sqs:ReceiveMessage",
        "sqs:DeleteMessage"}


def test_the_operator_policy_grew_by_exactly_what_review_used(cloud):
    """The policy of a stack with the gate, less the default stack's, is what the stage declares for review, and
    review used every action of it."""
    def actions(deployment: program.Deployment) -> set[str]:
        [policy] = [p for p in deployment.of_type("aws:iam/policy:Policy") if p.name.endswith("-operator")]
        return {a for s in statements(policy) for a in s["Action"]}
    grown = actions(cloud.deployed) - actions(program.run(program.RecordingMocks(), {}))
    [policy] = [p.state["name"] for p in cloud.deployed.of_type("aws:iam/policy:Policy") if p.name.endswith("-operator")]
    used = {action for action, _ in cloud.emulator.stats()["used"][policy]}
    assert grown == {"s3:GetObjectVersion", "s3:ListBucketVersions", "s3:DeleteObjectVersion"}  # no table write
    assert grown <= used


# --- the emulated rule, on its own -----------------------------------------------------------------------------------

def _ask(data: bytes, **request: object) -> dict:
    import base64

    return rekognition.detect_moderation_labels({"Image": {"Bytes": base64.b64encode(data)}, **request}, lambda *a: None)


@pytest.mark.parametrize("data, code", [
    (samples.webp(320, 200), "InvalidImageFormatException"),  # JPEG and PNG only
    (samples.jpeg(60, 40), "InvalidParameterException"),  # under 80 pixels a side
    (samples.marked("jpeg", 3000, 2000, noise=True, quality=100), "ImageTooLargeException"),  # over 5 MB as bytes
    (samples.jpeg(1200, 900)[:6000], "InvalidImageFormatException"),  # cut off mid-scan: no image to judge
])
def test_the_emulated_operation_refuses_what_rekognition_refuses(data, code):
    with pytest.raises(rekognition.RekognitionError) as refused:
        _ask(data)
    assert refused.value.code == code


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "gif", "tiff", "heic", "avif"])
def test_every_allowed_format_has_a_rendition_rekognition_reads_and_judges_as_the_original(fmt):
    # What the gate sends for a format Rekognition cannot read from S3 (and for any original it refuses): a JPEG of
    # what the thumbnail stage would show (a GIF's first frame, the only one it thumbnails), within the bytes and the
    # sides Rekognition takes as bytes, and flagged for the same marker the original carries.
    if fmt == "heic":
        import pillow_heif

        pillow_heif.register_heif_opener()
    limits, encoded = imaging.Limits(max_pixels=50_000_000, max_frames=100), {"heic": "HEIF"}.get(fmt, fmt.upper())
    for width, height in ((1200, 900), (60, 40)):  # the small one is enlarged to Rekognition's 80 pixels a side
        [(jpeg, made_width, made_height, background)] = moderation.rendition(samples.marked(encoded, width, height),
                                                                            limits, fmt)
        assert jpeg[:3] == b"\xff\xd8\xff" and len(jpeg) <= rekognition.IMAGE_BYTES and background == ""  # opaque
        assert min(made_width, made_height) >= rekognition.MIN_SIDE and made_width * height == made_height * width
        assert [label["Name"] for label in _ask(jpeg)["ModerationLabels"]] == ["Violence", "Weapon Violence"]
    [(clean, _, _, _)] = moderation.rendition(samples.encode(samples.photo(640, 480), encoded), limits, fmt)
    assert _ask(clean)["ModerationLabels"] == []


@pytest.mark.parametrize("fmt", ["png", "webp", "gif", "tiff", "avif"])
def test_a_transparent_image_is_screened_as_it_shows_over_white_and_over_black(fmt):
    # Black pixels whose picture is all in the alpha channel: invisible drawn over black, plain over white (a page's
    # background, and the white a JPEG thumbnail is flattened onto). Rekognition's documentation does not say how it
    # reads alpha, so each view is screened; a PNG is never screened from S3 as it is.
    from PIL import Image, ImageDraw

    alpha = Image.new("L", (400, 300), 0)
    ImageDraw.Draw(alpha).rectangle((100, 75, 299, 224), fill=255)
    picture = Image.new("RGBA", (400, 300), (0, 0, 0, 0))
    picture.putalpha(alpha)
    data = samples.encode(picture if fmt != "gif" else picture.convert("RGBA"), fmt.upper(),
                          **({"lossless": True} if fmt == "webp" else {}))
    views = moderation.rendition(data, imaging.Limits(max_pixels=50_000_000, max_frames=100), fmt)
    assert [(width, height, background) for _, width, height, background in views] == [
        (400, 300, "white"), (400, 300, "black")]
    over_white, over_black = (Image.open(io.BytesIO(jpeg)).convert("L") for jpeg, _, _, _ in views)
    assert over_white.getpixel((200, 150)) < 40 and over_white.getpixel((20, 20)) > 215  # the picture shows
    assert over_black.getextrema()[1] < 40  # nothing shows
    assert moderation.needs_rendition("png", 10_000, 400, 300) and not moderation.needs_rendition("jpeg", 10_000, 400, 300)


def test_the_emulated_rule_flags_its_markers_only_and_honours_min_confidence():
    assert _ask(samples.jpeg(640, 480))["ModerationLabels"] == []
    assert [label["Name"] for label in _ask(samples.marked())["ModerationLabels"]] == ["Violence", "Weapon Violence"]
    assert _ask(samples.marked(), MinConfidence=99.0)["ModerationLabels"] == []
    assert _ask(samples.marked())["ModerationModelVersion"].startswith("emulated")
    with pytest.raises(rekognition.RekognitionError, match="Unable to get object"):
        rekognition.detect_moderation_labels({"Image": {"S3Object": {"Bucket": "b", "Name": "k"}}}, lambda *a: None)


# --- the program and the settings ------------------------------------------------------------------------------------

def uploads_rules(deployed: program.Deployment) -> set[str]:
    [rules] = [c.inputs["rules"] for c in deployed.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
               if c.inputs["bucket"] == deployed.outputs["uploadsBucket"]]
    return {rule["id"] for rule in rules}


def test_the_stack_with_the_gate_amends_every_other_stage_s_filter_and_the_intake_waits_for_it():
    deployed = program.run(program.RecordingMocks(), ON)
    filters = {s.parents[-1].rsplit(":", 1)[-1]: json.loads(s.inputs["filterPolicy"]) for s in deployed.of_type(SUBSCRIPTION)}
    assert filters == {"ModerationStage": {"gate": ["pending"]}, "ThumbnailStage": {"gate": ["clear"]},
                       "LabelStage": {"format": ["jpeg", "png"], "event": ["created"], "gate": ["clear"]}}
    intake = deployed.functions()["intake"].inputs["environment"]["variables"]
    assert json.loads(intake["STAGE_FILTERS"]) == {"moderation": {"gate": ["pending"]}, "thumbnails": filters["ThumbnailStage"],
                                                   "labels": filters["LabelStage"]}
    assert intake["GATE_STAGES"] == "moderation"
    assert "quarantined-originals-expire" in uploads_rules(deployed)
    [alarm] = [a for a in deployed.of_type(ALARM) if a.inputs["metricName"] == "Quarantined"]
    assert alarm.inputs["dimensions"] == {"service": "claimcheck-moderation"} and alarm.inputs["threshold"] == 0
    [policy] = [p for p in deployed.of_type("aws:iam/policy:Policy") if p.name.endswith("-operator")]
    [held] = [s for s in statements(policy) if "s3:GetObjectVersion" in s["Action"]]
    assert held["Condition"] == {"StringEquals": {f"s3:ExistingObjectTag/{STATUS_TAG}": "quarantined"}}


def test_without_the_setting_nothing_of_the_gate_is_deployed():
    deployed = program.run(program.RecordingMocks(), {})
    assert "moderation" not in deployed.functions()
    assert all("gate" not in json.loads(s.inputs.get("filterPolicy") or "{}") for s in deployed.of_type(SUBSCRIPTION))
    assert "quarantined-originals-expire" not in uploads_rules(deployed) and "failed-originals-expire" in uploads_rules(deployed)


def test_the_settings_refuse_a_category_rekognition_does_not_have_and_gates_stand_in_a_row():
    with pytest.raises(settings.SettingsError, match=r"moderationBlock = \['Nudity'\] is out of range \(accepted: a "
                                                     r"non-empty list without repeats of Rekognition's top-level "
                                                     r"categories: Explicit, "):
        settings.load({"moderation": "true", "moderationBlock": '["Nudity"]'})
    with pytest.raises(settings.SettingsError, match=r"moderationBlock = \[\] is out of range"):  # a gate holding nothing
        settings.load({"moderation": "true", "moderationBlock": "[]"})
    from dataclasses import dataclass

    from handlers.settings import StageSettings, setting

    @dataclass(frozen=True)
    class ScreenSettings:
        on: bool = setting(False, "screen", "bool", "A second gate.")

    second = stages.Stage(name="screen", component="ScreenStage", resource="screen-stage", description="A second gate.",
                          key="screenSize",
                          settings=ScreenSettings, sizing=StageSettings(256, 30, 10, 1, 2), order=16, gate=True,
                          deployed=lambda s: s.on)
    with stages.also(second, __name__):
        # Two gates stand in a row, in their order: each takes what the one before passed, the stages what the last did.
        both = stages.subscriptions(settings.load({"moderation": "true", "screen": "true"}).deployed)
        assert (both["moderation"]["gate"], both["screen"]["gate"], both["thumbnails"]["gate"]) == (
            ["pending"], ["moderation-passed"], ["clear"])
        assert settings.load({"screen": "true"}).configured("screen").stage.gate  # one gate alone is a stack


def test_capacity_counts_the_gate_and_its_own_quota():
    plan = capacity.plan(settings.load({"moderation": "true", "moderationTps": "3"}), rate=1, burst=100, megapixels=12,
                         fmt="jpeg")
    gate = plan.stages["moderation"]
    assert gate.binding.per_second == 3.0 and "DetectModerationLabels quota (moderationTps 3)" in gate.binding.name
    assert gate.binding.operation == "rekognition.DetectModerationLabels"  # what the local cloud's emulator holds to
    assert plan.usd_per_million["rekognition"] == pytest.approx(2000.0, abs=1)  # a screen and a label a million times
