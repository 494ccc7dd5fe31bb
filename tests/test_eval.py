"""Metrics (checked against hand-computed values), `npmobilebert eval` and `classify`.

The sentences here are made up for the tests; tweet texts (../shared/data) are never copied into
the repository: the tests that use them read them from ../shared and skip where it is absent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npmobilebert.metrics import classification_report, confusion_matrix, format_reports

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
TINY = str(FIXTURES / "tiny_int8.tflite")
TINY_PT = str(FIXTURES / "tiny_int8-per-tensor.tflite")
SHARED = ROOT.parent / "shared" / "data"
LABELS = ["negative", "neutral", "positive"]

SENTENCES = [
    ("positive", "I really love the new phone, the screen is wonderful"),
    ("negative", "the bank lost my card again and nobody answers the phone"),
    ("neutral", "the university opens its new library on monday"),
    ("positive", "great concert last night, the band was amazing"),
    ("negative", "worst customer service I have ever seen"),
    ("neutral", "the car company announced its quarterly results"),
    ("positive", "thanks for the quick help, problem solved"),
    ("negative", "my flight was cancelled and the refund never came"),
    ("neutral", "a new album comes out next week"),
    ("positive", "so happy with this purchase"),
]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "npmobilebert.cli", *args], capture_output=True,
                          text=True, timeout=300)


def write_tsv(path: Path, rows, header=("id", "label", "text", "extra")) -> Path:
    lines = ["\t".join(header)]
    for k, (label, text) in enumerate(rows):
        values = {"id": str(k), "label": label, "text": text, "extra": "x"}
        lines.append("\t".join(values[h] for h in header))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- metrics, against values worked out by hand ------------------------------------------------------

def test_metrics_hand_checked_case():
    # gold a a a b b c, predicted a a b b c c
    gold = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", "c", "c"]
    r = classification_report(gold, pred, ["a", "b", "c"])
    assert r["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert r["accuracy"] == pytest.approx(4 / 6)
    # a: TP 2, predicted 2, gold 3 -> P 1, R 2/3, F1 = 2*1*(2/3)/(1+2/3) = 0.8
    # b: TP 1, predicted 2, gold 2 -> P 1/2, R 1/2, F1 1/2
    # c: TP 1, predicted 2, gold 1 -> P 1/2, R 1, F1 = 2*(1/2)*1/(3/2) = 2/3
    expected = {"a": (1.0, 2 / 3, 0.8), "b": (0.5, 0.5, 0.5), "c": (0.5, 1.0, 2 / 3)}
    for name, (p, rec, f1) in expected.items():
        c = r["per_class"][name]
        assert (c["precision"], c["recall"], c["f1"]) == pytest.approx((p, rec, f1))
    assert [r["per_class"][n]["support"] for n in "abc"] == [3, 2, 1]
    assert r["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert r["macro_recall"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)


def test_metrics_zero_division_and_absent_class():
    # c never occurs and is never predicted; b is never predicted
    r = classification_report(["a", "b"], ["a", "a"], ["a", "b", "c"])
    assert r["confusion"] == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]
    assert r["accuracy"] == 0.5
    # a: P 1/2, R 1, F1 2/3; b and c: everything 0
    assert r["per_class"]["a"]["f1"] == pytest.approx(2 / 3)
    for name in "bc":
        assert r["per_class"][name]["precision"] == r["per_class"][name]["recall"] == r["per_class"][name]["f1"] == 0
    assert r["macro_f1"] == pytest.approx(2 / 9)


def test_metrics_perfect_and_all_wrong():
    perfect = classification_report(LABELS, LABELS, LABELS)
    assert perfect["accuracy"] == perfect["macro_f1"] == 1.0
    wrong = classification_report(["negative", "positive"], ["positive", "negative"], LABELS)
    assert wrong["accuracy"] == wrong["macro_f1"] == 0.0
    with pytest.raises(ValueError):
        confusion_matrix(["a"], ["z"], ["a", "b"])
    text = format_reports([perfect, wrong], ["one", "two"])
    assert "macro-F1" in text and "confusion matrix of two" in text


# -- eval and classify on the tiny fixture -------------------------------------------------------------

@pytest.fixture(scope="module")
def data_tsv(tmp_path_factory):
    return write_tsv(tmp_path_factory.mktemp("eval") / "data.tsv", SENTENCES)


def _check_report(r: dict, n: int):
    assert set(r) >= {"accuracy", "macro_f1", "per_class", "confusion", "labels", "n", "model", "engine"}
    assert r["labels"] == LABELS and r["n"] == n
    assert set(r["per_class"]) == set(LABELS)
    for c in r["per_class"].values():
        assert set(c) >= {"precision", "recall", "f1", "support"}
        assert all(0.0 <= c[k] <= 1.0 for k in ("precision", "recall", "f1"))
    assert len(r["confusion"]) == 3 and all(len(row) == 3 for row in r["confusion"])
    assert sum(map(sum, r["confusion"])) == n
    assert [sum(row) for row in r["confusion"]] == [r["per_class"][name]["support"] for name in LABELS]
    assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["macro_f1"] <= 1.0


def test_eval_engines_agree_and_json_schema(data_tsv, tmp_path):
    pytest.importorskip("ai_edge_litert.interpreter")
    reports = {}
    for engine in ("litert", "litert-ref", "numpy"):
        out = tmp_path / f"{engine}.json"
        r = cli("eval", "-m", TINY, str(data_tsv), "--engine", engine, "--json", str(out))
        assert r.returncode == 0, r.stderr
        assert "macro-F1" in r.stdout and "confusion matrix" in r.stdout
        reports[engine] = json.loads(out.read_text())
        _check_report(reports[engine], len(SENTENCES))
    assert reports["numpy"]["confusion"] == reports["litert-ref"]["confusion"] == reports["litert"]["confusion"]


def test_eval_several_models_writes_a_list(data_tsv, tmp_path):
    out = tmp_path / "both.json"
    r = cli("eval", "-m", TINY, "-m", TINY_PT, str(data_tsv), "--engine", "numpy", "--limit", "6",
            "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "tiny_int8.tflite" in r.stdout and "tiny_int8-per-tensor.tflite" in r.stdout
    both = json.loads(out.read_text())
    assert isinstance(both, list) and len(both) == 2
    for rep in both:
        _check_report(rep, 6)


def test_classify_engines_identical(tmp_path):
    pytest.importorskip("ai_edge_litert.interpreter")
    texts = [t for _, t in SENTENCES[:4]]
    results = {}
    for engine in ("litert", "litert-ref", "numpy"):
        r = cli("classify", "-m", TINY, *texts, "--engine", engine, "--json")
        assert r.returncode == 0, r.stderr
        results[engine] = json.loads(r.stdout)
        assert [x["text"] for x in results[engine]] == texts
        for x in results[engine]:
            assert x["label"] in LABELS
            assert sum(x["probabilities"].values()) == pytest.approx(1.0)
            assert x["label"] == max(x["probabilities"], key=x["probabilities"].get)
    labels = {e: [x["label"] for x in res] for e, res in results.items()}
    assert labels["litert"] == labels["litert-ref"] == labels["numpy"]
    # the reference kernels are bit-identical to ours: so are the logits
    assert [x["logits"] for x in results["litert-ref"]] == [x["logits"] for x in results["numpy"]]
    r = cli("classify", "-m", TINY, texts[0], "--engine", "numpy")
    assert r.returncode == 0 and r.stdout.split()[0] in LABELS


def test_classify_file_and_pool_match_single_process(tmp_path):
    pytest.importorskip("ai_edge_litert.interpreter")
    from npmobilebert.classify import predict

    texts = [t for _, t in SENTENCES] * 8          # 80 texts: three chunks per worker
    one = predict(TINY, texts, "litert-ref", processes=1)
    pool = predict(TINY, texts, "litert-ref", processes=2)
    assert pool.processes == 2
    np.testing.assert_array_equal(one.logits, pool.logits)
    ours = predict(TINY, texts[:10], "numpy")
    np.testing.assert_array_equal(ours.logits, one.logits[:10])
    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(texts[:3]) + "\n", encoding="utf-8")
    r = cli("classify", "-m", TINY, "--file", str(lines), "--engine", "numpy", "--json")
    assert r.returncode == 0, r.stderr
    assert [x["label"] for x in json.loads(r.stdout)] == ours.predicted[:3]


def test_quantized_output_is_dequantized():
    from npmobilebert.classify import softmax, to_logits

    z = to_logits(np.array([[10, -6, 2]], dtype=np.int8), 0.5, 2)
    np.testing.assert_allclose(z, [4.0, -4.0, 0.0])
    p = softmax(z)
    assert p.sum() == pytest.approx(1.0) and np.argmax(p) == 0


@pytest.mark.parametrize("content, message", [
    ("id\ttext\n1\thello world\n", "no 'label'"),
    ("label\tsentence\npositive\thello\n", "no 'text'"),
    ("label\ttext\npositive\thello world\nhappy\tgood day\n", "line 3: label 'happy'"),
    ("label\ttext\textra\npositive\thello world\n", "line 2: 2 tab-separated fields"),
    ("label\ttext\npositive\t \n", "line 2: empty text"),
    ("label\ttext\n", "no labelled rows"),
])
def test_eval_bad_tsv_exits_2(tmp_path, content, message):
    bad = tmp_path / "bad.tsv"
    bad.write_text(content, encoding="utf-8")
    r = cli("eval", "-m", TINY, str(bad), "--engine", "numpy")
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_eval_and_classify_usage_errors_exit_2(tmp_path, data_tsv):
    assert cli("eval", "-m", TINY, str(tmp_path / "missing.tsv")).returncode == 2
    assert cli("eval", "-m", TINY, str(data_tsv), "--json", str(tmp_path / "no" / "dir.json")).returncode == 2
    assert cli("classify", "-m", TINY).returncode == 2
    assert cli("classify", "-m", TINY, "  ").returncode == 2
    not_a_model = tmp_path / "not_a_model.tflite"
    not_a_model.write_bytes(b"not a flatbuffer at all" * 4)
    for args in (("classify", "-m", str(not_a_model), "hello"), ("eval", "-m", str(not_a_model), str(data_tsv))):
        r = cli(*args, "--engine", "numpy")
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr   # the error only: no progress bar first


def without_labels(src: str, dst: Path) -> Path:
    """A copy of a model whose 'npmobilebert' metadata lost its class labels (vocab kept): a
    BERT that can run but cannot classify, as a user's own converted model may be."""
    import io
    import zipfile

    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from npmobilebert.model import load_model

    model = schema.ModelT.InitFromPackedBuf(Path(src).read_bytes(), 0)
    entry = next(m for m in model.metadata if m.name in (b"npmobilebert", "npmobilebert"))
    meta = json.loads(bytes(model.buffers[entry.buffer].data))
    del meta["labels"]
    model.buffers[entry.buffer].data = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), b"TFL3")
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("vocab.txt", load_model(src).packed_files["vocab.txt"])
    dst.write_bytes(bytes(builder.Output()) + packed.getvalue())
    return dst


