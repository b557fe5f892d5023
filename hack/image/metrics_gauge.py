"""A serving pod's metrics endpoint whose load follows a schedule, for autoscaling
tests on a real kubelet. Run with the python test image's interpreter (stdlib only):

    python3.11 metrics_gauge.py --port 8080 --schedule 0:1,20:5

serves GET /metrics in the Prometheus text format: one gauge (--name, default
egpu_inflight_requests, the operator's default for the Concurrency metric) whose
value is the schedule's latest step: 1 from the start, 5 from 20 s after it. Each
step is printed with the wall-clock time when it begins ("value 5 at T").
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse_schedule(text: str) -> list[tuple[float, float]]:
    """The steps of "0:1,20:5": [(0, 1), (20, 5)], (seconds after the start, value)."""
    wrong = SystemExit(f"--schedule {text!r}: steps 'SECONDS:VALUE', in order, from 0")
    try:
        pairs = [part.partition(":") for part in text.split(",")]
        steps = [(float(at), float(value)) for at, _, value in pairs]
    except ValueError:
        raise wrong from None
    if steps[0][0] != 0 or [s[0] for s in steps] != sorted(s[0] for s in steps):
        raise wrong
    return steps


def value_at(steps: list[tuple[float, float]], elapsed: float) -> float:
    return [value for at, value in steps if at <= elapsed][-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--schedule", required=True, help="SECONDS:VALUE,... from 0")
    parser.add_argument("--name", default="egpu_inflight_requests")
    args = parser.parse_args()
    steps = parse_schedule(args.schedule)
    start = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            if self.path != "/metrics":
                self.send_error(404)
                return
            value = value_at(steps, time.monotonic() - start)
            body = f"# TYPE {args.name} gauge\n{args.name} {value:g}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:  # one line a scrape is noise
            pass

    def announce() -> None:
        for at, value in steps:
            time.sleep(max(0.0, start + at - time.monotonic()))
            print(f"value {value:g} at {time.time():.3f}", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    ThreadingHTTPServer(("", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
