"""Hostile input around the model rather than inside it: outputs that would replace an input,
files that are not files, names that would fake lines, worker pools that lose a worker,
texts built to exhaust memory, and the Python API given what a user would pass.

Every command is run as a user runs it (a subprocess of the console entry) and must end with
one line on stderr and a non-zero exit -- never a hang, a signal death or a traceback.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from test_bad_input import RAW, TINY, edited, schema

from npmobilebert.errors import InputError, ModelFormatError, escape_text
from npmobilebert.model import load_model

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))


def cli(*args, timeout=120, **kwargs):
    return subprocess.run([sys.executable, "-m", "npmobilebert.cli", *map(str, args)], capture_output=True,
                          timeout=timeout, env=ENV, **kwargs)


def one_line_error(r, pattern: str, code: int = 2) -> str:
    err = r.stderr.decode()
    assert r.returncode == code, (r.returncode, err)
    assert not any(line.startswith("Traceback") for line in err.splitlines())
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def labelled_tsv(path: Path, n: int) -> Path:
    words = ["great service", "awful delay", "the bus came", "love it", "hate this"]
    path.write_text("label\ttext\n" + "".join(f"{['positive', 'negative', 'neutral'][k % 3]}\t"
                                             f"{words[k % 5]} {k}\n" for k in range(n)), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# Outputs: never an input, mode kept, long names, no parts left behind, no tensor dropped
# --------------------------------------------------------------------------------------------


def _output_is_input_cases(tmp_path: Path):
    model = tmp_path / "m.tflite"
    model.write_bytes(RAW)
    data = labelled_tsv(tmp_path / "data.tsv", 4)
    texts = tmp_path / "texts.txt"
    texts.write_text("good\nbad\n", encoding="utf-8")
    link = tmp_path / "link.tflite"
    link.symlink_to(model)
    hard = tmp_path / "hard.tflite"
    os.link(model, hard)
    return [
        (["run", "-m", model, "--ids", "101 7 102", "--save", model], model),
        (["run", "-m", link, "--ids", "101 7 102", "--save", hard], model),   # the same inode by other names
        (["dump", "-m", model, "--random", "1", "--out", model], model),
        (["verify", "-m", model, "--random", "1", "--json", model], model),
        (["verify", "-m", model, "--file", texts, "--json", texts], texts),
        (["lint", "-m", model, "--random", "1", "--json", model], model),
        (["eval", "-m", model, data, "--json", data], data),
        (["layer-error", "-m", model, "--float", model, "--random", "1", "--plot", model], model),
    ]


@pytest.mark.slow
def test_an_output_that_is_an_input_is_refused_before_any_work(tmp_path):
    for args, victim in _output_is_input_cases(tmp_path):
        before = digest(victim)
        r = cli(*args)
        one_line_error(r, r"it is an input of this command")
        assert digest(victim) == before, args
        assert r.stdout == b"", args          # refused before the run printed anything


def test_a_replaced_file_keeps_its_mode(tmp_path):
    from npmobilebert.fileio import save_json

    private = tmp_path / "private.json"
    private.write_text("{}")
    private.chmod(0o600)
    save_json(private, {"a": 1})
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    r = cli("run", "-m", TINY, "--ids", "101 7 102", "--save", private)
    assert r.returncode == 0, r.stderr.decode()
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert sorted(np.load(private).files)      # really replaced by the .npz


def test_the_longest_legal_file_name_is_written(tmp_path):
    name = "x" * 248 + ".npz"                   # 252 bytes: legal (NAME_MAX is 255)
    r = cli("run", "-m", TINY, "--ids", "101 7 102", "--save", tmp_path / name)
    assert r.returncode == 0, r.stderr.decode()
    assert (tmp_path / name).is_file() and np.load(tmp_path / name).files
    assert sorted(os.listdir(tmp_path)) == [name]
    too_long = tmp_path / ("y" * 256)
    one_line_error(cli("run", "-m", TINY, "--ids", "101 7 102", "--save", too_long),
                   r"the file name is longer than 255 bytes")


_KILLED_WRITER = """
import os, signal, sys
from npmobilebert.fileio import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as f:
        f.write(b"half")
    os.kill(os.getpid(), signal.SIGKILL)     # as the OOM killer would: no cleanup runs
