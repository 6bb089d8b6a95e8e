"""The local cloud's reach past Pulumi's and moto's public APIs (localcloud/seams/) was written for the versions
the requirements pin; a new pin must be read against it first."""
from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

from localcloud.seams import WRITTEN_FOR

ROOT = Path(__file__).resolve().parent.parent


def pins() -> dict[str, str]:
    found = {}
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s#]+).*", line.strip())
            if match:
                found[match.group(1).lower()] = match.group(3)
    return found


def test_the_seams_were_written_for_the_pinned_and_installed_versions():
    for package, written_for in WRITTEN_FOR.items():
        assert pins()[package] == written_for, (
            f"{package} is pinned at {pins()[package]}, but localcloud/seams was written for {written_for}: read it "
            "against the new version, then update WRITTEN_FOR")
        assert version(package) == written_for
