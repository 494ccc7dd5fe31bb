"""Numerics profiles against the runtimes they reproduce (numerics.py).

``tflm``: TensorFlow Lite Micro's own interpreter (the ``tflite-micro`` package, preserve-all-
tensors) on the int8 fixtures and on one-op FULLY_CONNECTED models: every tensor bit-identical.
The tests skip, with the reason, where the package is not installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import opmodels
import test_ops as op_cases  # the one-op model builders (not its tests: a module, not names)

from npmobilebert import fixedpoint as fp
from npmobilebert.errors import InputError
from npmobilebert.inputs import InputMaker
from npmobilebert.interpreter import Interpreter
from npmobilebert.model import load_model
from npmobilebert.numerics import PROFILES, get_profile
from npmobilebert.verify import verify

FIXTURES = Path(__file__).parent / "fixtures"
INT8_FIXTURES = ["tiny_int8.tflite", "tiny_int8-per-tensor.tflite", "tiny_int8_mask10000.tflite",
                 "tiny_int8_tf215.tflite"]

needs_tflm = pytest.mark.skipif(
    not __import__("npmobilebert.runtime", fromlist=["tflm_available"]).tflm_available(),
    reason="TensorFlow Lite Micro is not installed (pip install tflite-micro, the [tflm] extra)")


def _random_inputs(model, n: int, seed: int) -> list[list[np.ndarray]]:
    maker, rng = InputMaker(model), np.random.default_rng(seed)
    return [maker.random(rng).arrays for _ in range(n)]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "npmobilebert.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_unknown_profile_is_an_input_error():
    with pytest.raises(InputError, match="unknown numerics profile 'arm'"):
        get_profile("arm")
    assert set(PROFILES) >= {"litert-ref", "tflm"}


@needs_tflm
@pytest.mark.parametrize("name", INT8_FIXTURES)
def test_tflm_profile_is_bit_identical_to_tflite_micro(name):
    from npmobilebert.runtime import TFLMRunner

    model = load_model(str(FIXTURES / name))
    report = verify(model, Interpreter(model, numerics="tflm"), TFLMRunner(model.path),
                    _random_inputs(model, 3, seed=7), "tflm")
    c = report.comparison
    first = c.first_divergence
    assert c.compared == c.identical > 0, (
        f"{c.compared - c.identical} tensors differ; first: op {first.op_index} {first.op_type} "
        f"'{first.name}' {first.pattern}")
    assert report.ok and report.exact


@needs_tflm
def test_litert_ref_profile_is_not_what_tflite_micro_computes():
    """The profile is needed: LiteRT's double-precision FULLY_CONNECTED requantization differs
    from TFLite Micro's fixed-point one on the shipped-style fixture."""
    from npmobilebert.runtime import TFLMRunner

    model = load_model(str(FIXTURES / "tiny_int8.tflite"))
    report = verify(model, Interpreter(model), TFLMRunner(model.path),
                    _random_inputs(model, 3, seed=7), "tflm")
    first = report.comparison.first_divergence
    assert first is not None and first.op_type == "FULLY_CONNECTED"


@needs_tflm
@pytest.mark.parametrize("path,per_channel", [("int8", True), ("int8", False),
                                              ("int16x8", True), ("int16x8", False)])
def test_tflm_fully_connected_one_op_models(path, per_channel):
    """Random one-op FULLY_CONNECTED models (scales over orders of magnitude, any zero points,
    bias or not, fused activations) in TFLite Micro vs the tflm profile."""
    from npmobilebert.runtime import TFLMRunner

    for i, c in op_cases.cycle(op_cases.FC_QUANT):
        rng = op_cases._rng("fc", path, per_channel, i)
        case = op_cases._fc_case(rng, path, per_channel, **c)
        theirs = TFLMRunner(case.blob).run(case.arrays)
        ours = Interpreter(load_model(case.blob), numerics="tflm").run(case.arrays)
        for o, t in zip(ours, theirs):
            np.testing.assert_array_equal(o, t, err_msg=f"case {i}\n{case.what}")


# -- TFLite Micro multiplies the scales in double: one-op models where that decides -----------------

