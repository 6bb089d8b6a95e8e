"""The gallery in a real browser: Debian's headless Chromium, driven by Playwright.

The static page `python -m localcloud demo` writes (out/index.html, opened from file://): every thumbnail loads at
the size its record names, the status filters show exactly the tiles of that status, with JavaScript off too. The
live page `python -m localcloud up` serves: a JPEG dropped on it ends in a `done` tile, a text file named .jpg in a
`rejected` tile with the intake's reason, a file over maxUploadBytes is refused before anything is sent, and a type
the API refuses shows its 415 in words. A screenshot of each page is written to the test's folder.

Marked `browser`: `make test-browser` installs Chromium (apt-get) and Playwright, then runs it; .ci/run runs it.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from handlers.names import Status
from localcloud import samples
from localcloud.cloud import LocalCloud
from localcloud.live import LiveGallery

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
# The flags a headless Chromium needs on a machine without a network or a display, as root (CI's case).
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LIMIT = 2_000_000  # the live page's maxUploadBytes
SETTLE_MS = 90_000
# An image's pixels, decoded: loaded now even where the page lets it wait until scrolled to (loading="lazy"), and
# given up on after 20 s instead of waiting forever.
DECODED = """img => { img.loading = "eager";
    return Promise.race([img.decode().then(() => true),
                         new Promise((_, fail) => setTimeout(() => fail(new Error("not decoded in 20 s: " + img.src)), 20000))]); }"""


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("no Chromium on PATH: `make test-browser` installs Debian's (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`python -m localcloud demo` on its sample set, as a user runs it: out/ and the JSON summary."""
    where = tmp_path_factory.mktemp("demo")
    run = subprocess.run([sys.executable, "-m", "localcloud", "demo", "--out", str(where / "out"), "--json",
                          str(where / "summary.json")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "and the gallery, " in run.stdout
    return where / "out", json.loads((where / "summary.json").read_text())


def tiles_shown(page) -> list[dict]:
    return page.eval_on_selector_all("main .tile", """tiles => tiles.filter(t => t.offsetParent !== null)
        .map(t => ({key: t.dataset.key, status: t.dataset.status}))""")


def test_the_static_gallery_shows_every_upload_with_its_thumbnails(browser, demo, tmp_path):
    out, summary = demo
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((out / "index.html").as_uri())
    counts = {s: summary[s] for s in Status if summary.get(s)}  # the demo's gate holds one back: quarantined
    assert page.inner_text("#counts") == f"{summary['uploaded']} uploads: " + ", ".join(
        f"{n} {s}" for s, n in sorted(counts.items()))
    shown = {t["key"]: t["status"] for t in tiles_shown(page)}
    assert shown == {image["key"]: image["status"] for image in summary["images"]}
    for image in summary["images"]:
        tile = page.locator(f'main .tile[data-key="{image["key"]}"]')
        tile.scroll_into_view_if_needed()
        thumbnails = sorted(image["thumbnails"], key=lambda t: t["width"])
        if image["status"] == Status.DONE:
            sized = [t for t in thumbnails if not t.get("crop")]  # a crop is a tile of its own, never a srcset candidate
            largest = sized[-1]
            # the browser decoded one of the record's thumbnails (of any of its formats: the <picture>'s sources),
            # chosen from a srcset of exactly the record's widths, each once (naturalWidth of a srcset image is
            # scaled by the chosen candidate's density, so it is not the file's)
            img = tile.locator("img").first
            img.evaluate(DECODED)
            natural, source = img.evaluate("img => [img.naturalWidth, img.currentSrc]")
            names = {t["key"].rsplit("/", 1)[-1]: t["width"] for t in sized}
            assert natural > 0 and source.rsplit("/", 1)[-1] in names, (image["key"], natural, source)
            srcset = [part.strip().rsplit(" ", 1) for part in img.get_attribute("srcset").split(",")]
            assert sorted(int(w.removesuffix("w")) for _, w in srcset) == sorted(set(names.values()))
            assert img.get_attribute("width") == str(largest["width"])
            # its placeholder is decoded, fills the picture's box and lies under it: the picture is what shows
            placeholder = tile.locator("img.placeholder")
            assert image["placeholder"] and placeholder.count() == 1
            placeholder.evaluate(DECODED)
            assert placeholder.bounding_box() == img.bounding_box()
            assert img.evaluate("img => { const r = img.getBoundingClientRect();"
                                " return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) === img; }")
            tile.locator("summary").click()
            sizes = tile.locator(".sizes img")
            assert sizes.count() == len(thumbnails)
            for index, thumbnail in enumerate(thumbnails):
                sizes.nth(index).evaluate(DECODED)
                assert sizes.nth(index).evaluate("img => img.naturalWidth") == thumbnail["width"]
            if image["labels"]:
                assert tile.locator(".labels").inner_text().startswith(image["labels"][0]["name"])
                assert tile.locator(".labels").inner_text().endswith("(emulated)")
            else:
                assert tile.locator(".labels").count() == 0
        else:
            assert tile.locator("img").count() == 0
            assert tile.locator(".reason").inner_text() == image["reason"] != ""
    page.screenshot(path=str(tmp_path / "gallery.png"), full_page=True)
    print(f"\nscreenshot: {tmp_path / 'gallery.png'}")


@pytest.mark.parametrize("javascript", [True, False])
def test_the_status_filters_show_exactly_that_status(browser, demo, javascript):
    out, summary = demo
    context = browser.new_context(java_script_enabled=javascript)
    page = context.new_page()
    page.goto((out / "index.html").as_uri())
    for status in (Status.REJECTED, Status.DONE, Status.FAILED):
        if not summary[status]:
            continue
        page.click(f'label[for="show-{status}"]')
        shown = tiles_shown(page)
        assert {t["status"] for t in shown} == {status} and len(shown) == summary[status]
    page.click('label[for="show-all"]')
    assert len(tiles_shown(page)) == summary["uploaded"]
    # by keyboard: the filters are one radio group, the arrow keys move along it
    page.focus("#show-all")
    page.keyboard.press("ArrowRight")
    first = page.eval_on_selector("input[name=show]:checked", "radio => radio.value")
    assert first != "all" and {t["status"] for t in tiles_shown(page)} == {first}
    context.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    gallery = LiveGallery(port=0)
    config = {**gallery.config(), "maxUploadBytes": LIMIT}
    with LocalCloud(config=config, workdir=tmp_path_factory.mktemp("live")) as cloud:
        gallery.start(cloud)
        try:
            yield gallery, cloud
        finally:
            gallery.stop()


def drop(page, name: str, data: bytes, mime: str) -> None:
    """What a drag from the desktop delivers: a drop event whose DataTransfer holds the file."""
    page.evaluate("""([name, bytes, mime]) => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array(bytes)], name, {type: mime}));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
    }""", [name, list(data), mime])


def wait_for_tile(page, name: str, status: str) -> dict:
    locator = page.locator(f'main .tile[data-status="{status}"]', has=page.locator("h2", has_text=name))
    locator.first.wait_for(timeout=SETTLE_MS)
    reason = locator.first.locator(".reason")
    return {"key": locator.first.get_attribute("data-key"), "reason": reason.inner_text() if reason.count() else ""}


def test_the_live_page_uploads_from_the_browser_straight_to_s3(browser, live, tmp_path):
    gallery, cloud = live
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # the page's Content-Security-Policy lets its own script, style, thumbnails, grants and PUTs through: Chromium
    # says so on the console when it refuses anything
    refusals: list[str] = []
    page.on("console", lambda message: refusals.append(message.text) if "Content Security Policy" in message.text else None)
    page.goto(gallery.origin + "/")
    assert "'nonce-" in page.evaluate("() => fetch('/').then(a => a.headers.get('content-security-policy'))")
    drop(page, "harbour.jpg", samples.jpeg(1600, 1200), "image/jpeg")
    page.set_input_files("#pick", files=[
        {"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"these are my notes, not a photo\n" * 20},
        {"name": "huge.jpg", "mimeType": "image/jpeg", "buffer": b"\xff" * (LIMIT + 1)},
        {"name": "page.html", "mimeType": "text/html", "buffer": b"<html></html>"},
    ])
    done = wait_for_tile(page, "harbour.jpg", Status.DONE)
    rejected = wait_for_tile(page, "notes.jpg", Status.REJECTED)
    refused = wait_for_tile(page, "huge.jpg", "refused")
    wrong_type = wait_for_tile(page, "page.html", "refused")
    records = cloud.records()
    # the dropped photo went API -> S3 -> intake -> stages, and its tile shows the thumbnails its record lists
    assert records[done["key"]]["status"] == Status.DONE and done["key"].startswith("uploads/api/")
    tile = page.locator(f'main .tile[data-key="{done["key"]}"] img').first
    tile.evaluate(DECODED)
    assert tile.evaluate("img => img.naturalWidth") > 0
    assert records[rejected["key"]]["status"] == Status.REJECTED and rejected["reason"] == records[rejected["key"]]["reason"]
    # over the limit: refused in the page, so nothing reached the API or S3
    assert refused["reason"] == f"{LIMIT + 1:,} bytes is over the limit of {LIMIT:,} bytes: not uploaded"
    assert refused["key"] is None and not any(key.endswith("huge.jpg") for key in records)
    # a type the API does not take: its 415, in words
    assert wrong_type["reason"].startswith("415: ") and wrong_type["key"] is None
    assert errors == [] and refusals == []
    page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
    print(f"\nscreenshot: {tmp_path / 'live.png'}")


def test_the_live_page_answers_only_for_its_own_host_and_never_serves_image_bytes(live):
    import requests

    gallery, cloud = live
    assert requests.get(gallery.origin + "/", headers={"Host": "attacker.example"}, timeout=10).status_code == 421
    thumbnail = requests.get(gallery.origin + "/thumbnails/thumbnails/x/128.jpg", allow_redirects=False, timeout=10)
    assert thumbnail.status_code == 302 and thumbnail.headers["Location"].startswith(cloud.endpoint)
    assert thumbnail.content == b""
    assert requests.get(gallery.origin + "/thumbnails/uploads/secret.jpg", allow_redirects=False, timeout=10).status_code == 404
    # the upload API's preflight: this page's origin may POST JSON, another origin gets no CORS headers at all
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    allowed = requests.options(cloud.upload_api_url + "/uploads", headers={"Origin": gallery.origin, **ask}, timeout=10)
    assert allowed.status_code == 204 and allowed.headers["Access-Control-Allow-Origin"] == gallery.origin
    other = requests.options(cloud.upload_api_url + "/uploads", headers={"Origin": "https://evil.example", **ask}, timeout=10)
    assert other.status_code == 403 and "Access-Control-Allow-Origin" not in other.headers
    # and S3's: the uploads bucket's CORS rule admits this origin's PUT, and no other origin's
    bucket = f"{cloud.endpoint_of('s3')}/{cloud.outputs['uploadsBucket']}/uploads/api/x.jpg"
    put = {"Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "content-type,if-none-match"}
    assert requests.options(bucket, headers={"Origin": gallery.origin, **put}, timeout=10).headers.get(
        "Access-Control-Allow-Origin") == gallery.origin
    assert "Access-Control-Allow-Origin" not in requests.options(
        bucket, headers={"Origin": "https://evil.example", **put}, timeout=10).headers


# Every state a tile of the page passes through (its name, status, reason), as the page shows them: a state a refresh
# replaces within a second is still seen.
WATCH = """() => { window.seen = [];
    const note = (tile) => { const h2 = tile.querySelector("h2"), why = tile.querySelector(".reason");
        if (h2) window.seen.push([h2.textContent, tile.dataset.status, why ? why.textContent : ""]); };
    new MutationObserver((changes) => { for (const change of changes) {
        const tile = change.target.closest ? change.target.closest(".tile") : null;
        if (tile) note(tile);
        for (const added of change.addedNodes) if (added.classList && added.classList.contains("tile")) note(added); } })
      .observe(document.getElementById("tiles"), {subtree: true, childList: true, attributes: true, characterData: true}); }"""


def seen(page, name: str, status: str) -> list[str]:
    """The reasons a tile named `name` has shown with `status` so far."""
    return list(dict.fromkeys(why for shown, state, why in page.evaluate("() => window.seen")
                              if shown == name and state == status))


def test_a_followed_upload_leaves_pending_on_an_error_or_after_the_deadline_and_the_server_tile_takes_over(
        browser, live, monkeypatch):
    from localcloud import live as live_page

    gallery, cloud = live
    monkeypatch.setattr(live_page, "UNSEEN_MS", 3000)  # the page's deadline for an upload the API does not know
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(gallery.origin + "/")
    page.evaluate(WATCH)
    status_api = cloud.upload_api_url + "/uploads/*"

    def answer(status: int, message: str):
        return lambda route: (route.fulfill(status=status, content_type="application/json",
                                            body=json.dumps({"message": message}))
                              if route.request.method == "GET" else route.continue_())

    # GIVEN the status route answering 500 to this page: the tile says so, and stops following it
    page.route(status_api, answer(500, "the status route broke"))
    drop(page, "broken.jpg", samples.jpeg(300, 200), "image/jpeg")
    # THEN the tile is not left pending: once the image is done the server's tile for its key takes its place
    assert wait_for_tile(page, "broken.jpg", Status.DONE)["key"].startswith("uploads/api/")
    assert seen(page, "broken.jpg", "error") == ["500: the status route broke"]
    # GIVEN a status route that never knows the upload (404 for ever): by the deadline the tile says so, stops
    # asking, and the server's tile takes its place when done
    page.unroute(status_api)
    page.route(status_api, answer(404, "no upload of yours has this id"))
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url)
            if request.method == "GET" and request.url.startswith(cloud.upload_api_url + "/uploads/") else None)
    drop(page, "unseen.jpg", samples.jpeg(300, 200), "image/jpeg")
    assert wait_for_tile(page, "unseen.jpg", Status.DONE)["key"].startswith("uploads/api/")
    page.wait_for_timeout(4000)  # past the deadline, whenever the image was done
    assert seen(page, "unseen.jpg", "error") == [
        "the pipeline has not recorded this upload after 3 s; its tile appears here if it ever does"]
    asked_by_then = len(asked)
    page.wait_for_timeout(2500)
    assert 1 <= asked_by_then <= 5 and len(asked) == asked_by_then  # asked about once a second, then no more


def test_chromium_picks_the_avif_of_a_record_with_several_formats(browser, tmp_path):
    """A record's renditions in AVIF, WebP and JPEG, as the thumbnail stage stores and lists them: the page's
    <picture> offers each, and Chromium, which shows AVIF, loads an AVIF."""
    from handlers import imaging
    from ops import gallery

    data = samples.encode(samples.photo_like(600, 400), "JPEG", quality=92)
    made = imaging.make_thumbnails(data, (512, 256), "jpeg", 82, imaging.Limits(10**8, 10), sniffed="jpeg",
                                   preferred=(("avif", 60), ("webp", 80))).thumbnails
    outputs = []
    for thumbnail in made:
        key = f"thumbnails/i/{thumbnail.box}.{thumbnail.extension}"
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(thumbnail.data)
        outputs += [{"key": key, "width": thumbnail.width, "height": thumbnail.height, "bytes": len(thumbnail.data),
                     "content_type": thumbnail.content_type, "format": thumbnail.format, "box": box} for box in thumbnail.boxes]
    assert {o["format"] for o in outputs if o["box"] == 512} == {"avif", "webp", "jpeg"}  # a photo: AVIF is smallest
    image = gallery.view("uploads/p.jpg", Status.DONE, {"status": Status.DONE, "format": "jpeg",
                                                        "thumbnails": {"status": "done", "outputs": outputs}})
    (tmp_path / "index.html").write_text(gallery.page([image], lambda key, o: o["key"], "formats", emulated=False))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((tmp_path / "index.html").as_uri())
    img = page.locator("main .tile picture img")
    img.evaluate(DECODED)
    chosen = img.evaluate("img => img.currentSrc")
    assert chosen.endswith(".avif") and chosen.rsplit("/", 1)[-1] in {o["key"].rsplit("/", 1)[-1] for o in outputs}, chosen
    assert img.evaluate("img => img.naturalWidth") > 0
