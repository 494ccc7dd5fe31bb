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
    d = tmp_path_factory.mktemp("overlays")
    paths = {k: str(d / f"{k}.json") for k in ("sqnr", "verify", "lint", "time")}
    cli("layer-error", "-m", MODEL, "--float", DYNAMIC, "--random", "2", "--overlay", paths["sqnr"])
    # reference numerics against XNNPACK: differences by design, so verify's values vary by op
    cli("verify", "-m", MODEL, "--against", "default", "--numerics", "litert-ref", "--random", "1",
        "--overlay", paths["verify"])
    cli("lint", "-m", MODEL, "--random", "2", "--overlay", paths["lint"])
    cli("bench", "--per-op", "-m", MODEL, "--runs", "2", "--warmup", "1", "--overlay", paths["time"])
    return {k: json.loads(Path(p).read_text()) for k, p in paths.items()}, paths


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


def expected_colour(graph: dict, entry: dict) -> str | None:
    """The colour node_data_builder's rules give this entry (None where only the gradient's
    interpolation would tell): its own bgColor; else the first threshold its value is <= to; else
    for a gradient, the first stop's colour at the smallest value and the last one's at the largest."""
    if "bgColor" in entry:
        return entry["bgColor"]
    value = entry["value"]
    if not isinstance(value, (int, float)):
        return None
    for t in graph.get("thresholds", []):
        if value <= t["value"]:
            return t["bgColor"]
    stops = sorted(graph.get("gradient", []), key=lambda g: g["stop"])
    numbers = [r["value"] for r in graph["results"].values() if isinstance(r["value"], (int, float))]
    if stops and value == min(numbers):
        return stops[0]["bgColor"]
    if stops and value == max(numbers):
        return stops[-1]["bgColor"]
    return None


def test_overlays_land_on_the_ops_they_name(tool, overlays, server, driver, tmp_path):
    from npmobilebert.model import load_model
    from npmobilebert.overlay import graph_id

    data, paths = overlays
    model = load_model(MODEL)
    gid = graph_id(model)
    graphs = {k: v[gid] for k, v in data.items()}

    def op_of(graph, pick):
        numeric = {int(k): v["value"] for k, v in graph["results"].items() if isinstance(v["value"], (int, float))}
        return pick(numeric, key=numeric.get)

    first_divergence = next((int(k) for k, v in graphs["verify"]["results"].items()
                             if v.get("bgColor") == "#b71c1c"), 0)
    ops = sorted({0,
                  next(op.index for op in model.operators if op.opcode == "SOFTMAX"),
                  first_divergence,
                  op_of(graphs["sqnr"], min),                 # the op that lost the most SQNR
                  op_of(graphs["time"], max),                 # the slowest op
                  len(model.operators) - 1})
    names = [g["name"] for g in graphs.values()]
    for op_index in ops:
        op = model.operators[op_index]
        url = tool.page_url(server, MODEL, list(paths.values()), str(op_index), gid)
        info = tool.node_info(driver, url, str(op_index), names)
        assert info["id"] == str(op_index)
        assert info["op name"] == op.opcode.lower()
        assert info["outputs"] == [model.tensors[i].name for i in op.outputs]
        for key, graph in graphs.items():
            entry = graph["results"].get(str(op_index))
            text, colour = info["values"][graph["name"]]
            if entry is None:                             # e.g. the mask's QUANTIZE in layer-error
                assert text == "-"
                continue
            assert text == js_text(entry["value"]), (op_index, key)
            want = expected_colour(graph, entry)
            if want is not None:
                assert colour == tool.css_rgb(want), (op_index, key, text)

    # the canvas: with the SQNR overlay alone and its worst op selected (and so revealed), that
    # op is drawn in the gradient's first colour, which only the smallest value gets
    worst = op_of(graphs["sqnr"], min)
    shot = tmp_path / "sqnr.png"
    tool.screenshot(driver, tool.page_url(server, MODEL, [paths["sqnr"]], str(worst), gid), str(shot),
                    wait_text="NODE INFO")
    pixels = tool.png_rgb(str(shot))
    width = pixels.shape[1]
    graph_area = pixels[:, : int(width * 0.72)]        # left of the side panel
    red = tuple(int(tool.css_rgb(graphs["sqnr"]["gradient"][0]["bgColor"])[4:-1].split(", ")[i]) for i in range(3))
    assert (graph_area == red).all(axis=-1).sum() > 500