def test_a_model_without_labels_cannot_classify(tmp_path, data_tsv):
    pytest.importorskip("ai_edge_litert")
    model = without_labels(TINY, tmp_path / "no_labels.tflite")
    assert cli("run", "-m", str(model), "hello world").returncode == 0      # it still runs
    for args in (("classify", "-m", str(model), "hello"), ("eval", "-m", TINY, "-m", str(model), str(data_tsv))):
        r = cli(*args, "--engine", "numpy")
        assert r.returncode == 2, r.stdout + r.stderr
        assert r.stderr.strip().splitlines() == [f"error: {model}: the model has no class labels in its "
                                                 "metadata (the 'npmobilebert' entry): it cannot classify"]
        assert r.stdout == ""


# -- on the shared data (never copied here): skipped where ../shared is absent ---------------------

def test_replab_split_is_reproducible():
    data = SHARED / "replab2013" / "train_en.tsv"
    if not data.exists():
        pytest.skip(f"{data} is absent (shared data, not part of the repository)")
    sys.path.insert(0, str(ROOT / "tools"))
    from split_replab import SPLIT_JSON, read_rows, search_split

    doc = json.loads(SPLIT_JSON.read_text())
    _, rows = read_rows(data)
    assert search_split(rows, doc["seed"], doc["target_dev_share"], doc["trials"]) == doc["dev_entities"]
    dev = [r for r in rows if r["entity_id"] in set(doc["dev_entities"])]
    assert 0.15 <= len(dev) / len(rows) <= 0.20
    assert len(dev) == doc["counts"]["dev"]["rows"]


