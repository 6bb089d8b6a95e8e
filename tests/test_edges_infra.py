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
    # GET /uploads/{id}: read one record; with the CDN every rendition is linked there: no read of the bucket at all
    assert grants["dynamodb:GetItem"] == {stack.named("claimcheck-images").state["arn"]}
    assert set(grants) == {"s3:PutObject", "dynamodb:GetItem", "logs:CreateLogStream", "logs:PutLogEvents"}
    env = fn.inputs["environment"]["variables"]
    assert (env["UPLOADS_BUCKET"], env["MAX_UPLOAD_BYTES"], env["UPLOAD_API_KIND"]) == (uploads, "26214400", "function-url")
    assert (env["TABLE_NAME"], env["THUMBNAILS_BASE_URL"]) == (stack.named("claimcheck-images").state["name"],
                                                               stack.outputs["thumbnailsUrl"])
    assert "THUMBNAILS_BUCKET" not in env


def test_without_a_cdn_the_upload_function_may_read_thumbnails_only_to_presign_them():
    deployed = program.run(program.RecordingMocks(), {"uploadApi": True})
    grants = function_grants(deployed)["claimcheck-upload-api-function"]
    # exactly GetObject on thumbnails/* (what a presigned GET of a rendition carries), besides the grant and the read
    assert grants["s3:GetObject"] == {f"arn:aws:s3:::{deployed.outputs['thumbnailsBucket']}/thumbnails/*"}
    assert set(grants) == {"s3:PutObject", "dynamodb:GetItem", "s3:GetObject", "logs:CreateLogStream", "logs:PutLogEvents"}
    env = deployed.named("claimcheck-upload-api-function").inputs["environment"]["variables"]
    assert env["THUMBNAILS_BUCKET"] == deployed.outputs["thumbnailsBucket"] and "THUMBNAILS_BASE_URL" not in env


def test_upload_api_behind_a_jwt_authorizer_when_configured(jwt_stack):
    assert not jwt_stack.of_type("aws:lambda/functionUrl:FunctionUrl")
    [authorizer] = jwt_stack.of_type("aws:apigatewayv2/authorizer:Authorizer")
    assert authorizer.inputs["authorizerType"] == "JWT"
    assert authorizer.inputs["jwtConfiguration"] == {"issuer": "https://id.example.com/", "audiences": ["claimcheck"]}
    [api] = jwt_stack.of_type("aws:apigatewayv2/api:Api")
    assert "disableExecuteApiEndpoint" not in api.inputs  # no domain of the user's: execute-api is the way in
    routes = jwt_stack.of_type("aws:apigatewayv2/route:Route")
    assert sorted((r.inputs["routeKey"], r.inputs["authorizationType"], r.inputs["authorizerId"]) for r in routes) == [
        ("GET /uploads/{id}", "JWT", authorizer.id), ("POST /uploads", "JWT", authorizer.id)]
    permissions = jwt_stack.of_type("aws:lambda/permission:Permission")
    assert {p.inputs["principal"] for p in permissions} == {"apigateway.amazonaws.com"}
    assert sorted(p.inputs["sourceArn"].rsplit(":", 1)[1].split("/", 1)[1] for p in permissions) == [
        "*/GET/uploads/*", "*/POST/uploads"]
    assert jwt_stack.outputs["uploadApiAuth"] == "jwt"
    fn = jwt_stack.named("claimcheck-upload-api-function")
    assert fn.inputs["environment"]["variables"]["UPLOAD_API_KIND"] == "http-api"
    # the three stages, the upload API, the CDN purge, the pause function and the image events
    assert {f.name for f in jwt_stack.of_type(FUNCTION)} == {
        f"claimcheck-{name}-function" for name in ("intake", "thumbnail-stage", "label-stage", "upload-api", "cdn-purge", "pause",
                                                   "backfill", "image-events")}


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
    assert jwt_stack.outputs["uploaderJwt"] == {"route": "POST /uploads", "status_route": "GET /uploads/{id}",
                                                "issuer": "https://id.example.com/", "audience": "claimcheck", "scopes": []}
    assert "uploaderPolicyArn" not in jwt_stack.outputs
    assert not [p for p in jwt_stack.of_type("aws:iam/policy:Policy") if "upload-api" in p.name]
    routes = {r.inputs["routeKey"] for r in jwt_stack.of_type("aws:apigatewayv2/route:Route")}
    assert routes == {jwt_stack.outputs["uploaderJwt"]["route"], jwt_stack.outputs["uploaderJwt"]["status_route"]}


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
    routes = scoped.of_type("aws:apigatewayv2/route:Route")
    assert len(routes) == 2 and all(r.inputs["authorizationScopes"] == ["uploads:write"] for r in routes)
    assert scoped.outputs["uploaderJwt"]["scopes"] == ["uploads:write"]  # the caller is told which


