"""The local cloud refuses what AWS refuses: each function's calls are judged by its own role, a missing key is a
403 without s3:ListBucket, SigV2 is refused, presigned PUTs and POSTs are held to their signature, expiry
and conditions, and browsers' cross-origin requests to a bucket are judged by its CORS rules, as S3 does all of it."""
from __future__ import annotations

import time

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from localcloud.cloud import LocalCloud

UPLOAD_API = "claimcheck-upload-api-function"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with LocalCloud(config={"uploadApi": True}, workdir=tmp_path_factory.mktemp("rules")) as cloud:
        cloud.upload("uploads/present.jpg", b"\xff\xd8\xff" + b"\0" * 100)
        yield cloud


def as_function(cloud: LocalCloud, function_logical_name: str, service: str, **config):
    fn = cloud.deployment.named(function_logical_name)
    creds = cloud.credentials[fn.state["name"]]
    return boto3.client(service, aws_access_key_id=creds["AWS_ACCESS_KEY_ID"], aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
                        aws_session_token=None, endpoint_url=cloud.endpoint_of(service), region_name="us-east-1",
                        config=Config(**config) if config else None)


def code(raised) -> str:
    return raised.value.response["Error"]["Code"]


def test_a_function_may_do_only_what_its_role_allows(cloud):
    intake = as_function(cloud, "claimcheck-intake-function", "s3")
    assert intake.get_object(Bucket=cloud.outputs["uploadsBucket"], Key="uploads/present.jpg")["ContentLength"] == 103
    with pytest.raises(ClientError) as raised:
        intake.put_object(Bucket=cloud.outputs["thumbnailsBucket"], Key="thumbnails/x/1.jpg", Body=b"x")
    assert code(raised) == "AccessDenied"
    table = as_function(cloud, "claimcheck-intake-function", "dynamodb")
    with pytest.raises(ClientError) as raised:  # the intake may Get and Update items, never Delete them
        table.delete_item(TableName=cloud.outputs["tableName"], Key={"image_id": {"S": "x"}})
    assert code(raised) == "AccessDeniedException"
    labels = as_function(cloud, "claimcheck-label-stage-function", "sns")
    with pytest.raises(ClientError) as raised:
        labels.publish(TopicArn=cloud.outputs["claimCheckTopicArn"], Message="{}")
    assert code(raised) == "AuthorizationError"


