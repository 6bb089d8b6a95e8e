"""The local cloud's IAM and S3 request rules: what moto does not check, checked the way AWS does.

Every request to the emulator is described as the IAM actions it needs (an action, a resource ARN and the
request's condition keys), then judged:
  - a function's own credentials carry exactly its deployed role's statements (identity policy), so a call its
    role does not allow is refused with AccessDenied at run time, as in Lambda;
  - services that act with the caller's permissions need them too: SNS publishing to a KMS-encrypted topic
    (kms:GenerateDataKey and kms:Decrypt on the key), Rekognition reading the S3 object it is given;
  - bucket policies' Deny statements apply to everyone (aws:SecureTransport counts as true: loopback has no TLS);
  - a GET or HEAD of a missing key answers 403, not 404, unless the caller may s3:ListBucket on the bucket
    (S3 API reference, GetObject and HeadObject, "Permissions");
  - S3 refuses Signature Version 2 (buckets created since June 2020); presigned PUTs and POSTs are verified
    as S3 verifies them: the SigV4 signature, the expiry, and for a POST every policy condition.
Requests signed in headers are verified too (SigV4: the signature, the signed headers, the clock skew), so an
access key is nobody's without its secret; the function and operator keys are drawn afresh for every run.
What it does not model: KMS key policies, resource policies' Allow statements (only Deny), permission
boundaries, SCPs.
"""
from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

SIGV2_REFUSED = "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."
# Lambda's Invoke (POST /2015-03-31/functions/FunctionName/invocations, Lambda API reference, Invoke).
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
MAPPING_PATH = re.compile(r"^/2015-03-31/event-source-mappings/?([0-9a-fA-F-]*)$")


@dataclass(frozen=True)
class Need:
    """One permission a request needs."""

    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict)


@dataclass
class Identity:
    name: str  # the function (or "admin") the credentials belong to
    secret: str
    statements: list[dict[str, Any]] | None  # None: unrestricted (the local cloud's own harness)
    principal_arn: str | None = None  # aws:PrincipalArn of its requests (a function's: its role's ARN)

    @property
    def restricted(self) -> bool:
        return self.statements is not None


class Refusal(Exception):
    """A request AWS would refuse: the HTTP status, the error code and the message the service gives."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# --- policy evaluation -------------------------------------------------------------------------------------

def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(pattern: str, value: str, case: bool = True) -> bool:
    return fnmatch.fnmatchcase(value, pattern) if case else fnmatch.fnmatchcase(value.lower(), pattern.lower())


def _condition_holds(operator: str, key: str, expected: Any, context: dict[str, str]) -> bool:
    if_exists = operator.endswith("IfExists")
    operator = operator.removesuffix("IfExists")
    present = {k.lower(): v for k, v in context.items()}
    actual = present.get(key.lower())
    if operator == "Null":
        return (actual is None) == (str(_list(expected)[0]).lower() == "true")
    negated = operator in ("StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike")
    if actual is None:
        # An absent key matches nothing, so a negated operator holds (IAM User Guide, "IAM JSON policy elements:
        # Condition operators": "If the key that you specify in a policy condition is not present in the request
        # context, the values do not match ... if the policy condition requires that the key is not matched, such as
        # StringNotLike or ArnNotLike, and the right key is not present, the condition is true").
        return if_exists or negated
    wanted = [str(v) for v in _list(expected)]
    if operator in ("StringEquals", "ArnEquals"):
        return actual in wanted
    if operator in ("StringLike", "ArnLike"):
        return any(_matches(w, actual) for w in wanted)
    if operator in ("StringNotEquals", "ArnNotEquals"):
        return actual not in wanted
    if operator in ("StringNotLike", "ArnNotLike"):
        return not any(_matches(w, actual) for w in wanted)
    if operator == "Bool":
        return actual.lower() in [w.lower() for w in wanted]
    raise Refusal(500, "InternalError", f"the local cloud cannot evaluate the condition operator {operator!r}; "
                                        "teach localcloud/authorizer.py")


def _applies(statement: dict[str, Any], need: Need) -> bool:
    if "Action" in statement and not any(_matches(a, need.action, case=False) for a in _list(statement["Action"])):
        return False
    if "NotAction" in statement and any(_matches(a, need.action, case=False) for a in _list(statement["NotAction"])):
        return False
    if "Resource" in statement and not any(_matches(r, need.resource) for r in _list(statement["Resource"])):
        return False
    if "NotResource" in statement and any(_matches(r, need.resource) for r in _list(statement["NotResource"])):
        return False
    return all(_condition_holds(op, key, value, need.context)
               for op, keys in statement.get("Condition", {}).items() for key, value in keys.items())


def decide(statements: list[dict[str, Any]], need: Need) -> str:
    """IAM's evaluation for one policy set: "deny" (an explicit Deny), "allow", or "implicit" (nothing allows)."""
    matched = [s for s in statements if _applies(s, need)]
    if any(s["Effect"] == "Deny" for s in matched):
        return "deny"
    return "allow" if any(s["Effect"] == "Allow" for s in matched) else "implicit"


