"""The gallery: every upload as a tile (its thumbnails, status, reason, size, format, labels, camera and date taken),
as one self-contained HTML page: no external script, font or style; it works from file:// and without JavaScript
(the status filters are radio buttons and CSS; the sizes side by side are a <details> element).

Three pages come from here: `make demo` writes one beside the thumbnails it copied (out/index.html, relative
links); `python -m ops … gallery` writes one for a stack from its table (CDN URLs when the stack has a CDN,
otherwise short-lived presigned GETs); `python -m localcloud up` serves a live one that uploads from the browser
through the upload API, straight to S3, and redraws each tile from `tiles()` as its record changes.

Every text shown comes from uploads (keys, reasons, EXIF strings) and is escaped; the only script is the live page's
own, and the data it reads is JSON with "<" escaped.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handlers import placeholder
from handlers.names import FOCAL_POINT, LABEL_LIST, UPLOADS_PREFIX, Function, StackOutput, Status
from handlers.records import renditions as stored_renditions

# Statuses in the order the filters show them; any other status gets a filter after these.
ORDER = (Status.DONE, Status.REJECTED, Status.FAILED, Status.QUARANTINED, "dead-lettered", Status.ACCEPTED, Status.DELETED,
         "unaccounted")
# A tile's image in the grid: about 16em wide on a wide screen, half the window on a narrow one.
SIZES = "(min-width: 40em) 16em, 45vw"
LABELS_SHOWN = 5
NONE_YET = '<p class="none">No uploads yet.</p>'

if TYPE_CHECKING:
    from ops.target import Target

# How long the presigned GETs of a stack's gallery stay valid (without a CDN), by default: an hour.
LINK_SECONDS = 3600

Link = Callable[[str, dict[str, Any]], str]  # (upload key, a thumbnail output: key, width, height, url?) -> its URL


def view(key: str, status: str, record: dict[str, Any]) -> dict[str, Any]:
    """An image record as people read it: what the demo's table, its JSON summary and the gallery show."""
    metadata = record.get("metadata") or {}
    labels = record.get(Function.LABELS) or {}
    emulated = labels.get("source") == "emulated"
    camera = " ".join(str(metadata[k]) for k in ("camera_make", "camera_model") if metadata.get(k))
    return {
        "key": key, "status": status, "reason": record.get("reason") or labels.get("reason") or "",
        "format": record.get("format"),
        "width": _int(metadata.get("width", record.get("width"))), "height": _int(metadata.get("height", record.get("height"))),
        Function.THUMBNAILS: [{"key": o["key"], "width": _int(o["width"]), "height": _int(o["height"]),
                               "bytes": _int(o["bytes"]), "boxes": [_int(box) for box in o["boxes"]],
                               "format": o["format"], "content_type": o.get("content_type"),
                               **({"url": o["url"]} if o.get("url") else {}),
                               **({"crop": o["crop"], FOCAL_POINT: _point(o.get(FOCAL_POINT))} if o.get("crop") else {})}
                              for o in renditions(record)],
        Function.LABELS: [{"name": label["name"], "confidence": float(label["confidence"]), "emulated": emulated}
                          for label in labels.get(LABEL_LIST, [])],
        "labels_emulated": emulated, "camera": camera or None, "taken_at": metadata.get("taken_at"),
        "placeholder": (record.get(Function.THUMBNAILS) or {}).get("placeholder"),
        FOCAL_POINT: _point(record.get(FOCAL_POINT)),
        # With `duplicates`: its pHash, and the earlier image of its owner's it copies (handlers/duplicates.py).
        "phash": record.get("phash"), "duplicate_of": record.get("duplicate_of"),
        "duplicate_distance": _int(record["duplicate_distance"]) if record.get("duplicate_distance") is not None else None,
    }


def _point(value: Any) -> dict[str, Any] | None:
    """A focal point as JSON takes it ({"x", "y", "source"}; DynamoDB's numbers as floats)."""
    if not isinstance(value, dict):
        return None
    return {"x": float(value["x"]), "y": float(value["y"]), "source": value.get("source")}


