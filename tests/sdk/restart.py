"""Restart scenario helpers. `submit VIDEO N` submits N tasks (wait=False) and prints their ids;
`submit_webhook VIDEO URL` submits one with a webhook; `wait IDS...` waits until every task is terminal and prints the statuses."""
import json
import sys

from helpers import APP, check, client, wait_terminal

c = client()
if sys.argv[1] == "submit":
    video, n = sys.argv[2], int(sys.argv[3])
    uri = c.files.upload(video)["uri"]
    print(json.dumps([c.run({"app": APP, "input": {"video": uri}}, wait=False)["id"] for _ in range(n)]))
elif sys.argv[1] == "submit_webhook":
    video, hook = sys.argv[2], sys.argv[3]
    print(json.dumps([c.run({"app": APP, "input": {"video": video}, "webhook": hook}, wait=False)["id"]]))
elif sys.argv[1] == "wait":
    ends = {i: wait_terminal(c, i, 300) for i in sys.argv[2:]}
    print(json.dumps({i: {"status": t["status"], "logs": t["logs"]} for i, t in ends.items()}))
else:
    check(False, "usage")
