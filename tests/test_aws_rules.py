"""AWS's own rules for what the program declares, which neither the Pulumi mocks nor moto check.

Each rule names its source: the service's API model (botocore ships AWS's
shapes with their min/max/pattern/enum) or, where the model is looser than the
service, the service's documentation.
"""
from __future__ import annotations

import json
import re
import zipfile
from functools import cache
from pathlib import Path

import botocore.session
import pytest

from infra import packaging
from infra.pipeline import PowertoolsLayerNotFound
from infra.settings import LAYER_VERSION_ARN, LOG_RETENTION_DAYS, RUNTIME_GLIBC, Settings, SettingsError, load
from localcloud import program
from tests.conftest import shared_scope
from tests.infra_helpers import ALARM, BUCKET, FUNCTION, MAPPING, QUEUE, ROLE, TOPIC, queue_by_arn

EVERYTHING = {"uploadApi": True, "cdn": True, "uploadAllowedOrigins": ["https://app.example.com"],
              "allowedFormats": ["jpeg", "png", "webp", "gif", "tiff", "heic", "avif"], "alarmEmail": "ops@example.com"}
JWT = {**EVERYTHING, "jwtIssuer": "https://id.example.com/", "jwtAudience": "claimcheck", "uploadScopes": ["uploads:write"]}


@pytest.fixture(scope=shared_scope, params=[{}, EVERYTHING, JWT], ids=["defaults", "everything", "jwt"])
def stack(request):
    # A long stack name: names that carry it must still fit.
    return program.run(program.RecordingMocks(), request.param, stack="production-eu-west-1-blue")


@cache
def shape(service: str, operation: str, member: str):
    return botocore.session.get_session().get_service_model(service).operation_model(operation).input_shape.members[member]


def fits_model(value: str, service: str, operation: str, member: str) -> bool:
    meta = shape(service, operation, member).metadata
    pattern = meta.get("pattern")
    return (meta.get("min", 0) <= len(value) <= meta.get("max", 10**9)
            and (pattern is None or re.fullmatch(pattern, value) is not None))


def test_names_fit_each_services_rules(stack):
    problems = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    for role in stack.of_type(ROLE):
        check(fits_model(role.state["name"], "iam", "CreateRole", "RoleName"), f"role {role.state['name']}")
    for policy in stack.of_type("aws:iam/rolePolicy:RolePolicy"):
        check(fits_model(policy.name, "iam", "PutRolePolicy", "PolicyName"), f"role policy {policy.name}")
    for fn in stack.of_type(FUNCTION):
        # The model's 140 counts a full ARN; a bare function name is at most 64 (Lambda API reference, CreateFunction).
        name = fn.state["name"]
        check(fits_model(name, "lambda", "CreateFunction", "FunctionName") and len(name) <= 64, f"function {name}")
    for layer in stack.of_type("aws:lambda/layerVersion:LayerVersion"):
        check(fits_model(layer.inputs["layerName"], "lambda", "PublishLayerVersion", "LayerName"), f"layer {layer.name}")
    for queue in stack.of_type(QUEUE):
        # SQS developer guide, quotas: up to 80 characters, alphanumerics, hyphens and underscores.
        check(re.fullmatch(r"[A-Za-z0-9_-]{1,80}", queue.state["name"]) is not None, f"queue {queue.state['name']}")
    for topic in stack.of_type(TOPIC):
        # SNS API reference, CreateTopic: up to 256 alphanumerics, hyphens and underscores.
        check(re.fullmatch(r"[A-Za-z0-9_-]{1,256}", topic.state["name"]) is not None, f"topic {topic.state['name']}")
    for table in stack.of_type("aws:dynamodb/table:Table"):
        # DynamoDB developer guide, naming rules: 3 to 255 of a-z, A-Z, 0-9, '_', '-', '.'.
        check(re.fullmatch(r"[A-Za-z0-9_.-]{3,255}", table.state["name"]) is not None, f"table {table.state['name']}")
    for group in stack.of_type("aws:cloudwatch/logGroup:LogGroup"):
        check(fits_model(group.state["name"], "logs", "CreateLogGroup", "logGroupName"), f"log group {group.state['name']}")
    for alarm in stack.of_type(ALARM):
        check(fits_model(alarm.state["name"], "cloudwatch", "PutMetricAlarm", "AlarmName"), f"alarm {alarm.name}")
        check(fits_model(alarm.inputs.get("alarmDescription", ""), "cloudwatch", "PutMetricAlarm", "AlarmDescription"),
              f"alarm description {alarm.name}")
    for dashboard in stack.of_type("aws:cloudwatch/dashboard:Dashboard"):
        # CloudWatch API reference, PutDashboard: up to 255 of A-Za-z0-9, '-' and '_'.
        check(re.fullmatch(r"[A-Za-z0-9_-]{1,255}", dashboard.inputs["dashboardName"]) is not None, "dashboard name")
    for source in stack.of_type("aws:cloudwatch/logDeliverySource:LogDeliverySource"):
        check(fits_model(source.state["name"], "logs", "PutDeliverySource", "name"), f"delivery source {source.name}")
    for destination in stack.of_type("aws:cloudwatch/logDeliveryDestination:LogDeliveryDestination"):
        check(fits_model(destination.state["name"], "logs", "PutDeliveryDestination", "name"), f"delivery destination {destination.name}")
        check(destination.inputs["outputFormat"] in shape("logs", "PutDeliveryDestination", "outputFormat").enum,
              f"delivery destination format {destination.name}")
    for bucket in stack.of_type(BUCKET):
        # S3 user guide, "General purpose bucket naming rules": 3-63 of a-z, 0-9, '.', '-', starting and ending
        # with a letter or digit, and not shaped like an IP address.
        name = bucket.state["bucket"]
        check(re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", name) is not None and ".." not in name
              and not re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name), f"bucket {name}")
    assert problems == []


