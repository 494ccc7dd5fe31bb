"""What real .tflite files from other tools hold and our own fixtures did not: op codes only in
the newer `builtin_code` field, custom ops, STRING tensors, constant or empty graph outputs,
shapes known only at run time, ops we do not implement.  Each case is planted by editing our own
fixtures (or building a graph) with LiteRT's FlatBuffer object API, and LiteRT runs the same file
as the oracle: what it names, runs or refuses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "tiny_int8.tflite"

schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
litert = pytest.importorskip("ai_edge_litert.interpreter")

import flatbuffers  # noqa: E402  (after the skips: the object API comes with LiteRT)

from npmobilebert.interpreter import Interpreter  # noqa: E402
from npmobilebert.model import load_model  # noqa: E402

B = schema.BuiltinOperator


def cli(*args):
    return subprocess.run([sys.executable, "-m", "npmobilebert.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def unpack(blob: bytes):
    return schema.ModelT.InitFromPackedBuf(bytearray(blob), 0)


def pack(m) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def edited_bytes(blob: bytes, edit) -> bytes:
    """The model `blob` after `edit(ModelT)` changed it in place."""
    m = unpack(blob)
    edit(m)
    return pack(m)


def edited(path: Path, edit) -> bytes:
    return edited_bytes(path.read_bytes(), edit)


def write(tmp_path: Path, name: str, blob: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(blob)
    return path


def litert_interpreter(path: Path):
    return litert.Interpreter(model_path=str(path),
                              experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF,
                              experimental_preserve_all_tensors=True)


def litert_op_names(path: Path) -> list[str]:
    return [d["op_name"] for d in litert_interpreter(path)._get_ops_details()]


def one_line_error(r, code: int = 2) -> str:
    """The single stderr line of a refused command (never a traceback)."""
    assert r.returncode == code, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


# ------------------------------------------------------------------------------------------------
# Operator codes
# ------------------------------------------------------------------------------------------------

def _only_builtin_code(m) -> None:
    """As ai-edge-quantizer and LiteRT's NPU tools write them: the int8 field left at 0."""
    for code in m.operatorCodes:
        code.deprecatedBuiltinCode = 0


