"""tools/split_replab.py: the temporal (RepLab protocol) and entity-grouped dev splits.

The checks that need RepLab's tweets read them from ../shared (never copied here; the
NPMOBILEBERT_SHARED_DATA environment variable names another place) and skip where it is absent.
The rules are also checked on made-up rows (ids and labels only), which always run.
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import split_replab  # noqa: E402

SHARED = Path(os.environ.get("NPMOBILEBERT_SHARED_DATA", ROOT.parent / "shared" / "data"))
REPLAB = SHARED / "replab2013" / "train_en.tsv"


def made_up_rows() -> list[dict]:
    """Three entities of 10, 7 and 2 rows, ids shuffled so that file order is not time order."""
    rows = []
    for entity, n in (("RL2013D01E001", 10), ("RL2013D02E002", 7), ("RL2013D03E003", 2)):
        for k in range(n):
            tweet_id = 1000 + (k * 7919) % 97 * 13 + len(rows)       # distinct, out of order
            rows.append({"tweet_id": str(tweet_id), "entity_id": entity,
                         "label": ("positive", "neutral", "negative")[k % 3], "text": "made-up"})
    return rows


def check_temporal(train: list[dict], dev: list[dict], share: float) -> None:
    by_entity: dict[str, dict[str, list[int]]] = defaultdict(lambda: {"train": [], "dev": []})
    for part, rows in (("train", train), ("dev", dev)):
        for r in rows:
            by_entity[r["entity_id"]][part].append(int(r["tweet_id"]))
    for entity, parts in by_entity.items():
        n = len(parts["train"]) + len(parts["dev"])
        assert parts["dev"] and parts["train"], entity
        assert min(parts["dev"]) > max(parts["train"]), entity
        assert abs(len(parts["dev"]) - share * n) <= 1, (entity, len(parts["dev"]), n)


def test_temporal_rule_on_made_up_rows():
    rows = made_up_rows()
    train, dev = split_replab.temporal_split(rows, 0.2)
    check_temporal(train, dev, 0.2)
    assert len(train) + len(dev) == len(rows)
    assert [len([r for r in dev if r["entity_id"] == e]) for e in ("RL2013D01E001", "RL2013D02E002",
                                                                   "RL2013D03E003")] == [2, 1, 1]
    # the digest names the dev rows, not their order
    assert split_replab.dev_ids_digest(dev) == split_replab.dev_ids_digest(dev[::-1])
    assert split_replab.dev_ids_digest(dev) != split_replab.dev_ids_digest(train)


def test_both_splits_write_files_that_coexist(tmp_path):
    paths = {p for protocol in split_replab.PROTOCOLS for p in split_replab.split_files(protocol, tmp_path)}
    assert len(paths) == 4


@pytest.fixture(scope="module")
def replab_rows():
    if not REPLAB.is_file():
        pytest.skip(f"{REPLAB} is absent (shared data, not part of the repository)")
    return split_replab.read_rows(REPLAB)[1]


def test_temporal_split_of_replab(replab_rows):
    train, dev = split_replab.temporal_split(replab_rows)
    check_temporal(train, dev, split_replab.TEMPORAL_SHARE)
    committed = json.loads(split_replab.TEMPORAL_JSON.read_text())
    assert split_replab.dev_ids_digest(dev) == committed["dev_sha256"]
    assert committed["counts"]["dev"]["rows"] == len(dev)
    for entity, rec in committed["per_entity"].items():
        dev_ids = [int(r["tweet_id"]) for r in dev if r["entity_id"] == entity]
        assert min(dev_ids) == int(rec["first_dev_tweet_id"]) and len(dev_ids) == rec["dev"]
    # deterministic: the same rows in another order give the same split
    again_train, again_dev = split_replab.temporal_split(replab_rows[::-1])
    assert split_replab.dev_ids_digest(again_dev) == committed["dev_sha256"]
    assert len(again_train) == len(train)


def test_apply_split_reads_both_protocols(replab_rows):
    for protocol in split_replab.PROTOCOLS:
        _, train, dev = split_replab.apply_split(REPLAB, split_replab.split_json(protocol))
        assert len(train) + len(dev) == len(replab_rows)
        keys = {(r["entity_id"], r["tweet_id"]) for r in train}
        assert not keys & {(r["entity_id"], r["tweet_id"]) for r in dev}
        if protocol == "entity":
            assert not {r["entity_id"] for r in train} & {r["entity_id"] for r in dev}
        else:
            check_temporal(train, dev, split_replab.TEMPORAL_SHARE)


def test_cli_writes_the_temporal_split_outside_the_repo(tmp_path, replab_rows):
    assert split_replab.main([str(REPLAB), "--protocol", "temporal", "--out-dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev_temporal.tsv", "train_temporal.tsv"]
    dev_lines = (tmp_path / "dev_temporal.tsv").read_text(encoding="utf-8").splitlines()
    assert len(dev_lines) - 1 == json.loads(split_replab.TEMPORAL_JSON.read_text())["counts"]["dev"]["rows"]


def test_temporal_folds_slice_every_entity_in_time():
    rows = made_up_rows()
    folds = split_replab.train_folds(rows, 3, "temporal")
    assert sorted(k for f in folds for k in f) == list(range(len(rows)))      # a partition
    for entity in {r["entity_id"] for r in rows if sum(x["entity_id"] == r["entity_id"] for x in rows) >= 3}:
        ids = [[int(rows[k]["tweet_id"]) for k in f if rows[k]["entity_id"] == entity] for f in folds]
        assert all(ids), entity                                                 # every fold has the entity
        assert max(ids[0]) < min(ids[1]) and max(ids[1]) < min(ids[2]), entity   # in time order


def test_training_tools_share_the_data_options(tmp_path):
    import argparse

    import polarity_data

    ap = argparse.ArgumentParser()
    polarity_data.add_data_options(ap)
    args = ap.parse_args(["--split", "temporal", "--normalize", "tweet-v1"])
    assert (args.split, args.normalize) == ("temporal", "tweet-v1")
    assert (ap.parse_args([]).split, ap.parse_args([]).normalize) == ("entity", None)
    with pytest.raises(SystemExit):
        ap.parse_args(["--normalize", "tweet-v9"])
    # a teacher trained on one split is refused for a run on another
    (tmp_path / "metrics.json").write_text(json.dumps({"recipe": {"split": "entity"}}))
    polarity_data.check_teacher_data(tmp_path, "entity", None)
    with pytest.raises(SystemExit, match="--split entity"):
        polarity_data.check_teacher_data(tmp_path, "temporal", None)
    with pytest.raises(SystemExit, match="normalize"):
        polarity_data.check_teacher_data(tmp_path, "entity", "tweet-v1")
    with pytest.raises(SystemExit, match="--limit 48"):     # a smoke-run teacher has other logits
        polarity_data.check_teacher_data(tmp_path, "entity", None, 48)
