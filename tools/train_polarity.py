"""The whole tweet-polarity recipe, one command: split -> teacher -> distil -> convert, evaluate, ship.

Every stage is its own process and resumes from its checkpoints, so rerunning after an
interruption continues where it stopped (a finished stage is skipped: delete its work
directory under ~/.cache/npmobilebert/train/ to redo it). Seeds are fixed.

    python tools/train_polarity.py --install     # ~27 + ~52 + ~62 + ~15 min on 2 CPU cores

Stages and their outputs:
  1. split_replab.py     ~/.cache/npmobilebert/replab2013/{train,dev}.tsv (the committed dev entities)
  2. train_teacher.py    .../train/teacher/ (fine-tuned MiniLM, logits for distillation, metrics)
  3. distill.py          .../train/student_L<layers>/ (MobileBERT student learning the teacher's logits)
  4. distill.py          .../train/student_L<layers>_hidden/ (continues 3, adding the teacher's hidden
                         states: the student that ships)
  5. ship_polarity.py    float32 / float16 / dynamic / int8 / 16x8 .tflite, docs/polarity.json,
                         models/ with --install
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from polarity_data import CACHE  # noqa: E402


def stage(script: str, *args: str) -> None:
    cmd = [sys.executable, str(HERE / script), *args]
    print("==>", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=6, help="student layers (24 = Google's full config)")
    ap.add_argument("--epochs", type=float, default=1.5, help="stage 3's passes over the tweets")
    ap.add_argument("--hidden-epochs", type=float, default=1.2, help="stage 4's passes over the tweets")
    ap.add_argument("--install", action="store_true", help="put the int8 and dynamic models in models/")
    args = ap.parse_args(argv)
    try:
        stage("split_replab.py")
        if not (CACHE / "teacher" / "metrics.json").exists():
            stage("train_teacher.py")
        logits_only = CACHE / f"student_L{args.layers}"
        if not (logits_only / "student.keras").exists():
            stage("distill.py", "--layers", str(args.layers), "--epochs", str(args.epochs),
                  "--work-dir", str(logits_only))
        student = CACHE / f"student_L{args.layers}_hidden"
        if not (student / "student.keras").exists():
            stage("distill.py", "--layers", str(args.layers), "--epochs", str(args.hidden_epochs),
                  "--lr", "3e-4", "--init-from", str(logits_only), "--hidden-weight", "1",
                  "--work-dir", str(student))
        stage("ship_polarity.py", "--student-dir", str(student), *(["--install"] if args.install else []))
    except subprocess.CalledProcessError as e:
        print(f"error: stage {Path(e.cmd[1]).name} failed (exit {e.returncode}); rerun to resume",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
