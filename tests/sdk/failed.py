"""A task whose generation fails ends as failed (status 11) with foley's sentence in `error`.
Usage: failed.py VIDEO_PATH EXPECTED_TEXT"""
import sys
import time

from helpers import APP, check, client, emit

video, needle = sys.argv[1], sys.argv[2]
c = client()
task = c.run({"app": APP, "input": {"video": video, "seed": 1}}, wait=False)
deadline = time.time() + 240
while time.time() < deadline:
    task = c.get_task(task["id"]).data
    if task["status"] >= 10:
        break
    time.sleep(0.2)
check(task["status"] == 11, f"status {task['status']} (expected 11, failed)")
check(needle in (task.get("error") or ""), f"{needle!r} not in {task.get('error')!r}")
emit({"id": task["id"], "error": task["error"]})
