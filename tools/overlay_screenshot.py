"""Open a model and its overlays in Model Explorer in headless Chromium: what a node shows, and a
screenshot (docs/overlay.png).

    python tools/overlay_screenshot.py -m models/mobilebert_int8.tflite --overlay sqnr.json \\
        --expand 'mobilebert_1/layer_5_' --out docs/overlay.png

The server is ``npmobilebert view --no-browser`` (the ``[view]`` extra); the browser is Chromium
driven by Selenium through chromedriver (Debian: ``apt-get install chromium chromium-driver``;
``pip install selenium``). A node is selected through the web app's own URL state
(``data={"models", "nodeData", "uiState": {"paneStates": [{"selectedNodeId", ...}]}}``, read
by Model Explorer's ``AppService``), and its info panel is read from the page: op name, node id,
namespace, output tensor names, and each overlay's value with the colour it is drawn in.
``tests/test_overlay_browser.py`` uses these helpers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1600,1000"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def chromium_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver), or None where either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ViewServer:
    """``npmobilebert view --no-browser`` in a child process, until ``close``."""

    def __init__(self, model: str, overlays: list[str], timeout_s: float = 120):
        self.port = free_port()
        env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   PYTHONUNBUFFERED="1")
        env.pop("DISPLAY", None)
        cmd = [sys.executable, "-m", "npmobilebert.cli", "view", "-m", model, "--no-browser",
               "--host", "127.0.0.1", "--port", str(self.port)]
        for o in overlays:
            cmd += ["--overlay", o]
        # the server logs every request: into a file, so that no pipe fills up and blocks it
        self.log = tempfile.NamedTemporaryFile("w+", prefix="npmb-view-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, text=True, env=env)
        deadline = time.monotonic() + timeout_s
        self.url = ""
        while time.monotonic() < deadline and self.proc.poll() is None and not self.url:
            time.sleep(0.3)
            self.url = next((ln.strip() for ln in Path(self.log.name).read_text().splitlines()
                             if ln.startswith(f"http://127.0.0.1:{self.port}/")), "")
        if not self.url:
            printed = Path(self.log.name).read_text().splitlines()
            self.close()
            raise RuntimeError("the view server printed no URL: " + " | ".join(printed[-5:]))
        self.base = f"http://127.0.0.1:{self.port}/"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)


def page_url(server: ViewServer, model: str, overlays: list[str], selected_node: str = "",
             graph_id: str = "", expanded: list[str] = ()) -> str:
    """The web app's URL for this model and overlays, with a node selected and layers expanded."""
    data = {"models": [{"url": os.path.abspath(model)}],
            "nodeData": [os.path.abspath(o) for o in overlays], "nodeDataTargets": [""] * len(overlays),
            "uiState": {"paneStates": [{"deepestExpandedGroupNodeIds": list(expanded),
                                        "selectedNodeId": selected_node, "selectedGraphId": graph_id,
                                        "selectedCollectionLabel": "", "widthFraction": 1}]}}
    return server.base + "?data=" + urllib.parse.quote(json.dumps(data))