def _multipliers(s1, s2, s_out):
    """(M0, shift) of s1 * s2 / s_out with the scale product in float32 (LiteRT's kernels) and in
    double (the tflite-micro package's build)."""
    s1, s2, s_out = np.float32(s1), np.float32(s2), np.float32(s_out)
    in_float32 = fp.quantize_multiplier(np.float64(np.float32(s1 * s2)) / np.float64(s_out))
    in_double = fp.quantize_multiplier(np.float64(s1) * np.float64(s2) / np.float64(s_out))
    return in_float32, in_double


def _discriminating_scales(accumulators: np.ndarray, span: float, seed: int):
    """Scales (s1, s2, s_out) of an op whose int32 accumulators are ``accumulators`` (output
    about +-span steps, clamped to int8) where the two scale products requantize at least one accumulator
    differently: the case a test needs to tell the two rules apart."""
    rng = np.random.default_rng(seed)
    for _ in range(2000):
        s1, s2 = np.float32(rng.uniform(1e-3, 5e-2)), np.float32(rng.uniform(1e-3, 5e-2))
        # a random ratio: a round one (say 120 / 16000) puts no product near a rounding tie
        s_out = np.float32(s1 * s2 * np.abs(accumulators).max() / span * rng.uniform(0.8, 1.25))
        in_float32, in_double = _multipliers(s1, s2, s_out)
        if in_float32 == in_double:
            continue
        differ = (fp.multiply_by_quantized_multiplier(accumulators, *in_float32)
                  != fp.multiply_by_quantized_multiplier(accumulators, *in_double))
        if differ.any():
            return s1, s2, s_out, accumulators[differ]
    raise AssertionError("no discriminating scales found")


def _fc_per_tensor_case():
    """FULLY_CONNECTED, per-tensor weights: input 0 (zero point 0), so each unit's accumulator is
    its bias, set to the accumulators where the two scale products round differently."""
    t = opmodels.tensor
    s1, s2, s_out, accs = _discriminating_scales(np.arange(-16000, 16001, dtype=np.int64), 120, seed=1)
    units = accs.size
    blob = opmodels.single_op_model(
        "FULLY_CONNECTED",
        [t("x", (1, 1), "int8", scale=s1, zero_point=0),
         t("w", (units, 1), "int8", scale=s2, zero_point=0, data=np.ones((units, 1))),
         t("b", (units,), "int32", scale=float(np.float32(s1 * s2)), zero_point=0, data=accs)],
        [t("y", (1, units), "int8", scale=s_out, zero_point=0)], opmodels.FullyConnectedOptionsT())
    return blob, [np.zeros((1, 1), np.int8)], accs[None, :], (s1, s2, s_out)


def _mul_case():
    """MUL: every pair of int8 values (zero points 0: the accumulators are all their products)."""
    t = opmodels.tensor
    a, b = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
    products = np.unique(a * b).astype(np.int64)
    s1, s2, s_out, _ = _discriminating_scales(products, 120, seed=2)
    blob = opmodels.single_op_model(
        "MUL", [t("a", a.shape, "int8", scale=s1, zero_point=0), t("b", a.shape, "int8", scale=s2, zero_point=0)],
        [t("y", a.shape, "int8", scale=s_out, zero_point=0)], opmodels.MulOptionsT())
    return blob, [a.astype(np.int8), b.astype(np.int8)], (a * b).astype(np.int64), (s1, s2, s_out)


def _batch_matmul_case():
    """BATCH_MATMUL of lhs [n, 9] by a constant rhs (127, ..., 127, 1): each row's accumulator
    is 127 * (sum of its first 8 values) + its last one, which covers every integer up to
    +-129,032; the rows take every 7th of them."""
    t = opmodels.tensor
    accs = np.arange(-127 * 127 * 8, 127 * 127 * 8 + 1, 7, dtype=np.int64)
    high = np.round(accs / 127).astype(np.int64)
    low = accs - 127 * high
    accs, high, low = accs[np.abs(low) <= 127], high[np.abs(low) <= 127], low[np.abs(low) <= 127]
    lhs = np.zeros((accs.size, 9), np.int64)
    for j in range(8):                                     # high split into 8 values in [-127, 127]
        lhs[:, j] = np.clip(high - lhs[:, :j].sum(axis=1), -127, 127)
    lhs[:, 8] = low
    rhs = np.array([[127]] * 8 + [[1]])
    assert np.array_equal(lhs @ rhs, accs[:, None])
    s1, s2, s_out, _ = _discriminating_scales(accs, 127, seed=3)
    blob = opmodels.single_op_model(
        "BATCH_MATMUL", [t("l", lhs.shape, "int8", scale=s1, zero_point=0),
                         t("r", rhs.shape, "int8", scale=s2, zero_point=0, data=rhs)],
        [t("y", (accs.size, 1), "int8", scale=s_out, zero_point=0)], opmodels.BatchMatMulOptionsT())
    return blob, [lhs.astype(np.int8)], accs[:, None], (s1, s2, s_out)


