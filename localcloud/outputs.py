"""What the AWS provider would return for each resource the program declares.

Shared by the unit tests' mocks and the local cloud's mocks, so both see the
same ids, names, ARNs and URLs. A type not listed here is an error that names
it: a new resource must be taught to the mocks, never silently skipped.
"""
from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"


class UnknownResourceType(KeyError):
    def __str__(self) -> str:
        return f"the local cloud does not know the resource type {self.args[0]!r}; teach localcloud/outputs.py about it"


@dataclass(frozen=True)
class Context:
    account: str = ACCOUNT_ID
    region: str = REGION


def physical_name(logical: str, inputs: dict[str, Any], key: str = "name", lower: bool = False) -> str:
    """The provider's autoname: the logical name plus a short stable suffix, unless a name was given."""
    given = inputs.get(key)
    if given:
        return given
    suffix = hashlib.sha256(logical.encode()).hexdigest()[:7]
    name = f"{logical}-{suffix}"
    return name.lower() if lower else name


def _bucket(name, inputs, c):
    bucket = physical_name(name, inputs, "bucket", lower=True)
    return bucket, {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}", "region": c.region,
                    "bucketDomainName": f"{bucket}.s3.amazonaws.com",
                    "bucketRegionalDomainName": f"{bucket}.s3.{c.region}.amazonaws.com"}


def _queue(name, inputs, c):
    queue = physical_name(name, inputs)
    url = f"https://sqs.{c.region}.amazonaws.com/{c.account}/{queue}"
    return url, {"name": queue, "url": url, "arn": f"arn:aws:sqs:{c.region}:{c.account}:{queue}"}


def _topic(name, inputs, c):
    topic = physical_name(name, inputs)
    arn = f"arn:aws:sns:{c.region}:{c.account}:{topic}"
    return arn, {"name": topic, "arn": arn}


def _subscription(name, inputs, c):
    arn = f"{inputs.get('topic', 'arn:aws:sns:::topic')}:{uuid.uuid5(uuid.NAMESPACE_URL, name)}"
    return arn, {"arn": arn}


# The label DynamoDB gives a stream is the time it was turned on; the local cloud's emulator answers with its own.
STREAM_LABEL = "2026-01-01T00:00:00.000"


def _table(name, inputs, c):
    table = physical_name(name, inputs)
    arn = f"arn:aws:dynamodb:{c.region}:{c.account}:table/{table}"
    stream = {"streamArn": f"{arn}/stream/{STREAM_LABEL}", "streamLabel": STREAM_LABEL} if inputs.get("streamEnabled") else {}
    return table, {"name": table, "arn": arn, **stream}


def _event_bus(name, inputs, c):
    bus = physical_name(name, inputs)
    return bus, {"name": bus, "arn": f"arn:aws:events:{c.region}:{c.account}:event-bus/{bus}"}


def _function(name, inputs, c):
    fn = physical_name(name, inputs)
    arn = f"arn:aws:lambda:{c.region}:{c.account}:function:{fn}"
    return fn, {"name": fn, "arn": arn, "qualifiedArn": f"{arn}:$LATEST", "version": "$LATEST",
                "invokeArn": f"arn:aws:apigateway:{c.region}:lambda:path/2015-03-31/functions/{arn}/invocations"}


def _layer(name, inputs, c):
    layer = inputs.get("layerName") or physical_name(name, inputs)
    layer_arn = f"arn:aws:lambda:{c.region}:{c.account}:layer:{layer}"
    return f"{layer_arn}:1", {"arn": f"{layer_arn}:1", "layerArn": layer_arn, "version": "1"}


def _mapping(name, inputs, c):
    mapping = str(uuid.uuid5(uuid.NAMESPACE_URL, name))
    return mapping, {"uuid": mapping, "functionArn": inputs.get("functionName"), "state": "Enabled",
                     "arn": f"arn:aws:lambda:{c.region}:{c.account}:event-source-mapping:{mapping}"}


def _policy(name, inputs, c):
    policy = physical_name(name, inputs)
    arn = f"arn:aws:iam::{c.account}:policy/{policy}"
    return arn, {"name": policy, "arn": arn, "policyId": "ANPA" + hashlib.sha256(policy.encode()).hexdigest()[:17].upper()}


def _role(name, inputs, c):
    role = physical_name(name, inputs)
    return role, {"name": role, "arn": f"arn:aws:iam::{c.account}:role/{role}",
                  "uniqueId": "AROA" + hashlib.sha256(role.encode()).hexdigest()[:17].upper()}


def _log_group(name, inputs, c):
    group = physical_name(name, inputs)
    return group, {"name": group, "arn": f"arn:aws:logs:{c.region}:{c.account}:log-group:{group}"}


def _alarm(name, inputs, c):
    alarm = physical_name(name, inputs)
    return alarm, {"name": alarm, "arn": f"arn:aws:cloudwatch:{c.region}:{c.account}:alarm:{alarm}"}


def _dashboard(name, inputs, c):
    dashboard = inputs.get("dashboardName") or physical_name(name, inputs)
    return dashboard, {"dashboardArn": f"arn:aws:cloudwatch::{c.account}:dashboard/{dashboard}"}


