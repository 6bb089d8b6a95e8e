"""The pipeline's edges, each switched on by config: an upload API that hands out presigned POSTs,
and CloudFront in front of the thumbnails bucket."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.settings import Settings
from infra.worker import build_function

YEAR = 31_536_000
UPLOAD_API_MEMORY, UPLOAD_API_TIMEOUT = 256, 10


@dataclass
class UploadApiArgs:
    settings: Settings
    uploads_bucket_name: pulumi.Input[str]
    uploads_bucket_arn: pulumi.Input[str]
    powertools_layer_arn: pulumi.Input[str]
    uploads_prefix: str = "uploads/"


class UploadApi(pulumi.ComponentResource):
    """A function that presigns POSTs for new keys under uploads/, behind IAM (function URL) or a JWT
    authorizer (API Gateway HTTP API). Never unauthenticated."""

    def __init__(self, name: str, args: UploadApiArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("claimcheck:index:UploadApi", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self)
        jwt = s.jwt_issuer is not None
        self.function, _, _, _ = build_function(
            name, "upload_api", s, memory=UPLOAD_API_MEMORY, timeout=UPLOAD_API_TIMEOUT,
            environment={"UPLOADS_BUCKET": args.uploads_bucket_name, "ALLOWED_FORMATS": ",".join(s.allowed_formats),
                         "MAX_UPLOAD_BYTES": str(s.max_upload_bytes), "UPLOAD_EXPIRY_SECONDS": str(s.upload_expiry_seconds),
                         "UPLOAD_API_KIND": "http-api" if jwt else "function-url"},
            # Presigning is local; the POST it signs is allowed by exactly this grant.
            statements=[iam.allow(["s3:PutObject"], [iam.s3_objects(args.uploads_bucket_arn, args.uploads_prefix)])],
            layers=[args.powertools_layer_arn], parent=self)
        self.url = self._http_api(name, s, child) if jwt else self._function_url(name, child)
        self.auth = "jwt" if jwt else "aws_iam"
        self.register_outputs({"url": self.url, "auth": self.auth})

    def _function_url(self, name: str, child: pulumi.ResourceOptions) -> pulumi.Output[str]:
        url = aws.lambda_.FunctionUrl(f"{name}-url", function_name=self.function.name, authorization_type="AWS_IAM",
                                      opts=child)
        return url.function_url

    def _http_api(self, name: str, s: Settings, child: pulumi.ResourceOptions) -> pulumi.Output[str]:
        api = aws.apigatewayv2.Api(f"{name}-http", protocol_type="HTTP", opts=child)
        authorizer = aws.apigatewayv2.Authorizer(
            f"{name}-jwt", api_id=api.id, authorizer_type="JWT", identity_sources=["$request.header.Authorization"],
            jwt_configuration=aws.apigatewayv2.AuthorizerJwtConfigurationArgs(issuer=s.jwt_issuer, audiences=[s.jwt_audience]),
            opts=child)
        integration = aws.apigatewayv2.Integration(
            f"{name}-integration", api_id=api.id, integration_type="AWS_PROXY", integration_uri=self.function.arn,
            payload_format_version="2.0", opts=child)
        aws.apigatewayv2.Route(f"{name}-route", api_id=api.id, route_key="POST /uploads", authorization_type="JWT",
                               authorizer_id=authorizer.id, target=pulumi.Output.concat("integrations/", integration.id),
                               opts=child)
        stage = aws.apigatewayv2.Stage(f"{name}-stage", api_id=api.id, name="$default", auto_deploy=True, opts=child)
        aws.lambda_.Permission(f"{name}-invoke", action="lambda:InvokeFunction", function=self.function.name,
                               principal="apigateway.amazonaws.com",
                               source_arn=pulumi.Output.concat(api.execution_arn, "/*/POST/uploads"), opts=child)
        return stage.invoke_url


@dataclass
class ThumbnailCdnArgs:
    settings: Settings
    bucket_regional_domain_name: pulumi.Input[str]
    thumbnails_prefix: str = "thumbnails/"


class ThumbnailCdn(pulumi.ComponentResource):
    """CloudFront over the private thumbnails bucket: Origin Access Control, HTTPS only, year-long caching
    (thumbnail keys never change content). `read_statement` is what the bucket policy must add."""

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
        custom = s.cdn_domain is not None
        self.distribution = aws.cloudfront.Distribution(
            f"{name}-distribution", enabled=True, comment="claimcheck thumbnails", http_version="http2and3",
            price_class="PriceClass_100", aliases=[s.cdn_domain] if custom else None,
            origins=[aws.cloudfront.DistributionOriginArgs(
                origin_id="thumbnails", domain_name=args.bucket_regional_domain_name, origin_access_control_id=oac.id)],
            default_cache_behavior=aws.cloudfront.DistributionDefaultCacheBehaviorArgs(
                target_origin_id="thumbnails", viewer_protocol_policy="https-only", cache_policy_id=cache.id,
                allowed_methods=["GET", "HEAD"], cached_methods=["GET", "HEAD"], compress=False),
            restrictions=aws.cloudfront.DistributionRestrictionsArgs(
                geo_restriction=aws.cloudfront.DistributionRestrictionsGeoRestrictionArgs(restriction_type="none")),
            viewer_certificate=aws.cloudfront.DistributionViewerCertificateArgs(
                acm_certificate_arn=s.cdn_certificate_arn, ssl_support_method="sni-only", minimum_protocol_version="TLSv1.2_2021")
            if custom else aws.cloudfront.DistributionViewerCertificateArgs(cloudfront_default_certificate=True),
            opts=child)
        self.domain = s.cdn_domain if custom else self.distribution.domain_name
        self.url = pulumi.Output.concat("https://", self.domain)
        self.thumbnails_prefix = args.thumbnails_prefix
        self.register_outputs({"url": self.url, "distribution_arn": self.distribution.arn})

    def read_statement(self, bucket_arn: pulumi.Input[str]) -> dict:
        """Only this distribution may read thumbnails (scoped by AWS:SourceArn)."""
        return {"Sid": "ThumbnailsThroughThisDistribution", "Effect": "Allow",
                "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject",
                "Resource": iam.s3_objects(bucket_arn, self.thumbnails_prefix),
                "Condition": {"StringEquals": {"AWS:SourceArn": self.distribution.arn}}}
