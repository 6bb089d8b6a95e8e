"""Shared fixtures: an in-process AWS emulator with the pipeline's stores, for handler tests."""
from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from moto import mock_aws

from handlers import aws, environment, isolation
from localcloud.lambda_events import LambdaContext, sqs_event, sqs_record

REGION = "us-east-1"


def handler_environment(**config: str) -> dict[str, str]:
    """What the program puts in the functions' environments for a stack of `config` (as `pulumi config` gives it),
    each stage's settings encoded by their declarations, with the tests' resource names. Small limits where they
    keep the tests quick; the label stage unpaced (0: no share of a quota to keep to)."""
    from dataclasses import replace

    from handlers.settings import to_environment
    from infra import settings

    stack = settings.load({"maxUploadBytes": "5000000", "maxFrames": "50", "thumbnailSizes": "[256,128,64]",
                           "outputQuality": "85", "maxLabels": "10", "minConfidence": "50", **config})
    environment: dict[str, str] = {"TABLE_NAME": "images", "THUMBNAILS_BUCKET": "thumbs",
                                   "POWERTOOLS_SERVICE_NAME": "claimcheck-test", "POWERTOOLS_METRICS_NAMESPACE": "claimcheck"}
    for configured in stack.stages.values():
        values = configured.settings
        if hasattr(values, "calls_per_second"):
            values = replace(values, calls_per_second=0.0)
        environment.update(to_environment(values))
    return environment


HANDLER_ENV = handler_environment()


# mutmut gathers its stats in this process with MUTANT_UNDER_TEST=stats; read before pytest_sessionstart hides it.
GATHERING_STATS = os.environ.get("MUTANT_UNDER_TEST") == "stats"


def shared_scope(fixture_name: str, config: Any) -> str:
    """Module-wide for speed; one per test while mutmut gathers its stats (GATHERING_STATS), where it
    learns which tests run the code from what each test calls (a stack built once for a module counts only for its
    first test). A mutant's own run is a fresh process with the mutant on from the start: module-wide again."""
    return "function" if GATHERING_STATS else "module"


# make test's longest files, longest first (one file's seconds in a make test run, 2026-12-07, load 6-17; the order
# is what counts): its workers take whole files in the order collected (--dist loadfile --no-loadscope-reorder), so
# these start first and the many short files even out the end. In xdist's own order (most tests first) the one-test
# files of minutes came last, and one of them could run alone for minutes while the other worker stood idle.
SLOWEST_FIRST = ("test_ops.py",  # 376 s, one story: it cannot be split
                 "test_bench.py", "test_moderation.py", "test_readme.py",  # 219, 211, 207
                 "test_local_versions.py", "test_localcloud.py", "test_aws_rules.py", "test_local_rules.py",  # 148-115
                 "test_local_events.py", "test_local_security.py", "test_thumbnails.py", "test_local_upload.py",  # 108-91
                 "test_forgery.py", "test_intake.py", "test_edges.py", "test_edges_infra.py", "test_versions.py",  # 83-72
                 "test_cdn_purge.py", "test_adding_a_stage.py", "test_urns.py", "test_local_cdn.py")  # 68-57


def pytest_collection_modifyitems(items: list[Any]) -> None:
    """Each test file's tests together, a file's tests in the order they are written; the files in the order they
    were asked for, except under xdist (make test), where SLOWEST_FIRST come first. mutmut names a mutant's tests as
    a sorted set: interleaved, every switch between files tears down and rebuilds the module-wide stacks
    (shared_scope; an infra mutant's 104 tests took 30 s shuffled against 9 s grouped), and the operator story of
    tests/test_ops.py, run alphabetically, waited for a reprocess no earlier test had started."""
    distributed = bool(os.environ.get("PYTEST_XDIST_WORKER"))  # each worker collects; the controller takes its order
    first_seen: dict[Any, int] = {}
    for item in items:
        first_seen.setdefault(item.path, len(first_seen))

    def rank(item: Any) -> int:
        if distributed and item.path.parent.name == "tests" and item.path.name in SLOWEST_FIRST:
            return SLOWEST_FIRST.index(item.path.name)
        return len(SLOWEST_FIRST)

    items.sort(key=lambda item: (rank(item), first_seen[item.path], item.location[1] or 0))


def pytest_sessionstart(session: Any) -> None:
    """Under `make mutate`, a mutant of a module-level value takes effect in this session: the module was imported
    before the mutant was chosen (tests/mutation_ops.py, `activate`). While mutmut gathers its stats, subprocesses
    (the local cloud's functions, an archive imported in a clean interpreter) run the original code: they cannot
    record stats, having no mutmut configuration where they run (mutmut keeps the mode in this process too)."""
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    if mutant == "stats":
        del os.environ["MUTANT_UNDER_TEST"]
    elif "__mutmut_" in mutant:
        from tests import mutation_ops

        mutation_ops.activate(mutant)


@pytest.fixture(autouse=True, scope="session")
def no_decode_child_outlives_the_tests():
    """The thumbnail stage keeps its decode child warm between images; the test session ends it (a runner that
    waits for its own children, as mutmut does, must not reap it)."""
    yield
    isolation.reset()


@pytest.fixture(autouse=True, scope="session")
def settles_are_seen_soon():
    """The tests wait for uploads to settle as the demo does (localcloud/watch.py), but look at the queues four times
    a second rather than once: a wait ended on average half a second after the last upload settled, and make test
    waits dozens of times. A look is one request for every queue's depth."""
    from localcloud import watch

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(watch, "LOOK_EVERY_S", 0.25)
        yield


