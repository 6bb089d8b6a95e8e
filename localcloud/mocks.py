"""Pulumi mocks that make each declared resource real in the emulator.

The outputs are the same ones the unit tests' mocks compute (localcloud/outputs.py);
this class only adds the boto3 call that creates the resource in moto. Lambda
functions, layers and event source mappings are recorded, not sent: moto runs
Lambda only in Docker, so the local cloud runs them itself (pollers.py).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3

from localcloud.outputs import PROVIDERS, UnknownResourceType
from localcloud.program import RecordingMocks

RECORDED_ONLY = {
    # S3 Inventory: the emulator makes no inventory lists; `ops backfill --manifest` reads one written by hand.
    "aws:s3/inventory:Inventory",
    # CloudFront's standard logs: nothing is served locally, so nothing is delivered.
    "aws:cloudwatch/logDeliverySource:LogDeliverySource",
    "aws:cloudwatch/logDeliveryDestination:LogDeliveryDestination",
    "aws:cloudwatch/logDelivery:LogDelivery",
    "aws:lambda/function:Function",
    "aws:lambda/layerVersion:LayerVersion",
    "aws:lambda/eventSourceMapping:EventSourceMapping",
    # Served locally by localcloud/api.py (the upload API) or not at all (CloudFront: records carry its URLs).
    "aws:lambda/functionUrl:FunctionUrl",
    "aws:lambda/permission:Permission",
    "aws:apigatewayv2/api:Api",
    "aws:apigatewayv2/authorizer:Authorizer",
    "aws:apigatewayv2/integration:Integration",
    "aws:apigatewayv2/route:Route",
    "aws:apigatewayv2/stage:Stage",
    "aws:cloudfront/originAccessControl:OriginAccessControl",
    "aws:cloudfront/cachePolicy:CachePolicy",
    "aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy",
    "aws:cloudfront/distribution:Distribution",
    # A domain of one's own: its certificate, DNS records and API Gateway domain. Nothing local answers on it.
    "aws:acm/certificate:Certificate",
    "aws:acm/certificateValidation:CertificateValidation",
    "aws:route53/record:Record",
    "aws:apigatewayv2/domainName:DomainName",
    "aws:apigatewayv2/apiMapping:ApiMapping",
}


def pascal(value: Any) -> Any:
    """Pulumi's camelCase inputs -> the API's PascalCase shapes (ids upper-cased, floats that are whole -> int)."""
    if isinstance(value, dict):
        return {("ID" if key == "id" else key[:1].upper() + key[1:]): pascal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [pascal(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class CloudMocks(RecordingMocks):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.clients: dict[str, Any] = {}
        # What the emulator could not apply as declared, said out loud rather than hidden.
        self.gaps: list[str] = []
        self.creators: dict[str, Callable[[str, dict[str, Any], dict[str, Any]], dict[str, Any] | None]] = {
            "aws:s3/bucket:Bucket": self._bucket,
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": self._public_access_block,
            "aws:s3/bucketOwnershipControls:BucketOwnershipControls": self._ownership,
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": self._encryption,
            "aws:s3/bucketVersioning:BucketVersioning": self._versioning,
            "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": self._lifecycle,
            "aws:s3/bucketPolicy:BucketPolicy": self._bucket_policy,
            "aws:s3/bucketNotification:BucketNotification": self._notification,
            "aws:s3/bucketLogging:BucketLogging": self._logging,
            "aws:s3/bucketCorsConfiguration:BucketCorsConfiguration": self._cors,
            "aws:sqs/queue:Queue": self._queue,
            "aws:sqs/queuePolicy:QueuePolicy": self._queue_policy,
            "aws:sns/topic:Topic": self._topic,
            "aws:sns/topicPolicy:TopicPolicy": self._topic_policy,
            "aws:sns/topicSubscription:TopicSubscription": self._subscription,
            "aws:dynamodb/table:Table": self._table,
            "aws:cloudwatch/eventBus:EventBus": self._event_bus,
            "aws:kms/key:Key": self._key,
            "aws:iam/role:Role": self._role,
            "aws:iam/policy:Policy": self._policy,
            "aws:iam/rolePolicy:RolePolicy": self._role_policy,
            "aws:iam/rolePolicyAttachment:RolePolicyAttachment": self._role_policy_attachment,
            "aws:cloudwatch/logGroup:LogGroup": self._log_group,
            "aws:cloudwatch/metricAlarm:MetricAlarm": self._alarm,
            "aws:cloudwatch/dashboard:Dashboard": self._dashboard,
        }
        missing = set(PROVIDERS) - set(self.creators) - RECORDED_ONLY
        assert not missing, f"outputs.py knows types the local cloud cannot create: {sorted(missing)}"

    def aws(self, service: str) -> Any:
        if service not in self.clients:
            # The local cloud's own credentials and endpoints (the environment LocalCloud.start set), read now: boto3's
            # default session keeps the credentials of its first client, whoever made it (a test's fake ones).
            self.clients[service] = boto3.session.Session().client(service, region_name=self.context.region)
        return self.clients[service]

    def create(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        resource_id, state = super().create(typ, name, inputs)
        if typ in RECORDED_ONLY:
            return resource_id, state
        creator = self.creators.get(typ)
        if creator is None:
            raise UnknownResourceType(typ)
        overrides = creator(name, inputs, state)
        if overrides:
            state.update(overrides)
            resource_id = overrides.get("id", resource_id)
        return resource_id, state

    # Each creator takes the logical name, the inputs (camelCase) and the outputs computed so far; it returns
    # outputs to add, or None.

    def _bucket(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        self.aws("s3").create_bucket(Bucket=o["bucket"])

    def _ownership(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        self.aws("s3").put_bucket_ownership_controls(Bucket=i["bucket"], OwnershipControls={"Rules": [pascal(i["rule"])]})

    def _encryption(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        self.aws("s3").put_bucket_encryption(Bucket=i["bucket"], ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": r["applyServerSideEncryptionByDefault"]["sseAlgorithm"]},
             "BucketKeyEnabled": bool(r.get("bucketKeyEnabled"))} for r in i["rules"]]})

    def _versioning(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        self.aws("s3").put_bucket_versioning(
            Bucket=i["bucket"], VersioningConfiguration={"Status": i["versioningConfiguration"]["status"]})

    def _lifecycle(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        rules = []
        for rule in i["rules"]:
            # A tag filter is a map in Pulumi and a list of {Key, Value} in the API (whose keys keep their case).
            tags = (rule.get("filter", {}).get("and") or {}).get("tags")
            shaped = pascal({k: v for k, v in rule.items() if k != "filter"})
            if tags:
                shaped["Filter"] = {"And": {**pascal({k: v for k, v in rule["filter"]["and"].items() if k != "tags"}),
                                            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}}
            elif "filter" in rule:
                shaped["Filter"] = pascal(rule["filter"])
            rules.append(shaped)
        self.aws("s3").put_bucket_lifecycle_configuration(Bucket=i["bucket"], LifecycleConfiguration={"Rules": rules})

    def _logging(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        self.aws("s3").put_bucket_logging(Bucket=i["bucket"], BucketLoggingStatus={"LoggingEnabled": {
            "TargetBucket": i["targetBucket"], "TargetPrefix": i["targetPrefix"]}})

    def _cors(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        self.aws("s3").put_bucket_cors(Bucket=i["bucket"], CORSConfiguration={"CORSRules": pascal(i["corsRules"])})

    def _queue_policy(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        self.aws("sqs").set_queue_attributes(QueueUrl=i["queueUrl"], Attributes={"Policy": i["policy"]})

    def _topic(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        self.aws("sns").create_topic(
            Name=o["name"], Attributes={"KmsMasterKeyId": i["kmsMasterKeyId"]} if i.get("kmsMasterKeyId") else {})

    def _topic_policy(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        self.aws("sns").set_topic_attributes(TopicArn=i["arn"], AttributeName="Policy", AttributeValue=i["policy"])

    def _role(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        self.aws("iam").create_role(RoleName=o["name"], AssumeRolePolicyDocument=i["assumeRolePolicy"])

    def _policy(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        self.aws("iam").create_policy(PolicyName=o["name"], PolicyDocument=i["policy"], Description=i.get("description", ""))

    def _role_policy(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        self.aws("iam").put_role_policy(RoleName=i["role"], PolicyName=name, PolicyDocument=i["policy"])

    def _role_policy_attachment(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        self.aws("iam").attach_role_policy(RoleName=i["role"], PolicyArn=i["policyArn"])

    def _dashboard(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        self.aws("cloudwatch").put_dashboard(DashboardName=i["dashboardName"], DashboardBody=i["dashboardBody"])

    def _public_access_block(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        self.aws("s3").put_public_access_block(Bucket=i["bucket"], PublicAccessBlockConfiguration={
            flag[:1].upper() + flag[1:]: bool(i.get(flag)) for flag in flags})

    def _bucket_policy(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        """moto judges any statement whose condition it cannot evaluate as a Deny, so it gets no conditional Deny and
        only the grants of Allow statements (S3 checks them, for access logs, when logging is switched on); the
        emulator's authorizer judges the whole declared policy instead (localcloud/authorizer.py). The TLS-only
        statement is judged as met there: the emulator speaks plain HTTP on loopback."""
        policy = json.loads(i["policy"])
        if any(key.lower() == "aws:securetransport" for s in policy["Statement"]
               for condition in s.get("Condition", {}).values() for key in condition):
            self.gaps.append(f"{i['bucket']}: TLS-only statement judged as met (the emulator speaks plain HTTP on loopback)")
        kept = [{k: v for k, v in s.items() if k != "Condition"} for s in policy["Statement"] if s["Effect"] == "Allow"]
        if kept:
            self.aws("s3").put_bucket_policy(Bucket=i["bucket"], Policy=json.dumps({**policy, "Statement": kept}))

    def _notification(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        queues = [{"QueueArn": q["queueArn"], "Events": q["events"],
                   **({"Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": q["filterPrefix"]}]}}}
                      if q.get("filterPrefix") else {})} for q in i.get("queues", [])]
        self.aws("s3").put_bucket_notification_configuration(
            Bucket=i["bucket"], NotificationConfiguration={"QueueConfigurations": queues})

    def _queue(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> dict[str, Any]:
        attributes = {"VisibilityTimeout": i.get("visibilityTimeoutSeconds"),
                      "MessageRetentionPeriod": i.get("messageRetentionSeconds"),
                      "RedrivePolicy": i.get("redrivePolicy"),
                      "SqsManagedSseEnabled": "true" if i.get("sqsManagedSseEnabled") else None}
        attributes = {k: str(int(v)) if isinstance(v, float) else str(v) for k, v in attributes.items() if v is not None}
        self.aws("sqs").create_queue(QueueName=o["name"], Attributes=attributes)
        return {}

    def _subscription(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> dict[str, Any]:
        attributes = {}
        if i.get("rawMessageDelivery"):
            attributes["RawMessageDelivery"] = "true"
        if i.get("filterPolicy"):
            attributes["FilterPolicy"] = i["filterPolicy"]
            attributes["FilterPolicyScope"] = i.get("filterPolicyScope", "MessageAttributes")
        arn = self.aws("sns").subscribe(TopicArn=i["topic"], Protocol=i["protocol"], Endpoint=i["endpoint"],
                                        Attributes=attributes, ReturnSubscriptionArn=True)["SubscriptionArn"]
        return {"id": arn, "arn": arn}

    def _event_bus(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        self.aws("events").create_event_bus(Name=o["name"])

    def _table(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> dict[str, Any]:
        indexes = [{"IndexName": g["name"],
                    "KeySchema": [{"AttributeName": k["attributeName"], "KeyType": k["keyType"]} for k in g["keySchemas"]],
                    "Projection": {"ProjectionType": g["projectionType"],
                                   **({"NonKeyAttributes": g["nonKeyAttributes"]} if g.get("nonKeyAttributes") else {})}}
                   for g in i.get("globalSecondaryIndexes", [])]
        created = self.aws("dynamodb").create_table(
            TableName=o["name"], BillingMode=i.get("billingMode", "PAY_PER_REQUEST"),
            KeySchema=[{"AttributeName": i["hashKey"], "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": a["name"], "AttributeType": a["type"]} for a in i["attributes"]],
            **({"GlobalSecondaryIndexes": indexes} if indexes else {}),
            **({"StreamSpecification": {"StreamEnabled": True, "StreamViewType": i["streamViewType"]}}
               if i.get("streamEnabled") else {}),
            SSESpecification={"Enabled": bool(i.get("serverSideEncryption", {}).get("enabled"))})["TableDescription"]
        if i.get("ttl", {}).get("enabled"):
            self.aws("dynamodb").update_time_to_live(TableName=o["name"], TimeToLiveSpecification={
                "AttributeName": i["ttl"]["attributeName"], "Enabled": True})
        if i.get("pointInTimeRecovery", {}).get("enabled"):
            self.aws("dynamodb").update_continuous_backups(
                TableName=o["name"], PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
        # The stream's ARN carries the label the emulator gave it (the time it was turned on), as DynamoDB's does.
        return {"streamArn": created["LatestStreamArn"], "streamLabel": created["LatestStreamLabel"]} if i.get("streamEnabled") else {}

    def _key(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> dict[str, Any]:
        metadata = self.aws("kms").create_key(Description=i.get("description", name), Policy=i["policy"])["KeyMetadata"]
        return {"id": metadata["KeyId"], "keyId": metadata["KeyId"], "arn": metadata["Arn"]}

    def _log_group(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        self.aws("logs").create_log_group(logGroupName=o["name"])
        if i.get("retentionInDays"):
            self.aws("logs").put_retention_policy(logGroupName=o["name"], retentionInDays=int(i["retentionInDays"]))

    def _alarm(self, name: str, i: dict[str, Any], o: dict[str, Any]) -> None:
        self.aws("cloudwatch").put_metric_alarm(
            AlarmName=o["name"], AlarmDescription=i.get("alarmDescription", ""), Namespace=i["namespace"],
            MetricName=i["metricName"], Dimensions=[{"Name": k, "Value": v} for k, v in i.get("dimensions", {}).items()],
            Statistic=i["statistic"], Period=int(i["period"]), EvaluationPeriods=int(i["evaluationPeriods"]),
            Threshold=float(i["threshold"]), ComparisonOperator=i["comparisonOperator"],
            TreatMissingData=i.get("treatMissingData", "missing"), AlarmActions=i.get("alarmActions", []),
            OKActions=i.get("okActions", []))

