"""Stage 2: distil the fine-tuned MiniLM teacher into a MobileBERT student.

There is no pretrained MobileBERT on this machine, so the student starts from
build_mobilebert's scaled random init (activations O(1) through every layer, see
``init_trained_like``) with one borrowed piece of knowledge: its 128-wide word embeddings are
the teacher's pretrained 384-wide word embeddings projected on their first 128 principal
components (scaled to unit variance). It then learns from the teacher's logits (train_teacher.py
wrote them) on the RepLab train split plus the 140k unlabeled tweets:

    loss = T^2 * KL(softmax(teacher / T) || softmax(student / T))      every tweet
         + CE(student, gold label)                                    labelled tweets only

With ``--hidden-weight`` > 0 the student also learns the teacher's hidden states, TinyBERT's
intermediate-layer loss: 3 numbers per tweet from the logits tell a student from scratch little
about language, 384 per token per layer tell it much more (``HiddenStateDistillation``).

With ``--relation-weight`` > 0 the student also learns, layer by layer, how the teacher's
tokens relate: MiniLMv2's query-query, key-key and value-value self-attention relations
(``AttentionRelationDistillation``), which need no matching head count or width.

With ``--augment N`` the pool also holds N word-replaced copies of every labelled tweet
(augment.py, TinyBERT's task-data augmentation): more text like RepLab's, which the unlabeled
tweets are not. Copies have no gold label; their teacher logits come from the teacher running
alongside (bfloat16), the originals' from train_teacher.py's float32 ones.

Measured (float macro-F1, RepLab dev / TweetEval; 2 vCPUs):
  two stages, logits then + hidden states (the earlier recipe)             0.499 / 0.493  114 min
  one stage, hidden from the start, --augment 5 --unlabeled-limit 100000
    --epochs 2 (12,124 steps)                                             0.503 / 0.489   86 min
  the same + --relation-weight 1 (train_polarity.py --lexicon-stack 0)    0.534 / 0.489  93-136 min
  the recipe's student + 2 more passes at lr 2.5e-4 (--init-from)         0.534 / 0.495  ~110 min
More RepLab-like text did not close the gap to the teacher on unseen brands (0.561); learning
where the teacher's tokens look did, on RepLab (+3.1 points), not on TweetEval; training twice
as long moved TweetEval by a noise-sized 0.6 and RepLab dev not at all. Not in the recipe.

With several ``--teacher-dir`` the student learns from an ensemble of fine-tuning seeds: the
mean of their stored logits (the word-replaced copies are labelled by all of them on the fly);
hidden states and attention relations come from the first, or from every one with
``--states-from all`` (the losses averaged, each teacher with its own hidden-state maps).
Teachers, macro-F1 dev / TweetEval: seed 0 0.561 / 0.508, seed 1 0.552 / 0.543, seed 2 0.541 /
0.536; mean of seeds 0-1 0.562 / 0.535, of all three 0.561 / 0.537 (metrics.json records the
teacher a student had). Students of an ensemble (float):
  the recipe with seeds 0-1's logits, states from seed 0                   0.527 / 0.486
  the recipe's student + 1 pass, lr 2.5e-4, seeds 0-1, --states-from all
    (6,062 steps, 79 min at 1.3 steps/s)                                   0.513 / 0.494
  the recipe with all three seeds' logits, states from seed 0
    (train_polarity.py --teachers 3; 12,124 steps, 113 min at 1.8 steps/s) 0.524 / 0.500
None inherits the ensemble's TweetEval gain in full, and each loses RepLab dev.

With ``--lexicon-stack FOLDS`` the student learns the teacher stacked with the VADER lexicon
(baseline_lexicon.py --teacher: a balanced logistic regression on the teacher's out-of-fold
logits of the train split, from train_teacher.py --fold K --folds FOLDS, and VADER's 4 scores;
0.556 / 0.546 dev / TweetEval macro-F1, the teacher alone 0.561 / 0.508): its
log-probabilities, with the train prior put back so that the usual prior correction applies,
stand where the teacher's logits did. VADER reads the raw tweet; for a word-replaced copy it
reads the copy's WordPiece ids decoded back to (lower-case) text. Measured (float, dev /
TweetEval; train_polarity.py --lexicon-stack 3, 12,124 steps, 111 min at 1.8 steps/s):
0.543 / 0.530, against 0.534 / 0.489 without the stack -- the first student to keep most of a
teacher's TweetEval gain (the ensembles' students above kept none of theirs). The shipped
student; train_polarity.py's default (--lexicon-stack 3).

``--general`` is TinyBERT's general distillation: the student learns only the hidden states
and attention relations of the *pretrained* MiniLM (not fine-tuned), on the training and
unlabeled tweets, with no logits or labels; a task run then starts from it (``--init-from``)
instead of from the init. Measured (float, dev / TweetEval):
  --general, 1 pass over the 155k tweets (4,857 steps, 51 min at 1.6 steps/s),
    then the recipe's task stage from it (12,124 steps, ~100 min at 2.0 steps/s)  0.538 / 0.486
Its training loss stays below the recipe's at equal steps (step 1,000: 1.01 vs 1.32; 6,300:
0.62 vs 0.71), dev gains 0.4 points, TweetEval none (mid-run checkpoints: 0.459 at step 4,000,
0.503 at 9,000, 0.486 at the end): pretrained MiniLM states alone do not carry general sentiment
into the student. Not in the recipe.

After training, -log(train class prior) is added to the classifier bias: the same balanced
decision rule the teacher is evaluated with (trainlib.prior_correction).

The student is trained with the very attention-mask constant it is converted with
(``mask_value``, -20 by default, see build_mobilebert.py), so masking needs no change
between float training and int8 deployment. Outputs under --work-dir:

  checkpoint.pt     resumable (every --save-every steps)
  student.keras     the trained weights in build_mobilebert's Keras model (batch 1, seq 64),
                    checked against the torch logits
  metrics.json      float (torch) dev / TweetEval reports, timing, config

    python tools/distill.py --layers 24             # Google's full configuration
    python tools/distill.py --layers 6              # a smaller one
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import polarity_data as data  # noqa: E402
import augment  # noqa: E402
from baseline_lexicon import teacher_lexicon_stacker  # noqa: E402
import trainlib  # noqa: E402
from torch_mobilebert import TorchMobileBert, from_keras, to_keras  # noqa: E402  (first: see there)
from train_teacher import load_finetuned, load_teacher  # noqa: E402
from build_mobilebert import MobileBertConfig, build_trained_like  # noqa: E402

from npmobilebert.fileio import save_json  # noqa: E402


def teacher_word_embeddings() -> np.ndarray:
    """The pretrained MiniLM's word embeddings: float32 [vocab, 384]."""
    from safetensors.numpy import load_file
    tensors = load_file(str(data.minilm_dir() / "model.safetensors"))
    (key,) = [k for k in tensors if k.endswith("word_embeddings.weight")]
    return tensors[key]


