"""The two development splits of RepLab 2013's English training tweets (``--protocol``).

``temporal`` follows RepLab's own protocol, which is entity-specific: for every entity the
official test tweets come after its training tweets (tweet ids grow with time). Here, within
every entity, its latest tweets (--temporal-share, 20%, rounded) are dev and the rest train, so
every dev tweet id of an entity is larger than every train tweet id of that entity. A tweet that
mentions several entities is one row per entity and may fall on different sides for different
entities, as in RepLab. Committed: ``tools/replab_split_temporal.json`` (per entity the first dev
tweet id and the counts, plus a SHA-256 of the sorted dev (entity, tweet id) pairs; ids are not
text).

``entity`` (the default) asks a harder question: dev holds whole entities (brands) that train never
sees, so dev measures generalisation to unseen brands. The split is chosen, deterministically,
among seeded random draws:

- per domain (the ``D01``..``D04`` of the entity ids: automotive, banking, universities, music),
  entities are drawn at random until the domain's dev share reaches the target (17.5% of its rows),
  so every domain is in dev;
- of --trials draws, the one whose dev share is nearest the target and whose label proportions
  are nearest train's (sum of absolute differences) is kept.

Only the dev entity ids are committed (``tools/replab_split.json``: ids are not tweet text).
Unless --search, the committed split is reapplied instead of searched for (what the training and
baseline tools do).

The two TSVs of a split (same columns as the input) are written outside the repository, by default
to ``~/.cache/npmobilebert/replab2013/``: ``train.tsv``/``dev.tsv`` (entity) and
``train_temporal.tsv``/``dev_temporal.tsv`` (temporal), so both coexist.

    python tools/split_replab.py ../shared/data/replab2013/train_en.tsv            # reapply the committed split
    python tools/split_replab.py ../shared/data/replab2013/train_en.tsv --search    # search it again (same result)
    python tools/split_replab.py ../shared/data/replab2013/train_en.tsv --protocol temporal   # (re)check + write
"""

from __future__ import annotations

import argparse
import csv
import hashlib
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
TEMPORAL_JSON = HERE / "replab_split_temporal.json"
PROTOCOLS = ("entity", "temporal")
TEMPORAL_SHARE = 0.2
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


