"""Download, cache and checksum helpers shared by the on-demand dataset loaders.

A loader (:mod:`scgde.datasets._larry`, :mod:`scgde.datasets._perturbseq`) keeps its sources in
a module-level dict (URL, file name, expected checksums) and uses these helpers for the rest:

- :func:`default_cache_dir`: ``$SCGDE_DATA_DIR/<name>``, else ``~/.cache/scgde/<name>``.
- :func:`file_digests`: SHA-256 and MD5 of a file, in one pass.
- :func:`verify_file`: check a cached file against its recorded checksums.
- :func:`download`: stream a URL to a file atomically, verify it, and return its digests.

Checksum convention: an expected checksum of ``None`` means *not yet recorded*. The file is
then accepted; :func:`download` shows its observed SHA-256 in a :class:`UserWarning` so that
it can be pasted into the loader's record (cached files are accepted silently). A recorded
checksum that differs raises :class:`ValueError`.

Messages name the data set through ``what`` (e.g. ``"LARRY file 'x.mtx.gz'"``, read after
"the"), so the user learns which file failed, from where, and where to put it by hand to work
offline.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import sys
import urllib.request
import warnings
from collections.abc import Mapping
from pathlib import Path

from .._io import write_atomic

logger = logging.getLogger(__name__)

#: Seconds a connection or a read may stall before the download fails.
TIMEOUT_S = 60
#: Bytes read (and hashed) at a time.
CHUNK = 1 << 20
#: The algorithms :func:`file_digests` and :func:`download` compute, in the order checked.
ALGORITHMS = ("sha256", "md5")


def default_cache_dir(name: str) -> Path:
    """Cache folder of the data set ``name``.

    ``$SCGDE_DATA_DIR/<name>`` if the environment variable ``SCGDE_DATA_DIR`` is set, else
    ``~/.cache/scgde/<name>``. The folder is not created.
    """
    root = os.environ.get("SCGDE_DATA_DIR")
    if root:
        return Path(root).expanduser() / name
    return Path.home() / ".cache" / "scgde" / name


def _hashers() -> dict:
    return {"sha256": hashlib.sha256(), "md5": hashlib.md5(usedforsecurity=False)}


def file_digests(path: str | os.PathLike) -> dict[str, str]:
    """``{"sha256": ..., "md5": ...}`` of a file (lowercase hex), read once in chunks."""
    hashers = _hashers()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {algo: hasher.hexdigest() for algo, hasher in hashers.items()}


def checksum_mismatch(
    observed: Mapping[str, str], *, sha256: str | None = None, md5: str | None = None
) -> str | None:
    """``"expected <algo>=<x>, got <y>"`` for the first recorded checksum that differs from
    ``observed`` (a :func:`file_digests` dict), or ``None`` if all recorded ones match.
    ``None`` checksums are not yet recorded and are not checked; case does not matter."""
    for algo, expected in (("sha256", sha256), ("md5", md5)):
        if expected is not None and observed[algo] != expected.lower():
            return f"expected {algo}={expected}, got {observed[algo]}"
    return None


def verify_file(
    path: str | os.PathLike,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    what: str,
    retry: str,
) -> dict[str, str]:
    """Digests of a cached file, after checking them against the recorded checksums.

    Parameters
    ----------
    path
        The cached file.
    sha256, md5
        Recorded checksums; ``None``: not yet recorded, accepted without a warning.
    what
        The file in words, e.g. ``"LARRY file"`` (the message reads "the cached <what>
        <path>").
    retry
        The call that downloads the file anew, e.g. ``"larry()"``.

    Raises
    ------
    ValueError
        If a recorded checksum differs. The file is kept (it may be the user's own).
    """
    observed = file_digests(path)
    problem = checksum_mismatch(observed, sha256=sha256, md5=md5)
    if problem:
        raise ValueError(
            f"Checksum mismatch for the cached {what} {path}: {problem}. The file is corrupt "
            f"or not the published one; delete it and call {retry} again to download it."
        )
    return observed


def _outside_stacklevel() -> int:
    """``stacklevel`` for :func:`warnings.warn` (called by the caller of this function) that
    points at the first frame outside the scgde package, i.e. the user's call of a loader."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("scgde."):
        level, frame = level + 1, frame.f_back
    return level


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    what: str,
    manual: str = "",
    record: str = "",
    timeout: float = TIMEOUT_S,
) -> dict[str, str]:
    """Download ``url`` to ``dest`` atomically, verify it and return its digests.

    The response is streamed to a temporary file beside ``dest`` (hashing as it goes) and
    renamed to ``dest`` only once complete and matching the recorded checksums, so an
    interrupted or corrupt download never appears at ``dest`` (the temporary file is removed).

    Parameters
    ----------
    url
        Where the file comes from (opened with :func:`urllib.request.urlopen`).
    dest
        Where it goes; parent folders are created.
    sha256, md5
        Recorded checksums. ``None`` means not yet recorded: the file is accepted, and if
        ``sha256`` is ``None`` a :class:`UserWarning` shows the observed SHA-256 (and says
        whether a recorded MD5 matched) so that it can be recorded.
    what
        The file in words, naming the data set, e.g. ``"LARRY file 'x.mtx.gz'"`` (messages
        put "the" before it).
    manual
        What to do after placing the file at ``dest`` by hand, appended to the error of a
        failed download, e.g. ``"then call larry(cache_dir='...')"``.
    record
        Where to record the SHA-256, for the warning, e.g.
        ``"_FILES['counts']['sha256'] in scgde/datasets/_larry.py"``.
    timeout
        Seconds a connection or read may stall.

    Returns
    -------
    dict
        ``{"sha256": ..., "md5": ...}`` of the downloaded file.

    Raises
    ------
    ConnectionError
        If the download fails (no network, timeout, HTTP error, interrupted transfer); the
        message names ``what``, the URL, the cause and where to place the file by hand.
    ValueError
        If a recorded checksum does not match (the download is deleted).
    """
    dest = Path(dest)
    observed: dict[str, str] = {}

    def failed(exc: BaseException) -> ConnectionError:
        then = f", {manual}" if manual else ""
        return ConnectionError(
            f"Could not download the {what} from {url} ({exc}). Check your internet connection, "
            f"or download the file by other means and place it at {dest}{then}."
        )

    def write(tmp: Path) -> None:
        hashers = _hashers()
        logger.info("Downloading %s to %s", url, dest)
        try:
            response = urllib.request.urlopen(url, timeout=timeout)
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts are OSErrors
            raise failed(exc) from exc
        with response, open(tmp, "wb") as fh:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise failed(exc) from exc
                if not chunk:
                    break
                for hasher in hashers.values():
                    hasher.update(chunk)
                fh.write(chunk)
        observed.update({algo: hasher.hexdigest() for algo, hasher in hashers.items()})
        problem = checksum_mismatch(observed, sha256=sha256, md5=md5)
        if problem:
            raise ValueError(
                f"Checksum mismatch for the downloaded {what} from {url}: {problem}. The "
                "download was deleted; try again, and report it if the mismatch persists (the "
                "file may have changed upstream)."
            )

    write_atomic(dest, write)
    if sha256 is None:
        md5_note = "its MD5 matched the record" if md5 is not None else "no MD5 on record either"
        where = f" as {record}" if record else ""
        warnings.warn(
            f"No SHA-256 checksum on record for the {what}; accepted it ({md5_note}; observed "
            f"sha256={observed['sha256']}). Record it{where} to verify future downloads.",
            UserWarning,
            stacklevel=_outside_stacklevel(),
        )
    return observed
