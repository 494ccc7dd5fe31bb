"""Word-replacement augmentation of the labelled tweets, for distillation (TinyBERT, Jiao et al.
2020, section 3.3: a student learns a task from a teacher far better on many perturbed copies of
the task's texts than on the few originals).

The RepLab training split has 15,664 tweets about 46 brands; the 140k unlabeled tweets are
general TweetEval text. A student distilled mostly on the latter comes close to the teacher on
TweetEval but not on RepLab's unseen brands, so we make more RepLab-like text: each copy of a
labelled tweet has some of its whole words swapped for one of their nearest neighbours in the
teacher's pretrained word-embedding space (TinyBERT used GloVe neighbours for that; the
teacher's own embeddings are what we have). Brand names swap for other brands ("bmw" ->
"audi"), adjectives for adjectives, so the copies stay tweets the teacher reads with confidence
and the student learns what the teacher makes of them -- the copies carry no gold label, only
the teacher's logits, computed on the fly.

Everything works on WordPiece ids: a replaceable token is a whole lower-case alphabetic word
of the vocabulary (not a ``##`` continuation, not followed by one in the tweet).
"""

from __future__ import annotations

import functools

import numpy as np

# What npmobilebert.text puts for URLs and @mentions: kept, so copies stay normalised tweets.
PLACEHOLDERS = ("http", "user")


def replaceable_tokens(vocab: list[str]) -> np.ndarray:
    """[vocab] bool: tokens that are whole alphabetic words (2+ letters; not [CLS], ##ing, 'é',
    nor the normaliser's placeholders)."""
    return np.array([len(t) >= 2 and t.isascii() and t.isalpha() and t.islower() and t not in PLACEHOLDERS
                     for t in vocab])


def continuation_tokens(vocab: list[str]) -> np.ndarray:
    """[vocab] bool: '##' pieces, which continue the word before them."""
    return np.array([t.startswith("##") for t in vocab])


def nearest_neighbours(embeddings: np.ndarray, candidates: np.ndarray, k: int,
                       chunk: int = 2048) -> np.ndarray:
    """[vocab, dim] embeddings, [vocab] bool -> [vocab, k] int32: each candidate token's k most
    cosine-similar other candidates (best first); -1 rows for the tokens that are not candidates."""
    ids = np.flatnonzero(candidates)
    unit = embeddings[ids].astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    table = np.full((len(embeddings), k), -1, np.int32)
    for start in range(0, len(ids), chunk):
        sims = unit[start: start + chunk] @ unit.T                           # [chunk, n_candidates]
        sims[np.arange(len(sims)), np.arange(start, start + len(sims))] = -np.inf   # not itself
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.take_along_axis(-sims, top, axis=1).argsort(axis=1, kind="stable")
        table[ids[start: start + chunk]] = ids[np.take_along_axis(top, order, axis=1)]
    return table


def replace_words(ids: np.ndarray, neighbours: np.ndarray, continuation: np.ndarray,
                  rng: np.random.Generator, rate: float) -> np.ndarray:
    """One augmented copy of a tweet: [n] ids ([CLS] ... [SEP]) -> [n] ids, each whole replaceable
    word swapped with probability ``rate`` for one of its neighbours drawn uniformly."""
    out = ids.copy()
    inner = np.arange(1, len(ids) - 1)                                     # not [CLS] / [SEP]
    whole = (neighbours[ids[inner], 0] >= 0) & ~continuation[ids[inner + 1]]
    chosen = inner[whole & (rng.random(len(inner)) < rate)]
    out[chosen] = neighbours[ids[chosen], rng.integers(neighbours.shape[1], size=len(chosen))]
    return out


def detokenize(ids: np.ndarray, vocab: list[str]) -> str:
    """[n] ids -> the text they spell, lower case: [CLS] / [SEP] / [PAD] dropped, '##' pieces
    joined to the word before them (the tokenizers library's WordPiece decoder, no clean-up of
    spaces). What a word-replaced copy says, for readers of text (VADER)."""
    return _wordpiece_decoder().decode([vocab[i] for i in ids if vocab[i] not in ("[CLS]", "[SEP]", "[PAD]")])


@functools.cache
def _wordpiece_decoder():
    """One decoder per process: distill.py decodes every step's copies."""
    from tokenizers.decoders import WordPiece

    return WordPiece(prefix="##", cleanup=False)