"""


def test_a_killed_writer_leaves_a_part_that_the_next_write_removes(tmp_path):
    from npmobilebert.fileio import save_json

    out = tmp_path / ("r" * 200 + ".json")
    r = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(out)], env=ENV, capture_output=True, timeout=60)
    assert r.returncode == -signal.SIGKILL
    parts = [p for p in os.listdir(tmp_path) if p.endswith(".part")]
    assert len(parts) == 1 and not out.exists()
    # a stranger's file that merely looks like a part is not ours to delete
    (tmp_path / "notes.part").write_text("mine")
    save_json(tmp_path / "other.json", {})      # any later write to the directory
    assert sorted(os.listdir(tmp_path)) == ["notes.part", "other.json"]


def test_run_save_keeps_every_tensor_when_names_repeat(tmp_path):
    from npmobilebert.interpreter import Interpreter
    from npmobilebert.inputs import InputMaker

    def same_names(m, sg):
        for k, t in enumerate(sg.tensors):
            if k not in sg.inputs:            # the inputs keep the names that give their roles
                t.name = "x"

    path = tmp_path / "same_names.tflite"
    path.write_bytes(edited(same_names))
    model = load_model(path)
    values = Interpreter(model).run_all(InputMaker(model).from_ids([101, 7, 102]).arrays)
    r = cli("run", "-m", path, "--ids", "101 7 102", "--save", tmp_path / "s.npz")
    assert r.returncode == 0, r.stderr.decode()
    with np.load(tmp_path / "s.npz") as saved:
        assert len(saved.files) == len(values) > 4
        inputs = set(model.inputs)
        assert sorted(saved.files) == sorted(model.tensors[i].name if i in inputs else f"x#{i}" for i in values)
        for i, value in values.items():
            np.testing.assert_array_equal(saved[model.tensors[i].name if i in inputs else f"x#{i}"], value)


# --------------------------------------------------------------------------------------------
# Files that are not files, and files that change under the reader
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_a_model_that_is_not_a_regular_file_is_refused_without_opening_it(tmp_path, kind):
    if kind == "fifo":
        path = tmp_path / "model.tflite"
        os.mkfifo(path)                   # opening it for reading would wait for a writer for ever
    else:
        path = {"directory": tmp_path, "device": Path("/dev/zero")}[kind]
    with pytest.raises(ModelFormatError, match="not a regular file"):
        load_model(path)
    for command in (["info"], ["run", "--ids", "101 102"], ["classify", "good"]):
        one_line_error(cli(*command, "-m", path, timeout=30), r"not a regular file|is a directory")


_TRUNCATED_WHILE_RUNNING = """
import os, sys
import numpy as np
from npmobilebert.model import load_model
model = load_model(sys.argv[1])
os.truncate(sys.argv[1], 0)                      # another process rewrites the model
print(sum(int(np.asarray(t.data).view(np.uint8).sum()) for t in model.tensors if t.data is not None))
"""


def test_a_model_truncated_after_loading_does_not_kill_the_reader(tmp_path):
    # larger than the pages a reader might map, so that every weight is read after the truncation
    big = ROOT / "models" / "mobilebert_int8.tflite"
    if not big.exists():
        pytest.skip("the shipped model is not in this checkout")
    path = tmp_path / "m.tflite"
    path.write_bytes(big.read_bytes())
    expected = sum(int(np.asarray(t.data).view(np.uint8).sum()) for t in load_model(big).tensors
                   if t.data is not None)
    r = subprocess.run([sys.executable, "-c", _TRUNCATED_WHILE_RUNNING, str(path)], env=ENV,
                       capture_output=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stderr.decode()[-500:])    # -7 would be SIGBUS
    assert int(r.stdout) == expected


# --------------------------------------------------------------------------------------------
# Names from the model are data: escaped in every message
# --------------------------------------------------------------------------------------------

INJECTED = "x\nTraceback (most recent call last):\n  injected\r\x1b[31mred\u2028"


def test_escape_text_leaves_no_control_character():
    escaped = escape_text(INJECTED)
    assert escaped == "x\\nTraceback (most recent call last):\\n  injected\\r\\x1b[31mred\\u2028"
    assert escaped.isprintable()
    assert str(InputError(f"tensor '{INJECTED}'")) == f"tensor '{escaped}'"


def test_names_with_newlines_do_not_split_error_lines(tmp_path):
    def inject(m, sg):
        sg.tensors[81].name = INJECTED
        sg.operators.insert(0, sg.operators.pop(1))         # reads tensor 81 before it is written

    path = tmp_path / "injected.tflite"
    path.write_bytes(edited(inject))
    line = one_line_error(cli("run", "-m", path, "--ids", "101 7 102"), r"reads tensor 81")
    assert escape_text(INJECTED) in line


def test_names_with_newlines_do_not_split_report_lines(tmp_path):
    def inject(m, sg):
        for t in sg.tensors:
            t.name = INJECTED.encode() + t.name

    path = tmp_path / "injected.tflite"
    path.write_bytes(edited(inject))
    for args in (["info"], ["run", "--ids", "101 7 102", "-t"], ["explain", "--op", "3", "--ids", "101 7 102"]):
        r = cli(*args, "-m", path)
        assert r.returncode == 0, r.stderr.decode()
        out = r.stdout.decode()
        assert "\x1b" not in out and "\r" not in out and "\u2028" not in out
        assert not any(line.startswith("Traceback") or line.startswith("  injected")
                       for line in out.splitlines())
        assert escape_text(INJECTED)[:40] in out


# --------------------------------------------------------------------------------------------
# The eval / classify worker pool: a lost worker, a vanished model, Ctrl-C
# --------------------------------------------------------------------------------------------


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids.update(int(k) for k in (task / "children").read_text().split())
        except OSError:
            pass
    return kids


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Still running: a zombie is dead (reaping it is its new parent's job once ours has exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _start_pool_eval(tmp_path: Path, rows: int):
    model = tmp_path / "m.tflite"
    model.write_bytes(RAW)
    data = labelled_tsv(tmp_path / "data.tsv", rows)
    proc = subprocess.Popen([sys.executable, "-m", "npmobilebert.cli", "eval", "-m", str(model), str(data),
                             "--engine", "litert-ref", "--processes", "2"], env=ENV, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
        workers = {k for k in _children(proc.pid) if "multiprocessing.spawn" in _cmdline(k)
                   and "resource_tracker" not in _cmdline(k)}
        time.sleep(0.05)
    assert len(workers) == 2, "the pool did not start"
    return proc, model, workers | _children(proc.pid)


def _finish(proc, every_child: set[int]) -> tuple[int, list[str], str]:
    out, err = proc.communicate(timeout=90)
    deadline = time.monotonic() + 10
    while any(_alive(k) for k in every_child) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [(k, _cmdline(k)) for k in every_child if _alive(k)]
    assert not left, f"processes left behind: {left}"
    # the progress bar's label is the only other line a non-terminal stderr gets
    lines = [line for line in err.decode().splitlines() if line.strip() and not line.startswith("eval m.tflite")]
    return proc.returncode, lines, out.decode()


@pytest.mark.slow
@pytest.mark.parametrize("interruption", ["worker-killed", "sigint", "parent-killed"])
def test_a_pool_that_loses_a_worker_or_is_interrupted_stops_with_one_line(tmp_path, interruption):
    proc, model, children = _start_pool_eval(tmp_path, 30000)   # ~10 s of work for 2 workers
    time.sleep(1.0)                                       # the workers are computing
    if interruption == "worker-killed":
        os.kill(min(k for k in children if "multiprocessing.spawn" in _cmdline(k)
                    and "resource_tracker" not in _cmdline(k)), signal.SIGKILL)   # as the OOM killer does
    elif interruption == "sigint":
        os.killpg(proc.pid, signal.SIGINT)                # Ctrl-C reaches the whole process group
    else:
        os.kill(proc.pid, signal.SIGKILL)                 # nothing of it can stop the workers
    code, lines, out = _finish(proc, children)
    if interruption == "parent-killed":
        assert code == -signal.SIGKILL and lines == [], lines
        return
    assert len(lines) == 1, lines                         # nothing from the workers
    if interruption == "worker-killed":
        assert code == 2 and re.match(r"error: a worker process .* ended abruptly", lines[0]), lines
    else:
        assert code == 130 and lines == ["aborted"], lines
    assert "macro" not in out                             # no report of a partial run


@pytest.mark.slow
def test_a_pool_whose_model_vanishes_runs_the_model_it_read(tmp_path):
    proc, model, children = _start_pool_eval(tmp_path, 400)
    model.unlink()                                        # removed (or rewritten) while the workers start
    code, lines, out = _finish(proc, children)
    assert code == 0 and lines == [], lines
    assert "400 rows" in out


# --------------------------------------------------------------------------------------------
# Text: long lines tokenized by prefix, TSVs as the csv module writes them, byte order marks
# --------------------------------------------------------------------------------------------


def _long_texts(vocab: list[str], n: int, seed: int) -> list[str]:
    """Long texts of every kind a tokenizer splits differently: vocabulary words and their
    pieces, punctuation runs, emoji, accents, CJK, words over WordPiece's 100 characters,
    mentions, URLs, entities, spaces of every width."""
    rng = np.random.default_rng(seed)
    extras = ["!!!", "...", "😀😀", "café", "naïve", "東京", "@someone", "https://t.co/x?y=1", "&amp;",
              "a" * 150, "\u3000", "\t", "  ", "x\u0301y", "ΑΣ", "don't", "#tag", "-", "'"]
    words = [w for w in vocab if w and not w.startswith("[")]
    texts = []
    for _ in range(n):
        parts = []
        for _ in range(int(rng.integers(20, 600))):
            pool = extras if rng.random() < 0.2 else words
            parts.append(pool[int(rng.integers(len(pool)))])
            parts.append(" " if rng.random() < 0.8 else "")
        texts.append("".join(parts))
    return texts


@pytest.mark.parametrize("seq_len", [16, 64])
def test_long_texts_give_the_ids_of_the_whole_text_truncated(seq_len):
    from npmobilebert.inputs import InputMaker
    from npmobilebert.text import Tokenizer, normalize_tweet

    vocab_text = bytes(InputMaker(load_model(RAW)).model.packed_files["vocab.txt"]).decode()
    tok = Tokenizer(vocab_text, seq_len)
    # words of over 100 characters are one [UNK] each, their prefixes several pieces: a prefix
    # cut inside one must not be taken for the text
    cut_words = [("x" * 101 + " ") * 200, ("x" * 101 + "!") * 200, "yes " * 3 + "é" * 5000 + " no" * 100]
    for text in cut_words + _long_texts(vocab_text.splitlines(), 150, seed=seq_len):
        whole = tok._tok.encode(normalize_tweet(text))          # the tokenizer on all of it
        enc = tok.encode(text, warn=False)
        n = int(enc.attention_mask.sum())
        assert enc.input_ids[0, :n].tolist() == tok._truncate(list(whole.ids)), text
        assert enc.tokens == tok._truncate(list(whole.tokens), "[SEP]")
        assert enc.truncated == (len(whole.ids) > seq_len)


_TEN_MEGABYTE_LINE = """
import resource, sys
from npmobilebert.inputs import InputMaker
from npmobilebert.model import load_model
maker = InputMaker(load_model(sys.argv[1]))
made = maker.from_text(("great service, the bus was late again! " * 300_000)[:10_000_000])
print(made.length, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_a_ten_megabyte_line_is_tokenized_in_bounded_memory():
    r = subprocess.run([sys.executable, "-W", "ignore", "-c", _TEN_MEGABYTE_LINE, str(TINY)], env=ENV,
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-500:]
    length, peak_mib = map(int, r.stdout.split())
    assert length == 16
    # the whole line tokenized: 1.6 GB; its prefixes: 205 MB alone, 924 MB once in a full CI run
    # (not reproduced alone): the bound tells the two apart without meeting that spread
    assert peak_mib < 1200, peak_mib


def test_tsv_as_csv_writer_writes_it_and_byte_order_marks(tmp_path):
    import csv

    from npmobilebert.classify import read_labelled_tsv
    from npmobilebert.cli import read_texts

    texts = ["great\tservice", 'he said "awful"\nand left', '"quoted" start', "plain"]
    written = tmp_path / "written.tsv"
    with open(written, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["id", "label", "text"])
        writer.writerows([k, "positive", t] for k, t in enumerate(texts))
    assert [r.text for r in read_labelled_tsv(str(written))] == texts
    assert read_texts(str(written)) == texts
    # plain TSVs (as tools/ write them) keep their quotes, closed or not
    plain = tmp_path / "plain.tsv"
    plain.write_text('label\ttext\npositive\t"great" service\nnegative\t"never closed\nneutral\tok "\n',
                     encoding="utf-8")
    assert [r.text for r in read_labelled_tsv(str(plain))] == ['"great" service', '"never closed', 'ok "']
    assert [r.line for r in read_labelled_tsv(str(plain))] == [2, 3, 4]
    bom = tmp_path / "bom.tsv"
    bom.write_text("label\ttext\npositive\tgreat\n", encoding="utf-8-sig")
    assert [(r.label, r.text) for r in read_labelled_tsv(str(bom))] == [("positive", "great")]
    assert read_texts(str(bom)) == ["great"]
    lines = tmp_path / "lines.txt"
    lines.write_text("great\nawful\n", encoding="utf-8-sig")
    assert read_texts(str(lines)) == ["great", "awful"]


# --------------------------------------------------------------------------------------------
# The Python API takes what a user would pass, or says clearly what it takes
# --------------------------------------------------------------------------------------------


def test_from_ids_takes_lists_and_arrays_of_integers_and_refuses_the_rest():
    from npmobilebert.inputs import InputMaker

    maker = InputMaker(load_model(TINY))
    expected = maker.from_ids([101, 7, 102]).arrays
    for ids in ((101, 7, 102), np.array([101, 7, 102]), np.array([101, 7, 102], dtype=np.uint16),
                [np.int32(101), np.int64(7), 102]):
        for a, b in zip(maker.from_ids(ids).arrays, expected):
            np.testing.assert_array_equal(a, b)
    for ids in ([101, 7.9, 102], np.array([101.0, 7.0, 102.0]), [101, True, 102], "101 7 102",
                np.array([[101, 7, 102]]), 101, [101, None]):
        with pytest.raises(TypeError, match="token ids must be"):
            maker.from_ids(ids)


def test_interpreter_takes_a_path_or_a_model():
    from npmobilebert.interpreter import Interpreter
    from npmobilebert.inputs import InputMaker

    model = load_model(TINY)
    arrays = InputMaker(model).from_ids([101, 7, 102]).arrays
    expected = Interpreter(model).run(arrays)
    for source in (TINY, str(TINY)):
        for a, b in zip(Interpreter(source).run(arrays), expected):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match=r"takes a Model \(load_model\) or a model file's path, not bytes"):
        Interpreter(RAW)


