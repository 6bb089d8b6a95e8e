"""The capacity plan: what `pulumi up` warns about (its refusals are in test_settings.py), the limit that binds each
stage, the burst's drain and oldest message, the memory tuning, and `python -m ops capacity` printing it for a
stack's configuration."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from handlers import stages, thumbnails
from handlers.names import Function
from infra import capacity, costs, settings
from infra.settings import SettingsError, load
from localcloud import program
from ops import __main__ as ops_cli
from tests.infra_helpers import MAPPING

DEFAULTS = load({})
ROOT = Path(__file__).resolve().parent.parent


def stack(**config) -> dict[str, str]:
    """Config as the Pulumi CLI hands it to the program: objects as JSON text."""
    return {key: json.dumps(value) if isinstance(value, dict) else str(value) for key, value in config.items()}


def test_every_capacity_problem_is_reported_at_once_with_the_other_errors():
    with pytest.raises(SettingsError) as raised:
        load(stack(accountConcurrency=30, concurrencyReserve=0, thumbnails={"timeout": 4}))
    text = str(raised.value)
    assert "claimcheck:maxConcurrency = " in text and "claimcheck:thumbnails.timeout = 4" in text


def test_the_timeout_the_refusal_names_is_the_smallest_that_passes():
    load(stack(thumbnails={"timeout": 15}))  # what the message for timeout 3 accepts
    with pytest.raises(SettingsError, match=r"thumbnails\.timeout = 14 "):
        load(stack(thumbnails={"timeout": 14}))
    # ... and a smaller maxPixels makes a short timeout enough
    load(stack(thumbnails={"timeout": 3}, maxPixels=6_000_000))


NEW_ACCOUNT = ROOT / "Pulumi.new-account.yaml"


def test_the_budget_adds_up_the_deployed_stages_and_the_reservations():
    budget = load(stack(uploadApi="true", uploadApiConcurrency="5")).concurrency
    assert (budget.quota, budget.reserved, budget.reserve) == (1000, {"upload API": 5}, 100)
    assert budget.scaling == {Function.INTAKE: 10, Function.THUMBNAILS: 20, Function.LABELS: 2}
    assert (budget.unreserved_minimum, budget.reservable, budget.stages_pool, budget.room) == (100, 900, 895, 863)
    # no label stage is deployed when no allowed format is one Rekognition reads: it takes nothing
    webp = load(stack(allowedFormats='["webp"]', uploadApi="true", uploadApiConcurrency="0")).concurrency
    assert webp.scaling == {Function.INTAKE: 10, Function.THUMBNAILS: 20} and webp.reserved == {}
    assert load(stack(accountConcurrency="40", concurrencyReserve="0")).concurrency.unreserved_minimum == 40


def test_the_new_account_example_fits_a_quota_of_10_and_reserves_nothing():
    s = settings.load_stack(NEW_ACCOUNT)  # what `pulumi up` checks, from the example stack file
    budget = s.concurrency
    assert (budget.quota, budget.reserved, budget.reservable, budget.room) == (10, {}, 0, 0)
    deployed = program.run(program.RecordingMocks(), settings.stack_config(NEW_ACCOUNT), stack="new-account")
    functions = deployed.functions()
    assert "reservedConcurrentExecutions" not in functions[Function.UPLOAD_API].inputs
    assert not [fn.name for fn in functions.values() if "reservedConcurrentExecutions" in fn.inputs]
    queue_fed = [m for m in deployed.of_type(MAPPING) if "/stream/" not in m.inputs["eventSourceArn"]]
    caps = [m.inputs["scalingConfig"]["maximumConcurrency"] for m in queue_fed]
    assert sorted(caps) == [2, 2, 4] and sum(caps) + s.concurrency_reserve == s.account_concurrency
    # The image events read the table's one shard one batch at a time: one execution at most, from the reserve.
    [stream] = [m for m in deployed.of_type(MAPPING) if "/stream/" in m.inputs["eventSourceArn"]]
    assert stream.inputs["parallelizationFactor"] == 1 and s.concurrency_reserve >= 1


def test_capacity_shows_the_accounts_quota_what_the_stack_reserves_and_the_room_left(capsys):
    assert ops_cli.main(["--stack", "new-account", "capacity", "--rate", "1/s", "--burst", "1000"]) == 0
    text = capsys.readouterr().out
    for line in ("account quota (accountConcurrency)             10",
                 "reserved by the stack                          0 (uploadApiConcurrency 0: the upload function shares",
                 "kept unreserved by Lambda                      10 (100, or the whole quota when it is smaller)",
                 "could still be reserved                        0",
                 "the stages at most (maxConcurrency)            8 (intake 2 + thumbnails 4 + labels 2)",
                 "kept for other functions (concurrencyReserve)  2",
                 "room left                                      0"):
        assert line in text
    assert ops_cli.main(["--stack", "dev", "--json", "capacity", "--set", "uploadApi=true"]) == 0
    found = json.loads(capsys.readouterr().out)["concurrency"]
    assert (found["quota"], found["reserved"], found["unreserved_minimum"], found["reservable"], found["room"]) == (
        1000, {"upload API": 5}, 100, 900, 863)


def test_label_environments_the_quota_keeps_waiting_are_warned_about_not_refused():
    assert settings.warnings(DEFAULTS) == []
    deployed = program.run(program.RecordingMocks(), {"labels": {"maxConcurrency": 20}})
    [warning] = [w for w in deployed.warnings if "labels.maxConcurrency" in w]
    assert "labels.maxConcurrency 20 could call DetectLabels 67 times a second, but rekognitionTps is 5" in warning
    assert "2 environments are enough" in warning
    assert settings.warnings(load(stack(labels={"maxConcurrency": 20}, rekognitionTps=100))) == []


def test_each_label_environment_is_paced_to_its_share_of_the_quota():
    deployed = program.run(program.RecordingMocks(), {"rekognitionTps": 30, "labels": {"maxConcurrency": 4}})
    labels = deployed.functions()[Function.LABELS]
    assert labels.inputs["environment"]["variables"]["REKOGNITION_CALLS_PER_SECOND"] == "7.5"


def test_the_pace_spaces_calls_to_the_rate(monkeypatch):
    from handlers import aws

    clock = {"now": 100.0}
    slept: list[float] = []
    monkeypatch.setattr(aws, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(aws, "sleep", lambda s: (slept.append(s), clock.update(now=clock["now"] + s)))
    pace = aws.Pace()
    for _ in range(3):
        pace.wait(2.0)
    assert slept == [0.5, 0.5]  # the first call goes at once, then one every half second
    clock["now"] += 10  # idle for a while: no debt is kept
    pace.wait(2.0)
    assert slept == [0.5, 0.5]
    pace.wait(0)  # not paced
    assert slept == [0.5, 0.5]


def test_the_default_stack_names_rekognition_as_the_limit_that_binds_labels():
    p = capacity.plan(DEFAULTS, 10, 100_000, 12)
    assert p.stages[Function.LABELS].binding.name.startswith("Rekognition's DetectLabels quota (rekognitionTps 5)")
    assert p.stages[Function.INTAKE].binding.name == "its maxConcurrency (10)"
    assert p.stages[Function.THUMBNAILS].binding.name == "its maxConcurrency (20)"
    assert p.sustained == 5.0
    # 10/s is more than labels takes: the queue never empties, the alarm fires, SQS would delete what waits
    assert math.isinf(p.stages[Function.LABELS].drain_seconds) and math.isinf(p.drain_seconds)
    assert any("grows without end" in note and "queueRetentionDays (4)" in note for note in p.notes)


def test_a_burst_drains_at_the_binding_rate_after_the_ramp():
    s = load(stack(rekognitionTps=50, labels={"maxConcurrency": 20}))
    p = capacity.plan(s, 0, 100_000, 12)
    thumbnails, labels = p.stages[Function.THUMBNAILS], p.stages[Function.LABELS]
    # thumbnails: 20 environments at ~0.24 s an image, the event source starting at 5 and adding 5 a second
    assert thumbnails.rate == pytest.approx(20 / thumbnails.seconds_per_image)
    assert thumbnails.ramp_seconds == pytest.approx((20 - 5) / 5)
    assert 100_000 / thumbnails.rate < thumbnails.drain_seconds < 100_000 / thumbnails.rate + thumbnails.ramp_seconds
    # labels: Rekognition's 50 a second, from the start (15 environments are enough, 5 start)
    assert labels.rate == 50 and labels.drain_seconds == pytest.approx(100_000 / 50, rel=0.01)
    # the intake passes the burst on at its 250 a second, so the last image reaches the labels queue after ~400 s
    # and waits there until the queue drains
    intake = p.stages[Function.INTAKE]
    assert intake.drain_seconds == pytest.approx(100_000 / 250, rel=0.02)
    assert labels.oldest_seconds == pytest.approx(labels.drain_seconds - intake.drain_seconds, rel=0.02)
    assert labels.oldest_seconds > s.oldest_message_alarm_seconds
    assert any("the labels queue's oldest message reaches 27 min" in note for note in p.notes)
    assert p.drain_seconds == labels.drain_seconds


def test_a_burst_the_stages_keep_up_with_raises_no_alarm():
    p = capacity.plan(DEFAULTS, 1, 1_000, 12)
    assert all(stage.oldest_seconds < DEFAULTS.oldest_message_alarm_seconds for stage in p.stages.values())
    assert p.notes == []
    assert p.drain_seconds == pytest.approx(1000 / (5 - 1), rel=0.02)  # labels at the quota, less the steady 1/s


def test_the_cost_is_the_benchmarks_price_model_at_the_stacks_memory():
    p = capacity.plan(DEFAULTS, 10, 100_000, 12)
    expected = costs.per_million([costs.StageCost.of(c, p.stages[c.name].seconds_per_image) for c in DEFAULTS.deployed],
                                 "arm64")
    assert p.usd_per_million == expected
    # What each item is made of, per image: the stages' time at their memory, a Rekognition image, one publish, the
    # record's writes (1 + 2 + 2) and strongly consistent reads (1 + 1 + 1), two GETs and a PUT per size and a LIST.
    assert expected["rekognition"] == 1000.0 and expected["sns"] == 0.5
    assert expected["dynamodb"] == round(5 * 0.625 + 3 * 0.125, 2)
    assert expected["s3"] == round(2 * 0.0004 * 1000 + 4 * 0.005 * 1000, 2)
    assert p.usd_for_burst == pytest.approx(expected["total"] / 10)
    # a format Rekognition does not read is not sent to it, nor billed
    assert capacity.plan(DEFAULTS, 1, 10, 6, "webp").usd_per_million["rekognition"] == 0


def test_the_default_thumbnail_memory_is_the_cheapest_within_a_tenth_of_the_fastest():
    tuned, rows, best = capacity.memory_table(DEFAULTS, 12, "jpeg")
    assert tuned.name == Function.THUMBNAILS  # the one stage whose time is the engine's: memory buys it CPU
    assert best.memory == stages.named(Function.THUMBNAILS).sizing.memory == 1536
    fastest = min(row.seconds for row in rows if row.fits)
    assert best.seconds <= 1.10 * fastest
    assert all(row.usd_per_million > best.usd_per_million for row in rows
               if row.fits and row.seconds <= 1.10 * fastest and row is not best)
    # below what a 50 MP WebP's decode needs, a size is never chosen
    assert [row.memory for row in rows if not row.fits] == [512, 768, 1024]
    # more than one vCPU does not make the one-threaded engine faster
    assert {row.seconds for row in rows if row.memory >= capacity.MB_PER_VCPU} == {fastest}


def test_capacity_prints_the_dev_stack_and_a_raised_one(capsys):
    assert ops_cli.main(["--stack", "dev", "capacity", "--rate", "10/s", "--burst", "100000", "--mp", "12"]) == 0
    text = capsys.readouterr().out
    assert "claimcheck dev: 10 images/s steady and a burst of 100,000 12 MP JPEG photos (a model" in text
    assert "Rekognition's DetectLabels quota (rekognitionTps 5)" in text and "never drains the burst at 10/s" in text
    assert "1,536 MB  283 ms" in text and "cheapest within 10% of the fastest, configured" in text
    raised = ["--set", "rekognitionTps=50", "--set", "accountConcurrency=3000", "--set", 'labels={"maxConcurrency": 20}',
              "--set", 'thumbnails={"maxConcurrency": 500}', "--set", 'intake={"maxConcurrency": 50}']
    assert ops_cli.main(["--stack", "dev", "--json", "capacity", "--rate", "600/min", *raised]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["rate"] == 10 and found["stages"][Function.THUMBNAILS]["binding"].startswith("DynamoDB writes")
    assert found["stages"][Function.LABELS]["binding"] == "Rekognition's DetectLabels quota (rekognitionTps 50)"
    assert found["drain_seconds"] == pytest.approx(100_000 / 40, rel=0.02)
    assert found["memory"]["recommended"] == 1536


@pytest.mark.parametrize("argv, error", [
    (["--stack", "nope", "capacity"], "Pulumi.nope.yaml does not exist here"),
    (["--outputs", "outputs.json", "capacity"], "capacity plans a stack from its configuration: give --stack NAME"),
    (["--stack", "dev", "capacity", "--rate", "fast"], "--rate 'fast' is not a rate"),
    (["--stack", "dev", "capacity", "--set", "nokey=1"], "--set 'nokey=1': write KEY=VALUE with one of the stack's keys"),
    (["--stack", "dev", "capacity", "--set", "accountConcurrency=20"], "`pulumi up` would refuse this stack"),
    (["--stack", "dev", "capacity", "--format", "tiff"], "--format tiff: the stack accepts only jpeg, png, webp, gif"),
])
def test_capacity_says_what_is_wrong_with_its_arguments(argv, error, capsys):
    assert ops_cli.main(argv) == 1
    assert error in capsys.readouterr().err


@pytest.mark.parametrize("text, rate", [("50/s", 50), ("3000/min", 50), ("180000/h", 50), ("2.5", 2.5)])
def test_rates_are_read_in_any_unit(text, rate):
    from ops.capacity import per_second

    assert per_second(text) == pytest.approx(rate)


@pytest.mark.parametrize("argv, error", [
    (["demo", "--set", "nokey=1"], "--set 'nokey=1': write KEY=VALUE with one of the stack's keys"),
    (["demo", "--set", "rekognitionTps"], "--set 'rekognitionTps': write KEY=VALUE"),
    (["demo", "--set", "rekognitionTps=0"], "claimcheck:rekognitionTps = 0 is out of range (accepted: 1 to 10,000)"),
])
def test_the_demo_refuses_a_setting_before_anything_starts(argv, error, capsys):
    from localcloud.__main__ import main as localcloud_main

    assert localcloud_main(argv) == 2
    captured = capsys.readouterr()
    assert error in captured.err and "Starting the local cloud" not in captured.out


def test_a_setting_given_twice_keeps_the_last_and_keeps_the_project_prefix_optional():
    from infra import settings

    assert settings.assignments(["claimcheck:rekognitionTps=20", "rekognitionTps=50", "labels={\"maxConcurrency\": 4}"]) \
        == {"rekognitionTps": "50", "labels": '{"maxConcurrency": 4}'}
    assert settings.load(settings.assignments(["rekognitionTps=50"])).configured("labels").settings.rekognition_tps == 50


def test_an_upload_quota_bounds_each_owners_rekognition_spend_a_day(capsys):
    quota = ["--set", "uploadApi=true", "--set", 'uploadQuota={"uploads": 200}']
    assert ops_cli.main(["--stack", "dev", "capacity", *quota]) == 0
    assert ("uploadQuota (200 uploads per owner a day) bounds one owner's Rekognition spend to $0.20 a day "
            "(JPEG: $0.0010 an image).") in capsys.readouterr().out  # DetectLabels only
    assert ops_cli.main(["--stack", "dev", "--json", "capacity", *quota, "--set", "moderation=true"]) == 0
    assert json.loads(capsys.readouterr().out)["rekognition_per_owner_day"] == pytest.approx(0.40)  # and the gate's call
    assert ops_cli.main(["--stack", "dev", "--json", "capacity"]) == 0
    assert json.loads(capsys.readouterr().out)["rekognition_per_owner_day"] is None  # no quota: no bound


def test_the_thumbnail_stage_counts_the_time_and_puts_of_each_output_format():
    jpeg = capacity.plan(DEFAULTS, 1, 1_000, 12).stages[Function.THUMBNAILS]
    formats = load({"outputFormats": json.dumps(["avif", "webp", "jpeg"])})
    three = capacity.plan(formats, 1, 1_000, 12).stages[Function.THUMBNAILS]
    s = formats.configured(Function.THUMBNAILS).settings
    # AVIF and WebP encodes of the default sizes (0.88 MP of a 3:2 photo), on the function's share of a vCPU, and a PUT
    # each of the six renditions more
    encodes = (thumbnails.ENCODE_MS_PER_MP["avif"] + thumbnails.ENCODE_MS_PER_MP["webp"]) * 0.8845 / 1000
    share = min(1.0, formats.configured(Function.THUMBNAILS).sizing.memory / capacity.MB_PER_VCPU)
    assert three.seconds_per_image - jpeg.seconds_per_image == pytest.approx(
        encodes / share + 6 * thumbnails.REQUEST_MS["s3_put"] / 1000, rel=0.01)
    assert thumbnails.renditions_at_most(s) == 9
    assert three.seconds_per_image > 2 * jpeg.seconds_per_image  # AVIF and WebP more than double the stage's time
    assert capacity.plan(formats, 1, 1_000, 12).usd_per_million["s3"] > capacity.plan(DEFAULTS, 1, 1_000, 12).usd_per_million["s3"]
