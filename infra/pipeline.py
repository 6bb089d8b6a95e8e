"""ClaimCheckPipeline: the whole pipeline as one component.

uploads bucket --S3 notification--> intake queue --> intake function
  --> claim-check topic --> ThumbnailStage, LabelStage --> results table
with a DLQ and alarms on every hop, an alarm topic and a dashboard.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import iam, packaging
from infra.edges import ThumbnailCdn, ThumbnailCdnArgs, UploadApi, UploadApiArgs, conditional_puts_only
from infra.settings import RUNTIME_GLIBC, Settings
from infra.stages import LabelStage, StageArgs, ThumbnailStage
from infra.worker import WorkerArgs, build_worker

UPLOADS_PREFIX = "uploads/"
ACCESS_LOGS_PREFIX = "uploads-bucket/"
CDN_LOGS_PREFIX = "cdn/"


def dashboard_name(project: str, stack: str) -> str:
    """CloudWatch dashboard names take only A-Za-z0-9, '-' and '_', up to 255 (PutDashboard API reference);
    stack names may hold '.', and two projects may have a stack of the same name in one account."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{project}-{stack}")[:255]


@dataclass
class PrivateBucket:
    name: str
    bucket: aws.s3.Bucket
    public_access_block: aws.s3.BucketPublicAccessBlock
    policy: aws.s3.BucketPolicy | None = None

    def tls_only_policy(self, *allow: dict) -> aws.s3.BucketPolicy:
        """The bucket policy: deny every request without TLS; then only the `allow` statements given."""
        self.policy = aws.s3.BucketPolicy(f"{self.name}-policy", bucket=self.bucket.id, policy=iam.document([{
            "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [self.bucket.arn, pulumi.Output.concat(self.bucket.arn, "/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }, *allow]), opts=pulumi.ResourceOptions(parent=self.bucket, depends_on=[self.public_access_block]))
        return self.policy


def private_bucket(name: str, parent: pulumi.Resource, versioned: bool,
                   lifecycle_rules: list[aws.s3.BucketLifecycleConfigurationRuleArgs],
                   force_destroy: bool) -> PrivateBucket:
    """A bucket nobody outside the account can reach: public access blocked, owner-enforced,
    encrypted at rest (SSE-S3: the only kind S3 access logs and CloudFront OAC without a KMS grant can use);
    its TLS-only policy comes from PrivateBucket.tls_only_policy."""
    opts = pulumi.ResourceOptions(parent=parent)
    bucket = aws.s3.Bucket(name, force_destroy=force_destroy, opts=opts)
    child = pulumi.ResourceOptions(parent=bucket)
    block = aws.s3.BucketPublicAccessBlock(f"{name}-public-access-block", bucket=bucket.id, block_public_acls=True,
                                           block_public_policy=True, ignore_public_acls=True,
                                           restrict_public_buckets=True, opts=child)
    aws.s3.BucketOwnershipControls(f"{name}-ownership", bucket=bucket.id, rule=aws.s3.BucketOwnershipControlsRuleArgs(
        object_ownership="BucketOwnerEnforced"), opts=child)
    aws.s3.BucketServerSideEncryptionConfiguration(f"{name}-encryption", bucket=bucket.id, rules=[
        aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
            apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                sse_algorithm="AES256"),
            bucket_key_enabled=True)], opts=child)
    if versioned:
        aws.s3.BucketVersioning(f"{name}-versioning", bucket=bucket.id,
                                versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
                                opts=child)
    aws.s3.BucketLifecycleConfiguration(f"{name}-lifecycle", bucket=bucket.id, rules=[
        *lifecycle_rules,
        aws.s3.BucketLifecycleConfigurationRuleArgs(
            id="abort-incomplete-uploads", status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
            abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                days_after_initiation=7)),
    ], opts=child)
    return PrivateBucket(name, bucket, block)


