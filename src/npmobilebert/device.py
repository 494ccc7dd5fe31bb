"""An emulated device: LiteRT's own aarch64 wheels run under qemu-user on this (x86) machine.

``npmobilebert device setup --arch aarch64 --cpu cortex-a76`` builds, once, in a cache
directory (``~/.cache/npmobilebert/device/aarch64``; ``--cache-dir`` or
``$NPMOBILEBERT_DEVICE_CACHE`` move it)::

    root/                     a Debian arm64 root with python3 and libstdc++6
                              (mmdebstrap --variant=extract: runs nothing under emulation)
    root/opt/litert-VERSION/  aarch64 wheels of numpy, ai-edge-litert==VERSION and the pure-Python
                              dependencies of the device path of ``dump`` (pip --platform --target)
    cpu/CORE/                 the root as the named core sees it: root/ hard-linked, with a
                              proc/cpuinfo of that core, and opt/npmobilebert-SHA/: this
                              package's sources, copied by content hash when a dump needs them
    device.json               what was set up, how long it took, how big it is

``npmobilebert dump --device aarch64:cortex-a76 ...`` then runs the ordinary ``dump`` (the
minimal device install of docs/device.md) inside ``qemu-aarch64-static -cpu cortex-a76 -L
cpu/cortex-a76``; the emulated program reads and writes the host's files where the root has
none, so the model is read and the ``.npz`` written in place, and ``verify --against`` checks
it on the host.

Two traps of qemu 7.2 (Debian bookworm's) that the layout avoids:

* qemu 7.2 passes the host's x86 ``/proc/cpuinfo`` through, and LiteRT >= 2.3 (pytorch/cpuinfo's
  ``cpuinfo_arm_linux_init``) then crashes at start-up: each ``cpu/CORE`` root carries an Arm
  ``/proc/cpuinfo`` of its core (``-L`` makes the emulated program find it before the host's).
* ``-cpu max`` (qemu's default) advertises SME, whose KleidiAI kernels (LiteRT >= 2.1) qemu 7.2
  computes wrongly: only named cores are offered.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

CACHE_ENV = "NPMOBILEBERT_DEVICE_CACHE"
# Set by the host for the emulated dump: recorded in the dump's metadata ("emulator").
EMULATOR_ENV = "NPMOBILEBERT_EMULATOR"
DEBIAN_SUITE = "bookworm"
DEVICE_PYTHON = "3.11"         # bookworm's python3


@dataclass(frozen=True)
class Core:
    """An Arm core as /proc/cpuinfo names it: MIDR fields (as qemu's model of the core sets them)."""

    name: str
    part: int
    variant: int
    revision: int
    features: str       # the "Features" line of a Linux kernel on that core
    board: str          # where it is found, for the help

    @property
    def implementer(self) -> int:
        return 0x41     # Arm Ltd.


# MIDR values from qemu target/arm/cpu64.c (aarch64_a72/a76/neoverse_n1_initfn), which match the
# cores' technical reference manuals; the feature lines are what Linux prints on those cores.
CORES = {
    "cortex-a72": Core("cortex-a72", 0xD08, 0x0, 0x3, "fp asimd evtstrm crc32 cpuid",
                       "Raspberry Pi 4"),
    "cortex-a76": Core("cortex-a76", 0xD0B, 0x4, 0x1,
                       "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                       "asimdrdm lrcpc dcpop asimddp", "Raspberry Pi 5"),
    "neoverse-n1": Core("neoverse-n1", 0xD0C, 0x3, 0x1,
                        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                        "asimdrdm lrcpc dcpop asimddp ssbs", "AWS Graviton2, Ampere Altra"),
}
DEFAULT_CORE = "cortex-a76"

# Per architecture: Debian's name, the qemu binary, the wheel platform tags pip may take.
ARCHES = {
    "aarch64": {
        "debian": "arm64",
        "qemu": "qemu-aarch64-static",
        "platforms": ["manylinux_2_17_aarch64", "manylinux2014_aarch64", "manylinux_2_27_aarch64",
                      "manylinux_2_28_aarch64", "manylinux_2_31_aarch64", "manylinux_2_34_aarch64",
                      "manylinux_2_35_aarch64", "linux_aarch64"],
    },
}
# What the device path of `dump` imports (docs/device.md, minimal install); no tokenizers.
DEVICE_PACKAGES = ["numpy", "flatbuffers", "tflite", "click"]


def cpuinfo_text(core: Core, count: int) -> str:
    """An Arm /proc/cpuinfo with ``count`` processors of ``core``, laid out as Linux prints it."""
    block = (f"processor\t: {{i}}\nBogoMIPS\t: 108.00\nFeatures\t: {core.features}\n"
             f"CPU implementer\t: 0x{core.implementer:02x}\nCPU architecture: 8\n"
             f"CPU variant\t: 0x{core.variant:x}\nCPU part\t: 0x{core.part:03x}\n"
             f"CPU revision\t: {core.revision}\n\n")
    return "".join(block.format(i=i) for i in range(count))


def this_cpu(text: str | None = None) -> str | None:
    """The core this process runs on, from /proc/cpuinfo (or ``text``, its content): a name of
    CORES, ``implementer 0x41 part 0xd0b`` for other Arm cores, the model name elsewhere; None
    when unreadable."""
    if text is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                text = f.read(1 << 16)
        except OSError:
            return None
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    if "CPU part" in fields:
        try:
            implementer, part = int(fields.get("CPU implementer", "0"), 16), int(fields["CPU part"], 16)
        except ValueError:
            return None
        for core in CORES.values():
            if (core.implementer, core.part) == (implementer, part):
                return core.name
        return f"implementer 0x{implementer:02x} part 0x{part:03x}"
    return fields.get("model name")


# ------------------------------------------------------------------------------------------------
# where things are


def cache_dir(arch: str, base: str | os.PathLike | None = None) -> Path:
    root = base or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "npmobilebert" / "device"
    return Path(root).expanduser().resolve() / arch


def parse_device(spec: str) -> tuple[str, str, str | None]:
    """``aarch64[:CORE[:LITERT_VERSION]]`` -> (arch, core, version or None)."""
    parts = spec.split(":")
    if len(parts) > 3 or not parts[0]:
        raise InputError(f"--device takes ARCH[:CPU[:LITERT_VERSION]], e.g. aarch64:cortex-a76, got {spec!r}")
    arch = parts[0]
    core = parts[1] if len(parts) > 1 and parts[1] else DEFAULT_CORE
    version = parts[2] if len(parts) > 2 and parts[2] else None
    check_arch_core(arch, core)
    return arch, core, version


def check_arch_core(arch: str, core: str) -> None:
    if arch not in ARCHES:
        raise InputError(f"unknown device architecture {arch!r} (known: {', '.join(ARCHES)})")
    if core not in CORES:
        raise InputError(f"unknown CPU {core!r} (known: {', '.join(CORES)}; qemu's 'max' is left "
                         f"out: on qemu 7.2 it enables SME, which it emulates wrongly)")


def host_litert_version() -> str:
    from importlib import metadata
    try:
        return metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        raise InputError("ai-edge-litert is not installed on the host: pass --litert VERSION") from None


def setup_command(arch: str, core: str | None = None, version: str | None = None) -> str:
    return ("npmobilebert device setup --arch " + arch + (f" --cpu {core}" if core else "")
            + (f" --litert {version}" if version else ""))


# ------------------------------------------------------------------------------------------------
# setup


def _run(cmd: list[str], what: str, log) -> None:
    log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace")
    if proc.returncode != 0:
        last = [line for line in proc.stdout.splitlines() if line.strip()][-3:]
        raise InputError(f"{what} failed (exit {proc.returncode}): " + " | ".join(" ".join(x.split()) for x in last))


def _ensure_tools(arch: str, log) -> None:
    """qemu-user-static and mmdebstrap from Debian's archive when missing (apt-get, as root)."""
    needed = {ARCHES[arch]["qemu"]: "qemu-user-static", "mmdebstrap": "mmdebstrap"}
    missing = sorted({pkg for tool, pkg in needed.items() if shutil.which(tool) is None})
    if not missing:
        return
    if not (os.path.exists("/etc/debian_version") and shutil.which("apt-get")):
        raise InputError(f"missing {', '.join(missing)}: this is not Debian/Ubuntu (no apt-get); install "
                         f"them with your distribution's packages")
    if os.geteuid() != 0:
        raise InputError(f"missing {', '.join(missing)}: run 'sudo apt-get install {' '.join(missing)}' "
                         f"(installing needs root), then the setup again")
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log(f"installing {' '.join(missing)} (apt-get)")
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]):
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=apt_env)
        if proc.returncode != 0:
            last = [line for line in proc.stdout.splitlines() if line.strip()][-2:]
            raise InputError(f"{' '.join(cmd)} failed: " + " | ".join(last))