def test_op_codes_only_in_builtin_code_are_read_as_litert_reads_them(tmp_path):
    path = write(tmp_path, "only_builtin_code.tflite", edited(TINY, _only_builtin_code))
    model = load_model(path)
    assert [op.name for op in model.operators] == litert_op_names(path)
    assert "DEQUANTIZE" in {op.opcode for op in model.operators}
    # and it runs as the original does, identical to LiteRT's reference kernels
    r = cli("verify", "-m", path, "--against", "ref", "--random", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "every tensor is identical" in r.stdout


def test_op_codes_above_127_are_named_and_refused_by_name(tmp_path):
    """GELU (150) fits only `builtin_code`; the deprecated byte holds the placeholder 127."""
    from opmodels import model, op, tensor
    x = tensor("x", (2, 4), "float32")
    y = tensor("y", (2, 4), "float32")
    path = write(tmp_path, "gelu.tflite", model([op(B.GELU, [x], [y], schema.GeluOptionsT(), version=1)]))
    assert [op.name for op in load_model(path).operators] == litert_op_names(path) == ["GELU"]
    assert "GELU v1" in cli("info", "-m", path).stdout
    litert_interpreter(path).allocate_tensors()     # LiteRT runs it
    error = one_line_error(cli("verify", "-m", path, "--random", "1"))
    assert error == "error: operator 0 (GELU v1): this op is not implemented by the NumPy interpreter"


def _custom_first_code(name: bytes):
    def edit(m) -> None:
        code = m.operatorCodes[0]
        code.builtinCode = code.deprecatedBuiltinCode = B.CUSTOM
        code.customCode = name
    return edit


@pytest.mark.parametrize("name, shown", [(b"NPU_OP", "NPU_OP"), (b"EVIL\nOP \x1b[31m", repr("EVIL\nOP \x1b[31m"))])
def test_custom_ops_are_named_by_their_custom_code_and_never_run(tmp_path, name, shown):
    path = write(tmp_path, "custom.tflite", edited(TINY, _custom_first_code(name)))
    model = load_model(path)
    names = [op.name for op in model.operators]
    litert_names = litert_op_names(path)
    assert names[1:] == litert_names[1:]
    assert litert_names[0] == name.decode()         # LiteRT names it by its custom code, raw
    assert names[0] == shown                        # we escape what is file data
    info = cli("info", "-m", path)
    assert info.returncode == 0 and f"{shown} v" in info.stdout
    assert json.loads(cli("info", "-m", path, "--json").stdout)["operators"]
    # LiteRT refuses it too ("Encountered unresolved custom op")
    with pytest.raises(RuntimeError, match="unresolved custom op"):
        litert_interpreter(path).allocate_tensors()
    for command in (["verify", "--random", "1"], ["lint", "--random", "1"], ["run", "--ids", "101 7 102"]):
        error = one_line_error(cli(command[0], "-m", path, *command[1:]))
        assert error == f"error: custom op {shown}: not implemented by the NumPy interpreter (operator 0)"


# ------------------------------------------------------------------------------------------------
# Valid files LiteRT runs: never an internal error
# ------------------------------------------------------------------------------------------------

def _string_gather_model() -> bytes:
    """GATHER of a STRING input (built in float, then retyped: opmodels has no STRING data)."""
    from opmodels import GatherOptionsT, model, op, tensor
    words = tensor("words", (3,), "float32")
    picked = tensor("picked", (2,), "float32")
    m = unpack(model([op("GATHER", [words, tensor("idx", (2,), "int32", data=[2, 0])], [picked],
                          GatherOptionsT(), version=1)]))
    for t in m.subgraphs[0].tensors:
        if t.name in (b"words", b"picked"):
            t.type = schema.TensorType.STRING
    return pack(m)


def test_string_tensors_are_refused_in_one_line_where_litert_runs_them(tmp_path):
    path = write(tmp_path, "string_gather.tflite", _string_gather_model())
    it = litert_interpreter(path)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], np.array([b"a", b"bb", b"c"], dtype=object))
    it.invoke()
    assert it.get_tensor(it.get_output_details()[0]["index"]).tolist() == [b"c", b"a"]
    from npmobilebert.inputs import InputMaker
    drawn = InputMaker(load_model(path)).random(np.random.default_rng(0)).arrays[0]
    assert drawn.shape == (3,) and all(isinstance(w, bytes) and w for w in drawn)
    for command in ("verify", "lint"):
        error = one_line_error(cli(command, "-m", path, "--random", "1"))
        assert error == ("error: STRING tensors are not implemented by the NumPy interpreter: "
                         "tensor 0 ('words') of operator 0 (GATHER v1)")


def test_a_constant_graph_output_is_verified(tmp_path):
    from opmodels import AddOptionsT, model, op, tensor
    a = tensor("a", (2,), "float32")
    c = tensor("c", (2,), "float32", data=[1.5, -2])
    s = tensor("s", (2,), "float32")
    path = write(tmp_path, "constant_output.tflite",
                 model([op("ADD", [a, c], [s], AddOptionsT())], inputs=[a], outputs=[s, c]))
    it = litert_interpreter(path)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], np.array([1, 2], np.float32))
    it.invoke()
    theirs = [it.get_tensor(d["index"]) for d in it.get_output_details()]
    ours = Interpreter(load_model(path)).run([np.array([1, 2], np.float32)])
    for a_, b_ in zip(ours, theirs):
        np.testing.assert_array_equal(a_, b_)
    assert Interpreter(load_model(path)).run_all([np.array([1, 2], np.float32)])[1].tolist() == [1.5, -2]
    r = cli("verify", "-m", path, "--random", "2")
    assert r.returncode == 0 and "final outputs identical: 2/2" in r.stdout, r.stdout + r.stderr


