"""The emulated device: LiteRT's own aarch64 wheels under qemu-user (device.py), checked tensor by
tensor on the host with ``verify --against RUN.npz``.

The slow lane sets the device up (or reuses it: ``npmobilebert device setup``, which needs
Debian's qemu-user-static and mmdebstrap -- installed with apt-get as root -- and the package
archives) and dumps under emulation; it is skipped, with the reason, where that cannot be done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert.interpreter")

FIXTURES = Path(__file__).parent / "fixtures"
TINY = str(FIXTURES / "tiny_int8.tflite")


def cli(*args, env=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "npmobilebert.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_cpuinfo_names_the_core():
    """The /proc/cpuinfo written into a core's root is read back as that core (what LiteRT's
    cpuinfo and the dump's metadata see)."""
    from npmobilebert.device import CORES, cpuinfo_text, this_cpu

    for name, core in CORES.items():
        text = cpuinfo_text(core, 4)
        assert text.count("processor\t:") == 4
        assert f"CPU part\t: 0x{core.part:03x}" in text
        assert this_cpu(text) == name


def test_parse_device():
    from npmobilebert.device import parse_device
    from npmobilebert.errors import InputError

    assert parse_device("aarch64") == ("aarch64", "cortex-a76", None)
    assert parse_device("aarch64:cortex-a72:2.2.0") == ("aarch64", "cortex-a72", "2.2.0")
    for bad in ("riscv64", "aarch64:max", "aarch64:cortex-a76:2.3.0:x", ""):
        with pytest.raises(InputError):
            parse_device(bad)


def test_dump_on_a_device_not_set_up(tmp_path):
    """One line, exit 2, naming the command that sets the device up; nothing written."""
    env = {**os.environ, "NPMOBILEBERT_DEVICE_CACHE": str(tmp_path / "none")}
    out = tmp_path / "run.npz"
    r = cli("dump", "-m", TINY, "--device", "aarch64:cortex-a72", "--random", "1", "--out", str(out),
            env=env, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "npmobilebert device setup --arch aarch64 --cpu cortex-a72" in lines[0]
    assert not out.exists()


# ------------------------------------------------------------------------------------------------
# the slow lane: real emulated runs


@pytest.fixture(scope="module")
def device_ready():
    """Set the aarch64 device up (a no-op when it is), or skip saying why it cannot be."""
    from npmobilebert.device import CORES, cache_dir

    for core in ("cortex-a76", "cortex-a72"):
        r = cli("device", "setup", "--arch", "aarch64", "--cpu", core, timeout=1800)
        if r.returncode != 0:
            pytest.skip(f"the emulated aarch64 device cannot be set up here: {r.stderr.strip()}")
    assert set(CORES) >= {"cortex-a76", "cortex-a72"}
    return cache_dir("aarch64")


def _default_model() -> str:
    from npmobilebert.cli import default_model_path
    return str(default_model_path())


@pytest.mark.slow
@pytest.mark.parametrize("core", ["cortex-a76", "cortex-a72"])
@pytest.mark.parametrize("which", ["tiny_int8", "shipped"])
@pytest.mark.parametrize("resolver,profile", [("ref", "litert-ref"), ("default", "xnnpack-aarch64"),
                                              ("builtin", "builtin-aarch64")])
def test_emulated_dump_verifies(device_ready, tmp_path, core, which, resolver, profile):
    """LiteRT's aarch64 kernels, emulated as a Raspberry Pi 4 / 5 core: the reference resolver is
    identical to the litert-ref profile, the default (XNNPACK) one to xnnpack-aarch64, the
    optimized builtin one to builtin-aarch64, on every tensor of every run; the dump says where it
    ran."""
    model = TINY if which == "tiny_int8" else _default_model()
    out = tmp_path / "run.npz"
    r = cli("dump", "-m", model, "--device", f"aarch64:{core}", "--resolver", resolver,
            "--random", "2", "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    with np.load(out, allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"][()]))
    assert meta["machine"] == "aarch64" and meta["cpu"] == core and f"-cpu {core}" in meta["emulator"]
    assert meta["runtime"].startswith("ai-edge-litert ") and meta["resolver"] == resolver

    report = tmp_path / "report.json"
    r = cli("verify", "-m", model, "--against", str(out), "--json", str(report), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(report.read_text())
    assert data["numerics"] == profile
    assert data["tensors_identical"] == data["tensors_compared"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("version,resolver,profile", [
    ("2.0.3", "default", "xnnpack-aarch64-litert2.0"),   # its delegate drops a BATCH_MATMUL zero point
    ("1.4.0", "builtin", "builtin-aarch64-litert1"),     # its builtin BATCH_MATMUL rounds once
    ("1.2.0", "ref", "tflm"),                             # its reference FC requantizes in fixed point
])
def test_older_litert_versions(device_ready, tmp_path, version, resolver, profile):
    """Older LiteRT versions compute otherwise on the shipped model; verify picks the profile of
    the dump's version, and it reproduces every tensor."""
    r = cli("device", "setup", "--arch", "aarch64", "--cpu", "cortex-a76", "--litert", version, timeout=1800)
    if r.returncode != 0:
        pytest.skip(f"LiteRT {version} cannot be installed on the emulated device: {r.stderr.strip()}")
    model, out = _default_model(), tmp_path / "run.npz"
    r = cli("dump", "-m", model, "--device", f"aarch64:cortex-a76:{version}", "--resolver", resolver,
            "--random", "2", "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    report = tmp_path / "report.json"
    r = cli("verify", "-m", model, "--against", str(out), "--json", str(report), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(report.read_text())
    assert data["runtime"].startswith(f"ai-edge-litert {version}") and data["numerics"] == profile
    assert data["tensors_identical"] == data["tensors_compared"] > 0
    # the current profile of that resolver does not reproduce it: the version's rule is needed
    r = cli("verify", "-m", model, "--against", str(out), "--numerics",
            {"default": "xnnpack-aarch64", "builtin": "builtin-aarch64", "ref": "litert-ref"}[resolver],
            "--json", str(report), timeout=600)
    data = json.loads(report.read_text())
    assert data["tensors_identical"] < data["tensors_compared"]
