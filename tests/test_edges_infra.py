"""Upload API and CloudFront, switched on by config: wiring and least privilege under mocks."""
from __future__ import annotations

import pytest

from localcloud import program
from localcloud.authorizer import Need, decide
from tests.conftest import shared_scope
from tests.infra_helpers import FUNCTION, function_grants, statements
from tests.security_rules import RULES

ALL_ON = {"cdn": True, "uploadApi": True}
JWT = {**ALL_ON, "jwtIssuer": "https://id.example.com/", "jwtAudience": "claimcheck",
       "cdnDomain": "img.example.com", "cdnCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc"}


@pytest.fixture(scope=shared_scope)
def stack():
    return program.run(program.RecordingMocks(), ALL_ON)


@pytest.fixture(scope=shared_scope)
def jwt_stack():
    return program.run(program.RecordingMocks(), JWT)


def test_off_by_default():
    plain = program.run(program.RecordingMocks())
    assert not [r for r in plain.resources if r.typ.startswith(("aws:cloudfront", "aws:apigatewayv2")) or "upload-api" in r.name]
    assert "uploadApiUrl" not in plain.outputs and "thumbnailsUrl" not in plain.outputs


@pytest.mark.parametrize("config", [ALL_ON, JWT], ids=["iam", "jwt"])
def test_the_security_baseline_holds_with_everything_on(config):
    deployment = program.run(program.RecordingMocks(), config)
    assert {rule.id: rule.check(deployment) for rule in RULES if rule.check(deployment)} == {}


def test_distribution_reads_the_private_bucket_through_oac_over_https(stack):
    [distribution] = stack.of_type("aws:cloudfront/distribution:Distribution")
    [oac] = stack.of_type("aws:cloudfront/originAccessControl:OriginAccessControl")
    [cache] = stack.of_type("aws:cloudfront/cachePolicy:CachePolicy")
    [origin] = distribution.inputs["origins"]
    thumbs = stack.outputs["thumbnailsBucket"]
    assert origin["domainName"] == f"{thumbs}.s3.us-east-1.amazonaws.com"
    assert origin["originAccessControlId"] == oac.id and oac.inputs["signingBehavior"] == "always"
    behaviour = distribution.inputs["defaultCacheBehavior"]
    assert behaviour["viewerProtocolPolicy"] == "https-only" and behaviour["cachePolicyId"] == cache.id
    assert cache.inputs["minTtl"] == cache.inputs["defaultTtl"] == 31_536_000
    assert distribution.inputs["viewerCertificate"] == {"cloudfrontDefaultCertificate": True}
    assert stack.outputs["thumbnailsUrl"] == f"https://{distribution.state['domainName']}"


