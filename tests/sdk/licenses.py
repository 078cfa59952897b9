"""The licenses of the model weights (issue 16): `/health` reports the loaded model's, `/models` every built-in
bundle's with each file's terms. No key needed. Usage: licenses.py LOADED_MODEL ("tone-test" is no bundle)."""
import sys

import requests
from helpers import BASE, check, emit

loaded = sys.argv[1]
h = requests.get(BASE + "/health", timeout=10).json()
m = requests.get(BASE + "/models", timeout=10)
check(m.status_code == 200, f"/models -> {m.status_code} {m.text}")
m = m.json()
check(m["loaded"] == loaded and h["model"] == loaded, f"loaded {m['loaded']} / {h['model']}")
bundles = {b["name"]: b for b in m["models"]}
check(set(bundles) == {"large_44k_v2", "medium_44k", "small_44k", "small_16k", "tiny-test"}, f"bundles {list(bundles)}")
roles = ["network", "vae", "vocoder", "synchformer", "clip"]
for name, b in bundles.items():
    lic = b["licenses"]
    check([f["role"] for f in lic["files"]] == roles, f"{name}: files {lic['files']}")
    for f in lic["files"]:
        e = f["license"]
        check(e and all(e[k] for k in ("spdx", "name", "url", "source", "note")), f"{name} {f['role']}: {e}")
        check(e["url"].startswith("https://") and e["commercial"] in ("yes", "no", "unclear"), f"{name}: {e}")
    check(b["loaded"] == (name == loaded), f"{name} loaded flag")
for name in ("large_44k_v2", "medium_44k", "small_44k", "small_16k"):
    lic = bundles[name]["licenses"]
    check(lic["commercial"] == "no" and lic["notice"].startswith(f"{name} weights: non-commercial use only"), lic["notice"])
    check(lic["files"][0]["license"]["spdx"] == "CC-BY-NC-4.0", f"{name} network")
    check("NOT FOR COMMERCIAL USE" in lic["condition"], lic["condition"])
if loaded in bundles:
    check(m["licenses"] == bundles[loaded]["licenses"], "/models licenses = the loaded bundle's")
    hl = h["licenses"]
    check(hl["commercial"] == m["licenses"]["commercial"] and hl["notice"] == m["licenses"]["notice"], f"/health {hl}")
    check(hl["files"] == {f["role"]: f["license"]["spdx"] for f in m["licenses"]["files"]}, f"/health files {hl}")
else:
    check(m["licenses"] is None and h["licenses"] is None, "an engine that is no bundle has no licenses to report")
emit({"loaded": loaded, "notice": (m["licenses"] or {}).get("notice")})
