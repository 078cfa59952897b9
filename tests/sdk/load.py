"""N concurrent submissions against a small queue: accepted ones all complete, the rest get APIError 429 with
Retry-After, none lost. Usage: load.py VIDEO N"""
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from helpers import APP, check, client, wait_terminal
from inferencesh.models.errors import APIError

video, n = sys.argv[1], int(sys.argv[2])
c = client()
uri = c.files.upload(video)["uri"]  # one upload, n tasks


def submit(i):
    try:
        return ("ok", c.run({"app": APP, "input": {"video": uri, "seed": i}}, wait=False)["id"])
    except APIError as e:
        return ("err", e.status_code, e.message, json.loads(e.response_body or "{}"))


t0 = time.time()
with ThreadPoolExecutor(max_workers=n) as ex:
    results = list(ex.map(submit, range(n)))
t_submit = time.time() - t0
ok = [r[1] for r in results if r[0] == "ok"]
refused = [r for r in results if r[0] == "err"]
check(all(r[1] == 429 and "queue is full" in r[2] for r in refused), f"refusals: {refused[:3]}")
check(len(ok) + len(refused) == n and len(ok) >= 1 and len(refused) >= 1, f"ok {len(ok)} refused {len(refused)}")
ends = [wait_terminal(c, i, 300)["status"] for i in ok]
t_all = time.time() - t0
check(all(s == 10 for s in ends), f"all accepted complete: {ends}")
print(json.dumps({"submitted": n, "accepted": len(ok), "refused_429": len(refused),
                  "submit_s": round(t_submit, 2), "all_done_s": round(t_all, 2)}))