def test_only_this_distribution_may_read_thumbnails(stack):
    [distribution] = stack.of_type("aws:cloudfront/distribution:Distribution")
    thumbs = stack.outputs["thumbnailsBucket"]
    [policy] = [p for p in stack.of_type("aws:s3/bucketPolicy:BucketPolicy") if p.inputs["bucket"] == thumbs]
    [allow] = [s for s in statements(policy) if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"} and allow["Action"] == "s3:GetObject"
    assert allow["Resource"] == f"arn:aws:s3:::{thumbs}/thumbnails/*"
    assert allow["Condition"] == {"StringEquals": {"AWS:SourceArn": distribution.state["arn"]}}
    uploads = [p for p in stack.of_type("aws:s3/bucketPolicy:BucketPolicy") if p.inputs["bucket"] == stack.outputs["uploadsBucket"]]
    assert not [s for s in statements(uploads[0]) if s["Effect"] == "Allow"]  # originals are never served


def test_the_distribution_logs_every_request_to_the_private_log_bucket(stack):
    # CloudFront standard logging (v2): source in us-east-1, delivered under cdn/ of the log bucket, which admits
    # the delivery service for this account's sources only, and the delivery waits for that policy.
    [distribution] = stack.of_type("aws:cloudfront/distribution:Distribution")
    [source] = stack.of_type("aws:cloudwatch/logDeliverySource:LogDeliverySource")
    [destination] = stack.of_type("aws:cloudwatch/logDeliveryDestination:LogDeliveryDestination")
    [delivery] = stack.of_type("aws:cloudwatch/logDelivery:LogDelivery")
    assert source.inputs == {"resourceArn": distribution.state["arn"], "logType": "ACCESS_LOGS", "region": "us-east-1"}
    assert delivery.inputs["deliverySourceName"] == source.state["name"]
    assert delivery.inputs["deliveryDestinationArn"] == destination.state["arn"]
    [logs] = [b for b in stack.of_type("aws:s3/bucket:Bucket") if "access-logs" in b.name]
    assert destination.inputs["deliveryDestinationConfiguration"] == {"destinationResourceArn": f"{logs.state['arn']}/cdn"}
    [policy] = [p for p in stack.of_type("aws:s3/bucketPolicy:BucketPolicy") if p.inputs["bucket"] == logs.state["bucket"]]
    [allow] = [s for s in statements(policy) if s.get("Principal") == {"Service": "delivery.logs.amazonaws.com"}]
    assert allow["Action"] == "s3:PutObject" and allow["Resource"] == f"{logs.state['arn']}/cdn/*"
    assert allow["Condition"] == {
        "StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceAccount": "123456789012"},
        "ArnLike": {"aws:SourceArn": "arn:aws:logs:us-east-1:123456789012:delivery-source:*"}}
    assert policy in stack.waits_for(delivery)
    [rules] = [r.inputs["rules"] for r in stack.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
               if r.inputs["bucket"] == logs.state["bucket"]]
    expiry = {r["filter"]["prefix"]: r.get("expiration", {}).get("days") for r in rules}
    assert expiry["cdn/"] == expiry["uploads-bucket/"] == 90  # accessLogRetentionDays


def test_no_cdn_logs_without_access_logging():
    quiet = program.run(program.RecordingMocks(), {**ALL_ON, "accessLogging": False})
    assert not [r for r in quiet.resources if "logDeliver" in r.typ or "access-logs" in r.name]


def test_thumbnail_records_get_distribution_urls(stack):
    env = stack.named("claimcheck-thumbnail-stage-function").inputs["environment"]["variables"]
    assert env["THUMBNAILS_BASE_URL"] == stack.outputs["thumbnailsUrl"]


def test_custom_domain_uses_its_certificate(jwt_stack):
    [distribution] = jwt_stack.of_type("aws:cloudfront/distribution:Distribution")
    assert distribution.inputs["aliases"] == ["img.example.com"]
    assert distribution.inputs["viewerCertificate"] == {
        "acmCertificateArn": JWT["cdnCertificateArn"], "sslSupportMethod": "sni-only", "minimumProtocolVersion": "TLSv1.2_2021"}
    assert jwt_stack.outputs["thumbnailsUrl"] == "https://img.example.com"


def test_upload_api_uses_iam_by_default_and_may_only_put_under_uploads(stack):
    [url] = stack.of_type("aws:lambda/functionUrl:FunctionUrl")
    fn = stack.named("claimcheck-upload-api-function")
    assert url.inputs["authorizationType"] == "AWS_IAM" and url.inputs["functionName"] == fn.state["name"]
    assert stack.outputs["uploadApiAuth"] == "aws_iam" and stack.outputs["uploadApiUrl"] == url.state["functionUrl"]
    grants = function_grants(stack)["claimcheck-upload-api-function"]
    uploads = stack.outputs["uploadsBucket"]
    assert grants["s3:PutObject"] == {f"arn:aws:s3:::{uploads}/uploads/api/*"}
    assert set(grants) == {"s3:PutObject", "logs:CreateLogStream", "logs:PutLogEvents"}
    env = fn.inputs["environment"]["variables"]
    assert (env["UPLOADS_BUCKET"], env["MAX_UPLOAD_BYTES"], env["UPLOAD_API_KIND"]) == (uploads, "26214400", "function-url")


