"""The security baseline, one rule per setting, each named by its Checkov id or Security Hub control.

Each rule reads the resource graph the program registered under mocks and
returns its violations; an empty list means the rule holds.
"""
from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from localcloud.program import Deployment
from tests.infra_helpers import BUCKET, FUNCTION, QUEUE, ROLE, ROLE_POLICY, TOPIC, as_list, by_bucket, statements

MANAGED_FULL_ACCESS = ("AdministratorAccess", "FullAccess", "PowerUserAccess")


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    check: Callable[[Deployment], list[str]]


def _buckets(d: Deployment) -> list[str]:
    return [b.state["bucket"] for b in d.of_type(BUCKET)]


def public_access_blocked(d: Deployment) -> list[str]:
    blocks = by_bucket(d, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    return [f"{b}: {flag} is not on" for b in _buckets(d) for flag in flags
            if not (b in blocks and blocks[b].inputs.get(flag) is True)]


def ownership_enforced(d: Deployment) -> list[str]:
    controls = by_bucket(d, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    return [f"{b}: ACLs still apply" for b in _buckets(d)
            if controls.get(b) is None or controls[b].inputs["rule"]["objectOwnership"] != "BucketOwnerEnforced"]


def buckets_encrypted(d: Deployment) -> list[str]:
    sse = by_bucket(d, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    return [f"{b}: no default encryption" for b in _buckets(d)
            if b not in sse or not any(r.get("applyServerSideEncryptionByDefault", {}).get("sseAlgorithm") in ("AES256", "aws:kms", "aws:kms:dsse")
                                       for r in sse[b].inputs.get("rules", []))]


def tls_only(d: Deployment) -> list[str]:
    policies = by_bucket(d, "aws:s3/bucketPolicy:BucketPolicy")
    problems = []
    for b in _buckets(d):
        denies = statements(policies[b]) if b in policies else []
        if not any(s["Effect"] == "Deny" and s.get("Principal") == "*" and s["Action"] in ("s3:*", ["s3:*"])
                   and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
                   and {f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*"} <= set(as_list(s["Resource"])) for s in denies):
            problems.append(f"{b}: requests without TLS are not denied")
    return problems


def uploads_versioned(d: Deployment) -> list[str]:
    versioning = by_bucket(d, "aws:s3/bucketVersioning:BucketVersioning")
    uploads = d.outputs["uploadsBucket"]
    ok = uploads in versioning and versioning[uploads].inputs["versioningConfiguration"]["status"] == "Enabled"
    return [] if ok else [f"{uploads}: versioning is not enabled"]


def _resource_policies(d: Deployment) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for typ in ("aws:s3/bucketPolicy:BucketPolicy", "aws:sqs/queuePolicy:QueuePolicy", "aws:sns/topicPolicy:TopicPolicy",
                "aws:kms/key:Key"):
        for resource in d.of_type(typ):
            found.extend((resource.name, s) for s in statements(resource))
    return found


def no_public_principals(d: Deployment) -> list[str]:
    problems = []
    for name, s in _resource_policies(d):
        principal = s.get("Principal")
        public = principal == "*" or (isinstance(principal, dict) and "*" in as_list(principal.get("AWS", [])))
        if s["Effect"] == "Allow" and public:
            problems.append(f"{name}: allows anyone ({s.get('Sid', '')})")
    return problems


# IAM JSON policy element reference: a statement's elements, and Effect is exactly Allow or Deny; a Sid holds only
# ASCII letters and digits, and must be unique in its policy (SNS and SQS require it).
STATEMENT_ELEMENTS = {"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource", "NotResource",
                      "Condition"}


def policy_grammar(d: Deployment) -> list[str]:
    problems = []
    for typ in ("aws:s3/bucketPolicy:BucketPolicy", "aws:sqs/queuePolicy:QueuePolicy", "aws:sns/topicPolicy:TopicPolicy",
                "aws:kms/key:Key", ROLE_POLICY, "aws:iam/policy:Policy", ROLE):
        for resource in d.of_type(typ):
            found = statements(resource) if typ != ROLE else json.loads(resource.inputs["assumeRolePolicy"])["Statement"]
            sids = [s["Sid"] for s in found if "Sid" in s]
            if len(sids) != len(set(sids)):
                problems.append(f"{resource.name}: repeated Sid {sorted(sids)}")
            for s in found:
                if set(s) - STATEMENT_ELEMENTS or s.get("Effect") not in ("Allow", "Deny"):
                    problems.append(f"{resource.name}: {sorted(set(s) - STATEMENT_ELEMENTS)} or Effect {s.get('Effect')!r}")
                if "Sid" in s and not (s["Sid"].isascii() and s["Sid"].isalnum()):
                    problems.append(f"{resource.name}: Sid {s['Sid']!r}")
    return problems


def queues_encrypted(d: Deployment) -> list[str]:
    return [f"{q.name}: not encrypted" for q in d.of_type(QUEUE)
            if not (q.inputs.get("sqsManagedSseEnabled") is True or q.inputs.get("kmsMasterKeyId"))]


def topics_encrypted(d: Deployment) -> list[str]:
    return [f"{t.name}: not encrypted with KMS" for t in d.of_type(TOPIC) if not t.inputs.get("kmsMasterKeyId")]


def queue_senders_scoped(d: Deployment) -> list[str]:
    """Only S3 from this bucket and account may send to the intake queue; only this topic to a stage queue. The CDN
    purge queue takes requests from the thumbnail function's role, no service: it has no resource policy, so only
    principals of this account whose identity policies allow it may send (no service can be a confused deputy)."""
    queues = {q.state["url"]: q for q in d.of_type(QUEUE)}
    policies = {p.inputs["queueUrl"]: p for p in d.of_type("aws:sqs/queuePolicy:QueuePolicy")}
    uploads = f"arn:aws:s3:::{d.outputs['uploadsBucket']}"
    expected = {d.outputs["queueUrls"]["intake"]: ("s3.amazonaws.com", {
        "ArnEquals": {"aws:SourceArn": uploads}, "StringEquals": {"aws:SourceAccount": "123456789012"}})}
    problems = []
    for stage, url in d.outputs["queueUrls"].items():
        if stage == "cdn_purge":
            if url in policies:
                problems.append(f"{queues[url].name}: a resource policy on a queue no service sends to")
        elif stage != "intake":
            expected[url] = ("sns.amazonaws.com", {"ArnEquals": {"aws:SourceArn": d.outputs["claimCheckTopicArn"]}})
    for url, (service, condition) in expected.items():
        if url not in policies:
            problems.append(f"{queues[url].name}: no queue policy")
            continue
        allows = [s for s in statements(policies[url]) if s["Effect"] == "Allow"]
        scoped = (len(allows) == 1 and allows[0].get("Principal") == {"Service": service}
                  and allows[0].get("Action") == "sqs:SendMessage" and allows[0].get("Condition") == condition)
        if not scoped:
            problems.append(f"{queues[url].name}: senders are not limited to {service} with {condition}")
    return problems


def table_encrypted_with_pitr(d: Deployment) -> list[str]:
    problems = []
    for table in d.of_type("aws:dynamodb/table:Table"):
        if not table.inputs.get("serverSideEncryption", {}).get("enabled"):
            problems.append(f"{table.name}: no KMS encryption at rest")
        if not table.inputs.get("pointInTimeRecovery", {}).get("enabled"):
            problems.append(f"{table.name}: no point-in-time recovery")
    return problems


def table_deletion_protected(d: Deployment) -> list[str]:
    # Security Hub DynamoDB.6; a stack with forceDestroy: true gives it up on purpose (and is not checked here).
    return [f"{table.name}: no deletion protection" for table in d.of_type("aws:dynamodb/table:Table")
            if not table.inputs.get("deletionProtectionEnabled")]


def cdn_access_logged(d: Deployment) -> list[str]:
    # Checkov's CKV_AWS_86 looks for the legacy logging block, which needs bucket ACLs; this is its intent, met by
    # standard logging (v2): every distribution is a delivery source with a delivery.
    sources = {s.inputs["resourceArn"]: s.state["name"] for s in d.of_type("aws:cloudwatch/logDeliverySource:LogDeliverySource")}
    delivered = {x.inputs["deliverySourceName"] for x in d.of_type("aws:cloudwatch/logDelivery:LogDelivery")}
    return [f"{dist.name}: no standard logs" for dist in d.of_type("aws:cloudfront/distribution:Distribution")
            if sources.get(dist.state["arn"]) not in delivered]


def log_retention(d: Deployment) -> list[str]:
    groups = {g.state["name"]: g for g in d.of_type("aws:cloudwatch/logGroup:LogGroup")}
    problems = []
    for fn in d.of_type(FUNCTION):
        group = groups.get(fn.inputs.get("loggingConfig", {}).get("logGroup", ""))
        if group is None or not group.inputs.get("retentionInDays"):
            problems.append(f"{fn.name}: logs kept forever")
    return problems


def tracing(d: Deployment) -> list[str]:
    return [f"{fn.name}: X-Ray tracing is off" for fn in d.of_type(FUNCTION)
            if fn.inputs.get("tracingConfig", {}).get("mode") != "Active"]


def role_per_function(d: Deployment) -> list[str]:
    roles = [fn.inputs["role"] for fn in d.of_type(FUNCTION)]
    return [f"{role} is shared by {roles.count(role)} functions" for role in sorted(set(roles)) if roles.count(role) > 1]


def _inline_statements(d: Deployment) -> list[tuple[str, dict[str, Any]]]:
    """Every identity policy's statements: the functions' inline policies and the operators' managed policy."""
    return [(p.name, s) for typ in (ROLE_POLICY, "aws:iam/policy:Policy") for p in d.of_type(typ) for s in statements(p)]


# Actions that take no resource-level permissions, so "*" is the only resource they accept (Service Authorization
# Reference: Rekognition's DetectLabels, CloudWatch's GetMetricData).
NO_RESOURCE_LEVEL = (["rekognition:DetectLabels"], ["cloudwatch:GetMetricData"])


def no_wildcard_actions(d: Deployment) -> list[str]:
    return [f"{name}: action {a}" for name, s in _inline_statements(d) for a in as_list(s["Action"]) if "*" in a]


def no_wildcard_resources(d: Deployment) -> list[str]:
    return [f"{name}: '*' resource for {as_list(s['Action'])}" for name, s in _inline_statements(d)
            if "*" in as_list(s["Resource"]) and as_list(s["Action"]) not in NO_RESOURCE_LEVEL]


def s3_scoped_to_prefixes(d: Deployment) -> list[str]:
    uploads = f"arn:aws:s3:::{d.outputs['uploadsBucket']}"
    problems = []
    for name, s in _inline_statements(d):
        for action in as_list(s["Action"]):
            if not action.startswith("s3:"):
                continue
            for resource in as_list(s["Resource"]):
                if action == "s3:ListBucket" and resource == uploads:
                    continue  # on the bucket itself, so a missing upload answers 404 (infra/iam.py, read_uploads)
                if action == "s3:ListBucket":
                    prefixes = s.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
                    if not prefixes or any(p in ("*", "") for p in as_list(prefixes)):
                        problems.append(f"{name}: {action} on {resource} without a prefix condition")
                elif not (fnmatch.fnmatch(resource, "arn:aws:s3:::*/uploads/*") or fnmatch.fnmatch(resource, "arn:aws:s3:::*/thumbnails/*")):
                    problems.append(f"{name}: {action} on {resource}, outside uploads/ and thumbnails/")
    return problems


def no_managed_full_access(d: Deployment) -> list[str]:
    return [f"{a.name}: {a.inputs['policyArn']}" for a in d.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
            if any(word in a.inputs["policyArn"] for word in MANAGED_FULL_ACCESS)]


def trust_only_lambda(d: Deployment) -> list[str]:
    problems = []
    for role in d.of_type(ROLE):
        trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        if any(s.get("Principal") != {"Service": "lambda.amazonaws.com"} for s in trust):
            problems.append(f"{role.name}: assumable by more than Lambda")
    return problems


def uploads_access_logged(d: Deployment) -> list[str]:
    """Server access logs of the uploads bucket go to a bucket of the stack that admits only S3's logging service."""
    uploads = d.outputs["uploadsBucket"]
    logging = by_bucket(d, "aws:s3/bucketLogging:BucketLogging").get(uploads)
    if logging is None:
        return [f"{uploads}: no server access logging"]
    target = logging.inputs["targetBucket"]
    policy = by_bucket(d, "aws:s3/bucketPolicy:BucketPolicy").get(target)
    admits = [s for s in (statements(policy) if policy else []) if s["Effect"] == "Allow"
              and s.get("Principal") == {"Service": "logging.s3.amazonaws.com"}
              and s.get("Condition", {}).get("ArnLike", {}).get("aws:SourceArn") == f"arn:aws:s3:::{uploads}"]
    return [] if target in _buckets(d) and admits else [f"{uploads}: logs go to {target}, which does not admit them"]


def cdn_security_headers(d: Deployment) -> list[str]:
    policies = {p.id: p for p in d.of_type("aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy")}
    problems = []
    for distribution in d.of_type("aws:cloudfront/distribution:Distribution"):
        policy = policies.get(distribution.inputs["defaultCacheBehavior"].get("responseHeadersPolicyId"))
        headers = policy.inputs.get("securityHeadersConfig", {}) if policy else {}
        if not (headers.get("contentTypeOptions", {}).get("override")
                and headers.get("strictTransportSecurity", {}).get("accessControlMaxAgeSec", 0) >= 31_536_000):
            problems.append(f"{distribution.name}: no nosniff and year-long HSTS response headers")
    return problems


def api_access_logged(d: Deployment) -> list[str]:
    return [f"{stage.name}: no access logs" for stage in d.of_type("aws:apigatewayv2/stage:Stage")
            if not stage.inputs.get("accessLogSettings", {}).get("destinationArn")]


def upload_api_concurrency_capped(d: Deployment) -> list[str]:
    """Checkov's rule as it is: a function without reserved concurrency fails it. The one exception the project
    makes is a stack that sets uploadApiConcurrency 0 because its account cannot reserve any (a quota under 101):
    the rule then fails for that stack, and the README says what bounds the function instead
    (tests/test_security.py shows it failing for that stack and nothing else)."""
    return [f"{fn.name}: no reserved concurrency" for fn in d.of_type(FUNCTION)
            if fn.inputs["handler"] == "handlers.upload_api.handler" and not fn.inputs.get("reservedConcurrentExecutions")]


RULES = [
    Rule("IAM grammar", "every policy statement uses IAM's elements, Effect Allow or Deny, unique alphanumeric Sids",
         policy_grammar),
    Rule("CKV_AWS_53/54/55/56, S3.8", "S3 Block Public Access: all four settings on every bucket", public_access_blocked),
    Rule("S3.12", "S3 object ownership enforced (ACLs disabled)", ownership_enforced),
    Rule("CKV_AWS_19", "S3 default encryption on every bucket", buckets_encrypted),
    Rule("S3.5", "S3 buckets deny requests without TLS", tls_only),
    Rule("CKV_AWS_21, S3.14", "S3 versioning on the uploads bucket", uploads_versioned),
    Rule("S3.2, S3.3, SNS.4, SQS.3", "no resource policy allows a public principal", no_public_principals),
    Rule("CKV_AWS_27, SQS.1", "SQS queues encrypted at rest", queues_encrypted),
    Rule("CKV_AWS_26, SNS.1", "SNS topics encrypted with KMS", topics_encrypted),
    Rule("confused deputy (aws:SourceArn/aws:SourceAccount)", "queues accept only this bucket's S3 events or this topic",
         queue_senders_scoped),
    Rule("CKV_AWS_28, DynamoDB.2", "DynamoDB encrypted and point-in-time recovery on", table_encrypted_with_pitr),
    Rule("DynamoDB.6", "DynamoDB tables have deletion protection", table_deletion_protected),
    Rule("CKV_AWS_66", "Lambda log groups have a retention", log_retention),
    Rule("CKV_AWS_50", "Lambda X-Ray tracing active", tracing),
    Rule("least privilege: role per function", "no two functions share a role", role_per_function),
    Rule("CKV_AWS_62/63, IAM.1", "no '*' action in any policy", no_wildcard_actions),
    Rule("CKV_AWS_355, CKV_AWS_290", "no '*' resource except actions that take none (DetectLabels, GetMetricData)",
         no_wildcard_resources),
    Rule("least privilege: S3 prefixes", "S3 permissions scoped to uploads/ and thumbnails/", s3_scoped_to_prefixes),
    Rule("CKV_AWS_274, IAM.1", "no managed full-access or administrator policies", no_managed_full_access),
    Rule("least privilege: trust", "function roles assumable only by Lambda", trust_only_lambda),
    Rule("CKV_AWS_18, S3.9", "S3 server access logging on the uploads bucket", uploads_access_logged),
    Rule("CKV_AWS_86 (intent)", "CloudFront access logs delivered (standard logging v2)", cdn_access_logged),
    Rule("CKV2_AWS_32", "CloudFront sends security headers (nosniff, HSTS)", cdn_security_headers),
    Rule("CKV_AWS_76", "API Gateway stage access logging", api_access_logged),
    Rule("CKV_AWS_115", "the upload API function has reserved concurrency", upload_api_concurrency_capped),
]
