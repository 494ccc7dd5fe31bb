"""A summary of a parsed model: what ``npmobilebert info`` prints.

:func:`model_info` gathers the facts into a JSON-serialisable dict (``--json``
prints it as is); :func:`format_info` renders that dict as text.
"""

from __future__ import annotations

import collections
from typing import Any, Iterable

from .errors import escape_text
from .model import Model, Operator, Tensor

__all__ = ["model_info", "format_info", "detect_quantization"]

# Operators whose input 1 is a weight matrix / filter: their input and weight
# types tell the quantization scheme apart.
_WEIGHTED_OPS = frozenset({"FULLY_CONNECTED", "BATCH_MATMUL", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_3D"})


# --------------------------------------------------------------------------
# Quantization scheme
# --------------------------------------------------------------------------


def _producers(tensors: tuple[Tensor, ...], operators: tuple[Operator, ...]) -> dict[int, Operator]:
    """Tensor index -> the operator that writes it."""
    return {t: op for op in operators for t in op.outputs if t >= 0}


def _weight_source(index: int, tensors: tuple[Tensor, ...], producers: dict[int, Operator]) -> Tensor | None:
    """The constant behind a weight operand: itself, or the constant a DEQUANTIZE reads."""
    tensor = tensors[index]
    if tensor.data is not None:
        return tensor
    producer = producers.get(index)
    if producer is not None and producer.opcode == "DEQUANTIZE" and producer.inputs:
        source = tensors[producer.inputs[0]]
        if source.data is not None:
            return source
    return None


def _classify_op(op: Operator, tensors: tuple[Tensor, ...], producers: dict[int, Operator]) -> str | None:
    """The scheme one weighted operator runs in, or None when its weight is not a constant."""
    if len(op.inputs) < 2 or op.inputs[0] < 0 or op.inputs[1] < 0:
        return None
    activation = tensors[op.inputs[0]].type_name
    weight = _weight_source(op.inputs[1], tensors, producers)
    if weight is None:
        return None  # e.g. BATCH_MATMUL of two activations (attention scores)
    if activation == "INT8":
        return "int8"
    if activation == "INT16":
        return "16x8"
    if activation == "FLOAT32":
        if weight.type_name == "FLOAT16":
            return "float16"  # fp16 constants dequantized to float at load time
        if weight.type_name in ("INT8", "UINT8", "INT4"):
            return "dynamic-range"  # int8 weights, float activations
        if weight.type_name == "FLOAT32":
            return "float32"
    return "mixed"


def detect_quantization(model: Model) -> dict[str, Any]:
    """Detect the quantization scheme of the main graph.

    Returns {'scheme', 'ops' (scheme -> number of weighted operators),
    'fc_weights' ('per-channel' | 'per-tensor' | 'mixed' | None)}.  The scheme
    is decided by the weighted operators (FULLY_CONNECTED, BATCH_MATMUL with a
    constant operand, convolutions); a graph without any falls back to the
    types of its tensors.
    """
    tensors, operators = model.tensors, model.operators
    producers = _producers(tensors, operators)
    per_op = collections.Counter(
        scheme
        for op in operators
        if op.opcode in _WEIGHTED_OPS
        for scheme in [_classify_op(op, tensors, producers)]
        if scheme is not None
    )
    kinds = set(per_op)
    if kinds == {"dynamic-range", "float32"}:
        # The converter leaves weights under 1024 elements in float when it
        # applies dynamic-range quantization: that is still one scheme.
        kinds = {"dynamic-range"}
    if len(kinds) == 1:
        scheme = kinds.pop()
    elif kinds:
        scheme = "mixed"
    else:
        scheme = _scheme_from_tensor_types(tensors, operators)
    return {"scheme": scheme, "ops": dict(per_op), "fc_weights": _fc_weight_granularity(tensors, operators, producers)}


def _scheme_from_tensor_types(tensors: tuple[Tensor, ...], operators: tuple[Operator, ...]) -> str:
    """Fallback for graphs without weighted operators: look at activations and constants."""
    activation_types = {t.type_name for t in tensors if t.data is None}
    if "INT16" in activation_types and any(t.quantization for t in tensors if t.type_name == "INT16"):
        return "16x8"
    if "INT8" in activation_types:
        return "int8"
    dequantized = {op.inputs[0] for op in operators if op.opcode == "DEQUANTIZE" and op.inputs}
    if any(tensors[i].type_name == "FLOAT16" and tensors[i].data is not None for i in dequantized):
        return "float16"
    return "float32"


def _fc_weight_granularity(
    tensors: tuple[Tensor, ...], operators: tuple[Operator, ...], producers: dict[int, Operator]
) -> str | None:
    """Whether the quantized FULLY_CONNECTED weights are per-channel, per-tensor, or both."""
    kinds = set()
    for op in operators:
        if op.opcode != "FULLY_CONNECTED" or len(op.inputs) < 2 or op.inputs[1] < 0:
            continue
        weight = _weight_source(op.inputs[1], tensors, producers)
        if weight is not None and weight.quantization is not None:
            kinds.add("per-channel" if weight.quantization.per_channel else "per-tensor")
    if not kinds:
        return None
    return kinds.pop() if len(kinds) == 1 else "mixed"


# --------------------------------------------------------------------------
# The info dict
# --------------------------------------------------------------------------


def _constant_tensors(model: Model) -> Iterable[Tensor]:
    """Constant tensors of all subgraphs, each buffer once (tensors may share a buffer)."""
    seen: set[int] = set()
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            if tensor.data is not None and tensor.buffer_index not in seen:
                seen.add(tensor.buffer_index)
                yield tensor


def _parameters(model: Model) -> dict[str, Any]:
    """Element count and bytes of constant data, in total and per type."""
    by_type: dict[str, dict[str, int]] = {}
    for tensor in _constant_tensors(model):
        entry = by_type.setdefault(tensor.type_name, {"tensors": 0, "count": 0, "bytes": 0})
        entry["tensors"] += 1
        entry["count"] += tensor.size
        entry["bytes"] += int(tensor.data.nbytes)
    by_type = dict(sorted(by_type.items(), key=lambda item: -item[1]["bytes"]))
    return {
        "count": sum(e["count"] for e in by_type.values()),
        "bytes": sum(e["bytes"] for e in by_type.values()),
        "by_dtype": by_type,
    }


def _quantization_dict(tensor: Tensor) -> dict[str, Any] | None:
    q = tensor.quantization
    if q is None:
        return None
    if not q.per_channel:
        return {"scale": float(q.scales[0]), "zero_point": int(q.zero_points[0])}
    return {
        "scale": [float(s) for s in q.scales],
        "zero_point": [int(z) for z in q.zero_points],
        "quantized_dimension": q.quantized_dimension,
    }


def _io_entry(tensor: Tensor) -> dict[str, Any]:
    return {
        "index": tensor.index,
        "name": tensor.name,
        "shape": list(tensor.shape),
        "shape_signature": list(tensor.shape_signature) if tensor.shape_signature is not None else None,
        "dtype": tensor.type_name,
        "quantization": _quantization_dict(tensor),
    }


def model_info(model: Model) -> dict[str, Any]:
    """Everything `npmobilebert info` reports, as a JSON-serialisable dict."""
    histogram = model.operator_histogram()
    operators = [
        {"opcode": opcode, "version": version, "count": count}
        for (opcode, version), count in sorted(histogram.items(), key=lambda item: (-item[1], item[0]))
    ]
    return {
        "path": model.path,
        "file_size": model.file_size,
        "schema_version": model.version,
        "description": model.description,
        "subgraphs": len(model.subgraphs),
        "tensor_count": len(model.tensors),
        "operator_count": len(model.operators),
        "operators": operators,
        "parameters": _parameters(model),
        "quantization": detect_quantization(model),
        "inputs": [_io_entry(model.tensors[i]) for i in model.inputs],
        "outputs": [_io_entry(model.tensors[i]) for i in model.outputs],
        "signatures": [
            {"key": s.key, "subgraph_index": s.subgraph_index, "inputs": dict(s.inputs), "outputs": dict(s.outputs)}
            for s in model.signatures
        ],
        "metadata": [{"name": name, "size": len(data)} for name, data in model.metadata.items()],
        "packed_files": [{"name": name, "size": len(data)} for name, data in model.packed_files.items()],
    }


# --------------------------------------------------------------------------
# Text rendering
# --------------------------------------------------------------------------


def _human_bytes(n: int) -> str:
    """1234567 -> '1.2 MiB'."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _format_quantization(q: dict[str, Any] | None) -> str:
    if q is None:
        return ""
    if isinstance(q["scale"], list):
        return f"  per-channel (dim {q['quantized_dimension']}, {len(q['scale'])} scales)"
    return f"  scale={q['scale']:.9g} zero_point={q['zero_point']}"


def _format_io(title: str, entries: list[dict[str, Any]]) -> list[str]:
    lines = [f"{title}:"]
    for e in entries:
        shape = "x".join(str(d) for d in e["shape"]) or "scalar"
        lines.append(f"  [{e['index']}] {escape_text(e['name'])}  {e['dtype']} {shape}{_format_quantization(e['quantization'])}")
    return lines


def format_info(info: dict[str, Any]) -> str:
    """Render a :func:`model_info` dict as human-readable text."""
    q = info["quantization"]
    params = info["parameters"]
    lines = [
        f"Model:        {info['path'] or '<memory>'}",
        f"File size:    {info['file_size']:,} bytes ({_human_bytes(info['file_size'])})",
        f"Schema:       version {info['schema_version']}" + (f", {info['description']}" if info["description"] else ""),
        f"Graph:        {info['subgraphs']} subgraph(s), {info['tensor_count']} tensors, "
        f"{info['operator_count']} operators in the main graph",
        f"Quantization: {q['scheme']}" + (f" (fully-connected weights {q['fc_weights']})" if q["fc_weights"] else ""),
        f"Parameters:   {params['count']:,} values in {_human_bytes(params['bytes'])} of constant data",
    ]
    for type_name, entry in params["by_dtype"].items():
        lines.append(
            f"  {type_name:<9} {entry['count']:>12,} values  {_human_bytes(entry['bytes']):>10}  in {entry['tensors']} tensors"
        )
    lines += _format_io("Inputs", info["inputs"])
    lines += _format_io("Outputs", info["outputs"])

    lines.append("Operators:")
    for entry in info["operators"]:
        lines.append(f"  {entry['count']:>6}  {entry['opcode']} v{entry['version']}")

    if info["signatures"]:
        lines.append("Signatures:")
        for s in info["signatures"]:
            ins = ", ".join(f"{k}->{v}" for k, v in s["inputs"].items())
            outs = ", ".join(f"{k}->{v}" for k, v in s["outputs"].items())
            lines.append(f"  {s['key']!r} (subgraph {s['subgraph_index']}): inputs {ins}; outputs {outs}")
    if info["metadata"]:
        lines.append("Metadata:")
        lines += [f"  {escape_text(m['name'])}  {_human_bytes(m['size'])}" for m in info["metadata"]]
    if info["packed_files"]:
        lines.append("Packed files:")
        lines += [f"  {escape_text(f['name'])}  {_human_bytes(f['size'])}" for f in info["packed_files"]]
    return "\n".join(lines)
