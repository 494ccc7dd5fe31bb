"""TF-IDF + logistic regression baseline for tweet polarity (scikit-learn: tools only).

Trained on the train part of the committed entity-grouped split of RepLab 2013
(tools/replab_split.json, see tools/split_replab.py), evaluated on its dev part (unseen brands)
and on TweetEval sentiment's validation split, with the package's own metrics
(npmobilebert.metrics), i.e. the numbers ``npmobilebert eval`` prints for a model.

Features: word 1-2-grams and character 2-5-grams (within word boundaries) of the normalised
tweet (npmobilebert.text.normalize_tweet: URLs -> http, @mentions -> @user), sublinear tf;
logistic regression with balanced class weights (macro-F1 is the target).

    python tools/baseline_tfidf.py [--replab TSV] [--tweeteval TSV] [--out JSON] [--summary docs/baseline.json]

The full JSON goes outside the repository by default; --summary writes numbers only (no text).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from split_replab import SPLIT_JSON, apply_split  # noqa: E402

from npmobilebert.classify import read_labelled_tsv  # noqa: E402
from npmobilebert.fileio import save_json  # noqa: E402
from npmobilebert.metrics import classification_report, format_reports  # noqa: E402
from npmobilebert.text import normalize_tweet  # noqa: E402

LABELS = ["negative", "neutral", "positive"]
SHARED = HERE.parents[1] / "shared" / "data"


def fit_baseline(texts: list[str], labels: list[str], C: float = 2.0):
    """The fitted scikit-learn pipeline: train and predict on normalised tweets (normalize_tweet)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    features = FeatureUnion([
        ("word", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=True)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True,
                                 lowercase=True)),
    ])
    clf = make_pipeline(features, LogisticRegression(C=C, class_weight="balanced", max_iter=2000))
    return clf.fit(texts, labels)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replab", default=str(SHARED / "replab2013/train_en.tsv"))
    ap.add_argument("--tweeteval", default=str(SHARED / "tweeteval/val.tsv"))
    ap.add_argument("--split", default=str(SPLIT_JSON))
    ap.add_argument("--out", default=os.path.expanduser("~/.cache/npmobilebert/baseline_tfidf.json"))
    ap.add_argument("--summary", default=None, help="also write a numbers-only summary (e.g. docs/baseline.json)")
    ap.add_argument("--C", type=float, default=2.0, help="inverse regularisation strength")
    args = ap.parse_args(argv)

    _, train, dev = apply_split(args.replab, args.split)
    tweeteval = read_labelled_tsv(args.tweeteval)
    t0 = time.perf_counter()
    clf = fit_baseline([normalize_tweet(r["text"]) for r in train], [r["label"] for r in train], args.C)
    fit_s = time.perf_counter() - t0
    print(f"TF-IDF + logistic regression, trained on {len(train):,} RepLab train-split tweets in {fit_s:.1f} s")
    reports = evaluate(lambda _, texts: list(clf.predict([normalize_tweet(t) for t in texts])), dev, tweeteval)

    import sklearn
    doc = {
        "model": "TF-IDF (word 1-2-grams + char_wb 2-5-grams, sublinear tf, min_df 2) + logistic "
                 f"regression (C={args.C}, balanced class weights), scikit-learn {sklearn.__version__}",
        "train": {"data": "replab2013/train_en.tsv, train part of tools/replab_split.json", "rows": len(train)},
        "results": reports,
    }
    write_results(doc, [args.out] + ([args.summary] if args.summary else []))
    return 0


def evaluate(predict, dev: list[dict], tweeteval: list) -> dict[str, dict]:
    """Reports on the RepLab dev rows and the TweetEval rows, printed side by side;
    ``predict(set_name, raw texts)`` gives their labels ("replab_dev", "tweeteval_val")."""
    sets = {"replab_dev": ([r["text"] for r in dev], [r["label"] for r in dev]),
            "tweeteval_val": ([r.text for r in tweeteval], [r.label for r in tweeteval])}
    reports = {name: classification_report(y, predict(name, x), LABELS) for name, (x, y) in sets.items()}
    print(format_reports(list(reports.values()), list(reports)))
    return reports


def write_results(doc: dict, paths: list[str]) -> None:
    for path in map(Path, paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        save_json(path, doc)
        print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
