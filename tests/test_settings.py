"""Config validation: each bad value stops the program with a message naming the key and what it accepts."""
from __future__ import annotations

import pytest

from infra.settings import Settings, SettingsError, load, validate
from localcloud import program


@pytest.mark.parametrize("config, message", [
    ({"thumbnailSizes": [512, -128]}, "claimcheck:thumbnailSizes = [512, -128] is out of range (accepted: 1 to 10 different whole numbers, each 16 to 4,096 pixels)"),
    ({"thumbnailSizes": [256, 256]}, "claimcheck:thumbnailSizes = [256, 256] is out of range"),
    ({"maxReceiveCount": 0}, "claimcheck:maxReceiveCount = 0 is out of range (accepted: 3 to 1,000)"),
    ({"maxUploadBytes": -1}, "claimcheck:maxUploadBytes = -1 is out of range (accepted: 1 to 5,368,709,120)"),
    ({"allowedFormats": ["jpeg", "bmpx"]}, "claimcheck:allowedFormats = ['jpeg', 'bmpx'] is out of range (accepted: a non-empty list without repeats of jpeg, png, webp, gif, tiff, heic, avif)"),
    ({"outputFormat": "avif"}, "claimcheck:outputFormat = 'avif' is out of range (accepted: jpeg | webp | png)"),
    ({"outputFormats": ["avif", "heic", "jpeg"]}, "claimcheck:outputFormats = ['avif', 'heic', 'jpeg'] is out of range "
     "(accepted: unset, or 1 to 4 different formats of avif | webp | jpeg | png; the last not avif, and with several no png and the last jpeg or webp)"),
    ({"outputFormats": []}, "claimcheck:outputFormats = [] is out of range (accepted: unset, or 1 to 4"),
    ({"outputFormats": ["webp", "jpeg", "webp"]}, "claimcheck:outputFormats = ['webp', 'jpeg', 'webp'] is out of range"),
    ({"outputFormats": ["avif", "png"]}, "claimcheck:outputFormats = ['avif', 'png'] is out of range"),
    ({"outputFormats": ["jpeg", "avif"]}, "claimcheck:outputFormats = ['jpeg', 'avif'] is out of range"),
    ({"outputFormats": ["avif"]}, "claimcheck:outputFormats = ['avif'] is out of range (accepted: unset, or 1 to 4 "
     "different formats of avif | webp | jpeg | png; the last not avif"),
    ({"outputFormat": "webp", "outputFormats": ["avif", "jpeg"]},
     "outputFormat = webp and outputFormats = ['avif', 'jpeg'] disagree (accepted: outputFormat unset, or the last of "
     "outputFormats, the fallback)"),
    ({"thumbnails": {"timeout": 60, "visibilityTimeout": 100}},
     "claimcheck:thumbnails.visibilityTimeout = 100 is out of range (accepted: 361 to 43,200 seconds: at least 6 x timeout (60) + batchingWindow (1))"),
    ({"labels": {"batchSize": 50, "batchingWindow": 0}}, "claimcheck:labels.batchingWindow = 0 is out of range (accepted: at least 1 when batchSize is over 10"),
    ({"intake": {"memory": 64}}, "claimcheck:intake.memory = 64 is out of range (accepted: 128 to 10,240)"),
    ({"intake": {"timeOut": 5}}, "claimcheck:intake: unknown field(s) ['timeOut']; accepted: memory, timeout, batchSize"),
    ({"logRetentionDays": 8}, "claimcheck:logRetentionDays = 8 is out of range (accepted: a CloudWatch Logs retention value: 1, 3, 5, 7, 14, 30"),
    ({"architecture": "arm"}, "claimcheck:architecture = 'arm' is out of range (accepted: arm64 | x86_64)"),
    ({"runtime": "python3.9"}, "claimcheck:runtime = 'python3.9' is out of range (accepted: python3.12 | python3.13"),
    ({"runtime": "python3.11"}, "python3.11 runs on Amazon Linux 2, whose glibc 2.26 cannot load Pillow 13"),
    ({"minConfidence": "72.5"}, "claimcheck:minConfidence: '72.5' is not a whole number"),
    ({"uploadAllowedOrigins": ["ftp://x"]}, "claimcheck:uploadAllowedOrigins = ['ftp://x'] is out of range (accepted: a list of https:// origins"),
    ({"uploadScopes": ["uploads:write"]}, "claimcheck:uploadScopes = ['uploads:write'] is out of range (accepted: empty unless jwtIssuer"),
    ({"uploadRateLimit": 50, "uploadBurstLimit": 10}, "claimcheck:uploadBurstLimit = 10 is out of range (accepted: at least uploadRateLimit (50))"),
    ({"maxPixels": 200_000_000}, "claimcheck:thumbnails.memory = 1536 is too small for maxPixels = 200,000,000: a WEBP "
                                 "of that size may need 3,363 MB to decode (accepted: thumbnails.memory of at least 3,957, "
                                 "or maxPixels of at most 73,128,923)"),
    ({"queueRetentionDays": 10, "dlqRetentionDays": 7}, "claimcheck:dlqRetentionDays = 7 is out of range (accepted: more than queueRetentionDays (10) and at most 14)"),
    ({"maxPixels": "lots"}, "claimcheck:maxPixels: 'lots' is not a whole number"),
    ({"storeGps": "yes"}, "claimcheck:storeGps: 'yes' is not true or false"),
    ({"originalsTransitionDays": 7}, "claimcheck:originalsTransitionDays = 7 is out of range (accepted: 30 to 3,650)"),
    ({"jwtIssuer": "https://login.example.com"}, "claimcheck:jwtIssuer = 'https://login.example.com' is out of range (accepted: an https:// issuer URL, set together with jwtAudience"),
    ({"cdnDomain": "img.example.com", "cdnCertificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/x"},
     "claimcheck:cdnCertificateArn = 'arn:aws:acm:eu-west-1:123456789012:certificate/x' is out of range (accepted: an ACM certificate ARN in us-east-1"),
    ({"uploadApi": True, "uploadQuota": {"uploads": -1}},
     "claimcheck:uploadQuota = {'uploads': -1} is out of range (accepted: an object {\"uploads\": N, \"bytes\": N} of whole "
     "numbers from 0 (either may be left out), or unset)"),
    ({"uploadApi": True, "uploadQuota": {"files": 10}}, "claimcheck:uploadQuota = {'files': 10} is out of range"),
    ({"uploadApi": True, "uploadQuota": [10, 100]}, "claimcheck:uploadQuota = [10, 100] is out of range"),
    ({"uploadQuota": {"uploads": 10}},
     "claimcheck:uploadQuota = {'uploads': 10} is out of range (accepted: unset unless uploadApi is true"),
    ({"uploadApi": True, "uploadQuota": {"bytes": 1_000_000}},
     "claimcheck:uploadQuota = {'bytes': 1000000} is out of range (accepted: bytes 0 or at least maxUploadBytes "
     "(26,214,400): below it, a file the API accepts could never be granted)"),
    ({"cdn": True, "cdnDomain": "Images.Example.com"},
     "claimcheck:cdnDomain = 'Images.Example.com' is out of range (accepted: a lower-case host name such as images.example.com, or unset)"),
    ({"cdnDomain": "images.example.com"}, "claimcheck:cdnDomain = 'images.example.com' is out of range (accepted: unset unless cdn is true"),
    ({"cdn": True, "cdnHostedZoneId": "Z0123456789ABC"},
     "claimcheck:cdnHostedZoneId = 'Z0123456789ABC' is out of range (accepted: unset unless cdnDomain is set"),
    ({"cdn": True, "cdnDomain": "images.example.com", "cdnHostedZoneId": "example.com"},
     "claimcheck:cdnHostedZoneId = 'example.com' is out of range (accepted: a Route 53 hosted zone ID"),
    ({"uploadApi": True, "uploadApiDomain": "uploads.example.com"},
     "claimcheck:uploadApiDomain = 'uploads.example.com' is out of range (accepted: unset unless uploadApi is true with "
     "jwtIssuer and jwtAudience: the domain is served by API Gateway's HTTP API, and a Lambda function URL (IAM mode) "
     "cannot take a custom domain; put CloudFront in front of it yourself if you need one)"),
    ({"uploadApi": True, "jwtIssuer": "https://id.example.com/", "jwtAudience": "x", "uploadApiHostedZoneId": "Z0123456789ABC"},
     "claimcheck:uploadApiHostedZoneId = 'Z0123456789ABC' is out of range (accepted: unset unless uploadApiDomain is set)"),
    ({"cdn": True, "cdnDomain": "example.com"},
     "claimcheck:cdnDomain = 'example.com' is out of range (accepted: a name under a zone's apex (such as "
     "images.example.com), or the apex with cdnHostedZoneId (a Route 53 zone the stack writes A/AAAA aliases in): "
     "without a zone the stack's answer is a CNAME, which cannot sit at an apex)"),
    ({"uploadApi": True, "jwtIssuer": "https://id.example.com/", "jwtAudience": "x", "uploadApiDomain": "example.org"},
     "claimcheck:uploadApiDomain = 'example.org' is out of range (accepted: a name under a zone's apex"),
    # What cannot work at the stack's scale (infra/capacity.py): refused with the rest.
    ({"accountConcurrency": 40, "concurrencyReserve": 10},
     "claimcheck:maxConcurrency = intake 10 + thumbnails 20 + labels 2 = 32 is more than the account leaves the pipeline "
     "(accepted: at most accountConcurrency 40 - concurrencyReserve 10 = 30"),
    ({"uploadApi": True, "uploadApiConcurrency": 900},
     "claimcheck:maxConcurrency = intake 10 + thumbnails 20 + labels 2 + upload API 900 = 932 is more than the account "
     "leaves the pipeline (accepted: at most accountConcurrency 1,000 - concurrencyReserve 100 = 900"),
    # Lambda keeps 100 of the quota unreserved, or all of it when the quota is smaller (a new account's 10).
    ({"uploadApi": True, "accountConcurrency": 10, "concurrencyReserve": 2, "intake": {"maxConcurrency": 2},
      "thumbnails": {"maxConcurrency": 4}, "labels": {"maxConcurrency": 2}},
     "claimcheck:uploadApiConcurrency = 5 is more than Lambda lets the account reserve (accepted: at most "
     "accountConcurrency 10 - the 10 Lambda keeps unreserved (100, or the whole quota when it is smaller) = 0; set "
     "uploadApiConcurrency 0 to reserve none: the upload function then shares the unreserved concurrency, bounded by "
     "the HTTP API's throttle in JWT mode; or ask AWS to raise the Regional Lambda concurrency quota and set "
     "accountConcurrency)"),
    ({"uploadApi": True, "uploadApiConcurrency": 60, "accountConcurrency": 150, "concurrencyReserve": 0},
     "claimcheck:uploadApiConcurrency = 60 is more than Lambda lets the account reserve (accepted: at most "
     "accountConcurrency 150 - the 100 Lambda keeps unreserved (100, or the whole quota when it is smaller) = 50;"),
    ({"uploadApiConcurrency": -1}, "claimcheck:uploadApiConcurrency = -1 is out of range (accepted: 0 to 1,000)"),
    ({"thumbnails": {"timeout": 3}},
     "claimcheck:thumbnails.timeout = 3 is too short for a batch of the largest images maxPixels allows (accepted: at "
     "least 15 s at batchSize 5 and memory 1,536, or a smaller batchSize or maxPixels): a 50 MP PNG takes about 1.6 s"),
    ({"thumbnails": {"timeout": 10, "batchSize": 10}},
     "claimcheck:thumbnails.timeout = 10 is too short for a batch of the largest images maxPixels allows (accepted: at "
     "least 30 s at batchSize 10"),
    ({"rekognitionTps": 0}, "claimcheck:rekognitionTps = 0 is out of range (accepted: 1 to 10,000)"),
])
def test_bad_values_stop_the_program_naming_key_and_range(config, message):
    with pytest.raises(SettingsError) as raised:
        program.run(program.RecordingMocks(), config)
    assert message in str(raised.value)