def test_a_missing_key_is_403_without_list_bucket_and_404_with_it(cloud):
    bucket = cloud.outputs["uploadsBucket"]
    # The label stage may read uploads (Rekognition reads them as it) but not list the bucket.
    labels = as_function(cloud, "claimcheck-label-stage-function", "s3")
    with pytest.raises(ClientError) as raised:
        labels.get_object(Bucket=bucket, Key="uploads/missing.jpg")
    assert (code(raised), raised.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("AccessDenied", 403)
    intake = as_function(cloud, "claimcheck-intake-function", "s3")  # holds s3:ListBucket on the uploads bucket
    with pytest.raises(ClientError) as raised:
        intake.get_object(Bucket=bucket, Key="uploads/missing.jpg")
    assert code(raised) == "NoSuchKey"
    with pytest.raises(ClientError) as raised:
        intake.head_object(Bucket=bucket, Key="uploads/missing.jpg")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_a_request_at_the_wrong_endpoint_is_refused_with_the_right_one(cloud):
    # DynamoDB is served by its own process; the main endpoint does not quietly answer from an empty table store.
    env = cloud.emulator.environment()  # the local cloud's own credentials, not a test's fake ones
    admin = boto3.session.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                  aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    misrouted = admin.client("dynamodb", endpoint_url=cloud.endpoint)
    with pytest.raises(ClientError) as raised:
        misrouted.describe_table(TableName=cloud.outputs["tableName"])
    assert code(raised) == "WrongEndpoint"
    assert "AWS_ENDPOINT_URL_DYNAMODB" in raised.value.response["Error"]["Message"]
    routed = admin.client("dynamodb")  # boto3 reads AWS_ENDPOINT_URL_DYNAMODB itself
    assert routed.describe_table(TableName=cloud.outputs["tableName"])["Table"]["TableStatus"] == "ACTIVE"
    misrouted_s3 = admin.client("s3", endpoint_url=cloud.endpoint_of("dynamodb"))
    with pytest.raises(ClientError) as raised:
        misrouted_s3.list_objects_v2(Bucket=cloud.outputs["uploadsBucket"])
    assert code(raised) == "WrongEndpoint"


def test_unknown_credentials_are_refused(cloud):
    stranger = boto3.client("s3", aws_access_key_id="AKIASTRANGER", aws_secret_access_key="x", aws_session_token=None,
                            endpoint_url=cloud.endpoint, region_name="us-east-1")
    with pytest.raises(ClientError) as raised:
        stranger.list_objects_v2(Bucket=cloud.outputs["uploadsBucket"])
    assert code(raised) == "InvalidAccessKeyId"


def api_signer(cloud, **config):
    return as_function(cloud, UPLOAD_API, "s3", **config)


def admin_signer(cloud, **config):
    admin = cloud.emulator.credentials
    return boto3.client("s3", aws_access_key_id=admin["AWS_ACCESS_KEY_ID"], aws_secret_access_key=admin["AWS_SECRET_ACCESS_KEY"],
                        aws_session_token=None, endpoint_url=cloud.endpoint, region_name="us-east-1", config=Config(**config))


def test_a_sigv2_presigned_post_is_refused_as_s3_refuses_it(cloud):
    # What botocore signs by default in older regions (S3 refuses SigV2 on buckets created since June 2020).
    post = admin_signer(cloud, signature_version="s3").generate_presigned_post(
        cloud.outputs["uploadsBucket"], "uploads/form/y.jpg")
    assert "AWSAccessKeyId" in post["fields"] and "signature" in post["fields"]
    answer = requests.post(post["url"], data=post["fields"], files={"file": ("y.jpg", b"\xff\xd8\xff")}, timeout=30)
    assert answer.status_code == 400
    assert "Please use AWS4-HMAC-SHA256" in answer.text


def sigv4_post(cloud, key: str, expires: int = 60, max_bytes: int = 1000):
    return admin_signer(cloud, signature_version="s3v4").generate_presigned_post(
        cloud.outputs["uploadsBucket"], key, Fields={"Content-Type": "image/jpeg"},
        Conditions=[{"Content-Type": "image/jpeg"}, ["content-length-range", 1, max_bytes]], ExpiresIn=expires)


def test_a_sigv4_post_is_held_to_its_policy(cloud):
    good = sigv4_post(cloud, "uploads/form/good.jpg")
    assert requests.post(good["url"], data=good["fields"], files={"file": ("g", b"\xff\xd8\xff")}, timeout=30).status_code == 204
    other_key = sigv4_post(cloud, "uploads/form/signed.jpg")
    swapped = {**other_key["fields"], "key": "uploads/form/elsewhere.jpg"}
    answer = requests.post(other_key["url"], data=swapped, files={"file": ("g", b"\xff\xd8\xff")}, timeout=30)
    assert answer.status_code == 403 and "Policy Condition failed" in answer.text
    too_big = sigv4_post(cloud, "uploads/form/big.jpg", max_bytes=10)
    answer = requests.post(too_big["url"], data=too_big["fields"], files={"file": ("g", b"\xff" * 11)}, timeout=30)
    assert answer.status_code == 400 and "EntityTooLarge" in answer.text
    wrong_type = {**good["fields"], "Content-Type": "text/html"}
    answer = requests.post(good["url"], data=wrong_type, files={"file": ("g", b"<html>")}, timeout=30)
    assert answer.status_code == 403
    extra = {**good["fields"], "x-amz-meta-owner": "someone-else"}
    answer = requests.post(good["url"], data=extra, files={"file": ("g", b"\xff\xd8\xff")}, timeout=30)
    assert answer.status_code == 403 and "Extra input fields" in answer.text
    # A form POST cannot carry If-None-Match, so under the upload API's prefix the bucket policy refuses it.
    api = sigv4_post(cloud, "uploads/api/x/form.jpg")
    answer = requests.post(api["url"], data=api["fields"], files={"file": ("g", b"\xff\xd8\xff")}, timeout=30)
    assert answer.status_code == 403 and "denied by the bucket policy" in answer.text


def test_an_expired_post_is_refused(cloud):
    post = sigv4_post(cloud, "uploads/form/late.jpg", expires=1)
    time.sleep(2.1)
    answer = requests.post(post["url"], data=post["fields"], files={"file": ("g", b"\xff\xd8\xff")}, timeout=30)
    assert answer.status_code == 403 and "Policy expired" in answer.text


def presigned_put(cloud, key: str, body: bytes, expires: int = 60, create_only: bool = True) -> str:
    params = {"Bucket": cloud.outputs["uploadsBucket"], "Key": key, "ContentType": "image/jpeg", "ContentLength": len(body)}
    if create_only:
        params["IfNoneMatch"] = "*"
    return api_signer(cloud, signature_version="s3v4").generate_presigned_url("put_object", Params=params, ExpiresIn=expires)


def put(url: str, body: bytes, **headers) -> requests.Response:
    return requests.put(url, data=body, headers={"Content-Type": "image/jpeg", **headers}, timeout=30)


def test_a_presigned_put_is_one_upload(cloud):
    body = b"\xff\xd8\xff" + b"1" * 50
    url = presigned_put(cloud, "uploads/api/x/once.jpg", body)
    assert put(url, body, **{"If-None-Match": "*"}).status_code == 200
    # Replayed: S3's conditional write refuses to replace it.
    assert put(url, body, **{"If-None-Match": "*"}).status_code == 412
    # Dropping the condition breaks the signature: it was signed.
    assert put(url, body).status_code == 403


def test_a_presigned_put_is_held_to_what_was_signed(cloud):
    body = b"\xff\xd8\xff" + b"2" * 50
    url = presigned_put(cloud, "uploads/api/x/exact.jpg", body)
    answer = requests.put(url, data=body, headers={"Content-Type": "text/html", "If-None-Match": "*"}, timeout=30)
    assert answer.status_code == 403 and "SignatureDoesNotMatch" in answer.text
    assert put(url.replace("exact.jpg", "other.jpg"), body, **{"If-None-Match": "*"}).status_code == 403
    late = presigned_put(cloud, "uploads/api/x/late.jpg", body, expires=1)
    time.sleep(2.1)
    answer = put(late, body, **{"If-None-Match": "*"})
    assert answer.status_code == 403 and "Request has expired" in answer.text


def test_an_unconditional_put_under_the_api_prefix_is_denied_by_the_bucket_policy(cloud):
    body = b"\xff\xd8\xff"
    url = presigned_put(cloud, "uploads/api/x/overwrite.jpg", body, create_only=False)
    answer = put(url, body)
    assert answer.status_code == 403 and "denied by the bucket policy" in answer.text


CORS_RULES = {"uploads": [
    {"allowedMethods": ["PUT"], "allowedOrigins": ["https://app.example.com", "http://127.0.0.1:*"],
     "allowedHeaders": ["content-type", "if-none-match", "x-amz-meta-*"], "exposeHeaders": ["etag"], "maxAgeSeconds": 3000},
    {"allowedMethods": ["GET"], "allowedOrigins": ["*"], "allowedHeaders": []},
]}


@pytest.mark.parametrize("bucket, origin, method, headers, allowed", [
    ("uploads", "https://app.example.com", "PUT", ["Content-Type", "If-None-Match", "x-amz-meta-owner"], "https://app.example.com"),
    ("uploads", "http://127.0.0.1:8000", "PUT", ["content-type"], "http://127.0.0.1:8000"),  # one * in an origin
    ("uploads", "https://evil.example", "PUT", ["content-type"], None),  # no rule names it
    ("uploads", "https://app.example.com.evil.example", "PUT", [], None),  # an origin matches whole, not as a prefix
    ("uploads", "https://app.example.com", "DELETE", [], None),  # a method no rule lists
    ("uploads", "https://app.example.com", "PUT", ["authorization"], None),  # a header no rule admits
    ("uploads", "https://evil.example", "GET", [], "*"),  # the second rule: the first that matches answers
    ("thumbnails", "https://app.example.com", "PUT", [], None),  # a bucket without CORS answers no origin
])
def test_s3_cors_is_evaluated_rule_by_rule_as_s3_does(bucket, origin, method, headers, allowed):
    from localcloud.controls import BucketCors

    cors = BucketCors()
    cors.configure(CORS_RULES)
    answer = cors.preflight(bucket, origin, method, headers)
    assert (answer or {}).get("Access-Control-Allow-Origin") == allowed
    if answer and method == "PUT":
        assert answer["Access-Control-Max-Age"] == "3000" and cors.actual(bucket, origin, method) == {
            "Access-Control-Allow-Origin": allowed, "Vary": "Origin", "Access-Control-Expose-Headers": "etag"}


def test_a_preflight_to_the_emulator_is_answered_from_the_bucket_s_rules_not_moto_s(tmp_path):
    origin = "http://127.0.0.1:8000"
    with LocalCloud(config={"uploadApi": True, "uploadAllowedOrigins": [origin]}, workdir=tmp_path) as cloud:
        url = f"{cloud.endpoint_of('s3')}/{cloud.outputs['uploadsBucket']}/uploads/api/x.jpg"
        ask = {"Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "content-type"}
        ours = requests.options(url, headers={"Origin": origin, **ask}, timeout=10)
        theirs = requests.options(url, headers={"Origin": "https://evil.example", **ask}, timeout=10)
        unsent = requests.options(url, headers=ask, timeout=10)
    assert ours.status_code == 200 and ours.headers["Access-Control-Allow-Origin"] == origin
    assert theirs.status_code == 403 and "Access-Control-Allow-Origin" not in theirs.headers
    assert "CORSResponse: This CORS request is not allowed" in theirs.text
    assert unsent.status_code == 400 and "Origin request header needed" in unsent.text


def lambda_as(cloud: LocalCloud, function_logical_name: str | None = None):
    """Lambda's client for a function's role, or (no name) for the local cloud's unrestricted harness."""
    if function_logical_name:
        return as_function(cloud, function_logical_name, "lambda")
    admin = cloud.emulator.credentials
    return boto3.client("lambda", aws_access_key_id=admin["AWS_ACCESS_KEY_ID"], aws_secret_access_key=admin["AWS_SECRET_ACCESS_KEY"],
                        aws_session_token=None, endpoint_url=cloud.endpoint, region_name="us-east-1")


def test_invoke_is_judged_by_the_caller_s_role_then_run_and_answered_as_lambda_answers(cloud):
    import json

    from localcloud.lambda_events import sqs_event, sqs_record

    intake = cloud.deployed.functions()["intake"].state
    admin = lambda_as(cloud)
    # A test event is a no-op for the intake: the function ran, and answered its partial-batch response.
    event = sqs_event([sqs_record(json.dumps({"Event": "s3:TestEvent"}), "arn:aws:sqs:us-east-1:123456789012:q")])
    answer = admin.invoke(FunctionName=intake["name"], Payload=json.dumps(event).encode())
    assert (answer["StatusCode"], answer.get("FunctionError"), json.loads(answer["Payload"].read())) == (
        200, None, {"batchItemFailures": []})
    # What the function raised is its answer's payload, marked as a function error (Lambda API reference, Invoke).
    failed = admin.invoke(FunctionName=intake["arn"], Payload=b"{}")
    error = json.loads(failed["Payload"].read())
    assert (failed["StatusCode"], failed["FunctionError"], error["errorType"]) == (200, "Unhandled", "UnexpectedBatchTypeError")
    assert admin.invoke(FunctionName=intake["name"], InvocationType="DryRun")["StatusCode"] == 204
    # A role without lambda:InvokeFunction on it is refused before anything runs.
    with pytest.raises(ClientError) as raised:
        lambda_as(cloud, UPLOAD_API).invoke(FunctionName=intake["name"], Payload=b"{}")
    assert code(raised) == "AccessDeniedException" and raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert f"lambda:InvokeFunction on resource: {intake['arn']}" in raised.value.response["Error"]["Message"]
    for asked, refusal in (({"FunctionName": "nosuch"}, "ResourceNotFoundException"),
                           ({"FunctionName": intake["name"], "Payload": b"not json"}, "InvalidRequestContentException"),
                           ({"FunctionName": intake["name"], "InvocationType": "Event"}, "InvalidParameterValueException")):
        with pytest.raises(ClientError) as raised:
            admin.invoke(**asked)
        assert code(raised) == refusal


def test_functions_run_for_the_emulator_alone_never_past_its_judgement(cloud):
    """The address that runs functions takes only what the emulator hands it (its token): nothing else on the machine,
    a web page included, can run a function without lambda:InvokeFunction."""
    address = cloud.invocations.address
    path = f"/2015-03-31/functions/{cloud.deployed.functions()['intake'].state['name']}/invocations"
    assert requests.post(address["url"] + path, data=b"{}", timeout=10).status_code == 403
    assert requests.post(address["url"] + path, data=b"{}", timeout=10,
                         headers={"X-Localcloud-Invoke-Token": "guessed"}).status_code == 403
    rebound = requests.post(address["url"].replace("127.0.0.1", "localhost") + path, data=b"{}", timeout=10,
                            headers={"X-Localcloud-Invoke-Token": address["token"], "Host": "attacker.example"})
    assert rebound.status_code == 403


def test_an_event_source_mapping_takes_enabled_only_and_names_what_it_does_not_take(cloud):
    """moto has no event source mappings; the local cloud's answer only Enabled, and says so rather than take a
    filter or a retarget it would not apply."""
    uuid = cloud.outputs["eventSourceMappings"]["thumbnails"]
    admin = lambda_as(cloud)
    with pytest.raises(ClientError) as raised:
        admin.update_event_source_mapping(UUID=uuid, FilterCriteria={"Filters": [{"Pattern": '{"body": ["x"]}'}]})
    assert code(raised) == "InvalidParameterValueException"
    assert raised.value.response["Error"]["Message"] == "the local cloud's event source mappings take Enabled only, not FilterCriteria"
    assert admin.get_event_source_mapping(UUID=uuid)["State"] == "Enabled"


def test_a_mapping_update_is_judged_with_the_function_it_feeds_and_the_one_it_would_feed():
    """lambda:FunctionArn holds the mapping's own function, and, when the update names another, that one too: a
    statement held to one function allows neither leaving it nor moving to it."""
    import json

    from localcloud.authorizer import Need, Request, needs

    fed = "arn:aws:lambda:us-east-1:123456789012:function:thumbnails"
    mapping = "arn:aws:lambda:us-east-1:123456789012:event-source-mapping:34b09298-37f4-51dd-8f26-f8a94d8ea8d9"

    def asked(body: dict) -> list[Need]:
        request = Request("PUT", "/2015-03-31/event-source-mappings/34b09298-37f4-51dd-8f26-f8a94d8ea8d9", [],
                          {"authorization": "AWS4-HMAC-SHA256 Credential=K/20261201/us-east-1/lambda/aws4_request"},
                          json.dumps(body).encode())
        return needs(request, "123456789012", "us-east-1", {}, {mapping.rsplit(":", 1)[-1]: fed})

    assert asked({"Enabled": False}) == [Need("lambda:UpdateEventSourceMapping", mapping, {"lambda:FunctionArn": fed})]
    assert asked({"FunctionName": "intake"}) == [
        Need("lambda:UpdateEventSourceMapping", mapping, {"lambda:FunctionArn": fed}),
        Need("lambda:UpdateEventSourceMapping", mapping,
             {"lambda:FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:intake"})]
