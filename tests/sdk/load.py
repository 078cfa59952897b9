"""N concurrent submissions against a queue of CAPACITY: exactly CAPACITY are admitted, the rest get APIError 429
"queue is full" and every 429 carries a Retry-After of whole seconds; accepted ones all complete, none lost.

The server must run one task at a time with no per-key limits (so that the bound met is the queue's). A blocker
task holds the one worker during the burst, so no queued task starts (and frees a place) while the submissions
race: the queue goes from empty to full, and the count admitted is the bound itself, not the bound plus however
many tasks ran meanwhile. BLOCKER is `hold` (the tone test engine's `__hold__` prompt: runs until cancelled) or
the path of a video that the engine takes long over (200 sampling steps). The blocker is cancelled after the burst.
Usage: load.py VIDEO N CAPACITY BLOCKER"""
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from helpers import APP, BASE, check, client, wait_terminal
from inferencesh.models.errors import APIError

video, n, capacity, blocker = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
check(n > capacity, f"N ({n}) must exceed CAPACITY ({capacity})")
c = client()
uri = c.files.upload(video)["uri"]  # one upload, n tasks

if blocker == "hold":
    block_input = {"video": uri, "sound_effect_prompt": "__hold__"}
else:
    block_input = {"video": c.files.upload(blocker)["uri"], "num_steps": 200}
block = c.run({"app": APP, "input": block_input}, wait=False)["id"]
deadline = time.time() + 60
while time.time() < deadline and c.get_task(block).data["status"] != 7:
    time.sleep(0.05)
check(c.get_task(block).data["status"] == 7, "the blocker is running before the burst")


def submit(i):
    try:
        return ("ok", c.run({"app": APP, "input": {"video": uri, "seed": i}}, wait=False)["id"])
    except APIError as e:
        return ("err", e.status_code, e.message, json.loads(e.response_body or "{}"))


t0 = time.time()
with ThreadPoolExecutor(max_workers=n) as ex:
    results = list(ex.map(submit, range(n)))
t_submit = time.time() - t0
blocker_after = c.get_task(block).data
# Had the blocker ended, a queued task could have started during the burst and made room for one more.
check(blocker_after["status"] == 7, f"the blocker still runs after the burst ({t_submit:.1f}s): "
      f"status {blocker_after['status']}; make it longer")
ok = [r[1] for r in results if r[0] == "ok"]
refused = [r for r in results if r[0] == "err"]
check(all(r[1] == 429 and "queue is full" in r[2] for r in refused), f"refusals: {refused[:3]}")
check(all(r[3].get("code") == "queue_full" for r in refused), f"refusal bodies: {[r[3] for r in refused[:3]]}")
check(all(f"({capacity} tasks waiting)" in r[2] for r in refused), f"the bound in the refusal: {refused[:1]}")
check(len(ok) + len(refused) == n, f"ok {len(ok)} + refused {len(refused)} != {n}")
check(len(ok) == capacity, f"exactly the queue bound admitted: {len(ok)} of {n} with a capacity of {capacity}")

# The SDK's APIError drops headers: the same request by hand, while the queue is still full, to read Retry-After.
headers = {"Authorization": f"Bearer {os.environ['INFERENCE_API_KEY']}"}
retry_after = []
for i in range(3):
    r = requests.post(f"{BASE}/apps/run", json={"app": APP, "input": {"video": uri, "seed": 1000 + i}},
                      headers=headers, timeout=30)
    check(r.status_code == 429, f"a submission to a full queue: {r.status_code} {r.text[:200]}")
    ra = r.headers.get("Retry-After")
    check(ra is not None and ra.isdigit() and 1 <= int(ra) <= 300,
          f"429 with Retry-After in whole seconds (1..300): {ra!r}")
    retry_after.append(int(ra))

c.cancel(block)
check(wait_terminal(c, block, 60)["status"] == 12, "the blocker is cancelled")
ends = [wait_terminal(c, i, 300)["status"] for i in ok]
t_all = time.time() - t0
check(all(s == 10 for s in ends), f"all accepted complete: {ends}")
print(json.dumps({"submitted": n, "capacity": capacity, "accepted": len(ok), "refused_429": len(refused),
                  "retry_after_s": retry_after, "submit_s": round(t_submit, 2), "all_done_s": round(t_all, 2)}))
