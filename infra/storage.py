"""Private buckets: the kind every bucket of the pipeline is, and the access-log bucket."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam, policies


@dataclass
class PrivateBucket:
    name: str
    bucket: aws.s3.Bucket
    public_access_block: aws.s3.BucketPublicAccessBlock
    policy: aws.s3.BucketPolicy | None = None

    def tls_only_policy(self, *allow: dict) -> aws.s3.BucketPolicy:
        """The bucket policy: deny every request without TLS; then only the `allow` statements given. S3 refuses
        a policy while public access is being blocked, so it waits for the block."""
        self.policy = aws.s3.BucketPolicy(
            f"{self.name}-policy", bucket=self.bucket.id, policy=iam.document([policies.tls_only(self.bucket.arn), *allow]),
            opts=pulumi.ResourceOptions(parent=self.bucket, depends_on=[self.public_access_block]))
        return self.policy


def private_bucket(name: str, parent: pulumi.Resource, versioned: bool,
                   lifecycle_rules: list[aws.s3.BucketLifecycleConfigurationRuleArgs],
                   force_destroy: bool) -> PrivateBucket:
    """A bucket nobody outside the account can reach: public access blocked, owner-enforced,
    encrypted at rest (SSE-S3: the only kind S3 access logs and CloudFront OAC without a KMS grant can use);
    its TLS-only policy comes from PrivateBucket.tls_only_policy."""
    bucket = aws.s3.Bucket(name, force_destroy=force_destroy, opts=pulumi.ResourceOptions(parent=parent))
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


def expire_after(rule: str, prefix: str, days: int) -> aws.s3.BucketLifecycleConfigurationRuleArgs:
    return aws.s3.BucketLifecycleConfigurationRuleArgs(
        id=rule, status="Enabled", filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=prefix),
        expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=days))
