"""tools/: build a very tiny MobileBERT, convert it with the real TFLite converter."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.tools, pytest.mark.slow]     # converts with TensorFlow

TOOLS = Path(__file__).resolve().parent.parent / "tools"


@pytest.fixture(scope="module")
def convert():
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    sys.path.insert(0, str(TOOLS))
    import convert as mod

    return mod


@pytest.fixture(scope="module")
def tiny_int8(convert, tmp_path_factory):
    from build_mobilebert import MobileBertConfig

    cfg = MobileBertConfig(
        vocab_size=128, seq_len=8, num_layers=1, hidden=32, intra_bottleneck=16,
        intermediate=32, num_ffn=2, num_heads=2, embedding_size=16, num_labels=3,
    )
    out = tmp_path_factory.mktemp("tools")
    res = convert.run(cfg, ["int8"], str(out), "t", seed=0, calib_n=8, show=False)
    return cfg, Path(res["int8"]["path"]), res["int8"]


def test_loads_in_litert(convert, tiny_int8):
    cfg, path, res = tiny_int8
    it = convert.interpreter(path, reference=True)
    sig = it.get_signature_list()["serving_default"]
    assert sig["inputs"] == ["attention_mask", "input_ids", "token_type_ids"]
    assert sig["outputs"] == ["logits"]
    for d in it.get_input_details():
        assert d["dtype"] == np.int32 and list(d["shape"]) == [1, cfg.seq_len]
    (out,) = it.get_output_details()
    assert out["dtype"] == np.float32 and list(out["shape"]) == [1, cfg.num_labels]
    logits = it.get_signature_runner()(**convert.ids_to_sample([101, 5, 6, 102], 8))["logits"]
    assert np.all(np.isfinite(logits))


def test_full_integer(convert, tiny_int8):
    _, _, res = tiny_int8
    ops = {name for name, _ in res["ops"]}
    assert {"QUANTIZE", "DEQUANTIZE", "FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX",
            "GATHER", "CONCATENATION"} <= ops
    it = convert.interpreter(tiny_int8[1], reference=True)
    fc = [o for o in it._get_ops_details() if o["op_name"] == "FULLY_CONNECTED"]
    assert fc and all(np.dtype(o["operand_types"][0]) == np.int8 for o in fc)


def test_packed_files_and_metadata(convert, tiny_int8):
    cfg, path, _ = tiny_int8
    with zipfile.ZipFile(path) as zf:
        assert set(zf.namelist()) == {"vocab.txt", "labels.txt"}
        vocab = zf.read("vocab.txt").decode().split("\n")
        labels = zf.read("labels.txt").decode().split()
    assert len([v for v in vocab if v]) == cfg.vocab_size
    assert vocab[0] == "[PAD]" and vocab[101] == "[CLS]" and vocab[102] == "[SEP]"
    meta = json.loads(convert.read_metadata(path.read_bytes(), "npmobilebert"))
    assert meta["labels"] == labels == ["negative", "neutral", "positive"]
    assert meta["seq_len"] == 8 and meta["vocab_size"] == 128
    assert meta["scheme"] == "int8"
    assert meta["mask_value"] == cfg.mask_value
    assert meta["config"]["num_layers"] == 1


def test_fresh_conversion_verifies_bit_exact(convert, tiny_int8):
    """Converter output verified end to end: a model the real converter just made runs in the
    NumPy interpreter with every tensor identical to LiteRT's reference kernels."""
    from npmobilebert.compare import compare_runs
    from npmobilebert.inputs import InputMaker
    from npmobilebert.interpreter import Interpreter
    from npmobilebert.model import load_model
    from npmobilebert.runtime import LiteRTRunner

    _, path, _ = tiny_int8
    model = load_model(path)
    interp, runner, maker = Interpreter(model), LiteRTRunner(str(path), resolver="ref"), InputMaker(model)
    rng = np.random.default_rng(3)
    for _ in range(5):
        arrays = maker.random(rng).arrays
        cmp = compare_runs(model, interp.run_all(arrays), runner.run_all(arrays))
        assert cmp.compared > 0 and cmp.first_divergence is None, cmp.first_divergence
