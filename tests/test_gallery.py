"""The gallery page as text (the browser tests, tests/test_browser.py, look at it in Chromium): what uploads bring
(keys, reasons, EXIF strings) cannot become markup or script, the page needs nothing from elsewhere, and it says
what the demo's table says."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser

from ops import gallery

HOSTILE = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


def record(status: str, **extra) -> dict:
    return {"status": status, "format": "jpeg", "width": 4000, "height": 3000, **extra}


def done(key: str, camera: str = "Canon") -> dict:
    return gallery.view(key, "done", record("done", metadata={"width": 4000, "height": 3000, "camera_make": camera,
                                                                "camera_model": HOSTILE, "taken_at": "2026-07-14T18:42:05"},
                                            thumbnails={"outputs": [
                                                {"key": f"thumbnails/x/{box}.jpg", "box": box, "width": box,
                                                 "height": box * 3 // 4, "bytes": 1000 * box} for box in (128, 512)]},
                                            labels={"status": "done", "source": "emulated",
                                                    "labels": [{"name": HOSTILE, "confidence": 99.0}]}))


def elements(page: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Every element a browser's parser makes of the page, with its attributes."""
    found = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Parser().feed(page)
    return found


def link(key: str, output: dict) -> str:
    return output["key"].replace("thumbnails/", "") + "?a=1&b=2"


def test_what_uploads_bring_is_shown_as_text_never_as_markup():
    images = [done(f"uploads/{HOSTILE}.jpg"),
              gallery.view("uploads/bad.jpg", "rejected", record("rejected", reason=HOSTILE))]
    page = gallery.page(images, link, f"title {HOSTILE}", emulated=True)
    tags = elements(page)
    assert not [tag for tag, _ in tags if tag == "script"]
    assert not [(tag, name) for tag, attrs in tags for name, _ in attrs if name.startswith("on")]
    assert [attrs for tag, attrs in tags if tag == "img" and ("src", "x") in attrs] == []
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5  # title, heading, key, reason, camera, labels
    assert 'srcset="x/128.jpg?a=1&amp;b=2 128w, x/512.jpg?a=1&amp;b=2 512w"' in page
    assert '<p class="reason">&quot;&gt;&lt;script&gt;' in page


def test_the_live_page_s_data_cannot_close_its_script_element():
    page = gallery.page([], link, "live", emulated=True, live={"api": "http://127.0.0.1:1/uploads</script><script>x()",
                                                               "maxBytes": 10, "tiles": "/tiles.json"})
    data = re.search(r'<script type="application/json" id="live">(.*?)</script>', page).group(1)
    assert json.loads(data)["api"] == "http://127.0.0.1:1/uploads</script><script>x()"
    assert page.count("<script") == 2  # its data and its own code, nothing an upload brought


