"""Reading the resource graph the program registered under mocks."""
from __future__ import annotations

import json
from typing import Any

from localcloud.program import Deployment, Registered

BUCKET = "aws:s3/bucket:Bucket"
QUEUE = "aws:sqs/queue:Queue"
TOPIC = "aws:sns/topic:Topic"
FUNCTION = "aws:lambda/function:Function"
MAPPING = "aws:lambda/eventSourceMapping:EventSourceMapping"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"


def by_bucket(d: Deployment, typ: str) -> dict[str, Registered]:
    return {r.inputs["bucket"]: r for r in d.of_type(typ)}


def queue_by_arn(d: Deployment) -> dict[str, Registered]:
    return {q.state["arn"]: q for q in d.of_type(QUEUE)}


def dlq_arns(d: Deployment) -> set[str]:
    return {json.loads(q.inputs["redrivePolicy"])["deadLetterTargetArn"] for q in d.of_type(QUEUE) if "redrivePolicy" in q.inputs}


def statements(policy: Registered) -> list[dict[str, Any]]:
    return json.loads(policy.inputs["policy"])["Statement"]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_policies(d: Deployment) -> dict[str, list[dict[str, Any]]]:
    """Role name -> the statements of its inline policies."""
    found: dict[str, list[dict[str, Any]]] = {}
    for policy in d.of_type(ROLE_POLICY):
        found.setdefault(policy.inputs["role"], []).extend(statements(policy))
    return found


def function_grants(d: Deployment) -> dict[str, dict[str, set[str]]]:
    """Function logical name -> action -> resources its role allows."""
    roles = {r.state["arn"]: r.state["name"] for r in d.of_type(ROLE)}
    policies = role_policies(d)
    grants: dict[str, dict[str, set[str]]] = {}
    for fn in d.of_type(FUNCTION):
        actions: dict[str, set[str]] = {}
        for statement in policies[roles[fn.inputs["role"]]]:
            assert statement["Effect"] == "Allow"
            for action in as_list(statement["Action"]):
                actions.setdefault(action, set()).update(as_list(statement["Resource"]))
        grants[fn.name] = actions
    return grants


# Called by Lambda on the function's behalf, which the local cloud does not play: its logs, and the event source
# mapping's check of the queue.
PLATFORM_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents", "sqs:GetQueueAttributes"}


def unused_grants(d: Deployment, function: str, used: list[tuple[str, str]], reads_uploads: bool) -> set[str]:
    """The actions the role of the function named `function` (logical name) grants that its calls never used, from
    the emulator's record of what it judged (`used`). `reads_uploads`: s3:ListBucket on the uploads bucket counts as
    used, since S3 uses it to answer 404 for a missing upload."""
    fn = d.named(function)
    role_name = next(r.state["name"] for r in d.of_type(ROLE) if r.state["arn"] == fn.inputs["role"])
    granted = {a for p in d.of_type(ROLE_POLICY) if p.inputs["role"] == role_name for s in statements(p)
               for a in as_list(s["Action"])}
    actions = {action for action, _ in used}
    # GetObject is authorized by s3:GetObject or s3:GetObjectVersion depending on the request; handlers make both kinds.
    if actions & {"s3:GetObject", "s3:GetObjectVersion"}:
        actions |= {"s3:GetObject", "s3:GetObjectVersion"}
    if "s3:ListBucket" in granted and reads_uploads:
        actions.add("s3:ListBucket")
    return granted - actions - PLATFORM_ACTIONS
