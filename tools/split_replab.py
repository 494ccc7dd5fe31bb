"""The entity-grouped development split of RepLab 2013's English training tweets.

Dev holds whole entities (brands) that train never sees, so dev measures generalisation to unseen
brands. The split is chosen, deterministically, among seeded random draws:

- per domain (the ``D01``..``D04`` of the entity ids: automotive, banking, universities, music),
  entities are drawn at random until the domain's dev share reaches the target (17.5% of its rows),
  so every domain is in dev;
- of --trials draws, the one whose dev share is nearest the target and whose label proportions
  are nearest train's (sum of absolute differences) is kept.

Only the dev entity ids are committed (``tools/replab_split.json``: ids are not tweet text); the
two TSVs (same columns as the input) are written outside the repository, by default to
``~/.cache/npmobilebert/replab2013/``. With ``--from-json`` the committed split is reapplied
instead of searched for (what the training and baseline tools do).

    python tools/split_replab.py ../shared/data/replab2013/train_en.tsv            # reapply the committed split
    python tools/split_replab.py ../shared/data/replab2013/train_en.tsv --search    # search it again (same result)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from npmobilebert.fileio import atomic_path, save_json

HERE = Path(__file__).resolve().parent
SPLIT_JSON = HERE / "replab_split.json"
DEFAULT_OUT = Path(os.path.expanduser("~/.cache/npmobilebert/replab2013"))
LABELS = ("negative", "neutral", "positive")


def read_rows(path: str | os.PathLike) -> tuple[list[str], list[dict]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = list(reader.fieldnames or [])
        for col in ("entity_id", "label", "text"):
            if col not in header:
                sys.exit(f"error: {path}: no '{col}' column")
        rows = list(reader)
    return header, rows


def domain(entity: str) -> str:
    m = re.search(r"D\d+", entity)
    return m.group(0) if m else "?"


def proportions(counter: Counter) -> list[float]:
    n = sum(counter.values()) or 1
    return [counter[label] / n for label in LABELS]


def search_split(rows: list[dict], seed: int, target: float, trials: int) -> list[str]:
    per_entity: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        per_entity[r["entity_id"]][r["label"]] += 1
    domains: dict[str, list[str]] = defaultdict(list)
    for e in sorted(per_entity):
        domains[domain(e)].append(e)
    total = len(rows)
    rng = random.Random(seed)
    best, best_score = None, float("inf")
    for _ in range(trials):
        dev = []
        for d in sorted(domains):
            ents = domains[d][:]
            rng.shuffle(ents)
            d_total = sum(sum(per_entity[e].values()) for e in ents)
            taken = 0
            for e in ents:
                if taken >= target * d_total:
                    break
                dev.append(e)
                taken += sum(per_entity[e].values())
        dev_counts = sum((per_entity[e] for e in dev), Counter())
        train_counts = sum((per_entity[e] for e in per_entity if e not in dev), Counter())
        share = sum(dev_counts.values()) / total
        label_gap = sum(abs(a - b) for a, b in zip(proportions(dev_counts), proportions(train_counts)))
        score = abs(share - target) + label_gap
        if score < best_score:
            best, best_score = sorted(dev), score
    return best


def entity_folds(rows: list[dict], n_folds: int) -> list[np.ndarray]:
    """The held-out row indices of each of ``n_folds`` folds, whole entities per fold (sklearn's
    GroupKFold: deterministic, folds balanced by rows), for out-of-fold scores of train rows."""
    from sklearn.model_selection import GroupKFold

    groups = [r["entity_id"] for r in rows]
    return [held_out for _, held_out in GroupKFold(n_folds).split(groups, groups=groups)]


def describe(name: str, rows: list[dict]) -> str:
    c = Counter(r["label"] for r in rows)
    n = len(rows) or 1
    return (f"{name:<6} {len(rows):>6} rows, {len({r['entity_id'] for r in rows}):>2} entities: "
            + ", ".join(f"{label} {c[label]} ({c[label] / n:.1%})" for label in LABELS))


def write_tsv(path: Path, header: list[str], rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        # fields as read (QUOTE_NONE): no tabs or newlines inside, written back verbatim
        f.write("\t".join(header) + "\n")
        for r in rows:
            f.write("\t".join(r[h] or "" for h in header) + "\n")


def apply_split(data: str | os.PathLike, split_json: str | os.PathLike = SPLIT_JSON):
    """(header, train rows, dev rows) of the committed split; for other tools."""
    header, rows = read_rows(data)
    dev_ids = set(json.loads(Path(split_json).read_text())["dev_entities"])
    return header, [r for r in rows if r["entity_id"] not in dev_ids], [r for r in rows if r["entity_id"] in dev_ids]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="?", default=str(HERE.parents[1] / "shared/data/replab2013/train_en.tsv"),
                    help="RepLab 2013 train_en.tsv (tweet_id, entity_id, label, text)")
    ap.add_argument("--out-dir", default=str(DEFAULT_OUT), help="where train.tsv and dev.tsv go "
                    "(outside the repository: tweet texts are never committed)")
    ap.add_argument("--search", action="store_true",
                    help=f"search the split again and rewrite {SPLIT_JSON.name} (else reapply it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", type=float, default=0.175, help="dev share of the rows")
    ap.add_argument("--trials", type=int, default=2000)
    args = ap.parse_args(argv)

    header, rows = read_rows(args.data)
    bad = Counter(r["label"] for r in rows if r["label"] not in LABELS)
    if bad:
        sys.exit(f"error: {args.data}: unknown labels {dict(bad)}")
    if args.search or not SPLIT_JSON.exists():
        dev_ids = search_split(rows, args.seed, args.target, args.trials)
    else:
        dev_ids = json.loads(SPLIT_JSON.read_text())["dev_entities"]
        missing = set(dev_ids) - {r["entity_id"] for r in rows}
        if missing:
            sys.exit(f"error: {args.data} has none of the dev entities {sorted(missing)}")
    dev_set = set(dev_ids)
    train = [r for r in rows if r["entity_id"] not in dev_set]
    dev = [r for r in rows if r["entity_id"] in dev_set]
    print(describe("all", rows))
    print(describe("train", train))
    print(describe("dev", dev))
    print(f"dev share: {len(dev) / len(rows):.1%}; dev entities per domain: "
          + ", ".join(f"{d} {n}" for d, n in sorted(Counter(domain(e) for e in dev_ids).items())))

    out = Path(args.out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    write_tsv(out / "train.tsv", header, train)
    write_tsv(out / "dev.tsv", header, dev)
    print(f"wrote {out / 'train.tsv'} and {out / 'dev.tsv'}")

    if args.search or not SPLIT_JSON.exists():
        counts = {name: {label: sum(r["label"] == label for r in part) for label in LABELS} | {"rows": len(part)}
                  for name, part in (("train", train), ("dev", dev))}
        doc = {
            "about": "Entity-grouped dev split of RepLab 2013 polarity, English training tweets "
                     "(train_en.tsv): dev holds whole entities, unseen in train. Made by "
                     "tools/split_replab.py; only entity ids and counts here, never tweet text.",
            "source": "replab2013/train_en.tsv",
            "seed": args.seed, "target_dev_share": args.target, "trials": args.trials,
            "dev_entities": dev_ids,
            "counts": counts,
        }
        save_json(SPLIT_JSON, doc)
        print(f"wrote {SPLIT_JSON}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
