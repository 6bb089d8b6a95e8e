"""Each policy document allows exactly this principal this action under this condition, and resources wait for
what AWS checks when it creates them (the orderings a deploy depends on)."""
from __future__ import annotations

import json

import pytest

from localcloud import program
from localcloud.authorizer import Need, decide
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


# --- each resource policy by meaning: would this principal be allowed this action on this resource? ---------------

OTHER_ACCOUNT = "210987654321"
S3, LOGGING, DELIVERY, CLOUDFRONT, SNS, CLOUDWATCH = ({"Service": f"{name}.amazonaws.com"} for name in (
    "s3", "logging.s3", "delivery.logs", "cloudfront", "sns", "cloudwatch"))
ACCOUNT = {"AWS": ROOT}


def judged(policy, principal, action: str, resource: str, context: dict[str, str]) -> str:
    """IAM's answer to one request under one resource policy ("allow", "deny", or "implicit": nothing allows), from
    the statements that name this principal or everyone; an explicit Deny wins (IAM User Guide, "Policy evaluation
    logic"). The local cloud's evaluator judges them (localcloud/authorizer.py)."""
    mine = [s for s in statements(policy) if s.get("Principal") in ("*", {"AWS": "*"}, principal)]
    return decide(mine, Need(action, resource, {"aws:SecureTransport": "true", **context}))


