"""The operator tools' rules that need no cloud: how they find a stack and say what is wrong, when S3's lifecycle
expires an original, what --since means, and how fast reprocess asks."""
from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, datetime
from unittest import mock

import pytest
from botocore.exceptions import ClientError

from ops import images, reprocess
from ops.__main__ import explain
from ops.__main__ import main as ops_main
from ops.target import LOCAL_HOME_VARIABLE, ROOT, TargetError, from_local, from_outputs, from_stack, local_home


def run(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = ops_main(list(args))
    return status, err.getvalue()


def test_without_the_pulumi_cli_a_stack_name_says_how_to_go_on(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(TargetError, match=r"the Pulumi CLI is not on PATH: install it .* and pass --outputs outputs.json"):
        from_stack("prod")


def test_a_stopped_local_cloud_says_to_start_it(tmp_path, monkeypatch):
    # the README's own form: `--local` is a flag, so `status` is the command (it once took `status` for its file)
    monkeypatch.setenv(LOCAL_HOME_VARIABLE, str(tmp_path))
    status, said = run("--local", "status")
    assert status == 1 and said == "error: the local cloud is not running: start it with `make up` (in another terminal), then run this again\n"
    with pytest.raises(TargetError, match="not running"):
        from_local(tmp_path / "missing.json")


def test_the_local_cloud_s_file_is_found_where_it_was_written(tmp_path, monkeypatch):
    """--local reads up.json in the local cloud's folder (LOCALCLOUD_HOME moves it); --local-file names one."""
    written = tmp_path / "elsewhere" / "up.json"
    written.parent.mkdir()
    written.write_text("{not json")  # unreadable: from_local says the cloud is not running, naming no other file
    monkeypatch.setenv(LOCAL_HOME_VARIABLE, str(written.parent))
    assert local_home() == written.parent
    assert run("--local", "status")[0] == 1
    monkeypatch.delenv(LOCAL_HOME_VARIABLE)
    assert local_home() == ROOT / ".localcloud"
    with mock.patch("ops.__main__.from_local", side_effect=TargetError("read")) as reading:
        assert run("--local-file", str(written), "status") == (1, "error: read\n")
        assert run("--local", "status") == (1, "error: read\n")
    assert [c.args for c in reading.call_args_list] == [(written,), (None,)]
    with pytest.raises(SystemExit) as both:
        run("--local", "--stack", "dev", "status")
    assert both.value.code == 2


def test_saved_outputs_must_exist_and_hold_what_the_tools_read(tmp_path):
    with pytest.raises(TargetError, match="does not exist"):
        from_outputs(tmp_path / "outputs.json")
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"tableName": "t", "queueUrls": {}}))
    with pytest.raises(TargetError, match=r"has no output deadLetterQueueUrls, .*: it was deployed by an earlier version; "
                                          r"run `pulumi up` to add them"):
        from_outputs(old)


def test_a_missing_permission_is_named_with_the_fix():
    refusal = ClientError({"Error": {"Code": "AccessDenied", "Message": "User: x is not authorized to perform: "
                                     "sqs:StartMessageMoveTask on resource: arn:aws:sqs:eu-west-1:1:dlq"}},
                          "StartMessageMoveTask")
    assert explain(refusal) == (
        "AWS refused StartMessageMoveTask: User: x is not authorized to perform: sqs:StartMessageMoveTask on resource: "
        "arn:aws:sqs:eu-west-1:1:dlq. Attach the stack's operator policy (stack output operatorPolicyArn) to your role "
        "or user: it allows exactly what these commands call")
    throttled = ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "Query")
    assert explain(throttled) == "Query failed (Throttling): Rate exceeded"


@pytest.mark.parametrize("uploaded, days, expires", [
    ("2026-12-01T10:15:00.000Z", 30, "2027-01-01T00:00:00Z"),  # 31 Dec 10:15, rounded up to the next midnight UTC
    ("2026-12-01T00:00:00.000Z", 1, "2026-12-02T00:00:00Z"),  # already midnight: no rounding
    ("2026-12-01T23:59:59.999Z", 0, None),  # 0 keeps originals
])
def test_an_original_expires_days_after_its_upload_at_the_next_midnight(uploaded, days, expires):
    assert images.expiry(uploaded, days) == expires


def test_since_takes_an_age_or_a_date():
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert images.since_from("90m", now) == datetime(2026, 12, 2, 10, 30, tzinfo=UTC)
    assert images.since_from("2d", now) == datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert images.since_from("2026-12-01", now) == datetime(2026, 12, 1, tzinfo=UTC)
    with pytest.raises(images.OpsError, match=r"--since 'yesterday' is neither an age \(90m, 6h, 2d\) nor a date"):
        images.since_from("yesterday", now)


def test_reprocess_requests_go_out_evenly_at_the_rate_asked():
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 3))
        clock[0] += seconds

    limit = reprocess.RateLimit(4.0, clock=lambda: clock[0], sleep=sleep)
    for _ in range(5):
        limit.wait()
    assert slept == [0.25, 0.25, 0.25, 0.25] and clock[0] == pytest.approx(1.0)


def test_pause_sends_the_pause_function_a_stage_and_a_boolean_and_reports_its_refusal():
    """The command asks the stack's pause function, never Lambda's mapping API; when the function refuses (a stack
    whose stages changed under saved outputs), the command fails with the function's reason."""
    import boto3
    from botocore.response import StreamingBody
    from botocore.stub import Stubber

    from ops import queues
    from ops.target import REQUIRED_OUTPUTS, Target

    outputs = {name: {} for name in REQUIRED_OUTPUTS} | {
        "pauseFunctionName": "claimcheck-pause-function-03d212f",
        "eventSourceMappings": {"labels": "22589d03-54b8-5cce-9ba5-9f3e7413b2c7"}}
    target = Target("saved.json", outputs)
    lam = target._clients["lambda"] = boto3.client("lambda", region_name="us-east-1")
    reason = b'{"errorMessage": "there is no stage \'labels\' in this stack (its stages: intake, thumbnails)", ' \
             b'"errorType": "PauseRefused"}'
    with Stubber(lam) as stub:
        stub.add_response("invoke", {"StatusCode": 200, "FunctionError": "Unhandled",
                                     "Payload": StreamingBody(io.BytesIO(reason), len(reason))},
                          expected_params={"FunctionName": "claimcheck-pause-function-03d212f",
                                           "Payload": b'{"stage": "labels", "enabled": false}'})
        with pytest.raises(queues.OpsError) as refused:
            queues.set_enabled(target, "labels", False)
        stub.assert_no_pending_responses()
    assert str(refused.value) == ("the pause function refused: there is no stage 'labels' in this stack (its stages: "
                                  "intake, thumbnails)")
