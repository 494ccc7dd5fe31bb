"""Keep every int8 BATCH_MATMUL on LiteRT's builtin kernel, off the XNNPACK delegate.

Why: LiteRT's XNNPACK delegate takes an int8 BATCH_MATMUL only when its right-hand side has
zero point 0 (tflite/delegates/xnnpack/xnnpack_delegate.cc, VisitBatchMatMulNode), and then
requantizes the int32 accumulator in float32 (rounded to nearest-even) where the reference and
the builtin kernels use a fixed-point multiplier with two roundings (reference/batch_matmul.h;
optimized_ops::BatchMatMul computes the same values). Which attention BATCH_MATMULs XNNPACK
takes is therefore calibration luck: the K (or V) projection whose calibrated range happens to
be symmetric gets zero point 0. In the student shipped before the current one, one of twelve
did, and it alone changed 23 of the 25 dev labels on which the default resolver disagreed with
the reference (tools/agreement_by_rule.py; models/README.md).

What: for each int8 BATCH_MATMUL whose rhs is an activation with zero point 0, the rhs and every
tensor tied to it by a byte-moving op (RESHAPE, TRANSPOSE, ...: input and output share their
quantization) are given zero point -1 and scale * 128/127. The representable range
[-127, 128] * scale' = [-128, 129.0] * scale still covers the calibrated one; the producer (a
FULLY_CONNECTED) requantizes into it, the consumer reads it; nothing else changes. The cost is a
0.8% coarser step on those tensors, and the builtin kernel's speed for that op.

    python tools/builtin_batch_matmul.py IN.tflite OUT.tflite
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

#: Ops whose int8 output is the input's bytes rearranged: they carry one quantization through.
BYTE_MOVING = frozenset({"RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS"})


def _opcode_names(model) -> list[str]:
    from convert import _schema

    names = {v: k for k, v in vars(_schema().BuiltinOperator).items() if not k.startswith("_")}
    return [names[max(c.builtinCode, c.deprecatedBuiltinCode)] for c in model.operatorCodes]


def tied_tensors(graph, opnames: list[str], start: int) -> list[int]:
    """``start`` and every tensor reachable from it through byte-moving ops, either direction."""
    producer = {t: op for op in graph.operators for t in op.outputs}
    seen, todo = {start}, [start]
    while todo:
        t = todo.pop()
        op = producer.get(t)
        linked = [op.inputs[0]] if op is not None and opnames[op.opcodeIndex] in BYTE_MOVING else []
        linked += [c.outputs[0] for c in graph.operators
                   if opnames[c.opcodeIndex] in BYTE_MOVING and c.inputs[0] == t]
        for u in linked:
            if u not in seen:
                seen.add(u)
                todo.append(u)
    return sorted(seen)


def keep_batch_matmuls_builtin(tflite: bytes) -> tuple[bytes, list[str]]:
    """The model with no int8 BATCH_MATMUL rhs at zero point 0; and the names of the tensors
    that were requantized (empty: the input bytes come back unchanged)."""
    from convert import _aligned_builder, _schema

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    opnames = _opcode_names(model)
    changed: list[str] = []
    for graph in model.subgraphs:
        for op in graph.operators:
            if opnames[op.opcodeIndex] != "BATCH_MATMUL":
                continue
            rhs = graph.tensors[op.inputs[1]]
            q = rhs.quantization
            if (rhs.type != schema.TensorType.INT8 or q is None or q.zeroPoint is None or len(q.zeroPoint) != 1
                    or int(q.zeroPoint[0]) != 0 or model.buffers[rhs.buffer].data is not None):
                continue
            scale = float(q.scale[0])
            for t in tied_tensors(graph, opnames, op.inputs[1]):
                tq = graph.tensors[t].quantization
                if float(tq.scale[0]) != scale or int(tq.zeroPoint[0]) != 0:
                    raise ValueError(f"tensor {graph.tensors[t].name!r} is tied to a BATCH_MATMUL rhs "
                                     "but has its own quantization")
                tq.scale = np.array([scale * 128 / 127], np.float32)
                tq.zeroPoint = np.array([-1], np.int64)
                changed.append(graph.tensors[t].name.decode() if isinstance(graph.tensors[t].name, bytes)
                               else graph.tensors[t].name)
    if not changed:
        return tflite, []
    builder = _aligned_builder()
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), changed


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("output")
    a = ap.parse_args(argv)
    from convert import append_zip, write_atomic

    from npmobilebert.model import load_model

    raw = Path(a.input).read_bytes()
    data, changed = keep_batch_matmuls_builtin(raw)
    packed = load_model(raw).packed_files     # the vocab and labels after the FlatBuffer
    write_atomic(a.output, append_zip(data, packed) if changed and packed else data)
    print(f"{a.output}: {len(changed)} tensors requantized" + "".join(f"\n  {n}" for n in changed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
