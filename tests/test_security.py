"""The security baseline over every registered resource, and proof that each rule catches its setting's removal."""
from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from localcloud import program
from localcloud.program import Deployment
from tests.conftest import shared_scope
from tests.infra_helpers import FUNCTION, QUEUE, ROLE_POLICY, TOPIC
from tests.security_rules import RULES

# Every edge on (the JWT flavour of the upload API, whose stage has access logs), so every rule has something to check.
EVERYTHING = {"uploadApi": True, "cdn": True, "jwtIssuer": "https://id.example.com/", "jwtAudience": "claimcheck"}


@pytest.fixture(scope=shared_scope)
def stack() -> Deployment:
    return program.run(program.RecordingMocks(), EVERYTHING)


@pytest.fixture(scope=shared_scope)
def plain() -> Deployment:
    return program.run(program.RecordingMocks())


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_the_stack_meets_the_baseline(stack, plain, rule):
    assert rule.check(stack) == [], f"{rule.id}: {rule.title}"
    assert rule.check(plain) == [], f"{rule.id}: {rule.title} (defaults)"


def _first(d: Deployment, typ: str, where: Callable[[Any], bool] = lambda r: True):
    return next(r for r in d.of_type(typ) if where(r))


def _edit_policy(resource, edit: Callable[[list[dict[str, Any]]], None]) -> None:
    document = json.loads(resource.inputs["policy"])
    edit(document["Statement"])
    resource.inputs["policy"] = json.dumps(document)


def _drop(d: Deployment, typ: str) -> None:
    resource = _first(d, typ)
    d.resources.remove(resource)


# One mutation per rule: the resource graph with exactly that setting removed.
MUTATIONS: dict[str, Callable[[Deployment], None]] = {
    "IAM grammar": lambda d: _edit_policy(_first(d, "aws:s3/bucketPolicy:BucketPolicy"), lambda st: st[0].update(Effect="allow")),
    "CKV_AWS_53/54/55/56, S3.8": lambda d: _first(d, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs.update(restrictPublicBuckets=False),
    "S3.12": lambda d: _first(d, "aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs.update(rule={"objectOwnership": "ObjectWriter"}),
    "CKV_AWS_19": lambda d: _drop(d, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"),
    "S3.5": lambda d: _edit_policy(_first(d, "aws:s3/bucketPolicy:BucketPolicy"), lambda st: st.clear()),
    "CKV_AWS_21, S3.14": lambda d: _first(d, "aws:s3/bucketVersioning:BucketVersioning").inputs.update(
        versioningConfiguration={"status": "Suspended"}),
    "S3.2, S3.3, SNS.4, SQS.3": lambda d: _edit_policy(_first(d, "aws:sns/topicPolicy:TopicPolicy"),
                                                      lambda st: st.append({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sns:Publish", "Resource": "*"})),
    "CKV_AWS_27, SQS.1": lambda d: _first(d, QUEUE).inputs.update(sqsManagedSseEnabled=False),
    "CKV_AWS_26, SNS.1": lambda d: _first(d, TOPIC).inputs.pop("kmsMasterKeyId"),
    "confused deputy (aws:SourceArn/aws:SourceAccount)": lambda d: _edit_policy(
        _first(d, "aws:sqs/queuePolicy:QueuePolicy", lambda r: r.inputs["queueUrl"] == d.outputs["queueUrls"]["intake"]),
        lambda st: st[0]["Condition"].pop("StringEquals")),
    "CKV_AWS_28, DynamoDB.2": lambda d: _first(d, "aws:dynamodb/table:Table").inputs.update(pointInTimeRecovery={"enabled": False}),
    "CKV_AWS_66": lambda d: _first(d, "aws:cloudwatch/logGroup:LogGroup").inputs.pop("retentionInDays"),
    "CKV_AWS_50": lambda d: _first(d, FUNCTION).inputs.update(tracingConfig={"mode": "PassThrough"}),
    "least privilege: role per function": lambda d: d.of_type(FUNCTION)[1].inputs.update(role=d.of_type(FUNCTION)[0].inputs["role"]),
    "CKV_AWS_62/63, IAM.1": lambda d: _edit_policy(_first(d, ROLE_POLICY), lambda st: st[0].update(Action="sqs:*")),
    "CKV_AWS_355, CKV_AWS_290": lambda d: _edit_policy(_first(d, ROLE_POLICY), lambda st: st[-1].update(Resource="*")),
    "least privilege: S3 prefixes": lambda d: _edit_policy(
        # a policy with a statement that allows s3:PutObject itself ("s3:PutObjectVersionTagging" contains the words)
        _first(d, ROLE_POLICY, lambda r: any("s3:PutObject" in s["Action"] for s in json.loads(r.inputs["policy"])["Statement"])),
        lambda st: next(s for s in st if "s3:PutObject" in s["Action"]).update(Resource=f"arn:aws:s3:::{d.outputs['thumbnailsBucket']}/*")),
    "CKV_AWS_274, IAM.1": lambda d: _first(d, "aws:iam/rolePolicyAttachment:RolePolicyAttachment").inputs.update(
        policyArn="arn:aws:iam::aws:policy/AmazonS3FullAccess"),
    "least privilege: trust": lambda d: _first(d, "aws:iam/role:Role").inputs.update(assumeRolePolicy=json.dumps({"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}]})),
    "DynamoDB.6": lambda d: _first(d, "aws:dynamodb/table:Table").inputs.update(deletionProtectionEnabled=False),
    "CKV_AWS_18, S3.9": lambda d: _drop(d, "aws:s3/bucketLogging:BucketLogging"),
    "CKV_AWS_86 (intent)": lambda d: _drop(d, "aws:cloudwatch/logDelivery:LogDelivery"),
    "CKV2_AWS_32": lambda d: _first(d, "aws:cloudfront/distribution:Distribution").inputs["defaultCacheBehavior"].pop(
        "responseHeadersPolicyId"),
    "CKV_AWS_76": lambda d: _first(d, "aws:apigatewayv2/stage:Stage").inputs.pop("accessLogSettings"),
    "CKV_AWS_115": lambda d: _first(d, FUNCTION, lambda r: "upload_api" in r.inputs["handler"]).inputs.pop(
        "reservedConcurrentExecutions"),
}


@pytest.mark.parametrize("config", [{"uploadApi": True}, EVERYTHING], ids=["iam", "jwt"])
def test_the_one_exception_a_stack_that_reserves_nothing_fails_only_ckv_aws_115(config):
    # An account whose quota leaves nothing to reserve runs the upload function unreserved (uploadApiConcurrency 0):
    # Checkov's CKV_AWS_115 is not met, and is the only rule that is not (README, "Security baseline").
    deployed = program.run(program.RecordingMocks(), {**config, "uploadApiConcurrency": 0})
    failing = {rule.id: rule.check(deployed) for rule in RULES if rule.check(deployed)}
    assert failing == {"CKV_AWS_115": ["claimcheck-upload-api-function: no reserved concurrency"]}


def test_every_rule_has_a_mutation():
    assert set(MUTATIONS) == {rule.id for rule in RULES}


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_each_rule_fails_when_its_setting_is_removed(stack, rule):
    mutated = copy.deepcopy(stack)
    MUTATIONS[rule.id](mutated)
    assert rule.check(mutated), f"{rule.id} did not notice its setting was removed"