def views(records: Iterable[dict[str, Any]], limit: int | None = None) -> list[dict[str, Any]]:
    """The newest `limit` records (all when None), the newest first, as the gallery shows them."""
    newest = sorted(records, key=lambda r: str(r.get("updated_at") or ""), reverse=True)[:limit]
    return [view(r["key"], status_of(r), r) for r in newest]


def outputs(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The thumbnails an image record lists (none until the thumbnail stage is done)."""
    return (record.get(Function.THUMBNAILS) or {}).get("outputs", [])


def renditions(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Each stored thumbnail once: the sizes at or above the original's share one rendition (and its key)."""
    return stored_renditions(outputs(record))


def status_of(record: dict[str, Any]) -> str:
    return str(record.get("status") or "unaccounted")


def summary_line(statuses: Iterable[str]) -> str:
    """'11 uploads: 7 done, 1 failed, 3 rejected', the counts the demo's table ends with."""
    counts = Counter(statuses)
    total = sum(counts.values())
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"{total} upload{'s' if total != 1 else ''}" + (f": {parts}" if parts else "")


def tile(image: dict[str, Any], link: Link) -> str:
    """One upload's tile. `link` turns each thumbnail output into the URL the page loads."""
    status, key = image["status"], image["key"]
    name = key.removeprefix(UPLOADS_PREFIX)
    # A crop has another shape: it is no candidate for the picture's srcset, only a tile of its own below.
    everything = sorted(image[Function.THUMBNAILS], key=lambda t: t["width"] or 0)
    thumbnails = [t for t in everything if not t.get("crop")]
    labels = [label["name"] for label in image[Function.LABELS]]
    alt = (", ".join(labels[:LABELS_SHOWN]) + f" ({name})") if labels else name
    parts = [f'<article class="tile s-{_slug(status)}" data-key="{escape(key)}" data-status="{escape(status)}" '
             f'tabindex="0" aria-label="{escape(name)}: {escape(status)}">']
    if thumbnails:
        fallback, sources = _formats(thumbnails)
        largest = fallback[-1]

        def srcset(chosen: list[dict[str, Any]]) -> str:
            return ", ".join(f"{escape(link(key, t))} {t['width']}w" for t in chosen)

        picture = (f'<img src="{escape(link(key, largest))}" srcset="{srcset(fallback)}" sizes="{SIZES}" width="{largest["width"]}" '
                   f'height="{largest["height"]}" alt="{escape(alt)}" loading="lazy">')
        if sources:
            picture = "<picture>" + "".join(f'<source type="{escape(kind)}" srcset="{srcset(chosen)}" sizes="{SIZES}">'
                                            for kind, chosen in sources) + picture + "</picture>"
        parts.append(f'<div class="picture">{picture}{_placeholder(image.get("placeholder"))}</div>')
    else:
        parts.append(f'<div class="empty" role="img" aria-label="{escape(alt)}: no thumbnail">{escape(_no_picture(status))}</div>')
    parts.append(f'<h2>{escape(name)}</h2><p class="badge">{escape(status)}</p>')
    if image["reason"]:
        parts.append(f'<p class="reason">{escape(image["reason"])}</p>')
    facts = [("Size", f"{image['width']} × {image['height']}" if image["width"] else None),
             ("Format", (image["format"] or "").upper() or None), ("Camera", image.get("camera")),
             ("Taken", image.get("taken_at"))]
    shown = "".join(f"<dt>{label}</dt><dd>{escape(str(value))}</dd>" for label, value in facts if value)
    if shown:
        parts.append(f"<dl>{shown}</dl>")
    if labels:
        note = ' <span class="emulated">(emulated)</span>' if image["labels_emulated"] else ""
        parts.append(f'<p class="labels">{escape(", ".join(labels[:LABELS_SHOWN]))}{note}</p>')
    if thumbnails:
        figures = "".join(f'<figure><img src="{escape(link(key, t))}" width="{t["width"]}" height="{t["height"]}" '
                          f'alt="{escape(name)} at {t["width"]} px" loading="lazy"><figcaption>'
                          + (f'crop {escape(t["crop"])}: ' if t.get("crop") else "") + f'{t["width"]} × {t["height"]}'
                          f'{_kind(t, everything)}{_bytes(t["bytes"])}</figcaption></figure>' for t in everything)
        parts.append(f'<details><summary>Sizes side by side</summary><div class="sizes">{figures}</div></details>')
    parts.append("</article>")
    return "".join(parts)


def page(images: list[dict[str, Any]], link: Link, title: str, emulated: bool, live: dict[str, Any] | None = None,
         nonce: str | None = None) -> str:
    """The whole page. `live`: the live page's settings (the upload API's URL, the largest upload, where tiles are
    read from); None for a static page. `nonce`: what a served page's Content-Security-Policy admits its own inline
    style and script by."""
    admitted = f' nonce="{escape(nonce)}"' if nonce else ""
    statuses = [image["status"] for image in images]
    present = [s for s in ORDER if s in statuses] + sorted(set(statuses) - set(ORDER))
    filters = [("all", f"All ({len(images)})")] + [(s, f"{s} ({statuses.count(s)})") for s in present]
    radios = "".join(f'<input type="radio" name="show" id="show-{_slug(s)}" value="{escape(s)}"{" checked" if s == "all" else ""}>'
                     f'<label for="show-{_slug(s)}">{escape(text)}</label>' for s, text in filters)
    rules = "".join(f"#show-{_slug(s)}:checked ~ main .tile:not(.s-{_slug(s)}){{display:none}}" for s, _ in filters[1:])
    note = ("<p class=\"note\">From the local cloud: labels come from an emulated Rekognition and are marked (emulated).</p>"
            if emulated else "")
    upload = ""
    script = ""
    if live is not None:
        upload = ('<section class="drop" id="drop" tabindex="0" aria-label="Upload images">'
                  '<p>Drop images here, or <label class="pick">pick files<input type="file" id="pick" multiple '
                  'accept="image/*"></label>. Each goes through the upload API straight to the uploads bucket '
                  f'(at most {live["maxBytes"]:,} bytes).</p></section>')
        data = json.dumps(live).replace("<", "\\u003c")
        script = f'<script type="application/json" id="live">{data}</script><script{admitted}>{LIVE_SCRIPT}</script>'
    tiles = "".join(tile(image, link) for image in images)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
            f"<style{admitted}>{STYLE}{rules}</style></head><body><header><h1>{escape(title)}</h1>"
            f'<p class="counts" id="counts">{escape(summary_line(statuses))}</p>{note}</header>{upload}'
            f'<div class="gallery" role="group" aria-label="Show uploads by status">{radios}'
            f'<main id="tiles">{tiles or NONE_YET}</main></div>{script}</body></html>')


