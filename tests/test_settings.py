"""Config validation: each bad value stops the program with a message naming the key and what it accepts."""
from __future__ import annotations

import pytest

from infra.settings import Settings, SettingsError, validate
from localcloud import program


@pytest.mark.parametrize("config, message", [
    ({"thumbnailSizes": [512, -128]}, "claimcheck:thumbnailSizes = [512, -128] is out of range (accepted: 1 to 10 different whole numbers, each 16 to 4,096 pixels)"),
    ({"thumbnailSizes": [256, 256]}, "claimcheck:thumbnailSizes = [256, 256] is out of range"),
    ({"maxReceiveCount": 0}, "claimcheck:maxReceiveCount = 0 is out of range (accepted: 3 to 1,000)"),
    ({"maxUploadBytes": -1}, "claimcheck:maxUploadBytes = -1 is out of range (accepted: 1 to 5,368,709,120)"),
    ({"allowedFormats": ["jpeg", "bmpx"]}, "claimcheck:allowedFormats = ['jpeg', 'bmpx'] is out of range (accepted: a non-empty list without repeats of jpeg, png, webp, gif, tiff, heic, avif)"),
    ({"outputFormat": "avif"}, "claimcheck:outputFormat = 'avif' is out of range (accepted: jpeg | webp | png)"),
    ({"thumbnails": {"timeout": 60, "visibilityTimeout": 100}},
     "claimcheck:thumbnails.visibilityTimeout = 100 is out of range (accepted: 361 to 43,200 seconds: at least 6 x timeout (60) + batchingWindow (1))"),
    ({"labels": {"batchSize": 50, "batchingWindow": 0}}, "claimcheck:labels.batchingWindow = 0 is out of range (accepted: at least 1 when batchSize is over 10"),
    ({"intake": {"memory": 64}}, "claimcheck:intake.memory = 64 is out of range (accepted: 128 to 10,240)"),
    ({"intake": {"timeOut": 5}}, "claimcheck:intake: unknown field(s) ['timeOut']; accepted: memory, timeout, batchSize"),
    ({"logRetentionDays": 8}, "claimcheck:logRetentionDays = 8 is out of range (accepted: 1, 3, 5, 7, 14, 30"),
    ({"architecture": "arm"}, "claimcheck:architecture = 'arm' is out of range (accepted: arm64 | x86_64)"),
    ({"runtime": "python3.9"}, "claimcheck:runtime = 'python3.9' is out of range (accepted: python3.11 | python3.12 | python3.13)"),
    ({"queueRetentionDays": 10, "dlqRetentionDays": 7}, "claimcheck:dlqRetentionDays = 7 is out of range (accepted: more than queueRetentionDays (10) and at most 14)"),
    ({"maxPixels": "lots"}, "claimcheck:maxPixels: 'lots' is not a whole number"),
    ({"storeGps": "yes"}, "claimcheck:storeGps: 'yes' is not true or false"),
    ({"originalsTransitionDays": 7}, "claimcheck:originalsTransitionDays = 7 is out of range (accepted: 30 to 3,650)"),
    ({"jwtIssuer": "https://login.example.com"}, "claimcheck:jwtIssuer = 'https://login.example.com' is out of range (accepted: an https:// issuer URL, set together with jwtAudience"),
    ({"cdnDomain": "img.example.com", "cdnCertificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/x"},
     "claimcheck:cdnCertificateArn = 'arn:aws:acm:eu-west-1:123456789012:certificate/x' is out of range (accepted: an ACM certificate ARN in us-east-1"),
])
def test_bad_values_stop_the_program_naming_key_and_range(config, message):
    with pytest.raises(SettingsError) as raised:
        program.run(program.RecordingMocks(), config)
    assert message in str(raised.value)


def test_every_bad_key_is_reported_at_once():
    with pytest.raises(SettingsError) as raised:
        program.run(program.RecordingMocks(), {"maxReceiveCount": 1, "outputQuality": 0, "minConfidence": 101})
    text = str(raised.value)
    assert all(key in text for key in ("maxReceiveCount", "outputQuality", "minConfidence"))


def test_defaults_are_valid_and_derive_visibility_from_timeout():
    settings = validate(Settings())
    assert settings.thumbnails.queue_visibility_timeout == 6 * settings.thumbnails.timeout + settings.thumbnails.batching_window
    assert settings.label_formats == ("jpeg", "png")


def test_pulumi_yaml_declares_the_same_defaults_as_the_settings():
    import dataclasses
    from pathlib import Path

    import yaml

    from infra.settings import _KEYS

    declared = yaml.safe_load((Path(__file__).parent.parent / "Pulumi.yaml").read_text())["config"]
    defaults = Settings()
    for key, spec in declared.items():
        attr, _ = _KEYS[key]
        value = getattr(defaults, attr)
        assert (list(value) if isinstance(value, tuple) else value) == spec["default"], key
        assert spec.get("description"), key
    optional = {"alarmEmail", "labelsEmulated", "jwtIssuer", "jwtAudience", "cdnDomain", "cdnCertificateArn"}
    undeclared = {k for k, (attr, kind) in _KEYS.items() if kind != "stage"} - set(declared) - optional
    assert not undeclared
    assert {f.name for f in dataclasses.fields(Settings)} == {attr for attr, _ in _KEYS.values()}
