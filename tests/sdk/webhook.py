"""wait=False + webhook (the hosted page's example): the loopback receiver gets the documented payload, signed
with HMAC; a receiver that fails first is retried. Usage: webhook.py VIDEO"""
import json
import os
import sys

from helpers import APP, Receiver, check, client, emit, verify_signature

video = sys.argv[1]
c = client()
rx = Receiver(fail_first=2)
task = c.run({"app": APP, "input": {"video": video}, "webhook": rx.url}, wait=False)
check(task["status"] in (2, 7), f"wait=False returns the queued task: {task}")
rx.wait(3, timeout=60)
headers, body = rx.calls[-1]
verify_signature(headers, body)
p = json.loads(body)
check(set(p) == {"id", "status", "output", "error", "session_id", "created_at", "updated_at"}, f"payload keys {sorted(p)}")
check(p["id"] == task["id"] and p["status"] == 10 and p["error"] == "", f"payload {p}")
check(p["output"]["video"]["uri"].startswith("http"), "payload output has file uris")
check(all(json.loads(b)["id"] == task["id"] for _, b in rx.calls), "every attempt carries the task")

if os.environ.get("FOLEY_NO_FAIL_CASE"):  # the real engine has no way to be told to fail
    emit({"attempts": len(rx.calls)})
    sys.exit(0)

# A failing task also notifies.
rx2 = Receiver()
t2 = c.run({"app": APP, "input": {"video": video, "sound_effect_prompt": "__fail__"}, "webhook": rx2.url}, wait=False)
rx2.wait(1)
p2 = json.loads(rx2.calls[0][1])
check(p2["status"] == 11 and "asked to fail" in p2["error"], f"failed payload {p2}")
emit({"attempts": len(rx.calls), "failed_error": p2["error"]})