def test_upload_api_behind_a_jwt_authorizer_when_configured(jwt_stack):
    assert not jwt_stack.of_type("aws:lambda/functionUrl:FunctionUrl")
    [authorizer] = jwt_stack.of_type("aws:apigatewayv2/authorizer:Authorizer")
    assert authorizer.inputs["authorizerType"] == "JWT"
    assert authorizer.inputs["jwtConfiguration"] == {"issuer": "https://id.example.com/", "audiences": ["claimcheck"]}
    [route] = jwt_stack.of_type("aws:apigatewayv2/route:Route")
    assert (route.inputs["routeKey"], route.inputs["authorizationType"], route.inputs["authorizerId"]) == (
        "POST /uploads", "JWT", authorizer.id)
    [permission] = jwt_stack.of_type("aws:lambda/permission:Permission")
    assert permission.inputs["principal"] == "apigateway.amazonaws.com"
    assert permission.inputs["sourceArn"].endswith("/*/POST/uploads")
    assert jwt_stack.outputs["uploadApiAuth"] == "jwt"
    fn = jwt_stack.named("claimcheck-upload-api-function")
    assert fn.inputs["environment"]["variables"]["UPLOAD_API_KIND"] == "http-api"
    # the three stages, the upload API, the CDN purge, the pause function and the image events
    assert len(jwt_stack.of_type(FUNCTION)) == 7


def test_iam_callers_get_a_policy_with_both_function_url_actions_on_this_function_only(stack):
    [policy] = [p for p in stack.of_type("aws:iam/policy:Policy") if p.name == "claimcheck-upload-api-uploader"]
    fn = stack.named("claimcheck-upload-api-function").state["arn"]
    assert stack.outputs["uploaderPolicyArn"] == policy.state["arn"] and "uploaderJwt" not in stack.outputs
    assert statements(policy) == [
        {"Effect": "Allow", "Action": ["lambda:InvokeFunctionUrl"], "Resource": [fn],
         "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}},
        {"Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": [fn],
         "Condition": {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}}]
    # Judged as IAM judges it: a call through the URL is allowed, anything else (a direct Invoke, another function,
    # a URL without IAM auth, another action) is not.
    via_url = {"lambda:FunctionUrlAuthType": "AWS_IAM", "lambda:InvokedViaFunctionUrl": "true"}
    other = fn.replace("claimcheck-upload-api-function", "claimcheck-intake-function")
    assert decide(statements(policy), Need("lambda:InvokeFunctionUrl", fn, via_url)) == "allow"
    assert decide(statements(policy), Need("lambda:InvokeFunction", fn, via_url)) == "allow"
    for need in (Need("lambda:InvokeFunction", fn), Need("lambda:InvokeFunction", fn, {"lambda:InvokedViaFunctionUrl": "false"}),
                 Need("lambda:InvokeFunction", other, via_url), Need("lambda:InvokeFunctionUrl", other, via_url),
                 Need("lambda:InvokeFunctionUrl", fn, {"lambda:FunctionUrlAuthType": "NONE"}),
                 Need("lambda:UpdateFunctionCode", fn, via_url), Need("lambda:GetFunctionUrlConfig", fn, via_url)):
        assert decide(statements(policy), need) == "implicit", need


def test_jwt_callers_are_told_what_the_route_requires_of_a_token(jwt_stack):
    assert jwt_stack.outputs["uploaderJwt"] == {"route": "POST /uploads", "issuer": "https://id.example.com/",
                                                "audience": "claimcheck", "scopes": []}
    assert "uploaderPolicyArn" not in jwt_stack.outputs
    assert not [p for p in jwt_stack.of_type("aws:iam/policy:Policy") if "upload-api" in p.name]
    [route] = jwt_stack.of_type("aws:apigatewayv2/route:Route")
    assert jwt_stack.outputs["uploaderJwt"]["route"] == route.inputs["routeKey"]


def test_api_uploads_must_be_create_only_writes(stack):
    uploads = stack.outputs["uploadsBucket"]
    [policy] = [p for p in stack.of_type("aws:s3/bucketPolicy:BucketPolicy") if p.inputs["bucket"] == uploads]
    [deny] = [s for s in statements(policy) if s.get("Sid") == "ApiUploadsAreCreateOnly"]
    assert deny == {"Sid": "ApiUploadsAreCreateOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
                    "Resource": f"arn:aws:s3:::{uploads}/uploads/api/*", "Condition": {"Null": {"s3:if-none-match": "true"}}}
    # Under the API's prefix (it names the owner) only the upload function's grants may put; without an API, nobody.
    [only] = [s for s in statements(policy) if s.get("Sid") == "ApiUploadsOnlyByTheApi"]
    assert only["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": stack.named("claimcheck-upload-api-function").inputs["role"]}}
    plain = program.run(program.RecordingMocks())
    [plain_policy] = [p for p in plain.of_type("aws:s3/bucketPolicy:BucketPolicy") if p.inputs["bucket"] == plain.outputs["uploadsBucket"]]
    assert [s["Sid"] for s in statements(plain_policy)] == ["DenyInsecureTransport", "ApiUploadsOnlyByTheApi"]
    assert "Condition" not in statements(plain_policy)[1]


