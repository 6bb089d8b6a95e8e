"""What the pipeline writes onto an original: the status tag of a rejected or failed upload, which a lifecycle rule
of the uploads bucket expires after rejectedRetentionDays (infra/pipeline.py)."""
from __future__ import annotations

from handlers import aws, contracts
from handlers.failures import PermanentFailure, classified
from handlers.names import STATUS_TAG, Metric, Status
from handlers.observability import count


def tag_status(claim: contracts.ClaimCheck, status: Status) -> None:
    """Tag exactly the claim's object version with `status` (it replaces the version's tags: the pipeline's own
    uploads carry none). A version that is gone needs no tag; any other error is retried."""
    version = claim.object_version()
    params = {"Bucket": version["Bucket"], "Key": version["Key"],
              **({"VersionId": version["VersionId"]} if "VersionId" in version else {})}
    try:
        with classified():
            aws.client("s3").put_object_tagging(**params, Tagging={"TagSet": [{"Key": STATUS_TAG, "Value": status}]})
    except PermanentFailure:
        return
    count(Metric.TAGGED)


def release(claim: contracts.ClaimCheck) -> None:
    """Take the quarantine tag off exactly the claim's object version (a person approved it): no lifecycle rule
    expires it then. Read first: the role may delete tags only while the version is tagged quarantined
    (s3:ExistingObjectTag), and an earlier delivery may have taken the tag off already. A version that is gone
    needs nothing."""
    version = claim.object_version()
    params = {"Bucket": version["Bucket"], "Key": version["Key"],
              **({"VersionId": version["VersionId"]} if "VersionId" in version else {})}
    s3 = aws.client("s3")
    try:
        with classified():
            tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(**params).get("TagSet", [])}
            if tags.get(STATUS_TAG) == Status.QUARANTINED:
                s3.delete_object_tagging(**params)
    except PermanentFailure:
        return
