"""foley serve --files s3://BUCKET/PREFIX, driven by the SDK; the bucket is checked with boto3 (installed with
moto). Usage:
  s3.py run VIDEO_PATH   upload + run + download (full and ranged) + objects in the bucket; delete(files=True)
                         removes them; prints {"video_uri", "ids"}
  s3.py down VIDEO_URI VIDEO_PATH   with the bucket gone: downloads, uploads and submissions are prompt 503s
Environment: FOLEY_S3_BUCKET, FOLEY_S3_PREFIX and the AWS_* variables of the bucket."""
import base64
import os
import sys
import time

import requests
from helpers import APP, BASE, check, check_output, client, download, emit

BUCKET = os.environ["FOLEY_S3_BUCKET"]
PREFIX = os.environ["FOLEY_S3_PREFIX"]
c = client()


def bucket():
    import boto3
    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])


def objects():
    resp = bucket().list_objects_v2(Bucket=BUCKET, Prefix=PREFIX + "/")
    return {o["Key"]: o["Size"] for o in resp.get("Contents", [])}


def file_id(uri):
    return uri.split("/files/", 1)[1].split("/")[0].split("?")[0]


def ranges(uri, full):
    n = len(full)
    r = requests.get(uri, headers={"Range": "bytes=0-99"}, timeout=30)
    check(r.status_code == 206 and r.content == full[:100], f"bytes=0-99 -> {r.status_code} {len(r.content)}")
    check(r.headers["content-range"] == f"bytes 0-99/{n}", f"content-range {r.headers.get('content-range')}")
    r = requests.get(uri, headers={"Range": "bytes=100-"}, timeout=30)
    check(r.status_code == 206 and r.content == full[100:], f"bytes=100- -> {r.status_code} {len(r.content)}")
    r = requests.get(uri, headers={"Range": "bytes=-50"}, timeout=30)
    check(r.status_code == 206 and r.content == full[-50:], f"bytes=-50 -> {r.status_code} {len(r.content)}")
    r = requests.get(uri, headers={"Range": f"bytes={n}-"}, timeout=30)
    check(r.status_code == 416 and r.headers.get("content-range") == f"bytes */{n}", f"past the end -> {r.status_code}")
    check(requests.get(uri, timeout=30).headers.get("accept-ranges") == "bytes", "accept-ranges")


scenario = sys.argv[1]
if scenario == "run":
    video = sys.argv[2]
    result = c.run({"app": APP, "input": {"video": video, "sound_effect_prompt": "rain on a tin roof"}})
    check_output(result)  # full downloads of video, audio, sfx: streamed from the bucket through foley
    out = result["output"]
    full = download(out["video"]["uri"]).content
    ranges(out["video"]["uri"], full)
    ids = {k: file_id(out[k]["uri"]) for k in ("video", "audio", "sfx_audio")}
    ids["input"] = file_id(result["input"]["video"])
    objs = objects()
    for k, fid in ids.items():
        key = f"{PREFIX}/{fid}"
        check(key in objs, f"{k} object {key} in the bucket: {sorted(objs)}")
        if k != "input":
            check(objs[key] == out[k]["size"], f"{k} object size {objs[key]} vs {out[k]['size']}")
    body = bucket().get_object(Bucket=BUCKET, Key=f"{PREFIX}/{ids['video']}")["Body"].read()
    check(body == full, "the bucket holds the bytes foley serves")

    # A second task, then delete(files=True): its input and outputs leave the bucket.
    raw = open(video, "rb").read()
    r2 = c.run({"app": APP, "input": {"video": "data:video/mp4;base64," + base64.b64encode(raw).decode()}})
    check_output(r2)
    keys2 = [f"{PREFIX}/{f['id']}" for f in c.tasks.files(r2["id"]).data]
    check(len(keys2) >= 4 and all(k in objects() for k in keys2), f"second task's objects {keys2}")
    c.tasks.delete(r2["id"], files=True)
    left = objects()
    check(not any(k in left for k in keys2), f"deleted task's objects are gone: {[k for k in keys2 if k in left]}")
    emit({"video_uri": out["video"]["uri"], "ids": ids, "objects": len(left)})

elif scenario == "down":
    uri, video = sys.argv[2], sys.argv[3]

    def problem(r, what):
        check(r.status_code == 503, f"{what}: {r.status_code} {r.text[:300]}")
        check(r.headers["content-type"] == "application/problem+json", f"{what}: {r.headers['content-type']}")
        detail = r.json()["detail"]
        check(detail.startswith("The file store is unavailable"), f"{what}: {detail}")
        check(r.headers.get("retry-after") == "5", f"{what}: retry-after {r.headers.get('retry-after')}")
        return detail

    t0 = time.time()
    d = problem(requests.get(uri, timeout=60), "download")
    t_download = time.time() - t0
    # Announcing an upload touches only the task store; its PUT needs the bucket.
    auth = {"Authorization": f"Bearer {os.environ['INFERENCE_API_KEY']}"}
    r = requests.post(f"{BASE}/files", headers=auth, timeout=30, json={"files": [
        {"filename": "clip.mp4", "content_type": "video/mp4", "size": os.path.getsize(video)}]})
    check(r.status_code == 200, f"POST /files -> {r.status_code} {r.text[:200]}")
    f = r.json()["data"][0]
    t1 = time.time()
    problem(requests.put(f["upload_url"], data=open(video, "rb").read(), timeout=60), "upload")
    t_upload = time.time() - t1
    raw = open(video, "rb").read()
    t2 = time.time()
    r = requests.post(f"{BASE}/apps/run", timeout=60, headers=auth, json={"app": APP, "input": {"video": "data:video/mp4;base64," + base64.b64encode(raw).decode()}})
    problem(r, "run with a data URI")
    t_run = time.time() - t2
    check(max(t_download, t_upload, t_run) < 40, f"prompt answers: {t_download:.1f} {t_upload:.1f} {t_run:.1f} s")
    emit({"detail": d, "seconds": [round(t_download, 2), round(t_upload, 2), round(t_run, 2)]})
else:
    check(False, f"unknown scenario {scenario}")
