"""The image events' resources under mocks: the table's stream, the mapping that reads it (its filter, partial batches,
bisect, bounded retries, on-failure queue), the function's role (exactly these actions on exactly these resources),
the bus (the stack's own, or the one named in config), the DLQ's alarm and the outputs."""
from __future__ import annotations

import json

import pytest

from localcloud import program
from localcloud.outputs import ACCOUNT_ID, REGION
from localcloud.seams.moto_server import pattern_matches
from tests.conftest import shared_scope
from tests.infra_helpers import ALARM, FUNCTION, MAPPING, QUEUE, function_grants

BUS = "aws:cloudwatch/eventBus:EventBus"
SETTLED = ("deleted", "done", "failed", "quarantined", "rejected")


@pytest.fixture(scope=shared_scope)
def stack():
    return program.run(program.RecordingMocks(), {})


def events_function(stack):
    [fn] = [f for f in stack.of_type(FUNCTION) if f.inputs["handler"] == "handlers.image_events.handler"]
    return fn


def test_the_table_streams_every_change_with_the_item_before_and_after(stack):
    [table] = stack.of_type("aws:dynamodb/table:Table")
    assert (table.inputs["streamEnabled"], table.inputs["streamViewType"]) == (True, "NEW_AND_OLD_IMAGES")


def test_the_mapping_reads_the_stream_with_a_settled_filter_partial_batches_bisect_and_a_dlq(stack):
    [table] = stack.of_type("aws:dynamodb/table:Table")
    [mapping] = [m for m in stack.of_type(MAPPING) if m.inputs["eventSourceArn"] == table.state["streamArn"]]
    fn = events_function(stack)
    assert mapping.inputs["functionName"] == fn.state["arn"]
    assert mapping.inputs["startingPosition"] == "TRIM_HORIZON"
    assert mapping.inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping.inputs["bisectBatchOnFunctionError"] is True
    assert 0 < mapping.inputs["maximumRetryAttempts"] <= 10  # bounded, never -1 (forever)
    assert mapping.inputs["parallelizationFactor"] == 1
    [dlq] = [q for q in stack.of_type(QUEUE) if q.state["arn"] == mapping.inputs["destinationConfig"]["onFailure"]["destinationArn"]]
    assert dlq.inputs["sqsManagedSseEnabled"] is True
    [pattern] = [json.loads(f["pattern"]) for f in mapping.inputs["filterCriteria"]["filters"]]

    def record(event_name: str, status: str) -> dict:
        return {"eventName": event_name, "dynamodb": {"NewImage": {"status": {"S": status}}}}

    assert [s for s in (*SETTLED, "accepted") if pattern_matches(pattern, record("MODIFY", s))] == list(SETTLED)
    assert pattern_matches(pattern, record("INSERT", "rejected"))
    assert not pattern_matches(pattern, {"eventName": "REMOVE", "dynamodb": {"OldImage": {"status": {"S": "done"}}}})


def test_the_events_role_may_read_this_tables_stream_put_on_this_bus_and_send_to_its_dlq_only(stack):
    [table] = stack.of_type("aws:dynamodb/table:Table")
    [bus] = stack.of_type(BUS)
    fn = events_function(stack)
    [dlq] = [q for q in stack.of_type(QUEUE) if q.name.endswith("image-events-dlq")]
    [log_group] = [g for g in stack.of_type("aws:cloudwatch/logGroup:LogGroup") if g.name.endswith("image-events-logs")]
    stream = f"{table.state['arn']}/stream/*"
    assert function_grants(stack)[fn.name] == {
        "dynamodb:DescribeStream": {stream}, "dynamodb:GetRecords": {stream}, "dynamodb:GetShardIterator": {stream},
        "dynamodb:ListStreams": {stream}, "events:PutEvents": {bus.state["arn"]}, "sqs:SendMessage": {dlq.state["arn"]},
        "logs:CreateLogStream": {f"{log_group.state['arn']}:*"}, "logs:PutLogEvents": {f"{log_group.state['arn']}:*"}}
    assert fn.inputs["environment"]["variables"]["EVENT_BUS_NAME"] == bus.state["name"]


def test_the_dlq_alarms_the_alarm_topic_and_outputs_name_the_bus(stack):
    [dlq] = [q for q in stack.of_type(QUEUE) if q.name.endswith("image-events-dlq")]
    [alarm] = [a for a in stack.of_type(ALARM) if a.name.endswith("image-events-dlq-alarm")]
    [topic] = [t for t in stack.of_type("aws:sns/topic:Topic") if t.name.endswith("alarms")]
    assert alarm.inputs["dimensions"] == {"QueueName": dlq.state["name"]} and alarm.inputs["threshold"] == 0
    assert alarm.inputs["alarmActions"] == [topic.state["arn"]]
    [bus] = stack.of_type(BUS)
    assert (stack.outputs["eventBusName"], stack.outputs["eventBusArn"]) == (bus.state["name"], bus.state["arn"])


def test_a_bus_named_in_config_is_used_and_not_created():
    stack = program.run(program.RecordingMocks(), {"eventBusName": "orders"})
    assert stack.of_type(BUS) == []
    arn = f"arn:aws:events:{REGION}:{ACCOUNT_ID}:event-bus/orders"
    assert (stack.outputs["eventBusName"], stack.outputs["eventBusArn"]) == ("orders", arn)
    assert function_grants(stack)[events_function(stack).name]["events:PutEvents"] == {arn}


def test_a_bus_name_that_is_no_name_is_refused_in_words():
    from infra.settings import SettingsError, load

    with pytest.raises(SettingsError, match="eventBusName"):
        load({"eventBusName": "arn:aws:events:us-east-1:123456789012:event-bus/orders"})