def test_a_zero_size_output_is_verified(tmp_path):
    from opmodels import AddOptionsT, model, op, tensor
    a = tensor("a", (2, 0), "float32")
    s = tensor("s", (2, 0), "float32")
    path = write(tmp_path, "zero_size.tflite", model([op("ADD", [a, a], [s], AddOptionsT())]))
    it = litert_interpreter(path)
    it.allocate_tensors()
    it.invoke()
    assert it.get_tensor(it.get_output_details()[0]["index"]).shape == (2, 0)
    r = cli("verify", "-m", path, "--random", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "labels agree: 2/2" in r.stdout
    assert cli("run", "-m", path, "--ids", "1").returncode == 2    # no ids input: refused, not a crash


# ------------------------------------------------------------------------------------------------
# Valid files LiteRT runs: never a wrong refusal
# ------------------------------------------------------------------------------------------------

def _litert_run(path: Path, feeds: list[np.ndarray]) -> list[np.ndarray]:
    it = litert_interpreter(path)
    it.allocate_tensors()
    for d, value in zip(it.get_input_details(), feeds):
        it.set_tensor(d["index"], value)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


def _assert_runs_as_litert(path: Path, feeds: list[np.ndarray]) -> None:
    ours = Interpreter(load_model(path)).run(feeds)
    theirs = _litert_run(path, feeds)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)


def test_an_empty_constant_of_shape_0_is_a_constant(tmp_path):
    """RESHAPE to a scalar: the converter writes its new shape as an int32 [0] constant with an
    empty buffer -- which the file cannot tell from "no data"."""
    from opmodels import ReshapeOptionsT, model, op, tensor
    x = tensor("x", (1,), "float32")
    y = tensor("y", (), "float32")
    new_shape = tensor("new_shape", (0,), "int32", data=np.zeros(0))
    path = write(tmp_path, "reshape_to_scalar.tflite", model([op("RESHAPE", [x, new_shape], [y], ReshapeOptionsT())]))
    assert load_model(path).tensors[1].data.shape == (0,)
    _assert_runs_as_litert(path, [np.array([2.5], np.float32)])
    assert cli("verify", "-m", path, "--random", "2").returncode == 0


def test_an_output_of_unknown_shape_takes_the_shape_it_is_computed_with(tmp_path):
    """`shape: []` beside a shape_signature of rank 2: LiteRT resizes the tensor in Prepare."""
    from opmodels import AddOptionsT, model, op, tensor
    x = tensor("x", (2, 4), "float32")
    y = tensor("y", (2, 4), "float32")

    def unknown(m):
        (t,) = [t for t in m.subgraphs[0].tensors if t.name == b"y"]
        t.shape, t.shapeSignature = [], [-1, 4]

    path = write(tmp_path, "unknown_shape.tflite", edited_bytes(model([op("ADD", [x, x], [y], AddOptionsT())]), unknown))
    feed = np.arange(8, dtype=np.float32).reshape(2, 4)
    _assert_runs_as_litert(path, [feed])
    assert cli("verify", "-m", path, "--random", "2").returncode == 0
    # a computed shape that contradicts the known dimension is still refused
    from npmobilebert.interpreter import _resolves_unknown_shape
    assert not _resolves_unknown_shape(load_model(path).tensors[1], (2, 5))


