"""Atomic output files: a run that is interrupted never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import InputError


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or a one-line error naming the extra.
    Called before a long run that ends in a chart, as well as to draw it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install 'npmobilebert[plot]'") from None
    return plt


def check_writable(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = ()) -> None:
    """Fail early -- before a long run -- when ``path`` cannot be written.

    The directory must exist: a typo in it should be an error, not a new directory tree.
    ``inputs``: the files the command reads; an output that is one of them (the same file, by
    any name: a link, a relative path) would replace its own input, and is refused.
    """
    target = Path(path)
    parent = target.parent
    name_max = _name_max(parent)
    if len(os.fsencode(target.name)) > name_max:
        raise InputError(f"cannot write {target}: the file name is longer than {name_max} bytes")
    if target.is_dir():
        raise InputError(f"cannot write {target}: it is a directory")
    for source in inputs:
        if source is not None and target.exists() and os.path.exists(source) \
                and os.path.samefile(target, source):
            raise InputError(f"cannot write {target}: it is an input of this command ({source})")
    if _is_special(target):     # /dev/stdout, /dev/null, a pipe: written in place
        if not os.access(target, os.W_OK):
            raise InputError(f"cannot write {target}: permission denied")
        return
    if not parent.is_dir():
        reason = "is not a directory" if parent.exists() else "does not exist"
        raise InputError(f"cannot write {target}: the directory {parent} {reason}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {target}: the directory {parent} is not writable")


def _name_max(directory: Path) -> int:
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _is_special(path: Path) -> bool:
    """An existing path that is not a regular file or a directory (a device, a pipe)."""
    return path.exists() and not path.is_file() and not path.is_dir()


def first_bad_byte(path: str | os.PathLike) -> str:
    """Where a file stops being UTF-8 (the decoder's own offsets are relative to a read block)."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return f"byte 0x{raw[e.start]:02x} on line {line}"
    return "undecodable bytes"


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else delete it.

    Whatever goes wrong -- an exception in the writer, Ctrl-C, a full disk -- the temporary file
    is removed and ``path`` keeps its old content (or stays absent).  OSErrors become one-line
    :class:`InputError` naming ``path``, not the temporary name the user never chose.  A symlink
    keeps pointing at its (replaced) file; a device or a pipe (``/dev/stdout``) is written in place.
    """
    check_writable(path)
    target = Path(path)
    if _is_special(target):
        # a device or a pipe has no directory entry to replace: renaming over /dev/stdout would
        # replace the device with a file (as root), so it is written in place, not atomically
        try:
            yield str(target)
        except OSError as e:
            raise InputError(f"cannot write {target}: {e.strerror or e}") from None
        return
    final = Path(os.path.realpath(target))    # a symlink keeps pointing at the file it names
    _remove_stale_parts(final)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_part_prefix(final.name, os.getpid()), suffix=".part",
                                   dir=final.parent)
    except OSError as e:
        raise InputError(f"cannot write {target}: {e.strerror or e}") from None
    os.close(fd)
    try:
        try:
            mode = stat.S_IMODE(os.stat(final).st_mode)     # a replaced file keeps its mode
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask   # mkstemp's 0600 would make every report private to its writer
        os.chmod(tmp, mode)
        yield tmp
        os.replace(tmp, final)
    except OSError as e:
        raise InputError(f"cannot write {target}: {e.strerror or e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# The temporary file beside an output: ".<up to 32 characters of its name>.<writer's pid>.<random>.part",
# short enough beside any legal name, and recognisable: a writer killed by SIGKILL (or a power
# cut) cannot delete its own, so the next write to the same directory deletes the parts of
# writers that no longer run.
_PART_NAME_CHARS = 32
_PART = re.compile(r"\.(?P<name>.*)\.(?P<pid>[0-9]+)\.[A-Za-z0-9_]{8}\.part\Z", re.DOTALL)


def _part_prefix(name: str, pid: int) -> str:
    return f".{name[:_PART_NAME_CHARS]}.{pid}."


def _remove_stale_parts(final: Path) -> None:
    """Delete the temporary files that writers of ``final``'s directory left when killed."""
    try:
        entries = os.listdir(final.parent)
    except OSError:
        return
    for entry in entries:
        match = _PART.match(entry)
        if not match or len(match["name"]) > _PART_NAME_CHARS or _running(int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            os.unlink(final.parent / entry)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True     # another user's process (or a pid no process can have): not ours to judge
    return True


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """An .npz that ``np.load`` reads, keyed by tensor name.

    Written member by member instead of ``np.savez(f, **arrays)``: tensor names are arbitrary
    strings from the model, and one called ``file`` or ``allow_pickle`` would collide with
    savez's own parameters.
    """
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, value in arrays.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def save_json(path: str | os.PathLike, data) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, default=_json_default)
            f.write("\n")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
