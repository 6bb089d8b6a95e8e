"""IAM for the functions: one role each, holding only what its handler calls."""
from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
# X-Ray's write actions support no resource-level permissions; AWS's managed
# policy for them is the narrowest grant there is.
XRAY_WRITE_POLICY = "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess"


def allow(actions: list[str], resources: list[Any], condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": sorted(actions), "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def document(statements: list[dict[str, Any]]) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements})


def account_root(partition: pulumi.Input[str], account_id: pulumi.Input[str]) -> pulumi.Output[str]:
    """The account itself as a principal: whatever IAM in this account allows."""
    return pulumi.Output.concat("arn:", partition, ":iam::", account_id, ":root")


def function_role(name: str, statements: list[dict[str, Any]], tracing: bool,
                  opts: pulumi.ResourceOptions) -> tuple[aws.iam.Role, list[pulumi.Resource]]:
    """A role only `name`'s function can assume, with `statements` as its one inline policy.
    Returns the role and what the function must be created after (its policy, and the X-Ray attachment)."""
    role = aws.iam.Role(f"{name}-role", assume_role_policy=pulumi.Output.json_dumps(LAMBDA_TRUST),
                        description=f"claimcheck {name} function", opts=opts)
    grants: list[pulumi.Resource] = [
        aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=document(statements), opts=opts)]
    if tracing:
        grants.append(aws.iam.RolePolicyAttachment(f"{name}-xray", role=role.name, policy_arn=XRAY_WRITE_POLICY, opts=opts))
    return role, grants


def s3_objects(bucket_arn: pulumi.Input[str], prefix: str) -> pulumi.Output[str]:
    return pulumi.Output.concat(bucket_arn, "/", prefix, "*")


def read_uploads(bucket_arn: pulumi.Input[str], prefix: str) -> list[dict[str, Any]]:
    """Read any version of an upload, and learn that one is missing: without s3:ListBucket on the bucket,
    S3 answers a GET or HEAD of a missing key with 403 AccessDenied instead of 404 (S3 API reference,
    GetObject and HeadObject, "Permissions"), which would look transient and loop to the DLQ. The grant is on
    the bucket without an s3:prefix condition: that is the permission those pages name, and no page says which
    prefix S3 evaluates for a missing key."""
    return [allow(["s3:GetObject", "s3:GetObjectVersion"], [s3_objects(bucket_arn, prefix)]),
            allow(["s3:ListBucket"], [bucket_arn])]
