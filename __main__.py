"""claimcheck: an event-driven image pipeline on AWS, using the Claim Check pattern."""
import pulumi

from handlers.names import PROJECT
from infra import capacity, settings
from infra.pipeline import ClaimCheckPipeline

config = settings.load()  # refuses, all at once, what cannot work (capacity.problems among it)
for warning in capacity.warnings(config):  # what works but wastes
    pulumi.log.warn(f"{PROJECT}: {warning}")
pipeline = ClaimCheckPipeline(PROJECT, config)

pulumi.export("uploadsBucket", pipeline.uploads_bucket)
pulumi.export("thumbnailsBucket", pipeline.thumbnails_bucket)
pulumi.export("tableName", pipeline.table_name)
pulumi.export("claimCheckTopicArn", pipeline.claim_check_topic_arn)
pulumi.export("alarmTopicArn", pipeline.alarm_topic_arn)
pulumi.export("queueUrls", pipeline.queue_urls)
pulumi.export("deadLetterQueueUrls", pipeline.dlq_urls)
pulumi.export("dashboardUrl", pipeline.dashboard_url)
# What the operator tools (python -m ops) read: the queues and DLQs by ARN, the event source mappings, the name of
# the thumbnail settings now deployed, the function that pauses and resumes a stage, and the policy to attach to the
# people who run it.
pulumi.export("queueArns", pipeline.queue_arns)
pulumi.export("deadLetterQueueArns", pipeline.dlq_arns)
pulumi.export("eventSourceMappings", pipeline.mappings)
pulumi.export("thumbnailSettings", pipeline.thumbnail_settings)
pulumi.export("rejectedRetentionDays", pipeline.rejected_retention_days)
pulumi.export("pauseFunctionName", pipeline.pause_function.name)
pulumi.export("operatorPolicyArn", pipeline.operator_policy.arn)
if pipeline.upload_api:
    pulumi.export("uploadApiUrl", pipeline.upload_api.url)
    pulumi.export("uploadApiAuth", pipeline.upload_api.auth)
    # What a caller needs: the policy to attach (IAM), or what the route requires of a token (JWT).
    if pipeline.upload_api.uploader_policy:
        pulumi.export("uploaderPolicyArn", pipeline.upload_api.uploader_policy.arn)
    if pipeline.upload_api.uploader_jwt:
        pulumi.export("uploaderJwt", pipeline.upload_api.uploader_jwt)
if pipeline.thumbnails_url:
    pulumi.export("thumbnailsUrl", pipeline.thumbnails_url)
