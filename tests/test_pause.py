"""The pause function: the one thing an operator may ask of the stack's event source mappings is a stage and a
boolean; anything else is refused with a reason, and AWS hears nothing from the request but the boolean."""
from __future__ import annotations

import json

import pytest
from botocore.stub import Stubber

from handlers import aws, environment, pause
from localcloud.lambda_events import LambdaContext

MAPPINGS = {"intake": "0c4d5b6e-8157-5cd4-baae-16d663b6cfb5", "thumbnails": "34b09298-37f4-51dd-8f26-f8a94d8ea8d9"}


@pytest.fixture
def configured(monkeypatch):
    monkeypatch.setenv("STAGE_MAPPINGS", json.dumps(MAPPINGS))
    environment.load.cache_clear()
    aws.reset()
    yield
    environment.load.cache_clear()
    aws.reset()


@pytest.mark.parametrize("stage, enabled", [("thumbnails", False), ("intake", True)])
def test_a_stage_and_a_boolean_update_exactly_that_mapping_s_enabled_state(configured, stage, enabled):
    with Stubber(aws.client("lambda")) as lam:
        # Stubber fails on any parameter but these: the update carries the UUID from the function's own table and
        # the boolean, nothing else.
        lam.add_response("update_event_source_mapping", {"UUID": MAPPINGS[stage], "State": "Disabling" if not enabled
                                                         else "Enabling"},
                         expected_params={"UUID": MAPPINGS[stage], "Enabled": enabled})
        answer = pause.handler(pause.pause_request(stage, enabled), LambdaContext("claimcheck-pause"))
        lam.assert_no_pending_responses()
    assert answer == {"stage": stage, "enabled": enabled, "state": "Disabling" if not enabled else "Enabling"}


SHAPE = 'send {"stage": one of intake, thumbnails, "enabled": true or false}'


@pytest.mark.parametrize("event, reason", [
    # what UpdateEventSourceMapping would take from an operator allowed to call it: every one refused
    ({"stage": "thumbnails", "enabled": True, "FilterCriteria": {"Filters": [{"Pattern": '{"body": ["x"]}'}]}},
     f"a pause request may ask for a stage and a boolean only, not FilterCriteria: {SHAPE}"),
    ({"stage": "thumbnails", "enabled": True, "FunctionName": "claimcheck-intake-function"},
     f"a pause request may ask for a stage and a boolean only, not FunctionName: {SHAPE}"),
    ({"stage": "thumbnails", "enabled": True, "BatchSize": 1, "ScalingConfig": {"MaximumConcurrency": 2}},
     f"a pause request may ask for a stage and a boolean only, not BatchSize, ScalingConfig: {SHAPE}"),
    ({"stage": "thumbnails", "UUID": "22589d03-54b8-5cce-9ba5-9f3e7413b2c7", "enabled": False},
     f"a pause request may ask for a stage and a boolean only, not UUID: {SHAPE}"),
    ({"stage": "thumbnails"}, f"a pause request needs enabled: {SHAPE}"),
    ({}, f"a pause request needs stage and enabled: {SHAPE}"),
    ({"stage": "thumbnails", "enabled": "false"}, "enabled must be true or false (got a string)"),
    ({"stage": "thumbnails", "enabled": 0}, "enabled must be true or false (got a number)"),
    ({"stage": "labels", "enabled": False}, "there is no stage 'labels' in this stack (its stages: intake, thumbnails)"),
    ({"stage": ["thumbnails"], "enabled": False}, "stage must be a stage's name, one of intake, thumbnails (got a list)"),
    ({"stage": "x" * 5000, "enabled": False},
     f"there is no stage {'x' * 40!r} in this stack (its stages: intake, thumbnails)"),
    (["thumbnails", False], f"a pause request is an object: {SHAPE} (got a list)"),
    (None, f"a pause request is an object: {SHAPE} (got null)"),
])
def test_anything_but_a_stage_and_a_boolean_is_refused_with_the_reason_and_changes_nothing(configured, event, reason):
    with Stubber(aws.client("lambda")) as lam:  # no response queued: any call to Lambda would fail the test
        with pytest.raises(pause.PauseRefused) as refused:
            pause.handler(event, LambdaContext("claimcheck-pause"))
        lam.assert_no_pending_responses()
    assert str(refused.value) == reason


def test_a_malformed_mapping_table_stops_the_function_naming_the_variable(monkeypatch):
    monkeypatch.setenv("STAGE_MAPPINGS", '["34b09298-37f4-51dd-8f26-f8a94d8ea8d9"]')
    environment.load.cache_clear()
    with pytest.raises(environment.ConfigurationError, match="STAGE_MAPPINGS is not a JSON object of strings"):
        pause.handler(pause.pause_request("thumbnails", False), LambdaContext("claimcheck-pause"))
    environment.load.cache_clear()