def tiles(images: list[dict[str, Any]], link: Link) -> dict[str, Any]:
    """What the live page redraws from: the counts line and each tile's HTML, by key."""
    return {"counts": summary_line(image["status"] for image in images),
            "tiles": [{"key": image["key"], "status": image["status"], "html": tile(image, link)} for image in images]}


def write(target: Target, out: Path, prefix: str = "", limit: int = 500, expires: int = LINK_SECONDS) -> tuple[Path, int]:
    """out/index.html for a stack, from its table: the newest `limit` records under uploads/`prefix`. Thumbnails link
    through the stack's CDN when it has one (the records carry the URLs), otherwise through presigned GETs valid for
    `expires` seconds. Reads the whole table (a paginated Scan: the operator policy allows it for reprocess)."""
    from boto3.dynamodb.types import TypeDeserializer

    deserialize = TypeDeserializer().deserialize
    records: list[dict[str, Any]] = []
    pages = target.client("dynamodb").get_paginator("scan").paginate(TableName=target.outputs[StackOutput.TABLE_NAME])
    for batch in pages:
        for item in batch.get("Items", []):
            record = {name: deserialize(value) for name, value in item.items()}
            if str(record.get("key", "")).startswith(UPLOADS_PREFIX + prefix):
                records.append(record)
    images = views(records, limit)
    s3, bucket = target.client("s3"), target.outputs[StackOutput.THUMBNAILS_BUCKET]

    def link(key: str, output: dict[str, Any]) -> str:
        return output.get("url") or s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": output["key"]},
                                                              ExpiresIn=expires)

    shown = f", the newest {limit} of {len(records)}" if len(records) > limit else ""
    title = f"claimcheck {target.name}: {len(images)} upload{'s' if len(images) != 1 else ''}{shown}"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    path.write_text(page(images, link, title, emulated=target.emulated), encoding="utf-8")
    return path, len(images)


