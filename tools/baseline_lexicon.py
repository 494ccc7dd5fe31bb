"""A sentiment lexicon as a second reference point: VADER (vaderSentiment, tools only), untrained.

VADER (Hutto & Gilbert, ICWSM 2014) scores general sentiment with a hand-built lexicon and rules
tuned on social-media text (capitals, "!!!", emoticons, negation); it has never seen RepLab. It
shows what each evaluation set measures: TweetEval is general sentiment, RepLab dev is the
reputation polarity of a brand, and a model can be good at one and poor at the other.

Labels from VADER's compound score with its authors' thresholds: >= 0.05 positive, <= -0.05
negative, neutral between. It reads the raw tweet (its rules use capitals and punctuation).

``--stack`` also asks whether the lexicon adds to a model trained on RepLab, with every choice
made on RepLab's train split alone: the model's class scores of each train tweet, out-of-fold
(folds of whole brands, so each train tweet is scored by a model that never saw its brand), then
a logistic regression (balanced class weights) on those 3 columns, and on those plus VADER's 4
scores (neg, neu, pos, compound); each applied to the dev and TweetEval scores of the model
fitted on all of train. The first isolates what the stacking alone changes. The models: the
TF-IDF baseline (log-probabilities, 5 folds, ~3 min on 2 cores) and, with ``--teacher DIR``, the
fine-tuned MiniLM teacher (logits; its out-of-fold runs from ``train_teacher.py --fold K --folds
N`` under DIR, N from ``--teacher-folds``).

    python tools/baseline_lexicon.py [--stack] [--teacher DIR] [--summary docs/lexicon_baseline.json]
    python tools/baseline_lexicon.py --teacher ~/.cache/npmobilebert/train/teacher --summary docs/lexicon_baseline.json
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from baseline_tfidf import SHARED, evaluate, fit_baseline, write_results  # noqa: E402
from split_replab import SPLIT_JSON, apply_split, entity_folds  # noqa: E402

from npmobilebert.classify import read_labelled_tsv  # noqa: E402
from npmobilebert.text import normalize_tweet  # noqa: E402

THRESHOLD = 0.05  # VADER's README: the compound score's neutral band is (-0.05, 0.05)


@functools.cache
def vader():
    """One analyzer per process: it reads its lexicon files when made (distill.py scores every step's copies)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_scores(texts: list[str]) -> np.ndarray:
    """[n_texts] -> [n_texts, 4]: VADER's neg, neu, pos and compound scores."""
    return np.array([[s["neg"], s["neu"], s["pos"], s["compound"]] for s in map(vader().polarity_scores, texts)])


def vader_labels(texts: list[str]) -> list[str]:
    compound = vader_scores(texts)[:, 3]
    return ["positive" if c >= THRESHOLD else "negative" if c <= -THRESHOLD else "neutral" for c in compound]


def fit_stacker(columns: np.ndarray, labels: list[str]):
    """The stacker of ``--stack``: a balanced logistic regression on [n_train, k] score columns."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(class_weight="balanced", max_iter=2000).fit(columns, labels)


def teacher_lexicon_stacker(teacher_dir: Path, texts: list[str], labels: list[str], n_folds: int,
                            protocol: str = "entity"):
    """The teacher stacked with VADER (``--teacher``'s "teacher_stacked_with_vader"), fitted on the
    train split (``texts``, ``labels``), as a function for distillation: (teacher logits [n, 3],
    raw texts [n]) -> its class log-probabilities [n, 3], columns in LABELS order."""
    from polarity_data import LABELS

    out_of_fold, _ = teacher_scores(teacher_dir, len(texts), n_folds, protocol)
    stacker = fit_stacker(np.hstack([out_of_fold, vader_scores(texts)]), labels)
    order = [list(stacker.classes_).index(label) for label in LABELS]

    def log_probabilities(logits: np.ndarray, texts: list[str]) -> np.ndarray:
        return stacker.predict_log_proba(np.hstack([logits, vader_scores(texts)]))[:, order]

    return log_probabilities


def stacked_reports(name: str, out_of_fold: np.ndarray, scores: dict[str, np.ndarray],
                    lexicon: dict[str, np.ndarray], train: list[dict], dev: list[dict], tweeteval: list) -> dict[str, dict]:
    """Reports of the two stackers of one model (see the module docstring): ``out_of_fold`` its
    [n_train, 3] out-of-fold scores, ``scores`` its [n, 3] scores of "replab_dev" and "tweeteval_val",
    ``lexicon`` VADER's [n, 4] of those and of "train"."""
    columns = {"stacked": lambda x, _: x,
               "stacked_with_vader": lambda x, set_name: np.hstack([x, lexicon[set_name]])}
    reports = {}
    for suffix, cols in columns.items():
        stacker = fit_stacker(cols(out_of_fold, "train"), [r["label"] for r in train])
        print(f"\n{name}_{suffix}")
        reports[f"{name}_{suffix}"] = evaluate(
            lambda set_name, _, stacker=stacker, cols=cols: list(stacker.predict(cols(scores[set_name], set_name))),
            dev, tweeteval)
    return reports


def tfidf_scores(train: list[dict], dev: list[dict], tweeteval: list, n_folds: int = 5):
    """The TF-IDF baseline's out-of-fold train log-probabilities and its dev / TweetEval ones."""
    texts = [normalize_tweet(r["text"]) for r in train]
    labels = [r["label"] for r in train]
    out_of_fold = np.zeros((len(train), 3))                                      # [n_train, 3 classes]
    for held_out in entity_folds(train, n_folds):
        fit_rows = np.setdiff1d(np.arange(len(train)), held_out)
        fold = fit_baseline([texts[i] for i in fit_rows], [labels[i] for i in fit_rows])
        out_of_fold[held_out] = fold.predict_log_proba([texts[i] for i in held_out])
    baseline = fit_baseline(texts, labels)
    return out_of_fold, {"replab_dev": baseline.predict_log_proba([normalize_tweet(r["text"]) for r in dev]),
                         "tweeteval_val": baseline.predict_log_proba([normalize_tweet(r.text) for r in tweeteval])}


def teacher_scores(teacher_dir: Path, n_train: int, n_folds: int, protocol: str = "entity"):
    """The teacher's out-of-fold train logits (its --fold runs) and its dev / TweetEval logits.
    Rows follow the same split and fold assignment as train_teacher.py's."""
    from polarity_data import replab_train_folds

    def load(path: Path, made_by: str) -> np.ndarray:
        if not path.is_file():
            sys.exit(f"error: {path} is missing (made by: python tools/train_teacher.py {made_by})")
        return np.load(path)

    out_of_fold = np.full((n_train, 3), np.nan)                                  # [n_train, 3 classes]
    for k, held_out in enumerate(replab_train_folds(n_folds, protocol)):
        out_of_fold[held_out] = load(teacher_dir / f"fold_{k}_of_{n_folds}" / "logits_heldout.npy",
                                     f"--work-dir {teacher_dir} --fold {k} --folds {n_folds}")
    return out_of_fold, {name: load(teacher_dir / f"logits_{stored}.npy", f"--work-dir {teacher_dir}")
                         for name, stored in (("replab_dev", "dev"), ("tweeteval_val", "tweeteval"))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replab", default=str(SHARED / "replab2013/train_en.tsv"))
    ap.add_argument("--tweeteval", default=str(SHARED / "tweeteval/val.tsv"))
    ap.add_argument("--split", default=str(SPLIT_JSON))
    ap.add_argument("--stack", action="store_true", help="also stack the TF-IDF baseline with VADER's scores")
    ap.add_argument("--teacher", type=Path, default=None, help="also stack the teacher of this work dir (implies --stack)")
    ap.add_argument("--teacher-folds", type=int, default=3)
    ap.add_argument("--summary", default=None, help="write the numbers (no text) here, e.g. docs/lexicon_baseline.json")
    args = ap.parse_args(argv)

    _, train, dev = apply_split(args.replab, args.split)
    tweeteval = read_labelled_tsv(args.tweeteval)
    print("VADER sentiment lexicon, untrained (compound score, thresholds +-0.05)")
    reports = evaluate(lambda _, texts: vader_labels(texts), dev, tweeteval)

    from importlib.metadata import version
    doc = {"model": f"VADER sentiment lexicon (vaderSentiment {version('vaderSentiment')}), compound score, "
                    f"thresholds +-{THRESHOLD}, raw tweet text; no training",
           "results": reports}
    if args.stack or args.teacher:
        teacher = teacher_scores(args.teacher, len(train), args.teacher_folds) if args.teacher else None
        doc["stacked"] = {"about": "logistic regression (balanced) on a model's out-of-fold class scores of the "
                                   "RepLab train split (folds of whole brands), alone and with VADER's "
                                   "neg/neu/pos/compound; fitted on the train split only. tfidf: the baseline's "
                                   "log-probabilities, 5 folds; teacher: the MiniLM teacher's logits, "
                                   f"{args.teacher_folds} folds"}
        lexicon = {"train": vader_scores([r["text"] for r in train]),
                   "replab_dev": vader_scores([r["text"] for r in dev]),
                   "tweeteval_val": vader_scores([r.text for r in tweeteval])}
        sets = (lexicon, train, dev, tweeteval)
        doc["stacked"] |= stacked_reports("tfidf", *tfidf_scores(train, dev, tweeteval), *sets)
        if teacher:
            doc["stacked"] |= stacked_reports("teacher", *teacher, *sets)
    if args.summary:
        write_results(doc, [args.summary])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