def browser():
    """Headless Chromium under Selenium, with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        raise RuntimeError("chromium and chromedriver are needed (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = paths[0]
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tempfile.mkdtemp(prefix='npmb-chromium-')}"]:
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(paths[1]), options=opts)


_INFO_ROWS_JS = """
return [...document.querySelectorAll('table.metadata-table.info-attrs tr')].map(tr => {
  const k = tr.querySelector('td.key'), v = tr.querySelector('td.value');
  if (!k || !v) return null;
  const box = v.querySelector('div.container'), text = v.querySelector('.text-content');
  return [k.textContent.trim(), (text || v).textContent.trim(),
          box ? getComputedStyle(box).backgroundColor : null];
}).filter(r => r);
"""


def node_info(driver, url: str, node_id: str, overlay_names: list[str], timeout_s: float = 90) -> dict:
    """Load ``url`` (a node selected) and read its info panel once every overlay's row is there:
    {"op name", "id", "namespace", "outputs": [tensor names], "values": {overlay name: (text,
    css colour)}}."""
    driver.get(url)
    deadline = time.monotonic() + timeout_s
    rows: list = []
    while time.monotonic() < deadline:
        rows = driver.execute_script(_INFO_ROWS_JS)
        keys = {r[0] for r in rows}
        if ("id" in keys and any(r[0] == "id" and r[1] == node_id for r in rows)
                and all(name in keys for name in overlay_names)):
            break
        time.sleep(0.5)
    else:
        raise RuntimeError(f"node {node_id}: the info panel did not show it with every overlay"
                           f" within {timeout_s:.0f} s (rows: {[r[0] for r in rows][:12]})")
    info: dict = {"values": {}}
    for key, text, colour in rows:
        if key in overlay_names:
            info["values"][key] = (text, colour)
        elif key in ("op name", "id", "namespace") and key not in info:
            info[key] = text
    body = driver.execute_script("return document.body.innerText")
    outputs_part = body.split("OUTPUTS (", 1)[1] if "OUTPUTS (" in body else ""
    info["outputs"] = re.findall(r"^tensor_name\s*\n\s*(\S.*)$", outputs_part, flags=re.M)
    return info


def css_rgb(hex_colour: str) -> str:
    """'#a5d6a7' -> 'rgb(165, 214, 167)', as getComputedStyle writes it."""
    h = hex_colour.lstrip("#")
    return "rgb({}, {}, {})".format(*(int(h[i:i + 2], 16) for i in (0, 2, 4)))


def group_ids(model, prefix: str) -> list[str]:
    """Model Explorer's ids (``<namespace>___group___``) of the layers on the way to every op whose
    namespace (its first output tensor's name, first ';' part) starts with ``prefix``."""
    ids = set()
    for op in model.operators:
        name = model.tensors[op.outputs[0]].name.split(";")[0] if op.outputs else ""
        if name.startswith(prefix):
            parts = name.split("/")[:-1]
            ids.update("/".join(parts[:k]) + "___group___" for k in range(1, len(parts) + 1))
    return sorted(ids)


def screenshot(driver, url: str, out: str, settle_s: float = 6.0, wait_text: str = "Node data") -> None:
    """Load ``url``, wait until the web app shows ``wait_text`` and the graph settles, save a PNG."""
    driver.get(url)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and wait_text not in driver.execute_script(
            "return document.body.innerText"):
        time.sleep(0.5)
    time.sleep(settle_s)
    driver.save_screenshot(out)


def png_rgb(path: str):
    """The RGB pixels of an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium's screenshots
    are), as a [height, width, 3] uint8 array: no imaging library needed (PNG spec, section 9)."""
    import struct
    import zlib

    import numpy as np

    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat = 8, []
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or colour_type not in (2, 6) or interlace:
                raise ValueError(f"{path}: only 8-bit non-interlaced RGB/RGBA PNGs are read here")
        elif kind == b"IDAT":
            idat.append(body)
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    out = np.zeros((height, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        cur = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        if kind == 2:                                   # Up: vectorises
            cur = (cur + prev) & 255
        elif kind != 0:                                 # Sub, Average, Paeth: left to right
            cur = cur.copy()
            for x in range(stride):
                a = int(cur[x - channels]) if x >= channels else 0
                b = int(prev[x])
                c = int(prev[x - channels]) if x >= channels else 0
                if kind == 1:
                    p = a
                elif kind == 3:
                    p = (a + b) >> 1
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[x] = (cur[x] + p) & 255
        out[y] = cur
        prev = cur
    return out.reshape(height, width, channels)[:, :, :3]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--overlay", action="append", default=[], required=True)
    ap.add_argument("--expand", default="", help="Expand the layers of the ops whose names start with this.")
    ap.add_argument("--select", default="", help="A node id to select.")
    ap.add_argument("--out", required=True, help="The PNG to write.")
    args = ap.parse_args(argv)
    sys.path.insert(0, SRC)
    from npmobilebert.model import load_model
    from npmobilebert.overlay import graph_id

    model = load_model(args.model)
    server = ViewServer(args.model, args.overlay)
    try:
        driver = browser()
        try:
            url = page_url(server, args.model, args.overlay, args.select, graph_id(model),
                           group_ids(model, args.expand) if args.expand else [])
            screenshot(driver, url, args.out)
        finally:
            driver.quit()
    finally:
        server.close()
    print(f"screenshot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
