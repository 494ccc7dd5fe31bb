"""tools/builtin_batch_matmul.py: an int8 BATCH_MATMUL whose rhs has zero point 0 runs in XNNPACK
(float32 requantization) and differs from LiteRT's reference kernel; requantized off zero point 0
it stays on the builtin kernel and the default resolver gives the reference's bytes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.tools, pytest.mark.slow]     # converts with TensorFlow

TOOLS = Path(__file__).resolve().parent.parent / "tools"
LHS_SHAPE, RHS_SHAPE = (1, 2, 16, 8), (1, 16, 16)     # rhs: reshaped to heads, then transposed


@pytest.fixture(scope="module")
def converted():
    """(flatbuffer, the rhs input's name): a @ transpose(reshape(b)), int8 in and out, from the
    real converter; b calibrated on [-1.28, 1.27], which gives scale 0.01 and zero point 0."""
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    sys.path.insert(0, str(TOOLS))

    class Attention(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(LHS_SHAPE, tf.float32),
                                      tf.TensorSpec(RHS_SHAPE, tf.float32)])
        def scores(self, a, b):
            heads = tf.transpose(tf.reshape(b, (1, 16, 2, 8)), (0, 2, 3, 1))   # [1, 2, 8, 16]
            return {"out": tf.matmul(a, heads)}

    rng = np.random.default_rng(0)

    def representative():
        for _ in range(20):
            b = rng.uniform(-1.28, 1.27, RHS_SHAPE).astype(np.float32)
            b.flat[:2] = -1.28, 1.27
            yield {"a": rng.uniform(-1, 2, LHS_SHAPE).astype(np.float32), "b": b}

    module = Attention()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([module.scores.get_concrete_function()], module)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    return bytes(conv.convert())


def _rhs_chain(flat: bytes) -> list[tuple[str, float, int]]:
    """(opcode of the producer, scale, zero point) along the BATCH_MATMUL's rhs, back to the input."""
    from npmobilebert.model import load_model

    graph = load_model(flat).subgraphs[0]
    producer = {t: op for op in graph.operators for t in op.outputs}
    (bmm,) = [op for op in graph.operators if op.opcode == "BATCH_MATMUL"]
    chain, t = [], bmm.inputs[1]
    while True:
        q = graph.tensors[t].quantization
        op = producer.get(t)
        chain.append((op.opcode if op else "input", q.scale, q.zero_point))
        if op is None:
            return chain
        t = op.inputs[0]


def _runs(flat: bytes, n: int = 40) -> dict[str, np.ndarray]:
    """Outputs of the reference and the default resolver on the same random int8 inputs."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    rng = np.random.default_rng(1)
    inputs = [(rng.integers(-128, 128, LHS_SHAPE, dtype=np.int8),
               rng.integers(-128, 128, RHS_SHAPE, dtype=np.int8)) for _ in range(n)]
    out = {}
    for name, resolver in (("ref", OpResolverType.BUILTIN_REF), ("default", OpResolverType.AUTO)):
        interp = Interpreter(model_content=flat, experimental_op_resolver_type=resolver)
        runner = interp.get_signature_runner()
        out[name] = np.stack([runner(a=a, b=b)["out"] for a, b in inputs])
    out["inputs"] = inputs
    return out


def test_zero_point_0_rhs_runs_in_xnnpack_and_differs(converted):
    chain = _rhs_chain(converted)
    # The premise: the converter made the rhs (and the reshape and transpose it goes through)
    # scale 0.01, zero point 0.
    assert chain == [(op, np.float32(0.01), 0) for op in ("TRANSPOSE", "RESHAPE", "input")]
    runs = _runs(converted)
    # XNNPACK took it: its float32 requantization rounds some elements the other way.
    assert 0 < np.count_nonzero(runs["default"] != runs["ref"]) < 0.01 * runs["ref"].size
    assert np.abs(runs["default"].astype(int) - runs["ref"]).max() == 1


def test_requantized_rhs_stays_builtin_and_matches_the_reference(converted):
    import builtin_batch_matmul

    from npmobilebert.interpreter import Interpreter
    from npmobilebert.model import load_model

    pinned, changed = builtin_batch_matmul.keep_batch_matmuls_builtin(converted)
    chain = _rhs_chain(pinned)
    # The whole tied chain, nothing else: zero point -1, the step widened by 128/127.
    assert len(changed) == 3
    assert chain == [(op, np.float32(float(np.float32(0.01)) * 128 / 127), -1)
                     for op in ("TRANSPOSE", "RESHAPE", "input")]
    runs = _runs(pinned)
    np.testing.assert_array_equal(runs["default"], runs["ref"])
    ours = Interpreter(load_model(pinned))
    names = [t.name for t in ours.input_tensors]       # serving_default_a:0, serving_default_b:0
    for (a, b), want in zip(runs["inputs"], runs["ref"]):
        (got,) = ours.run(dict(zip(names, (a, b) if names[0].endswith("a:0") else (b, a))))
        np.testing.assert_array_equal(got, want)
    assert builtin_batch_matmul.keep_batch_matmuls_builtin(pinned) == (pinned, [])   # idempotent
