"""Runs the code blocks of the README's "Use it as a drop-in endpoint" section, in order, as a reader would.

Every fenced block of that section must follow a `<!-- readme-test: NAME -->` line and NAME must be one this
script knows (so that no block goes unrun). `sh` blocks run in bash, `python` blocks are executed one after the
other in one namespace (like pasting them into one session), all in the current directory, which holds
`clip.mp4`. The first block (`serve`) starts `foley serve` from PATH; the others talk to it. Only these
placeholders are replaced:
  127.0.0.1:8080                      -> the address in FOLEY_URL (a free loopback port)
  https://example.com/clip.mp4        -> a loopback static server holding clip.mp4
  https://your-server.com/webhook,
  https://your-server.com/kling-callback -> loopback receivers
  /path/to/local/clip.mov             -> the mov clip given as argument
Environment added to the server (not written in the block): FOLEY_ALLOW_PRIVATE_URLS (the loopback stand-ins
above), FOLEY_WEBHOOK_BACKOFF_MS=200. Usage: readme.py README.md CLIP.mov   (cwd holds clip.mp4)"""
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

from helpers import BASE, Receiver, check, emit, serve_dir

readme, mov = sys.argv[1], sys.argv[2]
EXPECTED = ["serve", "run", "stream", "files", "webhook", "verify", "kling-create", "kling-get"]

text = open(readme, encoding="utf-8").read()
m = re.search(r"^## Use it as a drop-in endpoint\n(.*?)(?=^## )", text, re.S | re.M)
check(m is not None, "README has a '## Use it as a drop-in endpoint' section")
section = m.group(1)
blocks = []  # (name, lang, code)
for fence in re.finditer(r"(?:<!-- readme-test: ([\w-]+) -->\n)?```(\w*)\n(.*?)^```", section, re.S | re.M):
    name, lang, code = fence.group(1), fence.group(2), fence.group(3)
    check(name is not None, f"a code block of the section has no readme-test marker:\n{code}")
    check(lang in ("sh", "python"), f"block {name}: language {lang!r} is neither sh nor python")
    blocks.append((name, lang, code))
check([b[0] for b in blocks] == EXPECTED, f"README blocks {[b[0] for b in blocks]} != {EXPECTED} (add checks here)")

files = serve_dir(os.getcwd())
hook = Receiver()
callback = Receiver()
addr = BASE.split("//", 1)[1]
subs = [
    ("127.0.0.1:8080", addr),
    ("https://example.com/clip.mp4", files + "/clip.mp4"),
    ("https://your-server.com/webhook", hook.url),
    ("https://your-server.com/kling-callback", callback.url),
    ("/path/to/local/clip.mov", mov),
]


def prepare(code):
    for old, new in subs:
        code = code.replace(old, new)
    return code


def bash(name, code):
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", prepare(code)], capture_output=True, text=True, timeout=300)
    check(r.returncode == 0, f"block {name} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    print(f"--- {name}\n{r.stdout}", file=sys.stderr)
    return r.stdout


namespace = {"__name__": "__readme__"}


def python(name, code):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(prepare(code), f"README:{name}", "exec"), namespace)
    print(f"--- {name}\n{out.getvalue()}", file=sys.stderr)
    return out.getvalue()


code = dict((b[0], b[2]) for b in blocks)
timings = {}

# serve: the block as written, in its own session so that the server and its shell are stopped together.
env = dict(os.environ, FOLEY_ALLOW_PRIVATE_URLS="true", FOLEY_WEBHOOK_BACKOFF_MS="200")
log = open("serve.log", "w")
t0 = time.time()
server = subprocess.Popen(["bash", "-euo", "pipefail", "-c", prepare(code["serve"])], env=env, stdout=log,
                          stderr=subprocess.STDOUT, start_new_session=True)