# Formats from the one every browser shows to the one fewest do: the <img> gets the first a record has, and each
# other one a <source> before it, the least supported first (a browser takes the first <source> whose type it can show).
COMPATIBILITY = ("jpeg", "png", "webp", "avif")
TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "avif": "image/avif"}


def _formats(thumbnails: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[tuple[str, list[dict[str, Any]]]]]:
    """(the <img>'s renditions, [(a <source>'s type, its renditions)]), each by width. A width a format was not stored
    at (it was not smaller) takes the rendition that was, of a format every browser of that <source> shows too."""
    by_width: dict[int, dict[str | None, dict[str, Any]]] = {}
    for t in thumbnails:
        by_width.setdefault(t["width"] or 0, {})[t.get("format")] = t  # none: one picture, not a thumbnail (review)
    present = sorted({t.get("format") for t in thumbnails}, key=lambda f: COMPATIBILITY.index(f) if f in COMPATIBILITY else -1)

    def chosen(fmt: str | None) -> list[dict[str, Any]]:
        ranked = [fmt, *reversed(present[:present.index(fmt)])]
        return [next(found[f] for f in ranked if f in found) for _, found in sorted(by_width.items())
                if any(f in found for f in ranked)]

    return chosen(present[0]), [(TYPES.get(str(fmt), str(fmt)), chosen(fmt)) for fmt in reversed(present[1:])]


def _kind(thumbnail: dict[str, Any], thumbnails: list[dict[str, Any]]) -> str:
    """The format in a caption, when the record has more than one."""
    return f", {str(thumbnail.get('format')).upper()}" if len({t.get("format") for t in thumbnails}) > 1 else ""


def _slug(status: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in status.lower())


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _bytes(count: int | None) -> str:
    return f", {count / 1024:,.0f} KB" if count else ""


def _placeholder(hashed: str | None) -> str:
    """The image's ThumbHash painted under it while it loads, drawn here as a PNG data: URL so that no script is
    needed. An <img> rather than a style attribute: a page's Content-Security-Policy with style-src nonces refuses
    inline style attributes (CSP Level 3, "style-src"), and data: images need only img-src data:."""
    if not hashed:
        return ""
    try:
        url = placeholder.data_url(hashed)
    except ValueError:  # not base64, or too short to be a ThumbHash: the tile goes without (binascii.Error is one)
        return ""
    return f'<img class="placeholder" src="{escape(url)}" alt="" aria-hidden="true">'


def _no_picture(status: str) -> str:
    words: dict[str, str] = {Status.REJECTED: "rejected: no thumbnail", Status.FAILED: "failed: no thumbnail",
                             Status.DELETED: "deleted: no current version",
                             Status.QUARANTINED: "quarantined: held for review, nothing published"}
    return words.get(status, "not done yet")


