"""Model Explorer overlays (overlay.py): every value keyed by the node id that Model Explorer's own
TFLite adapter gives the op it belongs to, and equal to what the command's report says.

The oracle for the keys is the adapter itself (``ai-edge-model-explorer``, the ``[view]`` extra):
its graph JSON for the same file names each node's output tensors; these tests skip without it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY = str(FIXTURES / "tiny_int8.tflite")
TINY_FLOAT = str(FIXTURES / "tiny_float32.tflite")
TINY_MASK = str(FIXTURES / "tiny_int8_mask10000.tflite")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "npmobilebert.cli", *args], capture_output=True,
                          text=True, timeout=300)


def adapter_node_ids(model_path: str) -> tuple[str, dict[int, str]]:
    """(graph id, op index -> node id) as Model Explorer's built-in TFLite adapter names them: the
    node whose outputs are exactly that op's output tensors and whose label is its op name."""
    adapter = pytest.importorskip("model_explorer.builtin_tflite_flatbuffer_adapter")
    from npmobilebert.model import load_model

    collection = adapter.BuiltinTfliteFlatbufferAdapter().convert(model_path, {})["graphCollections"][0]
    graph = collection.graphs[0]
    by_outputs = {}
    for node in graph["nodes"]:
        outs = tuple(int(a["value"]) for meta in node["outputsMetadata"] for a in meta["attrs"]
                     if a["key"] == "tensor_index")
        by_outputs[outs] = node
    model = load_model(model_path)
    ids = {}
    for op in model.operators:
        node = by_outputs[tuple(op.outputs)]
        assert node["label"] == op.opcode.lower()
        ids[op.index] = node["id"]
    return graph["id"], ids


def test_verify_overlay_one_entry_per_op_on_the_adapters_node(tmp_path):
    pytest.importorskip("ai_edge_litert.interpreter")
    graph_id, node_ids = adapter_node_ids(TINY)
    overlay, report = tmp_path / "verify.json", tmp_path / "report.json"
    # litert-ref numerics against XNNPACK: differences by design, so the values are not all 0
    r = cli("verify", "-m", TINY, "--against", "default", "--numerics", "litert-ref", "--random", "3",
            "--overlay", str(overlay), "--json", str(report))
    assert r.returncode in (0, 1), r.stderr
    data = json.loads(overlay.read_text())
    rep = json.loads(report.read_text())
    assert list(data) == [graph_id]
    results = data[graph_id]["results"]
    assert set(results) == set(node_ids.values())          # one entry per op, on its node
    from npmobilebert.model import load_model
    model = load_model(TINY)
    by_type: dict[str, int] = {}
    for op in model.operators:
        value = results[node_ids[op.index]]["value"]
        by_type[op.opcode] = max(by_type.get(op.opcode, 0), value)
    # the report's largest difference per op type is the largest of the overlay's per op
    assert by_type == {k: v for k, v in rep["max_diff_by_op"].items() if k != "INPUT"}
    first = rep["first_divergence"]
    assert first is not None and max(by_type.values()) > 0
    dark = [k for k, v in results.items() if v.get("bgColor") == "#b71c1c"]
    assert dark == [node_ids[first["op_index"]]]
    assert f"op {first['op_index']}" in data[graph_id]["name"]


def test_verify_overlay_all_identical_against_reference_kernels(tmp_path):
    pytest.importorskip("ai_edge_litert.interpreter")
    graph_id, node_ids = adapter_node_ids(TINY)
    overlay = tmp_path / "verify.json"
    r = cli("verify", "-m", TINY, "--random", "2", "--overlay", str(overlay))
    assert r.returncode == 0, r.stderr
    results = json.loads(overlay.read_text())[graph_id]["results"]
    assert set(results) == set(node_ids.values())
    assert {v["value"] for v in results.values()} == {0}
    assert not any("bgColor" in v for v in results.values())


def test_layer_error_overlays_hold_the_reports_sqnr_and_cosine(tmp_path):
    graph_id, node_ids = adapter_node_ids(TINY)
    sqnr_path, cos_path, report = tmp_path / "sqnr.json", tmp_path / "cos.json", tmp_path / "le.json"
    r = cli("layer-error", "-m", TINY, "--float", TINY_FLOAT, "--random", "3", "--json", str(report),
            "--overlay", str(sqnr_path), "--overlay-cosine", str(cos_path))
    assert r.returncode == 0, r.stderr
    rep = json.loads(report.read_text())
    sqnr = json.loads(sqnr_path.read_text())[graph_id]
    cosine = json.loads(cos_path.read_text())[graph_id]
    assert set(sqnr["results"]) == {node_ids[t["quant_op"]] for t in rep["tensors"]}
    checked = 0
    for t in rep["tensors"]:
        key = node_ids[t["quant_op"]]
        if t["sqnr_db"] is None:
            assert sqnr["results"][key]["value"] in ("identical", "no signal")
        else:
            assert sqnr["results"][key]["value"] == pytest.approx(t["sqnr_db"], abs=0.006)
            checked += 1
        assert cosine["results"][key]["value"] == pytest.approx(t["cosine"], abs=1e-6)
    assert checked > 50
    # the unmatched op (the mask's QUANTIZE) has no value
    for u in rep["unmatched_quant_ops"]:
        assert node_ids[u["op"]] not in sqnr["results"]


