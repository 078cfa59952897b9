"""Invalid requests surface as the SDK's APIError carrying foley's sentence.
Usage: errors.py SHORT_VIDEO GOOD_VIDEO TEXT_FILE"""
import sys

from helpers import APP, check, client, emit
from inferencesh.models.errors import APIError

short, good, text = sys.argv[1:4]
c = client()
seen = {}


def expect(name, status, needle, params, key=None):
    cl = client(key) if key else c
    try:
        cl.run(params, wait=False)
    except APIError as e:
        check(e.status_code == status, f"{name}: status {e.status_code} != {status} ({e.message})")
        check(needle in e.message, f"{name}: {needle!r} not in {e.message!r}")
        seen[name] = e.message
        return
    check(False, f"{name}: no APIError")


expect("short", 422, "video: video is 2.52 s long; it must be between 3 and 20 s", {"app": APP, "input": {"video": short}})
expect("prompt", 422, "sound_effect_prompt: is 201 characters long; the limit is 200",
       {"app": APP, "input": {"video": good, "sound_effect_prompt": "a" * 201}})
expect("bgm", 422, "bgm_prompt", {"app": APP, "input": {"video": good, "bgm_prompt": "é" * 201}})
expect("app", 404, 'The app "someone/other-app" does not exist', {"app": "someone/other-app", "input": {"video": good}})
expect("key", 401, "The API key is not valid", {"app": APP, "input": {"video": good}}, key="inf_wrong")
expect("not_video", 422, "not an mp4/mov video", {"app": APP, "input": {"video": text}})
expect("missing", 422, "video: is required", {"app": APP, "input": {"sound_effect_prompt": "x"}})
expect("unknown_field", 422, "unknown field `colour`", {"app": APP, "input": {"video": good, "colour": "red"}})
expect("wrong_type", 422, "input:", {"app": APP, "input": {"video": good, "asmr_mode": "yes"}})
expect("steps", 422, "num_steps", {"app": APP, "input": {"video": good, "num_steps": 0}})
expect("scheme", 422, "video:", {"app": APP, "input": {"video": "ftp://example.com/x.mp4"}})
emit(seen)