def _key(name, inputs, c):
    key_id = str(uuid.uuid5(uuid.NAMESPACE_URL, name))
    return key_id, {"keyId": key_id, "arn": f"arn:aws:kms:{c.region}:{c.account}:key/{key_id}"}


def _by(field: str) -> Callable[[str, dict[str, Any], Context], tuple[str, dict[str, Any]]]:
    """Resources whose id is one of their inputs (policies and settings attached to something)."""
    return lambda name, inputs, c: (str(inputs.get(field) or name), {})


PROVIDERS: dict[str, Callable[[str, dict[str, Any], Context], tuple[str, dict[str, Any]]]] = {
    "aws:s3/bucket:Bucket": _bucket,
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": _by("bucket"),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": _by("bucket"),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": _by("bucket"),
    "aws:s3/bucketVersioning:BucketVersioning": _by("bucket"),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": _by("bucket"),
    "aws:s3/bucketPolicy:BucketPolicy": _by("bucket"),
    "aws:s3/bucketNotification:BucketNotification": _by("bucket"),
    "aws:s3/bucketLogging:BucketLogging": _by("bucket"),
    "aws:s3/bucketCorsConfiguration:BucketCorsConfiguration": _by("bucket"),
    "aws:s3/inventory:Inventory": _by("bucket"),
    "aws:sqs/queue:Queue": _queue,
    "aws:sqs/queuePolicy:QueuePolicy": _by("queueUrl"),
    "aws:sns/topic:Topic": _topic,
    "aws:sns/topicPolicy:TopicPolicy": _by("arn"),
    "aws:sns/topicSubscription:TopicSubscription": _subscription,
    "aws:dynamodb/table:Table": _table,
    "aws:cloudwatch/eventBus:EventBus": _event_bus,
    "aws:kms/key:Key": _key,
    "aws:lambda/function:Function": _function,
    "aws:lambda/layerVersion:LayerVersion": _layer,
    "aws:lambda/eventSourceMapping:EventSourceMapping": _mapping,
    "aws:iam/role:Role": _role,
    "aws:iam/policy:Policy": _policy,
    "aws:iam/rolePolicy:RolePolicy": lambda name, inputs, c: (f"{inputs.get('role')}:{name}", {"name": name}),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": lambda name, inputs, c: (f"{inputs.get('role')}-{name}", {}),
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
    "aws:cloudwatch/metricAlarm:MetricAlarm": _alarm,
    "aws:cloudwatch/dashboard:Dashboard": _dashboard,
}


def resource_outputs(typ: str, name: str, inputs: dict[str, Any], context: Context = Context()) -> tuple[str, dict[str, Any]]:
    """(id, state) for a custom resource: its inputs plus what the provider computes."""
    try:
        provider = PROVIDERS[typ]
    except KeyError:
        raise UnknownResourceType(typ) from None
    resource_id, computed = provider(name, inputs, context)
    return resource_id, {**inputs, **computed}


