"""tools/augment.py: the word-replacement augmentation of the distillation data (NumPy only)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import augment  # noqa: E402

VOCAB = ["[PAD]", "[CLS]", "[SEP]", "the", "good", "great", "bad", "awful", "##s", "http", "user",
         "@", "!", "a", "café", "Big", "bmw", "audi"]
IDS = {t: i for i, t in enumerate(VOCAB)}


def encode(words: str) -> np.ndarray:
    return np.array([IDS[w] for w in ["[CLS]", *words.split(), "[SEP]"]], np.int32)


def test_replaceable_tokens_are_whole_lowercase_words():
    got = {VOCAB[i] for i in np.flatnonzero(augment.replaceable_tokens(VOCAB))}
    assert got == {"the", "good", "great", "bad", "awful", "bmw", "audi"}   # not 'a', '##s', 'http', 'café', 'Big'


def test_nearest_neighbours_match_a_full_sort():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 6)).astype(np.float32)
    candidates = rng.random(40) < 0.6
    table = augment.nearest_neighbours(emb, candidates, k=4, chunk=5)    # several chunks
    ids = np.flatnonzero(candidates)
    unit = emb[ids] / np.linalg.norm(emb[ids], axis=1, keepdims=True)
    for row, token in enumerate(ids):
        sims = unit @ unit[row]
        order = [ids[j] for j in np.argsort(-sims, kind="stable") if ids[j] != token]
        np.testing.assert_array_equal(table[token], order[:4])
    assert (table[~candidates] == -1).all()


def neighbour_table() -> np.ndarray:
    table = np.full((len(VOCAB), 1), -1, np.int32)
    for a, b in (("good", "great"), ("great", "good"), ("bad", "awful"), ("awful", "bad"),
                 ("the", "a"), ("bmw", "audi"), ("audi", "bmw")):
        table[IDS[a], 0] = IDS[b]
    return table


def test_replace_words_swaps_whole_words_only():
    ids = encode("the bmw good ##s ! @ user http awful")      # 'good' is followed by '##s': one word 'goods'
    continuation = augment.continuation_tokens(VOCAB)
    rng = np.random.default_rng(1)
    every = augment.replace_words(ids, neighbour_table(), continuation, rng, rate=1.0)
    np.testing.assert_array_equal(every, encode("a audi good ##s ! @ user http bad"))
    none = augment.replace_words(ids, neighbour_table(), continuation, rng, rate=0.0)
    np.testing.assert_array_equal(none, ids)


def test_replace_words_rate_is_the_share_replaced():
    ids = encode(" ".join(["good"] * 2000))
    copy = augment.replace_words(ids, neighbour_table(), augment.continuation_tokens(VOCAB),
                                 np.random.default_rng(2), rate=0.3)
    share = np.mean(copy[1:-1] == IDS["great"])
    assert 0.27 < share < 0.33
    assert copy[0] == IDS["[CLS]"] and copy[-1] == IDS["[SEP]"]


def test_a_copy_reads_as_its_tweet_with_the_swapped_words_for_vader():
    """What distill.py --lexicon-stack gives VADER for a copy: the same words, swapped ones
    changed, '##' pieces joined, no [CLS] / [SEP] / [PAD]."""
    ids = np.concatenate([encode("the bmw good ##s ! @ user http awful"), [IDS["[PAD]"]] * 3])
    copy = augment.replace_words(ids, neighbour_table(), augment.continuation_tokens(VOCAB),
                                 np.random.default_rng(1), rate=1.0)
    assert augment.detokenize(ids, VOCAB) == "the bmw goods ! @ user http awful"
    assert augment.detokenize(copy, VOCAB) == "a audi goods ! @ user http bad"