STYLE = """
:root{font-family:system-ui,sans-serif;color:#1b1b1b;background:#fafafa}
body{margin:0 auto;max-width:80em;padding:1em}
h1{font-size:1.4em;margin:.2em 0}.counts{font-weight:600}.note{color:#555}
div.gallery>input{position:absolute;opacity:0}
div.gallery>label{display:inline-block;margin:.2em;padding:.3em .7em;border:1px solid #888;border-radius:1em;cursor:pointer}
div.gallery>input:checked+label{background:#1b1b1b;color:#fff}
div.gallery>input:focus-visible+label{outline:3px solid #1a73e8}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(16em,1fr));gap:1em;margin-top:1em}
.tile{background:#fff;border:1px solid #ddd;border-radius:.5em;padding:.6em;overflow-wrap:anywhere}
.tile:focus-visible{outline:3px solid #1a73e8}
.picture{position:relative;z-index:0}.picture>img,.picture>picture>img{width:100%;height:auto;display:block;border-radius:.3em}
.picture>.placeholder{position:absolute;inset:0;height:100%;z-index:-1}
.empty{display:flex;align-items:center;justify-content:center;aspect-ratio:4/3;background:#eee;color:#555}
.tile h2{font-size:1em;margin:.4em 0 .2em}
.badge{display:inline-block;margin:0;padding:.1em .6em;border-radius:1em;background:#ddd;font-size:.85em}
.s-done .badge{background:#cdeccd}.s-rejected .badge{background:#f6dcb6}.s-failed .badge,.s-dead-lettered .badge,
.s-refused .badge,.s-error .badge{background:#f5c2c2}.s-quarantined .badge{background:#e3d0f5}
.reason{color:#8a1c1c}dl{display:grid;grid-template-columns:auto 1fr;gap:0 .6em;margin:.4em 0}dt{color:#555}dd{margin:0}
.labels{margin:.3em 0}.emulated{color:#555;font-style:italic}
.tile:has(details[open]){grid-column:1/-1}
.sizes{display:flex;gap:.5em;align-items:flex-end;overflow-x:auto}.sizes img{max-width:none}
figure{margin:0}figcaption{font-size:.8em;color:#555}
.drop{border:2px dashed #888;border-radius:.5em;padding:1em;text-align:center}.drop.over{background:#e8f0fe}
.pick{text-decoration:underline;cursor:pointer}.pick input{position:absolute;opacity:0;width:1px}
"""

