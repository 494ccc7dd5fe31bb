"""Real .tflite files from public repositories: gather them, then check every one.

  python tools/real_files.py gather --out ~/.cache/npmobilebert/real_files
  python tools/real_files.py gather --out DIR --mirrors /path/to/mirrors   # existing git dirs, no network
  python tools/real_files.py check  --corpus DIR [--jobs 2] [--timeout 120]

``gather`` clones each repository of REPOSITORIES (shallow, blob-less, sparse: only the
``*.tflite`` blobs are downloaded) into ``DIR/.git-cache/`` -- or reads existing git directories
(``--mirrors``, one ``owner+name/repo`` or ``owner+name`` git dir per repository) -- and copies
every ``.tflite`` of the commit it got into ``DIR/<owner>/<name>/<path>``, skipping Git LFS
pointers and blobs the git directory lacks.  ``DIR/manifest.json`` records repository, path,
commit, the repository's licence, sha256 and size of every file.  The files are never part of
this repository: they belong to their authors, under the licences recorded.

``check`` runs, for every file of the manifest (files over ``--max-mb`` are skipped):

1. ``npmobilebert info --json`` and LiteRT's own ``Interpreter(...)._get_ops_details()``
   (reference resolver, no delegate): every operator name LiteRT reports for the primary
   subgraph must be the one ``info`` reports -- anything else is an op-code misread.
   Files LiteRT cannot load are recorded as such (with LiteRT's one-line reason).
2. ``npmobilebert verify --against ref --random 3``, in a subprocess with a timeout and an
   address-space limit, classified as: verified (exit 0), refused (exit 2, one line on stderr,
   grouped by reason: missing op, dtype, feature, ...), mismatch (exit 1), internal error
   (exit 3, a traceback, a signal, or a refusal that is not one line), timeout.

It writes ``docs/real_files.json`` (every file's outcome) and ``docs/real_files.md`` (the table).
Exit status: 0 when there are no internal errors, misreads or mismatches, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import datetime
import hashlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DOCS = REPO / "docs"


@dataclass(frozen=True)
class Source:
    repo: str          # owner/name on GitHub
    licence: str       # the repository's licence (its LICENSE file), which covers the files


# Public repositories that hold real .tflite files written by others: converter and quantizer
# test data, runtime test data, benchmark and example models.
REPOSITORIES = (
    Source("google-ai-edge/LiteRT", "Apache-2.0"),
    Source("google-ai-edge/ai-edge-quantizer", "Apache-2.0"),
    Source("google-ai-edge/mediapipe", "Apache-2.0"),
    Source("tensorflow/tflite-micro", "Apache-2.0"),
    Source("tensorflow/tflite-support", "Apache-2.0"),
    Source("mlcommons/tiny", "Apache-2.0"),
    Source("zhenhuaw-me/tflite2onnx", "Apache-2.0"),
)

LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"


# ---------------------------------------------------------------------------------------------
# gather

def _git(git_dir: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "--git-dir", str(git_dir), *args], check=True,
                          capture_output=True, **kwargs)


def _clone(source: Source, cache: Path) -> Path:
    """A shallow, blob-less clone whose sparse checkout holds only the .tflite files (git fetches
    their blobs in one batch); returns its git directory.  An existing clone is reused."""
    work = cache / source.repo.replace("/", "+")
    if not (work / ".git").is_dir():
        work.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "--depth", "1", "--filter=blob:none", "--sparse",
                        f"https://github.com/{source.repo}.git", str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "sparse-checkout", "set", "--no-cone", "*.tflite"],
                   check=True)
    return work / ".git"


def _mirror_git_dir(mirrors: Path, source: Source) -> Path | None:
    base = mirrors / source.repo.replace("/", "+")
    for candidate in (base / "repo", base, base / ".git"):
        if (candidate / "HEAD").is_file() and (candidate / "objects").is_dir():
            return candidate
    return None


def _tflite_blobs(git_dir: Path) -> list[tuple[str, str]]:
    """(blob id, path) of every .tflite in HEAD's tree."""
    listing = _git(git_dir, "ls-tree", "-r", "-z", "HEAD").stdout.decode("utf-8", "surrogateescape")
    blobs = []
    for entry in listing.split("\0"):
        if not entry:
            continue
        meta, path = entry.split("\t", 1)
        _mode, kind, oid = meta.split()
        if kind == "blob" and path.lower().endswith(".tflite"):
            blobs.append((oid, path))
    return blobs


