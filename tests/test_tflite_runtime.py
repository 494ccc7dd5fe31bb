"""The second oracle: tflite-runtime in another Python, behind SubprocessRunner.

Two kinds of test:

* the worker protocol, everywhere: a stand-in ``tflite_runtime`` package that re-exports LiteRT's
  interpreter (on PYTHONPATH of this very Python) runs the worker script for real -- inputs and
  every tensor through .npz files, load errors, a crashing worker;
* the real tflite-runtime 2.14.0, where a Python that has it is named by
  $NPMOBILEBERT_TFLITE_RUNTIME_PYTHON (it needs numpy<2, so never this environment): what loads,
  what agrees, and its per-channel FULLY_CONNECTED bug, named by ``verify``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from npmobilebert.compare import compare_runs
from npmobilebert.errors import InputError, NpMobileBertError
from npmobilebert.inputs import InputMaker
from npmobilebert.interpreter import Interpreter
from npmobilebert.model import load_model

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
TFRT_VENV = REPO / ".venv-tflite-runtime"   # git-ignored


def _provision_tflite_runtime() -> str | None:
    """A Python with the real tflite-runtime 2.14 (numpy<2, so a venv of its own).

    $NPMOBILEBERT_TFLITE_RUNTIME_PYTHON names one; otherwise one is made once under
    .venv-tflite-runtime (from PyPI: 111 MB with its numpy), so that CI runs the real second oracle.
    None (the tests skip) where that cannot be done, e.g. offline.
    """
    named = os.environ.get("NPMOBILEBERT_TFLITE_RUNTIME_PYTHON")
    if named:
        return named
    python = TFRT_VENV / "bin" / "python"
    check = [str(python), "-c", "import tflite_runtime.interpreter"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return str(python)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(TFRT_VENV)], check=True,
                       capture_output=True, timeout=120)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "numpy<2", "tflite-runtime==2.14.0"],
                       check=True, capture_output=True, timeout=600)
    except (subprocess.SubprocessError, OSError):
        return None
    return str(python) if subprocess.run(check, capture_output=True).returncode == 0 else None


@pytest.fixture(scope="session")
def tfrt_python() -> str:
    """The Python with tflite-runtime 2.14, made on first use (not at collection: the fast lane,
    ``pytest -m "not slow"``, never builds .venv-tflite-runtime); the test skips without one."""
    python = _provision_tflite_runtime()
    if not python:
        pytest.skip("no Python with tflite-runtime 2.14 (numpy<2): could not make .venv-tflite-runtime; "
                    "set NPMOBILEBERT_TFLITE_RUNTIME_PYTHON")
    return python


# ------------------------------------------------------------------ a stand-in tflite_runtime


@pytest.fixture()
def shim(tmp_path, monkeypatch):
    """A ``tflite_runtime`` package made of LiteRT's interpreter, importable by child processes.

    With SHIM_CRASH=1 in the environment its invoke() kills the process with SIGSEGV, as a
    kernel reading a shapeless scratch tensor would.
    """
    pytest.importorskip("ai_edge_litert.interpreter")
    pkg = tmp_path / "shim" / "tflite_runtime"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('__version__ = "0.0-shim"\n')
    (pkg / "interpreter.py").write_text(textwrap.dedent("""
        import os
        import signal
        from ai_edge_litert.interpreter import Interpreter as _Interpreter, OpResolverType

        class Interpreter(_Interpreter):
            def invoke(self):
                if os.environ.get("SHIM_CRASH"):
                    os.kill(os.getpid(), signal.SIGSEGV)
                return super().invoke()
        """))
    path = str(tmp_path / "shim")
    monkeypatch.setenv("PYTHONPATH", path + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return sys.executable


@pytest.mark.parametrize("name", ["tiny_int8.tflite", "tiny_float32.tflite", "tiny_16x8.tflite"])
def test_worker_reads_every_tensor(shim, name):
    """Through the worker (and its copy of the model with every op output a graph output),
    LiteRT's reference kernels still agree with the NumPy interpreter on every tensor."""
    from npmobilebert.runtime import SubprocessRunner

    model = load_model(FIXTURES / name)
    interp, maker = Interpreter(model), InputMaker(model)
    with SubprocessRunner(shim, FIXTURES / name, resolver="ref") as runner:
        assert runner.name == "tflite-runtime 0.0-shim"
        rng = np.random.default_rng(7)
        for _ in range(3):
            arrays = maker.random(rng).arrays
            ours, theirs = interp.run_all(arrays), runner.run_all(arrays)
            cmp = compare_runs(model, ours, theirs)
            assert cmp.first_divergence is None and not cmp.missing
            assert cmp.compared == len({i for op in model.operators for i in op.outputs}
                                       | set(model.inputs))
            # constants come back too, and no kernel temporary (index past the model's tensors)
            assert max(theirs) < len(model.tensors)
            (logits,) = runner.run(arrays)
            np.testing.assert_array_equal(logits, ours[model.outputs[0]])
        by_name = {d["name"]: a for d, a in zip(runner.input_details, arrays)}
        np.testing.assert_array_equal(runner.run(by_name)[0], logits)


