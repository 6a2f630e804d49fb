"""A local HTTP server that speaks the part of Slack's Web API the alerts use: the tests'
Slack, and the live demo's when no SLACK_BOT_TOKEN is set (it prints what it receives)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


class SlackServer:
    """`chat.postMessage` and `auth.test` on 127.0.0.1; checks the bearer token."""

    def __init__(self, token: str, on_message: Callable[[dict], None] | None = None) -> None:
        self.token = token
        self.on_message = on_message
        self.messages: list[dict] = []
        self.rejected: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length).decode()
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    body = json.loads(raw or "{}")
                else:
                    body = {k: v[0] for k, v in parse_qs(raw).items()}
                method = self.path.rsplit("/", 1)[-1]
                if self.headers.get("Authorization") != f"Bearer {server.token}":
                    server.rejected.append(method)
                    reply = {"ok": False, "error": "invalid_auth"}
                elif method == "chat.postMessage":
                    server.messages.append(body)
                    if server.on_message:
                        server.on_message(body)
                    reply = {
                        "ok": True,
                        "channel": body.get("channel"),
                        "ts": f"{time.time():.6f}",
                        "message": {"text": body.get("text")},
                    }
                elif method == "auth.test":
                    reply = {"ok": True, "user": "shopsmart-bot"}
                else:
                    reply = {"ok": False, "error": "unknown_method"}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> SlackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for_messages(self, count: int, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        return list(self.messages)