def test_the_page_needs_nothing_from_elsewhere():
    page = gallery.page([done("uploads/a.jpg")], link, "demo", emulated=False)
    assert not re.findall(r'(?:src|href)="(?:https?:)?//', page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert "<script" not in page  # the static page works without JavaScript: filters are radios and CSS


def test_it_opens_with_the_counts_and_offers_a_filter_per_status():
    images = [done("uploads/a.jpg"), done("uploads/b.jpg"),
              gallery.view("uploads/c.jpg", "rejected", record("rejected", reason="the file is empty (0 bytes)")),
              gallery.view("uploads/d.jpg", "failed", record("failed", reason="thumbnails: the image data is truncated"))]
    page = gallery.page(images, link, "demo", emulated=True)
    assert '<p class="counts" id="counts">4 uploads: 2 done, 1 failed, 1 rejected</p>' in page
    assert re.findall(r'<label for="show-([a-z-]+)">([^<]+)</label>', page) == [
        ("all", "All (4)"), ("done", "done (2)"), ("rejected", "rejected (1)"), ("failed", "failed (1)")]
    assert "#show-rejected:checked ~ main .tile:not(.s-rejected){display:none}" in page
    assert 'alt="' + "&quot;&gt;&lt;script&gt;" in page  # labels name the picture for a screen reader
    assert "rejected: no thumbnail" in page and "Fujifilm" not in page


class FakeTarget:
    """A stack whose table holds `items` (DynamoDB JSON) and whose S3 presigns with a marker."""

    def __init__(self, items: list[dict], cdn: bool):
        self.name, self.emulated = "prod", False
        self.outputs = {"tableName": "t", "thumbnailsBucket": "thumbs", **({"thumbnailsUrl": "https://d1.example"} if cdn else {})}
        self.items, self.signed = items, []

    def client(self, service: str):
        target = self

        class Paginator:
            def paginate(self, **kwargs):
                return [{"Items": target.items[:1]}, {"Items": target.items[1:]}]

        class Client:
            def get_paginator(self, name):
                return Paginator()

            def generate_presigned_url(self, operation, Params, ExpiresIn):  # noqa: N803 - boto3's names
                target.signed.append((operation, Params, ExpiresIn))
                return f"https://thumbs.s3.example/{Params['Key']}?X-Amz-Expires={ExpiresIn}"

        return Client()


def item(key: str, updated: str, url: bool) -> dict:
    from boto3.dynamodb.types import TypeSerializer

    output = {"key": f"thumbnails/{key}/128.jpg", "box": 128, "width": 128, "height": 96, "bytes": 900,
              **({"url": f"https://d1.example/thumbnails/{key}/128.jpg"} if url else {})}
    record = {"key": f"uploads/{key}.jpg", "status": "done", "updated_at": updated, "format": "jpeg",
              "thumbnails": {"status": "done", "outputs": [output]}}
    return {name: TypeSerializer().serialize(value) for name, value in record.items()}


def test_a_stack_s_gallery_links_through_its_cdn_or_else_short_lived_signatures(tmp_path):
    cdn = FakeTarget([item("a", "2026-12-01T10:00:00Z", True), item("b", "2026-12-02T10:00:00Z", True)], cdn=True)
    path, count = gallery.write(cdn, tmp_path / "cdn")
    page = path.read_text()
    assert count == 2 and cdn.signed == [] and 'src="https://d1.example/thumbnails/a/128.jpg"' in page
    assert page.index('data-key="uploads/b.jpg"') < page.index('data-key="uploads/a.jpg"')  # the newest first
    signed = FakeTarget([item("a", "2026-12-01T10:00:00Z", False), item("other", "2026-12-02T10:00:00Z", False)], cdn=False)
    path, count = gallery.write(signed, tmp_path / "signed", prefix="a", limit=10, expires=600)
    assert count == 1 and 'data-key="uploads/other.jpg"' not in path.read_text()
    assert signed.signed[0] == ("get_object", {"Bucket": "thumbs", "Key": "thumbnails/a/128.jpg"}, 600)
    assert "claimcheck prod: 1 upload" in path.read_text()


def test_sizes_that_share_one_rendition_are_linked_once():
    shared = {"key": "thumbnails/x/1024.jpg", "width": 100, "height": 68, "bytes": 2000}
    image = gallery.view("uploads/small.jpg", "done", record("done", thumbnails={"outputs": [
        {**shared, "box": box} for box in (1024, 512, 128)]}))
    page = gallery.page([image], link, "t", emulated=False)
    assert [(t["key"], t["boxes"]) for t in image["thumbnails"]] == [("thumbnails/x/1024.jpg", [1024, 512, 128])]
    assert 'srcset="x/1024.jpg?a=1&amp;b=2 100w"' in page and page.count("<figure>") == 1


def test_a_done_tile_paints_its_placeholder_under_the_picture_without_script_and_a_bad_one_paints_none():
    from PIL import Image

    from handlers import placeholder

    red = placeholder.of_image(Image.new("RGB", (128, 96), (200, 30, 30)))
    image = done("uploads/a.jpg")
    painted = gallery.page([{**image, "placeholder": red}, {**done("uploads/b.jpg"), "placeholder": "not base64!"}],
                           link, "demo", emulated=False)
    pictures = re.findall(r'<div class="picture">(<img [^>]*>)(<img [^>]*>)?</div>', painted)
    assert len(pictures) == 2
    (real, under), (other, none) = pictures
    assert 'srcset="' in real and 'srcset="' in other and none == ""  # the picture first, as before
    assert f'src="{placeholder.data_url(red)}"' in under and 'class="placeholder"' in under and 'alt=""' in under
    assert "<script" not in painted and " style=" not in painted  # a CSP without unsafe-inline admits it
    assert image["placeholder"] is None  # a record without one (a stage before placeholders) has none
    # the --json summary's entry carries the record's placeholder as it is stored
    assert gallery.view("uploads/c.jpg", "done", record("done", thumbnails={"outputs": [], "placeholder": red}))["placeholder"] == red


def test_a_record_with_several_formats_is_a_picture_with_a_source_per_format_and_the_fallback_img():
    # AVIF was not smaller at 128 (not stored): its <source> takes the WebP there, which every AVIF browser shows too
    outputs = [{"key": f"thumbnails/x/{box}.{ext}", "box": box, "width": box, "height": box * 3 // 4, "bytes": size,
                "content_type": f"image/{fmt}", "format": fmt}
               for box, fmt, ext, size in ((512, "avif", "avif", 9000), (512, "webp", "webp", 12000), (512, "jpeg", "jpg", 20000),
                                           (128, "webp", "webp", 900), (128, "jpeg", "jpg", 1500))]
    image = gallery.view("uploads/p.jpg", "done", record("done", thumbnails={"outputs": outputs, "placeholder": None}))
    page = gallery.page([image], link, "formats", emulated=False)
    [picture] = re.findall(r'<div class="picture"><picture>(.*?)</picture>', page)
    assert re.findall(r'<(source|img) (?:type="([^"]*)" )?(?:src="[^"]*" )?srcset="([^"]*)"', picture) == [
        ("source", "image/avif", "x/128.webp?a=1&amp;b=2 128w, x/512.avif?a=1&amp;b=2 512w"),
        ("source", "image/webp", "x/128.webp?a=1&amp;b=2 128w, x/512.webp?a=1&amp;b=2 512w"),
        ("img", "", "x/128.jpg?a=1&amp;b=2 128w, x/512.jpg?a=1&amp;b=2 512w")]
    assert 'src="x/512.jpg?a=1&amp;b=2"' in picture  # the fallback's largest, as before
    assert page.count("<figure>") == len(outputs) and "512 × 384, AVIF, 9 KB" in page  # every rendition side by side
    assert [t["format"] for t in image["thumbnails"]] == ["avif", "webp", "jpeg", "webp", "jpeg"]