class ClaimCheckPipeline(pulumi.ComponentResource):
    def __init__(self, name: str, settings: Settings, opts: pulumi.ResourceOptions | None = None):
        super().__init__("claimcheck:index:ClaimCheckPipeline", name, None, opts)
        s = settings
        child = pulumi.ResourceOptions(parent=self)
        account_id = aws.get_caller_identity_output().account_id
        region = aws.get_region_output().region
        partition = aws.get_partition_output().partition
        account_root = iam.account_root(partition, account_id)

        # Stores
        uploads = private_bucket(f"{name}-uploads", self, versioned=True, force_destroy=s.force_destroy, lifecycle_rules=[
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="originals-to-infrequent-access", status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=UPLOADS_PREFIX),
                transitions=[aws.s3.BucketLifecycleConfigurationRuleTransitionArgs(
                    days=s.originals_transition_days, storage_class="STANDARD_IA")],
                noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=s.noncurrent_version_days)),
            # Once a deleted upload's old versions have expired, only its delete marker is left: remove it too.
            # (S3 User Guide, "Removing expired object delete markers"; it takes no Days and no tag filter.)
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="expired-delete-markers", status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=UPLOADS_PREFIX),
                expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(expired_object_delete_marker=True)),
        ])
        uploads.tls_only_policy(*([conditional_puts_only(uploads.bucket.arn)] if s.upload_api else []))
        logs = self._access_logs(name, uploads, account_id, partition, s) if s.access_logging else None
        if s.upload_allowed_origins:
            # Browsers PUT straight to S3 with the grant the upload API hands out.
            aws.s3.BucketCorsConfiguration(f"{name}-uploads-cors", bucket=uploads.bucket.id, cors_rules=[{
                "allowed_methods": ["PUT"], "allowed_origins": list(s.upload_allowed_origins),
                "allowed_headers": ["content-type", "content-length", "if-none-match", "x-amz-meta-owner"],
                "expose_headers": ["etag", "x-amz-version-id"], "max_age_seconds": 3000}],
                opts=pulumi.ResourceOptions(parent=uploads.bucket))
        thumbnails = private_bucket(f"{name}-thumbnails", self, versioned=False, lifecycle_rules=[],
                                    force_destroy=s.force_destroy)
        cdn = ThumbnailCdn(f"{name}-cdn", ThumbnailCdnArgs(
            s, thumbnails.bucket.bucket_regional_domain_name,
            logs=(logs.bucket.arn, CDN_LOGS_PREFIX, logs.policy) if logs else None), opts=child) if s.cdn else None
        thumbnails.tls_only_policy(*([cdn.read_statement(thumbnails.bucket.arn)] if cdn else []))
        table = aws.dynamodb.Table(
            f"{name}-images", billing_mode="PAY_PER_REQUEST", hash_key="image_id",
            attributes=[aws.dynamodb.TableAttributeArgs(name="image_id", type="S")],
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
            deletion_protection_enabled=not s.force_destroy,
            opts=child)

        # Topics, encrypted with a key CloudWatch may use too (the AWS-managed SNS key would refuse alarms).
        key = aws.kms.Key(f"{name}-topics-key", description="claimcheck topics", enable_key_rotation=True,
                          deletion_window_in_days=30, policy=iam.document([
                              {"Sid": "AccountAdministers", "Effect": "Allow", "Principal": {"AWS": account_root},
                               "Action": "kms:*", "Resource": "*"},
                              {"Sid": "CloudWatchPublishesAlarms", "Effect": "Allow",
                               "Principal": {"Service": "cloudwatch.amazonaws.com"},
                               "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
                               "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}},
                          ]), opts=child)
        alarm_topic = aws.sns.Topic(f"{name}-alarms", kms_master_key_id=key.arn, opts=child)
        if s.alarm_email:
            aws.sns.TopicSubscription(f"{name}-alarm-email", topic=alarm_topic.arn, protocol="email",
                                      endpoint=s.alarm_email, opts=child)
        claim_checks = aws.sns.Topic(f"{name}-claim-checks", kms_master_key_id=key.arn, opts=child)
        topic_policy_doc = iam.document([{
            "Sid": "OwnerOnly", "Effect": "Allow", "Principal": {"AWS": account_root},
            "Action": ["sns:Publish", "sns:Subscribe", "sns:GetTopicAttributes"], "Resource": claim_checks.arn,
        }])
        aws.sns.TopicPolicy(f"{name}-claim-checks-policy", arn=claim_checks.arn, policy=topic_policy_doc, opts=child)

        # AWS's public Powertools layer for the version requirements.txt pins, in this region.
        powertools = aws.ssm.get_parameter_output(name=packaging.powertools_parameter(s.runtime, s.architecture)).value
        pillow = aws.lambda_.LayerVersion(
            f"{name}-pillow", layer_name=f"{name}-pillow-{s.architecture}",
            code=pulumi.FileArchive(str(packaging.pillow_layer(s.architecture, s.runtime, RUNTIME_GLIBC[s.runtime],
                                                               heif=s.needs_heif))),
            compatible_runtimes=[s.runtime], compatible_architectures=[s.architecture],
            description=f"{packaging.PILLOW_REQUIREMENT}{' + ' + packaging.HEIF_REQUIREMENT if s.needs_heif else ''} "
                        f"for {s.runtime} on {s.architecture}", opts=child)

        # Intake: S3 events in, claim checks out.
        table_access = iam.allow(["dynamodb:GetItem", "dynamodb:UpdateItem"], [table.arn])
        intake = build_worker(f"{name}-intake", WorkerArgs(
            function="intake", settings=s, alarm_topic_arn=alarm_topic.arn, layers=[powertools],
            dropped_metric="InvalidEvents",
            environment={
                "TABLE_NAME": table.name, "TOPIC_ARN": claim_checks.arn,
                "ALLOWED_FORMATS": ",".join(s.allowed_formats),
                # Empty when no allowed format is one Rekognition reads: then no image waits for labels.
                "LABEL_FORMATS": ",".join(s.label_formats),
                "MAX_UPLOAD_BYTES": str(s.max_upload_bytes), "MAX_PIXELS": str(s.max_pixels),
            },
            statements=[
                *iam.read_uploads(uploads.bucket.arn, UPLOADS_PREFIX),
                table_access,
                iam.allow(["sns:Publish"], [claim_checks.arn]),
                iam.allow(["kms:GenerateDataKey", "kms:Decrypt"], [key.arn]),
            ],
        ), parent=self)
        intake_policy = aws.sqs.QueuePolicy(f"{name}-intake-queue-policy", queue_url=intake.queue.id, policy=iam.document([{
            "Sid": "UploadEventsFromThisBucket", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sqs:SendMessage", "Resource": intake.queue.arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": uploads.bucket.arn},
                          "StringEquals": {"aws:SourceAccount": account_id}},
        }]), opts=child)
        # S3 checks that it may send to the queue when the notification is put (PutBucketNotificationConfiguration).
        aws.s3.BucketNotification(f"{name}-upload-events", bucket=uploads.bucket.id, queues=[
            aws.s3.BucketNotificationQueueArgs(queue_arn=intake.queue.arn, filter_prefix=UPLOADS_PREFIX,
                                               events=["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]),
        ], opts=pulumi.ResourceOptions(parent=self, depends_on=[intake_policy]))

        # Stages
        stage_args = StageArgs(
            settings=s, topic_arn=claim_checks.arn, table_name=table.name, table_arn=table.arn,
            uploads_bucket_arn=uploads.bucket.arn, alarm_topic_arn=alarm_topic.arn,
            thumbnails_bucket_name=thumbnails.bucket.bucket, thumbnails_bucket_arn=thumbnails.bucket.arn,
            pillow_layer_arn=pillow.arn, powertools_layer_arn=powertools, thumbnails_base_url=cdn.url if cdn else None,
            distribution_id=cdn.distribution.id if cdn else None,
            distribution_arn=cdn.distribution.arn if cdn else None)
        thumbnail_stage = ThumbnailStage(f"{name}-thumbnail-stage", stage_args, opts=child)
        label_stage = LabelStage(f"{name}-label-stage", stage_args, opts=child) if s.label_formats else None

        workers = {"intake": intake, "thumbnails": thumbnail_stage.worker}
        if label_stage:
            workers["labels"] = label_stage.worker
        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard", dashboard_name=dashboard_name(pulumi.get_project(), pulumi.get_stack()),
            dashboard_body=_dashboard_body(region, workers), opts=child)

        self.uploads_bucket = uploads.bucket.bucket
        self.thumbnails_bucket = thumbnails.bucket.bucket
        self.table_name = table.name
        self.claim_check_topic_arn = claim_checks.arn
        self.alarm_topic_arn = alarm_topic.arn
        self.queue_urls = {stage: w.queue.url for stage, w in workers.items()}
        self.dlq_urls = {stage: w.dlq.url for stage, w in workers.items()}
        self.upload_api = UploadApi(f"{name}-upload-api", UploadApiArgs(
            settings=s, uploads_bucket_name=uploads.bucket.bucket, uploads_bucket_arn=uploads.bucket.arn,
            powertools_layer_arn=powertools, uploads_prefix=UPLOADS_PREFIX), opts=child) if s.upload_api else None
        self.thumbnails_url = cdn.url if cdn else None
        self.dashboard_url = pulumi.Output.concat(
            "https://", region, ".console.aws.amazon.com/cloudwatch/home?region=", region,
            "#dashboards:name=", dashboard.dashboard_name)
        self.register_outputs({
            "uploads_bucket": self.uploads_bucket, "thumbnails_bucket": self.thumbnails_bucket,
            "table_name": self.table_name, "claim_check_topic_arn": self.claim_check_topic_arn,
            "alarm_topic_arn": self.alarm_topic_arn, "dashboard_url": self.dashboard_url,
        })

    def _access_logs(self, name: str, uploads: PrivateBucket, account_id: pulumi.Input[str], partition: pulumi.Input[str],
                     s: Settings) -> PrivateBucket:
        """Server access logs of the uploads bucket (who read or wrote which original) and, with the CDN, CloudFront's
        standard logs, kept for a while in a private bucket of their own (SSE-S3, as server access logging requires).
        S3 delivers with the logging service principal, admitted for this source bucket and account only (S3 User
        Guide, "Enabling Amazon S3 server access logging"); CloudFront's logs (v2) come through CloudWatch Logs'
        delivery service, admitted for this account's delivery sources in us-east-1, where CloudFront's live
        (CloudWatch Logs User Guide, "Logs sent to Amazon S3" under "Logging that requires additional permissions
        [V2]"). S3 log delivery sets the bucket-owner-full-control ACL, the one ACL an owner-enforced bucket takes."""
        expire = lambda rule, prefix: aws.s3.BucketLifecycleConfigurationRuleArgs(  # noqa: E731
            id=rule, status="Enabled", filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=prefix),
            expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=s.access_log_retention_days))
        logs = private_bucket(f"{name}-access-logs", self, versioned=False, force_destroy=s.force_destroy, lifecycle_rules=[
            expire("expire-access-logs", ACCESS_LOGS_PREFIX), *([expire("expire-cdn-logs", CDN_LOGS_PREFIX)] if s.cdn else [])])
        statements = [{
            "Sid": "S3ServerAccessLogsFromTheUploadsBucket", "Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"}, "Action": "s3:PutObject",
            "Resource": iam.s3_objects(logs.bucket.arn, ACCESS_LOGS_PREFIX),
            "Condition": {"ArnLike": {"aws:SourceArn": uploads.bucket.arn},
                          "StringEquals": {"aws:SourceAccount": account_id}}}]
        if s.cdn:
            statements.append({
                "Sid": "CloudFrontStandardLogsOfThisAccount", "Effect": "Allow",
                "Principal": {"Service": "delivery.logs.amazonaws.com"}, "Action": "s3:PutObject",
                "Resource": iam.s3_objects(logs.bucket.arn, CDN_LOGS_PREFIX),
                "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceAccount": account_id},
                              "ArnLike": {"aws:SourceArn": pulumi.Output.concat(
                                  "arn:", partition, ":logs:us-east-1:", account_id, ":delivery-source:*")}}})
        logs.tls_only_policy(*statements)
        # S3 checks the log bucket admits the logging service when logging is switched on.
        aws.s3.BucketLogging(f"{name}-uploads-access-logging", bucket=uploads.bucket.id, target_bucket=logs.bucket.id,
                             target_prefix=ACCESS_LOGS_PREFIX,
                             opts=pulumi.ResourceOptions(parent=uploads.bucket, depends_on=[logs.policy]))
        return logs


