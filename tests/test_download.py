"""Tests of scgde.datasets._download, the download, cache and checksum helpers of the on-demand
loaders (their use by each loader is tested in test_larry.py and test_perturbseq.py). No test
touches the network: ``urllib.request.urlopen`` is replaced for every test (by a fake serving
bytes, or failing)."""

from __future__ import annotations

import hashlib
import http.client
import io
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import pytest

from scgde.datasets import _download

URL = "https://example.org/data/file.bin?download=1"
WHAT = "demo file 'file.bin'"
BLOB = bytes(range(256)) * 50  # 12,800 bytes


def _sha(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _md5(blob: bytes) -> str:
    return hashlib.md5(blob).hexdigest()


class FakeServer:
    """Stands in for urllib.request.urlopen: serves one blob in small reads, or fails."""

    def __init__(self, blob: bytes = BLOB, fail: BaseException | None = None):
        self.blob, self.fail, self.calls = blob, fail, []

    def __call__(self, url, timeout=None):
        self.calls.append((url, timeout))
        if self.fail is not None:
            raise self.fail
        return io.BytesIO(self.blob)


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(_download, "CHUNK", 1000)  # several reads per file


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------------------ cache folder
def test_default_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SCGDE_DATA_DIR", str(tmp_path / "data"))
    assert _download.default_cache_dir("larry") == tmp_path / "data" / "larry"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCGDE_DATA_DIR", "~/elsewhere")
    assert _download.default_cache_dir("x") == tmp_path / "home" / "elsewhere" / "x"
    monkeypatch.delenv("SCGDE_DATA_DIR")
    expected = tmp_path / "home" / ".cache" / "scgde" / "norman2019"
    assert _download.default_cache_dir("norman2019") == expected
    assert not expected.exists()  # not created


# ------------------------------------------------------------------------------ checksums
@pytest.mark.parametrize("blob", [b"", b"abc", BLOB])
def test_file_digests(tmp_path, small_chunks, blob):
    path = tmp_path / "f.bin"
    path.write_bytes(blob)
    assert _download.file_digests(path) == {"sha256": _sha(blob), "md5": _md5(blob)}


def test_checksum_mismatch():
    observed = {"sha256": _sha(BLOB), "md5": _md5(BLOB)}
    assert _download.checksum_mismatch(observed) is None  # nothing recorded: accepted
    assert _download.checksum_mismatch(observed, sha256=_sha(BLOB).upper(), md5=_md5(BLOB)) is None
    problem = _download.checksum_mismatch(observed, md5="0" * 32)
    assert problem == f"expected md5={'0' * 32}, got {_md5(BLOB)}"
    both = _download.checksum_mismatch(observed, sha256="f" * 64, md5="0" * 32)
    assert both.startswith("expected sha256=ffff")  # SHA-256 reported first


def test_verify_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(BLOB)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unrecorded checksum is accepted silently here
        assert _download.verify_file(path, what="demo file", retry="demo()") == {
            "sha256": _sha(BLOB),
            "md5": _md5(BLOB),
        }
    assert _download.verify_file(path, sha256=_sha(BLOB), md5=_md5(BLOB), what="x", retry="y")
    with pytest.raises(ValueError) as info:
        _download.verify_file(path, md5="0" * 32, what="demo file", retry="demo()")
    message = str(info.value)
    assert message.startswith(f"Checksum mismatch for the cached demo file {path}: expected md5=")
    assert _md5(BLOB) in message and "delete it and call demo() again" in message
    assert path.read_bytes() == BLOB  # reported, not deleted


# ------------------------------------------------------------------------------ download
def test_download_streams_and_verifies(tmp_path, small_chunks, monkeypatch):
    server = FakeServer()
    monkeypatch.setattr(urllib.request, "urlopen", server)
    dest = tmp_path / "new" / "folder" / "file.bin"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recorded and matching: no warning
        digests = _download.download(
            URL, dest, sha256=_sha(BLOB).upper(), md5=_md5(BLOB), what=WHAT, timeout=7
        )
    assert digests == {"sha256": _sha(BLOB), "md5": _md5(BLOB)}
    assert server.calls == [(URL, 7)]
    assert dest.read_bytes() == BLOB
    assert _leftovers(dest.parent) == ["file.bin"]  # no temporary file left


def test_download_default_timeout(tmp_path, monkeypatch):
    server = FakeServer()
    monkeypatch.setattr(urllib.request, "urlopen", server)
    _download.download(URL, tmp_path / "f.bin", sha256=_sha(BLOB), what=WHAT)
    assert server.calls == [(URL, _download.TIMEOUT_S)]


@pytest.mark.parametrize("md5", [None, "recorded"])
def test_download_unrecorded_sha256_warns(tmp_path, monkeypatch, md5):
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer())
    record = "_FILES['x']['sha256'] in scgde/datasets/_demo.py"
    with pytest.warns(UserWarning, match="No SHA-256 checksum on record for the demo") as caught:
        digests = _download.download(
            URL,
            tmp_path / "f.bin",
            md5=_md5(BLOB) if md5 else None,
            what=WHAT,
            record=record,
        )
    assert digests["sha256"] == _sha(BLOB)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert f"observed sha256={_sha(BLOB)}" in message and f"Record it as {record}" in message
    note = "its MD5 matched the record" if md5 else "no MD5 on record either"
    assert note in message
    assert caught[0].filename == __file__  # points at the caller outside scgde