def test_entity_folds_hold_out_whole_brands_of_the_train_split():
    """The out-of-fold teacher runs (train_teacher.py --fold) and the stacking in
    baseline_lexicon.py rely on it: the folds partition the train rows, no brand is in two folds,
    and the same rows come back every call (each --fold run recomputes them)."""
    pytest.importorskip("sklearn")
    data = SHARED / "replab2013" / "train_en.tsv"
    if not data.exists():
        pytest.skip(f"{data} is absent (shared data, not part of the repository)")
    sys.path.insert(0, str(ROOT / "tools"))
    from split_replab import apply_split, entity_folds

    _, train, _ = apply_split(data)
    folds = entity_folds(train, 3)
    np.testing.assert_array_equal(np.sort(np.concatenate(folds)), np.arange(len(train)))
    brands = [{train[i]["entity_id"] for i in fold} for fold in folds]
    assert all(not (a & b) for k, a in enumerate(brands) for b in brands[k + 1:])
    assert min(map(len, folds)) > 0.3 * len(train)          # balanced by rows, not by brand count
    for again, fold in zip(entity_folds(train, 3), folds):
        np.testing.assert_array_equal(again, fold)


@pytest.mark.slow          # 2,000 tweets
def test_eval_tweeteval_with_litert(tmp_path):
    pytest.importorskip("ai_edge_litert.interpreter")
    data = SHARED / "tweeteval" / "val.tsv"
    if not data.exists():
        pytest.skip(f"{data} is absent (shared data, not part of the repository)")
    out = tmp_path / "tweeteval.json"
    r = cli("eval", str(data), "--engine", "litert", "--json", str(out))
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    _check_report(report, 2000)
