"""A demo webhook receiver for docker-compose: logs each delivery and answers like a real one.

Paths under /hooks/ always answer 200. Paths under /flaky/ answer 500 to about a third of
requests, so that the dashboard shows failures, retries and their lag. Anything else is 404.
Standard library only: runs in the plain python:3-slim image.
"""

import json
import random
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FLAKY_FAILURE_RATE = 1 / 3


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        if self.path.startswith("/hooks/"):
            status = 200
        elif self.path.startswith("/flaky/"):
            status = 500 if random.random() < FLAKY_FAILURE_RATE else 200
        else:
            status = 404
        try:
            service = json.loads(body).get("service_name", "?")
        except (ValueError, AttributeError):
            service = "?"
        print(
            f"{status} {self.path} webhook-id={self.headers.get('webhook-id')} service={service}",
            flush=True,
        )
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok\n" if status == 200 else b"try again\n")

    def log_message(self, *args):
        pass  # one line per delivery is printed above


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