def requests(stack) -> list[tuple[str, object, object, str, str, dict[str, str], str]]:
    """(what, policy, principal, action, resource, condition keys, IAM's answer) for every resource policy."""
    bucket = {b.name.removeprefix("claimcheck-"): b.state["arn"] for b in stack.of_type("aws:s3/bucket:Bucket")}
    policy = {p.name.removeprefix("claimcheck-").removesuffix("-policy"): p
              for typ in ("aws:s3/bucketPolicy:BucketPolicy", "aws:sqs/queuePolicy:QueuePolicy",
                          "aws:sns/topicPolicy:TopicPolicy", "aws:kms/key:Key") for p in stack.of_type(typ)}
    [distribution] = stack.of_type("aws:cloudfront/distribution:Distribution")
    topic = one(stack, "aws:sns/topic:Topic", "claim-checks").state["arn"]
    queue = {name: statements(policy[f"{name}-queue"])[0]["Resource"] for name in ("intake", "thumbnail-stage", "label-stage")}
    logs, uploads, thumbs = policy["access-logs"], policy["uploads"], policy["thumbnails"]
    source = f"arn:aws:logs:us-east-1:{ACCOUNT_ID}:delivery-source:cdn"
    cdn_log = {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceAccount": ACCOUNT_ID, "aws:SourceArn": source}
    access_log = {"aws:SourceArn": bucket["uploads"], "aws:SourceAccount": ACCOUNT_ID}
    grant = {"aws:PrincipalArn": stack.named("claimcheck-upload-api-function").inputs["role"]}  # its presigned PUTs'
    return [
        ("CloudFront's standard logs reach cdn/", logs, DELIVERY, "s3:PutObject", f"{bucket['access-logs']}/cdn/E1.gz", cdn_log, "allow"),
        ("... not without the owner's ACL", logs, DELIVERY, "s3:PutObject", f"{bucket['access-logs']}/cdn/E1.gz",
         {**cdn_log, "s3:x-amz-acl": "private"}, "implicit"),
        ("... not for another account", logs, DELIVERY, "s3:PutObject", f"{bucket['access-logs']}/cdn/E1.gz",
         {**cdn_log, "aws:SourceAccount": OTHER_ACCOUNT}, "implicit"),
        ("... not from another account's source", logs, DELIVERY, "s3:PutObject", f"{bucket['access-logs']}/cdn/E1.gz",
         {**cdn_log, "aws:SourceArn": source.replace(ACCOUNT_ID, OTHER_ACCOUNT)}, "implicit"),
        ("... not beside the uploads' logs", logs, DELIVERY, "s3:PutObject", f"{bucket['access-logs']}/uploads-bucket/x",
         cdn_log, "implicit"),
        ("... not without TLS", logs, DELIVERY, "s3:PutObject", f"{bucket['access-logs']}/cdn/E1.gz",
         {**cdn_log, "aws:SecureTransport": "false"}, "deny"),
        ("the uploads bucket's access logs reach uploads-bucket/", logs, LOGGING, "s3:PutObject",
         f"{bucket['access-logs']}/uploads-bucket/2026-11-23", access_log, "allow"),
        ("... not another bucket's", logs, LOGGING, "s3:PutObject", f"{bucket['access-logs']}/uploads-bucket/2026-11-23",
         {**access_log, "aws:SourceArn": bucket["thumbnails"]}, "implicit"),
        ("... not into cdn/", logs, LOGGING, "s3:PutObject", f"{bucket['access-logs']}/cdn/x", access_log, "implicit"),
        ("no one reads the logs through the bucket policy", logs, ACCOUNT, "s3:GetObject", f"{bucket['access-logs']}/cdn/E1.gz",
         {}, "implicit"),
        ("an upload grant's PUT carries If-None-Match", uploads, ACCOUNT, "s3:PutObject", f"{bucket['uploads']}/uploads/api/o/x.jpg",
         {"s3:if-none-match": "*", **grant}, "implicit"),
        ("... or is refused", uploads, ACCOUNT, "s3:PutObject", f"{bucket['uploads']}/uploads/api/o/x.jpg", grant, "deny"),
        ("... and only the upload function's grants put there", uploads, ACCOUNT, "s3:PutObject",
         f"{bucket['uploads']}/uploads/api/o/x.jpg", {"s3:if-none-match": "*", "aws:PrincipalArn": f"{ROOT}"}, "deny"),
        ("other uploads need no If-None-Match", uploads, ACCOUNT, "s3:PutObject", f"{bucket['uploads']}/uploads/x.jpg", {}, "implicit"),
        ("originals are never read without TLS", uploads, ACCOUNT, "s3:GetObject", f"{bucket['uploads']}/uploads/x.jpg",
         {"aws:SecureTransport": "false"}, "deny"),
        ("nor listed without it", uploads, ACCOUNT, "s3:ListBucket", bucket["uploads"], {"aws:SecureTransport": "false"}, "deny"),
        ("the distribution reads thumbnails", thumbs, CLOUDFRONT, "s3:GetObject", f"{bucket['thumbnails']}/thumbnails/a/256.jpg",
         {"AWS:SourceArn": distribution.state["arn"]}, "allow"),
        ("... not another distribution", thumbs, CLOUDFRONT, "s3:GetObject", f"{bucket['thumbnails']}/thumbnails/a/256.jpg",
         {"AWS:SourceArn": distribution.state["arn"].replace(ACCOUNT_ID, OTHER_ACCOUNT)}, "implicit"),
        ("... nor outside thumbnails/", thumbs, CLOUDFRONT, "s3:GetObject", f"{bucket['thumbnails']}/other",
         {"AWS:SourceArn": distribution.state["arn"]}, "implicit"),
        ("... nor writes them", thumbs, CLOUDFRONT, "s3:PutObject", f"{bucket['thumbnails']}/thumbnails/a/256.jpg",
         {"AWS:SourceArn": distribution.state["arn"]}, "implicit"),
        ("... nor over plain HTTP", thumbs, CLOUDFRONT, "s3:GetObject", f"{bucket['thumbnails']}/thumbnails/a/256.jpg",
         {"AWS:SourceArn": distribution.state["arn"], "aws:SecureTransport": "false"}, "deny"),
        ("S3 sends the uploads bucket's events to the intake", policy["intake-queue"], S3, "sqs:SendMessage", queue["intake"],
         access_log, "allow"),
        ("... not another bucket's", policy["intake-queue"], S3, "sqs:SendMessage", queue["intake"],
         {**access_log, "aws:SourceArn": "arn:aws:s3:::someone-elses"}, "implicit"),
        ("... not another account's", policy["intake-queue"], S3, "sqs:SendMessage", queue["intake"],
         {**access_log, "aws:SourceAccount": OTHER_ACCOUNT}, "implicit"),
        *((f"the topic sends claim checks to the {name}", policy[f"{name}-queue"], SNS, "sqs:SendMessage", queue[name],
           {"aws:SourceArn": topic}, "allow") for name in ("thumbnail-stage", "label-stage")),
        ("... no other topic does", policy["thumbnail-stage-queue"], SNS, "sqs:SendMessage", queue["thumbnail-stage"],
         {"aws:SourceArn": topic.replace(ACCOUNT_ID, OTHER_ACCOUNT)}, "implicit"),
        ("the account publishes claim checks", policy["claim-checks"], ACCOUNT, "sns:Publish", topic, {}, "allow"),
        ("... and may subscribe", policy["claim-checks"], ACCOUNT, "sns:Subscribe", topic, {}, "allow"),
        ("... but the topic policy gives no one its deletion", policy["claim-checks"], ACCOUNT, "sns:DeleteTopic", topic, {}, "implicit"),
        ("another account may not publish", policy["claim-checks"], {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"},
         "sns:Publish", topic, {}, "implicit"),
        ("the account administers the topics' key", policy["topics-key"], ACCOUNT, "kms:ScheduleKeyDeletion", "*", {}, "allow"),
        ("CloudWatch encrypts this account's alarms with it", policy["topics-key"], CLOUDWATCH, "kms:GenerateDataKey",
         "*", {"aws:SourceAccount": ACCOUNT_ID}, "allow"),
        ("... not another account's", policy["topics-key"], CLOUDWATCH, "kms:Decrypt", "*",
         {"aws:SourceAccount": OTHER_ACCOUNT}, "implicit"),
        ("... and may not administer it", policy["topics-key"], CLOUDWATCH, "kms:ScheduleKeyDeletion", "*",
         {"aws:SourceAccount": ACCOUNT_ID}, "implicit"),
    ]


def test_each_resource_policy_allows_exactly_these_requests(stack):
    answers = [(what, judged(policy, principal, action, resource, context))
               for what, policy, principal, action, resource, context, _ in requests(stack)]
    assert answers == [(what, expected) for what, *_, expected in requests(stack)]


def test_every_resource_policy_statement_decides_one_of_those_requests(stack):
    # A statement no request reaches could have any effect, principal or condition and the test above would pass.
    decided = {(policy.urn, json.dumps(s, sort_keys=True))
               for _, policy, principal, action, resource, context, _ in requests(stack)
               for s in statements(policy) if s.get("Principal") in ("*", principal)
               and decide([s], Need(action, resource, {"aws:SecureTransport": "true", **context})) != "implicit"}
    every = {(p.urn, json.dumps(s, sort_keys=True)) for typ in ("aws:s3/bucketPolicy:BucketPolicy",
             "aws:sqs/queuePolicy:QueuePolicy", "aws:sns/topicPolicy:TopicPolicy", "aws:kms/key:Key")
             for p in stack.of_type(typ) for s in statements(p)}
    assert every - decided == set()