def test_browsers_are_allowed_only_from_the_configured_origins(stack):
    assert "cors" not in stack.named("claimcheck-upload-api-url").inputs
    assert not stack.of_type("aws:s3/bucketCorsConfiguration:BucketCorsConfiguration")
    origins = {"uploadAllowedOrigins": ["https://app.example.com"]}
    web = program.run(program.RecordingMocks(), {**ALL_ON, **origins})
    cors = web.named("claimcheck-upload-api-url").inputs["cors"]
    assert cors["allowOrigins"] == ["https://app.example.com"] and cors["allowMethods"] == ["GET", "POST"]
    [bucket_cors] = web.of_type("aws:s3/bucketCorsConfiguration:BucketCorsConfiguration")
    assert bucket_cors.inputs["bucket"] == web.outputs["uploadsBucket"]
    [rule] = bucket_cors.inputs["corsRules"]
    assert rule["allowedOrigins"] == ["https://app.example.com"] and rule["allowedMethods"] == ["PUT"]
    assert "if-none-match" in rule["allowedHeaders"]
    api = program.run(program.RecordingMocks(), {**JWT, **origins})
    [http] = api.of_type("aws:apigatewayv2/api:Api")
    assert http.inputs["corsConfiguration"]["allowOrigins"] == ["https://app.example.com"]
    assert http.inputs["corsConfiguration"]["allowMethods"] == ["GET", "POST"]


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


QUOTA = {**ALL_ON, "uploadQuota": {"uploads": 200, "bytes": 2_000_000_000}}


def test_an_upload_quota_gets_a_counters_table_of_its_own_that_expires_its_items():
    deployed = program.run(program.RecordingMocks(), QUOTA)
    [table] = [t for t in deployed.of_type("aws:dynamodb/table:Table") if t.name == "claimcheck-upload-api-quotas"]
    assert (table.inputs["hashKey"], table.inputs["attributes"]) == ("owner_day", [{"name": "owner_day", "type": "S"}])
    assert table.inputs["ttl"] == {"attributeName": "expires_at", "enabled": True}
    assert table.inputs["billingMode"] == "PAY_PER_REQUEST" and table.inputs["serverSideEncryption"] == {"enabled": True}
    env = deployed.named("claimcheck-upload-api-function").inputs["environment"]["variables"]
    assert (env["QUOTA_TABLE_NAME"], env["UPLOAD_QUOTA_UPLOADS"], env["UPLOAD_QUOTA_BYTES"]) == (
        table.state["name"], "200", "2000000000")


def test_the_upload_function_may_only_update_counters_in_the_quota_table():
    deployed = program.run(program.RecordingMocks(), QUOTA)
    [table] = [t for t in deployed.of_type("aws:dynamodb/table:Table") if t.name == "claimcheck-upload-api-quotas"]
    grants = function_grants(deployed)["claimcheck-upload-api-function"]
    assert grants["dynamodb:UpdateItem"] == {table.state["arn"]}
    assert set(grants) == {"dynamodb:UpdateItem", "dynamodb:GetItem", "s3:PutObject",
                           "logs:CreateLogStream", "logs:PutLogEvents"}  # with the CDN: nothing presigned, no GetObject
    records = deployed.named("claimcheck-images").state["arn"]
    # image records are only read (the status route), never written
    assert [action for action, arns in grants.items() if records in arns] == ["dynamodb:GetItem"]


@pytest.mark.parametrize("config", [ALL_ON, {**ALL_ON, "uploadQuota": {"uploads": 0, "bytes": 0}}], ids=["unset", "zeros"])
def test_no_quota_no_table_and_no_permission(config):
    deployed = program.run(program.RecordingMocks(), config)
    assert [t.name for t in deployed.of_type("aws:dynamodb/table:Table")] == ["claimcheck-images"]
    fn = deployed.named("claimcheck-upload-api-function")
    assert "QUOTA_TABLE_NAME" not in fn.inputs["environment"]["variables"]
    assert "dynamodb:UpdateItem" not in function_grants(deployed)["claimcheck-upload-api-function"]


