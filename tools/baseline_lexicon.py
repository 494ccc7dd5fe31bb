"""A sentiment lexicon as a second reference point: VADER (vaderSentiment, tools only), untrained.

VADER (Hutto & Gilbert, ICWSM 2014) scores general sentiment with a hand-built lexicon and rules
tuned on social-media text (capitals, "!!!", emoticons, negation); it has never seen RepLab. It
shows what each evaluation set measures: TweetEval is general sentiment, RepLab dev is the
reputation polarity of a brand, and a model can be good at one and poor at the other.

Labels from VADER's compound score with its authors' thresholds: >= 0.05 positive, <= -0.05
negative, neutral between. It reads the raw tweet (its rules use capitals and punctuation).

``--stack`` also asks whether the lexicon adds to a model trained on RepLab, with every choice
made on RepLab's train split alone: the TF-IDF baseline's class log-probabilities, out-of-fold
(5 folds grouped by entity, so each train tweet is scored by a model that never saw its brand),
then a logistic regression (balanced class weights) on those 3 columns, and on those plus
VADER's 4 scores (neg, neu, pos, compound); each scored on dev and TweetEval through the baseline
fitted on all of train. The first isolates what the stacking alone changes. ~3 min on 2 cores.

    python tools/baseline_lexicon.py [--stack] [--replab TSV] [--tweeteval TSV] [--summary docs/lexicon_baseline.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from baseline_tfidf import SHARED, evaluate, fit_baseline, write_results  # noqa: E402
from split_replab import SPLIT_JSON, apply_split  # noqa: E402

from npmobilebert.classify import read_labelled_tsv  # noqa: E402
from npmobilebert.text import normalize_tweet  # noqa: E402

THRESHOLD = 0.05  # VADER's README: the compound score's neutral band is (-0.05, 0.05)


def vader_scores(texts: list[str]) -> np.ndarray:
    """[n_texts] -> [n_texts, 4]: VADER's neg, neu, pos and compound scores."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return np.array([[s["neg"], s["neu"], s["pos"], s["compound"]] for s in map(analyzer.polarity_scores, texts)])


def vader_labels(texts: list[str]) -> list[str]:
    compound = vader_scores(texts)[:, 3]
    return ["positive" if c >= THRESHOLD else "negative" if c <= -THRESHOLD else "neutral" for c in compound]


def stacked_predictors(train: list[dict], folds: int = 5) -> dict:
    """{name: predict(texts) -> labels} for the TF-IDF baseline stacked alone and with VADER's
    scores, every fit on ``train`` (see the module docstring)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    texts = [normalize_tweet(r["text"]) for r in train]
    labels = np.array([r["label"] for r in train])
    out_of_fold = np.zeros((len(train), 3))                                      # [n_train, 3 classes]
    for fit_rows, held_out in GroupKFold(folds).split(texts, labels, [r["entity_id"] for r in train]):
        fold = fit_baseline([texts[i] for i in fit_rows], list(labels[fit_rows]))
        out_of_fold[held_out] = fold.predict_log_proba([texts[i] for i in held_out])
    baseline = fit_baseline(texts, list(labels))
    lexicon = vader_scores([r["text"] for r in train])

    def stacked(with_lexicon: bool):
        columns = (lambda lp, raw: np.hstack([lp, vader_scores(raw)])) if with_lexicon else (lambda lp, raw: lp)
        stacker = LogisticRegression(class_weight="balanced", max_iter=2000)
        stacker.fit(np.hstack([out_of_fold, lexicon]) if with_lexicon else out_of_fold, labels)
        return lambda raw: list(stacker.predict(columns(baseline.predict_log_proba(
            [normalize_tweet(t) for t in raw]), raw)))

    return {"tfidf_stacked": stacked(False), "tfidf_stacked_with_vader": stacked(True)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replab", default=str(SHARED / "replab2013/train_en.tsv"))
    ap.add_argument("--tweeteval", default=str(SHARED / "tweeteval/val.tsv"))
    ap.add_argument("--split", default=str(SPLIT_JSON))
    ap.add_argument("--stack", action="store_true", help="also stack the TF-IDF baseline with VADER's scores")
    ap.add_argument("--summary", default=None, help="write the numbers (no text) here, e.g. docs/lexicon_baseline.json")
    args = ap.parse_args(argv)

    _, train, dev = apply_split(args.replab, args.split)
    tweeteval = read_labelled_tsv(args.tweeteval)
    print("VADER sentiment lexicon, untrained (compound score, thresholds +-0.05)")
    reports = evaluate(vader_labels, dev, tweeteval)

    from importlib.metadata import version
    doc = {"model": f"VADER sentiment lexicon (vaderSentiment {version('vaderSentiment')}), compound score, "
                    f"thresholds +-{THRESHOLD}, raw tweet text; no training",
           "results": reports}
    if args.stack:
        doc["stacked"] = {"about": "logistic regression (balanced) on the TF-IDF baseline's out-of-fold class "
                                   "log-probabilities (5 entity-grouped folds of the RepLab train split), alone "
                                   "and with VADER's neg/neu/pos/compound; all fitted on the train split only"}
        for name, predict in stacked_predictors(train).items():
            print(f"\n{name}")
            doc["stacked"][name] = evaluate(predict, dev, tweeteval)
    if args.summary:
        write_results(doc, [args.summary])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
