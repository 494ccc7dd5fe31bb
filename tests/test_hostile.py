"""Every command on every hostile model (tests/hostile.py), each in its own process under a
memory cap and a time limit: bad input is one line on stderr and exit 2 -- never a traceback,
a signal death, a hang, or memory beyond 500 MB.

Peak memory is the child's own ``ru_maxrss`` (from ``os.wait4``: it includes the processes the
command itself waited for, e.g. bench's workers); RLIMIT_AS is only a safety net so that a
regression fails the test instead of the machine.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("ai_edge_litert")    # the generator edits models with LiteRT's schema module

import hostile  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PEAK_RSS_LIMIT = 500 * 1024 * 1024
ADDRESS_SPACE_CAP = 6 * 1024**3          # safety net only: TF/LiteRT reserve GBs of address space
TIME_LIMIT_S = 30.0


def _command_line(command: str, model: Path, tmp: Path) -> list[str]:
    """The arguments of one command on one model, with the smallest work that reaches the model."""
    m = ["-m", str(model)]
    data = tmp / "data.tsv"
    if not data.exists():
        data.write_text("text\tlabel\ngreat service\tpositive\nawful day\tnegative\n")
    return {
        "info": ["info", *m],
        "run": ["run", *m, "--ids", "2 5 3"],
        "verify": ["verify", *m, "--random", "1"],
        "lint": ["lint", *m, "--random", "1"],
        "layer-error": ["layer-error", *m, "--float", str(FIXTURES / "tiny_float32.tflite"), "--random", "1"],
        "explain": ["explain", *m, "--op", "0", "--ids", "2 5 3"],
        "classify": ["classify", *m, "great service"],
        "eval": ["eval", *m, str(data), "--processes", "1"],
        "dump": ["dump", *m, "--random", "1", "--out", str(tmp / f"{model.stem}.npz")],
        "bench": ["bench", *m, "--runs", "1", "--warmup", "0", "--engine", "litert-ref", "--engine", "numpy"],
        "diff-runtimes": ["diff-runtimes", *m, "--ids", "2 5 3"],
    }[command]


def run_limited(args: list[str], cwd: Path, timeout: float = TIME_LIMIT_S) -> dict:
    """Run the CLI with ``args``; {rc, signal, stderr, stdout, peak_rss, timed_out}."""
    env = dict(os.environ, PYTHONPATH=str(SRC), TF_CPP_MIN_LOG_LEVEL="2", PYTHONFAULTHANDLER="")
    env.pop("NPMOBILEBERT_TRACEBACK", None)

    def limits():
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_CAP, ADDRESS_SPACE_CAP))
        os.setsid()

    out_path, err_path = cwd / f"out.{os.getpid()}.{time.monotonic_ns()}", cwd / f"err.{time.monotonic_ns()}"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "npmobilebert.cli", *args], cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, preexec_fn=limits)
    deadline = time.monotonic() + timeout
    timed_out = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.returncode = 0  # reaped above: keep Popen from waiting again
    result = {
        "rc": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "peak_rss": usage.ru_maxrss * 1024,
        "timed_out": timed_out,
        "stdout": out_path.read_text(errors="replace"),
        "stderr": err_path.read_text(errors="replace"),
    }
    out_path.unlink()
    err_path.unlink()
    return result


def check_outcome(name: str, command: str, must_refuse: bool, r: dict) -> list[str]:
    """What is wrong with one (file, command) outcome; [] when it held."""
    what = f"{command} on {name}"
    problems = []
    if r["timed_out"]:
        problems.append(f"{what}: still running after {TIME_LIMIT_S:.0f} s")
    elif r["signal"] is not None:
        problems.append(f"{what}: killed by signal {signal.Signals(r['signal']).name}")
    else:
        lines = r["stderr"].splitlines()
        if r["rc"] == 2:
            if len(lines) != 1:
                problems.append(f"{what}: exit 2 with {len(lines)} stderr lines: {r['stderr'][:300]!r}")
        elif must_refuse or r["rc"] not in (0, 1):
            problems.append(f"{what}: exit {r['rc']}, expected 2; stderr {r['stderr'][-300:]!r}")
    if r["peak_rss"] > PEAK_RSS_LIMIT:
        problems.append(f"{what}: peak RSS {r['peak_rss'] / 2**20:.0f} MiB > {PEAK_RSS_LIMIT / 2**20:.0f} MiB")
    return problems


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory):
    return hostile.build_all(tmp_path_factory.mktemp("hostile"))


def _matrix(files: dict, commands, tmp: Path, workers: int = 2) -> list[str]:
    cases = [(f, c) for f in files.values() for c in commands]

    def one(case):
        f, command = case
        r = run_limited(_command_line(command, f.path, tmp), tmp)
        return check_outcome(f.name, command, command in f.must_refuse, r)

    with ThreadPoolExecutor(workers) as pool:
        return [p for problems in pool.map(one, cases) for p in problems]


NEWLINE_FILES = {n for n in hostile.NAMES if n.startswith("newline_")}
# The fast subset: every file through `run` (the reader and the NumPy interpreter), and through
# `classify` (LiteRT) where the file attacks the engines; `test_hostile_files_every_command`
# (slow) runs the whole matrix.
LITERT_KINDS = {"broadcast bomb", "shape bomb", "huge declared shape", "crashing scales"}


def test_hostile_files_run(hostile_files, tmp_path):
    files = {n: f for n, f in hostile_files.items() if n not in NEWLINE_FILES}
    problems = _matrix(files, ["run"], tmp_path)
    assert not problems, "\n".join(problems)


def test_hostile_files_classify_with_litert(hostile_files, tmp_path):
    files = {n: f for n, f in hostile_files.items() if f.kind in LITERT_KINDS}
    problems = _matrix(files, ["classify"], tmp_path)
    assert not problems, "\n".join(problems)


def test_names_with_newlines_stay_on_one_line(hostile_files, tmp_path):
    files = {n: f for n, f in hostile_files.items() if n in NEWLINE_FILES}
    problems = _matrix(files, ["run", "classify"], tmp_path)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_hostile_files_every_command(hostile_files, tmp_path):
    problems = _matrix(hostile_files, sorted(hostile.ALL_COMMANDS), tmp_path)
    assert not problems, "\n".join(problems)


_RAW_LITERT = """
import sys
import numpy as np
from ai_edge_litert import interpreter as I
it = I.Interpreter(model_path=sys.argv[1], experimental_op_resolver_type=I.OpResolverType.BUILTIN_REF)
it.allocate_tensors()
for d in it.get_input_details():
    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
