"""Shared fixtures for the test suite."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
FIXTURES_DIR = TESTS_DIR / "fixtures"

# The helper modules (opmodels.py) live next to the tests; make them importable however pytest
# was started (rootdir, import mode).  opmodels needs LiteRT's schema module, so it is imported
# lazily: without LiteRT the suite still collects, and the tests that need it skip.
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """tests/fixtures: small models and reference data checked into the repository."""
    return FIXTURES_DIR


@pytest.fixture(scope="session")
def litert():
    """The LiteRT interpreter module; the test is skipped where no LiteRT runtime is installed."""
    try:
        return pytest.importorskip("ai_edge_litert.interpreter")
    except pytest.skip.Exception:
        return pytest.importorskip("tflite_runtime.interpreter")


@pytest.fixture(scope="session")
def max_ulp_diff(litert):
    """max_ulp_diff(a, b): the largest distance in units in the last place between two float
    arrays of the same shape and dtype (0 when bit-identical)."""
    from opmodels import max_ulp_diff as fn

    return fn


def pytest_report_header(config):
    try:
        from npmobilebert.runtime import runtime_name

        return f"LiteRT: {runtime_name()}"
    except Exception as e:  # no runtime: say so, the tests that need one skip
        return f"LiteRT: not available ({e})"


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
