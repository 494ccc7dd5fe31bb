"""Fuzzing: mutants of the real fixture models never crash the reader, the interpreter or the CLI.

A seeded loop (deterministic: the same mutants on every run, so a failure reproduces) derives
mutants from each model in tests/fixtures/ by

* flipping bits and overwriting bytes anywhere after the 8-byte header,
* truncating the file,
* splicing in a chunk of the same file or of another fixture,
* rewriting one FlatBuffer field -- a uoffset, a vector length, a tensor's buffer index, shape
  or type, an operator's opcode index or tensor indices, an op version, a buffer's offset/size --
  with a boundary value (0, -1, 2**31 - 1, the file size, off by one...).  The fields are found
  by walking the tables through their vtables (``_FieldMap``), so the mutations reach the
  checks deep inside the reader and the interpreter instead of only breaking the header.

Each mutant goes through ``load_model``; those that load are prepared and run by ``Interpreter``
on random inputs of the declared shapes.  The only allowed outcomes are success or an
``NpMobileBertError`` subclass with a one-line message: a MemoryError, IndexError, ValueError...
or a case that runs past ``CASE_SECONDS`` is a failure, reported with the recipe to reproduce it.

``NPMOBILEBERT_FUZZ_CASES`` (mutants in all, default 2,040, shared evenly by the fixtures) scales
the run.
``NPMOBILEBERT_FUZZ_STRICT=1`` also fails on the kernel exceptions that the interpreter turns into
"operator N (OP) cannot run on this model's tensors" errors: a list of the checks kernels lack.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import struct
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from npmobilebert.errors import NpMobileBertError
from npmobilebert.info import model_info
from npmobilebert.inputs import InputMaker
from npmobilebert.interpreter import Interpreter
from npmobilebert.model import load_model

# about 2,000 mutants through the reader, the interpreter and the CLI (about 50 s on 2 cores)
pytestmark = pytest.mark.slow

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("*.tflite"))
CASES_PER_FIXTURE = max(1, int(os.environ.get("NPMOBILEBERT_FUZZ_CASES", "2040")) // max(1, len(FIXTURES)))
STRICT = bool(os.environ.get("NPMOBILEBERT_FUZZ_STRICT"))
# Mutants may declare big activations; a small cap keeps each run in milliseconds (the cap
# itself is one of the checks under test).
FUZZ_TENSOR_BYTES = 4 << 20
CASE_SECONDS = 10.0  # a case that runs longer hangs, as far as CI is concerned

# --------------------------------------------------------------------------------------------
# Where the FlatBuffer fields are
# --------------------------------------------------------------------------------------------

# Field numbers (vtable slot = 4 + 2 * number) of the tables of the TFLite schema that hold
# offsets, indices and sizes.  kind: "table", "tables" (vector of tables), "ints"/"bytes"
# (scalar vectors, element size 4/1), "string", or a scalar struct format.
_SCHEMA = {
    "Model": {0: ("version", "<I"), 1: ("operator_codes", "tables", "OperatorCode"),
              2: ("subgraphs", "tables", "SubGraph"), 3: ("description", "string"),
              4: ("buffers", "tables", "Buffer"), 6: ("metadata", "tables", "Metadata")},
    "SubGraph": {0: ("tensors", "tables", "Tensor"), 1: ("inputs", "ints"), 2: ("outputs", "ints"),
                 3: ("operators", "tables", "Operator"), 4: ("name", "string")},
    "Tensor": {0: ("shape", "ints"), 1: ("type", "<b"), 2: ("buffer", "<I"), 3: ("name", "string"),
               4: ("quantization", "table", "QuantizationParameters"), 7: ("shape_signature", "ints")},
    "QuantizationParameters": {2: ("scale", "ints"), 3: ("zero_point", "longs"),
                               6: ("quantized_dimension", "<i")},
    "Operator": {0: ("opcode_index", "<I"), 1: ("inputs", "ints"), 2: ("outputs", "ints"),
                 3: ("builtin_options_type", "<B"), 4: ("builtin_options", "table", None),
                 8: ("intermediates", "ints")},
    "OperatorCode": {0: ("deprecated_builtin_code", "<b"), 2: ("version", "<i"),
                     3: ("builtin_code", "<i")},
    "Buffer": {0: ("data", "bytes"), 1: ("offset", "<Q"), 2: ("size", "<Q")},
    "Metadata": {0: ("name", "string"), 1: ("buffer", "<I")},
}


class _FieldMap:
    """Positions of the interesting fields of a (valid) TFLite FlatBuffer.

    ``targets`` is a list of (position, struct format, label): uoffsets ("<I"), vector lengths
    ("<I"), scalar fields and vector elements, each at most a few per table kind so that every
    kind gets picked often.
    """

    def __init__(self, raw: bytes):
        self.raw = raw
        self.targets: list[tuple[int, str, str]] = [(0, "<I", "root offset")]
        self._seen: dict[str, int] = {}
        self._table(struct.unpack_from("<I", raw, 0)[0], "Model")

    def _add(self, pos: int, fmt: str, label: str) -> None:
        # Keep at most 24 targets per label: 170 tensors must not drown the 3 graph inputs.
        if self._seen.get(label, 0) < 24 and 0 <= pos <= len(self.raw) - struct.calcsize(fmt):
            self._seen[label] = self._seen.get(label, 0) + 1
            self.targets.append((pos, fmt, label))

    def _table(self, pos: int, kind: str | None) -> None:
        raw = self.raw
        vtable = pos - struct.unpack_from("<i", raw, pos)[0]
        vtable_size = struct.unpack_from("<H", raw, vtable)[0]
        for number, spec in _SCHEMA.get(kind, {}).items():
            slot = 4 + 2 * number
            if slot >= vtable_size:
                continue
            field_offset = struct.unpack_from("<H", raw, vtable + slot)[0]
            if not field_offset:
                continue
            at = pos + field_offset
            name, how = spec[0], spec[1]
            label = f"{kind}.{name}"
            if how not in ("table", "tables", "ints", "longs", "bytes", "string"):
                self._add(at, how, label)
                continue
            self._add(at, "<I", label + " (uoffset)")
            target = at + struct.unpack_from("<I", raw, at)[0]
            if how == "table":
                if spec[2] is not None:
                    self._table(target, spec[2])
                continue
            length = struct.unpack_from("<I", raw, target)[0]
            self._add(target, "<I", label + " (length)")
            if how == "tables":
                for k in range(length):
                    element = target + 4 + 4 * k
                    self._table(element + struct.unpack_from("<I", raw, element)[0], spec[2])
            elif how == "ints":
                for k in range(min(length, 4)):
                    self._add(target + 4 + 4 * k, "<i", label + " (element)")


def _boundary_values(fmt: str, old: int, file_size: int, rng: random.Random) -> int:
    size = struct.calcsize(fmt)
    bits = 8 * size
    candidates = [0, 1, 2, old + 1, old - 1, old * 2, old + 4, old - 4, file_size, file_size - 4,
                  file_size + 1, (1 << (bits - 1)) - 1, 1 << (bits - 1), (1 << bits) - 1,
                  rng.getrandbits(bits), 1 << 20, 0x7FFF]
    value = rng.choice(candidates) % (1 << bits)
    if fmt[-1].islower():  # signed: reinterpret the bit pattern
        value = value - (1 << bits) if value >= 1 << (bits - 1) else value
    return value


# --------------------------------------------------------------------------------------------
# Mutations
# --------------------------------------------------------------------------------------------


def mutate(raw: bytes, fields: _FieldMap, donors: list[bytes], rng: random.Random) -> tuple[bytes, str]:
    """One mutant of `raw` and a description of what was done to it."""
    kind = rng.choices(["bitflip", "bytes", "truncate", "splice", "field", "fields"],
                       weights=[20, 12, 8, 10, 35, 15])[0]
    data = bytearray(raw)
    n = len(data)
    if kind == "bitflip":
        positions = [rng.randrange(8, n) for _ in range(rng.randint(1, 8))]
        for p in positions:
            data[p] ^= 1 << rng.randrange(8)
        return bytes(data), f"bit flips at {positions}"
    if kind == "bytes":
        start = rng.randrange(8, n)
        length = rng.choice([1, 2, 4, 8, 16])
        fill = rng.choice([b"\x00", b"\xff", b"\x7f", b"\x80", None])
        chunk = bytes(rng.getrandbits(8) for _ in range(length)) if fill is None else fill * length
        data[start:start + length] = chunk
        return bytes(data[:n]), f"overwrite {chunk.hex()} at {start}"
    if kind == "truncate":
        cut = rng.choice([rng.randrange(0, 64), rng.randrange(0, n), n - rng.randrange(1, 64)])
        return bytes(data[:cut]), f"truncated to {cut} bytes"
    if kind == "splice":
        donor = rng.choice(donors)
        length = rng.randint(4, 512)
        src = rng.randrange(0, max(1, len(donor) - length))
        dst = rng.randrange(8, n)
        chunk = donor[src:src + length]
        if rng.random() < 0.5:
            data[dst:dst + len(chunk)] = chunk  # overwrite in place
            how = "overwrite"
        else:
            data[dst:dst] = chunk  # insert: every later offset shifts
            how = "insert"
        return bytes(data), f"splice ({how}) {len(chunk)} bytes from {src} at {dst}"
    # one or several FlatBuffer fields set to boundary values
    changes = []
    for _ in range(1 if kind == "field" else rng.randint(2, 4)):
        pos, fmt, label = rng.choice(fields.targets)
        old = struct.unpack_from(fmt, data, pos)[0]
        value = _boundary_values(fmt, old, n, rng)
        struct.pack_into(fmt, data, pos, value)
        changes.append(f"{label}@{pos}: {old} -> {value}")
    return bytes(data), "; ".join(changes)


def random_inputs(interp: Interpreter, rng: np.random.Generator) -> list[np.ndarray]:
    """Random values of each input's declared shape and dtype (mostly 0/1: valid ids, masks, segments)."""
    arrays = []
    for t in interp.input_tensors:
        if np.issubdtype(t.dtype, np.floating):
            a = rng.standard_normal(t.shape).astype(t.dtype)
            if a.size and rng.random() < 0.1:
                a.flat[0] = rng.choice([np.inf, -np.inf, np.nan])
        elif t.dtype == np.bool_:
            a = rng.integers(0, 2, t.shape).astype(np.bool_)
        elif np.issubdtype(t.dtype, np.integer):
            info = np.iinfo(t.dtype)
            # 0/1 are valid token ids, mask values and segment ids alike: most runs go deep.
            high = 1 if rng.random() < 0.8 else min(int(info.max), 127)
            low = 0 if high == 1 else max(int(info.min), -128)
            a = rng.integers(low, high + 1, t.shape).astype(t.dtype)
        else:
            a = np.zeros(t.shape, dtype=t.dtype)
        arrays.append(a)
    return arrays


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Interrupt a case that runs past `seconds` (SIGALRM: Unix, main thread only)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise _Timeout(f"ran past {seconds} s")
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_mutant(data: bytes, seed: int) -> str:
    """Load, prepare and run one mutant: 'rejected', 'loaded', 'ran' or 'error at run'.

    Raises AssertionError for any outcome other than success or a one-line package error.
    """
    stage = "load"
    try:
        with _time_limit(CASE_SECONDS), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # overflow warnings of garbage constants are fine
            model = load_model(data)
            stage = "info"
            model_info(model)
            stage = "inputs"
            maker = InputMaker(model)
            if maker.is_bert:
                maker.random(np.random.default_rng(seed))
            stage = "prepare"
            interp = Interpreter(model, max_tensor_bytes=FUZZ_TENSOR_BYTES)
            stage = "run"
            interp.run(random_inputs(interp, np.random.default_rng(seed)))
            return "ran"
    except NpMobileBertError as e:
        message = str(e)
        assert message and "\n" not in message, f"{stage}: not a one-line message: {message!r}"
        if STRICT and "on this model's tensors" in message:  # see interpreter._kernel_failure
            raise AssertionError(f"{stage}: {message}") from e
        return {"load": "rejected", "prepare": "refused", "run": "error at run"}.get(stage, "rejected")
    except Exception as e:  # noqa: BLE001 - exactly what this test is looking for
        raise AssertionError(f"{stage}: {type(e).__module__}.{type(e).__name__}: {e}") from e


