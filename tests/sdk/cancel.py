"""Cancel a running task and a queued one (the server runs one task at a time and a slow engine): the running one
is seen running before the cancel and goes the running path (stopped by its worker); the queued
one is cancelled in the queue.
Usage: cancel.py VIDEO"""
import sys
import time

from helpers import APP, check, client, emit, wait_terminal
from inferencesh.models.errors import APIError

video = sys.argv[1]
c = client()
a = c.run({"app": APP, "input": {"video": video}}, wait=False)
b = c.run({"app": APP, "input": {"video": video}}, wait=False)
# Wait for a to run, then cancel both: b is still queued behind it.
deadline = time.time() + 30
while time.time() < deadline and c.get_task(a["id"]).data["status"] != 7:
    time.sleep(0.05)
# Else the "running" cancel below would be a second queued one.
check(c.get_task(a["id"]).data["status"] == 7, f"a is running: {c.get_task(a['id']).data['logs']}")
check(c.get_task(b["id"]).data["status"] == 2, "b is queued")
c.cancel(b["id"])
c.tasks.cancel(a["id"])
ta = wait_terminal(c, a["id"], 30)
tb = wait_terminal(c, b["id"], 30)
check(ta["status"] == 12 and tb["status"] == 12, f"both cancelled: {ta['status']} {tb['status']}")
check("cancelled while queued" in tb["logs"], tb["logs"])
check("cancelled before it started" in (tb.get("error") or ""), f"b's error: {tb.get('error')}")
# a went the running path: it started, and its worker (told to stop) ended it; "cancelling" may be logged between
# the two, unless the worker stopped before the cancel recorded it.
lines = [line.split("] ", 1)[-1] for line in ta["logs"].splitlines()]
check("running" in lines and lines[-1] == "cancelled", f"a's logs: {ta['logs']}")
check("cancelled while queued" not in ta["logs"], f"a was cancelled as a queued task: {ta['logs']}")
check(ta.get("error") == "The task was cancelled.", f"a's error: {ta.get('error')}")
# wait=True on a cancelled task raises as the SDK does for cancellations.
try:
    c.wait_for_completion(a["id"])
    check(False, "wait_for_completion raises for a cancelled task")
except RuntimeError as e:
    check("cancelled" in str(e), str(e))
# Cancelling a finished task is a conflict... except a cancelled one (idempotent).
c.cancel(a["id"])
done = c.run({"app": APP, "input": {"video": video}})
try:
    c.cancel(done["id"])
    check(False, "cancel of a completed task is refused")
except APIError as e:
    check(e.status_code == 409 and "already ended" in e.message, e.message)
emit({"a": ta["status"], "b": tb["status"]})