DOMAINS = {**JWT, "cdnCertificateArn": None, "cdnDomain": "images.example.com", "uploadApiDomain": "uploads.example.com"}
ZONE = "Z0123456789ABCDEFGHIJ"


def domains(**config) -> program.Deployment:
    return program.run(program.RecordingMocks(), {k: v for k, v in {**DOMAINS, **config}.items() if v is not None})


@pytest.fixture(scope=shared_scope)
def zoned():
    return domains(cdnHostedZoneId=ZONE, uploadApiHostedZoneId=ZONE)


def test_the_cdn_domain_gets_a_dns_validated_certificate_in_us_east_1_and_tls_1_2(zoned):
    [certificate] = [c for c in zoned.of_type("aws:acm/certificate:Certificate") if c.name == "claimcheck-cdn-certificate"]
    # CloudFront reads certificates from us-east-1 only, whatever the stack's Region.
    assert certificate.inputs == {"domainName": "images.example.com", "validationMethod": "DNS", "region": "us-east-1"}
    [issued] = [v for v in zoned.of_type("aws:acm/certificateValidation:CertificateValidation") if v.name.startswith("claimcheck-cdn")]
    assert (issued.inputs["certificateArn"], issued.inputs["region"]) == (certificate.state["arn"], "us-east-1")
    [distribution] = zoned.of_type("aws:cloudfront/distribution:Distribution")
    assert distribution.inputs["aliases"] == ["images.example.com"]
    assert distribution.inputs["viewerCertificate"] == {
        "acmCertificateArn": issued.state["certificateArn"], "sslSupportMethod": "sni-only",
        "minimumProtocolVersion": "TLSv1.2_2021"}  # the validation's output: the distribution waits for issuance


def test_with_a_zone_the_stack_writes_the_validation_record_and_aliases_to_the_distribution(zoned):
    records = {r.name: r for r in zoned.of_type("aws:route53/record:Record")}
    [certificate] = [c for c in zoned.of_type("aws:acm/certificate:Certificate") if c.name == "claimcheck-cdn-certificate"]
    [option] = certificate.state["domainValidationOptions"]
    validation = records["claimcheck-cdn-certificate-validation"]
    assert (validation.inputs["zoneId"], validation.inputs["name"], validation.inputs["type"], validation.inputs["records"]) == (
        ZONE, option["resourceRecordName"], "CNAME", [option["resourceRecordValue"]])
    [issued] = [v for v in zoned.of_type("aws:acm/certificateValidation:CertificateValidation") if v.name.startswith("claimcheck-cdn")]
    assert issued.inputs["validationRecordFqdns"] == [validation.state["fqdn"]]  # it waits for that record
    [distribution] = zoned.of_type("aws:cloudfront/distribution:Distribution")
    for record_type in ("A", "AAAA"):
        alias = records[f"claimcheck-cdn-{record_type.lower()}"]
        assert (alias.inputs["zoneId"], alias.inputs["name"], alias.inputs["type"]) == (ZONE, "images.example.com", record_type)
        assert alias.inputs["aliases"] == [{"name": distribution.state["domainName"], "zoneId": "Z2FDTNDATAQYW2",
                                            "evaluateTargetHealth": False}]
    assert distribution.inputs["isIpv6Enabled"] is True  # the AAAA alias answers
    assert "cdnDnsRecords" not in zoned.outputs and "uploadApiDnsRecords" not in zoned.outputs


def test_thumbnail_urls_are_on_the_cdn_domain(zoned):
    assert zoned.outputs["thumbnailsUrl"] == "https://images.example.com"
    env = zoned.named("claimcheck-thumbnail-stage-function").inputs["environment"]["variables"]
    assert env["THUMBNAILS_BASE_URL"] == "https://images.example.com"


