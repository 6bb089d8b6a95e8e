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

POISON_FAULT = {"thumbnails": [{"operation": "s3.GetObject", "match": {"Key": "poison"}, "code": "InternalError", "status": 500}]}
# Two seconds leave room for a cold first invocation (it creates its AWS clients) on a busy machine; the
# queues' visibility timeouts are then 12 s, so the poison message is dead-lettered within about 40 s.
FAST = {"intake": {"timeout": 2}, "thumbnails": {"timeout": 2}, "labels": {"timeout": 2}, "maxReceiveCount": 3}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Deploy, upload a mixed batch, wait until everything settles, stop; return what happened."""
    workdir = tmp_path_factory.mktemp("localcloud")
    # Every S3 event reaches the intake twice, as S3's at-least-once delivery allows.
    duplicates = {"intake": Chaos(duplicate_rate=1.0, seed=1)}
    with LocalCloud(config=FAST, faults=POISON_FAULT, workdir=workdir, record_calls=True, chaos=duplicates) as cloud:
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
        wait_until_settled(cloud, ["uploads/over/written.jpg", "uploads/gone/deleted.webp"], timeout=60)
        put("uploads/over/written.jpg", samples.png(300, 200))  # overwrite a finished image with another format
        cloud.delete("uploads/gone/deleted.webp")  # and delete one: its thumbnails must go
        put("uploads/over/soon.jpg", samples.png(200, 200))  # the same, racing the first version's work
        cloud.delete("uploads/gone/soon.webp")
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
        calls = {stage: cloud.calls(stage) for stage in cloud.pollers}
        deployment = cloud.deployment
    return {"pids": pids, "calls": calls, "deployment": deployment, "summary": summary, "thumbnails": thumbnails, "records": scanned, "endpoint": endpoint,
            "stats": stats, "threads": threads}


def test_every_upload_is_accounted_for(run):
    summary = run["summary"]
    assert summary.unaccounted() == []
    expected = {
        "uploads/good/photo.jpg": "done", "uploads/good/chart.png": "done", "uploads/good/sunset.webp": "done",
        "uploads/dup/same.jpg": "done", "uploads/over/written.jpg": "done", "uploads/gone/deleted.webp": "deleted",
        "uploads/over/soon.jpg": "done", "uploads/gone/soon.webp": "deleted",
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
    # The intake saw the poison upload's event twice while it was pending, so it may have published it twice.
    assert {(d.queue, d.key) for d in letters} == {("thumbnails", "uploads/bad/poison.jpg")}
    assert 1 <= len(letters) <= 2
    assert all(d.receive_count >= FAST["maxReceiveCount"] for d in letters)  # reading a DLQ counts as a receive too
    # Each copy was delivered maxReceiveCount times, failing each time (alone in a batch, or reported alone);
    # a batch that timed out would add its other messages, which were then retried and finished.
    assert run["stats"]["thumbnails"]["failed_deliveries"] >= FAST["maxReceiveCount"] * len(letters), run["stats"]


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


# Called by Lambda's event source mapping and runtime on the function's behalf, never by the handler itself.
PLATFORM_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility",
                    "logs:CreateLogStream", "logs:PutLogEvents"}
STAGE_FUNCTIONS = {"intake": "claimcheck-intake-function", "thumbnails": "claimcheck-thumbnail-stage-function",
                   "labels": "claimcheck-label-stage-function"}


def required_permissions(call: dict, deployment) -> list[tuple[str, str, dict]]:
    """(IAM action, resource ARN, request context) a recorded AWS call needs, including what services do with
    the caller's permissions (SNS encrypting with KMS, Rekognition reading S3)."""
    service, operation, params = call["service"], call["operation"], call["params"]

    def get_object(bucket: str, key: str, versioned: bool) -> tuple[str, str, dict]:
        return ("s3:GetObjectVersion" if versioned else "s3:GetObject", f"arn:aws:s3:::{bucket}/{key}", {})

    if (service, operation) == ("s3", "GetObject"):
        return [get_object(params["Bucket"], params["Key"], "VersionId" in params)]
    if (service, operation) in (("s3", "PutObject"), ("s3", "DeleteObject")):
        action = "s3:PutObject" if operation == "PutObject" else "s3:DeleteObject"
        return [(action, f"arn:aws:s3:::{params['Bucket']}/{params['Key']}", {})]
    if (service, operation) == ("s3", "DeleteObjects"):
        return [("s3:DeleteObject", f"arn:aws:s3:::{params['Bucket']}/thumbnails/x", {})]
    if (service, operation) == ("s3", "ListObjectsV2"):
        return [("s3:ListBucket", f"arn:aws:s3:::{params['Bucket']}", {"s3:prefix": params.get("Prefix", "")})]
    if service == "dynamodb":
        table = next(t for t in deployment.of_type("aws:dynamodb/table:Table") if t.state["name"] == params["TableName"])
        return [(f"dynamodb:{operation}", table.state["arn"], {})]
    if (service, operation) == ("sns", "Publish"):
        topic = next(t for t in deployment.of_type("aws:sns/topic:Topic") if t.state["arn"] == params["TopicArn"])
        key = topic.inputs["kmsMasterKeyId"]
        return [("sns:Publish", params["TopicArn"], {}), ("kms:GenerateDataKey", key, {}), ("kms:Decrypt", key, {})]
    if (service, operation) == ("rekognition", "DetectLabels"):
        image = params["Image"]["S3Object"]
        return [("rekognition:DetectLabels", "*", {}), get_object(image["Bucket"], image["Name"], "Version" in image)]
    raise AssertionError(f"no IAM mapping for {service}.{operation}: teach the test")


def allows(statements: list[dict], action: str, resource: str, context: dict) -> bool:
    import fnmatch

    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if action not in actions or not any(fnmatch.fnmatchcase(resource, pattern) for pattern in resources):
            continue
        prefixes = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
        if prefixes and not any(fnmatch.fnmatchcase(context.get("s3:prefix", ""), p) for p in prefixes):
            continue
        return True
    return False


@pytest.mark.parametrize("stage", sorted(STAGE_FUNCTIONS))
def test_each_role_allows_the_calls_its_handler_made_and_nothing_else(run, stage):
    import json

    deployment, calls = run["deployment"], run["calls"][stage]
    assert calls, f"no calls were recorded for {stage}"
    fn = deployment.named(STAGE_FUNCTIONS[stage])
    role_name = next(r.state["name"] for r in deployment.of_type("aws:iam/role:Role") if r.state["arn"] == fn.inputs["role"])
    statements = [s for p in deployment.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == role_name
                  for s in json.loads(p.inputs["policy"])["Statement"]]
    needed = {need for call in calls for need in map(tuple, [(a, r, json.dumps(c)) for a, r, c in required_permissions(call, deployment)])}
    denied = [(a, r) for a, r, c in needed if not allows(statements, a, r, json.loads(c))]
    assert denied == []
    used = {a for a, _, _ in needed}
    # GetObject is authorized by s3:GetObject or s3:GetObjectVersion depending on the event; the handler does both kinds.
    if used & {"s3:GetObject", "s3:GetObjectVersion"}:
        used |= {"s3:GetObject", "s3:GetObjectVersion"}
    granted = {a for s in statements for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    assert granted - used - PLATFORM_ACTIONS == set()
