"""The CDN purge through the local cloud: CloudFront refuses while earlier invalidations are in progress, the purge
waits in its queue and gets through once they finish; a forged purge of a live image purges nothing; the purge
function's role allows exactly what it used.

The emulated CloudFront keeps CloudFront's rule (at most so many file paths in progress per distribution) with a
smaller figure than CloudFront's 3,000 so that two deleted images reach it; each invalidation is in progress for a
few seconds (emulated: CloudFront documents no figure).
"""
from __future__ import annotations

import json
import time

from handlers.contracts import PurgeRequest
from localcloud import samples
from localcloud.__main__ import wait_until_settled
from localcloud.cloud import DISTRIBUTION, LocalCloud

# One image's three sizes fit; a second image's while the first is in progress do not.
# Room for one image's paths at a time (a 300 x 200 photo has two renditions: 128 px, and one for 512 and 1024).
LIMITS = {"files": 3, "completesAfter": 8}
# A purge that is refused comes back after its queue's visibility timeout: 6 x 1 s + a 1 s batching window.
CONFIG = {"cdn": True, "cdnPurge": {"timeout": 1, "batchingWindow": 1}}


def invalidated(cloud: LocalCloud) -> list[list[str]]:
    cf = cloud.client("cloudfront")
    [distribution] = [d.id for d in cloud.deployed.of_type(DISTRIBUTION)]
    listed = cf.list_invalidations(DistributionId=distribution)["InvalidationList"].get("Items", [])
    return sorted(sorted(cf.get_invalidation(DistributionId=distribution, Id=i["Id"])["Invalidation"]
                         ["InvalidationBatch"]["Paths"]["Items"]) for i in listed)


def test_a_refused_purge_gets_through_once_cloudfront_has_room(tmp_path):
    with LocalCloud(config=CONFIG, workdir=tmp_path, cdn=LIMITS) as cloud:
        keys, live = ["uploads/cdn/a.webp", "uploads/cdn/b.webp"], "uploads/cdn/live.webp"
        for key in [*keys, live]:
            cloud.upload(key, samples.webp(300, 200))
        summary = wait_until_settled(cloud, [*keys, live], timeout=60)
        # each stored rendition once (the sizes at or above a photo's share one key)
        paths = {key: sorted({"/" + o["key"] for o in summary.records[key]["thumbnails"]["outputs"]}) for key in [*keys, live]}
        # Anyone who may send to the purge queue (an operator redriving it) asks to purge a live image: refused.
        cloud.client("sqs").send_message(QueueUrl=cloud.outputs["queueUrls"]["cdn_purge"], MessageBody=PurgeRequest(
            tuple(p.lstrip("/") for p in paths[live])).to_json())
        for key in keys:  # deleted one after the other: the second purge meets the first still in progress
            cloud.delete(key)
            wait_until_settled(cloud, [key], timeout=60)
            deadline = time.monotonic() + 60
            while paths[key] not in invalidated(cloud) and time.monotonic() < deadline:
                time.sleep(0.5)
        stats = cloud.stats()
        used = cloud.emulator.stats()["used"]
        purge = cloud.deployed.named("claimcheck-cdn-purge-function").state["name"]
        assert invalidated(cloud) == sorted(paths[key] for key in keys)  # nothing of the live image
        assert stats["cdn_purge"]["failed_deliveries"] >= 1, stats  # the second purge was refused, then retried
        thumbnails = cloud.client("s3").list_objects_v2(Bucket=cloud.outputs["thumbnailsBucket"]).get("Contents", [])
        assert sorted("/" + t["Key"] for t in thumbnails) == paths[live]
        role = json.loads(next(p.inputs["policy"] for p in cloud.deployed.of_type("aws:iam/rolePolicy:RolePolicy")
                               if p.name == "claimcheck-cdn-purge-policy"))
    granted = {a for s in role["Statement"] for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    # The mapping's queue calls and the logs are Lambda's own, on the function's behalf.
    assert granted - {action for action, _ in used[purge]} == {"logs:CreateLogStream", "logs:PutLogEvents",
                                                                "sqs:GetQueueAttributes"}