@pytest.mark.skipif(not FIXTURES, reason="no .tflite fixtures")
@pytest.mark.parametrize("fixture", FIXTURES, ids=[p.name for p in FIXTURES])
def test_mutants_load_and_run_or_fail_cleanly(fixture: Path):
    raw = fixture.read_bytes()
    fields = _FieldMap(raw)
    donors = [raw] + [p.read_bytes() for p in FIXTURES if p != fixture]
    rng = random.Random(f"npmobilebert-fuzz/{fixture.name}")
    outcomes: dict[str, int] = {}
    failures = []
    start = time.perf_counter()
    for case in range(CASES_PER_FIXTURE):
        data, recipe = mutate(raw, fields, donors, rng)
        try:
            outcome = check_mutant(data, case)
        except AssertionError as e:
            outcome = "FAILED"
            failures.append(f"case {case} ({recipe}): {e}")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    elapsed = time.perf_counter() - start
    print(f"{fixture.name}: {CASES_PER_FIXTURE} mutants in {elapsed:.1f} s: {outcomes}")
    assert not failures, f"{len(failures)} of {CASES_PER_FIXTURE} mutants crashed:\n" + "\n".join(failures[:30])


# --------------------------------------------------------------------------------------------
# The CLI on mutants: one line on stderr, exit 2, never a traceback
# --------------------------------------------------------------------------------------------