# --------------------------------------------------------------------------------------------
# Declared sizes and types that NumPy or LiteRT cannot take: exit 2, never "internal error"
# --------------------------------------------------------------------------------------------


def _input_declared(shape, tensor_type=None):
    def edit(m, sg):
        t = sg.tensors[sg.inputs[0]]
        t.shape, t.shapeSignature = shape, None
        if tensor_type is not None:
            t.type = tensor_type
    return edit


def _vocab_size(size):
    def edit(m, sg):
        import json

        md = next(md for md in m.metadata if md.name in (b"npmobilebert", "npmobilebert"))
        meta = json.loads(bytes(m.buffers[md.buffer].data).decode())
        meta["vocab_size"] = size
        m.buffers[md.buffer].data = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return edit


DECLARED_CASES = [
    ("zero-byte-input-of-huge-dims", _input_declared([0, 2**31 - 1, 2**31 - 1, 2**31 - 1]),
     r"declares shape \[0, 2147483647, 2147483647, 2147483647\] of INT32, over the limit"
     r"|computes shape \[0, 2147483647, 2147483647, 2147483647\]"),
    ("string-input", _input_declared([2**31 - 1, 2**31 - 1], schema.TensorType.STRING),
     r"over the limit|STRING tensors are not implemented"),
    ("string-input-small", _input_declared([1, 16], schema.TensorType.STRING),
     r"STRING tensors are not implemented|Type STRING is unsupported"),
    ("resource-input", _input_declared([1, 16], schema.TensorType.RESOURCE), r"is of type RESOURCE|RESOURCE tensors are not implemented"),
    ("vocab-size-2^40", _vocab_size(2**40), r"declares vocab_size 1099511627776"),
]


