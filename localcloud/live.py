"""The live gallery `python -m localcloud up` serves on 127.0.0.1 (ops/gallery.py draws it).

  GET /                   the page, with the upload API switched on: a file goes to the API for a one-use grant,
                          then from the browser straight to the uploads bucket (the bucket's CORS rule admits this
                          page's origin only)
  GET /tiles.json         every record as a tile, for the page to redraw the ones that changed (an upload of the
                          page's own is followed through the upload API's GET /uploads/{id} until it settles)
  GET /thumbnails/<key>   a redirect to a presigned GET of that thumbnail, valid for LINK_SECONDS

No image byte passes through this server, either way. It answers only for its own host (DNS rebinding) and only GET,
and every answer carries the security headers (localcloud/loopback.py); the page's Content-Security-Policy lets it run
only its own inline style and script (by a nonce made for each answer), load images from here and the emulator, and
connect to here, the upload API and the emulator's S3.
"""
from __future__ import annotations

import json
import secrets
import threading
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from handlers.names import SETTLED, THUMBNAILS_PREFIX, StackOutput
from localcloud import loopback
from localcloud.cloud import LocalCloud
from localcloud.overrides import showcase
from ops import gallery

LINK_SECONDS = 300
TITLE = "claimcheck: the local cloud, live"
POLL_MS = 1000
# How long the page asks about an upload the API does not know yet (404) before it says so on the tile and stops: the
# intake records an upload seconds after its PUT, so two minutes means its event is lost or the pipeline is stopped.
UNSEEN_MS = 120_000
DEFAULT_PORT = 8000


class LiveGallery:
    def __init__(self, port: int | None = None):
        live = self

        class Handler(loopback.Handler):
            def do_GET(self) -> None:  # noqa: N802 - http.server calls it by this name
                live._serve(self)

        # Bound before the cloud is deployed: the uploads bucket's CORS rule names this origin. No port given: the
        # usual one, or a free one when something else has it.
        try:
            self._server = ThreadingHTTPServer(("127.0.0.1", DEFAULT_PORT if port is None else port), Handler)
        except OSError:
            if port is not None:
                raise
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="live-gallery")
        self.cloud: LocalCloud | None = None

    def config(self) -> dict[str, Any]:
        """What the local cloud deploys with for this page: the upload API, with browsers at this origin allowed, and
        the stages the demo shows (overrides.showcase)."""
        return {**showcase(), "uploadApi": True, "uploadAllowedOrigins": [self.origin, f"http://localhost:{self.port}"]}

    def start(self, cloud: LocalCloud) -> LiveGallery:
        self.cloud = cloud
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which never ran if start() did not
            self._server.shutdown()
        self._server.server_close()

    def images(self) -> list[dict[str, Any]]:
        """Every record as the gallery shows it, the newest first."""
        assert self.cloud is not None
        return gallery.views(self.cloud.records().values())

    @staticmethod
    def link(key: str, output: dict[str, Any]) -> str:
        return "/thumbnails/" + quote(output["key"])

    def page(self, nonce: str | None = None) -> str:
        assert self.cloud is not None
        settings = self.cloud.settings()
        return gallery.page(self.images(), self.link, TITLE, emulated=True, live={
            "api": f"{self.cloud.upload_api_url}/uploads", "maxBytes": settings.max_upload_bytes,
            "tiles": "/tiles.json", "every": POLL_MS, "unseen": UNSEEN_MS,
            "settled": sorted(SETTLED)}, nonce=nonce)

    def page_policy(self, nonce: str) -> str:
        """The page's Content-Security-Policy: its own inline style and script (this answer's nonce), thumbnails from
        here and from the emulator (where /thumbnails/ redirects), placeholders drawn as data: images, fetches to here, the upload API (grants) and the
        emulator's S3 (the browser's PUT); nothing else, and no page may frame it."""
        assert self.cloud is not None
        s3, api = self.cloud.endpoint_of("s3"), self.cloud.upload_api_url
        return (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self' data: {s3}; "
                f"connect-src 'self' {api} {s3}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

    def _serve(self, request: loopback.Handler) -> None:
        if request.headers.get("Host") not in loopback.hosts(self.port):
            return _answer(request, 421, "text/plain", loopback.misdirected_message(self.port).encode())
        path = urlsplit(request.path).path
        if path == "/":
            nonce = secrets.token_urlsafe(16)
            return _answer(request, 200, "text/html; charset=utf-8", self.page(nonce).encode(), self.page_policy(nonce))
        if path == "/tiles.json":
            return _answer(request, 200, "application/json", json.dumps(gallery.tiles(self.images(), self.link)).encode())
        if path.startswith("/thumbnails/"):
            return self._thumbnail(request, unquote(path.removeprefix("/thumbnails/")))
        return _answer(request, 404, "text/plain", b"not here: / is the gallery")

    def _thumbnail(self, request: loopback.Handler, key: str) -> None:
        assert self.cloud is not None
        if not key.startswith(THUMBNAILS_PREFIX):
            return _answer(request, 404, "text/plain", b"not a thumbnail")
        url = self.cloud.client("s3").generate_presigned_url(
            "get_object", Params={"Bucket": self.cloud.outputs[StackOutput.THUMBNAILS_BUCKET], "Key": key}, ExpiresIn=LINK_SECONDS)
        return _answer(request, 302, "text/plain", b"", headers={"Location": url})


def _answer(request: loopback.Handler, status: int, content_type: str, data: bytes,
            policy: str = loopback.API_POLICY, headers: dict[str, str] | None = None) -> None:
    request.send_response(status)
    for name, value in {"Content-Type": content_type, **(headers or {}), "Content-Length": str(len(data)),
                        "Cache-Control": "no-store"}.items():
        request.send_header(name, value)
    request.policy = policy
    request.end_headers()
    request.wfile.write(data)
