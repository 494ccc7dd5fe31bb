"""The overlays in a real browser: ``npmobilebert view`` serves the shipped model with its
layer-error, verify, lint and per-op time overlays; headless Chromium loads Model Explorer's web
app; for a handful of ops, selected by index through the app's URL state, the app's info panel
must show that op (node id, op name, output tensor names) with each overlay's value and colour,
and the graph canvas must draw the selected op in its overlay colour.

Needs the ``[view]`` extra, selenium and Chromium with chromedriver (``.ci/run`` installs them);
skips otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "models" / "mobilebert_int8.tflite")
# the float twin of the shipped model is not shipped; its dynamic-range model (same weights, float
# activations) stands in as the reference of layer-error
DYNAMIC = str(ROOT / "models" / "mobilebert_dynamic.tflite")


@pytest.fixture(scope="module")
def tool():
    sys.path.insert(0, str(ROOT / "tools"))
    import overlay_screenshot

    if overlay_screenshot.chromium_paths() is None:
        pytest.skip("chromium and chromedriver are not installed")
    pytest.importorskip("model_explorer")
    pytest.importorskip("selenium")
    pytest.importorskip("ai_edge_litert.interpreter")
    return overlay_screenshot


def cli(*args):
    r = subprocess.run([sys.executable, "-m", "npmobilebert.cli", *args], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode in (0, 1), r.stderr
    return r


@pytest.fixture(scope="module")
def overlays(tool, tmp_path_factory):
    """The four overlays of the shipped model, and each command's own JSON report (by op index:
    the expectations below never read an overlay's keys)."""
    d = tmp_path_factory.mktemp("overlays")
    paths = {k: str(d / f"{k}.json") for k in ("sqnr", "verify", "lint", "time")}
    reports = {k: str(d / f"{k}_report.json") for k in paths}
    cli("layer-error", "-m", MODEL, "--float", DYNAMIC, "--random", "2", "--overlay", paths["sqnr"],
        "--json", reports["sqnr"])
    # reference numerics against XNNPACK: differences by design, so verify's values vary by op
    cli("verify", "-m", MODEL, "--against", "default", "--numerics", "litert-ref", "--random", "1",
        "--overlay", paths["verify"], "--json", reports["verify"])
    cli("lint", "-m", MODEL, "--random", "2", "--overlay", paths["lint"], "--json", reports["lint"])
    cli("bench", "--per-op", "-m", MODEL, "--runs", "2", "--warmup", "1", "--overlay", paths["time"],
        "--json", reports["time"])
    load = lambda p: json.loads(Path(p).read_text())  # noqa: E731
    return ({k: load(p) for k, p in paths.items()}, paths, {k: load(p) for k, p in reports.items()})


@pytest.fixture(scope="module")
def server(tool, overlays):
    srv = tool.ViewServer(MODEL, list(overlays[1].values()))
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def driver(tool):
    d = tool.browser()
    yield d
    d.quit()


def js_text(value) -> str:
    """A value as Model Explorer's web app prints it (JavaScript's String(value))."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_overlays_land_on_the_ops_they_name(tool, overlays, server, driver, tmp_path):
    from npmobilebert.model import load_model
    from npmobilebert.overlay import GREEN, LIGHT_GREEN, graph_id

    data, paths, reports = overlays
    model = load_model(MODEL)
    gid = graph_id(model)
    graphs = {k: v[gid] for k, v in data.items()}

    sqnr = {t["quant_op"]: t["sqnr_db"] for t in reports["sqnr"]["tensors"]}
    micros = {r["op"]: r["median_us"] for r in reports["time"]["ops"]}
    flagged = {f["op"] for f in reports["lint"]["findings"]}
    verify = reports["verify"]
    first = verify["first_divergence"]
    finite = {op: v for op, v in sqnr.items() if v is not None}
    worst = min(finite, key=finite.get)                     # the op that lost the most SQNR
    ops = sorted({0, next(op.index for op in model.operators if op.opcode == "SOFTMAX"),
                  first["op_index"] if first else 0, worst, max(micros, key=micros.get),
                  len(model.operators) - 1})
    names = [g["name"] for g in graphs.values()]
    sqnr_stops = sorted(graphs["sqnr"]["gradient"], key=lambda g: g["stop"])
    for op_index in ops:
        op = model.operators[op_index]
        url = tool.page_url(server, MODEL, list(paths.values()), str(op_index), gid)
        info = tool.node_info(driver, url, str(op_index), names)
        assert info["id"] == str(op_index)
        assert info["op name"] == op.opcode.lower()
        assert info["outputs"] == [model.tensors[i].name for i in op.outputs]
        shown = {key: info["values"][graph["name"]] for key, graph in graphs.items()}

        text, colour = shown["sqnr"]
        if op_index not in sqnr:                             # the mask's QUANTIZE: no float twin
            assert text == "-"
        elif sqnr[op_index] is None:
            assert (text, colour) == ("identical", tool.css_rgb(GREEN))
        else:
            assert float(text) == pytest.approx(sqnr[op_index], abs=0.006)   # 2 decimals shown
            if op_index == worst:
                assert colour == tool.css_rgb(sqnr_stops[0]["bgColor"])

        text, colour = shown["time"]
        assert text == js_text(round(micros[op_index], 1))

        text, colour = shown["lint"]
        assert (text == "ok") == (op_index not in flagged)
        if op_index not in flagged:
            assert colour == tool.css_rgb(LIGHT_GREEN)

        text, colour = shown["verify"]
        largest = verify["max_diff_by_op"][op.opcode]
        assert 0 <= int(text) <= largest
        if largest == 0:
            assert text == "0"
        if first and op_index == first["op_index"]:
            assert int(text) >= first["max_diff"] and colour == tool.css_rgb("#b71c1c")
        else:
            want = next(t["bgColor"] for t in graphs["verify"]["thresholds"] if int(text) <= t["value"])
            assert colour == tool.css_rgb(want)

    # the canvas: with the SQNR overlay alone and its worst op selected (and so revealed), that
    # op is drawn in the gradient's first colour, which only the smallest value gets
    shot = tmp_path / "sqnr.png"
    tool.screenshot(driver, tool.page_url(server, MODEL, [paths["sqnr"]], str(worst), gid), str(shot),
                    wait_text="NODE INFO")
    pixels = tool.png_rgb(str(shot))
    graph_area = pixels[:, : int(pixels.shape[1] * 0.72)]    # left of the side panel
    red = tuple(int(c) for c in tool.css_rgb(sqnr_stops[0]["bgColor"])[4:-1].split(", "))
    assert (graph_area == red).all(axis=-1).sum() > 500
