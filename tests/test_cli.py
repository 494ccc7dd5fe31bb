"""The command line as a user runs it: a real subprocess, real exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TINY = str(FIXTURES / "tiny_int8.tflite")


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "npmobilebert.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_verify_identical_exits_0(tmp_path):
    pytest.importorskip("ai_edge_litert.interpreter")
    out = tmp_path / "report.json"
    r = cli("verify", "-m", TINY, "--random", "2", "--text", "great phone, awful battery",
            "--ids", "101 7 8 102", "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "every tensor is identical" in r.stdout
    report = json.loads(out.read_text())
    assert report["inputs"] == 4
    assert report["tensors_compared"] == report["tensors_identical"] > 0
    assert report["first_divergence"] is None


def test_verify_names_the_first_divergent_tensor():
    """Flip one bit of one intermediate in LiteRT's run: verify must name that tensor and op."""
    pytest.importorskip("ai_edge_litert.interpreter")
    from npmobilebert.inputs import InputMaker
    from npmobilebert.interpreter import Interpreter
    from npmobilebert.model import load_model
    from npmobilebert.runtime import LiteRTRunner
    from npmobilebert.verify import verify

    model = load_model(TINY)
    target_op = [op for op in model.operators if op.opcode == "SOFTMAX"][1]
    target = target_op.outputs[0]

    class FlipOneBit:
        def __init__(self):
            self.inner = LiteRTRunner(TINY, resolver="ref")

        def run_all(self, arrays):
            values = self.inner.run_all(arrays)
            values[target] = values[target].copy()
            values[target].reshape(-1)[3] ^= 1
            return values

    arrays = [InputMaker(model).random(np.random.default_rng(0)).arrays]
    report = verify(model, Interpreter(model), FlipOneBit(), arrays, "ref")
    first = report.comparison.first_divergence
    assert not report.identical
    assert (first.index, first.op_index, first.op_type) == (target, target_op.index, "SOFTMAX")
    assert first.mismatched == 1 and first.max_diff == 1


def test_verify_against_default_reports_agreement(tmp_path):
    pytest.importorskip("ai_edge_litert.interpreter")
    r = cli("verify", "-m", TINY, "--against", "default", "--random", "3", "--json",
            str(tmp_path / "r.json"))
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["against"] == "default" and report["tensors_compared"] > 0
    assert r.returncode == (0 if report["labels_agree"] == report["inputs"] else 1)


def test_run_trace_levels_and_save(tmp_path):
    save = tmp_path / "trace.npz"
    r1 = cli("run", "-m", TINY, "-t", "the bank was helpful")
    r3 = cli("run", "-m", TINY, "-ttt", "--save", str(save), "the bank was helpful")
    assert r1.returncode == 0 and r3.returncode == 0, r1.stderr + r3.stderr
    from npmobilebert.inputs import model_labels
    from npmobilebert.model import load_model
    model = load_model(TINY)
    op_lines = [line for line in r1.stdout.splitlines() if line[:4].strip().isdigit()]
    assert len(op_lines) == sum(len(op.outputs) for op in model.operators)
    assert "FULLY_CONNECTED" in r1.stdout and "SOFTMAX" in r1.stdout
    assert "mirrors:" in r3.stdout and "params:" in r3.stdout and "mirrors:" not in r1.stdout
    assert r1.stdout.splitlines()[-1].split()[0] in model_labels(model)
    saved = np.load(save)
    produced = {model.tensors[i].name for op in model.operators for i in op.outputs}
    assert produced <= set(saved.files)


