"""The Pulumi program under mocks: wiring, hardening and limits, asserted on every registered resource."""
from __future__ import annotations

import json

import pytest

from localcloud import program
from localcloud.outputs import ACCOUNT_ID
from tests.conftest import shared_scope
from tests.infra_helpers import (
    ALARM,
    BUCKET,
    FUNCTION,
    MAPPING,
    QUEUE,
    ROLE,
    SUBSCRIPTION,
    TOPIC,
    as_list,
    by_bucket,
    dlq_arns,
    function_grants,
    queue_by_arn,
    role_policies,
    statements,
)

STAGE_TYPES = {"thumbnails": "claimcheck:index:ThumbnailStage", "labels": "claimcheck:index:LabelStage"}


@pytest.fixture(scope=shared_scope)
def stack():
    return program.run(program.RecordingMocks())


def test_defaults_produce_a_valid_stack_with_no_warnings(stack):
    assert stack.warnings == []
    assert {"uploadsBucket", "thumbnailsBucket", "tableName", "claimCheckTopicArn", "alarmTopicArn", "queueUrls",
            "deadLetterQueueUrls", "dashboardUrl"} <= set(stack.outputs)
    assert set(stack.outputs["queueUrls"]) == {"intake", "thumbnails", "labels"}
    assert stack.outputs["dashboardUrl"].endswith("#dashboards:name=claimcheck-dev")


def test_upload_events_reach_the_intake_queue_from_this_bucket_only(stack):
    [notification] = stack.of_type("aws:s3/bucketNotification:BucketNotification")
    uploads = stack.outputs["uploadsBucket"]
    assert notification.inputs["bucket"] == uploads
    [target] = notification.inputs["queues"]
    assert target["filterPrefix"] == "uploads/"
    assert set(target["events"]) == {"s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:LifecycleExpiration:*"}
    intake_queue = queue_by_arn(stack)[target["queueArn"]]
    assert intake_queue.state["url"] == stack.outputs["queueUrls"]["intake"]
    [policy] = [p for p in stack.of_type("aws:sqs/queuePolicy:QueuePolicy") if p.inputs["queueUrl"] == intake_queue.state["url"]]
    [statement] = statements(policy)
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": f"arn:aws:s3:::{uploads}"},
                                      "StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}


def test_each_mapping_feeds_its_components_function_from_its_queue_with_partial_batches(stack):
    functions = {f.state["arn"]: f for f in stack.of_type(FUNCTION)}
    queues = queue_by_arn(stack)
    # The queue-fed ones; the other reads the table's stream (tests/test_image_events_infra.py).
    mappings = [m for m in stack.of_type(MAPPING) if m.inputs["eventSourceArn"] in queues]
    assert len(mappings) == 3 and len(stack.of_type(MAPPING)) == 4
    for mapping in mappings:
        fn, queue = functions[mapping.inputs["functionName"]], queues[mapping.inputs["eventSourceArn"]]
        assert fn.parents == queue.parents == mapping.parents
        assert mapping.inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping.inputs["scalingConfig"]["maximumConcurrency"] >= 2
    assert {functions[m.inputs["functionName"]].inputs["handler"] for m in mappings} == {
        "handlers.intake.handler", "handlers.thumbnails.handler", "handlers.labels.handler"}  # not the pause function


def test_topic_fans_out_to_both_stage_queues_raw_and_labels_are_filtered(stack):
    queues = queue_by_arn(stack)
    subscriptions = {s.parents[-1]: s for s in stack.of_type(SUBSCRIPTION) if s.parents[-1] in STAGE_TYPES.values()}
    assert set(subscriptions) == set(STAGE_TYPES.values())
    for stage_type, subscription in subscriptions.items():
        assert subscription.inputs["topic"] == stack.outputs["claimCheckTopicArn"]
        assert subscription.inputs["protocol"] == "sqs" and subscription.inputs["rawMessageDelivery"] is True
        assert stage_type in queues[subscription.inputs["endpoint"]].parents
    assert "filterPolicy" not in subscriptions[STAGE_TYPES["thumbnails"]].inputs
    label = subscriptions[STAGE_TYPES["labels"]].inputs
    assert json.loads(label["filterPolicy"]) == {"format": ["jpeg", "png"], "event": ["created"]}
    assert label["filterPolicyScope"] == "MessageAttributes"


