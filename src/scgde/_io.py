"""Atomic file writing: a failed write never leaves a half-written file behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it to ``path``.

    The rename is atomic on POSIX file systems, so ``path`` holds either its old content or the
    complete new file. The temporary file is removed if ``write`` fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def write_dir_atomic(
    path: str | os.PathLike, write: Callable[[Path], None], overwrite: bool = False
) -> Path:
    """Fill a fresh temporary folder with ``write(tmp_dir)``, then move it to ``path``.

    A failure leaves ``path`` as it was (absent, or the previous folder) and removes the
    temporary folder. An existing ``path`` raises ``ValueError`` if it is a file, or if
    ``overwrite=False``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a folder; choose another path.")
    if path.exists() and not overwrite:
        raise ValueError(f"{path} already exists; pass overwrite=True to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        write(tmp_dir)
        if path.exists():
            previous = tmp_dir.with_name(tmp_dir.name + ".previous")
            os.replace(path, previous)
            os.replace(tmp_dir, path)
            shutil.rmtree(previous)
        else:
            os.replace(tmp_dir, path)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return path
