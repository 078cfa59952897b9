"""The web page in headless Chromium (Playwright driving Debian's /usr/bin/chromium).

Keyboard only (after the file, which a file chooser cannot take from Playwright's keyboard): Tab through the
form in order, type the key and both prompts, ASMR on with Space, Generate with Enter; a second task is queued
behind it and cancelled with Tab + Enter on its Cancel button. Then: the finished task shows the video, the mix
and stem players, four downloads, the settings used and a non-empty waveform picture; a running task is
cancelled; a reload keeps the task list; "Use these settings" runs the same video with the same seed again;
a too-short video shows the server's sentence; with FOLEY_OPERATOR_KEY, the operator's list says whose each task
is. Usage: page.py VIDEO SHORT_VIDEO"""
import os
import sys

from helpers import BASE, check, emit
from playwright.sync_api import sync_playwright

video, short = sys.argv[1], sys.argv[2]
chromium = os.environ.get("FOLEY_CHROMIUM", "/usr/bin/chromium")
check(os.path.exists(chromium), f"{chromium} is missing (scripts/setup --tests installs Debian's chromium)")
KEY = os.environ["INFERENCE_API_KEY"]

# What has the focus: its id, else its aria-label, else its tag.
FOCUSED = "(() => { const e = document.activeElement; return e ? (e.id || e.getAttribute('aria-label') || e.tagName.toLowerCase()) : null; })()"


def item(tid, status=None):
    return f'li.task[data-id="{tid}"]' + (f'[data-status="{status}"]' if status is not None else "")


def tab_to(page, name, limit=80):
    """Presses Tab until the element called `name` (see FOCUSED) has the focus."""
    seen = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        seen.append(page.evaluate(FOCUSED))
        if seen[-1] == name:
            return
    check(False, f"Tab never reached {name!r}; focus went through {seen}")