def test_stage_queues_accept_only_the_claim_check_topic(stack):
    queues = queue_by_arn(stack)
    stage_policies = [p for p in stack.of_type("aws:sqs/queuePolicy:QueuePolicy") if p.parents[-1] in STAGE_TYPES.values()]
    assert len(stage_policies) == 2
    for policy in stage_policies:
        [statement] = statements(policy)
        assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
        assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": stack.outputs["claimCheckTopicArn"]}}
        assert queues[statement["Resource"]].state["url"] == policy.inputs["queueUrl"]


def on_failure_queues(stack) -> set[str]:
    """The queues a stream mapping sends the batches it gives up on (the image events'): a DLQ fed by Lambda."""
    return {m.inputs["destinationConfig"]["onFailure"]["destinationArn"] for m in stack.of_type(MAPPING)
            if m.inputs.get("destinationConfig")}


def test_every_queue_redrives_to_a_dlq_that_keeps_messages_longer(stack):
    queues = queue_by_arn(stack)
    dlqs = dlq_arns(stack)
    sources = [q for q in stack.of_type(QUEUE) if q.state["arn"] not in dlqs | on_failure_queues(stack)]
    assert len(sources) == 3 and len(dlqs) == 3
    for queue in sources:
        redrive = json.loads(queue.inputs["redrivePolicy"])
        assert redrive["maxReceiveCount"] >= 3
        dlq = queues[redrive["deadLetterTargetArn"]]
        assert dlq.inputs["messageRetentionSeconds"] > queue.inputs["messageRetentionSeconds"]


def test_every_dlq_has_an_alarm_that_notifies_the_alarm_topic(stack):
    queues = queue_by_arn(stack)
    alarmed = {a.inputs["dimensions"]["QueueName"]: a for a in stack.of_type(ALARM)
               if a.inputs["metricName"] == "ApproximateNumberOfMessagesVisible"}
    for arn in dlq_arns(stack) | on_failure_queues(stack):
        alarm = alarmed[queues[arn].state["name"]]
        assert alarm.inputs["threshold"] == 0 and alarm.inputs["comparisonOperator"] == "GreaterThanThreshold"
        assert alarm.inputs["alarmActions"] == [stack.outputs["alarmTopicArn"]]
    aged = {a.inputs["dimensions"]["QueueName"] for a in stack.of_type(ALARM) if a.inputs["metricName"] == "ApproximateAgeOfOldestMessage"}
    assert aged == {q.state["name"] for q in stack.of_type(QUEUE)
                    if q.state["arn"] not in dlq_arns(stack) | on_failure_queues(stack)}


def test_each_stages_resources_live_under_the_stage(stack):
    for stage_type in STAGE_TYPES.values():
        children = {r.typ for r in stack.resources if stage_type in r.parents}
        assert {QUEUE, FUNCTION, MAPPING, SUBSCRIPTION, ALARM, ROLE, "aws:sqs/queuePolicy:QueuePolicy",
                "aws:cloudwatch/logGroup:LogGroup"} <= children
    assert all("claimcheck:index:ClaimCheckPipeline" in r.parents for r in stack.resources if r.typ.startswith("aws:"))


