"""A sentiment lexicon as a second reference point: VADER (vaderSentiment, tools only), untrained.

VADER (Hutto & Gilbert, ICWSM 2014) scores general sentiment with a hand-built lexicon and rules
tuned on social-media text (capitals, "!!!", emoticons, negation); it has never seen RepLab. It
shows what each evaluation set measures: TweetEval is general sentiment, RepLab dev is the
reputation polarity of a brand, and a model can be good at one and poor at the other.

Labels from VADER's compound score with its authors' thresholds: >= 0.05 positive, <= -0.05
negative, neutral between. It reads the raw tweet (its rules use capitals and punctuation).

    python tools/baseline_lexicon.py [--replab TSV] [--tweeteval TSV] [--summary docs/lexicon_baseline.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from baseline_tfidf import SHARED, evaluate, write_results  # noqa: E402
from split_replab import SPLIT_JSON, apply_split  # noqa: E402

from npmobilebert.classify import read_labelled_tsv  # noqa: E402

THRESHOLD = 0.05  # VADER's README: the compound score's neutral band is (-0.05, 0.05)


def vader_labels(texts: list[str]) -> list[str]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    compound = [analyzer.polarity_scores(t)["compound"] for t in texts]
    return ["positive" if c >= THRESHOLD else "negative" if c <= -THRESHOLD else "neutral" for c in compound]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replab", default=str(SHARED / "replab2013/train_en.tsv"))
    ap.add_argument("--tweeteval", default=str(SHARED / "tweeteval/val.tsv"))
    ap.add_argument("--split", default=str(SPLIT_JSON))
    ap.add_argument("--summary", default=None, help="write the numbers (no text) here, e.g. docs/lexicon_baseline.json")
    args = ap.parse_args(argv)

    _, _, dev = apply_split(args.replab, args.split)
    print("VADER sentiment lexicon, untrained (compound score, thresholds +-0.05)")
    reports = evaluate(vader_labels, dev, read_labelled_tsv(args.tweeteval))

    from importlib.metadata import version
    doc = {"model": f"VADER sentiment lexicon (vaderSentiment {version('vaderSentiment')}), compound score, "
                    f"thresholds +-{THRESHOLD}, raw tweet text; no training",
           "results": reports}
    if args.summary:
        write_results(doc, [args.summary])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
