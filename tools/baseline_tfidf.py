"""TF-IDF + logistic regression baseline for tweet polarity (scikit-learn: tools only).

Trained on the train part of a committed split of RepLab 2013 (--protocol: ``entity``, whole
brands held out, tools/replab_split.json; ``temporal``, RepLab's protocol, every entity's latest
tweets held out, tools/replab_split_temporal.json; see tools/split_replab.py), evaluated on its dev
part and on TweetEval sentiment's validation split, with the package's own metrics
(npmobilebert.metrics), i.e. the numbers ``npmobilebert eval`` prints for a model.

Features: word 1-2-grams and character 2-5-grams (within word boundaries) of the normalised
tweet (--normalize: ``default`` is npmobilebert.text.normalize_tweet, URLs -> http, @mentions ->
@user; ``tweet-v1`` also emoji, emoticons and hashtags as words), sublinear tf; logistic
regression with balanced class weights (macro-F1 is the target).

    python tools/baseline_tfidf.py [--replab TSV] [--tweeteval TSV] [--out JSON] [--summary docs/baseline.json]
    python tools/baseline_tfidf.py --matrix --summary docs/baseline.json   # both splits x both normalisations

The full JSON goes outside the repository by default; --summary writes numbers only (no text).
With --matrix the summary's "by_split" entry is (re)written and its other entries kept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from split_replab import PROTOCOLS, apply_split, split_json  # noqa: E402

from npmobilebert.classify import read_labelled_tsv  # noqa: E402
from npmobilebert.fileio import save_json  # noqa: E402
from npmobilebert.metrics import classification_report, format_reports  # noqa: E402
from npmobilebert.text import NORMALIZERS, normalizer  # noqa: E402

LABELS = ["negative", "neutral", "positive"]
NORMALIZATIONS = ("default", *NORMALIZERS)
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
    ap.add_argument("--protocol", choices=PROTOCOLS, default="entity",
                    help="which committed split: entity (unseen brands) or temporal (RepLab's protocol)")
    ap.add_argument("--split", default=None, help="a split JSON instead of --protocol's")
    ap.add_argument("--normalize", choices=NORMALIZATIONS, default="default", help="the text normalisation")
    ap.add_argument("--matrix", action="store_true",
                    help="every protocol x normalisation; --summary keeps its other entries, adds \"by_split\"")
    ap.add_argument("--out", default=os.path.expanduser("~/.cache/npmobilebert/baseline_tfidf.json"))
    ap.add_argument("--summary", default=None, help="also write a numbers-only summary (e.g. docs/baseline.json)")
    ap.add_argument("--C", type=float, default=2.0, help="inverse regularisation strength")
    args = ap.parse_args(argv)

    tweeteval = read_labelled_tsv(args.tweeteval)
    if args.matrix:
        by_split = {protocol: {name: run(args, split_json(protocol), protocol, name, tweeteval)
                               for name in NORMALIZATIONS} for protocol in PROTOCOLS}
        doc = {"about": "TF-IDF + logistic regression per RepLab dev split (entity: whole brands held out, "
                        "tools/replab_split.json; temporal: RepLab's protocol, every entity's latest 20% held out, "
                        "tools/replab_split_temporal.json) and text normalisation (default: URLs and @mentions; "
                        "tweet-v1: also emoji, emoticons, hashtags as words); each trained on that split's train part",
               **by_split}
        write_results({"by_split": doc}, [args.out])
        if args.summary:
            summary = Path(args.summary)
            old = json.loads(summary.read_text()) if summary.exists() else {}
            write_results(old | {"by_split": doc}, [args.summary])
        return 0
    doc = run(args, args.split or split_json(args.protocol), args.protocol, args.normalize, tweeteval)
    write_results(doc, [args.out] + ([args.summary] if args.summary else []))
    return 0


def run(args, split: str, protocol: str, normalization: str, tweeteval: list) -> dict:
    """Fit on a split's train part, report on its dev part and TweetEval val."""
    normalize = normalizer(None if normalization == "default" else normalization)
    _, train, dev = apply_split(args.replab, split)
    t0 = time.perf_counter()
    clf = fit_baseline([normalize(r["text"]) for r in train], [r["label"] for r in train], args.C)
    fit_s = time.perf_counter() - t0
    print(f"TF-IDF + logistic regression, {normalization} normalisation, trained on {len(train):,} RepLab "
          f"{protocol}-split train tweets in {fit_s:.1f} s")
    reports = evaluate(lambda _, texts: list(clf.predict([normalize(t) for t in texts])), dev, tweeteval)

    import sklearn
    return {
        "model": "TF-IDF (word 1-2-grams + char_wb 2-5-grams, sublinear tf, min_df 2) + logistic "
                 f"regression (C={args.C}, balanced class weights), scikit-learn {sklearn.__version__}",
        "normalize": normalization,
        "train": {"data": f"replab2013/train_en.tsv, train part of tools/{Path(split).name}", "rows": len(train)},
        "results": reports,
    }


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