it.invoke()
"""


@pytest.mark.parametrize("name", [n for n in hostile.NAMES if n.startswith(("scale_", "per_channel_"))])
def test_crashing_scales_crash_litert_but_not_the_commands(name, tmp_path):
    """The oracle first: LiteRT itself (reference kernels), given the file, dies by a signal;
    then the commands that hand the file to LiteRT say so in one line, exit 2."""
    f = hostile.build(name, tmp_path)
    raw = subprocess.run([sys.executable, "-c", _RAW_LITERT, str(f.path)], capture_output=True, timeout=120)
    assert raw.returncode < 0, f"LiteRT survived {name}: rc {raw.returncode}"
    for command in ("dump", "classify"):
        r = run_limited(_command_line(command, f.path, tmp_path), tmp_path)
        assert check_outcome(name, command, True, r) == []
        assert "LiteRT" in r["stderr"] or "scale" in r["stderr"], r["stderr"]


# -- in process: each class is refused where it should be, with the message that names it -----

_LOADER_REFUSES = [n for n in hostile.NAMES if n.startswith("shared_")]
_PREPARE_REFUSES = {
    "add_broadcast_declares_1x1": r"operator 89 \(ADD\) computes shape \[32768, 32768\] .* declares \[1, 1\]",
    "gather_declares_1x1": r"\(GATHER\) computes shape \[32768, 8192\]",
    "concatenation_declares_1x1": r"\(CONCATENATION\) computes shape \[4096, 65536\]",
    "batch_matmul_declares_1x1x1": r"\(BATCH_MATMUL\) computes shape \[1, 16384, 16384\]",
    "fully_connected_declares_1x1": r"\(FULLY_CONNECTED\) computes shape \[16384, 16384\]",
    "pad_declares_1x1": r"\(PAD\) computes shape \[16384, 16384\]",
    "tile_declares_1x1": r"\(TILE\) computes shape \[16384, 16384\]",
    "add_broadcast_1gib": r"would allocate ~5 GiB.* over the limit of 512 MiB per run",
    "gather_1gib": r"would allocate .* over the limit of 512 MiB per run",
    "batch_matmul_1gib": r"would allocate .* over the limit of 512 MiB per run",
}


@pytest.mark.parametrize("name", _LOADER_REFUSES)
def test_shared_tables_are_refused_by_the_reader(name, tmp_path):
    from npmobilebert.errors import ModelFormatError
    from npmobilebert.model import load_model

    f = hostile.build(name, tmp_path)
    with pytest.raises(ModelFormatError, match=r"its tables expand to more than [\d,]+ bytes when read"):
        load_model(f.path)


@pytest.mark.parametrize("name", sorted(_PREPARE_REFUSES))
def test_shape_bombs_are_refused_before_anything_computes(name, tmp_path):
    """Both engines refuse before computing: the NumPy interpreter when it prepares (constant
    folding would otherwise build the result), LiteRT's guard before LiteRT loads the model."""
    from npmobilebert.errors import ModelFormatError
    from npmobilebert.interpreter import Interpreter
    from npmobilebert.model import load_model
    from npmobilebert.runtime import check_before_litert

    from npmobilebert.errors import UnsupportedOpError
    from npmobilebert.kernels import KERNELS

    model = load_model(hostile.build(name, tmp_path).path)
    if all(op.opcode in KERNELS for op in model.operators):
        with pytest.raises(ModelFormatError, match=_PREPARE_REFUSES[name]):
            Interpreter(model)
    else:                   # an op the interpreter lacks (TILE) is refused first: nothing computes
        with pytest.raises(UnsupportedOpError, match=r"this op is not implemented"):
            Interpreter(model)
    with pytest.raises(ModelFormatError, match=_PREPARE_REFUSES[name]):
        check_before_litert(model)


def test_zip_bomb_reads_at_most_the_file_size_of_packed_files(tmp_path):
    from npmobilebert.model import load_model

    f = hostile.build("zip_bomb", tmp_path)
    model = load_model(f.path)
    assert sum(len(v) for v in model.packed_files.values()) <= f.path.stat().st_size
    fixture = load_model(hostile.BASE_FIXTURE)
    for name in ("vocab.txt", "labels.txt"):      # the members before the bomb are all there
        assert model.packed_files[name] == fixture.packed_files[name]
