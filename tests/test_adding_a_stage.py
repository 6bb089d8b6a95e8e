"""Adding a stage is adding its module: tests/stage_example.py declares a checksum stage, and with it declared (and
nothing else in the project changed) the program builds its queue, dead-letter queue, function, role, mapping,
subscription, alarms and dashboard widgets, the operator may watch and redrive it, the intake waits for it, the
settings take its keys, the capacity model and the cost table count it, `python -m ops status` reports it and the
local cloud runs it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from handlers import stages
from handlers.names import StackOutput
from infra import capacity, costs, settings
from localcloud import program, samples, soak
from localcloud.__main__ import wait_until_settled
from localcloud.cloud import LocalCloud
from ops import queues, render
from tests import stage_example
from tests.infra_helpers import ALARM, FUNCTION, MAPPING, QUEUE, ROLE, SUBSCRIPTION, dlq_arns, function_grants

ROOT = Path(__file__).resolve().parent.parent
COMPONENT = "claimcheck:index:ChecksumStage"
FILTER = {"format": ["jpeg", "png"], "event": ["created"]}


@pytest.fixture(scope="module")
def declared():
    with stages.also(stage_example.STAGE, stage_example.__name__) as stage:
        yield stage


@pytest.fixture(scope="module")
def stack(declared):
    return program.run(program.RecordingMocks(), {"checksums": json.dumps({"memory": 512})})


@pytest.mark.source
def test_nothing_of_the_project_names_the_stage():
    tracked = subprocess.run(["git", "ls-files", "handlers", "infra", "ops", "localcloud", "bench", "__main__.py",
                              "Pulumi.yaml"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    naming = [path for path in tracked if (ROOT / path).is_file() and any(
        word in (ROOT / path).read_text(errors="replace") for word in ('"checksums"', "checksumDigest", "stage_example", "ChecksumStage"))]
    assert naming == []


@pytest.mark.source
def test_the_readmes_example_is_the_modules_own_text():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Adding a stage"):]
    block = section[section.index("```python\n") + 10:section.index("\n```", section.index("```python"))]
    source = {line.rstrip() for line in Path(stage_example.__file__).read_text().splitlines()}
    shown = [line for line in block.splitlines() if line.strip() and line.strip() != "..."]
    assert len(shown) > 10 and [line for line in shown if line not in source] == []


def test_its_resources_are_built_under_its_own_component(stack):
    mine = [r for r in stack.resources if COMPONENT in r.parents]
    assert {r.typ for r in mine} >= {QUEUE, FUNCTION, MAPPING, SUBSCRIPTION, ALARM, ROLE,
                                     "aws:sqs/queuePolicy:QueuePolicy", "aws:cloudwatch/logGroup:LogGroup"}
    [component] = [r for r in stack.resources if r.typ == COMPONENT]
    assert component.name == "claimcheck-checksum-stage" and component.parents[-1] == "claimcheck:index:ClaimCheckPipeline"
    [fn] = [r for r in mine if r.typ == FUNCTION]
    assert fn.inputs["handler"] == "tests.stage_example.handler"
    assert fn.inputs["memorySize"] == 512 and fn.inputs["timeout"] == 30  # its size object, over its declared default
    variables = fn.inputs["environment"]["variables"]
    assert variables["CHECKSUM_DIGEST"] == "sha256" and variables["TABLE_NAME"] == stack.outputs["tableName"]
    [mapping] = [r for r in mine if r.typ == MAPPING]
    assert mapping.inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping.inputs["scalingConfig"]["maximumConcurrency"] == 2
    [queue] = [q for q in mine if q.typ == QUEUE and q.state["arn"] not in dlq_arns(stack)]
    assert stack.outputs["queueUrls"]["checksums"] == queue.state["url"]
    [dlq] = [q for q in mine if q.typ == QUEUE and q.state["arn"] in dlq_arns(stack)]
    assert json.loads(queue.inputs["redrivePolicy"])["deadLetterTargetArn"] == dlq.state["arn"]
    assert stack.outputs["deadLetterQueueUrls"]["checksums"] == dlq.state["url"]


def test_its_archive_holds_its_module_and_the_handlers_it_imports(stack):
    [fn] = [r for r in stack.of_type(FUNCTION) if COMPONENT in r.parents]
    with zipfile.ZipFile(fn.inputs["code"].path) as archive:
        names = set(archive.namelist())
    assert {"tests/__init__.py", "tests/stage_example.py", "handlers/stage.py", "handlers/records.py"} <= names
    assert "handlers/thumbnails.py" not in names and not any(n.startswith(("infra/", "localcloud/")) for n in names)


def test_its_subscription_and_the_intakes_wait_are_one_filter(stack):
    [subscription] = [s for s in stack.of_type(SUBSCRIPTION) if COMPONENT in s.parents]
    assert json.loads(subscription.inputs["filterPolicy"]) == FILTER
    assert subscription.inputs["rawMessageDelivery"] is True
    assert subscription.inputs["topic"] == stack.outputs["claimCheckTopicArn"]
    [intake] = [f for f in stack.of_type(FUNCTION) if f.inputs["handler"] == "handlers.intake.handler"]
    waits = json.loads(intake.inputs["environment"]["variables"]["STAGE_FILTERS"])
    assert waits["checksums"] == FILTER and set(waits) == {"thumbnails", "labels", "checksums"}


def test_its_role_allows_its_record_and_reading_uploads_only(stack):
    granted = function_grants(stack)["claimcheck-checksum-stage-function"]
    table = stack.named("claimcheck-images").state["arn"]
    uploads = stack.outputs["uploadsBucket"]
    assert granted["dynamodb:GetItem"] == {table} and granted["dynamodb:UpdateItem"] == {table}
    assert granted["s3:GetObject"] == granted["s3:GetObjectVersion"] == {f"arn:aws:s3:::{uploads}/uploads/*"}
    assert not {a for a in granted if a.startswith(("s3:Put", "s3:Delete", "sns:", "rekognition:"))}


def test_its_alarms_and_dashboard_watch_it(stack):
    mine = {a.inputs["metricName"]: a for a in stack.of_type(ALARM) if COMPONENT in a.parents}
    assert set(mine) >= {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage", "InvalidClaimChecks"}
    assert all(a.inputs["alarmActions"] == [stack.outputs["alarmTopicArn"]] for a in mine.values())
    assert mine["InvalidClaimChecks"].inputs["dimensions"]["service"] == "claimcheck-checksums"
    [board] = stack.of_type("aws:cloudwatch/dashboard:Dashboard")
    body = json.dumps(json.loads(board.inputs["dashboardBody"]))
    [fn] = [r for r in stack.of_type(FUNCTION) if COMPONENT in r.parents]
    queue_names = [q.state["name"] for q in stack.of_type(QUEUE) if COMPONENT in q.parents]
    assert fn.state["name"] in body and all(name in body for name in queue_names)


def test_the_operator_may_watch_redrive_and_pause_it(stack):
    [policy] = [p for p in stack.of_type("aws:iam/policy:Policy") if p.name == "claimcheck-operator"]
    allowed: dict[str, set[str]] = {}
    for statement in json.loads(policy.inputs["policy"])["Statement"]:
        for action in [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]:
            allowed.setdefault(action, set()).update([statement["Resource"]] if isinstance(statement["Resource"], str)
                                                     else statement["Resource"])
    queue, dlq = (next(q.state["arn"] for q in stack.of_type(QUEUE) if q.name == f"claimcheck-checksum-stage-{n}")
                  for n in ("queue", "dlq"))
    [mapping] = [m for m in stack.of_type(MAPPING) if COMPONENT in m.parents]
    assert {queue, dlq} <= allowed["sqs:GetQueueAttributes"] and dlq in allowed["sqs:StartMessageMoveTask"]
    assert queue in allowed["sqs:SendMessage"] and mapping.state["arn"] in allowed["lambda:GetEventSourceMapping"]
    [pause] = [f for f in stack.of_type(FUNCTION) if f.inputs["handler"] == "handlers.pause.handler"]
    assert "checksums" in json.loads(pause.inputs["environment"]["variables"]["STAGE_MAPPINGS"])


def test_its_settings_are_the_stacks_keys(declared):
    assert "checksumDigest" in settings.config_keys() and "checksums" in settings.config_keys()
    with pytest.raises(settings.SettingsError, match=r"checksumDigest.*sha256 \| sha512"):
        settings.load({"checksumDigest": "md5"})
    loaded = settings.load({"checksumDigest": "sha512", "checksums": json.dumps({"maxConcurrency": 3})})
    mine = loaded.configured("checksums")
    assert mine.settings.digest == "sha512" and mine.sizing.max_concurrency == 3


@dataclasses.dataclass(frozen=True)
class NoSettings:
    """A stage without settings of its own."""


@pytest.mark.parametrize(("subscription", "words"), [
    ({"format": [{"anything-but": ["gif"]}], "event": ["created"]}, "must list exact string values"),
    ({"owner": ["alice"]}, "which claim checks do not carry"),
], ids=["an SNS operator", "an attribute claim checks lack"])
def test_a_filter_the_intakes_wait_cannot_evaluate_is_refused_at_pulumi_up(subscription, words):
    # SNS would deliver by it, but the intake would not wait for the stage: its work would be skipped as settled.
    odd = dataclasses.replace(stage_example.STAGE, name="odd", component="OddStage", resource="odd-stage",
                              settings=NoSettings, subscription=lambda s: subscription)
    with stages.also(odd, stage_example.__name__), pytest.raises(settings.SettingsError, match=f"stage odd: .*{words}"):
        settings.load({})


def test_capacity_and_cost_count_it(declared):
    s = settings.load({})
    jpeg = capacity.plan(s, rate=1, burst=100, megapixels=12, fmt="jpeg")
    assert list(jpeg.stages) == ["intake", "thumbnails", "labels", "checksums"]
    mine = jpeg.stages["checksums"]
    assert mine.seconds_per_image == pytest.approx(0.05 + 12 * 0.002) and mine.max_concurrency == 2
    alone = costs.per_million([costs.StageCost.of(s.configured("checksums"), mine.seconds_per_image)], s.architecture)
    assert mine.usd_per_million == alone["total"] > 0
    assert sum(p.usd_per_million for p in jpeg.stages.values()) == pytest.approx(jpeg.usd_per_million["total"], abs=0.05)
    assert "checksums" not in capacity.plan(s, rate=1, burst=100, megapixels=12, fmt="webp").stages
    # Its share of the Regional concurrency is counted with the others'.
    assert s.concurrency.scaling["checksums"] == 2


def test_ops_show_prints_its_result(declared):
    item = {"key": "uploads/a.jpg", "status": "done", "expected_stages": ["thumbnails", "labels", "checksums"],
            "checksums": {"status": "done", "sha256": "ab"}, "labels": {"status": "unavailable", "reason": "quota"}}
    shown = render.record(item, emulated=False).splitlines()
    assert "  checksums: done" in shown and "  labels: unavailable (quota)" in shown


def test_a_price_of_its_own_is_counted_and_a_missing_one_is_named(declared):
    s = settings.load({})
    priced = dataclasses.replace(stage_example.STAGE.capacity, priced=lambda c: {"digest_check": 2.0},
                                 prices=(("digest_check", 0.5 / 1e6, "checks", "a made-up price"),))
    mine = dataclasses.replace(s.configured("checksums"), stage=dataclasses.replace(stage_example.STAGE, capacity=priced))
    assert costs.per_million([costs.StageCost.of(mine, 0.1)], s.architecture)["checks"] == 1.0  # 2 x $0.50 per million
    unpriced = dataclasses.replace(mine, stage=dataclasses.replace(mine.stage, capacity=dataclasses.replace(priced, prices=())))
    with pytest.raises(KeyError, match="no price for 'digest_check'"):
        costs.per_million([costs.StageCost.of(unpriced, 0.1)], s.architecture)


def test_the_soak_fails_its_calls_and_its_record(declared):
    rules = {(r["operation"], r["code"]) for r in soak.faults(0.1)["checksums"]}
    assert rules == {("s3.GetObject", "SlowDown"), ("dynamodb.UpdateItem", "ProvisionedThroughputExceededException"),
                     ("dynamodb.GetItem", "InternalServerError")}


def test_ops_status_reports_its_last_hour(declared):
    target = SimpleNamespace(outputs={StackOutput.QUEUE_URLS: {"intake": "q", "thumbnails": "q", "labels": "q",
                                                                "checksums": "q"}})
    reported = queues.hourly(target)  # type: ignore[arg-type]
    assert ("checksummed", "checksums", "Processed") in reported
    assert ("dropped claim checks", "checksums", "InvalidClaimChecks") in reported


def test_the_local_cloud_runs_it(declared, tmp_path):
    jpeg, webp = samples.jpeg(640, 480), samples.webp(320, 240)
    with LocalCloud(workdir=tmp_path) as cloud:
        assert cloud.outputs["queueUrls"]["checksums"]
        cloud.upload("uploads/sums/a.jpg", jpeg)
        cloud.upload("uploads/sums/b.webp", webp)
        summary = wait_until_settled(cloud, ["uploads/sums/a.jpg", "uploads/sums/b.webp"], timeout=120)
        used = cloud.emulator.stats()["used"]
        function = cloud.deployed.named("claimcheck-checksum-stage-function").state["name"]
    a, b = summary.records["uploads/sums/a.jpg"], summary.records["uploads/sums/b.webp"]
    assert a["status"] == "done" and a["expected_stages"] == ["thumbnails", "labels", "checksums"]
    assert {k: a["checksums"][k] for k in ("status", "sha256")} == {"status": "done", "sha256": hashlib.sha256(jpeg).hexdigest()}
    assert b["status"] == "done" and "checksums" not in b and "checksums" not in b["expected_stages"]
    # Under its own role (the emulator allows a call only if the role does): it read the very version its claim check
    # names, then its record, and wrote its result; its queue's calls are the mapping's.
    assert {action for action, _ in used[function]} == {"s3:GetObjectVersion", "dynamodb:GetItem", "dynamodb:UpdateItem",
                                                        "sqs:ReceiveMessage", "sqs:DeleteMessage"}