@pytest.mark.parametrize("algo", ["sha256", "md5"])
def test_download_wrong_checksum_is_deleted(tmp_path, small_chunks, monkeypatch, algo):
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer())
    dest = tmp_path / "cache" / "file.bin"
    wrong = {"sha256": "f" * 64, "md5": "f" * 32}[algo]
    with pytest.raises(ValueError) as info:
        _download.download(URL, dest, **{algo: wrong}, what=WHAT)
    message = str(info.value)
    assert message.startswith(f"Checksum mismatch for the downloaded {WHAT} from {URL}: ")
    assert f"expected {algo}={wrong}, got " in message and "deleted" in message
    assert _leftovers(dest.parent) == []  # neither the file nor a temporary one
    # an existing file at dest is left as it was
    dest.write_bytes(b"old")
    with pytest.raises(ValueError, match="Checksum mismatch"):
        _download.download(URL, dest, **{algo: wrong}, what=WHAT)
    assert dest.read_bytes() == b"old" and _leftovers(dest.parent) == ["file.bin"]


@pytest.mark.parametrize(
    "error",
    [
        urllib.error.URLError("[Errno -3] Temporary failure in name resolution"),
        TimeoutError("timed out"),
        urllib.error.HTTPError("http://x", 404, "Not Found", None, None),
        http.client.RemoteDisconnected("Remote end closed connection"),
    ],
)
def test_offline_error(tmp_path, monkeypatch, error):
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer(fail=error))
    dest = tmp_path / "cache" / "file.bin"
    manual = "then call demo(cache_dir=...)"
    with pytest.raises(ConnectionError) as info:
        _download.download(URL, dest, what=WHAT, manual=manual)
    message = str(info.value)
    assert message.startswith(f"Could not download the {WHAT} from {URL} ({error})")
    assert f"place it at {dest}, {manual}." in message
    assert info.value.__cause__ is error
    assert _leftovers(dest.parent) == []


def test_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    class Broken(io.BytesIO):
        def read(self, n=-1):
            if self.tell() > 10:
                raise http.client.IncompleteRead(b"partial")
            return super().read(min(n, 16))

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Broken(b"x" * 100))
    dest = tmp_path / "cache" / "file.bin"
    with pytest.raises(ConnectionError, match="Could not download the demo file 'file.bin'"):
        _download.download(URL, dest, what=WHAT)
    assert _leftovers(dest.parent) == []  # nothing partial to be mistaken for a cached file