def test_the_name_rules_catch_a_name_that_is_too_long():
    assert not fits_model("r" * 65, "iam", "CreateRole", "RoleName")
    assert not fits_model("bad name", "iam", "CreateRole", "RoleName")
    assert fits_model("claimcheck-intake-role-1a2b3c4", "iam", "CreateRole", "RoleName")


def test_functions_use_a_runtime_lambda_offers_with_sizes_and_timeouts_it_allows(stack):
    runtimes = shape("lambda", "CreateFunction", "Runtime").enum
    for fn in stack.of_type(FUNCTION):
        assert fn.inputs["runtime"] in runtimes and fn.inputs["runtime"] in RUNTIME_GLIBC
        assert fn.inputs["architectures"] in (["arm64"], ["x86_64"])
        # Lambda quotas: 128-10,240 MB and at most 900 s (the API model allows more than a standard function may).
        assert 128 <= fn.inputs["memorySize"] <= 10_240 and 1 <= fn.inputs["timeout"] <= 900


def test_event_source_mappings_fit_the_sqs_rules(stack):
    functions = {f.state["arn"]: f for f in stack.of_type(FUNCTION)}
    queues = queue_by_arn(stack)
    limits = shape("lambda", "CreateEventSourceMapping", "BatchSize").metadata
    concurrency = botocore.session.get_session().get_service_model("lambda").shape_for("ScalingConfig").members[
        "MaximumConcurrency"].metadata
    for mapping in [m for m in stack.of_type(MAPPING) if m.inputs["eventSourceArn"] in queues]:
        fn, queue = functions[mapping.inputs["functionName"]], queues[mapping.inputs["eventSourceArn"]]
        batch, window = mapping.inputs["batchSize"], mapping.inputs["maximumBatchingWindowInSeconds"]
        assert limits["min"] <= batch <= limits["max"]
        # Lambda developer guide, "Using Lambda with Amazon SQS": a batch over 10 needs a batching window of 1 s or
        # more, and the queue's visibility timeout must be at least the function's timeout (or the mapping is refused).
        assert batch <= 10 or window >= 1
        assert queue.inputs["visibilityTimeoutSeconds"] >= fn.inputs["timeout"]
        assert concurrency["min"] <= mapping.inputs["scalingConfig"]["maximumConcurrency"] <= concurrency["max"]


def test_the_stream_mapping_fits_the_lambda_api_model(stack):
    [mapping] = [m for m in stack.of_type(MAPPING) if "/stream/" in m.inputs["eventSourceArn"]]
    for name, key in (("BatchSize", "batchSize"), ("MaximumBatchingWindowInSeconds", "maximumBatchingWindowInSeconds"),
                      ("MaximumRetryAttempts", "maximumRetryAttempts"), ("ParallelizationFactor", "parallelizationFactor"),
                      ("MaximumRecordAgeInSeconds", "maximumRecordAgeInSeconds")):
        limits = shape("lambda", "CreateEventSourceMapping", name).metadata
        assert limits["min"] <= mapping.inputs[key] <= limits["max"], name
    assert mapping.inputs["startingPosition"] in shape("lambda", "CreateEventSourceMapping", "StartingPosition").enum
    # Lambda Developer Guide, "Retain discarded batch records for a DynamoDB event source": SQS (or SNS) only.
    assert ":sqs:" in mapping.inputs["destinationConfig"]["onFailure"]["destinationArn"]