# The live page: uploads through the upload API (a grant, then a PUT straight to S3 with it), each upload's status
# from the upload API until it settles, and tiles redrawn from the server's JSON about once a second. A file over the limit is refused here, before anything is sent.
LIVE_SCRIPT = r"""
(() => {
  const live = JSON.parse(document.getElementById("live").textContent);
  const main = document.getElementById("tiles");
  const counts = document.getElementById("counts");
  const pending = new Map();  // key or local id -> the tile shown for a browser upload, until it settles
  let next = 0;
  function pendingTile(name, status, reason) {
    const tile = document.createElement("article");
    tile.className = "tile s-" + status;
    tile.tabIndex = 0;
    tile.dataset.status = status;
    const empty = document.createElement("div");
    empty.className = "empty";
    empty.textContent = "uploading";
    const title = document.createElement("h2");
    title.textContent = name;
    const badge = document.createElement("p");
    badge.className = "badge";
    const why = document.createElement("p");
    why.className = "reason";
    tile.append(empty, title, badge, why);
    setState(tile, status, reason);
    const none = main.querySelector(".none");
    if (none) none.remove();
    main.prepend(tile);
    return tile;
  }
  function setState(tile, status, reason) {
    tile.className = "tile s-" + status;
    tile.dataset.status = status;
    tile.setAttribute("aria-label", tile.querySelector("h2").textContent + ": " + status);
    tile.querySelector(".badge").textContent = status;
    tile.querySelector(".reason").textContent = reason || "";
    const empty = tile.querySelector(".empty");
    if (empty) empty.textContent = status === "uploading" ? "uploading" : status === "uploaded" ? "waiting for the pipeline" : "not uploaded";
  }
  async function upload(file) {
    const id = "local-" + (next++);
    const tile = pendingTile(file.name, "uploading", "");
    pending.set(id, tile);
    if (file.size > live.maxBytes) {
      setState(tile, "refused", file.size.toLocaleString() + " bytes is over the limit of " +
               live.maxBytes.toLocaleString() + " bytes: not uploaded");
      return;
    }
    let answer, grant;
    try {
      answer = await fetch(live.api, {method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({filename: file.name, contentType: file.type || "application/octet-stream", size: file.size})});
      grant = await answer.json();
    } catch (error) {
      setState(tile, "error", "the upload API could not be reached: " + error.message);
      return;
    }
    if (answer.status !== 201) {
      setState(tile, "refused", answer.status + ": " + (grant.message || "the upload API refused it"));
      return;
    }
    tile.dataset.key = grant.key;
    pending.delete(id);
    pending.set(grant.key, tile);
    let put;
    try {
      put = await fetch(grant.url, {method: grant.method || "PUT", headers: grant.headers, body: file});
    } catch (error) {
      setState(tile, "error", "S3 could not be reached: " + error.message);
      return;
    }
    if (!put.ok) {
      setState(tile, "refused", "S3 answered " + put.status + " to the upload");
      return;
    }
    setState(tile, "uploaded", "");
    follow(grant, tile);
  }
  // The tile's status comes from the upload API (GET /uploads/{id}, the caller's own upload), as any page of ours would
  // get it, until it settles; then the server's tile for it (its picture and placeholder) takes its place.
  // Whatever ends it (settled, an error, no record by the deadline), the tile leaves `pending`: refresh() then shows
  // the server's tile for the key whenever the table has one, so a tile is never left unwatched.
  async function follow(grant, tile) {
    const deadline = Date.now() + (live.unseen || 120000);
    try {
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, live.every || 1000));
        let answer, body;
        try {
          answer = await fetch(live.api + "/" + encodeURIComponent(grant.id), {cache: "no-store"});
          body = await answer.json();
        } catch (error) {
          answer = null;  // the API did not answer this time: ask again, until the deadline
        }
        if (answer === null || answer.status === 404) {  // 404: not recorded yet, the intake has not seen its event
          if (Date.now() < deadline) continue;
          setState(tile, "error", "the pipeline has not recorded this upload after " + Math.round((live.unseen || 120000) / 1000) +
                   " s; its tile appears here if it ever does");
          return;
        }
        if (answer.status !== 200) { setState(tile, "error", answer.status + ": " + (body.message || "")); return; }
        setState(tile, body.status, body.reason);
        if (live.settled.includes(body.status)) return;
      }
    } finally {
      pending.delete(grant.key);
    }
  }
  async function refresh() {
    try {
      const answer = await fetch(live.tiles, {cache: "no-store"});
      const data = await answer.json();
      counts.textContent = data.counts;
      document.querySelector('label[for="show-all"]').textContent = "All (" + data.tiles.length + ")";
      for (const item of data.tiles) {
        if (pending.has(item.key)) continue;  // followed through the upload API until it settles
        const selector = 'article[data-key="' + CSS.escape(item.key) + '"]';
        const shown = main.querySelector(selector);
        if (shown && shown.dataset.status === item.status && shown.dataset.html === item.html) continue;
        const holder = document.createElement("div");
        holder.innerHTML = item.html;
        const fresh = holder.firstElementChild;
        fresh.dataset.html = item.html;
        if (shown) shown.replaceWith(fresh); else { const none = main.querySelector(".none"); if (none) none.remove(); main.prepend(fresh); }
      }
    } catch (error) {
      counts.textContent = "the local cloud does not answer: " + error.message;
    }
  }
  const drop = document.getElementById("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    for (const file of event.dataTransfer.files) upload(file);
  });
  document.getElementById("pick").addEventListener("change", (event) => {
    for (const file of event.target.files) upload(file);
    event.target.value = "";
  });
  setInterval(refresh, live.every || 1000);
})();
"""