def _cli_mutants(n_per_fixture: int, seed: str) -> list[tuple[str, bytes, str]]:
    out = []
    for fixture in FIXTURES:
        raw = fixture.read_bytes()
        fields = _FieldMap(raw)
        rng = random.Random(f"{seed}/{fixture.name}")
        for _ in range(n_per_fixture):
            data, recipe = mutate(raw, fields, [raw], rng)
            out.append((fixture.name, data, recipe))
    return out


@pytest.mark.skipif(not FIXTURES, reason="no .tflite fixtures")
def test_cli_info_and_run_on_mutants_in_process(tmp_path, monkeypatch, capsys):
    """`npmobilebert info -m <mutant>` and `run -m <mutant> --ids ...` through the console entry
    point, in this process (fast): exit 0, or exit 2 with one 'error:' line; any other exception
    fails the test."""
    from npmobilebert import cli

    monkeypatch.setenv("NPMOBILEBERT_TRACEBACK", "1")  # a bug raises here instead of exiting 3
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # entry() replaces it
    path = tmp_path / "mutant.tflite"
    for name, data, recipe in _cli_mutants(max(1, 150 // len(FIXTURES)), "npmobilebert-cli-fuzz"):
        path.write_bytes(data)
        for args in (["info", "-m", str(path)], ["run", "-m", str(path), "--ids", "101 7 8 102"]):
            monkeypatch.setattr(sys, "argv", ["npmobilebert", *args])
            code = 0
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # overflow in garbage constants
                    cli.entry()
            except SystemExit as e:
                code = e.code
            except Exception as e:  # noqa: BLE001
                pytest.fail(f"{name} ({recipe}): {args[0]} raised {type(e).__name__}: {e}")
            err = capsys.readouterr().err
            assert code in (0, None, 2), f"{name} ({recipe}): {args[0]} exit {code}: {err}"
            if code == 2:
                lines = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
                assert len(lines) == 1 and lines[0].startswith("error: "), f"{name} ({recipe}): {err!r}"


@pytest.mark.skipif(not FIXTURES, reason="no .tflite fixtures")
def test_cli_info_on_mutants_subprocess(tmp_path):
    """The real console: a few mutants per fixture, each in its own process."""
    import subprocess

    failures = []
    for k, (name, data, recipe) in enumerate(_cli_mutants(max(1, 24 // len(FIXTURES)), "npmobilebert-cli-subprocess")):
        path = tmp_path / f"mutant{k}.tflite"
        path.write_bytes(data)
        r = subprocess.run([sys.executable, "-m", "npmobilebert.cli", "info", "-m", str(path)],
                           capture_output=True, text=True, timeout=120)
        if "Traceback" in r.stderr or r.returncode not in (0, 2):
            failures.append(f"{name} ({recipe}): exit {r.returncode}: {r.stderr[-500:]}")
    assert not failures, "\n".join(failures)
