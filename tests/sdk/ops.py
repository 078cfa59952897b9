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
# GET /tasks: this key's tasks only (a second key sees none of them), each finished one with its waveform.
import os
auth = {"Authorization": "Bearer " + os.environ["INFERENCE_API_KEY"]}
mine = requests.get(BASE + "/tasks", headers=auth, timeout=10)
check(mine.status_code == 200, mine.text)
page_ = mine.json()["data"]
check(page_["total"] == 1 and page_["items"][0]["id"] == done["id"] and page_["limit"] == 20, f"/tasks {page_}")
other = requests.get(BASE + "/tasks", headers={"Authorization": "Bearer inf_second_key"}, timeout=10)
check(other.status_code == 200 and other.json()["data"]["total"] == 0, f"another key's list {other.text}")
check(requests.get(BASE + "/tasks?limit=0", headers=auth, timeout=10).status_code == 422, "limit 0 refused")
check(requests.get(BASE + "/tasks", timeout=10).status_code == 401, "/tasks needs a key")
check("/tasks" in doc["paths"], "/tasks in openapi")
wf = page_["items"][0]["waveform_url"]
img = requests.get(wf, timeout=10)
check(img.status_code == 200 and img.headers["content-type"] == "image/png" and img.content[:8] == b"\x89PNG\r\n\x1a\n",
      f"waveform {img.status_code} {img.headers.get('content-type')}")
check(requests.get(wf.replace("sig=", "sig=0"), timeout=10).status_code == 403, "waveform needs its signature")
again = requests.get(BASE + "/tasks", headers=auth, timeout=10).json()["data"]["items"][0]["waveform_url"]
# (unless the two calls straddle the hour the expiry is rounded to)
exp = lambda u: int(re.search(r"expires=(\d+)", u).group(1))  # noqa: E731
check(again == wf or exp(again) - exp(wf) == 3600, "the waveform URL stays the same across list calls (browsers keep the picture)")
check(requests.get(wf, timeout=10).content == img.content, "the same picture the second time (from the cache)")
not_wav = uri.replace("/content?", "/waveform.png?")
r = requests.get(not_wav, timeout=10)
check(r.status_code == 422 and "not a wav" in r.json()["detail"], f"waveform of a video: {r.status_code} {r.text}")
emit({"ok": True, "waveform_png_bytes": len(img.content)})
