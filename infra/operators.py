"""What the people who run the pipeline may do, as one customer-managed policy to attach to their role or group:
exactly the calls `python -m ops` makes, on this stack's resources only.

  status        sqs:GetQueueAttributes on every queue; cloudwatch:GetMetricData (it takes no resource: "*")
  show          dynamodb:GetItem on the table
  failures      dynamodb:Query on the attention index
  dlq, redrive  sqs:ReceiveMessage, DeleteMessage, StartMessageMoveTask, ListMessageMoveTasks on the dead-letter
                queues; sqs:SendMessage on the queues they redrive to (SQS Developer Guide,
                "Configure queue permissions for dead-letter queue redrive")
  reprocess     dynamodb:Scan on the table; sns:Publish to the claim-check topic, with its key
  pause/resume  lambda:GetEventSourceMapping, UpdateEventSourceMapping on this stack's mappings
  gallery       dynamodb:Scan on the table; s3:GetObject on the thumbnails (the presigned GETs the page links to
                carry the signer's permission, so this is what lets them load)
"""
from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

from handlers.names import ATTENTION_INDEX, THUMBNAILS_PREFIX, Function
from infra import iam
from infra.worker import QueueWorker


def event_source_mapping_arn(mapping: aws.lambda_.EventSourceMapping, partition: pulumi.Input[str],
                             region: pulumi.Input[str], account_id: pulumi.Input[str]) -> pulumi.Output[str]:
    """arn:<partition>:lambda:<region>:<account>:event-source-mapping:<UUID> (Service Authorization Reference, Lambda's
    resource types), the resource UpdateEventSourceMapping is authorized on."""
    return pulumi.Output.concat("arn:", partition, ":lambda:", region, ":", account_id, ":event-source-mapping:",
                                mapping.uuid)


def operator_policy(name: str, workers: Mapping[Function, QueueWorker], table: aws.dynamodb.Table, topic: aws.sns.Topic,
                    key: aws.kms.Key, mapping_arns: list[pulumi.Input[str]], thumbnails: pulumi.Input[str],
                    opts: pulumi.ResourceOptions) -> aws.iam.Policy:
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
        iam.allow(["lambda:GetEventSourceMapping", "lambda:UpdateEventSourceMapping"], mapping_arns),
        iam.allow(["s3:GetObject"], [pulumi.Output.concat(thumbnails, "/", THUMBNAILS_PREFIX, "*")]),
        # CloudWatch's GetMetricData takes no resource-level permissions (Service Authorization Reference).
        iam.allow(["cloudwatch:GetMetricData"], ["*"]),
    ]
    return aws.iam.Policy(f"{name}-operator", description=f"{name}: what `python -m ops` needs, on this stack only",
                          policy=iam.document(statements), opts=opts)
