"""The pipeline's edges, each switched on by config: an upload API that hands out one-use presigned
uploads, and CloudFront in front of the thumbnails bucket."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from handlers.names import PROJECT, THUMBNAILS_PREFIX, Function, UploadApiKind
from handlers.upload_api import QUOTA_EXPIRY, QUOTA_KEY
from infra import iam, links, policies
from infra.settings import Settings
from infra.worker import Layers, build_function, log_group_name

YEAR = 31_536_000
# The distribution's one origin (a label inside its configuration: changing it would update every distribution).
ORIGIN_ID = "thumbnails"
UPLOAD_API_MEMORY, UPLOAD_API_TIMEOUT = 256, 10
UPLOAD_ROUTE = "POST /uploads"  # a grant
STATUS_ROUTE = "GET /uploads/{id}"  # the caller's own upload (handlers/upload_status.py)
# What a browser's preflight must be allowed to send to the API.
API_CORS_HEADERS = ["authorization", "content-type", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"]


@dataclass(frozen=True)
class CustomDomain:
    """A domain of the user's that an edge answers on: its Route 53 zone, if the stack may write there, and the
    certificate the user manages, if any (otherwise the stack requests one)."""

    name: str
    zone_id: str | None = None
    certificate_arn: str | None = None


class Certified:
    """`domain`'s certificate, usable once `arn` resolves: the user's own, or one the stack requests from ACM in
    `region` (None: the stack's) and validates by DNS. With a zone the validation record goes there; without one
    `records` lists what the user's DNS needs, and `pulumi up` shows it as a warning as soon as ACM names it, then
    waits for ACM to see it (aws.acm.CertificateValidation, up to its 75-minute create timeout: the AWS provider's
    acm/certificate_validation.go; an `up` that times out is run again once the record is there, and keeps the same
    certificate)."""

    def __init__(self, name: str, domain: CustomDomain, region: str | None, parent: pulumi.Resource):
        child = pulumi.ResourceOptions(parent=parent)
        self.domain = domain
        self.records: list[pulumi.Output[dict[str, str]]] = []
        if domain.certificate_arn:
            self.arn: pulumi.Input[str] = domain.certificate_arn
            return
        certificate = aws.acm.Certificate(f"{name}-certificate", domain_name=domain.name, validation_method="DNS",
                                          region=region, opts=child)
        # One name and no alternative names: ACM asks for exactly one record.
        option = certificate.domain_validation_options[0]
        record = pulumi.Output.all(option.resource_record_name, option.resource_record_type, option.resource_record_value)
        fqdns = None
        if domain.zone_id:
            validation = aws.route53.Record(
                f"{name}-certificate-validation", zone_id=domain.zone_id, name=option.resource_record_name,
                type=option.resource_record_type, records=[option.resource_record_value], ttl=300,
                allow_overwrite=True, opts=child)  # a second `up` after a failed one finds its own record there
            fqdns = [validation.fqdn]
        else:
            self.records.append(record.apply(lambda r: _dns_record(r[0], r[1], r[2], f"lets ACM issue {domain.name}'s certificate")))
            record.apply(lambda r: pulumi.log.warn(
                f"{PROJECT}: add {r[0]} {r[1]} {r[2]} to the DNS of {domain.name}: ACM issues its certificate once it "
                "sees that record, and this update waits for it (up to 75 minutes; run it again if it times out)."))
        self.arn = aws.acm.CertificateValidation(f"{name}-certificate-issued", certificate_arn=certificate.arn,
                                                 validation_record_fqdns=fqdns, region=region, opts=child).certificate_arn

    def point_at(self, name: str, target: pulumi.Input[str], target_zone_id: pulumi.Input[str],
                 parent: pulumi.Resource) -> None:
        """Send the domain to `target`: A and AAAA aliases in the zone, or (without one) a CNAME the user adds."""
        domain = self.domain
        if domain.zone_id is None:
            self.records.append(pulumi.Output.from_input(target).apply(
                lambda value: _dns_record(domain.name, "CNAME", value, "sends the domain to the stack")))
            return
        for record_type in ("A", "AAAA"):
            aws.route53.Record(f"{name}-{record_type.lower()}", zone_id=domain.zone_id, name=domain.name,
                               type=record_type, aliases=[aws.route53.RecordAliasArgs(
                                   name=target, zone_id=target_zone_id, evaluate_target_health=False)],
                               opts=pulumi.ResourceOptions(parent=parent))


def _dns_record(name: str, record_type: str, value: str, why: str) -> dict[str, str]:
    return {"name": name, "type": record_type, "value": value, "why": why}


@dataclass
class UploadApiArgs:
    settings: Settings
    uploads: aws.s3.Bucket
    layers: Layers
    table: aws.dynamodb.Table
    thumbnails: aws.s3.Bucket
    # The CDN's base URL when the stack has one: renditions are linked there, and the function may not read the bucket.
    cdn_url: pulumi.Input[str] | None = None


class UploadApi(pulumi.ComponentResource):
    """A function that presigns one create-only PUT for a new key under uploads/api/, and answers a caller's own
    upload's status, behind IAM (function URL) or a JWT authorizer (API Gateway HTTP API). Never unauthenticated;
    its concurrency is capped."""

    def __init__(self, name: str, args: UploadApiArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("claimcheck:index:UploadApi", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self)
        jwt = s.jwt_issuer is not None
        kind = UploadApiKind.HTTP_API if jwt else UploadApiKind.FUNCTION_URL
        self.quotas = self._quota_table(name, s, child) if any(s.quota) else None
        # Presigned GETs of renditions only without a CDN (with one, every rendition has its URL there).
        thumbnails = links.thumbnail_urls(args.cdn_url) if args.cdn_url is not None else links.thumbnail_reads(args.thumbnails)
        self.function = build_function(
            name, Function.UPLOAD_API, s.functions, memory=UPLOAD_API_MEMORY, timeout=UPLOAD_API_TIMEOUT,
            links=[links.api_uploads(args.uploads), links.record_reader(args.table), thumbnails,
                   links.upload_api_settings(s, kind), *([links.upload_quotas(self.quotas)] if self.quotas else [])],
                   layers=args.layers, opts=child,
            # At most this many grants are minted at once, whatever the caller sends (Checkov CKV_AWS_115). 0 means no
            # reservation, so it is not set: a reservation of 0 throttles every call (Developer Guide, "Configuring
            # reserved concurrency for a function": "To throttle a function, set the reserved concurrency to zero").
            reserved_concurrency=s.upload_api_concurrency or None).function
        cors = self._cors(s)
        self.dns_records: pulumi.Output[list[dict[str, str]]] | None = None
        self.url = self._http_api(name, s, cors, child) if jwt else self._function_url(name, cors, child)
        self.auth = "jwt" if jwt else "aws_iam"
        # What a caller needs, in the form its mode takes: a policy to attach (IAM), or what its token must carry (JWT).
        self.uploader_policy = None if jwt else self._uploader_policy(name, child)
        self.uploader_jwt = {"route": UPLOAD_ROUTE, "status_route": STATUS_ROUTE, "issuer": s.jwt_issuer,
                             "audience": s.jwt_audience, "scopes": list(s.upload_scopes)} if jwt else None
        self.register_outputs({"url": self.url, "auth": self.auth,
                               "uploader_policy_arn": self.uploader_policy.arn if self.uploader_policy else None,
                               "uploader_jwt": self.uploader_jwt})

    @staticmethod
    def _quota_table(name: str, s: Settings, child: pulumi.ResourceOptions) -> aws.dynamodb.Table:
        """Each owner's grants and declared bytes per UTC day, one item per owner and day (handlers/upload_api.py).
        A table of its own: the function's one permission on it reaches no image record. TTL deletes past days'
        items some time after they expire (DynamoDB Developer Guide, "Time to Live (TTL)": typically within a few
        days), so the key names the day and expiry is housekeeping only."""
        return aws.dynamodb.Table(
            f"{name}-quotas", billing_mode="PAY_PER_REQUEST", hash_key=QUOTA_KEY,
            attributes=[aws.dynamodb.TableAttributeArgs(name=QUOTA_KEY, type="S")],
            ttl=aws.dynamodb.TableTtlArgs(attribute_name=QUOTA_EXPIRY, enabled=True),
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
            deletion_protection_enabled=not s.force_destroy, opts=child)

    @staticmethod
    def _cors(s: Settings) -> dict[str, Any] | None:
        if not s.upload_allowed_origins:
            return None
        return {"allow_origins": list(s.upload_allowed_origins), "allow_methods": ["GET", "POST"],
                "allow_headers": API_CORS_HEADERS, "max_age": 300}

    def _function_url(self, name: str, cors: dict[str, Any] | None, child: pulumi.ResourceOptions) -> pulumi.Output[str]:
        url = aws.lambda_.FunctionUrl(f"{name}-url", function_name=self.function.name, authorization_type="AWS_IAM",
                                      cors=aws.lambda_.FunctionUrlCorsArgs(**cors) if cors else None, opts=child)
        return url.function_url

    def _uploader_policy(self, name: str, child: pulumi.ResourceOptions) -> aws.iam.Policy:
        """Exactly what a caller of the IAM function URL needs, to attach to its role or group. A function URL created
        since October 2025 with AWS_IAM takes both lambda:InvokeFunctionUrl and lambda:InvokeFunction (Lambda Developer
        Guide, "Control access to Lambda function URLs"); the conditions keep both to calls through the URL, never a
        direct Invoke (Service Authorization Reference, Lambda's condition keys: lambda:FunctionUrlAuthType,
        lambda:InvokedViaFunctionUrl)."""
        statements = [
            iam.allow(["lambda:InvokeFunctionUrl"], [self.function.arn],
                      {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}),
            iam.allow(["lambda:InvokeFunction"], [self.function.arn], {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}),
        ]
        return aws.iam.Policy(f"{name}-uploader", description=f"{name}: call the upload API's function URL, nothing else",
                              policy=iam.document(statements), opts=child)

    def _http_api(self, name: str, s: Settings, cors: dict[str, Any] | None,
                  child: pulumi.ResourceOptions) -> pulumi.Output[str]:
        assert s.jwt_issuer and s.jwt_audience, "the settings allow a JWT API only with both"
        # With a domain of the user's, it is the only way in (API Gateway Developer Guide, "Disable the default endpoint
        # for HTTP APIs": "To ensure that clients can access your API only by using a custom domain name").
        api = aws.apigatewayv2.Api(f"{name}-http", protocol_type="HTTP", opts=child,
                                   disable_execute_api_endpoint=True if s.upload_api_domain else None,
                                   cors_configuration=aws.apigatewayv2.ApiCorsConfigurationArgs(**cors) if cors else None)
        authorizer = aws.apigatewayv2.Authorizer(
            f"{name}-jwt", api_id=api.id, authorizer_type="JWT", identity_sources=["$request.header.Authorization"],
            jwt_configuration=aws.apigatewayv2.AuthorizerJwtConfigurationArgs(issuer=s.jwt_issuer, audiences=[s.jwt_audience]),
            opts=child)
        integration = aws.apigatewayv2.Integration(
            f"{name}-integration", api_id=api.id, integration_type="AWS_PROXY", integration_uri=self.function.arn,
            payload_format_version="2.0", opts=child)
        # With scopes, an access token must carry one of them; an ID token (no scope) is refused
        # (API Gateway developer guide, "Controlling access to HTTP APIs with JWT authorizers").
        # Both routes with the one authorizer and the same scopes; "-route" keeps its name (and URN) from before.
        for resource, route in ((f"{name}-route", UPLOAD_ROUTE), (f"{name}-status-route", STATUS_ROUTE)):
            aws.apigatewayv2.Route(resource, api_id=api.id, route_key=route, authorization_type="JWT",
                                   authorizer_id=authorizer.id, target=pulumi.Output.concat("integrations/", integration.id),
                                   authorization_scopes=list(s.upload_scopes) or None, opts=child)
        access_logs = aws.cloudwatch.LogGroup(
            f"{name}-access-logs", name=log_group_name(f"{name}-access"),
            retention_in_days=s.log_retention_days, opts=child)
        stage = aws.apigatewayv2.Stage(
            f"{name}-stage", api_id=api.id, name="$default", auto_deploy=True,
            # Bounds how many grants (and so uploads) callers can mint, whoever they are.
            default_route_settings={"throttling_rate_limit": s.upload_rate_limit,
                                    "throttling_burst_limit": s.upload_burst_limit},
            # Who asked for which grant (Checkov CKV_AWS_76): the JWT subject is in the log line.
            access_log_settings={"destination_arn": access_logs.arn, "format": pulumi.Output.json_dumps({
                "requestId": "$context.requestId", "ip": "$context.identity.sourceIp", "time": "$context.requestTime",
                "route": "$context.routeKey", "status": "$context.status", "sub": "$context.authorizer.claims.sub",
                "error": "$context.authorizer.error"})},
            opts=child)
        # Each route's own: an execute-api ARN is api-id/stage/method/path, "*" matching the {id} segment (API Gateway
        # developer guide, "IAM policy examples for API execution permissions").
        for resource, source in ((f"{name}-invoke", "/*/POST/uploads"), (f"{name}-status-invoke", "/*/GET/uploads/*")):
            aws.lambda_.Permission(resource, action="lambda:InvokeFunction", function=self.function.name,
                                   principal="apigateway.amazonaws.com",
                                   source_arn=pulumi.Output.concat(api.execution_arn, source), opts=child)
        if s.upload_api_domain:
            return self._custom_domain(name, CustomDomain(s.upload_api_domain, s.upload_api_hosted_zone_id), api, stage)
        return stage.invoke_url

    def _custom_domain(self, name: str, domain: CustomDomain, api: aws.apigatewayv2.Api,
                       stage: aws.apigatewayv2.Stage) -> pulumi.Output[str]:
        """The HTTP API on the user's domain: a Regional domain name with a certificate in the stack's Region (API
        Gateway Developer Guide, "Setting up a Regional custom domain name in API Gateway"), TLS 1.2 (the only
        version HTTP APIs support: "Setting up custom domain names for HTTP APIs"), reachable over IPv4 and IPv6,
        mapped to the $default stage at the root, so the route stays POST /uploads."""
        certified = Certified(name, domain, None, self)
        child = pulumi.ResourceOptions(parent=self)
        served = aws.apigatewayv2.DomainName(
            f"{name}-domain", domain_name=domain.name,
            domain_name_configuration=aws.apigatewayv2.DomainNameDomainNameConfigurationArgs(
                certificate_arn=certified.arn, endpoint_type="REGIONAL", security_policy="TLS_1_2",
                ip_address_type="dualstack"), opts=child)
        aws.apigatewayv2.ApiMapping(f"{name}-mapping", api_id=api.id, domain_name=served.domain_name, stage=stage.id, opts=child)
        configuration = served.domain_name_configuration
        certified.point_at(name, configuration.target_domain_name, configuration.hosted_zone_id, self)
        self.dns_records = pulumi.Output.all(*certified.records) if certified.records else None
        return pulumi.Output.concat("https://", domain.name, "/")


CLOUDFRONT_REGION = "us-east-1"  # where CloudFront's certificates and log delivery sources live


@dataclass
class ThumbnailCdnArgs:
    settings: Settings
    bucket_regional_domain_name: pulumi.Input[str]
    # (log bucket ARN, prefix, the bucket policy that admits the delivery): standard logs go there; None: no logs.
    logs: tuple[pulumi.Input[str], str, pulumi.Resource] | None = None


class ThumbnailCdn(pulumi.ComponentResource):
    """CloudFront over the private thumbnails bucket: Origin Access Control, HTTPS only, year-long caching
    (thumbnail keys never change content), security headers. `read_statement` is what the bucket policy must add."""

    def __init__(self, name: str, args: ThumbnailCdnArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("claimcheck:index:ThumbnailCdn", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self)
        oac = aws.cloudfront.OriginAccessControl(
            f"{name}-oac", origin_access_control_origin_type="s3", signing_behavior="always", signing_protocol="sigv4",
            description="claimcheck thumbnails", opts=child)
        cache = aws.cloudfront.CachePolicy(
            f"{name}-cache", min_ttl=YEAR, default_ttl=YEAR, max_ttl=YEAR, comment="immutable thumbnail keys",
            parameters_in_cache_key_and_forwarded_to_origin=aws.cloudfront.CachePolicyParametersInCacheKeyAndForwardedToOriginArgs(
                cookies_config=aws.cloudfront.CachePolicyParametersInCacheKeyAndForwardedToOriginCookiesConfigArgs(cookie_behavior="none"),
                headers_config=aws.cloudfront.CachePolicyParametersInCacheKeyAndForwardedToOriginHeadersConfigArgs(header_behavior="none"),
                query_strings_config=aws.cloudfront.CachePolicyParametersInCacheKeyAndForwardedToOriginQueryStringsConfigArgs(
                    query_string_behavior="none"),
                enable_accept_encoding_gzip=False, enable_accept_encoding_brotli=False),  # images are compressed already
            opts=child)
        # nosniff: a thumbnail is only ever an image; HSTS: browsers never try plain HTTP (Checkov CKV2_AWS_32).
        headers = aws.cloudfront.ResponseHeadersPolicy(
            f"{name}-headers", comment="claimcheck thumbnails: security headers", security_headers_config={
                "content_type_options": {"override": True},
                "strict_transport_security": {"access_control_max_age_sec": YEAR, "include_subdomains": True,
                                              "preload": False, "override": True},
                "frame_options": {"frame_option": "DENY", "override": True},
                "referrer_policy": {"referrer_policy": "no-referrer", "override": True}},
            opts=child)
        domain = s.cdn_domain
        # CloudFront takes ACM certificates from us-east-1 only (CloudFront Developer Guide, "Requirements for using
        # SSL/TLS certificates with CloudFront"; ACM User Guide, "Supported Regions").
        self.certified = Certified(name, CustomDomain(domain, s.cdn_hosted_zone_id, s.cdn_certificate_arn),
                                   CLOUDFRONT_REGION, self) if domain else None
        self.distribution = aws.cloudfront.Distribution(
            f"{name}-distribution", enabled=True, comment="claimcheck thumbnails", http_version="http2and3",
            price_class="PriceClass_100", aliases=[domain] if domain else None, is_ipv6_enabled=True if domain else None,
            origins=[aws.cloudfront.DistributionOriginArgs(
                origin_id=ORIGIN_ID, domain_name=args.bucket_regional_domain_name, origin_access_control_id=oac.id)],
            default_cache_behavior=aws.cloudfront.DistributionDefaultCacheBehaviorArgs(
                target_origin_id=ORIGIN_ID, viewer_protocol_policy="https-only", cache_policy_id=cache.id,
                response_headers_policy_id=headers.id,
                allowed_methods=["GET", "HEAD"], cached_methods=["GET", "HEAD"], compress=False),
            restrictions=aws.cloudfront.DistributionRestrictionsArgs(
                geo_restriction=aws.cloudfront.DistributionRestrictionsGeoRestrictionArgs(restriction_type="none")),
            # With the *.cloudfront.net certificate CloudFront sets the security policy to TLSv1 whatever is asked
            # (CloudFront API Reference, ViewerCertificate, MinimumProtocolVersion): TLS 1.2 needs a domain of one's
            # own. TLSv1.2_2021 takes TLS 1.2 and 1.3 with ECDHE-AES-GCM and CHACHA20 ciphers only (CloudFront
            # Developer Guide, "Supported protocols and ciphers between viewers and CloudFront").
            viewer_certificate=aws.cloudfront.DistributionViewerCertificateArgs(
                acm_certificate_arn=self.certified.arn, ssl_support_method="sni-only",
                minimum_protocol_version="TLSv1.2_2021")
            if self.certified else aws.cloudfront.DistributionViewerCertificateArgs(cloudfront_default_certificate=True),
            opts=child)
        if self.certified:
            self.certified.point_at(name, self.distribution.domain_name, self.distribution.hosted_zone_id, self)
        if args.logs:
            self._standard_logs(name, *args.logs)
        self.domain = domain if domain else self.distribution.domain_name
        self.url = pulumi.Output.concat("https://", self.domain)
        # What the user's DNS needs (without a zone): the certificate's validation record, then the domain's CNAME.
        self.dns_records = pulumi.Output.all(*self.certified.records) if self.certified and self.certified.records else None
        self.register_outputs({"url": self.url, "distribution_arn": self.distribution.arn})

    def _standard_logs(self, name: str, bucket_arn: pulumi.Input[str], prefix: str, policy: pulumi.Resource) -> None:
        """CloudFront standard logging (v2): a delivery source for the distribution, created in us-east-1 as
        CloudFront's must be, delivering to the log bucket under `prefix`, one folder per distribution and hour
        (CloudFront Developer Guide, "Configure standard logging (v2)"). The legacy kind would need ACLs on the
        bucket, which every bucket here has disabled. The delivery waits for the bucket policy that admits it:
        otherwise CloudWatch Logs would add its own statement, which the next `pulumi up` would remove."""
        child = pulumi.ResourceOptions(parent=self)
        source = aws.cloudwatch.LogDeliverySource(f"{name}-log-source", region=CLOUDFRONT_REGION, log_type="ACCESS_LOGS",
                                                  resource_arn=self.distribution.arn, opts=child)
        destination = aws.cloudwatch.LogDeliveryDestination(
            f"{name}-log-destination", region=CLOUDFRONT_REGION, output_format="w3c",
            delivery_destination_configuration={"destination_resource_arn": pulumi.Output.concat(bucket_arn, "/", prefix.rstrip("/"))},
            opts=child)
        aws.cloudwatch.LogDelivery(f"{name}-log-delivery", region=CLOUDFRONT_REGION, delivery_source_name=source.name,
                                   delivery_destination_arn=destination.arn, s3_delivery_configurations=[{
                                       "suffix_path": "{DistributionId}/{yyyy}/{MM}/{dd}/{HH}",
                                       "enable_hive_compatible_path": False}],
                                   opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]))

    def read_statement(self, bucket_arn: pulumi.Input[str]) -> dict[str, Any]:
        """What the thumbnails bucket's policy must add: only this distribution may read thumbnails."""
        return policies.thumbnails_through_distribution(bucket_arn, THUMBNAILS_PREFIX, self.distribution.arn)
