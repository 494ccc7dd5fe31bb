"""How sure is a macro-F1 margin? Paired bootstrap of a model against the TF-IDF baseline.

The issue's acceptance compares macro-F1 points on finite sets (3,682 RepLab dev tweets, 2,000
TweetEval ones); this says how much of a margin is the sample. For each set, the shipped model
(or any given with -m) and the TF-IDF + logistic regression baseline (tools/baseline_tfidf.py,
refitted here on the same split: deterministic) label every tweet once; then the same resampled
tweets (with replacement, seeded) score both, so the spread is that of the *difference*, not of
two independent numbers.

    python tools/margin_ci.py [-m MODEL] [--resamples 10000] [--json OUT]

Prints, per set, the margin (model - baseline, macro-F1 points), its bootstrap 95% interval and
the share of resamples where it reaches --target (the issue's 5 points).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from baseline_tfidf import SHARED, fit_baseline  # noqa: E402
from split_replab import apply_split  # noqa: E402

from npmobilebert.classify import ENGINES, predict, read_labelled_tsv  # noqa: E402
from npmobilebert.shipped import default_model_path  # noqa: E402
from npmobilebert.errors import InputError, NpMobileBertError  # noqa: E402
from npmobilebert.fileio import check_writable, save_json  # noqa: E402
from npmobilebert.metrics import report_from_confusion  # noqa: E402
from npmobilebert.text import normalize_tweet  # noqa: E402


def bootstrap_macro_f1(gold: np.ndarray, predicted: np.ndarray, n_classes: int, resamples: np.ndarray) -> np.ndarray:
    """Macro-F1 of each resample: gold, predicted [n] class ids; resamples [r, n] row indices -> [r]."""
    codes = gold * n_classes + predicted                                   # [n] confusion cell
    cells = n_classes * n_classes
    offsets = np.arange(len(resamples))[:, None] * cells                   # one block of cells per resample
    counts = np.bincount((codes[resamples] + offsets).ravel(), minlength=len(resamples) * cells)
    names = [str(k) for k in range(n_classes)]
    return np.array([report_from_confusion(confusion, names)["macro_f1"]
                     for confusion in counts.reshape(len(resamples), n_classes, n_classes).tolist()])


def margin_interval(gold, model_pred, base_pred, n_classes, n_resamples, seed, target, chunk=1000) -> dict:
    """Paired bootstrap of macro-F1(model) - macro-F1(baseline), in points."""
    rng = np.random.default_rng(seed)
    everything = np.arange(len(gold))[None]
    model_f1 = bootstrap_macro_f1(gold, model_pred, n_classes, everything)[0]
    base_f1 = bootstrap_macro_f1(gold, base_pred, n_classes, everything)[0]
    margins = []
    for start in range(0, n_resamples, chunk):
        rows = rng.integers(len(gold), size=(min(chunk, n_resamples - start), len(gold)))
        margins.append(bootstrap_macro_f1(gold, model_pred, n_classes, rows)
                       - bootstrap_macro_f1(gold, base_pred, n_classes, rows))
    margins = np.concatenate(margins) * 100
    low, high = np.percentile(margins, [2.5, 97.5])
    return {"n": len(gold), "model_macro_f1": round(float(model_f1), 4), "baseline_macro_f1": round(float(base_f1), 4),
            "margin_points": round(float(model_f1 - base_f1) * 100, 2),
            "ci95_points": [round(float(low), 2), round(float(high), 2)],
            "share_reaching_target": round(float(np.mean(margins >= target)), 4),
            "resamples": n_resamples, "seed": seed}


def set_margins(model: str, replab: str, tweeteval: str, engine: str, resamples: int, seed: int,
                target: float) -> dict:
    """{set name: margin_interval(...)} for the RepLab dev split and the TweetEval file."""
    _, train, dev = apply_split(replab)
    tweeteval_rows = read_labelled_tsv(tweeteval)
    sets = {"replab_dev": ([r["text"] for r in dev], [r["label"] for r in dev]),
            "tweeteval_val": ([r.text for r in tweeteval_rows], [r.label for r in tweeteval_rows])}
    baseline = fit_baseline([normalize_tweet(r["text"]) for r in train], [r["label"] for r in train])
    results = {}
    for name, (texts, gold) in sets.items():
        model_out = predict(model, texts, engine)
        base_labels = baseline.predict([normalize_tweet(t) for t in texts])
        unknown = (set(map(str, gold)) | set(map(str, base_labels))) - set(model_out.labels)
        if unknown:   # the gold labels, or those the baseline learned from --replab
            raise InputError(f"{name}: labels {sorted(unknown)} are not the model's")
        class_id = {label: k for k, label in enumerate(model_out.labels)}
        results[name] = margin_interval(np.array([class_id[g] for g in gold]), np.argmax(model_out.logits, axis=1),
                                        np.array([class_id[b] for b in base_labels]), len(class_id),
                                        resamples, seed, target)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", default=None, help="the .tflite to test (default: the shipped default)")
    ap.add_argument("--engine", default="litert", choices=ENGINES)
    ap.add_argument("--replab", default=str(SHARED / "replab2013/train_en.tsv"))
    ap.add_argument("--tweeteval", default=str(SHARED / "tweeteval/val.tsv"))
    ap.add_argument("--resamples", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", type=float, default=5.0, help="margin the acceptance asks for, in points")
    ap.add_argument("--json", default=None, help="write the intervals here (numbers only, no text)")
    args = ap.parse_args(argv)
    if args.resamples < 1:
        ap.error("--resamples must be at least 1")
    try:
        model = args.model or str(default_model_path())
        if args.json:
            check_writable(args.json)
        results = set_margins(model, args.replab, args.tweeteval, args.engine, args.resamples, args.seed,
                              args.target)
    except (NpMobileBertError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, r in results.items():
        print(f"{name:14s} n={r['n']:5d}  macro-F1 {r['model_macro_f1']:.3f} vs {r['baseline_macro_f1']:.3f}  "
              f"margin {r['margin_points']:+.2f} points  "
              f"95% CI [{r['ci95_points'][0]:+.2f}, {r['ci95_points'][1]:+.2f}]  "
              f">= {args.target:g} in {r['share_reaching_target']:.1%} of {args.resamples} resamples")
    if args.json:
        save_json(Path(args.json), {"model": Path(model).name, "baseline": "tools/baseline_tfidf.py",
                                    "target_points": args.target, "results": results})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