@needs_tflm
@pytest.mark.parametrize("make", [_fc_per_tensor_case, _mul_case, _batch_matmul_case],
                         ids=["FULLY_CONNECTED-per-tensor", "MUL", "BATCH_MATMUL"])
def test_tflm_multiplies_the_scales_in_double(make):
    """TFLite Micro's multiplier for s1 * s2 / s_out comes from the scales multiplied in double
    (FULLY_CONNECTED per-tensor, MUL, BATCH_MATMUL), not from their float32 product as in
    LiteRT: on accumulators where the two round differently, the tflm profile matches TFLite
    Micro and the float32 product does not."""
    from npmobilebert.runtime import TFLMRunner

    blob, arrays, accumulators, scales = make()
    theirs = TFLMRunner(blob).run(arrays)[0]
    ours = Interpreter(load_model(blob), numerics="tflm").run(arrays)[0]
    np.testing.assert_array_equal(ours, theirs)
    in_float32, _ = _multipliers(*scales)
    float32_product = np.clip(fp.multiply_by_quantized_multiplier(accumulators, *in_float32), -128, 127)
    assert np.any(float32_product != theirs.astype(np.int64)), "the case does not tell the rules apart"


@pytest.mark.slow
@needs_tflm
def test_tflm_profile_on_a_converted_per_tensor_model(tmp_path):
    """A 6-layer int8 MobileBERT with per-tensor FULLY_CONNECTED weights, made by the real
    converter: every tensor identical to TFLite Micro, on inputs where the float32 scale
    product would requantize some FULLY_CONNECTED element differently from TFLite Micro."""
    pytest.importorskip("tensorflow")
    from npmobilebert.runtime import TFLMRunner

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "tools" / "convert.py"), "--layers", "6", "--seq-len", "64",
                        "--vocab", str(FIXTURES / "vocab_small.txt"), "--seed", "0",
                        "--schemes", "int8-per-tensor", "--out-dir", str(tmp_path), "--name", "mid", "--quiet"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    model = load_model(str(tmp_path / "mid_int8-per-tensor.tflite"))
    inputs = _random_inputs(model, 3, seed=1)
    report = verify(model, Interpreter(model, numerics="tflm"), TFLMRunner(model.path), inputs, "tflm")
    c = report.comparison
    assert c.compared == c.identical > 0 and report.exact, c.first_divergence
    # the float32 product would not have been: TFLite Micro's own inputs to each per-tensor FC
    runner, differing = TFLMRunner(model.path), 0
    for arrays in inputs:
        theirs = runner.run_all(arrays)
        for op in model.operators:
            w_t = model.tensors[op.inputs[1]] if op.opcode == "FULLY_CONNECTED" else None
            if w_t is None or w_t.dtype != np.int8 or w_t.quantization.per_channel:
                continue
            x_t, out_t = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
            x = theirs[op.inputs[0]].reshape(-1, w_t.shape[-1]).astype(np.int64) - x_t.quantization.zero_point
            acc = x @ w_t.data.reshape(w_t.shape[0], -1).astype(np.int64).T
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                acc = acc + model.tensors[op.inputs[2]].data.astype(np.int64)
            in_float32, _ = _multipliers(x_t.quantization.scale, w_t.quantization.scale, out_t.quantization.scale)
            lo, hi = -128, 127
            act = op.options.get("fused_activation_function")
            if act not in (None, "NONE"):
                continue
            out = np.clip(fp.multiply_by_quantized_multiplier(acc, *in_float32) + out_t.quantization.zero_point, lo, hi)
            differing += int((out != theirs[op.outputs[0]].reshape(acc.shape)).sum())
    assert differing > 0