def test_worker_checks_inputs_and_closes(shim):
    from npmobilebert.runtime import SubprocessRunner

    runner = SubprocessRunner(shim, FIXTURES / "tiny_int8.tflite")
    good = InputMaker(load_model(FIXTURES / "tiny_int8.tflite")).random(np.random.default_rng(0)).arrays
    with pytest.raises(InputError, match="takes 3 inputs"):
        runner.run(good[:2])
    with pytest.raises(InputError, match="shape"):
        runner.run([good[0][:, :4], good[1], good[2]])
    runner.close()
    with pytest.raises(NpMobileBertError, match="closed"):
        runner.run(good)


def test_worker_load_error_is_one_line(shim, tmp_path):
    """A model the runtime refuses (here: an op version it does not register) is one line
    naming the runtime and its own message."""
    sys.path.insert(0, str(Path(__file__).parent))
    from opmodels import single_op_model, tensor

    from npmobilebert.runtime import SubprocessRunner

    blob = single_op_model("ADD", [tensor("a", [4], "float32"), tensor("b", [4], "float32")],
                           [tensor("y", [4], "float32")], version=99)
    path = tmp_path / "v99.tflite"
    path.write_bytes(blob)
    with pytest.raises(NpMobileBertError) as e:
        SubprocessRunner(shim, path)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("tflite-runtime 0.0-shim cannot load the model:")
    assert "version '99'" in message


def test_worker_crash_is_one_line(shim, monkeypatch):
    from npmobilebert.runtime import SubprocessRunner

    monkeypatch.setenv("SHIM_CRASH", "1")
    runner = SubprocessRunner(shim, FIXTURES / "tiny_int8.tflite")
    arrays = InputMaker(load_model(FIXTURES / "tiny_int8.tflite")).random(np.random.default_rng(0)).arrays
    with pytest.raises(NpMobileBertError, match="killed by signal 11 while running the model"):
        runner.run_all(arrays)


def test_python_without_tflite_runtime(tmp_path):
    from npmobilebert.runtime import SubprocessRunner

    fake = tmp_path / "python-without"
    with pytest.raises(NpMobileBertError, match="cannot start"):
        SubprocessRunner(str(fake), FIXTURES / "tiny_int8.tflite")
    try:
        import tflite_runtime  # noqa: F401
    except ImportError:
        with pytest.raises(NpMobileBertError, match="tflite-runtime does not run in .*tflite_runtime"):
            SubprocessRunner(sys.executable, FIXTURES / "tiny_int8.tflite")


def test_cli_runtime_python_choice(shim, tmp_path):
    """verify --runtime tflite-runtime --runtime-python PATH: the report names that runtime."""
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "npmobilebert.cli", "verify", "-m",
                        str(FIXTURES / "tiny_int8.tflite"), "--runtime", "tflite-runtime",
                        "--runtime-python", shim, "--random", "2", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "against tflite-runtime 0.0-shim, 'ref' resolver" in r.stdout
    assert json.loads(out.read_text())["runtime"] == "tflite-runtime 0.0-shim"