@pytest.mark.parametrize("opcode", ["ADD", "FULLY_CONNECTED", "SOFTMAX", "QUANTIZE", "TANH"])
def test_quantization_parameters_on_float32_tensors_are_ignored_as_litert_ignores_them(tmp_path, opcode):
    """A FLOAT32 tensor carrying int8 scales and zero points is still float: LiteRT's kernels
    dispatch on the tensor type, so the parameters are unused."""
    from opmodels import (AddOptionsT, FullyConnectedOptionsT, QuantizeOptionsT, SoftmaxOptionsT,
                          model, op, tensor)
    x = tensor("x", (2, 4), "float32", scale=0.1, zero_point=3)
    if opcode == "ADD":
        y = tensor("y", (2, 4), "float32", scale=0.05, zero_point=-2)
        ops = [op("ADD", [x, tensor("c", (2, 4), "float32", scale=0.1, zero_point=1, data=np.ones((2, 4)))],
                  [y], AddOptionsT())]
    elif opcode == "FULLY_CONNECTED":
        w = tensor("w", (3, 4), "float32", scale=0.02, zero_point=0, data=np.linspace(-1, 1, 12))
        ops = [op("FULLY_CONNECTED", [x, w, None], [tensor("y", (2, 3), "float32", scale=0.1, zero_point=0)],
                  FullyConnectedOptionsT())]
    elif opcode == "SOFTMAX":
        ops = [op("SOFTMAX", [x], [tensor("y", (2, 4), "float32", scale=1 / 256, zero_point=-128)],
                  SoftmaxOptionsT(beta=1.0))]
    elif opcode == "QUANTIZE":
        ops = [op("QUANTIZE", [x], [tensor("y", (2, 4), "int8", scale=0.1, zero_point=0)], QuantizeOptionsT())]
    else:
        ops = [op("TANH", [x], [tensor("y", (2, 4), "float32", scale=1 / 128, zero_point=0)])]
    path = write(tmp_path, f"float_with_scales_{opcode}.tflite", model(ops))
    feed = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    _assert_runs_as_litert(path, [feed])


def _svdf_model() -> bytes:
    """SVDF, rank 1: 2 units over 3 inputs with a memory of 4; its activation state is a
    variable tensor nothing writes before the op reads it."""
    from opmodels import model, op, tensor
    rng = np.random.default_rng(0)
    x = tensor("x", (1, 3), "float32")
    features = tensor("weights_feature", (2, 3), "float32", data=rng.standard_normal((2, 3)))
    time = tensor("weights_time", (2, 4), "float32", data=rng.standard_normal((2, 4)))
    bias = tensor("bias", (2,), "float32", data=[0.1, -0.2])
    state = tensor("state", (1, 8), "float32")
    y = tensor("y", (1, 2), "float32")
    blob = model([op("SVDF", [x, features, time, bias, state], [y], schema.SVDFOptionsT(), version=1)],
                 inputs=[x], outputs=[y])

    def variable_state(m):
        m.subgraphs[0].operators[0].builtinOptions.rank = 1
        for t in m.subgraphs[0].tensors:
            t.isVariable = t.name == b"state"

    return edited_bytes(blob, variable_state)


def test_stateful_ops_are_refused_as_not_implemented_not_for_their_state(tmp_path):
    path = write(tmp_path, "svdf.tflite", _svdf_model())
    _litert_run(path, [np.ones((1, 3), np.float32)])       # LiteRT runs it
    error = one_line_error(cli("verify", "-m", path, "--random", "1"))
    assert error == "error: operator 0 (SVDF v1): this op is not implemented by the NumPy interpreter"


def _blockwise_int4_model() -> bytes:
    """A hybrid FULLY_CONNECTED whose INT4 weights have one float16 scale per block of 32 inputs
    (QuantizationParameters.details = BlockwiseQuantization), as ai-edge-quantizer writes them."""
    from opmodels import FullyConnectedOptionsT, model, op, tensor
    x = tensor("x", (1, 32), "float32")
    w = tensor("w", (4, 32), "int8", scale=[0.1] * 4, data=np.zeros((4, 32)))
    y = tensor("y", (1, 4), "float32")
    blob = model([op("FULLY_CONNECTED", [x, w, None], [y],
                     FullyConnectedOptionsT(asymmetricQuantizeInputs=True), version=6)])

    def blockwise(m):
        sg = m.subgraphs[0]
        (weights,) = [t for t in sg.tensors if t.name == b"w"]
        scales = schema.TensorT()
        scales.name, scales.shape, scales.type = b"w_scales", [4, 1], schema.TensorType.FLOAT16
        scales_buffer = schema.BufferT()
        scales_buffer.data = np.full((4, 1), 0.25, np.float16).tobytes()
        scales.buffer = len(m.buffers)
        m.buffers.append(scales_buffer)
        sg.tensors.append(scales)
        weights.type = schema.TensorType.INT4
        nibbles = np.arange(4 * 32, dtype=np.uint8) % 16
        m.buffers[weights.buffer].data = (nibbles[0::2] | (nibbles[1::2] << 4)).tobytes()
        details = schema.BlockwiseQuantizationT()
        details.scales, details.zeroPoints, details.blockSize = len(sg.tensors) - 1, -1, 32
        q = schema.QuantizationParametersT()
        q.detailsType, q.details = schema.QuantizationDetails.BlockwiseQuantization, details
        weights.quantization = q

    return edited_bytes(blob, blockwise)