@pytest.mark.parametrize("reserved, accepted", [(50, True), (51, False), (0, True)])
def test_reservations_may_take_the_quota_but_the_unreserved_minimum_exactly(reserved, accepted):
    # 150 - 100 = 50 may be reserved; 0 is no reservation at all.
    config = {"uploadApi": "true", "uploadApiConcurrency": str(reserved), "accountConcurrency": "150",
              "concurrencyReserve": "0"}
    if accepted:
        assert load(config).upload_api_concurrency == reserved
    else:
        with pytest.raises(SettingsError, match=r"uploadApiConcurrency = 51 is more than Lambda lets the account reserve"):
            load(config)


def test_every_bad_key_is_reported_at_once():
    with pytest.raises(SettingsError) as raised:
        program.run(program.RecordingMocks(), {"maxReceiveCount": 1, "outputQuality": 0, "minConfidence": 101})
    text = str(raised.value)
    assert all(key in text for key in ("maxReceiveCount", "outputQuality", "minConfidence"))


def test_defaults_are_valid_and_derive_visibility_from_timeout():
    settings = validate(Settings())
    thumbnails = settings.stage("thumbnails")
    assert thumbnails.queue_visibility_timeout == 6 * thumbnails.timeout + thumbnails.batching_window
    assert settings.configured("labels").settings.label_formats == ("jpeg", "png")