def test_cli_without_tflite_runtime_is_a_clear_error(monkeypatch):
    try:
        import tflite_runtime  # noqa: F401
        pytest.skip("tflite_runtime is importable here")
    except ImportError:
        pass
    env = {k: v for k, v in os.environ.items() if k != "NPMOBILEBERT_TFLITE_RUNTIME_PYTHON"}
    r = subprocess.run([sys.executable, "-m", "npmobilebert.cli", "verify", "-m",
                        str(FIXTURES / "tiny_int8.tflite"), "--runtime", "tflite-runtime"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2
    assert r.stderr.startswith("error: tflite-runtime is not installed here: pass --runtime-python")
    assert "Traceback" not in r.stderr


# ------------------------------------------------------------------ the real tflite-runtime 2.14


def _compare(python, name, resolver, n=3):
    from npmobilebert.runtime import SubprocessRunner

    model = load_model(FIXTURES / name)
    interp, maker = Interpreter(model), InputMaker(model)
    with SubprocessRunner(python, FIXTURES / name, resolver=resolver) as runner:
        rng = np.random.default_rng(11)
        cmps = []
        for _ in range(n):
            arrays = maker.random(rng).arrays
            cmps.append(compare_runs(model, interp.run_all(arrays), runner.run_all(arrays)))
        return model, runner.name, cmps


@pytest.mark.slow          # builds .venv-tflite-runtime (from PyPI) on first use
@pytest.mark.parametrize("name", ["tiny_float32.tflite", "tiny_float16.tflite"])
def test_tflite_runtime_214_reference_float_identical(tfrt_python, name):
    _, runtime, cmps = _compare(tfrt_python, name, "ref")
    assert runtime == "tflite-runtime 2.14.0"
    for cmp in cmps:
        assert cmp.first_divergence is None and not cmp.missing


@pytest.mark.slow          # builds .venv-tflite-runtime (from PyPI) on first use
@pytest.mark.parametrize("name", ["tiny_int8-per-tensor.tflite", "tiny_int8_tf215.tflite",
                                  "tiny_16x8_tf215.tflite"])
def test_tflite_runtime_214_reference_per_tensor_fc_within_one_lsb(tfrt_python, name):
    """Per-tensor FULLY_CONNECTED in 2.14 requantizes with the fixed-point multiplier (LiteRT
    2.3 and we: in double precision): at most 1 LSB apart where they first differ."""
    _, _, cmps = _compare(tfrt_python, name, "ref")
    first = cmps[0].first_divergence
    assert first is not None and first.op_type == "FULLY_CONNECTED" and first.max_diff == 1


@pytest.mark.slow          # builds .venv-tflite-runtime (from PyPI) on first use
@pytest.mark.parametrize("name", ["tiny_int8.tflite", "tiny_16x8.tflite"])
def test_tflite_runtime_214_per_channel_fc_bug_is_named(tfrt_python, name):
    """2.14's reference per-channel FULLY_CONNECTED assumes a 2-D output: on [1, 16, 64] it
    computes only the first 16 values.  verify names that FC, its per-channel scales and the bug."""
    from npmobilebert.runtime import SubprocessRunner
    from npmobilebert.verify import format_report, verify

    model = load_model(FIXTURES / name)
    arrays = [InputMaker(model).random(np.random.default_rng(0)).arrays]
    with SubprocessRunner(tfrt_python, FIXTURES / name, resolver="ref") as runner:
        report = verify(model, Interpreter(model), runner, arrays, "ref")
    first = report.comparison.first_divergence
    op = model.operators[first.op_index]
    out_shape = model.tensors[op.outputs[0]].shape
    assert first.op_type == "FULLY_CONNECTED" and len(out_shape) == 3
    assert first.computed_prefix == out_shape[0] * out_shape[1] == 16
    assert len(model.tensors[op.inputs[1]].quantization.scales) == out_shape[-1]
    text = format_report(report, model)
    assert "tflite-runtime 2.14.0" in text
    assert "64 per-channel scales on axis 0" in text
    assert "computes only the first 16 values" in text


@pytest.mark.slow          # builds .venv-tflite-runtime (from PyPI) on first use
def test_tflite_runtime_214_cannot_load_fc_v12(tfrt_python):
    from npmobilebert.runtime import SubprocessRunner

    with pytest.raises(NpMobileBertError, match=r"^tflite-runtime 2\.14\.0 cannot load the model: "
                                                r"Didn't find op for builtin opcode 'FULLY_CONNECTED' "
                                                r"version '12'"):
        SubprocessRunner(tfrt_python, FIXTURES / "tiny_dynamic.tflite")
