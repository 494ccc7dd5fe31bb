"""Node-data overlays for Google's Model Explorer (``ai-edge-model-explorer``): each op's value from
``verify``, ``layer-error``, ``lint`` or ``bench --per-op``, coloured on the node it belongs to.

The file is Model Explorer's own node-data JSON (``model_explorer/node_data_builder.py``,
``ModelNodeData``): ``{graph id: {"name", "results": {node id: {"value", "bgColor"?}},
"thresholds" or "gradient"}}``. No Model Explorer import is needed to write one.

Keys, as the built-in TFLite adapter (``ai-edge-model-explorer-adapter``,
``adapters/litert/direct_flatbuffer_to_json_graph_convert.cc``) names them:

- node id: the operator's index in its subgraph, as a decimal string (``SubgraphBuildContext``
  reserves ``StrCat(i)`` for operator ``i``; GraphInputs, GraphOutputs and constant nodes get
  the ids after the last operator);
- graph id: the subgraph's name, else the key of the signature that runs it, else ``main`` for
  subgraph 0 and ``subgraph_<i>`` for the others (``GetSubgraphName``).

Model Explorer's web app first looks a result key up among the nodes' output tensor names
(``outputTensorIdToNodeId``), then takes it as a node id: a tensor whose name is an op index
would pull that op's value onto its own node, so such a model is refused.

Values that JSON cannot hold (an infinite SQNR) are written as words ("identical"), with an
explicit colour.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import InputError

# Colours from light (fine) to dark red (bad), readable under black or white labels.
GREEN = "#a5d6a7"
LIGHT_GREEN = "#dcedc8"
YELLOW = "#fff59d"
ORANGE = "#ffb74d"
RED = "#e57373"
DARK_RED = "#b71c1c"
# thresholds: a value <= threshold gets its colour; above the last one no colour at all, so the
# last threshold stands for "anything larger"
BEYOND = 1e300


@dataclass
class NodeValue:
    value: float | int | str
    colour: str | None = None     # overrides the thresholds' colour for this node


def graph_id(model, subgraph: int = 0) -> str:
    """The id Model Explorer's TFLite adapter gives ``subgraph`` (GetSubgraphName)."""
    sg = model.subgraphs[subgraph]
    if sg.name:
        return sg.name
    for sig in model.signatures:
        if sig.subgraph_index == subgraph:
            if sig.key:
                return sig.key
            break
    return "main" if subgraph == 0 else f"subgraph_{subgraph}"


def node_id(op_index: int) -> str:
    """The adapter's node id of operator ``op_index`` of its subgraph."""
    return str(op_index)


def _check_keys(model, subgraph: int) -> None:
    sg = model.subgraphs[subgraph]
    ids = {node_id(i) for i in range(len(sg.operators))}
    for t in sg.tensors:
        if t.name in ids:
            raise InputError(f"tensor {t.index} is named {t.name!r}, which Model Explorer would read as"
                             f" the node id of op {int(t.name)}: no overlay can key its values unambiguously")


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if hasattr(value, "item"):          # NumPy scalars
        return _jsonable(value.item())
    return value


def node_data(model, name: str, values: Mapping[int, NodeValue], thresholds: list[tuple[float, str]] = (),
              gradient: list[tuple[float, str]] = (), subgraph: int = 0) -> dict:
    """Model Explorer node data: ``values`` by op index; colours by ``thresholds`` (upper bound,
    colour) or by ``gradient`` (stop in [0, 1] from the smallest to the largest value, colour)."""
    _check_keys(model, subgraph)
    n_ops = len(model.subgraphs[subgraph].operators)
    results = {}
    for op_index in sorted(values):
        if not 0 <= op_index < n_ops:
            raise ValueError(f"op {op_index} is not in subgraph {subgraph} ({n_ops} ops)")
        v = values[op_index]
        entry = {"value": _jsonable(v.value)}
        if v.colour:
            entry["bgColor"] = v.colour
        results[node_id(op_index)] = entry
    graph = {"name": name, "results": results}
    if thresholds:
        graph["thresholds"] = [{"value": bound, "bgColor": colour} for bound, colour in thresholds]
    if gradient:
        graph["gradient"] = [{"stop": stop, "bgColor": colour} for stop, colour in gradient]
    return {graph_id(model, subgraph): graph}


def check_path(path: str, *inputs) -> None:
    """Before the run: ``path`` can be written and is none of the command's input files."""
    import os

    from .fileio import check_writable

    check_writable(path)
    for given in inputs:
        if given and os.path.exists(path) and os.path.exists(given) and os.path.samefile(path, given):
            raise InputError(f"--overlay {path} is an input of this command: choose another file")


def write(path: str, data: dict) -> None:
    from .fileio import save_json
    save_json(path, data)


# -- verify ---------------------------------------------------------------------------------------

VERIFY_THRESHOLDS = [(0, GREEN), (1, YELLOW), (4, ORANGE), (BEYOND, RED)]


