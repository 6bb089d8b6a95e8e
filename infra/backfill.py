"""Onboarding a bucket that already holds images: the backfill function (handlers/backfill.py) and, with
`batchOperations`, what an S3 Batch Operations job over the uploads bucket needs.

The function is always there: it has no trigger and costs nothing idle, and only who is allowed to invoke it can
(the operator policy, for `python -m ops backfill`; the Batch Operations role). Its role is the intake's, exactly:
it judges an object the way the intake does, with the intake's settings.

Pulumi declares no Batch Operations job: a job is an API call (S3 Control CreateJob), not a resource that lives on,
so the stack declares what a job needs (an inventory to run over, the role it assumes, where its report goes) and
outputs what `aws s3control create-job` takes; the README gives the command.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from handlers.backfill import MAX_TASKS
from handlers.names import UPLOADS_PREFIX, Function
from infra import iam, links, policies
from infra.settings import Settings
from infra.storage import expire_after
from infra.worker import LambdaFunction, Layers, build_function

# Lambda's longest timeout (Lambda Developer Guide, "Lambda quotas": function timeout, 900 seconds).
LAMBDA_MAX_TIMEOUT = 900
INVENTORY_PREFIX = "inventory/"  # S3 Inventory's lists of the uploads bucket, in the log bucket
INVENTORY_NAME = Function.BACKFILL.value  # the inventory configuration's id: the lists are for the backfill
REPORTS_PREFIX = "batch-operations/"  # Batch Operations' completion reports, in the log bucket
INVENTORY_DAYS = 7  # each daily list is superseded the next day; a week covers a job started a few days later


def backfill_sizing(s: Settings) -> tuple[int, int]:
    """(memory, timeout): a task is the intake's work on one object, so the intake's memory, and the intake's time for
    a batch of its messages scaled to the most tasks an invocation takes (MAX_TASKS, ops' largest --batch)."""
    intake = s.stage(Function.INTAKE)
    return intake.memory, min(LAMBDA_MAX_TIMEOUT, math.ceil(intake.timeout * MAX_TASKS / intake.batch_size))


def backfill_function(name: str, s: Settings, function_links: Sequence[links.Link], layers: Layers,
                      opts: pulumi.ResourceOptions) -> LambdaFunction:
    """`function_links`: the intake's (its uses and its settings). With `batchOperations` its concurrency is reserved
    (backfillConcurrency): a job invokes it as fast as Lambda allows, and the reservation is also its cap."""
    memory, timeout = backfill_sizing(s)
    return build_function(f"{name}-backfill", Function.BACKFILL, s.functions, memory=memory, timeout=timeout,
                          links=function_links, layers=layers, opts=opts,
                          reserved_concurrency=s.backfill_concurrency if s.batch_operations else None)


def log_bucket_rules(s: Settings) -> list[aws.s3.BucketLifecycleConfigurationRuleArgs]:
    """The inventory's lists expire; the jobs' reports are kept as long as the access logs."""
    if not s.batch_operations:
        return []
    return [expire_after("expire-inventory", INVENTORY_PREFIX, INVENTORY_DAYS),
            expire_after("expire-batch-operations-reports", REPORTS_PREFIX, s.access_log_retention_days)]


def log_bucket_statements(s: Settings, logs: aws.s3.Bucket, uploads: aws.s3.Bucket,
                          account_id: pulumi.Input[str]) -> list[policies.Statement]:
    return [policies.inventory_reports(logs.arn, INVENTORY_PREFIX, uploads.arn, account_id)] if s.batch_operations else []


@dataclass
class BatchOperations:
    role: aws.iam.Role
    inventory: aws.s3.Inventory

    def outputs(self, function: aws.lambda_.Function, logs: aws.s3.Bucket, uploads: aws.s3.Bucket,
                account_id: pulumi.Input[str]) -> dict[str, pulumi.Input[str]]:
        """What `aws s3control create-job` takes (README, "Onboarding an existing bucket")."""
        return {"accountId": account_id, "functionArn": function.arn, "roleArn": self.role.arn,
                "reportBucketArn": logs.arn, "reportPrefix": REPORTS_PREFIX.rstrip("/"),
                # S3 User Guide, "Locating your inventory list": <prefix>/<source bucket>/<config id>/<date>/manifest.json
                "inventoryManifests": pulumi.Output.concat("s3://", logs.bucket, "/", INVENTORY_PREFIX, uploads.bucket,
                                                           "/", INVENTORY_NAME, "/")}


def batch_operations(name: str, function: aws.lambda_.Function, uploads: aws.s3.Bucket, logs: aws.s3.Bucket,
                     account_id: pulumi.Input[str], opts: pulumi.ResourceOptions,
                     depends_on: Sequence[pulumi.Resource]) -> BatchOperations:
    """A daily inventory of the uploads' current versions (a Batch Operations manifest: S3 User Guide, "Specifying a
    manifest"), and the role a job assumes: invoke the backfill function and nothing else, read the inventory, write
    its completion report (S3 User Guide, "Invoke AWS Lambda function", "Example IAM permissions", narrowed to these
    resources). `depends_on`: the log bucket's policy that admits the inventory (S3 checks it when it is put)."""
    inventory = aws.s3.Inventory(
        f"{name}-uploads-inventory", bucket=uploads.id, name=INVENTORY_NAME, included_object_versions="Current",
        schedule=aws.s3.InventoryScheduleArgs(frequency="Daily"),
        filter=aws.s3.InventoryFilterArgs(prefix=UPLOADS_PREFIX),
        optional_fields=["Size", "LastModifiedDate", "ETag"],
        destination=aws.s3.InventoryDestinationArgs(bucket=aws.s3.InventoryDestinationBucketArgs(
            bucket_arn=logs.arn, format="CSV", prefix=INVENTORY_PREFIX.rstrip("/"),
            encryption=aws.s3.InventoryDestinationBucketEncryptionArgs(sse_s3=aws.s3.InventoryDestinationBucketEncryptionSseS3Args()))),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(parent=uploads, depends_on=list(depends_on))))
    role = aws.iam.Role(f"{name}-batch-operations-role",
                        assume_role_policy=iam.document([policies.batch_operations_trust(account_id)]),
                        description="claimcheck: S3 Batch Operations jobs that backfill the uploads bucket", opts=opts)
    aws.iam.RolePolicy(f"{name}-batch-operations-policy", role=role.id, policy=iam.document([
        iam.allow(["lambda:InvokeFunction"], [function.arn]),
        iam.allow(["s3:GetObject", "s3:GetObjectVersion"], [iam.s3_objects(logs.arn, INVENTORY_PREFIX)]),
        iam.allow(["s3:PutObject"], [iam.s3_objects(logs.arn, REPORTS_PREFIX)]),
        # S3 User Guide, "Granting permissions for Batch Operations", Permissions policies: every example grants
        # s3:GetBucketLocation for the manifest and report bucket (a bucket action: the bucket's ARN, not its objects).
        iam.allow(["s3:GetBucketLocation"], [logs.arn]),
    ]), opts=opts)
    return BatchOperations(role, inventory)