def teacher_word_embeddings_pca(dim: int) -> np.ndarray:
    """The pretrained MiniLM's word embeddings [vocab, 384] -> [vocab, dim] on their top principal
    components, scaled to unit standard deviation overall."""
    emb = teacher_word_embeddings().astype(np.float64)          # [vocab, 384]
    centred = emb - emb.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)      # rows of vt: principal axes
    projected = centred @ vt[:dim].T                            # [vocab, dim]
    return (projected / projected.std()).astype(np.float32)


def init_student(cfg: MobileBertConfig, seed: int) -> TorchMobileBert:
    student = TorchMobileBert(cfg)
    weights = from_keras(build_trained_like(cfg, seed))
    weights["word_embeddings"] = [teacher_word_embeddings_pca(cfg.embedding_size)]
    student.load_keras_weights(weights)
    return student


def pad_for_student(ids: list[np.ndarray], seq_len: int):
    """Pad to the longest + 1 (capped at seq_len): every text is followed by a [PAD], as in the
    converted model, so the trigram embedding of its last token is the same."""
    input_ids, mask = data.pad_batch(ids, min(seq_len, max(len(x) for x in ids) + 1))
    return torch.from_numpy(input_ids), torch.from_numpy(mask)


def distillation_loss(student_logits, teacher_logits, gold, temperature: float):
    """T^2 KL(teacher_T || student_T) on every row + CE on rows with a gold label (>= 0)."""
    t = temperature
    kd = torch.nn.functional.kl_div(torch.log_softmax(student_logits / t, -1),
                                    torch.log_softmax(teacher_logits / t, -1),
                                    log_target=True, reduction="batchmean") * t * t
    has_gold = gold >= 0
    if has_gold.any():
        kd = kd + torch.nn.functional.cross_entropy(student_logits[has_gold], gold[has_gold]) \
            * has_gold.float().mean()
    return kd


