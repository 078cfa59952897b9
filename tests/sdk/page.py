"""The web page in headless Chromium (Playwright driving Debian's /usr/bin/chromium): choose a video, fill
both prompts, ASMR on, generate, watch progress, get a player with the result and download links; a too-short
video shows the server's sentence. Usage: page.py VIDEO SHORT_VIDEO"""
import os
import sys

from helpers import BASE, check, emit
from playwright.sync_api import sync_playwright

video, short = sys.argv[1], sys.argv[2]
chromium = os.environ.get("FOLEY_CHROMIUM", "/usr/bin/chromium")
check(os.path.exists(chromium), f"{chromium} is missing (scripts/setup --tests installs Debian's chromium)")

with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
    page = browser.new_page()
    page.set_default_timeout(120_000)
    page.goto(BASE + "/")
    check("foley" in page.title(), page.title())
    notice = page.text_content("#license-notice:not([hidden])")  # the loaded model's licenses (issue 16)
    check("tone-test" in notice and "not recorded" in notice, f"license notice {notice!r}")
    page.fill("#key", os.environ["INFERENCE_API_KEY"])
    page.set_input_files("#video", video)
    page.fill("#sfx", "rain on a tin roof")
    page.fill("#bgm", "slow ambient pads")
    page.check("#asmr")
    check(page.text_content("#sfx-count") == "18/200", page.text_content("#sfx-count"))
    page.click("#run")
    page.wait_for_selector("#result:not([hidden])")
    status = page.text_content("#status")
    check(status.startswith("done:"), f"status {status!r}")
    check(page.get_attribute("#progress", "value") in ("100", None) or page.eval_on_selector("#progress", "e => e.value") == 100,
          "progress reached 100")
    src = page.get_attribute("#player", "src")
    check(src.startswith(BASE + "/files/") and "sig=" in src, f"player src {src}")
    links = page.eval_on_selector_all("#downloads a", "as => as.map(a => a.textContent)")
    check(len(links) == 4, f"downloads {links}")
    # The player got the file (metadata loaded, or at least no network/source error).
    page.wait_for_function("(() => { const v = document.getElementById('player'); return v.readyState >= 1 || v.error; })()")
    err = page.evaluate("document.getElementById('player').error && document.getElementById('player').error.code")
    duration = page.evaluate("document.getElementById('player').duration")
    check(err in (None, 4), f"player error {err}")  # 4 = codec unsupported by this chromium build
    # A bad video: the server's sentence appears on the page.
    page.set_input_files("#video", short)
    page.click("#run")
    page.wait_for_selector("#status.error")
    msg = page.text_content("#status")
    check("between 3 and 20 s" in msg, f"error shown: {msg!r}")
    browser.close()
emit({"status": status, "player_duration": duration, "player_error": err, "error_shown": msg})
