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


def function_role(name: str, statements: list[dict[str, Any]], tracing: bool,
                  parent: pulumi.Resource) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
    """A role only `name`'s function can assume, with `statements` as its one inline policy."""
    opts = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(f"{name}-role", assume_role_policy=pulumi.Output.json_dumps(LAMBDA_TRUST),
                        description=f"claimcheck {name} function", opts=opts)
    policy = aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=document(statements), opts=opts)
    if tracing:
        aws.iam.RolePolicyAttachment(f"{name}-xray", role=role.name, policy_arn=XRAY_WRITE_POLICY, opts=opts)
    return role, policy


def s3_objects(bucket_arn: pulumi.Input[str], prefix: str) -> pulumi.Output[str]:
    return pulumi.Output.concat(bucket_arn, "/", prefix, "*")
