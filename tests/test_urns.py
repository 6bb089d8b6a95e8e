"""Resource names stay stable: every URN a stack of an earlier release holds is one the program still declares,
or one a resource names as its alias, so `pulumi up` updates that stack in place instead of replacing (and, for
buckets and the table, losing) what it holds.

tests/urns/<case>.txt lists every URN a release has declared for each configuration: stacks of any of them
may exist. A refactor that moves a resource adds a Pulumi alias for its old URN and its new URN to the list
(`python -m tests.test_urns` adds what the program declares now; it never removes). A resource that is really
gone is taken out by hand, in the same change, with the reason in the commit.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from localcloud import program

SNAPSHOTS = Path(__file__).parent / "urns"
CASES = {
    "defaults": {},
    "edges": {"cdn": True, "uploadApi": True, "alarmEmail": "ops@example.com",
              "uploadAllowedOrigins": ["https://app.example.com"]},
    "jwt": {"uploadApi": True, "jwtIssuer": "https://id.example.com/", "jwtAudience": "claimcheck"},
    "no-labels": {"allowedFormats": ["webp", "gif"]},
    "moderation": {"moderation": True},
    "quota-domains": {"cdn": True, "uploadApi": True, "jwtIssuer": "https://id.example.com/", "jwtAudience": "claimcheck",
                      "uploadQuota": {"uploads": 200}, "cdnDomain": "images.example.com",
                      "cdnHostedZoneId": "Z0123456789ABCDEFGHIJ", "uploadApiDomain": "uploads.example.com",
                      "uploadApiHostedZoneId": "Z0123456789ABCDEFGHIJ"},
    "batch-operations": {"batchOperations": True},
    "duplicates": {"duplicates": "reject", "moderation": True},
}


def declared(config: dict) -> program.Deployment:
    return program.run(program.RecordingMocks(), config)


def snapshot(case: str) -> set[str]:
    return set((SNAPSHOTS / f"{case}.txt").read_text().split())


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_earlier_urn_is_still_declared_or_aliased(case):
    deployment = declared(CASES[case])
    missing = sorted(snapshot(case) - deployment.known_urns())
    assert not missing, ("these resources would be replaced on existing stacks (add a Pulumi alias, or take them out "
                         "of tests/urns/ with the reason):\n  " + "\n  ".join(missing))


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_declared_urn_is_in_the_list(case):
    new = sorted({r.urn for r in declared(CASES[case]).resources} - snapshot(case))
    assert not new, "new resources (add them to tests/urns/ on purpose):\n  " + "\n  ".join(new)


def test_child_urns_are_made_as_the_monitor_makes_them():
    """The rule the tests above rely on: a child's URN names its parent's own type, not the whole chain."""
    deployment = declared({})
    for resource in deployment.resources:
        if resource.parent_urn and "pulumi:pulumi:Stack::" not in resource.parent_urn:
            assert program.child_urn(resource.parent_urn, resource.typ, resource.name) == resource.urn
    stage = "urn:pulumi:dev::claimcheck::claimcheck:index:ClaimCheckPipeline$claimcheck:index:ThumbnailStage::s"
    assert program.child_urn(stage, "aws:sqs/queue:Queue", "q") == \
        "urn:pulumi:dev::claimcheck::claimcheck:index:ThumbnailStage$aws:sqs/queue:Queue::q"


if __name__ == "__main__":  # python -m tests.test_urns: add what the program declares now to the lists
    for name, config in CASES.items():
        path = SNAPSHOTS / f"{name}.txt"
        known = snapshot(name) if path.exists() else set()
        urns = {r.urn for r in declared(config).resources}
        path.write_text("\n".join(sorted(known | urns)) + "\n")
        print(f"{name}: {len(urns - known)} URNs added, {len(known | urns)} in all")