@pytest.fixture(autouse=True)
def _fake_credentials(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@dataclass
class Cloud:
    """The pipeline's stores in moto, and helpers that speak S3 and SQS the way AWS does."""

    s3: Any
    sqs: Any
    table: Any
    topic_arn: str
    capture_url: str
    uploads: str = "uploads-bucket"
    thumbnails: str = "thumbs"
    _sequence: itertools.count = field(default_factory=lambda: itertools.count(1))

    def put(self, key: str, data: bytes) -> dict[str, Any]:
        """Upload and return the S3 event record S3 would send for it."""
        response = self.s3.put_object(Bucket=self.uploads, Key=key, Body=data)
        return self.s3_event("ObjectCreated:Put", key, size=len(data), etag=response["ETag"].strip('"'),
                             version_id=response.get("VersionId"))

    def delete(self, key: str) -> dict[str, Any]:
        response = self.s3.delete_object(Bucket=self.uploads, Key=key)
        return self.s3_event("ObjectRemoved:DeleteMarkerCreated", key, version_id=response.get("VersionId"))

    def delete_version(self, key: str, version_id: str) -> dict[str, Any]:
        """Delete one version for good (a delete marker too: that is an undelete); S3 sends ObjectRemoved:Delete."""
        self.s3.delete_object(Bucket=self.uploads, Key=key, VersionId=version_id)
        return self.s3_event("ObjectRemoved:Delete", key, version_id=version_id)

    def versions(self, key: str) -> list[dict[str, Any]]:
        """Every version and delete marker of `key`, newest first."""
        listed = self.s3.list_object_versions(Bucket=self.uploads, Prefix=key)
        entries = [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]
        return sorted((e for e in entries if e["Key"] == key), key=lambda e: e["LastModified"], reverse=True)

    def s3_event(self, name: str, key: str, size: int = 0, etag: str | None = None,
                 version_id: str | None = None) -> dict[str, Any]:
        n = next(self._sequence)
        obj: dict[str, Any] = {"key": quote_plus(key), "sequencer": format(n * 1000 + 0x5F00000000, "018X")}
        if name.startswith("ObjectCreated"):
            obj.update(size=size, eTag=etag)
        if version_id:
            obj["versionId"] = version_id
        return {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION,
                "eventTime": f"2026-11-23T10:{n // 60 % 60:02}:{n % 60:02}.000Z", "eventName": name,  # one a second
                "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": self.uploads, "arn": f"arn:aws:s3:::{self.uploads}"},
                       "object": obj}}

    def record(self, key: str) -> dict[str, Any] | None:
        from handlers.contracts import image_id

        return self.table.get_item(Key={"image_id": image_id(self.uploads, key)}, ConsistentRead=True).get("Item")

    def published(self) -> list[dict[str, Any]]:
        """Claim checks published to the topic since the last call, with their attributes."""
        found = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.capture_url, MaxNumberOfMessages=10,
                                             MessageAttributeNames=["All"]).get("Messages", [])
            if not batch:
                return found
            for message in batch:
                found.append({"claim": json.loads(message["Body"]), "attributes": {
                    k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()}})
                self.sqs.delete_message(QueueUrl=self.capture_url, ReceiptHandle=message["ReceiptHandle"])

    def thumbnail_keys(self) -> list[str]:
        return sorted(o["Key"] for o in self.s3.list_objects_v2(Bucket=self.thumbnails).get("Contents", []))


@pytest.fixture
def cloud(monkeypatch):
    with mock_aws():
        aws.reset()
        environment.load.cache_clear()
        s3 = boto3.client("s3", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        sns = boto3.client("sns", region_name=REGION)
        dynamodb = boto3.resource("dynamodb", region_name=REGION)
        for bucket in ("uploads-bucket", "thumbs"):
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket="uploads-bucket", VersioningConfiguration={"Status": "Enabled"})
        table = dynamodb.create_table(TableName="images", BillingMode="PAY_PER_REQUEST",
                                      KeySchema=[{"AttributeName": "image_id", "KeyType": "HASH"}],
                                      AttributeDefinitions=[{"AttributeName": "image_id", "AttributeType": "S"}])
        topic_arn = sns.create_topic(Name="claim-checks")["TopicArn"]
        capture_url = sqs.create_queue(QueueName="capture")["QueueUrl"]
        capture_arn = sqs.get_queue_attributes(QueueUrl=capture_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=capture_arn, Attributes={"RawMessageDelivery": "true"})
        for name, value in {**HANDLER_ENV, "TOPIC_ARN": topic_arn}.items():
            monkeypatch.setenv(name, value)
        yield Cloud(s3=s3, sqs=sqs, table=table, topic_arn=topic_arn, capture_url=capture_url)
        aws.reset()
        environment.load.cache_clear()


@pytest.fixture
def emitted(monkeypatch):
    """Every metric the handlers emit from now on, by name, summed (a Counter)."""
    from collections import Counter

    from handlers import observability

    seen: Counter = Counter()
    real = observability.metrics.add_metric

    def add(name, unit, value):
        seen[name] += value
        return real(name=name, unit=unit, value=value)

    monkeypatch.setattr(observability.metrics, "add_metric", add)
    return seen


def invoke(module, bodies: list[str], function_name: str = "fn") -> dict[str, Any]:
    """Run a handler on one SQS batch, as Lambda would; returns its partial batch response."""
    records = [sqs_record(body, "arn:aws:sqs:us-east-1:123456789012:q", message_id=f"m{i}") for i, body in enumerate(bodies)]
    return module.handler(sqs_event(records), LambdaContext(function_name=function_name))


def s3_message(*events: dict[str, Any]) -> str:
    return json.dumps({"Records": list(events)})


def wait_until(check, timeout: float = 90.0, every: float = 0.25):
    """What `check` returns once it is truthy; AssertionError when it is not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"not within {timeout:.0f} s")


def failed_ids(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]