def test_memory_that_cannot_hold_the_largest_decode_is_refused_with_what_would_fit():
    with pytest.raises(SettingsError) as raised:
        program.run(program.RecordingMocks(), {"maxPixels": 100_000_000, "thumbnails": {"memory": 1024}})
    text = str(raised.value)
    assert "a WEBP of that size may need" in text and "thumbnails.memory of at least" in text
    assert "or maxPixels of at most" in text
    # ... and the same pixels with enough memory are fine
    program.run(program.RecordingMocks(), {"maxPixels": 100_000_000, "thumbnails": {"memory": 2560}})
    # ... and without WebP, whose decode is the costliest, the same memory holds more pixels
    program.run(program.RecordingMocks(), {"maxPixels": 100_000_000, "allowedFormats": ["jpeg", "png"],
                                           "thumbnails": {"memory": 1536}})


def test_every_setting_has_a_key_a_description_and_a_valid_default():
    from infra.settings import config_keys

    found = config_keys()  # the pipeline's, the shared ones and every declared stage's: a key declared twice raises
    assert len(found) == len({entry.spec.metadata["key"] for entry in found.values()})
    for key, entry in found.items():
        assert entry.spec.metadata["description"].endswith("."), key
    validate(Settings())  # the defaults pass their own rules


@pytest.mark.parametrize("days, accepted", [(0, False), (1, True), (3650, True), (3651, False)])
def test_noncurrent_version_days_bounds_are_exact(days, accepted):
    if accepted:
        assert load({"noncurrentVersionDays": days}).noncurrent_version_days == days
    else:
        with pytest.raises(SettingsError, match=rf"claimcheck:noncurrentVersionDays = {days} is out of range \(accepted: 1 to 3,650\)"):
            load({"noncurrentVersionDays": days})


@pytest.mark.parametrize("formats, heif", [(["jpeg", "heic"], True), (["jpeg", "avif"], False), (["heic"], True),
                                           (["jpeg", "png", "webp", "gif", "tiff"], False)])
def test_pillow_heif_is_packaged_exactly_when_a_heif_format_is_allowed(formats, heif):
    # HEIC needs pillow-heif; Pillow decodes AVIF itself (its wheels carry libavif).
    from infra import packaging

    stack = program.run(program.RecordingMocks(), {"allowedFormats": formats})
    [layer] = stack.of_type("aws:lambda/layerVersion:LayerVersion")
    assert (packaging.HEIF_REQUIREMENT in layer.inputs["description"]) is heif
    assert ("pillow-heif" in layer.inputs["code"].path) is heif
