"""Every resource policy the pipeline attaches, in one place: who may send to the queues and topics, use the
key, and read or write the buckets. (What each function's own role allows comes from its links: infra/links.py.)

Each returns a statement (or a whole document for a key) whose principal, action, resource and condition the
tests in tests/test_policies.py and tests/test_security.py hold to exactly this.
"""
from __future__ import annotations

from typing import Any

import pulumi

from handlers.names import API_UPLOADS_PREFIX
from infra import iam

Statement = dict[str, Any]


def tls_only(bucket_arn: pulumi.Input[str]) -> Statement:
    """Deny every request to the bucket that does not come over TLS (Security Hub S3.5)."""
    return {"Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [bucket_arn, pulumi.Output.concat(bucket_arn, "/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            "Sid": "DenyInsecureTransport"}


def api_uploads_create_only(bucket_arn: pulumi.Input[str]) -> Statement:
    """A PUT under the upload API's prefix must carry If-None-Match, so an upload grant, replayed, cannot replace
    what it uploaded. S3 User Guide, "Enforce conditional writes": the condition key s3:if-none-match is absent
    (Null) when the header is."""
    return {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
            "Resource": iam.s3_objects(bucket_arn, API_UPLOADS_PREFIX), "Condition": {"Null": {"s3:if-none-match": "true"}},
            "Sid": "ApiUploadsAreCreateOnly"}


def api_uploads_only_through_the_api(bucket_arn: pulumi.Input[str], upload_role_arn: pulumi.Input[str] | None) -> Statement:
    """The upload API's prefix names the owner (uploads/api/<owner>/…), so only the upload function's grants may put
    there: whoever else may write to uploads/ could otherwise file an image under another owner's name. A presigned
    PUT is made with its signer's permissions, and aws:PrincipalArn of a role session is the role's ARN (IAM User
    Guide, "AWS global condition context keys", aws:PrincipalArn). Without an upload API nobody puts there."""
    statement: Statement = {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
                            "Resource": iam.s3_objects(bucket_arn, API_UPLOADS_PREFIX), "Sid": "ApiUploadsOnlyByTheApi"}
    if upload_role_arn is not None:
        statement["Condition"] = {"ArnNotEquals": {"aws:PrincipalArn": upload_role_arn}}
    return statement


def thumbnails_through_distribution(bucket_arn: pulumi.Input[str], prefix: str,
                                    distribution_arn: pulumi.Input[str]) -> Statement:
    """CloudFront reads thumbnails with Origin Access Control, for this distribution only (AWS:SourceArn)."""
    return {"Effect": "Allow",
            "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject",
            "Resource": iam.s3_objects(bucket_arn, prefix),
            "Condition": {"StringEquals": {"AWS:SourceArn": distribution_arn}},
            "Sid": "ThumbnailsThroughThisDistribution"}


def server_access_logs(log_bucket_arn: pulumi.Input[str], prefix: str, source_bucket_arn: pulumi.Input[str],
                       account_id: pulumi.Input[str]) -> Statement:
    """S3 delivers server access logs of `source_bucket_arn` with the logging service principal, admitted for that
    bucket and account only (S3 User Guide, "Enabling Amazon S3 server access logging")."""
    return {"Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"}, "Action": "s3:PutObject",
            "Resource": iam.s3_objects(log_bucket_arn, prefix),
            "Condition": {"ArnLike": {"aws:SourceArn": source_bucket_arn},
                          "StringEquals": {"aws:SourceAccount": account_id}},
            "Sid": "S3ServerAccessLogsFromTheUploadsBucket"}


def cdn_standard_logs(log_bucket_arn: pulumi.Input[str], prefix: str, partition: pulumi.Input[str],
                      account_id: pulumi.Input[str]) -> Statement:
    """CloudFront's standard logs (v2) come through CloudWatch Logs' delivery service, admitted for this account's
    delivery sources in us-east-1, where CloudFront's live (CloudWatch Logs User Guide, "Logs sent to Amazon S3"
    under "Logging that requires additional permissions [V2]"), with the one ACL an owner-enforced bucket takes."""
    return {"Effect": "Allow",
            "Principal": {"Service": "delivery.logs.amazonaws.com"}, "Action": "s3:PutObject",
            "Resource": iam.s3_objects(log_bucket_arn, prefix),
            "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceAccount": account_id},
                          "ArnLike": {"aws:SourceArn": pulumi.Output.concat(
                              "arn:", partition, ":logs:us-east-1:", account_id, ":delivery-source:*")}},
            "Sid": "CloudFrontStandardLogsOfThisAccount"}


def topic_key(account_root: pulumi.Input[str], account_id: pulumi.Input[str]) -> list[Statement]:
    """The topics' KMS key: the account administers it (IAM decides who in it may), and CloudWatch may use it to
    publish this account's alarms to an encrypted topic (it cannot with the AWS-managed SNS key)."""
    return [
        {"Effect": "Allow", "Principal": {"AWS": account_root},
         "Action": "kms:*", "Resource": "*",
         "Sid": "AccountAdministers"},
        {"Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
         "Sid": "CloudWatchPublishesAlarms"},
    ]


def topic_owner_only(topic_arn: pulumi.Input[str], account_root: pulumi.Input[str]) -> Statement:
    """Only this account may publish claim checks or subscribe to them."""
    return {"Effect": "Allow", "Principal": {"AWS": account_root},
            "Action": ["sns:Publish", "sns:Subscribe", "sns:GetTopicAttributes"], "Resource": topic_arn,
            "Sid": "OwnerOnly"}


def queue_from_bucket(queue_arn: pulumi.Input[str], bucket_arn: pulumi.Input[str],
                      account_id: pulumi.Input[str]) -> Statement:
    """S3 may send this bucket's events, of this account, to the queue."""
    return {"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sqs:SendMessage", "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": bucket_arn}, "StringEquals": {"aws:SourceAccount": account_id}},
            "Sid": "UploadEventsFromThisBucket"}


def queue_from_topic(queue_arn: pulumi.Input[str], topic_arn: pulumi.Input[str]) -> Statement:
    """Only this topic may send to the queue."""
    return {"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage", "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            "Sid": "ClaimChecksFromTopic"}


def inventory_reports(log_bucket_arn: pulumi.Input[str], prefix: str, source_bucket_arn: pulumi.Input[str],
                      account_id: pulumi.Input[str]) -> Statement:
    """S3 Inventory writes the uploads bucket's lists with the S3 service principal, admitted for that bucket and
    account only, with the one ACL an owner-enforced bucket takes (S3 User Guide, "Configuring Amazon S3 Inventory",
    "Create a destination bucket policy")."""
    return {"Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"}, "Action": "s3:PutObject",
            "Resource": iam.s3_objects(log_bucket_arn, prefix),
            "Condition": {"ArnLike": {"aws:SourceArn": source_bucket_arn},
                          "StringEquals": {"aws:SourceAccount": account_id, "s3:x-amz-acl": "bucket-owner-full-control"}},
            "Sid": "S3InventoryOfTheUploadsBucket"}


def batch_operations_trust(account_id: pulumi.Input[str]) -> Statement:
    """Only S3 Batch Operations may assume the role (S3 User Guide, "Invoke AWS Lambda function", trust policy), and
    only for jobs of this account (aws:SourceAccount: IAM User Guide, "The confused deputy problem")."""
    return {"Effect": "Allow", "Principal": {"Service": "batchoperations.s3.amazonaws.com"}, "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}}