try:
    deadline = time.time() + 120
    ready = False
    while time.time() < deadline and server.poll() is None and not ready:
        try:
            ready = urllib.request.urlopen(BASE + "/health", timeout=2).status == 200
        except Exception:
            time.sleep(0.1)
    check(ready, "the serve block started a server that answers /health:\n" + open("serve.log").read())
    timings["serve_ready_s"] = round(time.time() - t0, 2)
    secret = re.search(r"FOLEY_SIGNING_SECRET=(\S+)", code["serve"]).group(1)
    key = re.search(r"FOLEY_API_KEYS=([^\s,]+)", code["serve"]).group(1)
    check(os.environ.get("INFERENCE_API_KEY") == key, "the test exports the README's key as INFERENCE_API_KEY")

    t = time.time()
    out = python("run", code["run"])
    res = namespace["result"]
    check(res["status"] == 10 and res["output"]["video"]["uri"].startswith(BASE), f"run: {res.get('status')}")
    check("'audio'" in out and "'seed'" in out, f"run printed the output: {out[:300]}")
    timings["run_s"] = round(time.time() - t, 2)

    t = time.time()
    out = python("stream", code["stream"])
    check(re.search(r"progress \d+% \(\w+\)", out), f"stream printed progress from the logs: {out[:500]}")
    check("output: {" in out and "bgm_audio" in out, f"stream printed the output: {out[-500:]}")
    timings["stream_s"] = round(time.time() - t, 2)

    t = time.time()
    python("files", code["files"])
    res = namespace["result"]
    check(res["status"] == 10, f"files: the URL input completed ({res.get('status')})")
    check(res["input"]["video"] == files + "/clip.mp4", f"the URL was passed through: {res['input']['video']}")
    timings["files_s"] = round(time.time() - t, 2)
    # The first call of that block (the local mov) completed as mov: the SDK returned before the second ran.
    # Its task is the newest but one on the list of this key.
    page = json.load(urllib.request.urlopen(urllib.request.Request(
        BASE + "/tasks?limit=2", headers={"Authorization": f"Bearer {key}"}), timeout=10))["data"]
    mov_task = page["items"][1]
    check(mov_task["status"] == 10 and mov_task["output"]["video"]["content_type"] == "video/quicktime",
          f"local mov uploaded and answered as mov: {mov_task['status']} {mov_task.get('output')}")

    t = time.time()
    out = python("webhook", code["webhook"])
    task = namespace["task"]
    check(out.split() == [task["id"], "2"], f"webhook block printed id and queued status: {out!r}")
    hook.wait(1, timeout=120)
    headers, body = hook.calls[0]
    payload = json.loads(body)
    check(payload["id"] == task["id"] and payload["status"] == 10, f"webhook payload {payload}")
    timings["webhook_s"] = round(time.time() - t, 2)

    python("verify", code["verify"])
    verify = namespace["verify"]
    sig = headers.get("X-Foley-Signature") or headers.get("x-foley-signature")
    check(verify(secret, sig, body), "the README's verify() accepts the server's webhook")
    check(not verify(secret, sig, body + b" "), "verify() refuses a changed body")
    check(not verify("another-secret", sig, body), "verify() refuses another secret")
    check(not verify(secret, "garbage", body), "verify() refuses a malformed header")

    t = time.time()
    out = bash("kling-create", code["kling-create"])
    created = json.loads(out)
    check(created["code"] == 0 and created["data"]["task_status"] == "submitted", f"kling create: {created}")
    check(created["data"]["task_info"]["external_task_id"] == "shot-042", f"external id kept: {created}")
    out = bash("kling-get", code["kling-get"])
    got, dec, i = [], json.JSONDecoder(), 0
    while out[i:].strip():  # curl -s prints the two bodies back to back
        i += len(out[i:]) - len(out[i:].lstrip())
        obj, n = dec.raw_decode(out, i)
        got.append(obj)
        i = n
    check(len(got) == 2 and all(g["code"] == 0 and g["data"]["task_id"] == created["data"]["task_id"] for g in got),
          f"kling get by task id and by external id: {got}")
    deadline = time.time() + 120
    while time.time() < deadline and not any(json.loads(b)["data"]["task_status"] == "succeed" for _, b in callback.calls):
        time.sleep(0.1)
    statuses = [json.loads(b)["data"]["task_status"] for _, b in callback.calls]
    check("succeed" in statuses, f"the callback_url got the finished task: {statuses}")
    timings["kling_s"] = round(time.time() - t, 2)
finally:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
emit({"blocks": [b[0] for b in blocks], "timings": timings, "kling_callbacks": statuses})
