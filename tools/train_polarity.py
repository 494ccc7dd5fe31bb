"""The whole tweet-polarity recipe, one command: split -> teacher -> distil -> convert, evaluate, ship.

Every stage is its own process and resumes from its checkpoints, so rerunning after an
interruption continues where it stopped (a finished stage is skipped: delete its work
directory under ~/.cache/npmobilebert/train/ to redo it). Seeds are fixed.

    python tools/train_polarity.py --install     # ~3.3 hours on 2 CPU cores (below)

--split temporal (RepLab's protocol: every brand's latest tweets as dev) and --normalize tweet-v1
(emoji, emoticons and hashtags as words; the shipped model's metadata names it) go to every stage;
any other choice than the default (entity, none) works under .../train/<split>[_<normalize>]/.
--limit N (with --lexicon-stack 0) runs every stage on the first N tweets of each set: a smoke run
of the whole pipeline in minutes, e.g. before a long run on another machine.

Stages and their outputs:
  1. split_replab.py     ~/.cache/npmobilebert/replab2013/{train,dev}.tsv (the committed dev entities)
  2. train_teacher.py    .../train/teacher/ (fine-tuned MiniLM, logits for distillation, metrics;
                         ~27 min) and its --lexicon-stack N (default 3) out-of-fold runs,
                         teacher/fold_K_of_N/ (~12 min each); with --teachers N (and
                         --lexicon-stack 0) teacher_s1/ ... teacher_s<N-1>/ instead (seeds 1 ...)
  3. distill.py          .../train/student_L<layers>_lex/ (the MobileBERT student: one stage from
                         the init, learning the teacher's logits stacked with the VADER lexicon,
                         its hidden states and attention relations, on the labelled tweets, 5
                         word-replaced copies of each and 100,000 unlabeled tweets, 2 passes;
                         ~115 min); with --lexicon-stack 0 the teacher's own logits, in
                         student_L<layers>/
  4. ship_polarity.py    float32 / float16 / dynamic / int8 / 16x8 .tflite (residual NoNorms and the
                         attention scale folded first), docs/polarity.json, models/ with --install
                         (~20 min)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from polarity_data import CACHE, add_data_options  # noqa: E402

LEXICON_STACK_FOLDS = 3   # the shipped recipe's --lexicon-stack; ship_polarity.py's provenance names any other


def stage(script: str, *args: str) -> None:
    cmd = [sys.executable, str(HERE / script), *args]
    print("==>", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=6, help="student layers (24 = Google's full config)")
    ap.add_argument("--epochs", type=float, default=2.0, help="the student's passes over its tweets")
    ap.add_argument("--teachers", type=int, default=1,
                    help="fine-tune this many teachers (seeds 0, 1, ...) and distil from their mean logits")
    ap.add_argument("--lexicon-stack", type=int, default=LEXICON_STACK_FOLDS, metavar="FOLDS",
                    help="distil the teacher stacked with VADER, fitted on FOLDS out-of-fold teacher runs "
                         "(distill.py --lexicon-stack; 0: the teacher alone)")
    ap.add_argument("--keep-attention-scale", action="store_true",
                    help="leave 1/sqrt(head_dim) an int8 MUL on conversion instead of folding it into the "
                         "query weights (ship_polarity.py)")
    ap.add_argument("--install", action="store_true", help="put the int8 and dynamic models in models/")
    add_data_options(ap)
    args = ap.parse_args(argv)
    # the default split and normalisation keep the work directories they always had
    work = CACHE if (args.split, args.normalize, args.limit) == ("entity", None, None) else \
        CACHE / "_".join([args.split] + ([args.normalize] if args.normalize else [])
                         + ([f"limit{args.limit}"] if args.limit else []))
    if args.limit and (args.lexicon_stack or args.install):
        ap.error("--limit is a smoke run: with --lexicon-stack 0 and without --install")
    data_args = ["--split", args.split, *(["--normalize", args.normalize] if args.normalize else []),
                 *(["--limit", str(args.limit)] if args.limit else [])]
    if args.lexicon_stack and args.teachers > 1:
        ap.error("--lexicon-stack stacks one teacher: --teachers N needs --lexicon-stack 0")
    try:
        stage("split_replab.py", "--protocol", args.split)
        teachers = [work / ("teacher" if seed == 0 else f"teacher_s{seed}") for seed in range(args.teachers)]
        for seed, teacher in enumerate(teachers):
            if not (teacher / "metrics.json").exists():
                stage("train_teacher.py", "--seed", str(seed), "--work-dir", str(teacher), *data_args)
        for k in range(args.lexicon_stack):
            if not (teachers[0] / f"fold_{k}_of_{args.lexicon_stack}" / "metrics.json").exists():
                stage("train_teacher.py", "--work-dir", str(teachers[0]), "--fold", str(k),
                      "--folds", str(args.lexicon_stack), *data_args)
        student = work / (f"student_L{args.layers}" + (f"_t{args.teachers}" if args.teachers > 1 else "")
                           + ("_lex" if args.lexicon_stack else ""))
        if not (student / "student.keras").exists():
            stage("distill.py", "--layers", str(args.layers), "--epochs", str(args.epochs),
                  "--hidden-weight", "1", "--relation-weight", "1", "--augment", "5",
                  "--unlabeled-limit", "100000", "--work-dir", str(student), *data_args,
                  *(["--lexicon-stack", str(args.lexicon_stack)] if args.lexicon_stack else []),
                  *(arg for teacher in teachers for arg in ("--teacher-dir", str(teacher))))
        stage("ship_polarity.py", "--student-dir", str(student),
              *(["--keep-attention-scale"] if args.keep_attention_scale else []),
              *(["--install"] if args.install else []))
    except subprocess.CalledProcessError as e:
        print(f"error: stage {Path(e.cmd[1]).name} failed (exit {e.returncode}); rerun to resume",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
