"""A local HTTP server that receives webhook deliveries in tests."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAILURE_ANSWER = b"internal: db password is hunter2"


class Receiver:
    """Records every POST (path, lower-cased headers, body, monotonic time); /fail answers 500 with
    FAILURE_ANSWER, /moved redirects to `redirect_to`, anything else answers 200."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, redirect_to: str = ""):
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(
                    {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body,
                     "at": time.monotonic()}
                )  # fmt: skip
                if self.path.startswith("/moved"):
                    self.send_response(302)
                    self.send_header("Location", redirect_to)
                    self.end_headers()
                    return
                status = 500 if self.path.startswith("/fail") else 200
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(FAILURE_ANSWER if status == 500 else b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