@pytest.mark.parametrize("args,needle", [
    (["info", "-m", "/nonexistent/model.tflite"], "error:"),
    (["info", "-m", __file__], "not a TFLite model"),
    (["run", "-m", TINY], "give either TEXT or --ids"),
    (["run", "-m", TINY, "--ids", "101 abc"], "--ids takes whole numbers"),
    (["run", "-m", TINY, "--ids", "101 99999999 102"], "outside the vocabulary"),
    (["verify", "-m", TINY, "--random", "0"], "nothing to compare"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle):
    r = cli(*args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert needle in r.stderr
    assert "Traceback" not in r.stderr


def test_info_json():
    r = cli("info", "-m", TINY, "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert "FULLY_CONNECTED" in json.dumps(data)


def test_readme_main_job_on_the_default_model():
    """`npmobilebert run --trace "..."` with no -m uses models/mobilebert_int8.tflite; its trace
    fits 120 columns under a legend and a header, and it ends with classify's answer."""
    from npmobilebert.model import load_model
    from npmobilebert.trace import LINE_WIDTH

    repo = Path(__file__).resolve().parents[1]
    tweet = "Just switched banks and the new one is so much better"
    r = cli("run", "--trace", tweet, cwd=repo)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert LINE_WIDTH == 120
    assert [line for line in lines if len(line) > 120] == []
    assert lines[0].startswith("tokens: [CLS]")
    assert lines[1].startswith("clamp: ") and "!" in lines[1]                  # the legend
    assert lines[2].split()[:4] == ["op", "type", "shape", "dtype"]             # the header row
    model = load_model(repo / "models" / "mobilebert_int8.tflite")
    op_lines = [line for line in lines if line[:4].strip().isdigit()]
    assert len(op_lines) == sum(len(op.outputs) for op in model.operators)
    assert any(" FULLY_CONNECTED " in line for line in op_lines)
    # README's excerpt of this output is real: each of its lines is one of these lines
    readme = (repo / "README.md").read_text(encoding="utf-8")
    excerpt = readme.split("```text\ntokens: ", 1)[1].split("```", 1)[0]
    shown = ["tokens: " + excerpt.splitlines()[0]] + [ln for ln in excerpt.splitlines()[1:] if ln != "..."]
    assert len(shown) >= 6 and [ln for ln in shown if ln not in lines] == []
    assert shown[-1] == lines[-1]
    answer = cli("classify", "--engine", "numpy", tweet, cwd=repo)
    assert answer.returncode == 0, answer.stderr
    assert lines[-1] == answer.stdout.strip()

    # -tt: every output tensor's full name, which -t shortens where the line has no room for it
    full = {model.tensors[i].name for op in model.operators for i in op.outputs}
    shortened = [name for name in full if name.split(";")[0] not in r.stdout]
    assert shortened, "no name of the shipped model needs shortening: the test checks nothing"
    rr = cli("run", "-tt", tweet, cwd=repo)
    assert rr.returncode == 0, rr.stderr
    named = {line.split("tensor: ", 1)[1].split("  ")[0] for line in rr.stdout.splitlines()
             if line.startswith("       tensor: ")}
    assert named == full


# -- guardrails: warnings a user expects, nothing a library prints leaking into our output ---------

def _cores() -> int:
    import os
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def test_threads_above_the_core_count_warn_in_one_line(tmp_path):
    pytest.importorskip("ai_edge_litert.interpreter")
    over = cli("dump", "-m", TINY, "--random", "1", "--threads", str(_cores() + 1), "--out", str(tmp_path / "a.npz"))
    assert over.returncode == 0, over.stderr
    warned = [line for line in over.stderr.splitlines() if line.startswith("warning: --threads")]
    assert len(warned) == 1 and f"{_cores()} core" in warned[0]
    fine = cli("dump", "-m", TINY, "--random", "1", "--threads", "1", "--out", str(tmp_path / "b.npz"))
    assert fine.returncode == 0 and "--threads" not in fine.stderr, fine.stderr


def test_litert_delegate_log_does_not_leak():
    """LiteRT's C++ prints "INFO: Created TensorFlow Lite XNNPACK delegate" on fd 2 when its default
    resolver loads a model; our commands catch it."""
    pytest.importorskip("ai_edge_litert.interpreter")
    raw = subprocess.run([sys.executable, "-c", "from ai_edge_litert.interpreter import Interpreter; "
                          f"Interpreter(model_path={TINY!r}).allocate_tensors()"],
                         capture_output=True, text=True, timeout=120)
    if "XNNPACK delegate" not in raw.stderr:
        pytest.skip("this LiteRT does not log its delegate: nothing to catch")
    r = cli("verify", "-m", TINY, "--against", "default", "--random", "1")
    assert r.returncode in (0, 1), r.stderr
    assert "XNNPACK delegate" not in r.stdout + r.stderr
    assert "INFO:" not in r.stdout + r.stderr


def test_trace_names_fit_their_width_and_stay_one_line():
    from npmobilebert.trace import short_name

    fused = "model/layer_3/attention/query/MatMul;model/layer_3/attention/query/BiasAdd;model/x"
    for width in (16, 24, 40, 80):
        shown = short_name(fused, width)
        assert len(shown) <= width and shown.endswith("MatMul;+2"), (width, shown)
    assert short_name(fused, 40) == "model/layer_3/attention/query/MatMul;+2"
    assert short_name(fused, 30) == ".../attention/query/MatMul;+2"
    assert short_name("scope/evil\nname\x1b[2J", 40) == "scope/evil\\nname\\x1b[2J"
    assert short_name("a/b;", 40) == "a/b"          # the converter's trailing ';' names nothing more
