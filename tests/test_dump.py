"""The device workflow: ``dump`` (LiteRT run -> .npz) then ``verify --against RUN.npz`` (NumPy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert.interpreter")

FIXTURES = Path(__file__).parent / "fixtures"
TINY = str(FIXTURES / "tiny_int8.tflite")
OTHER = str(FIXTURES / "tiny_int8-per-tensor.tflite")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "npmobilebert.cli", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def dumped(tmp_path_factory):
    out = tmp_path_factory.mktemp("dump") / "run.npz"
    r = cli("dump", "-m", TINY, "--random", "2", "--ids", "101 7 8 102", "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def test_dump_layout(dumped):
    from npmobilebert.dump import META_KEY, sha256_file
    from npmobilebert.model import load_model

    model = load_model(TINY)
    with np.load(dumped, allow_pickle=False) as z:
        meta = json.loads(str(z[META_KEY][()]))
        files = set(z.files)
    assert meta["runs"] == 3 and meta["prefixes"] == ["run0/", "run1/", "run2/"]
    assert meta["resolver"] == "ref" and meta["runtime"].startswith(("ai-edge-litert", "tflite-runtime"))
    assert meta["model_sha256"] == sha256_file(TINY)
    for prefix in meta["prefixes"]:
        for i in model.inputs:
            assert f"{prefix}__input__/{model.tensors[i].name}" in files
        for op in model.operators:
            assert f"{prefix}{model.tensors[op.outputs[0]].name}" in files
    # --ids came first: run0 holds them
    ids_name = [model.tensors[i].name for i in model.inputs if "input_ids" in model.tensors[i].name][0]
    with np.load(dumped) as z:
        assert z[f"run0/__input__/{ids_name}"].reshape(-1)[:4].tolist() == [101, 7, 8, 102]


def test_round_trip_is_identical(dumped, tmp_path):
    report = tmp_path / "report.json"
    r = cli("verify", "-m", TINY, "--against", str(dumped), "--json", str(report))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "every tensor is identical" in r.stdout
    data = json.loads(report.read_text())
    assert data["inputs"] == 3 and data["tensors_compared"] == data["tensors_identical"] > 0


def test_one_flipped_bit_is_named(dumped, tmp_path):
    from npmobilebert.fileio import save_npz
    from npmobilebert.model import load_model

    model = load_model(TINY)
    target = model.tensors[[op for op in model.operators if op.opcode == "SOFTMAX"][1].outputs[0]].name
    with np.load(dumped) as z:
        arrays = {k: z[k] for k in z.files}
    key = f"run1/{target}"
    flipped = arrays[key].copy()
    flipped.reshape(-1).view(np.uint8)[5] ^= 0x10
    arrays[key] = flipped
    bad = tmp_path / "flipped.npz"
    save_npz(bad, arrays)
    r = cli("verify", "-m", TINY, "--against", str(bad))
    assert r.returncode == 1, r.stdout + r.stderr
    first = [ln for ln in r.stdout.splitlines() if ln.startswith("first divergence")]
    assert first and "(input 1)" in first[0] and f"'{target}'" in first[0] and "SOFTMAX" in first[0]
    assert "1/" in first[0]   # exactly one value differs


def test_dump_of_another_model_is_refused(dumped):
    r = cli("verify", "-m", OTHER, "--against", str(dumped))
    assert r.returncode == 2
    assert "another model" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_bad_dumps_and_options_exit_2(dumped, tmp_path):
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.zeros(3))
    r = cli("verify", "-m", TINY, "--against", str(plain))
    assert r.returncode == 2 and "not an npmobilebert dump" in r.stderr
    r = cli("verify", "-m", TINY, "--against", str(tmp_path / "missing.npz"))
    assert r.returncode == 2 and "no such file" in r.stderr
    r = cli("verify", "-m", TINY, "--against", "reff")
    assert r.returncode == 2
    r = cli("verify", "-m", TINY, "--against", str(dumped), "--random", "3")
    assert r.returncode == 2 and "do not apply" in r.stderr
    for name, content in (("notes.txt", b"a line of text\n"), ("run.npz", b"not a zip at all")):
        other = tmp_path / name
        other.write_bytes(content)
        r = cli("verify", "-m", TINY, "--against", str(other))
        assert r.returncode == 2, r.stdout + r.stderr
        assert r.stderr.strip().splitlines() == [f"error: {other}: not a readable .npz dump (not a zip archive; "
                                                 "'npmobilebert dump' writes one)"]


def test_dump_needs_no_tokenizer(tmp_path):
    """On a board: --ids and --random never import tokenizers (nor TensorFlow)."""
    out = tmp_path / "ids.npz"
    code = (
        "import sys\n"
        "from npmobilebert.cli import main\n"
        f"main(['dump', '-m', {TINY!r}, '--ids', '101 7 102', '--random', '1', '--out', {str(out)!r}],"
        " standalone_mode=False)\n"
        "bad = [m for m in ('tokenizers', 'tensorflow', 'matplotlib') if m in sys.modules]\n"
        "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.exists()


def test_dump_builtin_resolver_verifies_by_labels(tmp_path):
    out = tmp_path / "builtin.npz"
    r = cli("dump", "-m", TINY, "--random", "2", "--resolver", "builtin", "--out", str(out))
    assert r.returncode == 0, r.stderr
    r = cli("verify", "-m", TINY, "--against", str(out))
    assert r.returncode in (0, 1), r.stderr
    assert "'builtin' resolver" in r.stdout and "labels agree" in r.stdout
