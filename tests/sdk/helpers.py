"""Shared helpers of the SDK scenarios: the client, loopback HTTP servers (file source, webhook receiver)."""
import hashlib
import hmac
import http.server
import json
import os
import sys
import threading
import time

from inferencesh import inference

BASE = os.environ["FOLEY_URL"]
APP = "klingai/video-to-audio"


def client(key=None):
    # The key comes from INFERENCE_API_KEY, as the hosted page documents, unless one is given.
    return inference(api_key=key, base_url=BASE) if key else inference(base_url=BASE)


def check(cond, msg):
    if not cond:
        print(f"CHECK FAILED: {msg}", file=sys.stderr)
        sys.exit(1)


def download(uri):
    import requests
    r = requests.get(uri, timeout=30)
    check(r.status_code == 200, f"GET {uri} -> {r.status_code}")
    return r


def check_output(task, container="video/mp4"):
    check(task["status"] == 10, f"status {task.get('status')}")
    out = task["output"]
    for key in ("video", "audio", "sfx_audio"):
        f = out[key]
        check(f["uri"].startswith(BASE), f"{key} uri {f['uri']}")
        r = download(f["uri"])
        check(len(r.content) == f["size"] and len(r.content) > 1000, f"{key} size {len(r.content)} vs {f['size']}")
    check(out["video"]["content_type"] == container, f"video type {out['video']['content_type']}")
    check(download(out["audio"]["uri"]).content[:4] == b"RIFF", "audio is a wav")
    check(out["duration"] >= 3 and out["sample_rate"] > 0, f"duration {out['duration']}")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


def serve_dir(directory):
    """A loopback static file server; returns its base URL."""
    handler = lambda *a, **k: _Quiet(*a, directory=directory, **k)  # noqa: E731
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_address[1]}"


class Receiver:
    """A loopback webhook receiver that answers `fail_first` 500s before accepting."""

    def __init__(self, fail_first=0):
        self.calls = []
        self.fail_first = fail_first
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.calls.append((dict(self.headers), body))
                code = 500 if len(outer.calls) <= outer.fail_first else 200
                self.send_response(code)
                self.end_headers()

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/hook"

    def wait(self, n, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline and len(self.calls) < n:
            time.sleep(0.05)
        check(len(self.calls) >= n, f"webhook calls {len(self.calls)} < {n}")


def verify_signature(headers, body):
    sig = headers.get("X-Foley-Signature") or headers.get("x-foley-signature")
    check(sig is not None, "webhook has X-Foley-Signature")
    parts = dict(p.split("=", 1) for p in sig.split(","))
    mac = hmac.new(os.environ["FOLEY_SIGNING_SECRET"].encode(), parts["t"].encode() + b"." + body, hashlib.sha256)
    check(hmac.compare_digest(mac.hexdigest(), parts["v1"]), "webhook HMAC signature verifies")
    check(abs(time.time() - int(parts["t"])) < 300, "webhook timestamp is fresh")


def wait_terminal(c, task_id, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        t = c.get_task(task_id).data
        if t["status"] >= 10:
            return t
        time.sleep(0.1)
    check(False, f"task {task_id} not terminal after {timeout}s")


def emit(obj):
    print(json.dumps(obj))