def _extract(source: Source, git_dir: Path, out: Path) -> list[dict]:
    commit = _git(git_dir, "rev-parse", "HEAD").stdout.decode().strip()
    rows = []
    for oid, path in _tflite_blobs(git_dir):
        row = {"repo": source.repo, "path": path, "commit": commit, "licence": source.licence}
        present = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "-e", oid],
                                 capture_output=True).returncode == 0
        if not present:
            rows.append({**row, "skipped": "blob not in the git directory"})
            continue
        data = _git(git_dir, "cat-file", "blob", oid).stdout
        if data.startswith(LFS_POINTER_PREFIX):
            rows.append({**row, "skipped": "Git LFS pointer"})
            continue
        local = Path(source.repo) / path
        target = out / local
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        rows.append({**row, "file": str(local), "sha256": hashlib.sha256(data).hexdigest(),
                     "size": len(data)})
    return rows


def gather(out: Path, mirrors: Path | None) -> int:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for source in REPOSITORIES:
        if mirrors is not None:
            git_dir = _mirror_git_dir(mirrors, source)
            if git_dir is None:
                print(f"{source.repo}: no git directory under {mirrors}, skipped", file=sys.stderr)
                continue
        else:
            git_dir = _clone(source, out / ".git-cache")
        got = _extract(source, git_dir, out)
        kept = sum("file" in r for r in got)
        print(f"{source.repo}: {kept} .tflite files ({len(got) - kept} skipped)", file=sys.stderr)
        rows += got
    manifest = {"gathered": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "repositories": [{"repo": s.repo, "licence": s.licence} for s in REPOSITORIES],
                "files": rows}
    _write_atomic(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    print(f"{sum('file' in r for r in rows)} files in {out}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------
# check

ERROR_PREFIX = "error: "


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def litert_probe(path: str) -> dict:
    """What LiteRT's reference resolver makes of the file: its op names (primary subgraph, as
    ``_get_ops_details`` reports them) and whether it allocates and invokes on inputs of all
    zeros or, where zeros fail (a divisor, a logarithm), all ones.

    Prints one JSON line as soon as the op names are known and another at the end: LiteRT
    aborts or crashes on some files while preparing or invoking, and the op names still count."""
    import numpy as np
    try:
        from ai_edge_litert import interpreter as litert
    except ImportError:
        from tflite_runtime import interpreter as litert
    result: dict = {"loads": False, "runs": False}
    try:
        interpreter = litert.Interpreter(
            model_path=path, experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
    except Exception as e:  # noqa: BLE001 - whatever LiteRT raises is its refusal, recorded
        result["error"] = _one_line(e)
        return result
    result["loads"] = True
    result["subgraphs"] = interpreter.num_subgraphs() if hasattr(interpreter, "num_subgraphs") else None
    result["ops"] = [d["op_name"] for d in interpreter._get_ops_details()]
    print(json.dumps(result), flush=True)
    errors = []
    for fill in (0, 1):
        try:
            interpreter.allocate_tensors()
            for d in interpreter.get_input_details():
                shape = tuple(int(n) for n in d["shape"])
                if d["dtype"] in (np.bytes_, np.object_, np.str_):
                    value = np.full(shape, b"a" * fill, dtype=object)
                else:
                    value = np.full(shape, fill, d["dtype"])
                interpreter.set_tensor(d["index"], value)
            interpreter.invoke()
            result["runs"] = True
            return result
        except Exception as e:  # noqa: BLE001 - LiteRT's refusal, recorded
            errors.append(_one_line(e))
    result["error"] = errors[0] if errors[0] == errors[-1] else f"{errors[0]}; on ones: {errors[-1]}"
    return result


@dataclass
class Ran:
    rc: int | None          # None: timed out
    stdout: str
    stderr: str
    seconds: float


def _run_limited(cmd: list[str], timeout: float, mem_bytes: int, env: dict) -> Ran:
    """Run cmd in its own process group under an address-space limit; kill the group on timeout."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))

    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=limit, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        rc = None
    return Ran(rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
               round(time.monotonic() - start, 1))


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(ERROR_PREFIX)]


def classify_run(ran: Ran) -> tuple[str, str]:
    """(outcome, one-line message) of an npmobilebert command: ok / mismatch / refused /
    internal error / timeout.  A refusal must be exactly one ``error:`` line; a traceback, a
    signal, exit 3 or any other exit status is an internal error."""
    if ran.rc is None:
        return "timeout", f"no answer in {ran.seconds:.0f} s"
    errors = _error_lines(ran.stderr)
    if "Traceback (most recent call last)" in ran.stderr:
        last = [line for line in ran.stderr.splitlines() if line.strip()][-1]
        return "internal error", f"traceback: {_one_line(last)}"
    if ran.rc < 0:
        return "internal error", f"killed by signal {-ran.rc}"
    if ran.rc == 0:
        return "ok", ""
    if ran.rc == 1:
        tail = [line for line in ran.stdout.splitlines() if line.strip()][-2:]
        return "mismatch", _one_line(" / ".join(tail))
    if ran.rc == 2:
        if len(errors) == 1:
            return "refused", _one_line(errors[0][len(ERROR_PREFIX):], 400)
        return "internal error", f"exit 2 with {len(errors)} error lines: {_one_line(ran.stderr)}"
    message = errors[-1][len(ERROR_PREFIX):] if errors else ran.stderr
    return "internal error", f"exit {ran.rc}: {_one_line(message, 400)}"


# Refusal messages, most specific first: (group, pattern whose groups make the detail).
_OP = r"operator \d+ \((?P<op>\w+) v(?P<version>\d+)"
REFUSAL_PATTERNS = (
    ("custom op", re.compile(r"^custom op (?P<detail>.*?): not implemented")),
    ("dtype", re.compile(r"^(?P<dtype>[A-Z0-9]+) tensors are not implemented.* of operator \d+ "
                         r"\((?P<op>\w+) v\d+")),
    ("feature", re.compile(r"^(?P<why>blockwise quantization not implemented).* of operator \d+ "
                           r"\((?P<op>\w+) v\d+")),
    ("missing op", re.compile(_OP + r".*\): this op is not implemented")),
    ("control flow", re.compile(_OP + r".*is control flow")),
    ("op version", re.compile(_OP + r"\): unknown op version")),
    ("dtype", re.compile(_OP + r", inputs (?P<io>.*?)\): .*(?:dtype|type)")),
    ("feature", re.compile(_OP + r", inputs .*?\): (?P<why>.*)")),
    ("feature", re.compile(r"^(?P<why>fused activation .* not supported|an integer product of depth)")),
    ("kernel failure", re.compile(_OP + r"\) cannot (?:prepare|run) on this model's tensors "
                                         r"\((?P<exc>\w+)")),
    ("LiteRT refuses", re.compile(r"^(?P<why>LiteRT (?:cannot load the model|invoke failed))")),
)


def refusal_reason(message: str) -> tuple[str, str]:
    """(group, detail) of a one-line refusal: the missing op, dtype or feature it names."""
    for group, pattern in REFUSAL_PATTERNS:
        m = pattern.search(message)
        if not m:
            continue
        parts = m.groupdict()
        if group == "custom op":
            detail = parts["detail"]
        elif group in ("missing op", "control flow"):
            detail = parts["op"]
        elif group == "op version":
            detail = f"{parts['op']} v{parts['version']}"
        elif group == "dtype" and parts.get("dtype"):
            detail = f"{parts['op']} ({parts['dtype']} tensors)"
        elif group == "dtype":
            detail = f"{parts['op']} ({parts['io']})"
        elif group == "kernel failure":
            detail = f"{parts['op']}: {parts['exc']}"
        elif parts.get("op"):
            detail = f"{parts['op']}: {_one_line(parts['why'], 100)}"
        else:
            detail = _one_line(parts["why"], 100)
        return group, detail
    # Anything else: the message with its numbers and quoted names generalised, so that files
    # refused for the same reason group together.
    generic = re.sub(r"'[^']*'", "'…'", message)
    generic = re.sub(r"\d+", "N", generic)
    return "other", _one_line(generic, 120)


def _builtin_names() -> set[str]:
    import tflite
    return {name for name in vars(tflite.BuiltinOperator) if name.isupper()}


def misreads(litert_ops: list[str], info_ops: list[dict], subgraphs: int, builtins: set[str]) -> list[str]:
    """How ``info``'s operator counts differ from LiteRT's op names (primary subgraph).

    A builtin must carry LiteRT's name exactly, and so must a custom op (LiteRT names it by its
    custom code), except that LiteRT calls every Flex op 'Flex' where ``info`` gives the whole
    code ('FlexSentencepieceOp').  ``info``
    counts every subgraph, LiteRT's details only the primary one: with several subgraphs
    ``info`` may count more, never fewer."""
    counts = collections.Counter()
    for op in info_ops:
        # a custom op's code may come in the opcode's name or in a field of its own
        name = " ".join(str(op[k]) for k in ("opcode", "custom_code") if op.get(k))
        counts[name] += op["count"]
    problems = []
    claimed: set[str] = set()
    for name, want in sorted(collections.Counter(litert_ops).items()):
        if name in builtins:
            matching = [n for n in counts if n == name]
        elif name == "Flex":
            matching = [n for n in counts if n.startswith("Flex") and n not in builtins]
        else:
            matching = [n for n in counts if name in n.split(" ") and n not in builtins]
        claimed.update(matching)
        got = sum(counts[n] for n in matching)
        if got < want or (subgraphs == 1 and got != want):
            named = ", ".join(f"{n} x{counts[n]}" for n in matching) or "none"
            problems.append(f"LiteRT {name} x{want}, info {named}")
    if subgraphs == 1:
        for name in sorted(set(counts) - claimed):
            problems.append(f"info {name} x{counts[name]}, LiteRT none")
    return problems


def _cli(python: str, *args: str) -> list[str]:
    return [python, "-m", "npmobilebert.cli", *args]


def check_one(path: Path, args, env: dict, builtins: set[str]) -> dict:
    mem = int(args.mem_gb * 2**30)
    record: dict = {}

    probe = _run_limited([args.python, str(Path(__file__).resolve()), "litert-probe", str(path)],
                         args.timeout, mem, env)
    lines = [line for line in probe.stdout.splitlines() if line.startswith("{")]
    record["litert"] = json.loads(lines[-1]) if lines else {"loads": False, "runs": False}
    if probe.rc != 0:
        outcome, message = classify_run(probe)
        record["litert"]["runs"] = False
        record["litert"]["error"] = ("LiteRT " + message if message.startswith("killed by signal")
                                     else f"probe {outcome}: {message}")

    info = _run_limited(_cli(args.python, "info", "-m", str(path), "--json"), args.timeout, mem, env)
    outcome, message = classify_run(info)
    record["info"] = {"outcome": outcome, "message": message}
    if outcome == "ok" and record["litert"]["loads"]:
        report = json.loads(info.stdout)
        subgraphs = report.get("subgraphs") or 1
        record["info"]["misreads"] = misreads(record["litert"]["ops"], report["operators"],
                                              subgraphs, builtins)

    verify = _run_limited(_cli(args.python, "verify", "-m", str(path), "--against", "ref",
                               "--random", "3"), args.timeout, mem, env)
    outcome, message = classify_run(verify)
    if (outcome == "internal error" and message.startswith("killed by signal")
            and record["litert"].get("error", "").startswith("LiteRT killed by signal")):
        # verify runs LiteRT in its own process: LiteRT's crash (seen alone in the probe) is
        # not one of npmobilebert's
        outcome, message = "LiteRT crashes", f"{message}, as LiteRT alone is"
    if outcome == "ok":
        # verify's verdict, e.g. "every tensor is identical"
        outcome, message = "verified", _one_line(" ".join(verify.stdout.strip().splitlines()[-1:]))
    record["verify"] = {"outcome": outcome, "message": message, "seconds": verify.seconds}
    if outcome == "refused":
        record["verify"]["reason"] = list(refusal_reason(message))
    return record


# What makes `check` exit 1 (and the slow test fail).  Timeouts depend on the machine and
# wrong refusals are work to do, so both are reported without failing the run.
GATING = ("info internal error", "internal error", "misread", "mismatch")


def failure_kinds(record: dict) -> list[str]:
    """What the acceptance counts against the file: internal errors (info or verify), misreads,
    mismatches, timeouts, and refusals of files LiteRT runs that name no missing op / dtype /
    feature."""
    kinds = []
    if record.get("skipped"):
        return kinds
    info = record["info"]["outcome"]
    if info == "internal error" or (info != "ok" and record["litert"]["loads"]):
        kinds.append(f"info {info}")
    if record["info"].get("misreads"):
        kinds.append("misread")
    verify = record["verify"]
    if verify["outcome"] in ("internal error", "mismatch", "timeout"):
        kinds.append(verify["outcome"])
    if (verify["outcome"] == "refused" and record["litert"]["runs"]
            and verify["reason"][0] in ("kernel failure", "other", "LiteRT refuses")):
        kinds.append("wrong refusal")
    return kinds


def _code_version() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _corpus_rows(corpus: Path | None, files: list[Path]) -> tuple[list[dict], list[dict]]:
    if corpus is not None:
        manifest = json.loads((corpus / "manifest.json").read_text())
        return manifest["files"], manifest.get("repositories", [])
    rows = []
    for f in files:
        data = f.read_bytes()
        rows.append({"repo": "(given)", "path": f.name, "file": str(f.resolve()),
                     "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
    return rows, []


def check(args) -> int:
    corpus = args.corpus.expanduser().resolve() if args.corpus else None
    rows, repositories = _corpus_rows(corpus, args.files)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(args.src), env.get("PYTHONPATH")]))
    env.pop("NPMOBILEBERT_TRACEBACK", None)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    builtins = _builtin_names()

    by_sha: dict[str, Path] = {}
    for row in rows:
        if "file" in row and row["size"] <= args.max_mb * 1e6:
            by_sha.setdefault(row["sha256"], (corpus / row["file"]) if corpus else Path(row["file"]))
    results: dict[str, dict] = {}
    done = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(check_one, path, args, env, builtins): sha for sha, path in by_sha.items()}
        for future in concurrent.futures.as_completed(futures):
            sha = futures[future]
            results[sha] = future.result()
            done += 1
            kinds = failure_kinds(results[sha])
            print(f"[{done}/{len(by_sha)}] {by_sha[sha].name}: {results[sha]['verify']['outcome']}"
                  + (f" -- {', '.join(kinds)}" if kinds else ""), file=sys.stderr, flush=True)

    records = []
    for row in rows:
        record = {k: row[k] for k in ("repo", "path", "commit", "licence", "sha256", "size") if k in row}
        if "file" not in row:
            record["skipped"] = row.get("skipped", "not extracted")
        elif row["size"] > args.max_mb * 1e6:
            record["skipped"] = f"over {args.max_mb:g} MB"
        else:
            record.update(results[row["sha256"]])
            record["failures"] = failure_kinds(record)
        records.append(record)
    summary = {
        "command": "python tools/real_files.py check " + " ".join(args.argv_echo),
        "npmobilebert": _code_version(),
        "checked": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "repositories": repositories,
        "limits": {"timeout_s": args.timeout, "memory_gb": args.mem_gb, "max_mb": args.max_mb},
        "files": records,
    }
    _write_atomic(args.json_out, json.dumps(summary, indent=1) + "\n")
    _write_atomic(args.md_out, render_markdown(summary))
    failures = collections.Counter(k for r in records for k in r.get("failures", []) if k in GATING)
    print(f"wrote {args.json_out} and {args.md_out}; "
          + (", ".join(f"{n} {k}" for k, n in failures.items()) or "no failures"), file=sys.stderr)
    return 1 if failures else 0


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        f.write(text)
    os.replace(f.name, path)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def render_markdown(summary: dict) -> str:
    records = summary["files"]
    checked = [r for r in records if "skipped" not in r]
    outcome = collections.Counter(r["verify"]["outcome"] for r in checked)
    litert_runs = sum(r["litert"]["runs"] for r in checked)
    litert_loads = sum(r["litert"]["loads"] for r in checked)
    refused = [r for r in checked if r["verify"]["outcome"] == "refused"]
    kinds = collections.Counter(k for r in checked for k in r["failures"])
    unique = len({r["sha256"] for r in checked})
    limits = summary["limits"]
    out = [
        "# Real .tflite files from public repositories",
        "",
        f"Every `.tflite` of the repositories below (their newest commit when gathered), given to "
        f"`npmobilebert info` and `npmobilebert verify --against ref --random 3`, with LiteRT's "
        f"reference resolver asked for its own op names. The files are not part of this repository: "
        f"`python tools/real_files.py gather --out DIR` fetches them again (commits and licences below), "
        f"`{summary['command']}` makes this page and `docs/real_files.json` (every file's outcome).",
        "",
        f"npmobilebert `{summary['npmobilebert']}`, checked {summary['checked']}; each command "
        f"limited to {limits['timeout_s']:g} s and {limits['memory_gb']:g} GiB of address space; "
        f"files over {limits['max_mb']:g} MB skipped.",
        "",
        "## Totals",
        "",
    ]
    out += _table(["", "files"], [
        ["in the repositories", len(records)],
        ["checked (distinct contents)", f"{len(checked)} ({unique})"],
        ["not checked (absent from the snapshot, LFS pointer, too big)", len(records) - len(checked)],
        ["LiteRT (reference resolver) loads / runs on inputs of zeros (or ones)", f"{litert_loads} / {litert_runs}"],
        ["**verified**: every tensor identical to LiteRT", outcome["verified"]],
        ["refused with one line, LiteRT runs the file", sum(r["litert"]["runs"] for r in refused)],
        ["refused with one line, LiteRT cannot run the file either",
         sum(not r["litert"]["runs"] for r in refused)],
        ["mismatch (verify exit 1)", outcome["mismatch"]],
        ["internal error (exit 3, traceback, signal)", outcome["internal error"]],
        ["timeout", outcome["timeout"]],
        ["LiteRT crashes (killed by a signal) in `verify` and alone", outcome["LiteRT crashes"]],
        ["op-code misread by `info`", kinds["misread"]],
        ["`info` internal error / refusal of a file LiteRT loads",
         kinds["info internal error"] + kinds["info refused"]],
        ["refusal naming no op / dtype / feature of a file LiteRT runs", kinds["wrong refusal"]],
    ])

    out += ["", "## By repository", ""]
    rows = []
    for repo in sorted({r["repo"] for r in records}):
        mine = [r for r in records if r["repo"] == repo]
        done = [r for r in mine if "skipped" not in r]
        got = collections.Counter(r["verify"]["outcome"] for r in done)
        licence = next((r.get("licence", "") for r in mine), "")
        commit = next((r.get("commit", "")[:10] for r in mine), "")
        rows.append([repo, f"`{commit}`" if commit else "", licence, len(mine), len(mine) - len(done), got["verified"], got["refused"],
                     got["mismatch"], got["internal error"], got["timeout"],
                     sum("misread" in r["failures"] for r in done)])
    out += _table(["repository", "commit", "licence", "files", "not checked", "verified", "refused", "mismatch",
                   "internal error", "timeout", "misread"], rows)

    out += ["", "## Refused, by reason", "",
            "The first thing the NumPy interpreter (or LiteRT, inside `verify`) cannot do, per file.", ""]
    groups = collections.defaultdict(list)
    for r in refused:
        groups[r["verify"]["reason"][0]].append(r)
    rows = []
    for group, mine in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        details = collections.Counter(r["verify"]["reason"][1] for r in mine)
        shown = ", ".join(f"{d} ({n})" for d, n in details.most_common(8))
        more = len(details) - 8
        rows.append([group, len(mine), sum(r["litert"]["runs"] for r in mine),
                     shown + (f", {more} more" if more > 0 else "")])
    out += _table(["reason", "files", "of which LiteRT runs", "what (files)"], rows)

    missing = collections.Counter(r["verify"]["reason"][1] for r in refused
                                  if r["verify"]["reason"][0] in ("missing op", "custom op"))
    runnable = collections.Counter(r["verify"]["reason"][1] for r in refused if r["litert"]["runs"]
                                   and r["verify"]["reason"][0] in ("missing op", "custom op"))
    out += ["", "## Ops most often missing", "",
            "The first op of each refused file that the NumPy interpreter does not implement.", ""]
    out += _table(["op", "files", "of which LiteRT runs"],
                  [[op, n, runnable[op]] for op, n in missing.most_common(20)])

    failing = [r for r in checked if r["failures"]]
    out += ["", "## Failures", ""]
    if not failing:
        out += ["None."]
    else:
        rows = []
        for r in sorted(failing, key=lambda r: (r["failures"], r["repo"], r["path"])):
            if "misread" in r["failures"]:
                what = "; ".join(r["info"]["misreads"])
            elif r["info"]["outcome"] not in ("ok",) and any(k.startswith("info") for k in r["failures"]):
                what = r["info"]["message"]
            else:
                what = r["verify"]["message"]
            rows.append([", ".join(r["failures"]), f"{r['repo']}/{r['path']}", _one_line(what, 240)])
        out += _table(["failure", "file", "message"], rows)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("gather", help="clone the repositories (or read --mirrors) and extract the .tflite files")
    g.add_argument("--out", type=Path, required=True, help="corpus directory (outside this repository)")
    g.add_argument("--mirrors", type=Path, help="existing git dirs, one owner+name[/repo] per repository")
    c = sub.add_parser("check", help="info + LiteRT op names + verify --against ref --random 3, every file")
    what = c.add_mutually_exclusive_group(required=True)
    what.add_argument("--corpus", type=Path, help="a directory made by gather (its manifest.json)")
    what.add_argument("--files", type=Path, nargs="+", default=[], help="these .tflite files instead")
    c.add_argument("--jobs", type=int, default=2, help="files checked at once (default 2)")
    c.add_argument("--timeout", type=float, default=120, help="seconds per command (default 120)")
    c.add_argument("--mem-gb", type=float, default=4, help="address-space limit per command (default 4)")
    c.add_argument("--max-mb", type=float, default=50, help="skip files larger than this (default 50)")
    c.add_argument("--python", default=sys.executable, help="the Python that runs npmobilebert and LiteRT")
    c.add_argument("--src", type=Path, default=REPO / "src", help="npmobilebert's source (PYTHONPATH)")
    c.add_argument("--json-out", type=Path, default=DOCS / "real_files.json")
    c.add_argument("--md-out", type=Path, default=DOCS / "real_files.md")
    p = sub.add_parser("litert-probe", help=argparse.SUPPRESS)
    p.add_argument("model")
    args = parser.parse_args(argv)
    if args.command == "gather":
        return gather(args.out.expanduser().resolve(), args.mirrors)
    if args.command == "litert-probe":
        print(json.dumps(litert_probe(args.model)), flush=True)
        return 0
    args.argv_echo = [a for a in argv[1:]]
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