def test_log_groups_use_a_retention_cloudwatch_accepts(stack):
    # CloudWatch Logs API reference, PutRetentionPolicy: retentionInDays takes only these values.
    assert LOG_RETENTION_DAYS[:4] == (1, 3, 5, 7) and 3653 in LOG_RETENTION_DAYS and 8 not in LOG_RETENTION_DAYS
    for group in stack.of_type("aws:cloudwatch/logGroup:LogGroup"):
        assert group.inputs["retentionInDays"] in LOG_RETENTION_DAYS, group.name


def test_each_queue_has_one_policy_and_s3_is_allowed_before_its_notification(stack):
    # A queue has one policy document: two QueuePolicy resources on one queue would overwrite each other.
    urls = [p.inputs["queueUrl"] for p in stack.of_type("aws:sqs/queuePolicy:QueuePolicy")]
    assert len(urls) == len(set(urls))
    # S3 checks that it may send to the queue when the notification is put (PutBucketNotificationConfiguration).
    [notification] = stack.of_type("aws:s3/bucketNotification:BucketNotification")
    intake_url = stack.outputs["queueUrls"]["intake"]
    waited = [r for r in stack.waits_for(notification) if r.typ == "aws:sqs/queuePolicy:QueuePolicy"]
    assert [r.inputs["queueUrl"] for r in waited] == [intake_url]


def test_functions_and_mappings_wait_for_their_roles_grants(stack):
    for fn in stack.of_type(FUNCTION):
        waited = {r.typ for r in stack.waits_for(fn)}
        assert {"aws:iam/rolePolicy:RolePolicy", "aws:iam/rolePolicyAttachment:RolePolicyAttachment"} <= waited, fn.name
    for mapping in stack.of_type(MAPPING):
        assert "aws:iam/rolePolicy:RolePolicy" in {r.typ for r in stack.waits_for(mapping)}


def test_bucket_policies_wait_for_the_public_access_block(stack):
    # With Block Public Access being turned on in the same deployment, a policy put first may be refused.
    for policy in stack.of_type("aws:s3/bucketPolicy:BucketPolicy"):
        assert "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock" in {r.typ for r in stack.waits_for(policy)}


def test_the_powertools_layer_is_the_one_for_the_pinned_version(stack):
    pin = packaging.pinned("aws-lambda-powertools")
    names = [args["name"] for token, args in stack.calls if token == "aws:ssm/getParameter:getParameter"]
    s = Settings()
    assert names == [f"/aws/service/powertools/python/{s.architecture}/{s.runtime}/{pin}"]
    req = (Path(__file__).resolve().parent.parent / "requirements.txt").read_text()
    assert f"aws-lambda-powertools=={pin}" in req
    for fn in stack.of_type(FUNCTION):
        assert any(":layer:AWSLambdaPowertoolsPythonV3-python313-arm64:" in layer for layer in fn.inputs["layers"])


class MissingParameter(program.RecordingMocks):
    """A Region where AWS has not published the Powertools parameter: the invoke fails (a mock's way: a failure
    returned with the call, which the SDK raises as the engine's failed invoke) as GetParameter does."""

    def call(self, args):
        if args.token == "aws:ssm/getParameter:getParameter":
            self.calls.append((args.token, dict(args.args)))
            return {}, [("name", f"reading SSM Parameter ({args.args['name']}): operation error SSM: GetParameter, "
                                 "ParameterNotFound")]
        return super().call(args)


def test_a_missing_powertools_parameter_stops_the_program_naming_it_and_the_setting():
    parameter = packaging.powertools_parameter("python3.13", "arm64")
    with pytest.raises(PowertoolsLayerNotFound) as raised:
        program.run(MissingParameter())
    text = str(raised.value)
    assert f"the public SSM parameter {parameter} cannot be read in this Region" in text
    assert "ParameterNotFound" in text  # AWS's own words are kept, after ours
    assert "Set claimcheck:powertoolsLayerArn to a Powertools layer version ARN for python3.13 on arm64" in text


