"""client.run against foley, each way the hosted page documents: wait=True with a local path (auto-upload),
a loopback URL (passed through, fetched by the server), raw base64 and a data URI (auto-upload),
stream=True, and files/tasks helpers. Usage: run.py SCENARIO VIDEO_PATH"""
import base64
import os
import sys

from helpers import APP, check, check_output, client, emit, serve_dir
from inferencesh import TaskStatus

scenario, video = sys.argv[1], sys.argv[2]
c = client()

if scenario == "local":
    result = c.run({"app": APP, "input": {"video": video, "sound_effect_prompt": "ocean waves, seagulls",
                                          "bgm_prompt": "calm piano", "asmr_mode": False}})
    check_output(result)
    check("bgm_audio" in result["output"], "bgm stem when a bgm prompt is given")
    # The video was uploaded: its uri is in the echoed input, not the local path.
    check(result["input"]["video"].startswith(c._base_url + "/files/"), f"uploaded uri {result['input']['video']}")
    files = c.tasks.files(result["id"]).data
    check({f["role"] for f in files} == {"input", "output"}, f"task files {files}")
    c.tasks.delete(result["id"], files=True)
    try:
        c.get_task(result["id"])
        check(False, "deleted task is gone")
    except Exception as e:  # APIError 404
        check(getattr(e, "status_code", None) == 404, f"deleted -> {e}")
    emit({"id": result["id"], "output_keys": sorted(result["output"])})

elif scenario == "url":
    base = serve_dir(os.path.dirname(video))
    url = f"{base}/{os.path.basename(video)}"
    result = c.run({"app": APP + "@latest", "input": {"video": url, "asmr_mode": True}})
    check_output(result)
    check(result["input"]["video"] == url, "a URL is passed through untouched by the SDK")
    emit({"id": result["id"]})

elif scenario == "base64":
    raw = open(video, "rb").read()
    b64 = base64.b64encode(raw).decode()
    r1 = c.run({"app": APP, "input": {"video": b64}})
    check_output(r1)
    r2 = c.run({"app": APP, "input": {"video": "data:video/mp4;base64," + b64}})
    check_output(r2)
    emit({"ids": [r1["id"], r2["id"]]})

elif scenario == "base64_prompt":
    # The SDK uploads any 16+ char string that is valid base64 as a file; foley restores such prompts.
    result = c.run({"app": APP, "input": {"video": video, "sound_effect_prompt": "oceanwavesseagul"}})
    check(result["status"] == 10, "completed")
    check(result["input"]["sound_effect_prompt"] == "oceanwavesseagul", f"prompt {result['input']}")
    emit({"id": result["id"]})

elif scenario == "mov":
    result = c.run({"app": APP, "input": {"video": video}})
    check_output(result, container="video/quicktime")
    emit({"id": result["id"]})

elif scenario == "stream":
    updates = list(c.run({"app": APP, "input": {"video": video, "sound_effect_prompt": "rain"}}, stream=True))
    statuses = [u["status"] for u in updates]
    check(statuses[-1] == TaskStatus.COMPLETED, f"last status {statuses}")
    check(any(s < 10 for s in statuses[:-1]), f"non-terminal updates before the output: {statuses}")
    check(TaskStatus.RUNNING in statuses, f"running seen: {statuses}")
    check(updates[-1]["output"] and updates[-1]["output"]["video"]["uri"], "last update carries the output")
    check(all(u.get("output") is None for u in updates[:-1]), "no output before completion")
    logs = updates[-1]["logs"]
    check("progress" in logs and "%" in logs, f"progress lines in logs: {logs}")
    # Progress in every snapshot of the raw task (the SDK strips it from stream updates).
    t = c.get_task(updates[-1]["id"]).data
    check(t["progress"] == 100, f"progress {t.get('progress')}")
    emit({"statuses": statuses})
else:
    check(False, f"unknown scenario {scenario}")