def public_statements(policy: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The statements of a resource policy that bind every caller (Principal "*")."""
    return [s for s in policy if s.get("Principal") == "*" or s.get("Principal") == {"AWS": "*"}]


# --- describing requests ----------------------------------------------------------------------------------

@dataclass
class Request:
    method: str
    path: str  # raw, still percent-encoded, without the query
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def arg(self, name: str) -> str | None:
        return next((v for k, v in self.query if k == name), None)

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self.query)

    @property
    def json(self) -> dict[str, Any]:
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            return {}

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))


def service_of(request: Request) -> str:
    """The service a request is for, from its credential scope (header, query or POST policy) or its target."""
    auth = request.headers.get("authorization", "")
    scope = re.search(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request", auth)
    if scope:
        return scope.group(1)
    credential = request.arg("X-Amz-Credential")
    if credential:
        return credential.split("/")[3]
    target = request.headers.get("x-amz-target", "")
    return {"DynamoDB": "dynamodb", "AmazonSQS": "sqs", "RekognitionService": "rekognition"}.get(target.split("_")[0].split(".")[0], "s3")


def access_key_of(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    found = re.search(r"Credential=([^/]+)/", auth)
    if found:
        return found.group(1)
    credential = request.arg("X-Amz-Credential")
    return credential.split("/")[0] if credential else None


def _s3_path(request: Request) -> tuple[str, str]:
    bucket, _, key = request.path.lstrip("/").partition("/")
    return unquote(bucket), unquote(key)


def s3_needs(request: Request, account: str) -> list[Need]:
    bucket, key = _s3_path(request)
    bucket_arn, object_arn = f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/{key}"
    method = request.method
    conditional = {"s3:if-none-match": request.headers["if-none-match"]} if "if-none-match" in request.headers else {}
    if not bucket:
        return [Need("s3:ListAllMyBuckets", "*")]
    if not key:
        if method == "GET" and request.arg("list-type") == "2":
            return [Need("s3:ListBucket", bucket_arn, {"s3:prefix": request.arg("prefix") or ""})]
        if method == "GET" and request.has("versions"):
            return [Need("s3:ListBucketVersions", bucket_arn, {"s3:prefix": request.arg("prefix") or ""})]
        if method == "POST" and request.has("delete"):
            # Each object the batch names is judged as its own DELETE: s3:DeleteObjectVersion with a version id
            # (S3 API reference, DeleteObjects, "Permissions").
            found = [need for o in re.findall(rb"<Object>(.*?)</Object>", request.body, flags=re.S)
                     if (need := _deletion(bucket_arn, o)) is not None]
            return found or [Need("s3:DeleteObject", bucket_arn + "/")]
        if method == "HEAD":
            return [Need("s3:ListBucket", bucket_arn)]
        return [Need(f"s3:{method.title()}Bucket*", bucket_arn)]  # bucket configuration: not something a function does
    versioned = request.has("versionId")
    if method in ("GET", "HEAD"):
        if request.has("tagging"):
            return [Need("s3:GetObjectVersionTagging" if versioned else "s3:GetObjectTagging", object_arn)]
        return [Need("s3:GetObjectVersion" if versioned else "s3:GetObject", object_arn)]
    if method == "PUT":
        if request.has("tagging"):
            return [Need("s3:PutObjectVersionTagging" if versioned else "s3:PutObjectTagging", object_arn)]
        if "x-amz-copy-source" in request.headers:
            source = unquote(request.headers["x-amz-copy-source"].lstrip("/").split("?")[0])
            return [Need("s3:PutObject", object_arn, conditional), Need("s3:GetObject", f"arn:aws:s3:::{source}")]
        return [Need("s3:PutObject", object_arn, conditional)]
    if method == "DELETE":
        if request.has("tagging"):
            return [Need("s3:DeleteObjectVersionTagging" if versioned else "s3:DeleteObjectTagging", object_arn)]
        return [Need("s3:DeleteObjectVersion" if versioned else "s3:DeleteObject", object_arn)]
    return [Need(f"s3:{method.title()}Object*", object_arn)]


def _deletion(bucket_arn: str, element: bytes) -> Need | None:
    key = re.search(rb"<Key>(.*?)</Key>", element, flags=re.S)
    if key is None:
        return None
    action = "s3:DeleteObjectVersion" if b"<VersionId>" in element else "s3:DeleteObject"
    return Need(action, f"{bucket_arn}/{_xml_text(key.group(1))}")


def _xml_text(raw: bytes) -> str:
    return raw.decode().replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&apos;", "'")


def function_arn(name: str, region: str, account: str, qualifier: str | None = None) -> str:
    """The ARN a function is named by, from its name, its ARN or a partial ARN (account:function:name), each maybe
    with a qualifier after the name, which a Qualifier parameter may give instead (Lambda API reference, Invoke)."""
    if name.startswith("arn:"):
        arn = name
    elif ":function:" in name:
        arn = f"arn:aws:lambda:{region}:{name}"
    else:
        arn = f"arn:aws:lambda:{region}:{account}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier and arn.count(":") == 6 else arn


def _lambda_needs(request: Request, account: str, region: str, mapping_functions: dict[str, str]) -> list[Need]:
    """Invoke is lambda:InvokeFunction on the function (version or alias) it names. An event source mapping's update
    is judged with lambda:FunctionArn, the function it feeds; when the update names another one, with that one too,
    so a statement held to one function allows neither retargeting away from it nor to it (Lambda Developer Guide,
    "Resources and conditions for Lambda actions": the key restricts which functions a user can configure an event
    source to invoke)."""
    invoke = INVOKE_PATH.fullmatch(request.path)
    if invoke and request.method == "POST":
        return [Need("lambda:InvokeFunction", function_arn(unquote(invoke.group(1)), region, account, request.arg("Qualifier")))]
    mapping = MAPPING_PATH.fullmatch(request.path)
    if mapping and mapping.group(1):
        resource = f"arn:aws:lambda:{region}:{account}:event-source-mapping:{mapping.group(1)}"
        if request.method != "PUT":
            return [Need("lambda:GetEventSourceMapping", resource)]
        current = mapping_functions.get(mapping.group(1), "")
        named = request.json.get("FunctionName")
        functions = [current, *([function_arn(str(named), region, account)] if named else [])]
        return [Need("lambda:UpdateEventSourceMapping", resource, {"lambda:FunctionArn": arn} if arn else {})
                for arn in dict.fromkeys(functions)]
    if mapping:
        return [Need("lambda:ListEventSourceMappings", "*")]
    return [Need(f"lambda:{request.method} {request.path}", "*")]


def needs(request: Request, account: str, region: str, topics: dict[str, str],
          mapping_functions: dict[str, str] | None = None) -> list[Need]:
    """The permissions a request needs. `topics` maps topic ARN -> its KMS key ARN (SNS encrypts as the caller);
    `mapping_functions` each event source mapping's UUID -> the ARN of the function it feeds."""
    service = service_of(request)
    if service == "s3":
        return s3_needs(request, account)
    target = request.headers.get("x-amz-target", "")
    operation = target.rsplit(".", 1)[-1] if target else request.form.get("Action", "")
    body = request.json
    if service == "sts" and operation == "GetCallerIdentity":
        return []  # "No permissions are required to perform this operation" (STS API reference, GetCallerIdentity)
    if service == "dynamodb" and target.startswith("DynamoDBStreams"):
        return [Need(f"dynamodb:{operation}", _stream_of(body, account, region))]
    if service == "events" and operation == "PutEvents":
        # Each entry is authorized on the bus it names, the account's default bus when it names none (EventBridge API
        # Reference, PutEvents: EventBusName).
        buses = {str(e.get("EventBusName") or "default") for e in body.get("Entries") or [{}]}
        return [Need("events:PutEvents", bus if bus.startswith("arn:") else f"arn:aws:events:{region}:{account}:event-bus/{bus}")
                for bus in sorted(buses)]
    if service == "dynamodb" and operation in ("BatchGetItem", "BatchWriteItem"):
        # A batch names no TableName but a map of tables (DynamoDB API Reference, BatchGetItem: RequestItems, "a map of
        # one or more table names"): the action is needed on each of them.
        return [Need(f"dynamodb:{operation}", f"arn:aws:dynamodb:{region}:{account}:table/{name}")
                for name in sorted(body.get("RequestItems") or {"": None})]
    if service == "dynamodb":
        # A Query or Scan of an index is authorized on the index's own ARN (DynamoDB Developer Guide, "Using IAM
        # policy conditions for fine-grained access control": table/NAME/index/INDEX).
        table = f"arn:aws:dynamodb:{region}:{account}:table/{body.get('TableName', '')}"
        return [Need(f"dynamodb:{operation}", f"{table}/index/{body['IndexName']}" if body.get("IndexName") else table)]
    if service == "sqs" and operation in ("StartMessageMoveTask", "ListMessageMoveTasks", "CancelMessageMoveTask"):
        return _move_task_needs(operation, body)
    if service == "sqs":
        queue = str(body.get("QueueUrl", "")).rstrip("/").rsplit("/", 1)[-1]
        action = {"DeleteMessageBatch": "DeleteMessage", "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
                  "SendMessageBatch": "SendMessage"}.get(operation, operation)
        return [Need(f"sqs:{action}", f"arn:aws:sqs:{region}:{account}:{queue}")]
    if service == "sns":
        form = request.form
        topic = form.get("TopicArn") or form.get("TargetArn") or ""
        found = [Need(f"sns:{operation}", topic)]
        if operation == "Publish" and topics.get(topic):
            # Publishing to an encrypted topic uses the caller's permissions on its key (SNS developer guide,
            # "Encryption at rest": the publisher needs kms:GenerateDataKey* and kms:Decrypt).
            found += [Need("kms:GenerateDataKey", topics[topic]), Need("kms:Decrypt", topics[topic])]
        return found
    if service == "rekognition":
        found = [Need(f"rekognition:{operation}", "*")]
        s3_object = (body.get("Image") or {}).get("S3Object")
        if s3_object:
            # Rekognition reads the object with the caller's permissions (Rekognition developer guide).
            action = "s3:GetObjectVersion" if s3_object.get("Version") else "s3:GetObject"
            found.append(Need(action, f"arn:aws:s3:::{s3_object.get('Bucket')}/{s3_object.get('Name')}"))
        return found
    if service == "lambda":
        return _lambda_needs(request, account, region, mapping_functions or {})
    if service == "monitoring":  # CloudWatch signs as "monitoring"; its actions are cloudwatch:*, its API RPC v2
        operation = request.path.rsplit("/operation/", 1)[-1] if "/operation/" in request.path else operation
        return [Need(f"cloudwatch:{operation}", "*")]
    if service == "cloudfront":
        match = re.fullmatch(r"/\d{4}-\d{2}-\d{2}/distribution/([^/]+)/invalidation", request.path)
        if match and request.method == "POST":
            return [Need("cloudfront:CreateInvalidation", f"arn:aws:cloudfront::{account}:distribution/{match.group(1)}")]
    return [Need(f"{service}:{operation or request.method + ' ' + request.path}", "*")]


def _stream_of(body: dict[str, Any], account: str, region: str) -> str:
    """The stream a DynamoDB Streams request is about, as IAM names it (table/NAME/stream/LABEL). GetRecords names only
    its shard iterator: AWS's is opaque, the emulator's (moto's) begins with the stream's ARN and a '|'. ListStreams
    names a table, or nothing."""
    if body.get("StreamArn"):
        return str(body["StreamArn"])
    if body.get("ShardIterator"):
        return str(body["ShardIterator"]).split("|", 1)[0]
    if body.get("TableName"):
        return f"arn:aws:dynamodb:{region}:{account}:table/{body['TableName']}/stream/*"
    return "*"


def _move_task_needs(operation: str, body: dict[str, Any]) -> list[Need]:
    """A DLQ redrive needs, on the DLQ, sqs:StartMessageMoveTask with ReceiveMessage, DeleteMessage and
    GetQueueAttributes, and sqs:SendMessage on the queue it moves to (SQS Developer Guide, "Configure queue
    permissions for dead-letter queue redrive")."""
    if operation == "CancelMessageMoveTask":
        try:
            source = json.loads(base64.b64decode(str(body.get("TaskHandle", "")))).get("sourceArn", "")
        except ValueError:
            source = ""
        return [Need("sqs:CancelMessageMoveTask", source)]
    source = str(body.get("SourceArn", ""))
    if operation == "ListMessageMoveTasks":
        return [Need("sqs:ListMessageMoveTasks", source)]
    found = [Need(f"sqs:{action}", source) for action in
             ("StartMessageMoveTask", "ReceiveMessage", "DeleteMessage", "GetQueueAttributes")]
    if body.get("DestinationArn"):
        found.append(Need("sqs:SendMessage", str(body["DestinationArn"])))
    return found


# --- SigV4 ------------------------------------------------------------------------------------------------

def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(("AWS4" + secret).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def _encode(value: str) -> str:
    return quote(value, safe="-_.~")


def _amz_time(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise Refusal(403, "AccessDenied", f"X-Amz-Date {text!r} is not a valid date") from None


def refuse_sigv2(request: Request) -> None:
    if request.headers.get("authorization", "").startswith("AWS ") or (request.has("Signature") and request.has("AWSAccessKeyId")):
        raise Refusal(400, "InvalidRequest", SIGV2_REFUSED)


def verify_presigned(request: Request, identities: dict[str, Identity], now: datetime) -> str:
    """Check a query-string-signed request (a presigned URL) as S3 does; return its access key."""
    refuse_sigv2(request)
    if request.arg("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
        raise Refusal(400, "AuthorizationQueryParametersError", "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"")
    credential = request.arg("X-Amz-Credential") or ""
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise Refusal(400, "AuthorizationQueryParametersError", f"X-Amz-Credential {credential!r} is malformed")
    access_key, date, region, service = parts[:4]
    identity = identities.get(access_key)
    if identity is None:
        raise Refusal(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
    signed_at = _amz_time(request.arg("X-Amz-Date") or "")
    expires = int(request.arg("X-Amz-Expires") or "0")
    if not 1 <= expires <= 604_800:
        raise Refusal(400, "AuthorizationQueryParametersError", "X-Amz-Expires must be between 1 and 604800 seconds")
    if now > signed_at + timedelta(seconds=expires):
        raise Refusal(403, "AccessDenied", "Request has expired")
    signed_headers = (request.arg("X-Amz-SignedHeaders") or "").split(";")
    missing = [h for h in signed_headers if h not in request.headers]
    if missing:
        raise Refusal(403, "AccessDenied", f"There were headers present in the signature that were not sent: {missing}")
    query = sorted((k, v) for k, v in request.query if k != "X-Amz-Signature")
    canonical = "\n".join([
        request.method, request.path, "&".join(f"{_encode(k)}={_encode(v)}" for k, v in query),
        "".join(f"{h}:{' '.join(request.headers[h].split())}\n" for h in signed_headers),
        ";".join(signed_headers), "UNSIGNED-PAYLOAD"])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", request.arg("X-Amz-Date") or "", f"{date}/{region}/{service}/aws4_request",
                         hashlib.sha256(canonical.encode()).hexdigest()])
    expected = hmac.new(signing_key(identity.secret, date, region, service), to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.arg("X-Amz-Signature") or ""):
        raise Refusal(403, "SignatureDoesNotMatch",
                      "The request signature we calculated does not match the signature you provided.")
    return access_key


# AWS refuses a signed request whose X-Amz-Date is more than 15 minutes from its clock (RequestTimeTooSkewed;
# Signature Version 4 signing process, "Elements of an AWS API request signature", Request date).
SKEW = timedelta(minutes=15)
_AUTHORIZATION = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
                            r"SignedHeaders=([a-z0-9;\-]+),\s*Signature=([0-9a-f]{64})$")


def verify_signed_headers(request: Request, identities: dict[str, Identity], now: datetime) -> str:
    """Check a header-signed request (Authorization: AWS4-HMAC-SHA256 ...) as AWS does; return its access key. The
    signature proves the caller holds the key's secret, so an access key alone, read or guessed, is nobody's. The
    canonical request is SigV4's (IAM User Guide, "Create a signed AWS API request"): the path as sent for S3, encoded
    once more for the other services (their signers encode it again), the query sorted and encoded, the signed
    headers, and the payload hash the request states (x-amz-content-sha256) or the body's."""
    found = _AUTHORIZATION.match(request.headers.get("authorization", "").strip())
    if found is None:
        raise Refusal(400, "InvalidRequest", "the Authorization header is not a Signature Version 4 one")
    access_key, date, region, service, signed, signature = found.groups()
    identity = identities.get(access_key)
    if identity is None:
        raise Refusal(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
    amz_date = request.headers.get("x-amz-date", "")
    if abs(now - _amz_time(amz_date)) > SKEW:
        raise Refusal(403, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large.")
    signed_headers = signed.split(";")
    missing = [h for h in signed_headers if h not in request.headers]
    if missing:
        raise Refusal(403, "AccessDenied", f"There were headers present in the signature that were not sent: {missing}")
    query = "&".join(sorted(f"{_encode(k)}={_encode(v)}" for k, v in request.query))
    headers = "".join(f"{h}:{' '.join(request.headers[h].split())}\n" for h in signed_headers)
    payload = request.headers.get("x-amz-content-sha256") or hashlib.sha256(request.body).hexdigest()
    key = signing_key(identity.secret, date, region, service)
    paths = {request.path, quote(request.path, safe="/~")}
    for path in paths:
        canonical = "\n".join([request.method, path, query, headers, signed, payload])
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, f"{date}/{region}/{service}/aws4_request",
                              hashlib.sha256(canonical.encode()).hexdigest()])
        if hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), signature):
            return access_key
    raise Refusal(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")


def verify_post_policy(fields: dict[str, str], bucket: str, file_size: int, identities: dict[str, Identity],
                       now: datetime) -> str:
    """Check a browser-form POST (a presigned POST) as S3 does; return its access key (S3 API reference,
    "Browser-based uploads using POST": signature, expiration, and every condition; every form field but
    x-amz-signature, file, policy and x-ignore-* must be covered by a condition)."""
    lower = {k.lower(): v for k, v in fields.items()}
    if "awsaccesskeyid" in lower or "signature" in lower:
        raise Refusal(400, "InvalidRequest", SIGV2_REFUSED)
    if lower.get("x-amz-algorithm") != "AWS4-HMAC-SHA256":
        raise Refusal(400, "InvalidRequest", "x-amz-algorithm must be AWS4-HMAC-SHA256")
    parts = lower.get("x-amz-credential", "").split("/")
    if len(parts) != 5:
        raise Refusal(400, "InvalidRequest", "x-amz-credential is malformed")
    access_key, date, region, service = parts[:4]
    identity = identities.get(access_key)
    if identity is None:
        raise Refusal(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
    encoded = lower.get("policy", "")
    expected = hmac.new(signing_key(identity.secret, date, region, service), encoded.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, lower.get("x-amz-signature", "")):
        raise Refusal(403, "SignatureDoesNotMatch",
                      "The request signature we calculated does not match the signature you provided.")
    try:
        policy = json.loads(base64.b64decode(encoded))
        expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError):
        raise Refusal(400, "InvalidPolicyDocument", "Invalid Policy: Invalid JSON.") from None
    if now > expiration:
        raise Refusal(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
    values = {**lower, "bucket": bucket}
    covered = {"bucket"}
    for condition in policy.get("conditions", []):
        if isinstance(condition, dict):
            [(name, wanted)] = condition.items()
            operator, name = "eq", name.lower()
        elif isinstance(condition, list) and len(condition) == 3 and condition[0] == "content-length-range":
            if not int(condition[1]) <= file_size <= int(condition[2]):
                raise Refusal(400, "EntityTooLarge" if file_size > int(condition[2]) else "EntityTooSmall",
                              "Your proposed upload exceeds the maximum allowed size" if file_size > int(condition[2])
                              else "Your proposed upload is smaller than the minimum allowed size")
            continue
        elif isinstance(condition, list) and len(condition) == 3:
            operator, name, wanted = condition[0].lower(), str(condition[1]).lstrip("$").lower(), condition[2]
        else:
            raise Refusal(400, "InvalidPolicyDocument", f"Invalid Policy: Invalid Condition {condition!r}")
        covered.add(name)
        actual = values.get(name, "")
        if not ((operator == "eq" and actual == wanted) or (operator == "starts-with" and actual.startswith(wanted))):
            raise Refusal(403, "AccessDenied",
                          f"Invalid according to Policy: Policy Condition failed: [\"{operator}\", \"${name}\", \"{wanted}\"]")
    extra = [k for k in lower if k not in covered and k not in ("x-amz-signature", "file", "policy")
             and not k.startswith("x-ignore-")]
    if extra:
        raise Refusal(403, "AccessDenied",
                      f"Invalid according to Policy: Extra input fields: {', '.join(sorted(extra))}")
    return access_key


# --- judging ----------------------------------------------------------------------------------------------

@dataclass
class Authorizer:
    account: str
    region: str
    identities: dict[str, Identity] = field(default_factory=dict)
    bucket_policies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    topics: dict[str, str] = field(default_factory=dict)  # topic ARN -> KMS key ARN

    def configure(self, document: dict[str, Any]) -> None:
        self.identities = {key: Identity(v["name"], v["secret"], v.get("statements"), v.get("principal_arn"))
                           for key, v in document["identities"].items()}
        self.bucket_policies = document.get("bucket_policies", {})
        self.topics = document.get("topics", {})

    def judge(self, identity: Identity, wanted: list[Need]) -> None:
        """Raise a Refusal unless every need is allowed (identity policy, then bucket policies' Denies)."""
        for need in wanted:
            bucket = need.resource.removeprefix("arn:aws:s3:::").split("/")[0] if need.resource.startswith("arn:aws:s3:::") else None
            # Every signed request carries its principal's ARN (IAM User Guide, global condition keys, aws:PrincipalArn).
            context = {"aws:SecureTransport": "true", **({"aws:PrincipalArn": identity.principal_arn}
                                                         if identity.principal_arn else {}), **need.context}
            judged = Need(need.action, need.resource, context)
            if bucket and decide(public_statements(self.bucket_policies.get(bucket, [])), judged) == "deny":
                raise Refusal(403, "AccessDenied", f"{need.action} on {need.resource} is denied by the bucket policy")
            if identity.restricted and decide(identity.statements or [], judged) != "allow":
                raise Refusal(403, "AccessDenied",
                              f"User: {identity.name} is not authorized to perform: {need.action} on resource: {need.resource}")

    def may_list(self, identity: Identity, bucket: str) -> bool:
        """Whether a 404 may say the key is missing: the caller holds s3:ListBucket on the bucket itself."""
        return not identity.restricted or decide(identity.statements or [], Need("s3:ListBucket", f"arn:aws:s3:::{bucket}")) == "allow"