def test_lint_overlay_flags_the_ops_lint_reports(tmp_path):
    graph_id, node_ids = adapter_node_ids(TINY_MASK)
    overlay, report = tmp_path / "lint.json", tmp_path / "lint_report.json"
    r = cli("lint", "-m", TINY_MASK, "--overlay", str(overlay), "--json", str(report))
    assert r.returncode == 1, r.stderr              # the -10000 mask collapses attention
    findings = json.loads(report.read_text())["findings"]
    results = json.loads(overlay.read_text())[graph_id]["results"]
    assert set(results) == set(node_ids.values())
    flagged = {k for k, v in results.items() if v["value"] != "ok"}
    assert flagged == {node_ids[f["op"]] for f in findings}
    softmax = [f["op"] for f in findings if f["check"] == "collapsed-softmax"]
    assert softmax
    for op in softmax:
        assert results[node_ids[op]]["value"].startswith("high: ")
        assert results[node_ids[op]]["bgColor"] == "#e57373"


def test_bench_per_op_overlay_times_every_op(tmp_path):
    graph_id, node_ids = adapter_node_ids(TINY)
    overlay, report = tmp_path / "time.json", tmp_path / "time_report.json"
    r = cli("bench", "--per-op", "-m", TINY, "--runs", "3", "--warmup", "1", "--overlay", str(overlay),
            "--json", str(report))
    assert r.returncode == 0, r.stderr
    assert "LiteRT: no per-op profile from Python" in r.stdout
    results = json.loads(overlay.read_text())[graph_id]["results"]
    ops = json.loads(report.read_text())["ops"]
    assert set(results) == set(node_ids.values())
    for row in ops:
        assert results[node_ids[row["op"]]]["value"] == pytest.approx(row["median_us"], abs=0.051)
        assert row["median_us"] > 0


def test_overlay_files_parse_as_model_explorer_node_data(tmp_path):
    """Model Explorer's own dataclasses take every field written (no unknown or missing key)."""
    builder = pytest.importorskip("model_explorer.node_data_builder")
    overlay = tmp_path / "sqnr.json"
    assert cli("layer-error", "-m", TINY, "--float", TINY_FLOAT, "--random", "1",
               "--overlay", str(overlay)).returncode == 0
    for graph in json.loads(overlay.read_text()).values():
        parsed = builder.GraphNodeData(
            name=graph["name"],
            results={k: builder.NodeDataResult(**v) for k, v in graph["results"].items()},
            gradient=[builder.GradientItem(**g) for g in graph["gradient"]])
        written = json.loads(parsed.to_json_string())
        assert {k: written[k] for k in graph} == graph      # the rest are the builder's defaults


def test_overlay_option_bad_paths_are_one_line(tmp_path):
    r = cli("lint", "-m", TINY, "--random", "1", "--overlay", str(tmp_path / "missing" / "o.json"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = cli("bench", "-m", TINY, "--overlay", str(tmp_path / "o.json"))
    assert r.returncode == 2 and "--per-op" in r.stderr
    # an input is never overwritten: the overlay path may not be the model
    model = tmp_path / "model.tflite"
    model.write_bytes(Path(TINY).read_bytes())
    r = cli("lint", "-m", str(model), "--random", "1", "--overlay", str(model))
    assert r.returncode == 2 and "is an input" in r.stderr
    assert model.read_bytes() == Path(TINY).read_bytes()


def test_view_refuses_bad_overlays_and_says_how_to_install(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"main": {"no results": 1}}')
    r = cli("view", "-m", TINY, "--overlay", str(bad), "--no-browser")
    if "not installed" not in r.stderr:
        assert r.returncode == 2 and "not Model Explorer node data" in r.stderr, r.stderr
    # without the [view] extra: one line naming it, exit 2
    code = ("import sys; sys.modules['model_explorer'] = None; from npmobilebert.cli import entry;"
            f" sys.argv = ['npmobilebert', 'view', '-m', {TINY!r}, '--no-browser']; entry()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "npmobilebert[view]" in r.stderr


def test_graph_id_follows_the_adapters_rule():
    from npmobilebert.model import load_model
    from npmobilebert.overlay import graph_id

    for path in (TINY, TINY_FLOAT, str(FIXTURES / "tiny_dynamic.tflite")):
        assert graph_id(load_model(path)) == adapter_node_ids(path)[0]


@pytest.mark.parametrize("keep_signature", [True, False])
def test_graph_id_of_an_unnamed_subgraph(tmp_path, keep_signature):
    """A subgraph without a name: the adapter falls back to the signature key, then to "main"."""
    adapter_node_ids(TINY)                       # skips without the adapter
    import flatbuffers
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    from npmobilebert.model import load_model
    from npmobilebert.overlay import graph_id

    m = schema.ModelT.InitFromPackedBuf(Path(TINY).read_bytes(), 0)
    m.subgraphs[0].name = None
    if not keep_signature:
        m.signatureDefs = []
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    path = tmp_path / "unnamed.tflite"
    path.write_bytes(builder.Output())
    model = load_model(str(path))
    assert model.main.name == ""
    assert graph_id(model) == adapter_node_ids(str(path))[0]
