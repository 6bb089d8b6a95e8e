"""Alarms watch what the handlers really emit: the same namespace, metric name and dimensions.

Each handler runs in a fresh interpreter with the environment the program gives its function (Powertools reads
its service name and namespace at import, as in Lambda), is handed a message it must drop, and its EMF output
is held against the alarm the program declared for it.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from localcloud import program
from tests.conftest import shared_scope
from tests.infra_helpers import ALARM, FUNCTION

ROOT = Path(__file__).resolve().parent.parent
DROP = {  # function -> a message it cannot read
    "claimcheck-intake-function": "this is not an S3 event",
    "claimcheck-thumbnail-stage-function": json.dumps({"v": 99, "bucket": "b", "key": "k"}),
    "claimcheck-label-stage-function": "{not json",
    # Fed by the table's stream: a whole event, a settled record that is no image record (it has no key).
    "claimcheck-image-events-function": json.dumps({"Records": [{"eventName": "INSERT", "dynamodb": {
        "SequenceNumber": "1", "NewImage": {"image_id": {"S": "a"}, "status": {"S": "rejected"}}}}]}),
}
RUN = """
import json, sys
from localcloud.lambda_events import LambdaContext, sqs_event, sqs_record
module = __import__(sys.argv[1], fromlist=["handler"])
event = (json.loads(sys.argv[2]) if sys.argv[2].startswith('{"Records"')
         else sqs_event([sqs_record(sys.argv[2], "arn:aws:sqs:us-east-1:123456789012:q")]))
print("RESULT " + json.dumps(module.handler(event, LambdaContext(function_name="f"))))
"""


@pytest.fixture(scope=shared_scope)
def stack():
    return program.run(program.RecordingMocks())


def emitted(function, body: str) -> tuple[dict, list[dict]]:
    env = {"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1",
           **{k: v for k, v in function.inputs["environment"]["variables"].items() if isinstance(v, str)}}
    module = function.inputs["handler"].rsplit(".", 1)[0]
    out = subprocess.run([sys.executable, "-c", RUN, module, body], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    result = json.loads(next(line for line in lines if line.startswith("RESULT "))[7:])
    return result, [json.loads(line) for line in lines if line.startswith('{"_aws"')]


@pytest.mark.parametrize("name", sorted(DROP))
def test_the_dropped_message_alarm_watches_the_metric_the_handler_emits(stack, name):
    function = stack.named(name)
    result, documents = emitted(function, DROP[name])
    assert result == {"batchItemFailures": []}  # dropped: acknowledged, not retried
    service = function.inputs["environment"]["variables"]["POWERTOOLS_SERVICE_NAME"]
    [alarm] = [a for a in stack.of_type(ALARM) if a.inputs["namespace"] != "AWS/SQS"
               and a.inputs["dimensions"].get("service") == service]
    matching = []
    for document in documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            names = {m["Name"] for m in directive["Metrics"]}
            dimension_sets = [{key: document[key] for key in keys} for keys in directive["Dimensions"]]
            if directive["Namespace"] == alarm.inputs["namespace"] and alarm.inputs["metricName"] in names:
                matching.extend(d for d in dimension_sets if d == alarm.inputs["dimensions"])
                assert document[alarm.inputs["metricName"]] == [1.0]
    assert matching, f"{name} emitted {documents}, the alarm watches {alarm.inputs}"


def test_every_queue_or_stream_fed_function_has_such_an_alarm(stack):
    services = {f.inputs["environment"]["variables"]["POWERTOOLS_SERVICE_NAME"] for f in stack.of_type(FUNCTION)
                if f.name in DROP}
    watched = {a.inputs["dimensions"].get("service") for a in stack.of_type(ALARM) if a.inputs["namespace"] == "claimcheck"}
    assert services == watched


def test_each_alarm_fires_on_the_first_message_stays_quiet_without_data_and_says_when_it_is_over(stack):
    [topic] = [t for t in stack.of_type("aws:sns/topic:Topic") if t.name.endswith("-alarms")]
    alarms = stack.of_type(ALARM)
    kinds = {}
    for alarm in alarms:
        kind = alarm.name.rsplit("-", 2)[-2]  # dlq, age, dropped
        kinds.setdefault(kind, []).append(alarm)
        assert alarm.inputs["treatMissingData"] == "notBreaching", alarm.name  # no data is no messages, not an alarm
        assert alarm.inputs["comparisonOperator"] == "GreaterThanThreshold", alarm.name
        assert alarm.inputs["alarmActions"] == [topic.state["arn"]], alarm.name
    for alarm in kinds["dlq"] + kinds["dropped"]:
        # One message in a DLQ, one dropped message: above zero, at once, and an all-clear when it is dealt with.
        assert alarm.inputs["threshold"] == 0 and alarm.inputs["evaluationPeriods"] == 1, alarm.name
        assert alarm.inputs["okActions"] == [topic.state["arn"]], alarm.name
    for alarm in kinds["age"]:
        # A queue's oldest message, or how far the image events are behind the table's stream (Lambda's IteratorAge).
        assert alarm.inputs["threshold"] > 0 and alarm.inputs["metricName"] in ("ApproximateAgeOfOldestMessage", "IteratorAge")
    assert [a.inputs["metricName"] for a in kinds["age"]].count("IteratorAge") == 1
    assert len(kinds["dlq"]) == len(kinds["age"]) == len(kinds["dropped"]) == 4
