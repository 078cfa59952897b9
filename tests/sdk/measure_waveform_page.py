"""A measurement, not a test: what drawing a mix's waveform in the page would cost (fetch the wav,
decodeAudioData, min/max per column, a 960x120 canvas), in headless Debian chromium. The server draws it
instead (GET /files/{id}/waveform.png); crates/foley-server/README.md has both sets of numbers.
Usage: python3 tests/sdk/measure_waveform_page.py MIX.wav   (e.g. a 20 s 48 kHz stereo float wav)"""
import functools
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading

from playwright.sync_api import sync_playwright

d = tempfile.mkdtemp()
shutil.copy(sys.argv[1], os.path.join(d, "mix.wav"))
open(os.path.join(d, "index.html"), "w").write("<!doctype html><title>m</title><body></body>")


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=d))
threading.Thread(target=srv.serve_forever, daemon=True).start()
JS = """async () => {
  const t0 = performance.now();
  const r = await fetch('/mix.wav?' + Math.random()); const buf = await r.arrayBuffer();
  const t1 = performance.now(); const bytes = buf.byteLength;
  const audio = await new OfflineAudioContext(2, 48000, 48000).decodeAudioData(buf);
  const t2 = performance.now();
  const W = 960, H = 120, c = document.createElement('canvas'); c.width = W; c.height = H; document.body.append(c);
  const g = c.getContext('2d'); g.fillStyle = '#f4f6fa'; g.fillRect(0, 0, W, H); g.fillStyle = '#9db8e6';
  const chans = [...Array(audio.numberOfChannels).keys()].map(i => audio.getChannelData(i)); const n = audio.length;
  for (let x = 0; x < W; x++) { let lo = 1, hi = -1; const a = Math.floor(x * n / W), b = Math.floor((x + 1) * n / W);
    for (const ch of chans) for (let i = a; i < b; i++) { const v = ch[i]; if (v < lo) lo = v; if (v > hi) hi = v; }
    g.fillRect(x, (1 - hi) * H / 2, 1, Math.max(1, (hi - lo) * H / 2)); }
  const t3 = performance.now();
  return {bytes, fetch_ms: t1 - t0, decode_ms: t2 - t1, draw_ms: t3 - t2, total_ms: t3 - t0};
}"""
with sync_playwright() as p:
    b = p.chromium.launch(executable_path=os.environ.get("FOLEY_CHROMIUM", "/usr/bin/chromium"),
                          args=["--no-sandbox", "--disable-gpu"])
    page = b.new_page()
    page.goto(f"http://127.0.0.1:{srv.server_address[1]}/")
    for _ in range(5):
        print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in page.evaluate(JS).items()}))
    b.close()