def layer_pairs(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """(student layer j, teacher layer j * L_t / L_s) wherever that is a whole number, layers
    counted from 1: the uniform mapping (all 6 for a 6-layer student, every 4th of 24)."""
    return [(j, j * teacher_layers // student_layers) for j in range(1, student_layers + 1)
            if (j * teacher_layers) % student_layers == 0]


class HiddenStateDistillation(torch.nn.Module):
    """TinyBERT's intermediate-layer loss (Jiao et al. 2020): student hidden states regress onto
    the teacher's through learned linear maps [H_student -> H_teacher]. Embedding outputs pair
    with embedding outputs, layers as ``layer_pairs``. Each pair's squared error over real tokens
    is divided by the teacher state's mean square, so every layer counts the same whatever its
    scale."""

    def __init__(self, student_layers: int, teacher_layers: int, student_width: int, teacher_width: int):
        super().__init__()
        self.pairs = [(0, 0)] + layer_pairs(student_layers, teacher_layers)
        self.maps = torch.nn.ModuleList(torch.nn.Linear(student_width, teacher_width) for _ in self.pairs)

    def forward(self, student_states, teacher_states, mask) -> torch.Tensor:
        """lists of [b, s, H_student] / [b, s, H_teacher], mask [b, s] (1 real) -> scalar loss."""
        real = mask.unsqueeze(-1).float()                             # [b, s, 1]
        total = 0.0
        for (i, j), proj in zip(self.pairs, self.maps):
            target = teacher_states[j].float()
            err = ((proj(student_states[i]) - target) ** 2 * real).sum()
            total = total + err / (target ** 2 * real).sum()
        return total / len(self.pairs)


def self_relations(x: torch.Tensor, heads: int, key_mask_add: torch.Tensor) -> torch.Tensor:
    """[b, s, D] -> log softmax(x_r x_r^T / sqrt(D / heads)) per relation head r: [b, heads, s, s]."""
    b, s, d = x.shape
    xr = x.float().view(b, s, heads, d // heads).transpose(1, 2)          # [b, heads, s, D/heads]
    scores = xr @ xr.transpose(-1, -2) / math.sqrt(d // heads) + key_mask_add
    return torch.log_softmax(scores, -1)


class AttentionRelationDistillation:
    """MiniLMv2's self-attention relation loss (Wang et al. 2021): for each paired layer, the
    scaled dot products of the queries with the queries, the keys with the keys and the values
    with the values, split into the same number of relation heads for both models (so the
    student's 4 attention heads of 32 and the teacher's 12 of 32 need not match) and softmaxed
    over keys; the student's rows learn the teacher's by KL over the real query tokens. It tells
    the student *where* each token looks, which a student from a random init must otherwise
    discover from 3 logits and the hidden states alone. Layers pair as ``layer_pairs``."""

    def __init__(self, student_layers: int, teacher_layers: int, heads: int):
        self.heads = heads
        self.pairs = layer_pairs(student_layers, teacher_layers)

    def __call__(self, student_qkv, teacher_qkv, mask) -> torch.Tensor:
        """student: per layer 3 x [b, s, B]; teacher: {(layer, q|k|v): [b, s, H_teacher]}; mask [b, s]
        -> scalar loss."""
        real = mask.float()                                                 # [b, s]
        key_mask_add = ((1.0 - real) * -1e4)[:, None, None, :]             # padding is no relation
        rows = real.sum() * self.heads                                      # real query rows
        total = 0.0
        for i, j in self.pairs:
            for kind, s_x in enumerate(student_qkv[i - 1]):
                t_x = teacher_qkv[j - 1, kind]
                t_log = self_relations(t_x, self.heads, key_mask_add).detach()
                s_log = self_relations(s_x, self.heads, key_mask_add)
                kl = (t_log.exp() * (t_log - s_log)).sum(-1)                # [b, heads, s]
                total = total + (kl * real[:, None, :]).sum() / rows
        return total / (3 * len(self.pairs))


def capture_teacher_qkv(teacher_model) -> dict[tuple[int, int], torch.Tensor]:
    """Forward hooks on the teacher's query/key/value projections: after each forward the returned
    dict maps (layer, 0|1|2 for q|k|v) to that projection's output [b, s, H] (the caller empties
    it). Keyed by module, not call order, which differs between transformers' attention classes."""
    captured: dict[tuple[int, int], torch.Tensor] = {}
    for i, layer in enumerate(teacher_model.base_model.encoder.layer):
        attn = layer.attention.self
        for kind, proj in enumerate((attn.query, attn.key, attn.value)):
            proj.register_forward_hook(lambda module, inputs, output, key=(i, kind): captured.__setitem__(key, output))
    return captured


def hidden_maps_name(k: int) -> str:
    """Checkpoint key of the hidden-state maps onto teacher k: the first keeps the name runs with
    one teacher saved."""
    return "hidden_maps" if k == 0 else f"hidden_maps_{k + 1}"


def load_earlier_run(work: Path, student: TorchMobileBert, hidden: list[HiddenStateDistillation]) -> int:
    """Load the student (and, when both runs learn hidden states, the learned maps) from an earlier
    run's checkpoint; a logits-only run saved the bare student, a hidden-state run saved
    {"student.*", "hidden_maps.*"} (and "hidden_maps_K.*" per further teacher). Maps onto a
    teacher the earlier run did not have start as a copy of those onto its first teacher: the
    teachers are fine-tunings of one pretrained model, their hidden spaces nearly the same.
    Returns the steps that run took."""
    earlier = torch.load(work / "checkpoint.pt", map_location="cpu", weights_only=False)
    parts: dict[str, dict] = {}
    for key, value in earlier["model"].items():
        part, _, rest = key.partition(".")
        if part == "student" or part.startswith("hidden_maps"):
            parts.setdefault(part, {})[rest] = value
        else:
            parts.setdefault("student", {})[key] = value
    student.load_state_dict(parts["student"])
    if "hidden_maps" in parts:
        for k, maps in enumerate(hidden):
            maps.load_state_dict(parts.get(hidden_maps_name(k), parts["hidden_maps"]))
    return earlier["step"]


def teacher_summary(teacher_dirs: list[Path], train_labels: np.ndarray, prior_tau: float,
                    eval_sets: dict[str, data.TokenSet]) -> dict:
    """What the student learned from, scored like it: the (mean) teacher logits on dev and
    TweetEval with the same decision rule; size and parameters of all its members together."""
    members = [json.loads((Path(d) / "metrics.json").read_text()) for d in teacher_dirs]
    correction = trainlib.prior_correction(train_labels, prior_tau)
    out = {"dirs": [str(d) for d in teacher_dirs], "params": sum(m["params"] for m in members),
           "float32_mb": sum(m["float32_mb"] for m in members)}
    for name, items in eval_sets.items():
        out[name] = trainlib.report(trainlib.ensemble_logits(teacher_dirs, name) + correction, items)
    return out


def main(argv=None) -> int:
    d = MobileBertConfig()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work-dir", type=Path, default=None,
                    help="default ~/.cache/npmobilebert/train/student_L<layers>")
    ap.add_argument("--teacher-dir", type=Path, action="append",
                    help="a finished train_teacher.py run (default ~/.cache/npmobilebert/train/teacher); "
                         "repeat for an ensemble: the logits are averaged, hidden states and attention "
                         "relations come from the first (or all: --states-from)")
    ap.add_argument("--states-from", choices=("first", "all"), default="first",
                    help="with several teachers: learn the hidden states and attention relations of the "
                         "first only, or of every one (the losses averaged; a forward pass each per step)")
    ap.add_argument("--layers", type=int, default=d.num_layers)
    ap.add_argument("--epochs", type=float, default=1.0, help="passes over train + unlabeled")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--unlabeled-limit", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--prior-tau", type=float, default=1.0,
                    help="add -tau*log(train prior) to the classifier bias after training (0: none)")
    ap.add_argument("--init-from", type=Path, default=None,
                    help="start from the student of an earlier run (its --work-dir) instead of the init")
    ap.add_argument("--hidden-weight", type=float, default=0.0,
                    help="weight of the hidden-state loss against the teacher (0: logits only)")
    ap.add_argument("--relation-weight", type=float, default=0.0,
                    help="weight of MiniLMv2's Q-Q/K-K/V-V attention-relation loss (0: none)")
    ap.add_argument("--relation-heads", type=int, default=4)
    ap.add_argument("--augment", type=int, default=0,
                    help="word-replaced copies of each labelled tweet, labelled by the teacher on the fly "
                         "(augment.py; 0: none)")
    ap.add_argument("--augment-rate", type=float, default=0.3, help="share of whole words a copy replaces")
    ap.add_argument("--lexicon-stack", type=int, default=0, metavar="FOLDS",
                    help="learn the teacher stacked with VADER (baseline_lexicon.py), fitted on the scores of "
                         "its FOLDS out-of-fold runs under the teacher dir (0: the teacher alone)")
    ap.add_argument("--general", action="store_true",
                    help="general distillation: learn only the *pretrained* MiniLM's hidden states and "
                         "attention relations, on the training and unlabeled tweets (no logits, no labels, "
                         "no evaluation); a task run then starts from it with --init-from")
    data.add_data_options(ap)
    args = ap.parse_args(argv)
    if args.general and (args.augment or not (args.hidden_weight > 0 or args.relation_weight > 0)):
        ap.error("--general learns hidden states and/or relations (--hidden-weight, --relation-weight) "
                 "and takes no --augment")
    args.teacher_dir = args.teacher_dir or [data.CACHE / "teacher"]
    if args.lexicon_stack and args.limit:
        ap.error("--limit (a smoke run) does not stack: its teacher has no out-of-fold runs of the full split")
    if args.lexicon_stack and (args.general or len(args.teacher_dir) > 1):
        ap.error("--lexicon-stack stacks one fine-tuned teacher (no --general, one --teacher-dir)")
    trainlib.seed_everything(args.seed)
    trainlib.configure_cpu(args.threads)
    work = args.work_dir or data.CACHE / f"student_L{args.layers}"
    work.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.replace(d, num_layers=args.layers, seq_len=data.SEQ_LEN)

    # -- data: labelled train + unlabeled tweets, each with the teacher's logits
    if not args.general:
        for teacher_dir in args.teacher_dir:
            data.check_teacher_data(teacher_dir, args.split, args.normalize, args.limit)
    train_set, dev_set = (data.first(s, args.limit) for s in data.replab_split(args.split, args.normalize))
    limits = [n for n in (args.unlabeled_limit, args.limit) if n is not None]
    unlabeled = data.unlabeled(min(limits) if limits else None, args.normalize)
    teacher = {name: np.zeros((len(items), 3), np.float32) if args.general
               else trainlib.ensemble_logits(args.teacher_dir, name)
               for name, items in (("train", train_set), ("unlabeled", unlabeled))}
    stacked = None
    if args.lexicon_stack:
        stack = teacher_lexicon_stacker(args.teacher_dir[0], train_set.texts,
                                        [data.LABELS[k] for k in train_set.labels], args.lexicon_stack, args.split)
        log_prior = -trainlib.prior_correction(train_set.labels, args.prior_tau)

        def stacked(logits: np.ndarray, texts: list[str]) -> np.ndarray:
            # The stacker's class-balanced log-probabilities with the train prior put back: the
            # student learns them like a teacher's logits and gets the same prior correction after
            # training, so its corrected argmax aims at the stacker's.
            return (stack(logits, texts) + log_prior).astype(np.float32)

        teacher = {"train": stacked(teacher["train"], train_set.texts),
                   "unlabeled": stacked(teacher["unlabeled"][: len(unlabeled)], unlabeled.texts)}
    # The pool's items: the labelled tweets, then --augment copies of each (made when drawn, from
    # a generator seeded by the item's index: the same copy on every pass and after resuming), then
    # the unlabeled tweets. A copy's teacher logits come from the teacher running alongside.
    n_train, n_copies = len(train_set), args.augment * len(train_set)
    pool_ids = train_set.ids + [None] * n_copies + unlabeled.ids
    pool_teacher = torch.from_numpy(np.concatenate([teacher["train"], np.zeros((n_copies, 3), np.float32),
                                                    teacher["unlabeled"][: len(unlabeled)]]))
    pool_gold = torch.from_numpy(np.concatenate([train_set.labels, np.full(n_copies + len(unlabeled), -1)]))
    print(f"pool: {n_train} labelled + {n_copies} word-replaced copies + {len(unlabeled)} unlabeled tweets; "
          f"student {cfg.num_layers} layers")
    if n_copies:
        vocab = data.vocab_path().read_text(encoding="utf-8").splitlines()
        neighbours = augment.nearest_neighbours(teacher_word_embeddings(), augment.replaceable_tokens(vocab), k=8)
        continuation = augment.continuation_tokens(vocab)

    def item_ids(i: int) -> np.ndarray:
        if pool_ids[i] is not None:
            return pool_ids[i]
        rng = np.random.default_rng([args.seed, i])
        return augment.replace_words(train_set.ids[(i - n_train) % n_train], neighbours, continuation, rng,
                                     args.augment_rate)

    student = init_student(cfg, args.seed)
    # Teachers that run alongside: those the hidden-state and relation losses learn from (the first,
    # or all with --states-from all), and the rest of an ensemble only to label the word-replaced
    # copies (their stored logits cover the other items).
    learn_states = args.hidden_weight > 0 or args.relation_weight > 0
    n_state = len(args.teacher_dir) if learn_states and args.states_from == "all" else 1
    if args.general:
        state_teachers = [load_teacher().eval()]   # its new classifier head is never used
    else:
        state_teachers = [load_finetuned(d) for d in args.teacher_dir[:n_state]] if learn_states or n_copies else []
    label_teachers = [load_finetuned(d) for d in args.teacher_dir[n_state:]] if n_copies else []
    trained, hidden, relations, teacher_qkv = student, [], None, []
    if args.relation_weight > 0:
        relations = AttentionRelationDistillation(cfg.num_layers, state_teachers[0].config.num_hidden_layers,
                                                  args.relation_heads)
        teacher_qkv = [capture_teacher_qkv(t) for t in state_teachers]
    if args.hidden_weight > 0:
        t_cfg = state_teachers[0].config
        hidden = [HiddenStateDistillation(cfg.num_layers, t_cfg.num_hidden_layers, cfg.hidden, t_cfg.hidden_size)
                  for _ in state_teachers]
        # both learn, both checkpointed; the first teacher's maps keep the name earlier runs saved
        trained = torch.nn.ModuleDict({"student": student} | {hidden_maps_name(k): h for k, h in enumerate(hidden)})
    steps_before = 0
    if args.init_from is not None:
        steps_before = load_earlier_run(args.init_from, student, hidden)
        print(f"student starts from {args.init_from} (step {steps_before})")
    opt = torch.optim.AdamW(trained.parameters(), lr=args.lr, weight_decay=0.01)

    def batch_loss(idx):
        ids, mask = pad_for_student([item_ids(i) for i in idx], cfg.seq_len)
        student_qkv = [] if relations is not None else None
        states = student.hidden_states(ids, mask, qkv=student_qkv)
        teacher_logits = pool_teacher[idx]
        copies = torch.from_numpy((idx >= n_train) & (idx < n_train + n_copies))
        for captured in teacher_qkv:
            captured.clear()
        outs = []
        if learn_states or copies.any():
            # bfloat16 (AMX) halves the teacher's forward time; targets to 3 significant digits
            # are far finer than the student's error on them.
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                outs = [t(input_ids=ids, attention_mask=mask, output_hidden_states=bool(hidden))
                        for t in state_teachers]
                if copies.any():
                    copy_logits = sum(out.logits[copies].float() for out in outs)
                    for other in label_teachers:
                        copy_logits += other(input_ids=ids[copies], attention_mask=mask[copies]).logits.float()
                    teacher_logits[copies] = copy_logits / len(args.teacher_dir)
                    if stacked is not None:   # VADER reads what the copy says
                        texts = [augment.detokenize(x, vocab) for x in ids[copies].numpy()]
                        teacher_logits[copies] = torch.from_numpy(stacked(teacher_logits[copies].numpy(), texts))
        loss = 0.0 if args.general else distillation_loss(student.classify(states[-1]), teacher_logits,
                                                          pool_gold[idx], args.temperature)
        if hidden:
            loss = loss + args.hidden_weight * sum(h(states, out.hidden_states, mask)
                                                   for h, out in zip(hidden, outs)) / len(hidden)
        if relations is not None:
            loss = loss + args.relation_weight * sum(relations(student_qkv, captured, mask)
                                                     for captured in teacher_qkv) / len(teacher_qkv)
        return loss

    t0 = time.time()
    steps = trainlib.run_training(trained, opt, n_items=len(pool_ids), batch=args.batch, epochs=args.epochs,
                                  warmup=0.05, seed=args.seed, work=work, save_every=args.save_every,
                                  label=f"student L{cfg.num_layers}", batch_loss=batch_loss, every=100)
    train_s = time.time() - t0
    teachers_used = [data.minilm_dir()] if args.general else args.teacher_dir
    recipe = vars(args) | {"work_dir": str(work), "teacher_dir": [str(d) for d in teachers_used],
                           "init_from": args.init_from and str(args.init_from)}
    if args.general:   # nothing to evaluate: its classifier never learned
        save_json(work / "metrics.json", {"config": cfg.to_dict(), "steps": steps_before + steps, "recipe": recipe,
                                          "train_seconds_this_run": round(train_s, 1)})
        return 0
    # The teacher's balanced decision rule, folded into the classifier bias (so every converted
    # variant carries it); the checkpoint keeps the uncorrected weights.
    correction = trainlib.prior_correction(train_set.labels, args.prior_tau)
    with torch.no_grad():
        student.w("logits", "bias").add_(torch.from_numpy(correction))

    def forward(input_ids, attention_mask):
        # one [PAD] after the longest text, as in training and in the converted model
        ids = torch.nn.functional.pad(input_ids, (0, 1))[:, : cfg.seq_len]
        return student(ids, torch.nn.functional.pad(attention_mask, (0, 1))[:, : cfg.seq_len])

    metrics = {"config": cfg.to_dict(), "steps": steps_before + steps, "prior_correction": correction.tolist(), "recipe": recipe,
        "train_seconds_this_run": round(train_s, 1),
        "params": sum(p.numel() for p in student.parameters())}
    eval_sets = {"dev": dev_set, "tweeteval": data.first(data.tweeteval(args.normalize), args.limit)}
    metrics["teacher"] = teacher_summary(args.teacher_dir, train_set.labels, args.prior_tau, eval_sets)
    if args.lexicon_stack:
        metrics["teacher"]["stacked_with_vader"] = {
            name: trainlib.report(stack(trainlib.ensemble_logits(args.teacher_dir, name), items.texts), items)
            for name, items in eval_sets.items()}
    for name, items in eval_sets.items():
        metrics[name] = trainlib.report(trainlib.predict_logits(forward, items), items)
        print(f"  {name}: macro-F1 {metrics[name]['macro_f1']:.4f}  accuracy {metrics[name]['accuracy']:.4f}"
              f"  (teacher {metrics['teacher'][name]['macro_f1']:.4f})")
    keras_model, gap = to_keras(student, dev_set.ids[:8])
    metrics["keras_vs_torch_max_relative_gap"] = gap
    keras_model.save(work / "student.keras")
    save_json(work / "metrics.json", metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