@pytest.mark.parametrize("case_id", [c[0] for c in DECLARED_CASES])
def test_declared_sizes_and_types_that_cannot_be_made_are_bad_input(tmp_path, case_id):
    _, edit, message = next(c for c in DECLARED_CASES if c[0] == case_id)
    path = tmp_path / f"{case_id}.tflite"
    path.write_bytes(edited(edit))
    for args in (["verify", "--random", "1", "--against", "default"], ["dump", "--random", "1", "--out", tmp_path / "d.npz"]):
        one_line_error(cli(args[0], "-m", path, *args[1:]), message)
    assert not (tmp_path / "d.npz").exists()


def _rewritten_dump(source: Path, target: Path, replace: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as out:
        for name in original.namelist():
            out.writestr(name, replace.get(name, original.read(name)))
    return target


def test_dumps_that_declare_what_they_do_not_hold_are_bad_input(tmp_path):
    import io
    import json

    good = tmp_path / "good.npz"
    assert cli("dump", "-m", TINY, "--random", "1", "--out", good).returncode == 0
    with np.load(good) as z:
        meta = json.loads(str(z["__meta__"][()]))
    victim = next(k for k in meta["tensors"]) + ".npy"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (2**40,)})
    cases = [(_rewritten_dump(good, tmp_path / "huge.npz", {victim: header.getvalue() + bytes(16)}),
              r"declares shape \[1099511627776\] of float32, 4,398,046,511,104 bytes, in an entry of \d+ bytes")]
    indices = []
    for bad in ("x", 1.5, None, True):
        changed = dict(meta, tensors=dict(meta["tensors"], **{next(iter(meta["tensors"])): bad}))
        entry = io.BytesIO()
        np.lib.format.write_array(entry, np.array(json.dumps(changed)))
        indices.append(_rewritten_dump(good, tmp_path / f"index-{bad}.npz", {"__meta__.npy": entry.getvalue()}))
    cases.append((indices[0], r"'tensors' does not map names to tensor indices"))
    for dump, message in cases:
        one_line_error(cli("verify", "-m", TINY, "--against", dump), message)
    from npmobilebert.dump import verify_dump

    for dump in indices[1:]:
        with pytest.raises(InputError, match=r"'tensors' does not map names to tensor indices"):
            verify_dump(load_model(TINY), str(dump))


