"""What the teacher and the student training loops share: seeds, schedule, resumable
checkpoints, batched inference and dev metrics (torch, CPU).

Checkpoints hold model, optimizer, scheduler, step and the RNG states, written atomically,
so a killed run resumes at its last checkpoint and finishes with the same weights it would
have had uninterrupted (batches are a pure function of (seed, epoch)).
"""

from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from polarity_data import LABELS, TokenSet, length_sorted_batches, pad_batch

from npmobilebert.fileio import atomic_path
from npmobilebert.metrics import classification_report


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def configure_cpu(threads: int | None) -> None:
    torch.set_num_threads(threads or os.cpu_count() or 1)
    # MobileBERT has no LayerNorm: early in training some activations and gradients get tiny,
    # and denormal float arithmetic is ~50x slower on x86 (measured: a 24-layer step 40-80 s
    # instead of 1.8 s). Flushing them to zero changes nothing a float32 model can represent.
    torch.set_flush_denormal(True)


def warmup_linear(optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up to the base LR, then linear decay to 0 (BERT's fine-tuning schedule)."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def epoch_batches(n: int, batch: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Shuffled index batches; a pure function of (seed, epoch) so a resumed run sees the same."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i: i + batch] for i in range(0, n - batch + 1, batch)]   # drop the ragged tail


def save_checkpoint(path: Path, **state) -> None:
    state["rng"] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                    "python": random.getstate()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict | None:
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    return state


def run_training(model, optimizer, *, n_items: int, batch: int, epochs: float, warmup: float,
                 seed: int, work: Path, save_every: int, label: str, batch_loss, every: int = 50) -> int:
    """The loop both stages share: warm-up + linear decay, gradient clipping at 1.0, a checkpoint
    every ``save_every`` steps and at the end, resuming from ``work/checkpoint.pt``.
    ``batch_loss(index_array) -> loss``. -> the number of steps of the schedule."""
    steps = total_steps(n_items, batch, epochs)
    sched = warmup_linear(optimizer, int(warmup * steps), steps)
    start = 0
    state = load_checkpoint(work / "checkpoint.pt")
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = state["step"]
        print(f"resumed at step {start}/{steps}")
    per_epoch = n_items // batch
    progress = Progress(steps, every=every, label=label)
    model.train()
    for step in range(start, steps):
        epoch, k = divmod(step, per_epoch)
        loss = batch_loss(epoch_batches(n_items, batch, seed, epoch)[k])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        sched.step()
        optimizer.zero_grad()
        progress.step(step, loss.item())
        if (step + 1) % save_every == 0 or step + 1 == steps:
            save_checkpoint(work / "checkpoint.pt", model=model.state_dict(),
                            optimizer=optimizer.state_dict(), scheduler=sched.state_dict(), step=step + 1)
    model.eval()
    return steps


@torch.no_grad()
def predict_logits(forward, data: TokenSet, batch: int = 128) -> np.ndarray:
    """``forward(input_ids, attention_mask) -> logits`` over every item. -> float32 [n, labels]."""
    out = None
    for idx in length_sorted_batches([len(x) for x in data.ids], batch):
        ids, mask = pad_batch([data.ids[i] for i in idx])
        logits = forward(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()
        if out is None:
            out = np.zeros((len(data), logits.shape[1]), np.float32)
        out[idx] = logits
    return out


def prior_correction(train_labels: np.ndarray, tau: float = 1.0) -> np.ndarray:
    """-tau * log(class prior of the training labels): added to the logits, it turns the argmax
    from "most probable label" into the balanced-error rule (Menon et al. 2021, "Long-tail
    learning via logit adjustment"), which is what macro-F1 rewards on data where negative
    tweets are 13%. tau = 1 is the rule's own value, fixed before looking at dev. -> [labels]"""
    prior = np.bincount(train_labels, minlength=len(LABELS)) / len(train_labels)
    return (-tau * np.log(prior)).astype(np.float32)


def ensemble_logits(teacher_dirs: list[Path], name: str) -> np.ndarray:
    """The mean of the teachers' stored logits on one set (train_teacher.py's logits_<name>.npy):
    an ensemble of fine-tuning seeds, one teacher when one directory. -> float32 [n, labels]"""
    return np.mean([np.load(Path(d) / f"logits_{name}.npy") for d in teacher_dirs], axis=0, dtype=np.float32)


def report(logits: np.ndarray, data: TokenSet) -> dict:
    predicted = [LABELS[k] for k in logits.argmax(1)]
    gold = [LABELS[k] for k in data.labels]
    return classification_report(gold, predicted, LABELS)


class Progress:
    """One status line every ``every`` steps: step, loss, steps/s, ETA."""

    def __init__(self, total: int, every: int = 50, label: str = ""):
        self.total, self.every, self.label = total, every, label
        self.start, self.first = time.time(), None
        self.losses: list[float] = []

    def step(self, step: int, loss: float) -> None:
        if self.first is None:
            self.first = step
        self.losses.append(loss)
        done = step + 1 - self.first
        if (step + 1) % self.every == 0 or step + 1 == self.total:
            rate = done / max(1e-9, time.time() - self.start)
            eta = (self.total - step - 1) / max(rate, 1e-9)
            print(f"{self.label} step {step + 1}/{self.total}  loss {np.mean(self.losses):.4f}  "
                  f"{rate:.2f} steps/s  eta {eta / 60:.1f} min", flush=True)
            self.losses = []


def total_steps(n_items: int, batch: int, epochs: float) -> int:
    return int(math.floor(n_items / batch) * epochs)
