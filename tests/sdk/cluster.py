"""Cluster scenarios: two API nodes (FOLEY_URL = A, FOLEY_URL_B = B) in front of worker processes.
`load VIDEO N`: N submissions spread over A and B, each with a webhook to one receiver; all complete, every
output downloads from the node that did not take the submission, and the receiver gets exactly one call per task.
`cancel VIDEO`: a task submitted through B and running on a worker is cancelled through A; it ends cancelled
within 2 s. `submit VIDEO N STEPS` submits N tasks of STEPS sampling steps through A and prints their ids.
`isolate VIDEO`: a task of key A (INFERENCE_API_KEY) submitted through A; key B (FOLEY_KEY_B), calling through B,
gets for it exactly what it gets for an unknown id (404, same body) on every by-id route, its cancel while the task
runs and its delete once it ended change nothing: A still gets the task, completed, through either node.
Prints a JSON summary."""
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

import requests
from helpers import APP, Receiver, check, client, emit, verify_signature, wait_terminal
from inferencesh import inference

A = os.environ["FOLEY_URL"]
B = os.environ.get("FOLEY_URL_B", A)
a, b = client(), inference(base_url=B)


def on(base, uri):
    """The same (signed) URL on another node."""
    u, n = urlsplit(uri), urlsplit(base)
    return urlunsplit((n.scheme, n.netloc, u.path, u.query, u.fragment))


def load(video, n):
    hook = Receiver()
    uri = a.files.upload(video)["uri"]  # uploaded through A, used through both
    t0 = time.time()

    def submit(i):
        c = a if i % 2 == 0 else b
        return c.run({"app": APP, "input": {"video": uri, "seed": i}, "webhook": hook.url}, wait=False)["id"]

    with ThreadPoolExecutor(max_workers=8) as ex:
        ids = list(ex.map(submit, range(n)))
    t_submit = time.time() - t0
    ends = {}
    for i, tid in enumerate(ids):
        other = b if i % 2 == 0 else a
        ends[tid] = wait_terminal(other, tid, 600)
    t_done = time.time() - t0
    bad = {tid: t["status"] for tid, t in ends.items() if t["status"] != 10}
    check(not bad, f"all complete: {bad}")
    for i, tid in enumerate(ids):
        other = B if i % 2 == 0 else A
        out = ends[tid]["output"]
        for key in ("video", "audio"):
            r = requests.get(on(other, out[key]["uri"]), timeout=30)
            check(r.status_code == 200 and len(r.content) == out[key]["size"], f"{key} of {tid} from {other}: {r.status_code}")
        r = requests.get(on(other, out["audio"]["uri"]), headers={"Range": "bytes=0-3"}, timeout=30)
        check(r.status_code == 206 and r.content == b"RIFF", f"range request: {r.status_code} {r.content[:8]!r}")
    hook.wait(n, 120)
    time.sleep(3)  # a second delivery of any task would come in now
    per_task = {}
    for headers, body in hook.calls:
        verify_signature(headers, body)
        tid = json.loads(body)["id"]
        per_task[tid] = per_task.get(tid, 0) + 1
    check(sorted(per_task) == sorted(ids) and set(per_task.values()) == {1},
          f"one webhook per task: {len(hook.calls)} calls for {len(ids)} tasks, repeated: "
          f"{ {k: v for k, v in per_task.items() if v != 1} }")
    emit({"tasks": n, "submit_s": round(t_submit, 2), "all_done_s": round(t_done, 2), "webhooks": len(hook.calls)})


def cancel(video):
    # Many steps keep the tiny model busy long enough to cancel it mid-run.
    t = b.run({"app": APP, "input": {"video": video, "num_steps": 200}}, wait=False)
    deadline = time.time() + 60
    # Cancel once it samples (the cancel token is checked between steps; decoding and the encoders before them
    # run to their end).
    while time.time() < deadline and "(sampling)" not in a.get_task(t["id"]).data["logs"]:
        time.sleep(0.05)
    check(a.get_task(t["id"]).data["status"] == 7, "sampling on a worker")
    t0 = time.time()
    a.cancel(t["id"])
    end = wait_terminal(a, t["id"], 30)
    took = time.time() - t0
    check(end["status"] == 12, f"cancelled: {end['status']} {end['logs']}")
    check(took < 2.0, f"stopped {took:.2f}s after the cancel")
    emit({"cancel_s": round(took, 3)})


def isolate(video):
    key_b = os.environ["FOLEY_KEY_B"]
    auth_b = {"Authorization": f"Bearer {key_b}"}
    routes = [("GET", "/tasks/{}"), ("GET", "/tasks/{}/files"), ("GET", "/tasks/{}/stream"), ("POST", "/tasks/{}/cancel"),
              ("DELETE", "/tasks/{}"), ("DELETE", "/tasks/{}?files=true"), ("GET", "/v1/audio/video-to-audio/{}")]

    def same_as_missing(tid):
        unknown = "00000000-0000-4000-8000-000000000000"
        for method, route in routes:
            got = requests.request(method, B + route.format(tid), headers=auth_b, timeout=30)
            missing = requests.request(method, B + route.format(unknown), headers=auth_b, timeout=30)
            norm = lambda r, i: (r.status_code, {k: v for k, v in json.loads(r.text.replace(i, "ID")).items() if k != "request_id"})
            check(got.status_code == 404 and norm(got, tid) == norm(missing, unknown),
                  f"{method} {route} with key B through B: {got.status_code} {got.text} vs {missing.text}")

    t = a.run({"app": APP, "input": {"video": video, "num_steps": 60}}, wait=False)
    deadline = time.time() + 60
    while time.time() < deadline and a.get_task(t["id"]).data["status"] != 7:
        time.sleep(0.05)
    check(a.get_task(t["id"]).data["status"] == 7, "running on a worker")
    same_as_missing(t["id"])  # its cancel while it runs included
    end = wait_terminal(a, t["id"], 120)
    check(end["status"] == 10, f"A's task completed despite key B's cancel: {end['status']} {end['logs']}")
    same_as_missing(t["id"])  # its delete once it ended included
    for c in (a, inference(base_url=B)):
        check(c.get_task(t["id"]).data["status"] == 10, "A still gets its task through both nodes")
    emit({"isolated": t["id"], "routes": len(routes)})


if sys.argv[1] == "load":
    load(sys.argv[2], int(sys.argv[3]))
elif sys.argv[1] == "submit":
    uri = a.files.upload(sys.argv[2])["uri"]
    n, steps = int(sys.argv[3]), int(sys.argv[4])
    print(json.dumps([a.run({"app": APP, "input": {"video": uri, "num_steps": steps}}, wait=False)["id"] for _ in range(n)]))
elif sys.argv[1] == "cancel":
    cancel(sys.argv[2])
elif sys.argv[1] == "isolate":
    isolate(sys.argv[2])
else:
    check(False, "usage")
