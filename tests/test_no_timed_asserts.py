"""CI rule: no test asserts a duration.

A wall-clock bound fails on a slower or busier machine while the code is right (speed is what
`npmobilebert bench` measures, and reports with the machine it ran on).  This scans every test
module's syntax tree: an ``assert`` may not read a clock (``time.perf_counter``, ``time.time``,
``time.monotonic``, ``time.process_time`` and their ``_ns`` forms) nor a name computed from one,
directly or through other names (``t0 = perf_counter(); elapsed = perf_counter() - t0``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
CLOCKS = frozenset({"perf_counter", "perf_counter_ns", "time", "time_ns", "monotonic", "monotonic_ns",
                    "process_time", "process_time_ns", "thread_time", "thread_time_ns"})


def _reads_clock(node: ast.AST) -> bool:
    """A call of one of time's clocks: time.perf_counter() or a bare perf_counter() (from-import)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            f = sub.func
            if isinstance(f, ast.Attribute) and f.attr in CLOCKS and isinstance(f.value, ast.Name) \
                    and f.value.id == "time":
                return True
            if isinstance(f, ast.Name) and f.id in CLOCKS - {"time"}:
                return True
    return False


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def timed_asserts(source: str) -> list[int]:
    """Line numbers of the asserts in `source` that depend on a clock reading."""
    tree = ast.parse(source)
    tainted: set[str] = set()
    assignments = [n for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign))]
    changed = True
    while changed:              # names derived from clock readings, through any chain of names
        changed = False
        for a in assignments:
            if a.value is None or not (_reads_clock(a.value) or _names(a.value) & tainted):
                continue
            targets = a.targets if isinstance(a, ast.Assign) else [a.target]
            new = set().union(*(_names(t) for t in targets)) - tainted
            if new:
                tainted |= new
                changed = True
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Assert)
            and (_reads_clock(n.test) or _names(n.test) & tainted)]


def test_the_rule_catches_a_timed_assert():
    timed = ("import time\nt0 = time.perf_counter()\nrun()\nelapsed = time.perf_counter() - t0\n"
             "assert r.returncode == 0\nassert elapsed < 60, 'too slow'\n")
    assert timed_asserts(timed) == [6]
    assert timed_asserts("from time import monotonic\nassert monotonic() > 0\n") == [2]
    assert timed_asserts("seconds = report['seconds']\nassert seconds > 0\n") == []


@pytest.mark.parametrize("module", sorted(TESTS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_test_asserts_a_duration(module: Path):
    lines = timed_asserts(module.read_text())
    assert not lines, (f"{module.name} asserts a duration at line(s) {lines}: a test checks behaviour; "
                       "speed belongs to `npmobilebert bench`")
