"""The training tools' torch MobileBERT against the Keras model the converter sees.

The student is trained in torch (tools/torch_mobilebert.py) and converted from Keras
(tools/build_mobilebert.py); these tests hold the two to the same function, so what was
trained is what ships. They need the ``[train]`` extra (torch) and skip without it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the training tools need torch (pip install -e '.[train]')")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
torch_mobilebert = pytest.importorskip("torch_mobilebert")   # imports keras too
from build_mobilebert import MobileBertConfig, build_trained_like  # noqa: E402

pytestmark = pytest.mark.slow     # torch and Keras models built, trained and converted

CFG = MobileBertConfig(vocab_size=300, seq_len=16, num_layers=2, hidden=48, intra_bottleneck=24,
                       intermediate=40, num_ffn=2, num_heads=2, embedding_size=16, max_position=32)


@pytest.fixture(scope="module")
def pair():
    keras_model = build_trained_like(CFG, seed=3)
    student = torch_mobilebert.TorchMobileBert(CFG)
    student.load_keras_weights(torch_mobilebert.from_keras(keras_model))
    return keras_model, student


def keras_logits(model, ids: np.ndarray) -> np.ndarray:
    feed = {name: np.zeros((1, CFG.seq_len), np.int32)
            for name in ("input_ids", "attention_mask", "token_type_ids")}
    feed["input_ids"][0, : len(ids)] = ids
    feed["attention_mask"][0, : len(ids)] = 1
    return np.asarray(model(feed)["logits"])[0]


def test_weights_round_trip_exactly(pair):
    keras_model, student = pair
    back = student.keras_weights()
    for layer, weights in torch_mobilebert.from_keras(keras_model).items():
        for original, returned in zip(weights, back[layer]):
            np.testing.assert_array_equal(returned, original)


def test_batched_training_forward_equals_the_converted_graph(pair):
    """Texts of different lengths in one batch, padded to the longest + 1 as distill.py pads
    them, give the logits the Keras [1, seq_len] model gives each text alone."""
    import distill

    keras_model, student = pair
    rng = np.random.default_rng(0)
    texts = [rng.integers(5, CFG.vocab_size, n).astype(np.int32) for n in (3, 9, 15, 6)]
    ids, mask = distill.pad_for_student(texts, CFG.seq_len)
    assert ids.shape[1] == 16       # longest (15) + one [PAD]
    with torch.no_grad():
        batched = student(ids, mask).numpy()
    for row, text in enumerate(texts):
        expected = keras_logits(keras_model, text)
        # float32 with different summation orders (oneDNN vs torch GEMMs): measured <= 1e-6
        # relative; 1e-5 of the largest logit is ~80 float32 ULPs at that magnitude.
        np.testing.assert_allclose(batched[row], expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_to_keras_rebuilds_the_trained_weights(pair):
    _, student = pair
    with torch.no_grad():
        student.w("logits", "bias").add_(1.5)     # a change only a real copy carries over
    try:
        rebuilt, gap = torch_mobilebert.to_keras(student, [np.array([101, 7, 8, 102], np.int32)])
        assert gap < 1e-5
        np.testing.assert_array_equal(rebuilt.get_layer("logits").get_weights()[1],
                                      student.w("logits", "bias").detach().numpy())
    finally:
        with torch.no_grad():
            student.w("logits", "bias").sub_(1.5)


def test_earlier_run_seeds_the_maps_of_every_teacher(tmp_path, pair):
    """--init-from with more teachers than the earlier run had (--states-from all): the maps onto
    the first teacher load as saved, those onto a new teacher start as their copy; a run that saved
    maps per teacher gets each back."""
    import distill

    _, student = pair
    saved = distill.HiddenStateDistillation(CFG.num_layers, 6, CFG.hidden, 32)
    torch.save({"model": torch.nn.ModuleDict({"student": student, "hidden_maps": saved}).state_dict(), "step": 7},
               tmp_path / "checkpoint.pt")
    fresh = [distill.HiddenStateDistillation(CFG.num_layers, 6, CFG.hidden, 32) for _ in range(2)]
    assert distill.load_earlier_run(tmp_path, student, fresh) == 7
    for maps in fresh:
        for got, want in zip(maps.state_dict().values(), saved.state_dict().values()):
            np.testing.assert_array_equal(got.numpy(), want.numpy())

    with torch.no_grad():
        fresh[1].maps[0].bias.add_(1.0)               # the second teacher's maps now differ
    torch.save({"model": torch.nn.ModuleDict({"student": student} | {
        distill.hidden_maps_name(k): m for k, m in enumerate(fresh)}).state_dict(), "step": 9},
        tmp_path / "checkpoint.pt")
    again = [distill.HiddenStateDistillation(CFG.num_layers, 6, CFG.hidden, 32) for _ in range(2)]
    distill.load_earlier_run(tmp_path, student, again)
    for loaded, expected in zip(again, fresh):
        np.testing.assert_array_equal(loaded.maps[0].bias.detach().numpy(), expected.maps[0].bias.detach().numpy())


def test_folded_model_is_the_same_function_in_torch(pair):
    """fold_norms puts the residual NoNorms into the dense layers and 1/sqrt(head_dim) into the
    query weights; a torch model of that config (residual_scale/_shift=False, attention_scale=False)
    must neither apply those NoNorms nor scale the scores again."""
    import dataclasses

    import convert
    import distill
    import fold_norms

    keras_model, _ = pair
    unscaled = dataclasses.replace(CFG, residual_scale=False, residual_shift=False)
    folded = fold_norms.fold_residual_scales(keras_model, CFG, convert.calibration_samples(CFG, 8, seed=2))
    folded = fold_norms.fold_attention_scale(folded, unscaled)
    student = torch_mobilebert.TorchMobileBert(dataclasses.replace(unscaled, attention_scale=False))
    student.load_keras_weights(torch_mobilebert.from_keras(folded))
    text = np.random.default_rng(1).integers(5, CFG.vocab_size, 11).astype(np.int32)
    with torch.no_grad():
        got = student(*distill.pad_for_student([text], CFG.seq_len)).numpy()[0]
    expected = keras_logits(keras_model, text)      # the model as trained
    # the folded weights are float32 products rounded once more (as in test_fold_norms)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
