"""Each policy document allows exactly this principal this action under this condition, and resources wait for
what AWS checks when it creates them (the orderings a deploy depends on)."""
from __future__ import annotations

import json

import pytest

from localcloud import program
from localcloud.outputs import ACCOUNT_ID
from tests.conftest import shared_scope
from tests.infra_helpers import statements

ROOT = f"arn:aws:iam::{ACCOUNT_ID}:root"  # the partition, not the region, after "arn:"


@pytest.fixture(scope=shared_scope)
def stack():
    return program.run(program.RecordingMocks(), {"cdn": True, "uploadApi": True})


def one(stack, typ: str, name_part: str = ""):
    [found] = [r for r in stack.of_type(typ) if name_part in r.name]
    return found


def test_the_claim_check_topic_admits_its_own_account_only(stack):
    topic = one(stack, "aws:sns/topic:Topic", "claim-checks")
    policy = one(stack, "aws:sns/topicPolicy:TopicPolicy")
    assert policy.inputs["arn"] == topic.state["arn"]
    assert statements(policy) == [{
        "Sid": "OwnerOnly", "Effect": "Allow", "Principal": {"AWS": ROOT},
        "Action": ["sns:Publish", "sns:Subscribe", "sns:GetTopicAttributes"], "Resource": topic.state["arn"]}]


def test_the_topic_key_rotates_its_account_administers_it_and_cloudwatch_may_use_it_for_this_account(stack):
    key = one(stack, "aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True and key.inputs["deletionWindowInDays"] == 30
    assert statements(key) == [
        {"Sid": "AccountAdministers", "Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"},
        # Alarm notifications to an encrypted topic need CloudWatch on the key; only for alarms of this account.
        {"Sid": "CloudWatchPublishesAlarms", "Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}}]
    for topic in stack.of_type("aws:sns/topic:Topic"):
        assert topic.inputs["kmsMasterKeyId"] == key.state["arn"], topic.name


def test_the_distribution_is_switched_on(stack):
    distribution = one(stack, "aws:cloudfront/distribution:Distribution")
    assert distribution.inputs["enabled"] is True


def test_the_jwt_upload_api_proxies_to_its_function_and_deploys_itself():
    stack = program.run(program.RecordingMocks(), {"uploadApi": True, "jwtIssuer": "https://id.example.com/",
                                                   "jwtAudience": "claimcheck"})
    integration = one(stack, "aws:apigatewayv2/integration:Integration")
    function = one(stack, "aws:lambda/function:Function", "upload-api")
    assert integration.inputs["integrationType"] == "AWS_PROXY"
    assert integration.inputs["integrationUri"] == function.state["arn"]
    stage = one(stack, "aws:apigatewayv2/stage:Stage")
    assert stage.inputs["name"] == "$default" and stage.inputs["autoDeploy"] is True


def test_the_bucket_notification_waits_for_the_queue_policy_s3_checks(stack):
    # S3 validates a notification's destination when it is set: the queue must already admit S3.
    notification = one(stack, "aws:s3/bucketNotification:BucketNotification")
    intake_policy = [p for p in stack.of_type("aws:sqs/queuePolicy:QueuePolicy")
                     if any(s.get("Principal") == {"Service": "s3.amazonaws.com"} for s in statements(p))]
    assert len(intake_policy) == 1 and intake_policy[0].urn in notification.depends_on


def test_each_bucket_policy_waits_for_its_public_access_block(stack):
    blocks = {b.inputs["bucket"]: b.urn for b in stack.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")}
    for policy in stack.of_type("aws:s3/bucketPolicy:BucketPolicy"):
        assert blocks[policy.inputs["bucket"]] in policy.depends_on, policy.name


def test_each_function_waits_for_its_grants_and_log_group(stack):
    groups = {g.inputs["name"]: g.urn for g in stack.of_type("aws:cloudwatch/logGroup:LogGroup")}
    role_policies = {p.inputs["role"]: p.urn for p in stack.of_type("aws:iam/rolePolicy:RolePolicy")}
    roles = {r.state["arn"]: r.state["name"] for r in stack.of_type("aws:iam/role:Role")}
    for fn in stack.of_type("aws:lambda/function:Function"):
        # Its log group, with its retention, exists before the function can write to it.
        assert groups[fn.inputs["loggingConfig"]["logGroup"]] in fn.depends_on, fn.name
        assert role_policies[roles[fn.inputs["role"]]] in fn.depends_on, fn.name


def test_each_mapping_waits_for_the_grants_that_let_it_read_its_queue(stack):
    role_policies = {p.urn for p in stack.of_type("aws:iam/rolePolicy:RolePolicy")}
    for mapping in stack.of_type("aws:lambda/eventSourceMapping:EventSourceMapping"):
        assert role_policies & set(mapping.depends_on), mapping.name


def test_policy_documents_are_json_with_a_version():
    stack = program.run(program.RecordingMocks())
    for typ in ("aws:sns/topicPolicy:TopicPolicy", "aws:sqs/queuePolicy:QueuePolicy", "aws:s3/bucketPolicy:BucketPolicy",
                "aws:iam/rolePolicy:RolePolicy", "aws:kms/key:Key"):
        for resource in stack.of_type(typ):
            assert json.loads(resource.inputs["policy"])["Version"] == "2012-10-17", resource.name