def test_minting_is_bounded(stack, jwt_stack):
    for deployment in (stack, jwt_stack):
        fn = deployment.named("claimcheck-upload-api-function")
        assert fn.inputs["reservedConcurrentExecutions"] == 5
    [stage] = jwt_stack.of_type("aws:apigatewayv2/stage:Stage")
    assert stage.inputs["defaultRouteSettings"] == {"throttlingRateLimit": 10, "throttlingBurstLimit": 20}
    groups = {g.state["arn"]: g for g in jwt_stack.of_type("aws:cloudwatch/logGroup:LogGroup")}
    access = groups[stage.inputs["accessLogSettings"]["destinationArn"]]
    assert access.inputs["retentionInDays"] == 30
    assert "$context.authorizer.claims.sub" in stage.inputs["accessLogSettings"]["format"]


@pytest.mark.parametrize("config", [ALL_ON, JWT], ids=["iam", "jwt"])
def test_no_reservation_when_upload_api_concurrency_is_0(config):
    # Lambda reads ReservedConcurrentExecutions 0 as "throttle every call": 0 must reach Pulumi as not set at all.
    deployed = program.run(program.RecordingMocks(), {**config, "uploadApiConcurrency": 0})
    fn = deployed.named("claimcheck-upload-api-function")
    assert "reservedConcurrentExecutions" not in fn.inputs
    for stage in deployed.of_type("aws:apigatewayv2/stage:Stage"):  # in JWT mode the stage's throttle bounds it
        assert stage.inputs["defaultRouteSettings"] == {"throttlingRateLimit": 10, "throttlingBurstLimit": 20}
    assert len(deployed.of_type("aws:apigatewayv2/stage:Stage")) == (config is JWT)


def test_jwt_route_requires_the_configured_scopes():
    scoped = program.run(program.RecordingMocks(), {**JWT, "uploadScopes": ["uploads:write"]})
    [route] = scoped.of_type("aws:apigatewayv2/route:Route")
    assert route.inputs["authorizationScopes"] == ["uploads:write"]
    assert scoped.outputs["uploaderJwt"]["scopes"] == ["uploads:write"]  # the caller is told which


def test_browsers_are_allowed_only_from_the_configured_origins(stack):
    assert "cors" not in stack.named("claimcheck-upload-api-url").inputs
    assert not stack.of_type("aws:s3/bucketCorsConfiguration:BucketCorsConfiguration")
    origins = {"uploadAllowedOrigins": ["https://app.example.com"]}
    web = program.run(program.RecordingMocks(), {**ALL_ON, **origins})
    cors = web.named("claimcheck-upload-api-url").inputs["cors"]
    assert cors["allowOrigins"] == ["https://app.example.com"] and cors["allowMethods"] == ["POST"]
    [bucket_cors] = web.of_type("aws:s3/bucketCorsConfiguration:BucketCorsConfiguration")
    assert bucket_cors.inputs["bucket"] == web.outputs["uploadsBucket"]
    [rule] = bucket_cors.inputs["corsRules"]
    assert rule["allowedOrigins"] == ["https://app.example.com"] and rule["allowedMethods"] == ["PUT"]
    assert "if-none-match" in rule["allowedHeaders"]
    api = program.run(program.RecordingMocks(), {**JWT, **origins})
    [http] = api.of_type("aws:apigatewayv2/api:Api")
    assert http.inputs["corsConfiguration"]["allowOrigins"] == ["https://app.example.com"]