def test_blockwise_int4_weights_are_refused_as_what_they_are(tmp_path):
    path = write(tmp_path, "blockwise.tflite", _blockwise_int4_model())
    assert load_model(path).tensors[1].quantization_details == "blockwise"
    _litert_run(path, [np.ones((1, 32), np.float32)])       # LiteRT runs it
    error = one_line_error(cli("verify", "-m", path, "--random", "1"))
    assert error == ("error: blockwise quantization not implemented "
                     "(INT4 tensor 1 ('w') of operator 0 (FULLY_CONNECTED v6))")


# ------------------------------------------------------------------------------------------------
# verify on a graph without operators
# ------------------------------------------------------------------------------------------------

def _no_operators(empty: bool) -> bytes:
    """A graph that returns its input as is, or (empty) one without tensors at all."""
    from opmodels import model, tensor
    x = tensor("x", (2,), "float32")
    blob = model([], inputs=[x], outputs=[x])
    if not empty:
        return blob

    def clear(m):
        sg = m.subgraphs[0]
        sg.tensors, sg.inputs, sg.outputs = [], [], []

    return edited_bytes(blob, clear)


@pytest.mark.parametrize("empty", [False, True], ids=["identity", "empty"])
def test_verify_of_a_graph_without_operators_is_not_a_mismatch(tmp_path, empty):
    path = write(tmp_path, "no_ops.tflite", _no_operators(empty))
    litert_interpreter(path).allocate_tensors()          # LiteRT loads and runs it
    report = tmp_path / "report.json"
    r = cli("verify", "-m", path, "--random", "2", "--json", report)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "nothing to compare: the graph has no operators" in r.stdout
    assert json.loads(report.read_text())["operators"] == 0


# ------------------------------------------------------------------------------------------------
# --random draws inputs the model accepts
# ------------------------------------------------------------------------------------------------

VOCAB, POSITIONS, SEQ = 50, 8, 8


@pytest.fixture(scope="module")
def embedding_model(tmp_path_factory) -> Path:
    """A text model from the real converter: token embeddings (GATHER of `tokens`), position
    embeddings indexed by an int64 input through CAST and RESHAPE, an attention mask."""
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)

    class Embed(tf.Module):
        def __init__(self):
            super().__init__()
            self.words = tf.constant(rng.standard_normal((VOCAB, 4)), tf.float32)
            self.places = tf.constant(rng.standard_normal((POSITIONS, 4)), tf.float32)

        @tf.function(input_signature=[tf.TensorSpec((1, SEQ), tf.int32, name="tokens"),
                                      tf.TensorSpec((SEQ,), tf.int64, name="positions"),
                                      tf.TensorSpec((1, SEQ), tf.int32, name="attention_mask")])
        def __call__(self, tokens, positions, attention_mask):
            words = tf.gather(self.words, tokens)
            places = tf.gather(self.places, tf.reshape(tf.cast(positions, tf.int32), (1, SEQ)))
            keep = tf.cast(tf.expand_dims(attention_mask, -1), tf.float32)
            return {"pooled": tf.reduce_sum((words + places) * keep, axis=1)}

    module = Embed()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    path = tmp_path_factory.mktemp("embedding") / "embedding.tflite"
    path.write_bytes(converter.convert())
    return path


