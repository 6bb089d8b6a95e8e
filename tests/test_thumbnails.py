"""Thumbnail stage: the named object version in, oriented metadata-free thumbnails and a settled record out."""
from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from PIL import Image, ImageChops, ImageStat

from handlers import imaging, intake, placeholder, records, thumbnails
from localcloud import samples as images
from tests.conftest import failed_ids, invoke, s3_message


def accept(cloud, key, data):
    """Upload through intake and return the claim check it published (as the thumbnail queue would receive it)."""
    invoke(intake, [s3_message(cloud.put(key, data))])
    published = cloud.published()
    assert published, cloud.record(key)
    return published[-1]["claim"]


def run(claims):
    import json

    return invoke(thumbnails, [json.dumps(c) for c in claims])


def thumbnail(cloud, key):
    return Image.open(io.BytesIO(cloud.s3.get_object(Bucket=cloud.thumbnails, Key=key)["Body"].read()))


def test_webp_gets_every_size_and_the_record_is_done(cloud):
    claim = accept(cloud, "uploads/w.webp", images.webp(400, 200))
    assert run([claim])["batchItemFailures"] == []
    record = cloud.record("uploads/w.webp")
    assert record["status"] == "done"  # webp expects no labels
    outputs = record["thumbnails"]["outputs"]
    assert [(o["box"], o["width"], o["height"]) for o in outputs] == [(256, 256, 128), (128, 128, 64), (64, 64, 32)]
    assert cloud.thumbnail_keys() == sorted(o["key"] for o in outputs)
    head = cloud.s3.head_object(Bucket=cloud.thumbnails, Key=outputs[0]["key"])
    assert head["ContentType"] == "image/jpeg"
    assert record["metadata"]["format"] == "webp" and record["metadata"]["width"] == 400


def test_jpeg_waits_for_labels_before_done(cloud):
    claim = accept(cloud, "uploads/j.jpg", images.jpeg(300, 200))
    run([claim])
    record = cloud.record("uploads/j.jpg")
    assert record["status"] == "accepted" and record["thumbnails"]["status"] == "done"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_displays_upright_without_exif(cloud, orientation):
    # The stored pixels are the upright image transformed the way a camera would store them.
    stored = images.as_stored(images.photo(240, 160), orientation)  # red marker top-left, landscape
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Canon"
    data = images.encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    claim = accept(cloud, f"uploads/o{orientation}.jpg", data)
    run([claim])
    record = cloud.record(f"uploads/o{orientation}.jpg")
    assert record["metadata"]["orientation"] == orientation
    assert (record["metadata"]["width"], record["metadata"]["height"]) == (240, 160)
    out = thumbnail(cloud, record["thumbnails"]["outputs"][1]["key"])  # the 128 box
    assert out.size == (128, 85)
    assert not out.getexif(), "thumbnails carry no EXIF"
    red = out.convert("RGB").getpixel((5, 5))
    assert red[0] > 180 and red[1] < 80 and red[2] < 80, f"orientation {orientation}: top-left is {red}"
    far = out.getpixel((out.width - 5, out.height - 5))
    assert far[0] < 180, f"orientation {orientation}: marker also at bottom-right {far}"


