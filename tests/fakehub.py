"""A local stand-in for the Hugging Face hub's file endpoint, so the real ``hf_hub_download`` (HEAD for metadata,
GET for content, blob cache with snapshot symlinks) runs against a folder laid out like the hub repo — offline."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def serve_repo(root: Path):
    """Serve ``root`` as dataset repo content at ``/datasets/<owner>/<name>/resolve/<rev>/<path>``.

    Returns ``(endpoint_url, requests, server)``; ``requests`` collects ``(method, repo_path)`` tuples."""
    requests: list[tuple[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _path(self) -> str:
            parts = self.path.split("?")[0].split("/")
            i = parts.index("resolve")
            return "/".join(parts[i + 2:])

        def _send(self, body: bool) -> None:
            rel = self._path()
            requests.append((self.command, rel))
            f = root / rel
            if not f.is_file():
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = f.read_bytes()
            self.send_response(200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_HEAD(self):  # noqa: N802
            self._send(body=False)

        def do_GET(self):  # noqa: N802
            self._send(body=True)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", requests, server
