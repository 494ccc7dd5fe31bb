"""The wheel, as a user gets it: `pip wheel .`, installed in a fresh virtual environment outside
the checkout, then the installed `npmobilebert` command's main job, `classify` and `eval` on the
default model that the wheel carries.

No network: the wheel is built without build isolation (the running Python's setuptools) and
installed without its dependencies; the fresh environment reads those -- and only through a
.pth file, after its own site-packages -- from where the running Python has them. The sentences
are made up for the test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "mobilebert_int8.tflite"
# import names of pyproject.toml's [project] dependencies
DEPENDENCIES = ("numpy", "flatbuffers", "tflite", "tokenizers", "click", "ai_edge_litert")
ROWS = [("positive", "I really love the new phone, the screen is wonderful"),
        ("negative", "the bank lost my card again and nobody answers the phone"),
        ("neutral", "the university opens its new library on monday"),
        ("negative", "worst customer service I have ever seen"),
        ("positive", "thanks for the quick help, problem solved")]


def run(args, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


def dependency_dirs(*also: str) -> list[str]:
    """The directories the running Python imports each dependency (and each of ``also``) from."""
    dirs = []
    for name in DEPENDENCIES + also:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            pytest.skip(f"{name} is not installed here")
        parent = str(Path(list(spec.submodule_search_locations)[0]).parent)
        if parent not in dirs:
            dirs.append(parent)
    return dirs


def source_copy(tmp_path: Path) -> Path:
    """A copy of what the build reads, so the checkout gets no build/ or egg-info."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("src", "models"):
        shutil.copytree(ROOT / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return source


def fresh_venv(tmp_path: Path) -> tuple[Path, Path]:
    """A virtual environment without pip or packages: (its directory, its site-packages)."""
    pytest.importorskip("setuptools")
    pip_help = run([sys.executable, "-m", "pip", "--help"], tmp_path)
    if pip_help.returncode != 0 or "--python" not in pip_help.stdout:
        pytest.skip("no pip >= 22.3 (pip --python) in this Python")
    venv = tmp_path / "venv"
    r = run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path)
    assert r.returncode == 0, r.stderr
    site = run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path)
    return venv, Path(site.stdout.strip())


def pip_install(venv: Path, *args, cwd: Path) -> None:
    r = run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps",
             "--no-index", *args], cwd)
    assert r.returncode == 0, r.stdout + r.stderr


def installed_package(venv: Path, cwd: Path) -> tuple[Path, Path, list[str]]:
    """(npmobilebert.__file__, default_model_path(), the default model's labels) in the venv."""
    r = run([venv / "bin" / "python", "-c", "import json, npmobilebert; print(json.dumps([npmobilebert.__file__, "
             "str(npmobilebert.default_model_path()), npmobilebert.Classifier(engine='numpy').labels]))"], cwd)
    assert r.returncode == 0, r.stderr
    package_file, model_path, labels = json.loads(r.stdout)
    return Path(package_file).resolve(), Path(model_path).resolve(), labels


@pytest.mark.slow
def test_wheel_installed_outside_the_checkout_runs_the_main_job_classify_and_eval(tmp_path):
    deps = dependency_dirs()
    source = source_copy(tmp_path)
    dist = tmp_path / "dist"
    r = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", dist, "."], source)
    assert r.returncode == 0, r.stdout + r.stderr
    [wheel] = dist.glob("npmobilebert-*.whl")

    venv, site = fresh_venv(tmp_path)
    pip_install(venv, wheel, cwd=tmp_path)
    # after the install, so that pip does not see the running Python's packages as installed
    (site / "test_dependencies.pth").write_text("\n".join(deps) + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    package_file, model_path, labels = installed_package(venv, elsewhere)
    assert package_file.is_relative_to(venv.resolve())       # the wheel's, not the checkout's
    assert model_path.is_relative_to(venv.resolve())
    assert model_path.read_bytes() == SHIPPED.read_bytes()
    assert labels == ["negative", "neutral", "positive"]

    command = venv / "bin" / "npmobilebert"
    r = run([command, "run", "--trace", "Just switched banks and the new one is so much better"], elsewhere)
    assert r.returncode == 0, r.stderr
    assert "FULLY_CONNECTED" in r.stdout
    assert any(label in line for line in r.stdout.strip().splitlines()[-3:] for label in labels)

    r = run([command, "classify", "--json", ROWS[0][1]], elsewhere)
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert answer["label"] in labels and sum(answer["probabilities"].values()) == pytest.approx(1.0)

    data = elsewhere / "data.tsv"
    data.write_text("label\ttext\n" + "".join(f"{label}\t{text}\n" for label, text in ROWS), encoding="utf-8")
    r = run([command, "eval", data.name, "--json", "report.json"], elsewhere)
    assert r.returncode == 0, r.stderr
    report = json.loads((elsewhere / "report.json").read_text())
    assert report["n"] == len(ROWS) and report["labels"] == labels
    assert sum(map(sum, report["confusion"])) == len(ROWS)


@pytest.mark.slow
def test_editable_install_finds_the_checkouts_models_from_any_directory(tmp_path):
    """`pip install -e .` maps the package to src/ (pyproject.toml also maps models/ into it)."""
    deps = dependency_dirs("setuptools")
    outer = Path(importlib.util.find_spec("npmobilebert").origin).parents[1]
    if str(outer) in deps:
        # an editable install's finder comes after the path: it would find that copy first
        pytest.skip(f"npmobilebert is installed in {outer}, beside its dependencies")
    source = source_copy(tmp_path)
    venv, site = fresh_venv(tmp_path)
    # before the install: the editable build runs in the venv and needs setuptools from there;
    # --ignore-installed, since the running Python's npmobilebert is then visible to pip too
    (site / "test_dependencies.pth").write_text("\n".join(deps) + "\n")
    pip_install(venv, "--no-build-isolation", "--ignore-installed", "-e", source, cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    package_file, model_path, labels = installed_package(venv, elsewhere)
    assert package_file == (source / "src" / "npmobilebert" / "__init__.py").resolve()
    assert model_path == (source / "models" / "mobilebert_int8.tflite").resolve()
    r = run([venv / "bin" / "npmobilebert", "classify", "--engine", "numpy", "--json", ROWS[1][1]], elsewhere)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["label"] in labels