@needs_tflm
def test_tflm_refuses_int16_gather_in_one_line():
    """TFLite Micro has no int16 GATHER: a 16x8 model does not load there (exit 2, one line)."""
    r = cli("verify", "-m", str(FIXTURES / "tiny_16x8.tflite"), "--against", "tflm", "--random", "1")
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("error: TFLite Micro cannot load the model")
    assert "Traceback" not in r.stderr


@needs_tflm
def test_cli_verify_against_tflm(tmp_path):
    out = tmp_path / "report.json"
    r = cli("verify", "-m", str(FIXTURES / "tiny_int8.tflite"), "--against", "tflm", "--random", "2",
            "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "numerics profile: tflm" in r.stdout
    report = json.loads(out.read_text())
    assert report["numerics"] == "tflm"
    assert report["tensors_compared"] == report["tensors_identical"] > 0
    # the same comparison with the reference profile finds the FULLY_CONNECTED difference
    r = cli("verify", "-m", str(FIXTURES / "tiny_int8.tflite"), "--against", "tflm", "--random", "2",
            "--numerics", "litert-ref")
    assert r.returncode == 0, r.stdout + r.stderr      # not an exact pair: labels decide
    assert "first divergence" in r.stdout and "FULLY_CONNECTED" in r.stdout


@needs_tflm
def test_dump_of_tflm_verifies_with_the_tflm_profile(tmp_path):
    dump = tmp_path / "tflm.npz"
    r = cli("dump", "-m", str(FIXTURES / "tiny_int8.tflite"), "--resolver", "tflm", "--random", "2",
            "--out", str(dump))
    assert r.returncode == 0, r.stdout + r.stderr
    r = cli("verify", "-m", str(FIXTURES / "tiny_int8.tflite"), "--against", str(dump))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "numerics profile: tflm" in r.stdout and "every tensor is identical" in r.stdout


def test_explain_follows_the_profile():
    """explain of a FULLY_CONNECTED element under each profile reproduces that profile's value;
    under xnnpack, so do the SOFTMAX, ADD and MUL whose XNNPACK / builtin arithmetic differs."""
    path = str(FIXTURES / "tiny_int8.tflite")
    for profile in PROFILES:
        r = cli("explain", "-m", path, "--op", "12", "--numerics", profile)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"({profile} numerics)" in r.stdout and "identical" in r.stdout
    operators = load_model(path).operators
    for opcode, words in (("SOFTMAX", "expf"), ("ADD", "qs8-vadd"), ("MUL", "XNNPACK fp32")):
        op = next(o for o in operators if o.opcode == opcode)
        r = cli("explain", "-m", path, "--op", str(op.index), "--numerics", "xnnpack")
        assert r.returncode == 0, r.stdout + r.stderr
        assert words in r.stdout and "the interpreter's output element: identical" in r.stdout


@needs_tflm
def test_cli_verify_per_tensor_against_tflm():
    """verify --against tflm --numerics tflm on the per-tensor int8 fixture: every tensor."""
    r = cli("verify", "-m", str(FIXTURES / "tiny_int8-per-tensor.tflite"), "--against", "tflm",
            "--numerics", "tflm", "--random", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "numerics profile: tflm" in r.stdout and "every tensor is identical" in r.stdout


@pytest.mark.parametrize("profile", ["xnnpack", "xnnpack-aarch64"])
def test_explain_softmax_tables(profile):
    """explain of an int8 SOFTMAX element under the table rules (x86's float table, aarch64's
    uint16 one) reproduces the interpreter's element (exit 0) and says which table it read."""
    for index in ("0,0,3,5", "0,1,7,2", "0,1,15,15"):
        r = cli("explain", "-m", str(FIXTURES / "tiny_int8.tflite"), "--op", "28", "--index", index,
                "--numerics", profile)
        assert r.returncode == 0, r.stdout + r.stderr
        assert ("uint16 table" if profile == "xnnpack-aarch64" else "float table") in r.stdout


def test_bad_profile_on_the_command_line():
    r = cli("run", "-m", str(FIXTURES / "tiny_int8.tflite"), "--ids", "101 102", "--numerics", "arm")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("name", ["tiny_int8.tflite", "tiny_int8-per-tensor.tflite", "tiny_16x8.tflite",
                                  "tiny_16x8_tf215.tflite"])
def test_xnnpack_profile_against_litert_default_resolver(name):
    """LiteRT's default resolver (XNNPACK + builtin kernels) vs the xnnpack profile: every
    tensor of the int8 fixtures (the full-size model's measurement is in docs/numerics.md), and
    of the 16x8 ones, whose FULLY_CONNECTEDs XNNPACK does not take."""
    pytest.importorskip("ai_edge_litert.interpreter")
    from npmobilebert.runtime import LiteRTRunner

    model = load_model(str(FIXTURES / name))
    report = verify(model, Interpreter(model, numerics="xnnpack"),
                    LiteRTRunner(model.path, resolver="default"), _random_inputs(model, 3, seed=3),
                    "default")
    c = report.comparison
    first = c.first_divergence
    assert c.compared == c.identical > 0, (
        f"{c.compared - c.identical} tensors differ; first: op {first.op_index} {first.op_type} "
        f"'{first.name}' {first.pattern}")


def test_litert_ref_profile_is_not_what_xnnpack_computes():
    """The xnnpack profile is needed: the reference's arithmetic differs from XNNPACK's. (On the
    shipped model, whose graph was cleared of the ops where they differ most, they can agree on
    every tensor of a random input; the fixture keeps NoNorm MULs and the score MUL.)"""
    pytest.importorskip("ai_edge_litert.interpreter")
    from npmobilebert.runtime import LiteRTRunner

    model = load_model(str(FIXTURES / "tiny_int8.tflite"))
    report = verify(model, Interpreter(model), LiteRTRunner(model.path, resolver="default"),
                    _random_inputs(model, 1, seed=3), "default")
    assert report.comparison.first_divergence is not None


def test_diff_runtimes_names_the_rule():
    """The first divergence litert-ref vs tflm is a FULLY_CONNECTED, blamed on its requantization
    rule; the report matches what the two interpreters compute."""
    from npmobilebert.diff_runtimes import diff_runtimes

    model = load_model(str(FIXTURES / "tiny_int8.tflite"))
    arrays = _random_inputs(model, 1, seed=1)[0]
    report = diff_runtimes(model, arrays, "litert-ref", "tflm")
    a = Interpreter(model).run_all(arrays)
    b = Interpreter(model, numerics="tflm").run_all(arrays)
    first_op = next(op for op in model.operators
                    if any(not np.array_equal(a[i], b[i]) for i in op.outputs))
    assert report.first.op_index == first_op.index
    assert report.first.op_type == "FULLY_CONNECTED"
    assert first_op.index in report.rule_sites
    np.testing.assert_array_equal(report.outputs_b[0], b[model.outputs[0]])
    r = cli("diff-runtimes", "-m", str(FIXTURES / "tiny_int8.tflite"), "--runtimes", "litert-ref,tflm")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "rule 'fixed-point'" in r.stdout and "rule 'double'" in r.stdout
    r = cli("diff-runtimes", "-m", str(FIXTURES / "tiny_int8.tflite"), "--runtimes", "litert-ref,arm")
    assert r.returncode == 2 and "Traceback" not in r.stderr


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_rule_a_kernel_reports_maps_back_to_its_name(profile):
    """diff-runtimes names a divergence's rule from the source string the kernel reports
    (numerics.rule_of_source): every int8 op whose arithmetic a profile chooses reports the
    source of one rule of its step, and the report shows that rule's name."""
    from npmobilebert.diff_runtimes import _rule_lines
    from npmobilebert.numerics import RULES, rule_of_source

    steps = {"FULLY_CONNECTED": "fc_requantize", "ADD": "add_requantize", "SUB": "add_requantize",
             "MUL": "mul_requantize", "BATCH_MATMUL": "batch_matmul_requantize", "SOFTMAX": "softmax_int8"}
    seen = set()
    for name in INT8_FIXTURES:
        for step in Interpreter(load_model(str(FIXTURES / name)), numerics=profile).plan:
            opcode = step.ctx.op.opcode
            if opcode not in steps or step.ctx.inputs[0].dtype != np.int8:
                continue
            rule = rule_of_source(step.rule)
            assert rule is not None and rule in RULES[steps[opcode]].values(), (opcode, step.rule)
            assert f"rule '{rule.name}'" in _rule_lines(profile, step.rule)[0]
            seen.add(opcode)
    assert seen == set(steps)


def test_docs_table_names_every_rule():
    """docs/numerics.md lists every rule of every profile with the source it mirrors."""
    from npmobilebert.numerics import RULES

    text = (Path(__file__).parent.parent / "docs" / "numerics.md").read_text()
    for rules in RULES.values():
        for rule in rules.values():
            assert f"| `{rule.name}` | {rule.summary} | {rule.source} |" in text


def test_agreement_by_rule_labels_are_the_runtimes(tmp_path):
    """tools/agreement_by_rule.py: its reference and xnnpack outputs are LiteRT's reference and
    default resolvers' logits, text by text, bit for bit; a mixed profile's flips are counted
    against the reference; the TSV reader refuses a file without a text column."""
    pytest.importorskip("ai_edge_litert")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import agreement_by_rule as tool

    from npmobilebert.classify import output_info, predict, to_logits

    model = str(FIXTURES / "tiny_int8.tflite")
    words = [w for w in (FIXTURES / "vocab_small.txt").read_text().split() if w.isalpha()]
    rng = np.random.default_rng(5)
    texts = [" ".join(rng.choice(words, size=int(rng.integers(2, 14)))) for _ in range(24)]
    report = tool.attribute(model, texts)
    _, scale, zero_point = output_info(load_model(model))
    for profile, engine in (("ref", "litert-ref"), ("xnnpack", "litert")):
        runtime = predict(model, texts, engine, processes=1)
        ours = to_logits(report["outputs"][profile], scale, zero_point).reshape(runtime.logits.shape)
        np.testing.assert_array_equal(ours, runtime.logits)
        assert report["labels"][profile] == np.argmax(runtime.logits, axis=1).tolist()
    # the two runtimes differ on these texts, so the comparison above tells the profiles apart
    assert not np.array_equal(report["outputs"]["ref"], report["outputs"]["xnnpack"])
    ref = np.array(report["labels"]["ref"])
    for name, row in report["profiles"].items():
        assert row["label_flips"] == int((np.array(report["labels"][name]) != ref).sum())
    bad = tmp_path / "bad.tsv"
    bad.write_text("label\tsentence\npositive\tgood\n")
    with pytest.raises(InputError, match="no 'text' column"):
        tool.read_texts(str(bad), None)


def test_element_mismatches_are_where_the_runtimes_first_differ():
    """tools/agreement_by_rule.py --elements: at the first op where LiteRT's reference and default
    resolvers differ (its inputs still identical in both), the tool counts exactly the output
    elements the two runtimes differ in; at every op before it, none."""
    pytest.importorskip("ai_edge_litert.interpreter")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import agreement_by_rule as tool

    from npmobilebert.runtime import LiteRTRunner

    path = str(FIXTURES / "tiny_int8.tflite")
    model = load_model(path)
    ref, default = LiteRTRunner(path, resolver="ref"), LiteRTRunner(path, resolver="default")
    first_differences = []
    for arrays in _random_inputs(model, 6, seed=11):
        a, b = ref.run_all(arrays), default.run_all(arrays)
        counts = tool.element_mismatches(path, [arrays])
        for i, op in enumerate(model.operators):
            differ = sum(int(np.count_nonzero(a[t] != b[t])) for t in op.outputs)
            assert counts[i][1] == differ, f"op {i} {op.opcode}"
            if differ:
                first_differences.append(op.opcode)
                break
    assert first_differences, "the runtimes never differed: the comparison above proves nothing"
    kinds = tool.mismatches_by_kind(path, tool.element_mismatches(path, _random_inputs(model, 2, seed=11)))
    assert sum(row["elements"] for row in kinds.values()) > 0 and "MUL per-channel" in kinds
