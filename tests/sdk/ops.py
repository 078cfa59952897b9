"""/health, /metrics, /openapi.json, the page, auth and signed-URL rules. Usage: ops.py VIDEO"""
import sys

import requests
from helpers import APP, BASE, check, client, emit

video = sys.argv[1]
h = requests.get(BASE + "/health", timeout=10)
check(h.status_code == 200 and h.json()["status"] == "ok" and h.json()["model"] == "tone-test", h.text)
c = client()
done = c.run({"app": APP, "input": {"video": video}})
m = requests.get(BASE + "/metrics", timeout=10).text
for name in ("foley_tasks_total", "foley_task_seconds", "foley_queue_depth", "foley_tasks_submitted_total"):
    check(name in m, f"{name} in /metrics")
doc = requests.get(BASE + "/openapi.json", timeout=10).json()
for p in ("/apps/run", "/tasks/{id}/stream", "/files", "/v1/audio/video-to-audio", "/health", "/models"):
    check(p in doc["paths"], f"{p} in openapi")
page = requests.get(BASE + "/", timeout=10)
check(page.status_code == 200 and "text/html" in page.headers["content-type"] and "<form" in page.text, "page")
# No key, wrong key: 401 problem+json.
r = requests.get(f"{BASE}/tasks/{done['id']}", timeout=10)
check(r.status_code == 401 and r.headers["content-type"] == "application/problem+json", r.text)
check(set(r.json()) >= {"type", "title", "status", "detail"}, r.text)
# Signed download URLs: work without a key, refuse tampering and expiry.
uri = done["output"]["video"]["uri"]
check(requests.get(uri, timeout=10).status_code == 200, "signed url")
rng = requests.get(uri, headers={"Range": "bytes=0-99"}, timeout=10)
check(rng.status_code == 206 and len(rng.content) == 100, f"range request {rng.status_code}")
check(requests.get(uri.replace("sig=", "sig=0"), timeout=10).status_code == 403, "tampered signature")
import re
expired = re.sub(r"expires=\d+", "expires=1000", uri)
check(requests.get(expired, timeout=10).status_code == 403, "expired/altered expiry")
check(requests.get(uri.split("?")[0], timeout=10).status_code == 403, "unsigned")
emit({"ok": True})