def test_a_pinned_powertools_layer_is_used_by_every_function_without_any_lookup():
    pinned = "arn:aws:lambda:eu-west-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python313-arm64:18"
    deployed = program.run(MissingParameter(), {"powertoolsLayerArn": pinned, "uploadApi": True})
    assert [token for token, _ in deployed.calls if token.startswith("aws:ssm")] == []
    functions = deployed.of_type(FUNCTION)
    # the three stages, the upload API, the pause and backfill functions, the image events
    assert len(functions) == 7 and all(fn.inputs["layers"][0] == pinned for fn in functions)
    assert all(not any("AWSLambdaPowertools" in layer for layer in fn.inputs["layers"][1:]) for fn in functions)


@pytest.mark.parametrize("value", ["arn:aws:lambda:eu-west-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python313-arm64",
                                   "arn:aws:lambda:eu-west-1:017000801446:function:powertools:3",
                                   "AWSLambdaPowertoolsPythonV3-python313-arm64:18"])
def test_a_powertools_layer_arn_without_its_version_or_of_another_kind_is_refused(value):
    with pytest.raises(SettingsError, match=re.escape(
            f"claimcheck:powertoolsLayerArn = {value!r} is out of range (accepted: a Lambda layer version ARN")):
        load({"powertoolsLayerArn": value})


def test_the_layer_arn_rule_is_the_lambda_api_models():
    # CreateFunction's Layers take LayerVersionArn: the settings' pattern is the model's own.
    model = botocore.session.get_session().get_service_model("lambda").shape_for("LayerVersionArn").metadata
    assert model["pattern"] == LAYER_VERSION_ARN


def test_lambda_layer_platform_tags_cover_the_runtimes_glibc():
    tags = packaging.platform_tags("arm64", (2, 34))
    assert tags[0] == "manylinux_2_34_aarch64" and "manylinux_2_28_aarch64" in tags and tags[-1] == "manylinux2014_aarch64"
    assert "manylinux_2_26_x86_64" not in packaging.platform_tags("x86_64", (2, 25))


def test_a_wheel_the_runtime_cannot_load_stops_the_layer_build(tmp_path):
    wheel = tmp_path / "pillow-13.0.0.dist-info"
    wheel.mkdir()
    (wheel / "WHEEL").write_text("Wheel-Version: 1.0\nTag: cp313-cp313-manylinux_2_27_aarch64\n"
                                 "Tag: cp313-cp313-manylinux_2_28_aarch64\n")
    packaging.check_wheels(tmp_path, "arm64", "python3.13", (2, 34))  # Amazon Linux 2023 loads it
    with pytest.raises(RuntimeError, match=r"glibc 2\.26 .* pillow-13\.0\.0\.dist-info: cp313-cp313-manylinux_2_27"):
        packaging.check_wheels(tmp_path, "arm64", "python3.13", (2, 26))  # Amazon Linux 2 does not
    with pytest.raises(RuntimeError, match="x86_64"):
        packaging.check_wheels(tmp_path, "x86_64", "python3.13", (2, 34))


@pytest.mark.network
@pytest.mark.parametrize("architecture", ["arm64", "x86_64"])
def test_the_layers_fit_lambdas_size_limits(architecture):
    # Lambda quotas: a layer uploaded directly is at most 50 MB zipped; a function and all its layers at most
    # 250 MB unzipped. The Powertools layer's size is AWS's; the installed package stands in for it.
    import aws_lambda_powertools

    s = Settings()
    layer = packaging.pillow_layer(architecture, s.runtime, RUNTIME_GLIBC[s.runtime], heif=True)
    unzipped = sum(i.file_size for i in zipfile.ZipFile(layer).infolist())
    powertools = sum(p.stat().st_size for p in Path(aws_lambda_powertools.__file__).parent.rglob("*") if p.is_file())
    archive = packaging.function_archive("thumbnails")
    function = sum(i.file_size for i in zipfile.ZipFile(archive).infolist())
    print(f"{architecture}: pillow layer {layer.stat().st_size / 1e6:.1f} MB zipped, {unzipped / 1e6:.1f} MB unzipped; "
          f"powertools ~{powertools / 1e6:.1f} MB; function {function / 1e3:.0f} KB")
    assert layer.stat().st_size <= packaging.LAYER_ZIPPED_LIMIT
    assert unzipped + powertools + function <= packaging.UNZIPPED_LIMIT


def test_dlq_alarms_and_dropped_message_alarms_have_somewhere_to_go(stack):
    topic = stack.outputs["alarmTopicArn"]
    for alarm in stack.of_type(ALARM):
        assert alarm.inputs["alarmActions"] == [topic], alarm.name
        assert alarm.inputs["treatMissingData"] == "notBreaching"
        assert json.dumps(alarm.inputs["dimensions"])  # every alarm names its metric's dimensions