def temporal_folds(rows: list[dict], n_folds: int) -> list[np.ndarray]:
    """The held-out row indices of ``n_folds`` folds in time: fold k holds the k-th of n_folds
    consecutive slices (by tweet id) of every entity's rows, so each fold has every entity, as the
    temporal dev split has; for out-of-fold scores of a temporal split's train rows."""
    per_entity: dict[str, list[int]] = defaultdict(list)
    for k, r in enumerate(rows):
        per_entity[r["entity_id"]].append(k)
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    for members in per_entity.values():
        members.sort(key=lambda k: int(rows[k]["tweet_id"]))
        for rank, k in enumerate(members):
            folds[rank * n_folds // len(members)].append(k)
    return [np.array(sorted(f), dtype=np.int64) for f in folds]


def train_folds(rows: list[dict], n_folds: int, protocol: str = "entity") -> list[np.ndarray]:
    """Out-of-fold folds of a split's train rows that ask the split's own question: whole brands
    (entity) or every brand's later tweets (temporal)."""
    return temporal_folds(rows, n_folds) if protocol == "temporal" else entity_folds(rows, n_folds)


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


def temporal_split(rows: list[dict], share: float = TEMPORAL_SHARE) -> tuple[list[dict], list[dict]]:
    """(train, dev) rows: within every entity, the round(share * n) rows of largest tweet id are dev
    (at least one row on each side for an entity of two rows or more). Rows keep their input order."""
    per_entity: dict[str, list[int]] = defaultdict(list)
    for k, r in enumerate(rows):
        per_entity[r["entity_id"]].append(k)
    dev_rows: set[int] = set()
    for members in per_entity.values():
        members.sort(key=lambda k: int(rows[k]["tweet_id"]))
        n_dev = min(max(round(share * len(members)), 1), len(members) - 1) if len(members) > 1 else 0
        dev_rows.update(members[len(members) - n_dev:])
    return ([r for k, r in enumerate(rows) if k not in dev_rows],
            [r for k, r in enumerate(rows) if k in dev_rows])


def dev_ids_digest(dev: list[dict]) -> str:
    """SHA-256 of the sorted "entity_id<TAB>tweet_id" lines of the dev rows: what identifies the split."""
    lines = sorted(f"{r['entity_id']}\t{r['tweet_id']}\n" for r in dev)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def temporal_record(train: list[dict], dev: list[dict], share: float) -> dict:
    """The committed description of a temporal split: ids and counts only, never text."""
    entities = sorted({r["entity_id"] for r in train} | {r["entity_id"] for r in dev})
    per_entity = {}
    for e in entities:
        dev_e = [int(r["tweet_id"]) for r in dev if r["entity_id"] == e]
        per_entity[e] = {"train": sum(r["entity_id"] == e for r in train), "dev": len(dev_e),
                         "first_dev_tweet_id": str(min(dev_e)) if dev_e else None}
    counts = {name: {label: sum(r["label"] == label for r in part) for label in LABELS} | {"rows": len(part)}
              for name, part in (("train", train), ("dev", dev))}
    return {
        "about": "Temporal dev split of RepLab 2013 polarity, English training tweets (train_en.tsv), "
                 "RepLab's own protocol: within every entity its latest tweets (largest tweet ids) are dev. "
                 "Made by tools/split_replab.py --protocol temporal; only ids and counts here, never tweet text.",
        "source": "replab2013/train_en.tsv",
        "dev_share_per_entity": share,
        "dev_sha256": dev_ids_digest(dev),
        "per_entity": per_entity,
        "counts": counts,
    }


def apply_split(data: str | os.PathLike, split_json: str | os.PathLike = SPLIT_JSON):
    """(header, train rows, dev rows) of a committed split (entity-grouped or temporal, as the JSON
    says); for other tools. A temporal split that the data no longer reproduces is refused."""
    header, rows = read_rows(data)
    doc = json.loads(Path(split_json).read_text())
    if "dev_entities" in doc:
        dev_ids = set(doc["dev_entities"])
        return header, [r for r in rows if r["entity_id"] not in dev_ids], [r for r in rows if r["entity_id"] in dev_ids]
    train, dev = temporal_split(rows, doc["dev_share_per_entity"])
    if dev_ids_digest(dev) != doc["dev_sha256"]:
        sys.exit(f"error: {data}: its temporal dev split differs from {Path(split_json).name}'s "
                 "(other rows than the committed split's)")
    return header, train, dev


def split_json(protocol: str) -> Path:
    """The committed JSON of a protocol ("entity" or "temporal")."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown split protocol {protocol!r}: one of {', '.join(PROTOCOLS)}")
    return TEMPORAL_JSON if protocol == "temporal" else SPLIT_JSON


def split_files(protocol: str, out_dir: str | os.PathLike = DEFAULT_OUT) -> tuple[Path, Path]:
    """(train.tsv, dev.tsv) paths a protocol's split is written to."""
    suffix = "_temporal" if protocol == "temporal" else ""
    out = Path(out_dir).expanduser()
    return out / f"train{suffix}.tsv", out / f"dev{suffix}.tsv"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="?", default=str(HERE.parents[1] / "shared/data/replab2013/train_en.tsv"),
                    help="RepLab 2013 train_en.tsv (tweet_id, entity_id, label, text)")
    ap.add_argument("--out-dir", default=str(DEFAULT_OUT), help="where train.tsv and dev.tsv go "
                    "(outside the repository: tweet texts are never committed)")
    ap.add_argument("--protocol", choices=PROTOCOLS, default="entity",
                    help="entity: dev holds whole unseen entities; temporal: RepLab's protocol, the latest "
                         "tweets of every entity are dev")
    ap.add_argument("--search", action="store_true",
                    help=f"search the entity split again and rewrite {SPLIT_JSON.name} (else reapply it)")
    ap.add_argument("--temporal-share", type=float, default=TEMPORAL_SHARE,
                    help="dev share of every entity's rows (--protocol temporal)")
    ap.add_argument("--rewrite-json", action="store_true",
                    help=f"--protocol temporal: rewrite {TEMPORAL_JSON.name} (else the split must match it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", type=float, default=0.175, help="dev share of the rows")
    ap.add_argument("--trials", type=int, default=2000)
    args = ap.parse_args(argv)

    header, rows = read_rows(args.data)
    bad = Counter(r["label"] for r in rows if r["label"] not in LABELS)
    if bad:
        sys.exit(f"error: {args.data}: unknown labels {dict(bad)}")
    if args.protocol == "temporal":
        return write_temporal(args, header, rows)
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

    write_split(args.out_dir, "entity", header, train, dev)

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


def write_split(out_dir: str, protocol: str, header: list[str], train: list[dict], dev: list[dict]) -> None:
    train_path, dev_path = split_files(protocol, out_dir)
    train_path.parent.mkdir(parents=True, exist_ok=True)
    write_tsv(train_path, header, train)
    write_tsv(dev_path, header, dev)
    print(f"wrote {train_path} and {dev_path}")


def write_temporal(args, header: list[str], rows: list[dict]) -> int:
    if any(not r.get("tweet_id", "").isdigit() for r in rows):
        sys.exit(f"error: {args.data}: the temporal split needs a numeric 'tweet_id' column")
    train, dev = temporal_split(rows, args.temporal_share)
    record = temporal_record(train, dev, args.temporal_share)
    if not args.rewrite_json and TEMPORAL_JSON.exists():
        committed = json.loads(TEMPORAL_JSON.read_text())
        if committed["dev_sha256"] != record["dev_sha256"]:
            sys.exit(f"error: {args.data}: its temporal dev split differs from the committed "
                     f"{TEMPORAL_JSON.name} (--rewrite-json to replace it)")
    print(describe("all", rows))
    print(describe("train", train))
    print(describe("dev", dev))
    print(f"dev share: {len(dev) / len(rows):.1%}, the latest {args.temporal_share:.0%} of each of "
          f"{len(record['per_entity'])} entities")
    write_split(args.out_dir, "temporal", header, train, dev)
    if args.rewrite_json or not TEMPORAL_JSON.exists():
        save_json(TEMPORAL_JSON, record)
        print(f"wrote {TEMPORAL_JSON}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