def newest(page, count):
    """Waits until the list holds `count` tasks; returns the id of the newest."""
    page.wait_for_function(f"document.querySelectorAll('#tasks li.task').length >= {count}")
    return page.eval_on_selector("#tasks li.task", "li => li.dataset.id")


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
    page = browser.new_page()
    page.set_default_timeout(120_000)
    page.goto(BASE + "/")
    check("foley" in page.title(), page.title())

    notice = page.text_content("#license-notice:not([hidden])")  # the loaded model's licenses (issue 16)
    check("tone-test" in notice and "not recorded" in notice, f"license notice {notice!r}")
    # Every control has an accessible name (a <label>, or aria-label on the buttons without text).
    unnamed = page.evaluate("""[...document.querySelectorAll('input, textarea, select, button')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
        .map(e => e.id || e.outerHTML)""")
    check(unnamed == [], f"controls without a label: {unnamed}")

    # Keyboard only, from the top of the page: the focus order is the reading order of the form.
    order = []
    for action in [KEY, "file", "rain on a tin roof", "slow ambient pads", "space", None, None]:
        page.keyboard.press("Tab")
        order.append(page.evaluate(FOCUSED))
        if action == "file":
            page.set_input_files("#video", video)
        elif action == "space":
            page.keyboard.press("Space")
        elif action:
            page.keyboard.type(action)
    check(order == ["key", "video", "sfx", "bgm", "asmr", "summary", "run"], f"focus order {order}")
    check(page.is_checked("#asmr"), "Space ticks the ASMR box")
    check(page.text_content("#sfx-count") == "18/200", page.text_content("#sfx-count"))
    page.keyboard.press("Enter")
    a = newest(page, 1)
    page.wait_for_selector(item(a) + " progress")
    check(page.evaluate(FOCUSED) == "run", "the focus stays on Generate after submitting")

    # A second task queues behind the first; its Cancel button is reached with Tab and pressed with Enter.
    page.keyboard.press("Enter")
    b = newest(page, 2)
    check(b != a, "a second task")
    tab_to(page, "Cancel task " + b[:8])
    page.keyboard.press("Enter")
    page.wait_for_selector(item(b, 12))
    check(page.text_content(item(b) + " .state") == "cancelled", page.text_content(item(b) + " .state"))
    check(page.evaluate("document.activeElement.dataset.id") == b, "the focus stays on the cancelled task")

    # The first one completes: players, downloads, settings and the waveform picture.
    page.wait_for_selector(item(a, 10))
    src = page.get_attribute(item(a) + " video", "src")
    check(src.startswith(BASE + "/files/") and "sig=" in src, f"player src {src}")
    captions = page.eval_on_selector_all(item(a) + " figcaption", "fs => fs.map(f => f.textContent)")
    check(captions == ["Video with its new audio", "Waveform of the mix", "Mix (wav)", "Effects stem", "Music stem"], f"{captions}")
    links = page.eval_on_selector_all(item(a) + " .downloads a", "as => as.map(a => a.textContent)")
    check(len(links) == 4, f"downloads {links}")
    settings = dict(zip(page.eval_on_selector_all(item(a) + " dt", "ds => ds.map(d => d.textContent)"),
                        page.eval_on_selector_all(item(a) + " dd", "ds => ds.map(d => d.textContent)")))
    check(settings.get("seed") == "42" and settings.get("steps") == "40" and settings.get("guidance (CFG)") == "6"
          and settings.get("ASMR profile") == "on" and settings.get("loudness", "").startswith("-20.0 LUFS target"),
          f"settings shown {settings}")
    img = item(a) + " img.waveform"
    page.wait_for_function(f"(() => {{ const i = document.querySelector('{img}'); return i && i.complete && i.naturalWidth > 0; }})()")
    # Non-empty: the picture has drawn pixels, not only its background.
    drawn = page.eval_on_selector(img, """i => {
        const c = document.createElement('canvas'); c.width = i.naturalWidth; c.height = i.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(i, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let k = 0; k < d.length; k += 4) if (d[k] !== d[0] || d[k + 1] !== d[1] || d[k + 2] !== d[2]) n++;
        return [c.width, c.height, n]; }""")
    check(drawn[0] == 960 and drawn[1] == 120 and drawn[2] > 960 * 10, f"waveform {drawn}")
    page.wait_for_function(f"(() => {{ const v = document.querySelector('{item(a)} video'); return v.readyState >= 1 || v.error; }})()")
    err = page.eval_on_selector(item(a) + " video", "v => v.error && v.error.code")
    duration = page.eval_on_selector(item(a) + " video", "v => v.duration")
    check(err in (None, 4), f"player error {err}")  # 4 = codec unsupported by this chromium build

    # A running task is cancelled too.
    page.click("#run")
    c = newest(page, 3)
    page.wait_for_selector(item(c, 7))
    page.click(item(c) + " button.cancel")
    page.wait_for_selector(item(c, 12))

    # A reload keeps the list (it is the server's list for this key, not the page's memory).
    page.reload()
    for tid, st in [(a, 10), (b, 12), (c, 12)]:
        page.wait_for_selector(item(tid, st))
    page.wait_for_function(f"(() => {{ const i = document.querySelector('{img}'); return i && i.complete && i.naturalWidth > 0; }})()")
    kept = page.eval_on_selector_all("#tasks li.task", "ls => ls.map(l => l.querySelector('.state').textContent)")

    # "Use these settings": the same video (no file chosen after the reload) and the same seed, run again.
    page.click(item(a) + " button.reuse")
    check(page.input_value("#seed") == "42" and page.input_value("#steps") == "40" and page.is_checked("#asmr"),
          "the form holds the settings")
    check(page.is_visible("#reuse-note"), "the page says which video it will use")
    page.click("#run")
    d = newest(page, 4)
    page.wait_for_selector(item(d, 10))
    again = page.eval_on_selector_all(item(d) + " dd", "ds => ds.map(d => d.textContent)")
    check(again[0] == "42", f"same seed {again}")

    # A bad video: the server's sentence appears on the page.
    page.set_input_files("#video", short)
    page.click("#run")
    page.wait_for_selector("#status.error")
    msg = page.text_content("#status")
    check("between 3 and 20 s" in msg, f"error shown: {msg!r}")

    # A client key's list names no owner; an operator key (FOLEY_OPERATOR_KEY) sees the same tasks, each saying
    # whose it is (the key's name).
    check(page.locator("#tasks .owner").count() == 0, "a client key's list names no owner")
    owners = []
    if os.environ.get("FOLEY_OPERATOR_KEY"):
        page.fill("#key", os.environ["FOLEY_OPERATOR_KEY"])
        page.dispatch_event("#key", "change")
        for tid in (a, b, c, d):
            page.wait_for_selector(item(tid) + " .owner")
        owners = page.eval_on_selector_all("#tasks li.task .owner", "os => os.map(o => o.textContent)")
        check(owners and all(o == "key key-1" for o in owners), f"owners shown to the operator: {owners}")
    browser.close()
emit({"focus_order": order, "after_reload": kept, "waveform": drawn, "player_duration": duration, "player_error": err,
      "error_shown": msg, "owners_for_operator": owners})
