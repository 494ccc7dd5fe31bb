"""The Python API: ``npmobilebert.classify`` / ``npmobilebert.Classifier``.

The logits are checked against LiteRT's reference kernels run directly (ai_edge_litert, no
npmobilebert code between it and the file), the labels against the model's metadata. The
sentences are made up for the tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import npmobilebert
from npmobilebert.errors import NpMobileBertError

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "tests" / "fixtures" / "tiny_int8.tflite")
LABELS = ["negative", "neutral", "positive"]
TEXTS = ["I really love the new phone, the screen is wonderful",
         "the bank lost my card again and nobody answers the phone",
         "the university opens its new library on monday",
         "thanks for the quick help, problem solved"]


def litert_reference_logits(model_path: str, texts: list[str]) -> np.ndarray:
    """The class output of LiteRT's reference kernels for each text, dequantized with the
    scale and zero point LiteRT reports (float64, as the API's logits)."""
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    from npmobilebert.inputs import InputMaker
    from npmobilebert.model import load_model

    model = load_model(model_path)
    maker = InputMaker(model)
    interp = litert.Interpreter(model_path=model_path,
                                experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    [out] = [d for d in interp.get_output_details() if int(np.prod(d["shape"])) == len(LABELS)]
    rows = []
    for text in texts:
        by_index = dict(zip(model.inputs, maker.from_text(text).arrays))
        for d in interp.get_input_details():
            interp.set_tensor(d["index"], by_index[d["index"]])
        interp.invoke()
        q = interp.get_tensor(out["index"]).reshape(-1).astype(np.float64)
        scale, zero_point = out["quantization"]
        rows.append(q if np.issubdtype(out["dtype"], np.floating) else scale * (q - zero_point))
    return np.array(rows)


@pytest.mark.parametrize("engine", ["numpy", "litert-ref"])
def test_classifier_gives_litert_reference_logits_labels_and_probabilities(engine):
    expected = litert_reference_logits(TINY, TEXTS)
    clf = npmobilebert.Classifier(TINY, engine=engine)
    assert clf.labels == LABELS
    results = clf.predict(TEXTS)
    assert [r.text for r in results] == TEXTS
    np.testing.assert_array_equal(np.array([r.logits for r in results]), expected)
    for r, z in zip(results, expected):
        assert r.label == LABELS[int(np.argmax(z))]
        assert list(r.probabilities) == LABELS
        np.testing.assert_allclose(list(r.probabilities.values()), np.exp(z) / np.exp(z).sum(), rtol=1e-12)


def test_classify_function_one_string_and_the_default_engine():
    pytest.importorskip("ai_edge_litert.interpreter")
    [one] = npmobilebert.classify(TEXTS[0], model=TINY, engine="numpy")
    many = npmobilebert.classify(TEXTS, model=TINY, engine="numpy")
    assert one.text == TEXTS[0]
    np.testing.assert_array_equal(one.logits, many[0].logits)
    # the default engine is LiteRT with XNNPACK, as `npmobilebert classify`: the same labels here
    assert [r.label for r in npmobilebert.classify(TEXTS, model=TINY)] == [r.label for r in many]


def test_truncated_texts_say_so():
    """The tiny model reads 16 tokens: 20 words are at least 22 ([CLS], [SEP]); 'fine' at most 6."""
    clf = npmobilebert.Classifier(TINY, engine="numpy")
    long_text = " ".join(["service"] * 20)
    assert [r.truncated for r in clf.predict(["fine", long_text])] == [False, True]


def test_classifier_pool_matches_one_process():
    texts = TEXTS * 20                                # 80 texts: several chunks per worker
    clf = npmobilebert.Classifier(TINY, engine="numpy")
    one = np.array([r.logits for r in clf.predict(texts)])
    pool = np.array([r.logits for r in clf.predict(texts, processes=2)])
    np.testing.assert_array_equal(pool, one)


def test_api_bad_input_raises_a_one_line_package_error(tmp_path):
    from test_eval import without_labels

    no_labels = without_labels(TINY, tmp_path / "no_labels.tflite")
    not_a_model = tmp_path / "notes.tflite"
    not_a_model.write_text("hello\n")
    cases = [
        (lambda: npmobilebert.Classifier(TINY, engine="fast"), "unknown engine 'fast'"),
        (lambda: npmobilebert.Classifier(tmp_path / "missing.tflite"), "no such model file"),
        (lambda: npmobilebert.Classifier(not_a_model, engine="numpy"), "too small to be a TFLite model"),
        (lambda: npmobilebert.Classifier(no_labels, engine="numpy"), "no class labels"),
        (lambda: npmobilebert.classify(["fine", "  "], model=TINY, engine="numpy"), "text 2 is empty"),
        (lambda: npmobilebert.classify(["fine", 7], model=TINY, engine="numpy"), "text 2 is a int"),
    ]
    for call, needle in cases:
        with pytest.raises(NpMobileBertError) as info:
            call()
        assert needle in str(info.value) and "\n" not in str(info.value)


def test_default_model_found_from_any_directory(tmp_path):
    """A source checkout (src/ on the path) finds models/ wherever the command runs."""
    env = {**os.environ, "PYTHONPATH": str(Path(npmobilebert.__file__).resolve().parents[1])}
    shipped = ROOT / "models" / "mobilebert_int8.tflite"
    r = subprocess.run([sys.executable, "-c", "import npmobilebert; print(npmobilebert.default_model_path())"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).read_bytes() == shipped.read_bytes()
    r = subprocess.run([sys.executable, "-m", "npmobilebert.cli", "classify", "--engine", "numpy", "--json",
                        TEXTS[0]], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["label"] in LABELS          # the shipped model's labels too