def verify_overlay(model, report) -> dict:
    """Per op: 0 when every output tensor was identical on every input, else the largest difference
    (LSB for integers and DEQUANTIZE outputs, ULP for floats; the units ``verify`` prints);
    "shape differs" for a shape mismatch, "not exposed" where the runtime gave none of its outputs.
    The op of the first divergence is dark red."""
    c = report.comparison
    worst: dict[int, int] = {}
    reshaped = set()                    # ops with an output whose shape differs (max_diff -1)
    for d in c.diffs:
        if d.max_diff < 0:
            reshaped.add(d.op_index)
        worst[d.op_index] = max(worst.get(d.op_index, 0), d.max_diff)
    missing = set(c.missing)
    first = c.first_divergence
    values = {}
    for op in model.operators:
        if all(model.tensors[i].name in missing for i in op.outputs):
            values[op.index] = NodeValue("not exposed")
            continue
        value = "shape differs" if op.index in reshaped else worst.get(op.index, 0)
        colour = DARK_RED if first is not None and op.index == first.op_index else (
            RED if op.index in reshaped else None)
        values[op.index] = NodeValue(value, colour)
    import os
    label = {"ref": "LiteRT ref", "builtin": "LiteRT builtin", "default": "LiteRT default",
             "tflm": "TFLite Micro"}.get(report.against, os.path.basename(report.against))
    name = f"verify vs {label}: max LSB/ULP"
    if first is not None:
        name += f" (first divergence: op {first.op_index}, input {report.first_input})"
    return node_data(model, name, values, VERIFY_THRESHOLDS)


# -- layer-error ------------------------------------------------------------------------------------

# relative to this model: its worst op red, its best green (the values themselves are in the
# node data; a threshold in dB would paint a whole healthy model one colour)
WORST_TO_BEST = [(0, RED), (0.5, YELLOW), (1, GREEN)]


def layer_error_overlays(model, report) -> tuple[dict, dict]:
    """(SQNR in dB, cosine) per matched op of the quantized model, as ``layer-error`` prints them;
    an output equal to the float model's is "identical" (SQNR infinite), one whose float value is
    all zeros "no signal"."""
    sqnr, cosine = {}, {}
    for m in report.matches:
        db = m.sqnr_db
        if math.isinf(db):
            sqnr[m.quant_op] = NodeValue("identical", GREEN) if db > 0 else NodeValue("no signal", RED)
        else:
            sqnr[m.quant_op] = NodeValue(round(db, 2))
        cosine[m.quant_op] = NodeValue(round(m.cosine, 6))
    vs = f"vs {_basename(report.float_path)}, {report.inputs} inputs"
    return (node_data(model, f"layer-error SQNR dB {vs}", sqnr, gradient=WORST_TO_BEST),
            node_data(model, f"layer-error cosine {vs}", cosine, gradient=WORST_TO_BEST))


def _basename(path) -> str:
    import os
    return os.path.basename(path or "") or "float model"


# -- lint ----------------------------------------------------------------------------------------

# How much a finding costs the model: the op's output loses information for certain (saturation,
# a collapsed softmax, an accumulator that may overflow) > the weights or levels are off > a
# spread that only may cost precision.
SEVERITY = {"saturation": "high", "collapsed-softmax": "high", "accumulator": "high",
            "weight-zero-point": "medium", "few-levels": "medium", "scale-spread": "low"}
SEVERITY_COLOUR = {"high": RED, "medium": ORANGE, "low": YELLOW}
SEVERITY_RANK = {"low": 1, "medium": 2, "high": 3}


def lint_overlay(model, findings) -> dict:
    """Per op: "ok", or its worst severity and the findings in a few words
    ("high: sat 3.1%; 4 levels"), coloured by that severity."""
    by_op: dict[int, list] = {}
    for f in findings:
        by_op.setdefault(f.op_index, []).append(f)
    values = {}
    for op in model.operators:
        found = by_op.get(op.index)
        if not found:
            values[op.index] = NodeValue("ok", LIGHT_GREEN)
            continue
        worst = max((SEVERITY.get(f.check, "medium") for f in found), key=SEVERITY_RANK.__getitem__)
        values[op.index] = NodeValue(f"{worst}: " + "; ".join(f.short for f in found), SEVERITY_COLOUR[worst])
    return node_data(model, f"lint: {len(findings)} findings", values)


# -- bench --per-op ------------------------------------------------------------------------------

def timing_overlay(model, microseconds: Mapping[int, float], name: str) -> dict:
    """Per op: its median time in microseconds; the fastest op green, the slowest red."""
    values = {i: NodeValue(round(float(t), 1)) for i, t in microseconds.items()}
    return node_data(model, name, values, gradient=[(0, GREEN), (0.5, YELLOW), (1, RED)])


def validate(path: str) -> dict:
    """Read an overlay file and check it is Model Explorer node data (one line on what is wrong)."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not a JSON file ({' '.join(str(e).split())})") from None
    graphs = [data] if isinstance(data, dict) and isinstance(data.get("results"), dict) else (
        list(data.values()) if isinstance(data, dict) else None)
    if not graphs or not all(isinstance(g, dict) and isinstance(g.get("results"), dict) for g in graphs):
        raise InputError(f"{path}: not Model Explorer node data (expected {{graph id: {{\"results\": ...}}}})")
    return data
