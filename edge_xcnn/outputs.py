"""Output paths checked before any work, and opened without following symlinks or clobbering.

Every command that writes a file (run's video/JSON/MOT/summary, eval's JSON and figure, export's
ONNX and engines, train's folder, demo's folder) checks its paths here first, so a mistake costs one
line instead of a finished epoch, and opens them here last, so a run that fails before its first
frame leaves earlier files as they were. An existing file is replaced only when the user asked
(``--overwrite``/``-y``, as ffmpeg's ``-y``); a symlink is never written through.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from edge_xcnn.errors import EdgeXcnnError


class OutputError(EdgeXcnnError):
    """An output path that cannot or must not be written."""


def _nearest_existing(path: Path) -> Path:
    current = path
    while not os.path.lexists(current):
        parent = current.parent
        if parent == current:
            break
        current = parent
    return current


def check_output(path: str | os.PathLike[str], *, overwrite: bool, folder: bool = False, what: str = "output") -> Path:
    """Refuse ``path`` now if writing it later would fail or clobber something.

    Args:
        path: the file (or, with ``folder``, the folder) to be written.
        overwrite: an existing file may be replaced (``--overwrite``/``-y``).
        folder: ``path`` is a folder of outputs (image frames, a run folder); it may exist when empty.
        what: the option's name for the message (``--json``).

    Returns:
        ``path`` as a Path.
    """
    target = Path(path)
    if not str(path).strip():
        raise OutputError(f"{what}: the path is empty")
    if target.is_symlink():
        raise OutputError(f"{what}: {target} is a symlink; outputs never follow symlinks: give the real path")
    if target.exists():
        if folder:
            if not target.is_dir():
                raise OutputError(f"{what}: {target} is a file, not a folder")
            if any(target.iterdir()) and not overwrite:
                raise OutputError(f"{what}: folder {target} is not empty: pass --overwrite (-y) to write into it")
        else:
            if target.is_dir():
                raise OutputError(f"{what}: {target} is a folder, not a file")
            if not overwrite:
                raise OutputError(f"{what}: {target} exists: pass --overwrite (-y) to replace it")
        if not os.access(target if target.is_dir() else target.parent, os.W_OK):
            raise OutputError(f"{what}: cannot write {target}: permission denied")
        return target
    base = _nearest_existing(target.parent if str(target.parent) else Path("."))
    if base.is_symlink() and not base.is_dir():
        raise OutputError(f"{what}: cannot write {target}: {base} is a dangling symlink")
    if not base.is_dir():
        raise OutputError(f"{what}: cannot write {target}: {base} is not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(f"{what}: cannot write {target}: permission denied in {base}")
    return target


def open_output(path: str | os.PathLike[str], *, overwrite: bool, append: bool = False) -> BinaryIO:
    """Open ``path`` for writing, unbuffered: never through a symlink, an existing file only with ``overwrite``.

    The check is in the ``open`` call itself (``O_NOFOLLOW``, ``O_EXCL``), so nothing can slip in
    between the check before the run and the write.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot write {target}: {e.strerror}") from e
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= (os.O_TRUNC if overwrite else os.O_EXCL) | (os.O_APPEND if append else 0)
    try:
        fd = os.open(target, flags, 0o666)
    except FileExistsError as e:
        if target.is_symlink():
            raise OutputError(f"{target} is a symlink; outputs never follow symlinks") from e
        raise OutputError(f"{target} exists: pass --overwrite (-y) to replace it") from e
    except OSError as e:
        if target.is_symlink():
            raise OutputError(f"{target} is a symlink; outputs never follow symlinks") from e
        raise OutputError(f"cannot write {target}: {e.strerror}") from e
    return os.fdopen(fd, "wb", buffering=0)


def next_run_folder(base: Path = Path("runs"), name: str = "run") -> Path:
    """``runs/run``, or ``runs/run2``, ``runs/run3``... the first that does not exist: a run never clobbers another."""
    candidate, n = base / name, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = base / f"{name}{n}"
    return candidate