def test_without_a_zone_the_records_are_outputs_and_the_update_says_what_to_add():
    deployed = domains()
    assert not deployed.of_type("aws:route53/record:Record")
    [certificate] = [c for c in deployed.of_type("aws:acm/certificate:Certificate") if c.name == "claimcheck-cdn-certificate"]
    [option] = certificate.state["domainValidationOptions"]
    [distribution] = deployed.of_type("aws:cloudfront/distribution:Distribution")
    assert deployed.outputs["cdnDnsRecords"] == [
        {"name": option["resourceRecordName"], "type": "CNAME", "value": option["resourceRecordValue"],
         "why": "lets ACM issue images.example.com's certificate"},
        {"name": "images.example.com", "type": "CNAME", "value": distribution.state["domainName"],
         "why": "sends the domain to the stack"}]
    [issued] = [v for v in deployed.of_type("aws:acm/certificateValidation:CertificateValidation") if v.name.startswith("claimcheck-cdn")]
    assert "validationRecordFqdns" not in issued.inputs  # it waits for ACM to see the record the user adds
    assert (f"claimcheck: add {option['resourceRecordName']} CNAME {option['resourceRecordValue']} to the DNS of "
            "images.example.com: ACM issues its certificate once it sees that record, and this update waits for it "
            "(up to 75 minutes; run it again if it times out).") in deployed.warnings


def test_a_certificate_of_ones_own_is_used_as_given(jwt_stack):
    assert not jwt_stack.of_type("aws:acm/certificate:Certificate")
    [distribution] = jwt_stack.of_type("aws:cloudfront/distribution:Distribution")
    assert distribution.inputs["viewerCertificate"]["acmCertificateArn"] == JWT["cdnCertificateArn"]
    assert jwt_stack.outputs["cdnDnsRecords"] == [{"name": "img.example.com", "type": "CNAME",
                                                   "value": distribution.state["domainName"],
                                                   "why": "sends the domain to the stack"}]


def test_the_upload_api_domain_is_a_regional_tls_1_2_domain_mapped_to_the_http_api(zoned):
    [certificate] = [c for c in zoned.of_type("aws:acm/certificate:Certificate") if c.name.startswith("claimcheck-upload-api")]
    # A Regional domain takes a certificate from the stack's own Region: no region given.
    assert certificate.inputs == {"domainName": "uploads.example.com", "validationMethod": "DNS"}
    [issued] = [v for v in zoned.of_type("aws:acm/certificateValidation:CertificateValidation") if v.name.startswith("claimcheck-upload-api")]
    [domain] = zoned.of_type("aws:apigatewayv2/domainName:DomainName")
    assert domain.inputs["domainName"] == "uploads.example.com"
    assert domain.inputs["domainNameConfiguration"] == {
        "certificateArn": issued.state["certificateArn"], "endpointType": "REGIONAL", "securityPolicy": "TLS_1_2",
        "ipAddressType": "dualstack"}
    [mapping] = zoned.of_type("aws:apigatewayv2/apiMapping:ApiMapping")
    [api] = zoned.of_type("aws:apigatewayv2/api:Api")
    [stage] = zoned.of_type("aws:apigatewayv2/stage:Stage")
    assert (mapping.inputs["apiId"], mapping.inputs["domainName"], mapping.inputs["stage"]) == (
        api.id, "uploads.example.com", stage.id)
    assert "apiMappingKey" not in mapping.inputs  # at the root: POST https://uploads.example.com/uploads
    assert zoned.outputs["uploadApiUrl"] == "https://uploads.example.com/"
    assert api.inputs["disableExecuteApiEndpoint"] is True  # the domain is the only way in
    records = {r.name: r for r in zoned.of_type("aws:route53/record:Record")}
    target = domain.state["domainNameConfiguration"]
    for record_type in ("A", "AAAA"):
        assert records[f"claimcheck-upload-api-{record_type.lower()}"].inputs["aliases"] == [
            {"name": target["targetDomainName"], "zoneId": target["hostedZoneId"], "evaluateTargetHealth": False}]


def test_the_distributions_own_domain_keeps_cloudfronts_default_certificate(stack):
    # CloudFront sets TLSv1 for *.cloudfront.net whatever is asked: nothing to set without a domain of one's own.
    [distribution] = stack.of_type("aws:cloudfront/distribution:Distribution")
    assert distribution.inputs["viewerCertificate"] == {"cloudfrontDefaultCertificate": True}
    assert "aliases" not in distribution.inputs and not stack.of_type("aws:acm/certificate:Certificate")
    assert "cdnDnsRecords" not in stack.outputs