def _tree_bytes(path: Path) -> int:
    """Bytes on disk of the files under ``path``, a hard-linked file once (the core views)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen and not os.path.islink(os.path.join(dirpath, name)):
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def _make_root(root: Path, arch: str, log) -> None:
    """The Debian root, made in a temporary directory beside it and renamed: never half there."""
    tmp = Path(tempfile.mkdtemp(prefix=".root-", dir=root.parent))
    try:
        # extract: unpacks the packages and runs no maintainer scripts (nothing under emulation)
        _run(["mmdebstrap", f"--arch={ARCHES[arch]['debian']}", "--variant=extract",
              "--include=python3,libstdc++6", "--quiet", DEBIAN_SUITE, str(tmp)], "mmdebstrap", log)
        python = tmp / "usr" / "bin" / f"python{DEVICE_PYTHON}"
        if not python.exists():
            raise InputError(f"the {DEBIAN_SUITE} root has no python{DEVICE_PYTHON}")
        tmp.rename(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _install_wheels(target: Path, arch: str, version: str, log) -> None:
    target.parent.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-compile", "--only-binary=:all:", "--implementation", "cp",
               "--python-version", DEVICE_PYTHON, "--target", str(tmp)]
        for tag in ARCHES[arch]["platforms"]:
            cmd += ["--platform", tag]
        _run(cmd + [f"ai-edge-litert=={version}", *DEVICE_PACKAGES], "pip install (aarch64 wheels)", log)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _make_core_root(base: Path, root: Path, core: Core) -> Path:
    """cpu/CORE: the root hard-linked (no extra disk) with a /proc/cpuinfo of the core.

    A real tree, not links to root/: the emulated program resolves symlinks itself (realpath),
    and a link out of the view would lead it to host paths."""
    view = base / "cpu" / core.name
    view.parent.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{core.name}-", dir=view.parent))
    try:
        shutil.copytree(root, tmp / "tree", symlinks=True, copy_function=os.link)
        (tmp / "tree" / "proc").mkdir(exist_ok=True)
        (tmp / "tree" / "proc" / "cpuinfo").write_text(cpuinfo_text(core, os.cpu_count() or 1))
        # a dump running in the old view finds the same files in the new one (a superset): the
        # old one is moved aside, not deleted in place, and the new one takes its name at once
        if view.exists():
            view.rename(tmp / "old")
        (tmp / "tree").rename(view)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return view


def _read_state(base: Path) -> dict:
    try:
        return json.loads((base / "device.json").read_text())
    except (OSError, ValueError):
        return {}


def _write_state(base: Path, state: dict) -> None:
    tmp = base / ".device.json.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(base / "device.json")


def qemu_version(arch: str) -> str:
    out = subprocess.run([ARCHES[arch]["qemu"], "--version"], stdout=subprocess.PIPE, text=True).stdout
    return out.splitlines()[0].replace("qemu-aarch64 version ", "") if out else "unknown"


def setup(arch: str = "aarch64", core: str = DEFAULT_CORE, version: str | None = None,
          base: str | os.PathLike | None = None, log=print) -> dict:
    """Build (or reuse) the emulated device; its state (device.json), with timings and sizes."""
    check_arch_core(arch, core)
    version = version or host_litert_version()
    started = time.monotonic()
    directory = cache_dir(arch, base)
    directory.mkdir(parents=True, exist_ok=True)
    state = _read_state(directory)
    steps = state.setdefault("setup_seconds", {})

    t = time.monotonic()
    _ensure_tools(arch, log)
    if time.monotonic() - t > 1:
        steps["tools"] = round(time.monotonic() - t, 1)
    root = directory / "root"
    if not root.exists():
        t = time.monotonic()
        log(f"making the {DEBIAN_SUITE} {ARCHES[arch]['debian']} root (mmdebstrap)")
        _make_root(root, arch, log)
        steps["root"] = round(time.monotonic() - t, 1)
    target = root / "opt" / f"litert-{version}"
    if not target.exists():
        t = time.monotonic()
        log(f"installing aarch64 wheels: ai-edge-litert=={version}, {', '.join(DEVICE_PACKAGES)}")
        _install_wheels(target, arch, version, log)
        steps[f"litert-{version}"] = round(time.monotonic() - t, 1)
    view = directory / "cpu" / core
    if not (view / "opt" / f"litert-{version}").exists() or not (view / "proc" / "cpuinfo").exists():
        _make_core_root(directory, root, CORES[core])    # never under a running dump: only when stale

    # what pip resolved (unpinned dependencies), for the record: the dumps name numpy's too
    state.setdefault("wheels", {})[f"litert-{version}"] = sorted(
        p.name[:-len(".dist-info")] for p in target.glob("*.dist-info"))
    qemu = qemu_version(arch)
    litert = sorted(set(state.get("litert", [])) | {version})
    cores = sorted(set(state.get("cores", [])) | {core})
    state.update({"arch": arch, "debian": f"{DEBIAN_SUITE} {ARCHES[arch]['debian']}", "qemu": qemu,
                  "python": DEVICE_PYTHON, "litert": litert, "cores": cores,
                  "bytes": _tree_bytes(directory)})
    _write_state(directory, state)
    state["this_run_seconds"] = round(time.monotonic() - started, 1)
    return state


# ------------------------------------------------------------------------------------------------
# running the dump inside the emulator


def _package_copy(root: Path) -> str:
    """This package's sources under ROOT/opt/npmobilebert-SHA (by content: a copy per version of
    the code, made once, atomically); the emulated path of the directory to put on PYTHONPATH."""
    package = Path(__file__).resolve().parent
    files = sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(package)).encode() + b"\0" + p.read_bytes())
    name = f"npmobilebert-{digest.hexdigest()[:12]}"
    target = root / "opt" / name
    if not target.exists():
        target.parent.mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root / "opt"))
        for p in files:
            dest = tmp / "npmobilebert" / p.relative_to(package)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dest)
        try:
            tmp.rename(target)
        except OSError:         # another dump made the same copy meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
    return f"/opt/{name}"


def device_command(arch: str, core: str, version: str | None, python_args: list[str],
                   base: str | os.PathLike | None = None) -> tuple[list[str], dict, str]:
    """(command, environment, LiteRT version) running ``python PYTHON_ARGS`` emulated, with
    numpy, LiteRT ``version`` (None: the host's when set up, else the newest set up) and this
    package importable.

    Paths in PYTHON_ARGS must be absolute or relative to the current directory (the emulated
    program sees the host's files where the root has none)."""
    check_arch_core(arch, core)
    directory = cache_dir(arch, base)
    state = _read_state(directory)
    root = directory / "root"
    qemu = ARCHES[arch]["qemu"]
    if not state or not root.exists():
        raise InputError(f"the {arch} device is not set up (nothing in {directory}): run "
                         f"'{setup_command(arch, core, version)}'")
    if shutil.which(qemu) is None:
        raise InputError(f"{qemu} is missing: run '{setup_command(arch, core, version)}' "
                         f"(it installs qemu-user-static)")
    if version is None:
        installed = state.get("litert") or []
        host = None
        try:
            host = host_litert_version()
        except InputError:
            pass
        version = host if host in installed else (installed[-1] if installed else None)
    if version is None or not (root / "opt" / f"litert-{version}").exists():
        raise InputError(f"LiteRT {version} is not installed on the {arch} device: run "
                         f"'{setup_command(arch, core, version)}'")
    view = directory / "cpu" / core
    if not (view / "opt" / f"litert-{version}").exists():    # a core or a version set up later
        view = _make_core_root(directory, root, CORES[core])
    package = _package_copy(view)
    emulator = f"{qemu} {state.get('qemu', '')} -cpu {core}".replace("  ", " ")
    env = {
        "PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8",
        "PYTHONPATH": f"{package}:/opt/litert-{version}",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
        EMULATOR_ENV: emulator,
    }
    for key in ("NPMOBILEBERT_TRACEBACK",):
        if key in os.environ:
            env[key] = os.environ[key]
    cmd = [qemu, "-cpu", core, "-L", str(view), str(view / "usr" / "bin" / f"python{DEVICE_PYTHON}"),
           *python_args]
    return cmd, env, version


def run_dump(arch: str, core: str, version: str | None, dump_args: list[str],
             base: str | os.PathLike | None = None) -> tuple[int, float, str]:
    """Run ``npmobilebert dump DUMP_ARGS`` emulated (its output and progress go to ours);
    (exit status, seconds, LiteRT version)."""
    cmd, env, version = device_command(arch, core, version, ["-m", "npmobilebert.dump", *dump_args], base)
    started = time.monotonic()
    status = subprocess.run(cmd, env=env).returncode
    return status, time.monotonic() - started, version
