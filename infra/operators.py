"""What the people who run the pipeline may do, as one customer-managed policy to attach to their role or group:
exactly the calls `python -m ops` makes, on this stack's resources only.

  status        sqs:GetQueueAttributes on every queue; cloudwatch:GetMetricData (it takes no resource: "*")
  show          dynamodb:GetItem on the table
  failures      dynamodb:Query on the attention index
  dlq, redrive  sqs:ReceiveMessage, DeleteMessage, StartMessageMoveTask, ListMessageMoveTasks on the dead-letter
                queues; sqs:SendMessage on the queues they redrive to (SQS Developer Guide,
                "Configure queue permissions for dead-letter queue redrive")
  reprocess     dynamodb:Scan on the table; sns:Publish to the claim-check topic, with its key
  pause/resume  lambda:InvokeFunction on the pause function (handlers/pause.py), which enables or disables one stage's
                mapping and nothing else; lambda:GetEventSourceMapping on this stack's mappings, to wait for the state.
                Never UpdateEventSourceMapping: IAM cannot limit what an update changes (FilterCriteria, the function,
                batching), only which mapping and function it names
  backfill      lambda:InvokeFunction on the backfill function (handlers/backfill.py: it judges each object with the
                intake's rights, which operators do not get); s3:ListBucket on the uploads bucket under uploads/ (the
                walk of a prefix); with batchOperations, s3:GetObject on the inventory's lists in the log bucket (a
                walk of an inventory manifest); dynamodb:GetItem (waiting for the records to settle)
  gallery       dynamodb:Scan on the table; s3:GetObject on the thumbnails (the presigned GETs the page links to
                carry the signer's permission, so this is what lets them load)
  a stage's     what each deployed stage's declaration names for its own commands (handlers/stages.py,
                Stage.operator), and only while it is deployed
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from handlers.names import ATTENTION_INDEX, THUMBNAILS_PREFIX, UPLOADS_PREFIX, Function
from infra import iam, links
from infra.settings import Settings
from infra.worker import Layers, QueueWorker, build_function

PAUSE_MEMORY, PAUSE_TIMEOUT = 128, 10


def pause_function(name: str, s: Settings, workers: Mapping[str, QueueWorker], layers: Layers,
                   opts: pulumi.ResourceOptions) -> aws.lambda_.Function:
    """The one way operators change a mapping: enable or disable one stage's (handlers/pause.py). No reserved
    concurrency: it runs for a moment per pause or resume, and a new account may reserve none."""
    return build_function(f"{name}-pause", Function.PAUSE, s.functions, memory=PAUSE_MEMORY, timeout=PAUSE_TIMEOUT, links=[
        links.stage_mappings({stage: (w.mapping, w.function) for stage, w in workers.items()})],
        layers=layers, opts=opts).function


@dataclass(frozen=True)
class Backfill:
    """What `python -m ops backfill` reaches: the function, the uploads bucket it lists, and the inventory's lists
    (objects ARN pattern) when the stack has them."""

    function: aws.lambda_.Function
    uploads: aws.s3.Bucket
    inventory: pulumi.Input[str] | None = None


def operator_policy(name: str, workers: Mapping[str, QueueWorker], table: aws.dynamodb.Table, topic: aws.sns.Topic,
                    key: aws.kms.Key, pause: aws.lambda_.Function, thumbnails: pulumi.Input[str],
                    opts: pulumi.ResourceOptions, backfill: Backfill, stages: Sequence[links.Link] = ()) -> aws.iam.Policy:
    queues = [w.queue.arn for w in workers.values()]
    dlqs = [w.dlq.arn for w in workers.values()]
    statements = [
        iam.allow(["sqs:GetQueueAttributes"], [*queues, *dlqs]),
        iam.allow(["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:StartMessageMoveTask", "sqs:ListMessageMoveTasks"],
                  dlqs),
        iam.allow(["sqs:SendMessage"], queues),
        iam.allow(["dynamodb:GetItem", "dynamodb:Scan"], [table.arn]),
        iam.allow(["dynamodb:Query"], [pulumi.Output.concat(table.arn, "/index/", ATTENTION_INDEX)]),
        iam.allow(["sns:Publish"], [topic.arn]),
        iam.allow(["kms:GenerateDataKey", "kms:Decrypt"], [key.arn]),
        # Within one account an identity policy's Allow is enough to invoke: the function needs no resource policy
        # (IAM User Guide, "Policy evaluation for requests within a single account").
        iam.allow(["lambda:InvokeFunction"], [pause.arn, backfill.function.arn]),
        # ListObjectsV2 is s3:ListBucket, held to the prefix it asks for (S3 User Guide, "Bucket policy examples",
        # "Limiting the listing of objects to a specific prefix" with the s3:prefix condition key).
        iam.allow(["s3:ListBucket"], [backfill.uploads.arn], {"StringLike": {"s3:prefix": [f"{UPLOADS_PREFIX}*"]}}),
        *([iam.allow(["s3:GetObject"], [backfill.inventory])] if backfill.inventory is not None else []),
        iam.allow(["lambda:GetEventSourceMapping"], [w.mapping.arn for w in workers.values()]),
        iam.allow(["s3:GetObject"], [pulumi.Output.concat(thumbnails, "/", THUMBNAILS_PREFIX, "*")]),
        # CloudWatch's GetMetricData takes no resource-level permissions (Service Authorization Reference).
        iam.allow(["cloudwatch:GetMetricData"], ["*"]),
        *(statement for link in stages for statement in link.statements),
    ]
    return aws.iam.Policy(f"{name}-operator", description=f"{name}: what `python -m ops` needs, on this stack only",
                          policy=iam.document(statements), opts=opts)