@pytest.mark.slow
def test_random_inputs_index_inside_the_tables_the_model_gathers_from(embedding_model):
    from npmobilebert.inputs import InputMaker
    model = load_model(embedding_model)
    assert {"GATHER", "CAST", "RESHAPE"} <= {op.opcode for op in model.operators}
    maker = InputMaker(model)
    names = [t.name for t in maker.specs]
    rng = np.random.default_rng(0)
    for _ in range(20):
        drawn = dict(zip(names, maker.random(rng).arrays))
        (tokens,) = [v for k, v in drawn.items() if "tokens" in k]
        (positions,) = [v for k, v in drawn.items() if "positions" in k]
        (mask,) = [v for k, v in drawn.items() if "mask" in k]
        assert 0 <= tokens.min() and tokens.max() < VOCAB
        assert 0 <= positions.min() and positions.max() < POSITIONS
        assert set(np.unique(mask)) <= {0, 1}
        # LiteRT (the oracle) runs them: GATHER refuses an index outside its table
        theirs = _litert_run(embedding_model, [drawn[d["name"]] for d in
                                               litert_interpreter(embedding_model).get_input_details()])
        assert np.isfinite(theirs[0]).all()
    for command in ("verify", "lint"):
        r = cli(command, "-m", embedding_model, "--random", "3")
        assert r.returncode == 0, r.stdout + r.stderr
    r = cli("verify", "-m", embedding_model, "--random", "3")
    assert "every tensor is identical" in r.stdout


def test_random_ids_of_the_fixtures_stay_inside_their_embedding_table():
    from npmobilebert.inputs import InputMaker, input_value_ranges
    model = load_model(TINY)
    maker = InputMaker(model)
    ids = maker.roles.index("ids")
    ranges = input_value_ranges(model)
    table_rows = max(model.tensors[op.inputs[0]].shape[0] for op in model.operators if op.opcode == "GATHER")
    assert ranges[model.inputs[ids]][1] < table_rows
    rng = np.random.default_rng(1)
    for _ in range(10):
        assert maker.random(rng).arrays[ids].max() <= ranges[model.inputs[ids]][1]


def test_random_bools_and_masks_are_0_or_1():
    from opmodels import AddOptionsT, CastOptionsT, model, op, tensor
    flag = tensor("flag", (64,), "bool")
    mask = tensor("input_mask", (64,), "int32")
    as_int = tensor("flag_int", (64,), "int32")
    out = tensor("sum", (64,), "int32")
    blob = model([op("CAST", [flag], [as_int], CastOptionsT()), op("ADD", [as_int, mask], [out], AddOptionsT())])
    from npmobilebert.inputs import InputMaker
    drawn = InputMaker(load_model(blob)).random(np.random.default_rng(0)).arrays
    assert drawn[0].dtype == np.bool_ and drawn[0].any() and not drawn[0].all()
    assert set(np.unique(drawn[1])) == {0, 1}


def test_random_inputs_of_a_quantized_rsqrt_are_at_or_above_its_zero_point(tmp_path):
    """LiteRT's quantized RSQRT refuses values below the zero point: random ones must not be."""
    from opmodels import model, op, tensor
    x = tensor("x", (1, 4, 32), "int16", scale=6.1e-05, zero_point=0)
    y = tensor("y", (1, 4, 32), "int16", scale=0.004, zero_point=0)
    path = write(tmp_path, "rsqrt16.tflite", model([op("RSQRT", [x], [y])]))
    from npmobilebert.inputs import InputMaker
    drawn = InputMaker(load_model(path)).random(np.random.default_rng(0)).arrays[0]
    assert drawn.min() >= 0 and drawn.max() > 127
    _litert_run(path, [drawn])
    r = cli("verify", "-m", path, "--random", "3")
    assert r.returncode == 0 and "every tensor is identical" in r.stdout, r.stdout + r.stderr
