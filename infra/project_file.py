"""Pulumi.yaml, rendered from the settings' declarations (python -m infra.settings writes it).

Values are written as JSON, which is YAML too, so no YAML library is needed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PATH = Path(__file__).resolve().parent.parent / "Pulumi.yaml"

HEADER = """\
# Generated from infra/settings.py by `python -m infra.settings`; edit the settings there, not here.
name: claimcheck
description: An event-driven image pipeline on AWS using the Claim Check pattern (S3, SQS, SNS, Lambda, DynamoDB, Rekognition).
runtime:
  name: python
  options:
    toolchain: pip
    virtualenv: .venv
"""

# Keys without a default: declaring them would make the CLI require a value on every stack.
UNDECLARED = """\
  # Optional keys, not declared (a declared key without a default would be required on every stack):
  #   alarmEmail                     an address subscribed to the alarm topic (confirm the e-mail AWS sends)
  #   jwtIssuer, jwtAudience         together: the upload API behind API Gateway's JWT authorizer instead of IAM
  #   cdnDomain, cdnCertificateArn   together: a custom domain for the distribution and its ACM certificate (us-east-1)
  #   intake, thumbnails, labels     per-function objects {memory, timeout, batchSize, batchingWindow, maxConcurrency,
  #                                  visibilityTimeout}; defaults in infra/settings.py (STAGE_DEFAULTS), e.g.
  #                                  pulumi config set --path claimcheck:thumbnails.memory 2048
"""


def render(config: dict[str, Any]) -> str:
    lines = [HEADER, "config:\n"]
    for key, entry in config.items():
        lines.append(f"  {key}:\n")
        for name, value in entry.items():
            lines.append(f"    {name}: {json.dumps(value, ensure_ascii=False)}\n")
    lines.append(UNDECLARED)
    return "".join(lines)


def write_config(config: dict[str, Any]) -> None:
    PATH.write_text(render(config))
