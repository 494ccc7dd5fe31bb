"""Classification metrics: accuracy, per-class precision / recall / F1, macro-F1, confusion matrix.

Small and dependency-free on purpose (no scikit-learn at runtime). Conventions are scikit-learn's
with ``labels`` given and ``zero_division=0``: a class never predicted has precision 0, a class
absent from the gold labels has recall 0, and an F1 whose precision and recall are both 0 is 0.
Macro-F1 is the unweighted mean of the per-class F1 over every label of the model, whether or
not it occurs in the data.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import escape_text


def confusion_matrix(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """``matrix[i][j]``: how many items of gold class ``labels[i]`` were predicted ``labels[j]``."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    index = {name: k for k, name in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, predicted):
        if g not in index or p not in index:
            raise ValueError(f"label {g if g not in index else p!r} is not one of {list(labels)}")
        matrix[index[g]][index[p]] += 1
    return matrix


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def report_from_confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> dict:
    """Every metric from a confusion matrix (rows gold, columns predicted)."""
    n = len(labels)
    if len(matrix) != n or any(len(row) != n for row in matrix):
        raise ValueError(f"the confusion matrix must be {n}x{n}")
    total = sum(sum(row) for row in matrix)
    correct = sum(matrix[k][k] for k in range(n))
    per_class = {}
    for k, name in enumerate(labels):
        tp = matrix[k][k]
        predicted = sum(matrix[i][k] for i in range(n))
        support = sum(matrix[k])
        precision = _ratio(tp, predicted)
        recall = _ratio(tp, support)
        f1 = _ratio(2 * tp, predicted + support)      # = 2PR/(P+R), and 0 when both are 0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1,
                           "support": support, "predicted": predicted}
    macro_f1 = sum(c["f1"] for c in per_class.values()) / n if n else 0.0
    return {
        "n": total,
        "accuracy": _ratio(correct, total),
        "macro_f1": macro_f1,
        "macro_recall": sum(c["recall"] for c in per_class.values()) / n if n else 0.0,
        "labels": list(labels),
        "per_class": per_class,
        "confusion": [list(map(int, row)) for row in matrix],
    }


def classification_report(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict:
    """accuracy, macro_f1, macro_recall, per_class {label: precision, recall, f1, support,
    predicted}, labels and confusion (rows gold, columns predicted, in ``labels`` order)."""
    return report_from_confusion(confusion_matrix(gold, predicted, labels), labels)


def format_reports(reports: Sequence[dict], names: Sequence[str]) -> str:
    """Several models side by side: the summary metrics, per-class P/R/F1, then each confusion matrix."""
    width = max([12] + [len(name) + 2 for name in names])
    lines = []
    head = f"{'':<22}" + "".join(f"{name:>{width}}" for name in names)
    lines.append(head)
    rows = [("n", lambda r: f"{r['n']:,}"),
            ("accuracy", lambda r: f"{r['accuracy']:.4f}"),
            ("macro-F1", lambda r: f"{r['macro_f1']:.4f}"),
            ("macro-recall", lambda r: f"{r['macro_recall']:.4f}")]
    for title, get in rows:
        lines.append(f"{title:<22}" + "".join(f"{get(r):>{width}}" for r in reports))
    labels = []
    for r in reports:
        labels += [name for name in r["labels"] if name not in labels]
    for name in labels:
        for metric in ("precision", "recall", "f1"):
            cells = [f"{r['per_class'][name][metric]:.4f}" if name in r["per_class"] else "-" for r in reports]
            lines.append(f"{escape_text(name) + ' ' + metric:<22}" + "".join(f"{c:>{width}}" for c in cells))
    for r, name in zip(reports, names):
        lines.append("")
        lines.append(f"confusion matrix of {name} (rows: gold, columns: predicted)")
        shown = [escape_text(lab) for lab in r["labels"]]     # the model's label names
        w = max(9, *(len(lab) + 1 for lab in shown))
        lines.append(f"{'':<{w}}" + "".join(f"{lab:>{w}}" for lab in shown))
        for lab, row in zip(shown, r["confusion"]):
            lines.append(f"{lab:<{w}}" + "".join(f"{v:>{w},}" for v in row))
    return "\n".join(lines)