@pytest.mark.parametrize("name, data, mode", [
    ("cmyk.jpg", images.encode(images.photo(200, 100, "CMYK"), "JPEG"), "RGB"),
    ("deep.png", images.sixteen_bit_png(), "L"),
    ("palette.png", images.palette_png_with_transparency(), "RGB"),
    ("gray.png", images.png(100, 80, "L"), "L"),
])
def test_unusual_modes_become_correct_thumbnails(cloud, name, data, mode):
    claim = accept(cloud, f"uploads/{name}", data)
    run([claim])
    record = cloud.record(f"uploads/{name}")
    assert record["thumbnails"]["status"] == "done", record
    out = thumbnail(cloud, record["thumbnails"]["outputs"][0]["key"])
    assert out.mode == mode
    if name == "deep.png":  # 16-bit samples are scaled, not clipped to white
        assert out.convert("L").getextrema()[0] < 200
    if name == "palette.png":  # opaque left half stays green, transparent right half is flattened onto white
        left, right = out.getpixel((2, out.height // 2)), out.getpixel((out.width - 2, out.height // 2))
        assert left[1] > 200 and left[0] < 60
        assert min(right) > 240


def test_pngs_keep_transparency_when_output_is_webp(cloud, monkeypatch):
    monkeypatch.setenv("OUTPUT_FORMAT", "webp")
    claim = accept(cloud, "uploads/t.png", images.palette_png_with_transparency())
    run([claim])
    record = cloud.record("uploads/t.png")
    out = thumbnail(cloud, record["thumbnails"]["outputs"][0]["key"])
    assert out.format == "WEBP" and out.mode == "RGBA"
    assert record["thumbnails"]["outputs"][0]["key"].endswith(".webp")


def test_truncated_jpeg_fails_cleanly_and_is_recorded(cloud):
    data = images.jpeg(400, 300)
    claim = accept(cloud, "uploads/cut.jpg", data[: len(data) // 2])
    response = run([claim])
    assert response["batchItemFailures"] == []
    record = cloud.record("uploads/cut.jpg")
    assert record["thumbnails"] == {**record["thumbnails"], "status": "failed", "reason": "the image data is truncated"}
    assert cloud.thumbnail_keys() == []
    # A failed original carries its status (a lifecycle rule expires it).
    tags = cloud.s3.get_object_tagging(Bucket=cloud.uploads, Key="uploads/cut.jpg", VersionId=claim["version_id"])
    assert tags["TagSet"] == [{"Key": "claimcheck-status", "Value": "failed"}]


def test_animated_gif_over_the_frame_limit_fails(cloud, monkeypatch):
    monkeypatch.setenv("MAX_FRAMES", "10")
    claim = accept(cloud, "uploads/anim.gif", images.gif(frames=40))
    run([claim])
    record = cloud.record("uploads/anim.gif")
    assert record["status"] == "failed"
    assert record["reason"] == "thumbnails: the image has 40 frames, over the limit of 10"
    assert record["attention"] == f"failed#{record['image_id'][0]}"  # listed by `ops failures`


def test_pixel_limit_is_enforced_before_decoding(cloud, monkeypatch):
    # A header the intake could not size (its dimensions sit past the sniffed prefix) still stops at the stage.
    monkeypatch.setenv("MAX_PIXELS", "10000")
    claim = accept(cloud, "uploads/p.webp", images.webp(100, 99))
    monkeypatch.setenv("MAX_PIXELS", "5000")
    from handlers import environment

    environment.load.cache_clear()
    run([claim])
    record = cloud.record("uploads/p.webp")
    assert record["status"] == "failed"
    assert record["reason"] == "thumbnails: the image is 100x99 (9,900 pixels), over the limit of 5,000 pixels"


def test_duplicate_claim_checks_give_one_set_of_thumbnails(cloud):
    claim = accept(cloud, "uploads/d.webp", images.webp())
    run([claim])
    keys = cloud.thumbnail_keys()
    before = cloud.record("uploads/d.webp")
    run([claim])
    assert cloud.thumbnail_keys() == keys
    assert cloud.record("uploads/d.webp")["thumbnails"] == before["thumbnails"]


def test_overwrite_replaces_thumbnails_and_a_late_old_claim_changes_nothing(cloud):
    old = accept(cloud, "uploads/o.webp", images.webp(300, 300))
    new = accept(cloud, "uploads/o.webp", images.webp(300, 150))
    run([new])
    keys = cloud.thumbnail_keys()
    run([old])  # delivered late, after the newer version was processed
    record = cloud.record("uploads/o.webp")
    assert record["version_id"] == new["version_id"] and record["status"] == "done"
    assert cloud.thumbnail_keys() == keys
    assert all(f"/{new['version_id']}/" in k for k in keys)


def test_object_gone_between_event_and_fetch_is_recorded_not_retried(cloud):
    claim = accept(cloud, "uploads/g.webp", images.webp())
    cloud.s3.delete_object(Bucket=cloud.uploads, Key="uploads/g.webp", VersionId=claim["version_id"])
    response = run([claim])
    assert response["batchItemFailures"] == []
    record = cloud.record("uploads/g.webp")
    assert record["status"] == "failed"
    assert "gone" in record["reason"]


def test_removed_claim_deletes_the_thumbnails(cloud):
    claim = accept(cloud, "uploads/r.webp", images.webp())
    run([claim])
    assert cloud.thumbnail_keys()
    invoke(intake, [s3_message(cloud.delete("uploads/r.webp"))])
    [removed] = [p["claim"] for p in cloud.published()]
    run([removed])
    assert cloud.thumbnail_keys() == []
    assert cloud.record("uploads/r.webp")["status"] == "deleted"


def test_unknown_claim_version_is_dropped_and_valid_ones_in_the_batch_succeed(cloud):
    good = accept(cloud, "uploads/v.webp", images.webp())
    response = run([{**good, "v": 2}, good])
    assert response["batchItemFailures"] == []
    assert cloud.record("uploads/v.webp")["status"] == "done"


def test_transient_s3_error_fails_only_that_record_and_is_retried(cloud, monkeypatch):
    slow = accept(cloud, "uploads/slow.webp", images.webp())
    good = accept(cloud, "uploads/ok.webp", images.webp(100, 100))
    real_fetch = thumbnails._fetch

    def flaky_fetch(claim):
        if claim.key == "uploads/slow.webp":
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "GetObject")
        return real_fetch(claim)

    monkeypatch.setattr(thumbnails, "_fetch", flaky_fetch)
    response = run([slow, good])
    assert failed_ids(response) == ["m0"]
    assert cloud.record("uploads/ok.webp")["status"] == "done"
    assert cloud.record("uploads/slow.webp")["status"] == "accepted"  # nothing recorded: it will be retried
    monkeypatch.setattr(thumbnails, "_fetch", real_fetch)
    assert run([slow])["batchItemFailures"] == []
    assert cloud.record("uploads/slow.webp")["status"] == "done"


def test_metadata_reads_camera_and_time_and_skips_malformed_tags():
    exif = Image.Exif()
    exif[0x010F] = "Nikon\x00\x01"
    exif[0x0110] = "Z 6"
    exif[0x0132] = "not a date"
    exif[0x0112] = 99  # not an orientation
    data = images.jpeg(80, 60, exif=exif)
    result = imaging.make_thumbnails(data, (32,), "jpeg", 80, imaging.Limits(10**7, 10))
    assert result.metadata["camera_make"] == "Nikon"
    assert result.metadata["camera_model"] == "Z 6"
    assert result.metadata["orientation"] == 1
    assert "taken_at" not in result.metadata


def test_gps_only_when_configured():
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (52.0, 30.0, 0.0), 3: "W", 4: (1.0, 15.0, 0.0)})
    exif[0x9003] = "2024:05:06 07:08:09"
    data = images.jpeg(80, 60, exif=exif)
    limits = imaging.Limits(10**7, 10)
    assert "gps" not in imaging.make_thumbnails(data, (32,), "jpeg", 80, limits).metadata
    with_gps = imaging.make_thumbnails(data, (32,), "jpeg", 80, limits, store_gps=True).metadata
    assert with_gps["gps"] == {"latitude": "52.500000", "longitude": "-1.250000"}


CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "exif-orientation"


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared EXIF orientation corpus is not present")
@pytest.mark.parametrize("shape", ["Landscape", "Portrait"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_corpus_orientations_all_look_like_the_upright_reference(shape, orientation):
    def thumb(name: str) -> Image.Image:
        result = imaging.make_thumbnails((CORPUS / f"{name}.jpg").read_bytes(), (128,), "png", 90, imaging.Limits(10**8, 1))
        return Image.open(io.BytesIO(result.thumbnails[0].data)).convert("L")

    reference, candidate = thumb(f"{shape}_0"), thumb(f"{shape}_{orientation}")
    assert candidate.size == reference.size
    difference = ImageStat.Stat(ImageChops.difference(reference, candidate)).mean[0]
    assert difference < 12, f"{shape}_{orientation} differs from the upright reference by {difference:.1f} per pixel"


def test_a_retried_stale_claim_removes_thumbnails_an_interrupted_run_left(cloud):
    old = accept(cloud, "uploads/k.webp", images.webp(300, 300))
    new = accept(cloud, "uploads/k.webp", images.webp(200, 100))
    run([new])
    # GIVEN a slow delivery of the old version stored its thumbnails after that, and died before recording them
    prefix = thumbnails.contracts.ClaimCheck(**old).thumbnail_prefix
    cloud.s3.put_object(Bucket=cloud.thumbnails, Key=f"{prefix}256.jpg", Body=b"left over")
    # WHEN the old claim check is delivered again, now stale
    assert run([old])["batchItemFailures"] == []
    # THEN only the current version's thumbnails remain
    assert cloud.thumbnail_keys() == sorted(o["key"] for o in cloud.record("uploads/k.webp")["thumbnails"]["outputs"])


def test_thumbnail_entries_carry_the_cdn_url_when_one_serves_them(cloud, monkeypatch):
    monkeypatch.setenv("THUMBNAILS_BASE_URL", "https://dexample.cloudfront.net/")
    claim = accept(cloud, "uploads/c.webp", images.webp())
    run([claim])
    outputs = cloud.record("uploads/c.webp")["thumbnails"]["outputs"]
    assert [o["url"] for o in outputs] == [f"https://dexample.cloudfront.net/{o['key']}" for o in outputs]


def test_thumbnails_of_a_version_that_went_stale_while_they_were_made_are_removed(cloud, monkeypatch):
    claim = accept(cloud, "uploads/race.png", images.png(300, 200))
    real = thumbnails._thumbnails_of

    def newer_upload_meanwhile(c, env, *rest):
        result = real(c, env, *rest)
        # WHILE the stage decodes, a new version of the key is uploaded and accepted
        accept(cloud, "uploads/race.png", images.png(120, 80))
        return result

    monkeypatch.setattr(thumbnails, "_thumbnails_of", newer_upload_meanwhile)
    assert run([claim])["batchItemFailures"] == []
    record = cloud.record("uploads/race.png")
    assert record["status"] == "accepted" and "thumbnails" not in record  # the newer version's turn
    # THEN what the stale run stored is gone: no orphans under the old version's prefix
    stale = thumbnails.contracts.ClaimCheck(**claim).thumbnail_prefix
    assert [k for k in cloud.thumbnail_keys() if k.startswith(stale)] == []


def settings_name(sizes, output_format="jpeg", quality=85):
    from handlers.names import thumbnail_settings

    return thumbnail_settings(sizes, output_format, quality)


def test_keys_name_the_settings_and_the_record_keeps_them(cloud):
    claim = accept(cloud, "uploads/s.webp", images.webp(400, 200))
    run([claim])
    thumbnails_result = cloud.record("uploads/s.webp")["thumbnails"]
    name = settings_name((256, 128, 64))
    assert thumbnails_result["settings"] == name
    assert {o["key"] for o in thumbnails_result["outputs"]} == {
        f"{claim_prefix(claim)}{name}/{box}.jpg" for box in (256, 128, 64)}


def claim_prefix(claim):
    return thumbnails.contracts.ClaimCheck(**claim).thumbnail_prefix


def reprocess_request(record) -> dict:
    """What `python -m ops reprocess` publishes for a done image: the record's own claim, event reprocess."""
    return {"v": 1, "bucket": record["bucket"], "key": record["key"], "version_id": record["version_id"],
            "etag": record["etag"], "size": int(record["size"]), "format": record["format"],
            "sequencer": record["sequencer"], "event": "reprocess", "event_time": record["event_time"]}


def test_reprocess_makes_the_current_sizes_and_removes_the_old_ones_once(cloud, monkeypatch, counted_metrics):
    claim = accept(cloud, "uploads/r.webp", images.webp(800, 400))
    run([claim])
    old_keys = set(cloud.thumbnail_keys())
    # GIVEN the stack's thumbnail settings changed
    monkeypatch.setenv("THUMBNAIL_SIZES", "300,100")
    thumbnails.environment.load.cache_clear()
    # WHEN a reprocess request arrives
    assert run([reprocess_request(cloud.record("uploads/r.webp"))])["batchItemFailures"] == []
    record = cloud.record("uploads/r.webp")
    name = settings_name((300, 100))
    assert record["status"] == "done" and record["thumbnails"]["settings"] == name
    assert [(int(o["box"]), int(o["width"])) for o in record["thumbnails"]["outputs"]] == [(300, 300), (100, 100)]
    assert set(cloud.thumbnail_keys()) == {o["key"] for o in record["thumbnails"]["outputs"]}
    assert not old_keys & set(cloud.thumbnail_keys())
    # AND the same request again changes nothing
    run([reprocess_request(record)])
    assert cloud.record("uploads/r.webp")["thumbnails"] == record["thumbnails"]
    assert counted_metrics() == {"Reprocessed": 1, "AlreadyCurrent": 1}


def test_a_reprocess_request_for_an_image_that_changed_since_is_skipped(cloud, monkeypatch):
    claim = accept(cloud, "uploads/q.webp", images.webp(200, 100))
    run([claim])
    request = reprocess_request(cloud.record("uploads/q.webp"))
    newer = accept(cloud, "uploads/q.webp", images.webp(210, 100))  # uploaded again: a newer version, accepted
    monkeypatch.setenv("THUMBNAIL_SIZES", "50")
    thumbnails.environment.load.cache_clear()
    run([request])
    record = cloud.record("uploads/q.webp")
    assert (record["status"], record["sequencer"]) == ("accepted", newer["sequencer"]) and "thumbnails" not in record
    assert not any("/" + settings_name((50,)) + "/" in key for key in cloud.thumbnail_keys())


def test_a_reprocess_that_cannot_decode_leaves_the_thumbnails_and_says_why(cloud, monkeypatch):
    claim = accept(cloud, "uploads/big.webp", images.webp(600, 400))
    run([claim])
    before = cloud.record("uploads/big.webp")
    monkeypatch.setenv("THUMBNAIL_SIZES", "64")
    monkeypatch.setenv("MAX_PIXELS", "1000")  # the limits changed too: this image is now over them
    thumbnails.environment.load.cache_clear()
    run([reprocess_request(before)])
    record = cloud.record("uploads/big.webp")
    assert record["thumbnails"] == before["thumbnails"] and set(cloud.thumbnail_keys()) == {
        o["key"] for o in before["thumbnails"]["outputs"]}
    assert record["reprocess"]["status"] == "failed" and "over the limit" in record["reprocess"]["reason"]


@pytest.fixture
def counted_metrics(emitted):
    """The reprocess metrics the stage emits from now on, counted."""
    return lambda: {k: v for k, v in emitted.items() if k in ("Reprocessed", "AlreadyCurrent", "SkippedClaimChecks")}


def test_the_record_carries_a_placeholder_made_from_the_smallest_thumbnail(cloud):
    claim = accept(cloud, "uploads/p.webp", images.webp(400, 200))
    run([claim])
    record = cloud.record("uploads/p.webp")
    hashed = base64.b64decode(record["thumbnails"]["placeholder"])
    assert len(hashed) < 30 and placeholder.aspect_ratio(hashed) == pytest.approx(2.0, rel=0.2)
    smallest = thumbnail(cloud, record["thumbnails"]["outputs"][-1]["key"]).convert("RGB")
    width, height, rgba = placeholder.decode(hashed)
    painted = Image.frombytes("RGBA", (width, height), rgba).convert("RGB")
    # the placeholder is the thumbnail's picture, blurred: each channel's mean within a few levels of it
    for ours, theirs in zip(ImageStat.Stat(painted).mean, ImageStat.Stat(smallest).mean, strict=True):
        assert abs(ours - theirs) < 8
    # and `python -m ops show` prints it
    from ops import render

    assert f"placeholder (ThumbHash, base64)  {record['thumbnails']['placeholder']}" in render.record(record, emulated=True)


def test_a_transparent_png_gets_a_placeholder_of_what_its_thumbnails_show(cloud, monkeypatch):
    claim = accept(cloud, "uploads/a.png", images.palette_png_with_transparency())
    run([claim])
    # JPEG thumbnails (the default) are flattened onto white: their placeholder has no alpha either
    hashed = base64.b64decode(cloud.record("uploads/a.png")["thumbnails"]["placeholder"])
    assert not hashed[2] & 0x80  # ThumbHash's alpha bit
    # PNG thumbnails keep the transparency, and so does their placeholder
    monkeypatch.setenv("OUTPUT_FORMAT", "png")
    thumbnails.environment.load.cache_clear()
    run([accept(cloud, "uploads/b.png", images.palette_png_with_transparency())])
    assert base64.b64decode(cloud.record("uploads/b.png")["thumbnails"]["placeholder"])[2] & 0x80
    monkeypatch.setenv("THUMBNAIL_SIZES", "300,100")
    thumbnails.environment.load.cache_clear()
    run([reprocess_request(cloud.record("uploads/a.png"))])
    assert cloud.record("uploads/a.png")["thumbnails"]["placeholder"]


def test_ops_show_lists_a_shared_rendition_once_with_the_boxes_it_serves():
    shared = {"key": "thumbnails/i/v/s/1024.jpg", "width": 100, "height": 68}
    small = {"key": "thumbnails/i/v/s/64.jpg", "width": 64, "height": 44, "box": 64}
    lines = thumbnails._shown({"status": "done", "settings": "s", "outputs": [
        {**shared, "box": 1024}, {**shared, "box": 512}, {**shared, "box": 128}, small]}, emulated=False)
    assert lines[1:] == ["    100x68  thumbnails/i/v/s/1024.jpg  (boxes 1024, 512, 128)", "    64x44  thumbnails/i/v/s/64.jpg"]
    # several formats: each rendition with its format and bytes
    avif = {"key": "thumbnails/i/v/s/64.avif", "width": 64, "height": 44, "box": 64, "bytes": 1200, "format": "avif"}
    lines = thumbnails._shown({"status": "done", "outputs": [avif, {**small, "bytes": 2500}]}, emulated=False)
    assert lines[1:] == ["    64x44  avif 1,200 B  thumbnails/i/v/s/64.avif", "    64x44  jpeg 2,500 B  thumbnails/i/v/s/64.jpg"]


def test_each_format_of_outputformats_is_stored_listed_with_its_bytes_and_deleted_with_the_image(cloud, monkeypatch):
    monkeypatch.setenv("OUTPUT_FORMATS", "avif,webp,jpeg")
    claim = accept(cloud, "uploads/f.webp", images.encode(images.photo_like(300, 200), "WEBP", quality=90))
    assert run([claim])["batchItemFailures"] == []
    record = cloud.record("uploads/f.webp")
    assert record["status"] == "done"
    shown = records.renditions(record["thumbnails"]["outputs"])
    # a photo: AVIF is smaller than the JPEG at its largest size at least (which others are kept: below)
    assert {r["format"] for r in shown if r["width"] == 256} >= {"avif", "jpeg"} and {r["format"] for r in shown} <= {
        "avif", "webp", "jpeg"}
    assert cloud.thumbnail_keys() == sorted(r["key"] for r in shown)  # exactly what the record lists is stored
    for rendition in shown:
        body = cloud.s3.get_object(Bucket=cloud.thumbnails, Key=rendition["key"])
        data = body["Body"].read()
        image = Image.open(io.BytesIO(data))
        assert body["ContentType"] == rendition["content_type"] == image.get_format_mimetype()
        assert (image.format.lower(), image.size, len(data)) == (rendition["format"], (rendition["width"], rendition["height"]),
                                                                 rendition["bytes"])
    at_each_width: dict[int, list[dict]] = {}
    for rendition in shown:
        at_each_width.setdefault(rendition["width"], []).append(rendition)
    for kept in at_each_width.values():  # the more preferred ones kept are each smaller than the fallback
        assert kept[-1]["format"] == "jpeg" and all(r["bytes"] < kept[-1]["bytes"] for r in kept[:-1])
    invoke(intake, [s3_message(cloud.delete("uploads/f.webp"))])
    run([p["claim"] for p in cloud.published()][-1:])
    assert cloud.thumbnail_keys() == []