def _dashboard_body(region: pulumi.Input[str], workers: dict[str, Any]) -> pulumi.Output[str]:
    names = {stage: pulumi.Output.all(w.queue.name, w.dlq.name, w.function.name) for stage, w in workers.items()}

    def body(args: list[Any]) -> str:
        region_name, resolved = args[0], dict(zip(names, args[1:]))

        def widget(title: str, metrics: list[list[Any]], stat: str) -> dict[str, Any]:
            return {"type": "metric", "width": 12, "height": 6, "properties": {
                "title": title, "region": region_name, "stat": stat, "period": 60, "view": "timeSeries",
                "metrics": metrics}}

        queues = [["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", q[0], {"label": f"{s} queue"}]
                  for s, q in resolved.items()]
        dlqs = [["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", q[1], {"label": f"{s} DLQ"}]
                for s, q in resolved.items()]
        fn = lambda metric: [["AWS/Lambda", metric, "FunctionName", q[2], {"label": s}] for s, q in resolved.items()]  # noqa: E731
        return json.dumps({"widgets": [
            widget("Queue depth", queues, "Maximum"), widget("Dead-letter queues", dlqs, "Maximum"),
            widget("Function errors", fn("Errors"), "Sum"), widget("Function duration", fn("Duration"), "p95"),
            widget("Function throttles", fn("Throttles"), "Sum"), widget("Oldest message age",
                [["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", q[0], {"label": s}] for s, q in resolved.items()],
                "Maximum"),
        ]})

    return pulumi.Output.all(region, *names.values()).apply(body)