def test_every_bucket_is_private_encrypted_and_tls_only(stack):
    buckets = [b.state["bucket"] for b in stack.of_type(BUCKET)]
    assert len(buckets) == 3  # uploads, thumbnails, access logs
    blocks = by_bucket(stack, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    ownership = by_bucket(stack, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    encryption = by_bucket(stack, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    policies = by_bucket(stack, "aws:s3/bucketPolicy:BucketPolicy")
    for bucket in buckets:
        assert all(blocks[bucket].inputs[flag] is True for flag in
                   ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
        assert ownership[bucket].inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"
        [rule] = encryption[bucket].inputs["rules"]
        # SSE-S3, not KMS: CloudFront's OAC reads and S3's access-log delivery cannot use a KMS key without grants.
        assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
        deny = [s for s in statements(policies[bucket]) if s["Effect"] == "Deny"]
        assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} and s["Action"] == "s3:*" for s in deny)
        assert not [s for s in statements(policies[bucket]) if s["Effect"] == "Allow" and s.get("Principal") == "*"]


def test_uploads_are_versioned_and_originals_move_to_a_cheaper_tier():
    stack = program.run(program.RecordingMocks(), {"originalsTransitionDays": 45})
    uploads = stack.outputs["uploadsBucket"]
    versioning = by_bucket(stack, "aws:s3/bucketVersioning:BucketVersioning")
    assert set(versioning) == {uploads}
    assert versioning[uploads].inputs["versioningConfiguration"]["status"] == "Enabled"
    rules = by_bucket(stack, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")[uploads].inputs["rules"]
    [tiering] = [r for r in rules if r.get("transitions")]
    assert tiering["filter"]["prefix"] == "uploads/"
    assert tiering["transitions"] == [{"days": 45, "storageClass": "STANDARD_IA"}]


def test_queues_topics_and_table_are_encrypted(stack):
    for queue in stack.of_type(QUEUE):
        assert queue.inputs["sqsManagedSseEnabled"] is True, queue.name
    keys = {k.state["arn"] for k in stack.of_type("aws:kms/key:Key")}
    for topic in stack.of_type(TOPIC):
        assert topic.inputs["kmsMasterKeyId"] in keys, topic.name
    [table] = stack.of_type("aws:dynamodb/table:Table")
    assert table.inputs["billingMode"] == "PAY_PER_REQUEST"
    assert table.inputs["pointInTimeRecovery"]["enabled"] is True
    assert table.inputs["serverSideEncryption"]["enabled"] is True


def test_timeouts_fit_the_visibility_rule_for_every_function(stack):
    functions = {f.state["arn"]: f for f in stack.of_type(FUNCTION)}
    queues = queue_by_arn(stack)
    for mapping in [m for m in stack.of_type(MAPPING) if m.inputs["eventSourceArn"] in queues]:  # not the stream's
        fn, queue = functions[mapping.inputs["functionName"]], queues[mapping.inputs["eventSourceArn"]]
        assert fn.inputs["timeout"] <= queue.inputs["visibilityTimeoutSeconds"]
        assert queue.inputs["visibilityTimeoutSeconds"] >= 6 * fn.inputs["timeout"]


def test_functions_trace_log_with_retention_and_run_on_arm64(stack):
    groups = {g.state["name"]: g for g in stack.of_type("aws:cloudwatch/logGroup:LogGroup")}
    for fn in stack.of_type(FUNCTION):
        assert fn.inputs["tracingConfig"]["mode"] == "Active"
        assert fn.inputs["architectures"] == ["arm64"] and fn.inputs["runtime"] == "python3.13"
        assert groups[fn.inputs["loggingConfig"]["logGroup"]].inputs["retentionInDays"] == 30
        assert any("AWSLambdaPowertoolsPythonV3-python313-arm64" in layer for layer in fn.inputs["layers"])


def test_each_function_has_its_own_role(stack):
    roles = [fn.inputs["role"] for fn in stack.of_type(FUNCTION)]
    assert len(roles) == len(set(roles)) == len(stack.of_type(ROLE)) == 6
    for role in stack.of_type(ROLE):
        trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        assert trust == [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    # whose role it is, for a person reading IAM's console
    assert {role.inputs["description"] for role in stack.of_type(ROLE)} == {
        f"claimcheck claimcheck-{name} function" for name in ("intake", "thumbnail-stage", "label-stage", "pause", "backfill",
                                                              "image-events")}
    attachments = stack.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert {a.inputs["policyArn"] for a in attachments} == {"arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess"}


def test_no_wildcards_except_detect_labels(stack):
    for role, role_statements in role_policies(stack).items():
        for statement in role_statements:
            actions, resources = as_list(statement["Action"]), as_list(statement["Resource"])
            assert not any("*" in action for action in actions), (role, actions)
            if "*" in resources:
                assert actions == ["rekognition:DetectLabels"], (role, statement)


def test_each_role_allows_exactly_what_its_handler_calls(stack):
    out = stack.outputs
    uploads, thumbs = f"arn:aws:s3:::{out['uploadsBucket']}", f"arn:aws:s3:::{out['thumbnailsBucket']}"
    table = f"arn:aws:dynamodb:us-east-1:{ACCOUNT_ID}:table/{out['tableName']}"
    grants = function_grants(stack)
    consume = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
               "logs:CreateLogStream", "logs:PutLogEvents", "dynamodb:GetItem", "dynamodb:UpdateItem"}
    read_uploads = {"s3:GetObject": {f"{uploads}/uploads/*"}, "s3:GetObjectVersion": {f"{uploads}/uploads/*"}}
    tag = {"s3:PutObjectVersionTagging"}  # a rejected or failed original (one version of it) gets its status
    expected = {
        "claimcheck-intake-function": consume | tag | {"s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket",
                                                       "sns:Publish", "kms:GenerateDataKey", "kms:Decrypt"},
        "claimcheck-thumbnail-stage-function": consume | tag | {"s3:GetObject", "s3:GetObjectVersion", "s3:PutObject",
                                                                "s3:DeleteObject", "s3:ListBucket"},
        "claimcheck-label-stage-function": consume | {"s3:GetObject", "s3:GetObjectVersion", "rekognition:DetectLabels"},
        # The intake's own rights (it judges an object as the intake does), without its queue.
        "claimcheck-backfill-function": tag | {"logs:CreateLogStream", "logs:PutLogEvents", "dynamodb:GetItem",
                                               "dynamodb:UpdateItem", "s3:GetObject", "s3:GetObjectVersion",
                                               "s3:ListBucket", "sns:Publish", "kms:GenerateDataKey", "kms:Decrypt"},
        # its statements are pinned below
        "claimcheck-pause-function": {"logs:CreateLogStream", "logs:PutLogEvents", "lambda:UpdateEventSourceMapping"},
        # its resources are pinned in tests/test_image_events_infra.py
        "claimcheck-image-events-function": {"logs:CreateLogStream", "logs:PutLogEvents", "dynamodb:DescribeStream",
                                             "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams",
                                             "events:PutEvents", "sqs:SendMessage"},
    }
    assert {name: set(actions) for name, actions in grants.items()} == expected
    for name, actions in grants.items():
        if name in ("claimcheck-pause-function", "claimcheck-image-events-function"):
            continue
        for action, resources in read_uploads.items():
            assert actions[action] == resources, (name, action)
        assert actions["dynamodb:UpdateItem"] == {table}
    thumbnail = grants["claimcheck-thumbnail-stage-function"]
    assert thumbnail["s3:PutObject"] == thumbnail["s3:DeleteObject"] == {f"{thumbs}/thumbnails/*"}
    # On the uploads bucket so a missing upload answers 404, not 403; on thumbnails (prefix-conditioned) to clean up.
    assert thumbnail["s3:ListBucket"] == {thumbs, uploads}
    assert grants["claimcheck-intake-function"]["s3:ListBucket"] == {uploads}
    for function in ("claimcheck-intake-function", "claimcheck-thumbnail-stage-function", "claimcheck-backfill-function"):
        assert all(grants[function][action] == {f"{uploads}/uploads/*"} for action in tag)
    for function in ("claimcheck-intake-function", "claimcheck-backfill-function"):
        assert grants[function]["sns:Publish"] == {out["claimCheckTopicArn"]}
    assert grants["claimcheck-backfill-function"]["s3:ListBucket"] == {uploads}


def test_dashboard_name_is_valid_for_any_stack_name():
    # CloudWatch dashboard names: A-Za-z0-9, '-' and '_' only (PutDashboard); stack names may hold '.'.
    stack = program.run(program.RecordingMocks(), stack="prod.eu")
    [dashboard] = stack.of_type("aws:cloudwatch/dashboard:Dashboard")
    assert dashboard.inputs["dashboardName"] == "claimcheck-prod-eu"
    assert stack.outputs["dashboardUrl"].endswith("#dashboards:name=claimcheck-prod-eu")


def log_group_names(deployment: program.Deployment) -> set[str]:
    return {g.inputs["name"] for g in deployment.of_type("aws:cloudwatch/logGroup:LogGroup")}


def test_log_groups_keep_the_names_existing_stacks_hold():
    # A log group's name is fixed at creation: a changed name would replace the group (and drop its logs) on upgrade.
    deployed = program.run(program.RecordingMocks(), {"uploadApi": True, "jwtIssuer": "https://id.example.com/",
                                                      "jwtAudience": "claimcheck"})
    assert log_group_names(deployed) == {"/claimcheck/dev/claimcheck-intake", "/claimcheck/dev/claimcheck-thumbnail-stage",
                                         "/claimcheck/dev/claimcheck-label-stage", "/claimcheck/dev/claimcheck-upload-api",
                                         "/claimcheck/dev/claimcheck-upload-api-access",
                                         "/claimcheck/dev/claimcheck-pause",  # new in this release: no older name
                                         "/claimcheck/dev/claimcheck-backfill",
                                         "/claimcheck/dev/claimcheck-image-events"}  # new with the image events


def test_two_projects_with_one_stack_name_get_their_own_log_groups():
    # Log group names are per account and Region: a fork deployed as `photos` beside this one must not collide.
    config = {"uploadApi": True, "jwtIssuer": "https://id.example.com/", "jwtAudience": "claimcheck"}
    photos = log_group_names(program.run(program.RecordingMocks(), config, project="photos"))
    avatars = log_group_names(program.run(program.RecordingMocks(), config, project="avatars"))
    assert not photos & avatars
    assert "/photos/dev/claimcheck-intake" in photos and "/avatars/dev/claimcheck-upload-api-access" in avatars
    assert all(name.startswith("/photos/dev/") for name in photos)


def test_dashboard_uses_real_dimensions(stack):
    [dashboard] = stack.of_type("aws:cloudwatch/dashboard:Dashboard")
    body = json.loads(dashboard.inputs["dashboardBody"])
    dimensions = {m[3] for w in body["widgets"] for m in w["properties"]["metrics"]}
    assert {q.state["name"] for q in stack.of_type(QUEUE)} <= dimensions
    # every function the pipeline's messages flow through (the pause function is an operator's tool, seldom run)
    fed = {m.inputs["functionName"] for m in stack.of_type(MAPPING)}
    assert {f.state["name"] for f in stack.of_type(FUNCTION) if f.state["arn"] in fed} <= dimensions


def test_alarm_email_is_subscribed_only_when_configured(stack):
    assert not [s for s in stack.of_type(SUBSCRIPTION) if s.inputs["protocol"] == "email"]
    with_email = program.run(program.RecordingMocks(), {"alarmEmail": "ops@example.com"})
    [email] = [s for s in with_email.of_type(SUBSCRIPTION) if s.inputs["protocol"] == "email"]
    assert email.inputs["endpoint"] == "ops@example.com"
    assert email.inputs["topic"] == with_email.outputs["alarmTopicArn"]


def test_settings_reach_the_functions_environment():
    stack = program.run(program.RecordingMocks(), {
        "thumbnailSizes": [800, 200], "outputFormat": "webp", "allowedFormats": ["png", "webp"],
        "maxReceiveCount": 7, "architecture": "x86_64", "thumbnails": {"timeout": 20, "memory": 2048}})
    env = {f.name: f.inputs["environment"]["variables"] for f in stack.of_type(FUNCTION)}
    thumb = env["claimcheck-thumbnail-stage-function"]
    assert (thumb["THUMBNAIL_SIZES"], thumb["OUTPUT_FORMAT"]) == ("800,200", "webp")
    # The formats it may be handed: as it starts it imports their Pillow plugins and no others (imaging.prepare).
    assert thumb["ALLOWED_FORMATS"] == env["claimcheck-intake-function"]["ALLOWED_FORMATS"] == "png,webp"
    # The intake waits for the label stage exactly for the formats its subscription passes: the same filter.
    [labels] = [s for s in stack.of_type(SUBSCRIPTION) if "label-stage" in s.name]
    filters = json.loads(env["claimcheck-intake-function"]["STAGE_FILTERS"])
    assert filters == {"thumbnails": None, "labels": json.loads(labels.inputs["filterPolicy"])}
    assert filters["labels"] == {"format": ["png"], "event": ["created"]}
    assert env["claimcheck-label-stage-function"]["ALLOWED_FORMATS"] == "png,webp"
    fn = stack.named("claimcheck-thumbnail-stage-function")
    assert (fn.inputs["timeout"], fn.inputs["memorySize"], fn.inputs["architectures"]) == (20, 2048, ["x86_64"])
    assert stack.named("claimcheck-thumbnail-stage-queue").inputs["visibilityTimeoutSeconds"] == 6 * 20 + 1
    assert all(json.loads(q.inputs["redrivePolicy"])["maxReceiveCount"] == 7
               for q in stack.of_type(QUEUE) if "redrivePolicy" in q.inputs)


def test_without_rekognition_formats_there_is_no_label_stage():
    stack = program.run(program.RecordingMocks(), {"allowedFormats": ["webp", "gif"]})
    assert not [r for r in stack.resources if r.typ == STAGE_TYPES["labels"]]
    assert set(stack.outputs["queueUrls"]) == {"intake", "thumbnails"}
    # The intake is told no stage but the thumbnail stage writes a result (nothing waits for labels).
    assert json.loads(stack.named("claimcheck-intake-function").inputs["environment"]["variables"]["STAGE_FILTERS"]) == {
        "thumbnails": None}


def test_lone_delete_markers_expire_after_their_versions(stack):
    rules = by_bucket(stack, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")[
        stack.outputs["uploadsBucket"]].inputs["rules"]
    [markers] = [r for r in rules if r.get("expiration", {}).get("expiredObjectDeleteMarker")]
    assert markers["status"] == "Enabled" and markers["filter"] == {"prefix": "uploads/"}
    assert "days" not in markers["expiration"]  # S3 refuses Days together with ExpiredObjectDeleteMarker
    [versions] = [r for r in rules if r.get("noncurrentVersionExpiration")]
    assert versions["noncurrentVersionExpiration"] == {"noncurrentDays": 30}


def test_uploads_bucket_access_is_logged_to_a_private_bucket_that_expires_logs(stack):
    uploads = stack.outputs["uploadsBucket"]
    [logging] = stack.of_type("aws:s3/bucketLogging:BucketLogging")
    assert logging.inputs["bucket"] == uploads and logging.inputs["targetPrefix"] == "uploads-bucket/"
    target = logging.inputs["targetBucket"]
    [policy] = [p for p in stack.of_type("aws:s3/bucketPolicy:BucketPolicy") if p.inputs["bucket"] == target]
    [admit] = [s for s in statements(policy) if s["Effect"] == "Allow"]
    assert admit == {"Sid": "S3ServerAccessLogsFromTheUploadsBucket", "Effect": "Allow",
                     "Principal": {"Service": "logging.s3.amazonaws.com"}, "Action": "s3:PutObject",
                     "Resource": f"arn:aws:s3:::{target}/uploads-bucket/*",
                     "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{uploads}"},
                                   "StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}}
    assert policy in stack.waits_for(logging)  # S3 checks the target admits it when logging is switched on
    [expiry] = [r for r in by_bucket(stack, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")[target]
                .inputs["rules"] if r.get("expiration")]
    assert expiry["expiration"] == {"days": 90}
    off = program.run(program.RecordingMocks(), {"accessLogging": False})
    assert not off.of_type("aws:s3/bucketLogging:BucketLogging") and len(off.of_type(BUCKET)) == 2


def test_data_survives_destroy_unless_the_stack_says_otherwise(stack):
    assert all(b.inputs.get("forceDestroy") is False for b in stack.of_type(BUCKET))
    [table] = stack.of_type("aws:dynamodb/table:Table")
    assert table.inputs["deletionProtectionEnabled"] is True
    dev = program.run(program.RecordingMocks(), {"forceDestroy": True})
    assert all(b.inputs["forceDestroy"] is True for b in dev.of_type(BUCKET))
    assert dev.of_type("aws:dynamodb/table:Table")[0].inputs["deletionProtectionEnabled"] is False


def test_dropped_messages_raise_an_alarm_for_every_function(stack):
    dropped = {a.inputs["dimensions"]["service"]: a for a in stack.of_type(ALARM) if a.inputs["namespace"] == "claimcheck"}
    assert set(dropped) == {"claimcheck-intake", "claimcheck-thumbnails", "claimcheck-labels", "claimcheck-image_events"}
    assert dropped["claimcheck-intake"].inputs["metricName"] == "InvalidEvents"
    assert dropped["claimcheck-image_events"].inputs["metricName"] == "InvalidStreamRecords"
    assert dropped["claimcheck-thumbnails"].inputs["metricName"] == "InvalidClaimChecks"
    for alarm in dropped.values():
        assert (alarm.inputs["statistic"], alarm.inputs["threshold"], alarm.inputs["comparisonOperator"]) == (
            "Sum", 0, "GreaterThanThreshold")
        assert alarm.inputs["alarmActions"] == alarm.inputs["okActions"] == [stack.outputs["alarmTopicArn"]]
    functions = {f.inputs["environment"]["variables"]["POWERTOOLS_SERVICE_NAME"] for f in stack.of_type(FUNCTION)}
    assert set(dropped) <= functions


def test_rejected_and_failed_originals_expire_by_their_status_tag(stack):
    uploads = by_bucket(stack, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")[stack.outputs["uploadsBucket"]]
    rules = {r["id"]: r for r in uploads.inputs["rules"]}
    for status in ("rejected", "failed"):
        rule = rules[f"{status}-originals-expire"]
        assert rule["status"] == "Enabled" and rule["expiration"] == {"days": 30}
        assert rule["filter"] == {"and": {"prefix": "uploads/", "tags": {"claimcheck-status": status}}}
    kept = program.run(program.RecordingMocks(), {"rejectedRetentionDays": 0})
    [lifecycle] = [r for r in kept.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
                   if r.inputs["bucket"] == kept.outputs["uploadsBucket"]]
    assert not [r for r in lifecycle.inputs["rules"] if r["id"].endswith("-originals-expire")]


def test_the_attention_index_is_sparse_on_the_status_and_sorted_by_time(stack):
    [table] = stack.of_type("aws:dynamodb/table:Table")
    [index] = table.inputs["globalSecondaryIndexes"]
    assert index["name"] == "attention" and index["projectionType"] == "INCLUDE"
    assert index["keySchemas"] == [{"attributeName": "attention", "keyType": "HASH"},
                                   {"attributeName": "updated_at", "keyType": "RANGE"}]
    assert {"key", "status", "reason", "event_time"} <= set(index["nonKeyAttributes"])


def test_the_operator_policy_reaches_only_this_stack(stack):
    [policy] = stack.of_type("aws:iam/policy:Policy")
    out = stack.outputs
    grants: dict[str, set[str]] = {}
    for statement in statements(policy):
        for action in as_list(statement["Action"]):
            grants.setdefault(action, set()).update(as_list(statement["Resource"]))
    dlqs, queues = set(out["deadLetterQueueArns"].values()), set(out["queueArns"].values())
    table = f"arn:aws:dynamodb:us-east-1:{ACCOUNT_ID}:table/{out['tableName']}"
    mappings = {f"arn:aws:lambda:us-east-1:{ACCOUNT_ID}:event-source-mapping:{u}" for u in out["eventSourceMappings"].values()}
    assert grants == {
        "sqs:GetQueueAttributes": queues | dlqs, "sqs:ReceiveMessage": dlqs, "sqs:DeleteMessage": dlqs,
        "sqs:StartMessageMoveTask": dlqs, "sqs:ListMessageMoveTasks": dlqs, "sqs:SendMessage": queues,
        "dynamodb:GetItem": {table}, "dynamodb:Scan": {table}, "dynamodb:Query": {f"{table}/index/attention"},
        "sns:Publish": {out["claimCheckTopicArn"]},
        "kms:GenerateDataKey": {stack.of_type("aws:kms/key:Key")[0].state["arn"]},
        "kms:Decrypt": {stack.of_type("aws:kms/key:Key")[0].state["arn"]},
        # pause and resume go through the pause function, a backfill through the backfill function; the mappings are
        # only read (to wait for their state)
        "lambda:InvokeFunction": {stack.functions()["pause"].state["arn"], stack.functions()["backfill"].state["arn"]},
        "lambda:GetEventSourceMapping": mappings,
        "s3:ListBucket": {f"arn:aws:s3:::{out['uploadsBucket']}"},  # under uploads/ only: pinned below
        "cloudwatch:GetMetricData": {"*"},  # it takes no resource-level permissions
        "s3:GetObject": {f"arn:aws:s3:::{out['thumbnailsBucket']}/thumbnails/*"},  # the gallery's links: no originals
    }
    assert out["operatorPolicyArn"] == policy.state["arn"]
    [listing] = [s for s in statements(policy) if s["Action"] == ["s3:ListBucket"]]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["uploads/*"]}}


def test_the_pause_function_may_only_switch_each_stage_s_mapping_for_that_stage_s_own_function(stack):
    """Its role updates exactly the stack's mappings, each only while it names the function it feeds (a retarget
    names another: refused), and its table of mappings is the stack's; an operator reaches it only by invoking it."""
    pause = stack.functions()["pause"]
    roles = {r.state["arn"]: r.state["name"] for r in stack.of_type(ROLE)}
    # The stages' mappings; not the image events' (nothing an operator pauses: a paused stream loses records after a day).
    queues = queue_by_arn(stack)
    mappings = {m.state["arn"]: m.inputs["functionName"] for m in stack.of_type(MAPPING) if m.inputs["eventSourceArn"] in queues}
    updates = [s for s in role_policies(stack)[roles[pause.inputs["role"]]] if s["Action"] != ["logs:CreateLogStream", "logs:PutLogEvents"]]
    assert sorted(updates, key=lambda s: s["Resource"]) == sorted(
        ({"Effect": "Allow", "Action": ["lambda:UpdateEventSourceMapping"], "Resource": [arn],
          "Condition": {"ArnEquals": {"lambda:FunctionArn": function}}} for arn, function in mappings.items()),
        key=lambda s: s["Resource"])
    assert json.loads(pause.inputs["environment"]["variables"]["STAGE_MAPPINGS"]) == stack.outputs["eventSourceMappings"]
    assert stack.outputs["pauseFunctionName"] == pause.state["name"]
    # a moment's work per pause: no reserved concurrency (a new account may reserve none), the smallest memory
    assert "reservedConcurrentExecutions" not in pause.inputs and pause.inputs["memorySize"] == 128