def test_the_distribution_sends_security_headers(stack):
    [distribution] = stack.of_type("aws:cloudfront/distribution:Distribution")
    [headers] = stack.of_type("aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy")
    assert distribution.inputs["defaultCacheBehavior"]["responseHeadersPolicyId"] == headers.id
    config = headers.inputs["securityHeadersConfig"]
    assert config["contentTypeOptions"] == {"override": True}
    assert config["strictTransportSecurity"]["accessControlMaxAgeSec"] == 31_536_000


def test_only_the_purge_function_may_invalidate_and_only_this_distribution(stack):
    [distribution] = stack.of_type("aws:cloudfront/distribution:Distribution")
    grants = function_grants(stack)
    purge = stack.named("claimcheck-cdn-purge-function")
    thumbnails_bucket = f"arn:aws:s3:::{stack.outputs['thumbnailsBucket']}"
    assert grants[purge.name] == {
        "cloudfront:CreateInvalidation": {distribution.state["arn"]}, "s3:ListBucket": {thumbnails_bucket},
        "dynamodb:GetItem": {stack.named("claimcheck-images").state["arn"]},
        "sqs:ReceiveMessage": {stack.outputs["queueArns"]["cdn_purge"]},
        "sqs:DeleteMessage": {stack.outputs["queueArns"]["cdn_purge"]},
        "sqs:GetQueueAttributes": {stack.outputs["queueArns"]["cdn_purge"]},
        "logs:CreateLogStream": {f"{stack.named('claimcheck-cdn-purge-logs').state['arn']}:*"},
        "logs:PutLogEvents": {f"{stack.named('claimcheck-cdn-purge-logs').state['arn']}:*"}}
    assert purge.inputs["environment"]["variables"]["DISTRIBUTION_ID"] == distribution.id
    # The thumbnail stage asks; it may not invalidate itself, and may send only to the purge queue.
    stage = grants["claimcheck-thumbnail-stage-function"]
    assert "cloudfront:CreateInvalidation" not in stage
    assert stage["sqs:SendMessage"] == {stack.outputs["queueArns"]["cdn_purge"]}
    env = stack.named("claimcheck-thumbnail-stage-function").inputs["environment"]["variables"]
    assert env["PURGE_QUEUE_URL"] == stack.outputs["queueUrls"]["cdn_purge"] and "DISTRIBUTION_ID" not in env
    plain = program.run(program.RecordingMocks())
    assert "cdn_purge" not in plain.outputs["queueUrls"] and "sqs:SendMessage" not in function_grants(plain)[
        "claimcheck-thumbnail-stage-function"]


def test_a_purge_that_cannot_get_through_is_retried_for_hours_then_dead_lettered_with_an_alarm(stack):
    import json

    queue = stack.named("claimcheck-cdn-purge-queue")
    assert json.loads(queue.inputs["redrivePolicy"])["maxReceiveCount"] == 100  # ~5 h at a 185 s visibility timeout
    assert queue.inputs["visibilityTimeoutSeconds"] == 185
    alarms = {a.name: a for a in stack.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    age = alarms["claimcheck-cdn-purge-age-alarm"]  # fires after 15 min, long before the DLQ
    assert (age.inputs["metricName"], age.inputs["threshold"]) == ("ApproximateAgeOfOldestMessage", 900)
    assert alarms["claimcheck-cdn-purge-dlq-alarm"].inputs["metricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarms["claimcheck-cdn-purge-dropped-alarm"].inputs["metricName"] == "InvalidPurgeRequests"
