"""Against a server with default SSRF rules: URL inputs and webhooks aimed at loopback/link-local are refused
with a 422 naming the field. Usage: ssrf.py VIDEO"""
import sys

from helpers import APP, check, client, emit, serve_dir
from inferencesh.models.errors import APIError

video = sys.argv[1]
c = client()
seen = {}
for name, params in {
    "metadata": {"app": APP, "input": {"video": "http://169.254.169.254/latest/meta-data/v.mp4"}},
    "loopback": {"app": APP, "input": {"video": serve_dir("/tmp") + "/v.mp4"}},
    "webhook": {"app": APP, "input": {"video": video}, "webhook": "http://127.0.0.1:9/hook"},
}.items():
    try:
        c.run(params, wait=False)
        check(False, f"{name}: accepted")
    except APIError as e:
        check(e.status_code == 422 and "loopback, private or link-local" in e.message, f"{name}: {e.status_code} {e.message}")
        seen[name] = e.message
emit(seen)
