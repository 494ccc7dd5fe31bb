"""``diff-runtimes``: where two runtimes' arithmetic first diverges on one input, which rule is
responsible, and how the difference travels to the output.

Both runs are the NumPy interpreter under two numerics profiles (numerics.py), so every
intermediate of both is at hand: the first differing tensor is the op whose rules differ (its
inputs are still identical there), and its prepared ops name the rule each profile used.

    report = diff_runtimes(model, arrays, "litert-ref", "tflm")
    print(format_diff(report))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .compare import compare_runs, difference_pattern
from .errors import escape_text
from .interpreter import Interpreter
from .model import Model
from .numerics import rule_of_source


@dataclass
class Divergence:
    """The first op whose output differs between two profiles."""

    op_index: int
    op_type: str
    tensor: str
    mismatched: int
    size: int
    max_diff: int
    where: str                 # the first differing element, in words
    rule_a: str                # the rule (source) each profile's kernel used
    rule_b: str
    params_a: dict = field(default_factory=dict)
    params_b: dict = field(default_factory=dict)


@dataclass
class RuntimeDiff:
    profile_a: str
    profile_b: str
    tensors_compared: int
    tensors_differing: int
    first: Divergence | None
    # op type -> (tensors differing, tensors of that type); how the difference spread
    spread: dict[str, tuple[int, int]]
    # op indices whose own rule differs AND whose output differs (not only inherited)
    rule_sites: list[int]
    outputs_a: list[np.ndarray]
    outputs_b: list[np.ndarray]


_PARAM_KEYS = ("effective_scale", "output_multiplier", "output_shift", "scale", "multiplier",
               "shift", "a_multiplier", "b_multiplier", "input1_multiplier", "input2_multiplier")


def _params(step) -> dict:
    out = {}
    for k in _PARAM_KEYS:
        if k in step.params:
            v = np.asarray(step.params[k])
            out[k] = v.item() if v.size == 1 else f"{v.size} values, first {v.reshape(-1)[0]}"
    return out


def diff_runtimes(model: Model, arrays, profile_a: str, profile_b: str) -> RuntimeDiff:
    """Run both profiles on one input and compare every tensor."""
    interp_a = Interpreter(model, numerics=profile_a)
    interp_b = Interpreter(model, numerics=profile_b)
    values_a, values_b = interp_a.run_all(arrays), interp_b.run_all(arrays)
    cmp = compare_runs(model, values_a, values_b)
    counts: dict[str, list[int]] = {}
    rule_sites = []
    for step_a, step_b in zip(interp_a.plan, interp_b.plan):
        op = step_a.ctx.op
        differs = any(not np.array_equal(values_a[i], values_b[i]) for i in op.outputs)
        c = counts.setdefault(op.opcode, [0, 0])
        c[0] += int(differs)
        c[1] += 1
        if step_a.rule != step_b.rule:
            # profile a's kernel on profile b's inputs: a difference there is this op's rule alone
            args_b = [None if i < 0 else values_b.get(i, model.tensors[i].data) for i in op.inputs]
            if any(not np.array_equal(o, values_b[i]) for o, i in zip(step_a.run(args_b), op.outputs)):
                rule_sites.append(op.index)
    first = None
    d = cmp.first_divergence
    if d is not None:
        step_a, step_b = interp_a.plan[d.op_index], interp_b.plan[d.op_index]
        where, _ = difference_pattern(values_a[d.index], values_b[d.index])
        where = where.replace("ours", profile_a).replace("theirs", profile_b)
        first = Divergence(d.op_index, d.op_type, d.name, d.mismatched, d.size, d.max_diff, where,
                           step_a.rule, step_b.rule, _params(step_a), _params(step_b))
    outs_a = [values_a[i] for i in model.outputs]
    outs_b = [values_b[i] for i in model.outputs]
    return RuntimeDiff(profile_a, profile_b, cmp.compared, len(cmp.diffs), first,
                       {k: (v[0], v[1]) for k, v in counts.items()}, rule_sites, outs_a, outs_b)


def _label(out: np.ndarray, labels: list[str]) -> str:
    if out.size == 0:
        return "(empty output)"
    k = int(np.argmax(out.reshape(-1)))
    return labels[k] if labels and k < len(labels) else str(k)


def _rule_lines(profile: str, source: str) -> list[str]:
    rule = rule_of_source(source)
    if rule is None:
        return [f"    {profile}: {source}"]
    return [f"    {profile}: rule '{rule.name}': {rule.summary}", f"      mirrors {rule.source}"]


def format_diff(report: RuntimeDiff, model: Model, labels: list[str] | None = None) -> str:
    a, b = report.profile_a, report.profile_b
    lines = [f"{a} vs {b}: {report.tensors_differing} of {report.tensors_compared} tensors differ"]
    first = report.first
    if first is None:
        lines.append("  identical on every tensor for this input")
    else:
        lines += [
            f"  first divergence: op {first.op_index} {first.op_type} -> '{first.tensor}': "
            f"{first.mismatched}/{first.size} values differ, max {first.max_diff} LSB",
            f"    {first.where}",
            "    its inputs are identical in both runs: the op's own rule is responsible",
            *_rule_lines(a, first.rule_a), *_rule_lines(b, first.rule_b)]
        if first.params_a or first.params_b:
            lines.append(f"    {a} params {first.params_a}")
            lines.append(f"    {b} params {first.params_b}")
        sites = report.rule_sites
        lines.append(f"  ops where the rule itself makes a difference (given the same inputs): "
                     f"{len(sites)}" + (f", e.g. {', '.join(str(i) for i in sites[:8])}" if sites else ""))
        lines.append("  how it spread (tensors differing / tensors, by op type):")
        for op_type, (n, total) in sorted(report.spread.items(), key=lambda kv: (-kv[1][0], kv[0])):
            if n:
                lines.append(f"    {op_type:<18} {n}/{total}")
    for out_a, out_b, i in zip(report.outputs_a, report.outputs_b, model.outputs):
        name = model.tensors[i].name
        lines.append(f"  output '{escape_text(name)}': {a} {np.array2string(out_a.reshape(-1), precision=4)}"
                     f"  {b} {np.array2string(out_b.reshape(-1), precision=4)}")
        la, lb = _label(out_a, labels or []), _label(out_b, labels or [])
        lines.append(f"    label: {a} {escape_text(la)}, {b} {escape_text(lb)}" + ("" if la == lb else "  (DIFFERENT)"))
    return "\n".join(lines)