def call_outputs(token: str, context: Context = Context(), args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Results of the provider functions the program calls."""
    args = args or {}
    if token == "aws:index/getCallerIdentity:getCallerIdentity":
        return {"accountId": context.account, "arn": f"arn:aws:iam::{context.account}:user/local",
                "id": context.account, "userId": "AIDALOCAL"}
    if token == "aws:index/getRegion:getRegion":
        return {"name": context.region, "region": context.region, "id": context.region,
                "description": context.region, "endpoint": f"ec2.{context.region}.amazonaws.com"}
    if token == "aws:index/getPartition:getPartition":
        return {"partition": PARTITION, "dnsSuffix": "amazonaws.com", "id": PARTITION,
                "reverseDnsPrefix": "com.amazonaws"}
    if token == "aws:ssm/getParameter:getParameter":
        return {"name": args.get("name", ""), "type": "String", "value": _public_parameter(args.get("name", ""), context),
                "version": 1, "id": args.get("name", "")}
    raise UnknownResourceType(token)


def _public_parameter(name: str, context: Context) -> str:
    """The value AWS publishes for the public parameters the program reads (the Powertools layer's ARN).
    The layer's own version number is AWS's; 1 stands in for it."""
    match = re.fullmatch(r"/aws/service/powertools/python/(arm64|x86_64)/python3\.(\d+)/[0-9.]+", name)
    if not match:
        raise UnknownResourceType(f"aws:ssm/getParameter {name}")
    architecture, minor = match.groups()
    return (f"arn:{PARTITION}:lambda:{context.region}:017000801446:layer:"
            f"AWSLambdaPowertoolsPythonV3-python3{minor}-{architecture}:1")


def _distribution(name, inputs, c):
    distribution = hashlib.sha256(name.encode()).hexdigest()[:14].upper()
    return distribution, {"arn": f"arn:aws:cloudfront::{c.account}:distribution/{distribution}",
                          "domainName": f"d{distribution.lower()}.cloudfront.net", "hostedZoneId": "Z2FDTNDATAQYW2",
                          "status": "Deployed"}


def _function_url(name, inputs, c):
    url_id = hashlib.sha256(name.encode()).hexdigest()[:32]
    return url_id, {"functionUrl": f"https://{url_id}.lambda-url.{c.region}.on.aws/", "urlId": url_id}


def _http_api(name, inputs, c):
    api = hashlib.sha256(name.encode()).hexdigest()[:10]
    return api, {"apiEndpoint": f"https://{api}.execute-api.{c.region}.amazonaws.com",
                 "executionArn": f"arn:aws:execute-api:{c.region}:{c.account}:{api}",
                 "arn": f"arn:aws:apigateway:{c.region}::/apis/{api}"}


def _api_stage(name, inputs, c):
    return str(inputs.get("name", "$default")), {
        "invokeUrl": f"https://{inputs.get('apiId')}.execute-api.{c.region}.amazonaws.com/"}


def _delivery(kind: str) -> Callable[[str, dict[str, Any], Context], tuple[str, dict[str, Any]]]:
    """CloudWatch Logs' delivery sources, destinations and deliveries (CloudFront's standard logs), in their region."""
    def outputs(name, inputs, c):
        given = physical_name(name, inputs)
        region = inputs.get("region") or c.region
        return given, {"name": given, "arn": f"arn:aws:logs:{region}:{c.account}:{kind}:{given}", "region": region}
    return outputs


def _certificate(name, inputs, c):
    """An ACM certificate asking for DNS validation: ACM names one CNAME per domain (its values are ACM's own)."""
    token = hashlib.sha256(name.encode()).hexdigest()
    region = inputs.get("region") or c.region
    arn = f"arn:aws:acm:{region}:{c.account}:certificate/{uuid.uuid5(uuid.NAMESPACE_URL, name)}"
    domain = inputs.get("domainName", "")
    return arn, {"arn": arn, "region": region, "status": "PENDING_VALIDATION", "domainValidationOptions": [{
        "domainName": domain, "resourceRecordName": f"_{token[:32]}.{domain}.", "resourceRecordType": "CNAME",
        "resourceRecordValue": f"_{token[32:64]}.xlfgrmvvlj.acm-validations.aws."}]}


def _record(name, inputs, c):
    fqdn = str(inputs.get("name", "")).rstrip(".")
    return f"{inputs.get('zoneId')}_{fqdn}_{inputs.get('type')}", {"fqdn": fqdn}


def _api_domain(name, inputs, c):
    """A Regional API Gateway domain: its target host and the Region's API Gateway hosted zone (us-east-1's here)."""
    target = f"d-{hashlib.sha256(name.encode()).hexdigest()[:10]}.execute-api.{c.region}.amazonaws.com"
    configuration = {**inputs.get("domainNameConfiguration", {}), "targetDomainName": target,
                     "hostedZoneId": "Z1UJRXOUMOOFQ8"}
    return inputs.get("domainName", name), {"domainNameConfiguration": configuration,
                                             "arn": f"arn:aws:apigateway:{c.region}::/domainnames/{inputs.get('domainName')}"}


PROVIDERS.update({
    "aws:acm/certificate:Certificate": _certificate,
    "aws:acm/certificateValidation:CertificateValidation": lambda n, i, c: (i.get("certificateArn", n), {}),
    "aws:route53/record:Record": _record,
    "aws:apigatewayv2/domainName:DomainName": _api_domain,
    "aws:apigatewayv2/apiMapping:ApiMapping": lambda n, i, c: (hashlib.sha256(n.encode()).hexdigest()[:6], {}),
    "aws:cloudfront/originAccessControl:OriginAccessControl": lambda n, i, c: (hashlib.sha256(n.encode()).hexdigest()[:14].upper(), {"etag": "E1"}),
    "aws:cloudfront/cachePolicy:CachePolicy": lambda n, i, c: (str(uuid.uuid5(uuid.NAMESPACE_URL, n)), {"etag": "E1"}),
    "aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy": lambda n, i, c: (str(uuid.uuid5(uuid.NAMESPACE_URL, n)), {"etag": "E1"}),
    "aws:cloudfront/distribution:Distribution": _distribution,
    "aws:lambda/functionUrl:FunctionUrl": _function_url,
    "aws:lambda/permission:Permission": lambda n, i, c: (n, {}),
    "aws:apigatewayv2/api:Api": _http_api,
    "aws:apigatewayv2/authorizer:Authorizer": lambda n, i, c: (hashlib.sha256(n.encode()).hexdigest()[:6], {}),
    "aws:apigatewayv2/integration:Integration": lambda n, i, c: (hashlib.sha256(n.encode()).hexdigest()[:7], {}),
    "aws:apigatewayv2/route:Route": lambda n, i, c: (hashlib.sha256(n.encode()).hexdigest()[:7], {}),
    "aws:apigatewayv2/stage:Stage": _api_stage,
    "aws:cloudwatch/logDeliverySource:LogDeliverySource": _delivery("delivery-source"),
    "aws:cloudwatch/logDeliveryDestination:LogDeliveryDestination": _delivery("delivery-destination"),
    "aws:cloudwatch/logDelivery:LogDelivery": _delivery("delivery"),
})