def test_label_names_with_newlines_do_not_split_report_lines(tmp_path):
    import json

    labels = ["negative" + INJECTED, "neutral", "positive"]

    def inject(m, sg):
        md = next(md for md in m.metadata if md.name in (b"npmobilebert", "npmobilebert"))
        meta = json.loads(bytes(m.buffers[md.buffer].data).decode())
        meta["labels"] = labels
        m.buffers[md.buffer].data = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)

    path = tmp_path / "labels.tflite"
    path.write_bytes(edited(inject) + RAW[RAW.find(b"PK\x03\x04"):])   # the packed vocab.txt kept
    data = tmp_path / "data.tsv"
    data.write_text("label\ttext\nneutral\tok\npositive\tfine\n", encoding="utf-8")
    r = cli("eval", "-m", path, data, "--engine", "numpy")
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert escape_text(labels[0]) in out
    assert not any(line.startswith(("Traceback", "  injected")) for line in out.splitlines())
    assert "\x1b" not in out and "\r" not in out and "\u2028" not in out
    # a gold label the model does not have: the error names the model's labels, on one line
    data.write_text("label\ttext\nmixed\tok\n", encoding="utf-8")
    one_line_error(cli("eval", "-m", path, data, "--engine", "numpy"), r"label 'mixed' is not one of")


def test_check_writable_refuses_an_input_by_any_name(tmp_path):
    from npmobilebert.fileio import check_writable

    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    (tmp_path / "link").symlink_to(model)
    os.link(model, tmp_path / "hard")
    for output in (model, tmp_path / "link", tmp_path / "hard", tmp_path / "." / "m.tflite"):
        with pytest.raises(InputError, match="it is an input of this command"):
            check_writable(output, [None, str(tmp_path / "link")])
    check_writable(tmp_path / "new.npz", [model])         # a new file is no input
    check_writable(tmp_path / "other", [model, None])
