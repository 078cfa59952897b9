"""Kling-style REST with plain requests: create by video_url and by video_id, get by task_id and
external_task_id, list, callbacks, error envelopes. Usage: kling.py VIDEO"""
import json
import os
import sys
import time

import requests
from helpers import BASE, Receiver, check, client, emit, serve_dir, verify_signature

video = sys.argv[1]
H = {"Authorization": "Bearer " + os.environ["INFERENCE_API_KEY"]}
EP = BASE + "/v1/audio/video-to-audio"


def wait_done(key, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = requests.get(f"{EP}/{key}", headers=H, timeout=10).json()
        check(r["code"] == 0, f"get {r}")
        if r["data"]["task_status"] in ("succeed", "failed"):
            return r["data"]
        time.sleep(0.1)
    check(False, "kling task did not end")


rx = Receiver()
url = serve_dir(os.path.dirname(video)) + "/" + os.path.basename(video)
r = requests.post(EP, headers=H, json={"video_url": url, "sound_effect_prompt": "footsteps", "asmr_mode": True,
                                       "external_task_id": "my-ext-1", "callback_url": rx.url}, timeout=60)
check(r.status_code == 200, f"create {r.status_code} {r.text}")
body = r.json()
check(body["code"] == 0 and body["message"] == "SUCCEED" and body["request_id"], f"envelope {body}")
d = body["data"]
check(d["task_status"] == "submitted" and d["task_info"]["external_task_id"] == "my-ext-1", f"data {d}")
check(isinstance(d["created_at"], int) and d["created_at"] > 1e12, "created_at in ms")
done = wait_done("my-ext-1")
check(done["task_status"] == "succeed" and done["task_id"] == d["task_id"], f"done {done}")
v = done["task_result"]["videos"][0]
a = done["task_result"]["audios"][0]
check(requests.get(v["url"], timeout=10).status_code == 200, "video url downloads")
check(requests.get(a["url_wav"], timeout=10).content[:4] == b"RIFF", "url_wav is a wav")
rx.wait(2)  # processing + succeed
last = json.loads(rx.calls[-1][1])
verify_signature(*rx.calls[-1])
check(last["code"] == 0 and last["data"]["task_status"] == "succeed", f"callback {last}")
check([json.loads(b)["data"]["task_status"] for _, b in rx.calls][0] == "processing", "a processing callback first")

# video_id: a file uploaded through POST /files (the SDK's upload).
fid = client().files.upload(video)["id"]
r = requests.post(EP, headers=H, json={"video_id": fid}, timeout=60).json()
check(r["code"] == 0, f"by id {r}")
check(wait_done(r["data"]["task_id"])["task_status"] == "succeed", "by id completes")

lst = requests.get(EP, headers=H, params={"pageNum": 1, "pageSize": 1}, timeout=10).json()
check(lst["code"] == 0 and len(lst["data"]) == 1 and lst["data"][0]["task_id"] == r["data"]["task_id"], f"list {lst}")
lst2 = requests.get(EP, headers=H, params={"pageNum": 2, "pageSize": 1}, timeout=10).json()
check(lst2["data"][0]["task_id"] == d["task_id"], "page 2 is the older task")

bad = requests.post(EP, headers=H, json={"video_id": fid, "video_url": url}, timeout=10)
check(bad.status_code == 422 and bad.json()["code"] != 0 and "exactly one" in bad.json()["message"], bad.text)
dup = requests.post(EP, headers=H, json={"video_id": fid, "external_task_id": "my-ext-1"}, timeout=10)
check(dup.status_code == 409 and "already used" in dup.json()["message"], dup.text)
noauth = requests.get(EP, timeout=10)
check(noauth.status_code == 401 and noauth.json()["code"] == 1000, noauth.text)
missing = requests.get(f"{EP}/nope", headers=H, timeout=10)
check(missing.status_code == 404 and missing.json()["code"] != 0, missing.text)
emit({"task": d["task_id"], "callbacks": len(rx.calls)})
