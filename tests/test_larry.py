"""Tests of scgde.datasets.larry, the on-demand LARRY loader, on tiny files in the published
formats (gzip'd MatrixMarket and text). No test touches the network: ``urllib.request.urlopen``
is replaced by a fake for every test (serving the tiny files, or failing)."""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.io
from scipy import sparse

from scgde.datasets import _larry
from scgde.datasets._larry import larry

GENES = ["Gata1", "Mpo", "Elane", "Cd34"]
COUNTS = np.array(
    [
        [0.0, 1.5, 0.0, 2.25],
        [3.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 4.5, 1.0],
        [0.5, 0.5, 0.0, 0.0],
        [0.0, 0.0, 0.0, 7.0],
        [1.25, 0.0, 2.0, 0.0],
    ],
    dtype=np.float32,
)
# cell -> clone column: 0 and 2 in clone 1, 3 in clone 0, 5 in clone 2; 1 and 4 in none
CLONES = np.zeros((6, 3))
CLONES[[0, 2], 1] = 1
CLONES[3, 0] = 1
CLONES[5, 2] = 1
METADATA = pd.DataFrame(
    {
        "Library": ["d2_1", "d2_1", "d4_1", "d4_2", "d6_1", "d6_2"],
        "Cell barcode": ["AAAC-TTG", "AAAG-CCA", "ACGT-ACGT", "AAAC-TTG", "GGGA-TTA", "CATG-AAT"],
        "Time point": [2.0, 2.0, 4.0, 4.0, 6.0, 6.0],
        "Starting population": ["Lin-Kit+Sca1+", "Lin-Kit+", "Lin-Kit+Sca1+", "Lin-Kit+"] * 1
        + ["Lin-Kit+Sca1+", "Lin-Kit+"],
        "Cell type annotation": [
            "Undifferentiated",
            "Undifferentiated",
            "Neutrophil",
            "Monocyte",
            "Baso",
            "Neutrophil",
        ],
        "Well": [0, 0, 1, 2, 1, 2],
        "SPRING-x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "SPRING-y": [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0],
    }
)


def _mtx_bytes(matrix) -> bytes:
    buf = io.BytesIO()
    scipy.io.mmwrite(buf, sparse.coo_matrix(matrix))
    return buf.getvalue()


def _file_bytes(counts=COUNTS, genes=GENES, clones=CLONES, metadata=METADATA) -> dict:
    meta = metadata.to_csv(sep="\t", index=False).encode()
    return {
        "counts": gzip.compress(_mtx_bytes(counts)),
        "gene_names": gzip.compress(("\n".join(genes) + "\n").encode()),
        "clone_matrix": gzip.compress(_mtx_bytes(clones)),
        "metadata": gzip.compress(meta),
    }


def _write(folder: Path, blobs: dict) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, blob in blobs.items():
        paths[key] = folder / _larry._FILES[key]["filename"]
        paths[key].write_bytes(blob)
    return paths


def _sha(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _set_checksums(monkeypatch, checksums: dict) -> None:
    files = copy.deepcopy(_larry._FILES)
    for key, value in checksums.items():
        files[key]["sha256"] = value
    monkeypatch.setattr(_larry, "_FILES", files)


class FakeServer:
    """Stands in for urllib.request.urlopen: serves blobs by URL and records the calls."""

    def __init__(self, blobs: dict, fail=None):
        self.by_url = {_larry._FILES[key]["url"]: blob for key, blob in blobs.items()}
        self.calls: list[str] = []
        self.fail = fail

    def __call__(self, url, timeout=None):
        self.calls.append(url)
        if self.fail is not None:
            raise self.fail
        return io.BytesIO(self.by_url[url])


@pytest.fixture
def blobs():
    return _file_bytes()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------------------ parsing
def test_parse_local_files(tmp_path, blobs):
    paths = _write(tmp_path / "src", blobs)
    adata = larry(cache_dir=tmp_path / "cache", files=paths)

    assert adata.shape == (6, 4)
    assert sparse.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), COUNTS)
    assert list(adata.var_names) == GENES
    assert list(adata.obs_names) == [str(i) for i in range(6)]

    obs = adata.obs
    assert list(obs["library"]) == list(METADATA["Library"])
    assert list(obs["barcode"]) == list(METADATA["Cell barcode"])
    assert list(obs["starting_population"]) == list(METADATA["Starting population"])
    assert list(obs["cell_type"]) == list(METADATA["Cell type annotation"])
    assert list(obs["well"]) == [0, 0, 1, 2, 1, 2]
    for key in ("library", "starting_population", "cell_type", "well", "time_point", "clone"):
        assert isinstance(obs[key].dtype, pd.CategoricalDtype), key
    assert obs["time_point"].cat.ordered
    assert list(obs["time_point"].cat.categories) == [2, 4, 6]
    assert list(obs["time_point"]) == [2, 2, 4, 4, 6, 6]
    assert not {"Time point", "SPRING-x", "SPRING-y"} & set(obs.columns)

    # clone assignment from the clone matrix; codes are the clone-matrix columns
    assert list(obs["clone"].cat.categories) == ["c0", "c1", "c2"]
    assert list(obs["clone"].cat.codes) == [1, -1, 1, 0, -1, 2]
    assert obs["clone"].isna().tolist() == [False, True, False, False, True, False]
    assert obs["clone_time"].tolist()[:1] == ["c1|d2"]
    assert obs["clone_time"].isna().tolist() == [False, True, False, False, True, False]
    assert list(obs["clone_time"].dropna()) == ["c1|d2", "c1|d4", "c0|d4", "c2|d6"]
    assert list(obs["clone_time"].cat.categories) == ["c0|d4", "c1|d2", "c1|d4", "c2|d6"]

    np.testing.assert_array_equal(
        adata.obsm["X_spring"], METADATA[["SPRING-x", "SPRING-y"]].to_numpy()
    )
    np.testing.assert_array_equal(adata.obsm["X_clone"].toarray(), CLONES)

    info = adata.uns["larry"]
    assert info["sha256"] == {key: _sha(blob) for key, blob in blobs.items()}
    assert "not raw" in info["normalization"] and "Weinreb" in info["citation"]
    assert info["n_cells_in_several_clones"] == 0
    assert not (tmp_path / "cache").exists()  # nothing was needed from the cache
    adata.write_h5ad(tmp_path / "larry.h5ad")
    back = anndata.read_h5ad(tmp_path / "larry.h5ad")
    pd.testing.assert_frame_equal(back.obs, adata.obs)


def test_uncompressed_files_and_extra_columns(tmp_path):
    meta = METADATA.assign(**{"Pseudo time (x)": np.arange(6.0)})
    meta["Time point"] = meta["Time point"].astype(int)
    blobs = _file_bytes(metadata=meta)
    plain = {key: gzip.decompress(blob) for key, blob in blobs.items()}
    folder = tmp_path / "plain"
    folder.mkdir()
    paths = {}
    for key, blob in plain.items():
        paths[key] = folder / f"{key}.txt"
        paths[key].write_bytes(blob)
    adata = larry(cache_dir=tmp_path / "cache", files=paths)
    np.testing.assert_array_equal(adata.X.toarray(), COUNTS)
    np.testing.assert_array_equal(adata.obs["pseudo_time_x"], np.arange(6.0))
    assert list(adata.obs["time_point"].cat.categories) == [2, 4, 6]


def test_multi_clone_policies(tmp_path):
    clones = CLONES.copy()
    clones[0, 2] = 1  # cell 0 in clones 1 and 2
    paths = _write(tmp_path / "src", _file_bytes(clones=clones))
    with pytest.raises(ValueError, match=r"1 cells belong to more than one clone.*row 0"):
        larry(cache_dir=tmp_path / "cache", files=paths)
    first = larry(cache_dir=tmp_path / "cache", files=paths, multi_clone="first")
    assert first.obs["clone"].iloc[0] == "c1"
    assert first.uns["larry"]["n_cells_in_several_clones"] == 1
    drop = larry(cache_dir=tmp_path / "cache", files=paths, multi_clone="drop")
    assert pd.isna(drop.obs["clone"].iloc[0]) and pd.isna(drop.obs["clone_time"].iloc[0])
    assert drop.obs["clone"].iloc[2] == "c1"
    np.testing.assert_array_equal(drop.obsm["X_clone"].toarray(), clones)
    with pytest.raises(ValueError, match="multi_clone must be"):
        larry(files=paths, multi_clone="last")


def test_inconsistent_files(tmp_path, blobs):
    paths = _write(tmp_path / "src", blobs)
    bad_genes = tmp_path / "genes.txt"
    bad_genes.write_text("A\nB\nC\n")
    with pytest.raises(ValueError, match="4 columns.*lists 3 gene names"):
        larry(files={**paths, "gene_names": bad_genes})
    bad_meta = tmp_path / "meta.tsv"
    bad_meta.write_text(METADATA.iloc[:5].to_csv(sep="\t", index=False))
    with pytest.raises(ValueError, match="6 rows.*metadata.*has 5"):
        larry(files={**paths, "metadata": bad_meta})
    bad_clones = tmp_path / "clones.mtx"
    bad_clones.write_bytes(_mtx_bytes(CLONES[:4]))
    with pytest.raises(ValueError, match="clone_matrix.*has 4"):
        larry(files={**paths, "clone_matrix": bad_clones})
    no_time = tmp_path / "no_time.tsv"
    no_time.write_text(METADATA.drop(columns="Time point").to_csv(sep="\t", index=False))
    with pytest.raises(ValueError, match="no 'Time point' column"):
        larry(files={**paths, "metadata": no_time})
    not_mtx = tmp_path / "not.mtx"
    not_mtx.write_text("hello\n")
    with pytest.raises(ValueError, match="MatrixMarket"):
        larry(files={**paths, "counts": not_mtx})
    with pytest.raises(ValueError, match="Unknown keys in files: \\['count'\\]"):
        larry(files={"count": paths["counts"]})
    with pytest.raises(FileNotFoundError, match="files\\['metadata'\\]"):
        larry(files={**paths, "metadata": tmp_path / "missing.tsv"})


# ------------------------------------------------------------------------------ cache
def test_cached_files_need_no_network(tmp_path, blobs, monkeypatch):
    cache = tmp_path / "cache"
    _write(cache, blobs)
    _set_checksums(monkeypatch, {key: _sha(blob) for key, blob in blobs.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known checksums: no warning
        adata = larry(cache_dir=cache, download=False)
    np.testing.assert_array_equal(adata.X.toarray(), COUNTS)
    assert adata.uns["larry"]["files"]["counts"] == "stateFate_inVitro_normed_counts.mtx.gz"


def test_cached_file_with_wrong_checksum(tmp_path, blobs, monkeypatch):
    cache = tmp_path / "cache"
    paths = _write(cache, blobs)
    _set_checksums(monkeypatch, {"metadata": "0" * 64})
    with pytest.raises(ValueError, match="Checksum mismatch for the cached LARRY file.*metadata"):
        larry(cache_dir=cache)
    assert paths["metadata"].exists()  # a user's file is reported, not deleted


def test_missing_files_without_download(tmp_path, blobs):
    cache = tmp_path / "cache"
    with pytest.raises(FileNotFoundError) as info:
        larry(cache_dir=cache, download=False)
    message = str(info.value)
    for spec in _larry._FILES.values():
        assert spec["filename"] in message and spec["url"] in message
    assert "download=False" in message and str(cache) in message
    _write(cache, {k: blobs[k] for k in ("counts", "metadata")})
    with pytest.raises(FileNotFoundError) as info:
        larry(cache_dir=cache, download=False)
    message = str(info.value)
    assert "gene_names" in message and "clone_matrix" in message
    assert "normed_counts" not in message and "metadata.txt" not in message


def test_default_cache_dir(tmp_path, blobs, monkeypatch):
    # the folder rule itself is tested in test_download.py; here: larry() uses "larry"
    monkeypatch.setenv("SCGDE_DATA_DIR", str(tmp_path / "data"))
    _write(tmp_path / "data" / "larry", blobs)
    assert larry(download=False).shape == (6, 4)
    monkeypatch.delenv("SCGDE_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(FileNotFoundError, match="cache folder .*/home/.cache/scgde/larry"):
        larry(download=False)


# ------------------------------------------------------------------------------ download
def test_download_with_checksums(tmp_path, blobs, monkeypatch):
    cache = tmp_path / "cache"
    server = FakeServer(blobs)
    monkeypatch.setattr(urllib.request, "urlopen", server)
    _set_checksums(monkeypatch, {key: _sha(blob) for key, blob in blobs.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adata = larry(cache_dir=cache)
    assert sorted(server.calls) == sorted(s["url"] for s in _larry._FILES.values())
    np.testing.assert_array_equal(adata.X.toarray(), COUNTS)
    assert list(adata.obs["clone"].cat.codes) == [1, -1, 1, 0, -1, 2]
    # exactly the four published names, no temporary files left behind
    assert _leftovers(cache) == sorted(s["filename"] for s in _larry._FILES.values())
    for key, blob in blobs.items():
        assert (cache / _larry._FILES[key]["filename"]).read_bytes() == blob
    # a second call uses the cache
    larry(cache_dir=cache)
    assert len(server.calls) == 4


def test_download_unknown_checksum_warns(tmp_path, blobs, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer(blobs))
    _set_checksums(monkeypatch, dict.fromkeys(blobs))
    with pytest.warns(UserWarning, match="No SHA-256 checksum on record") as record:
        adata = larry(cache_dir=tmp_path / "cache")
    observed = {key: _sha(blob) for key, blob in blobs.items()}
    messages = " ".join(str(w.message) for w in record)
    assert all(h in messages for h in observed.values())
    assert "_FILES['metadata']['sha256'] in scgde/datasets/_larry.py" in messages
    assert {w.filename for w in record} == {__file__}  # points at the call of larry()
    assert adata.uns["larry"]["sha256"] == observed


def test_download_wrong_checksum_is_deleted(tmp_path, blobs, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer(blobs))
    checksums = {key: _sha(blob) for key, blob in blobs.items()}
    checksums["clone_matrix"] = "f" * 64
    _set_checksums(monkeypatch, checksums)
    with pytest.raises(ValueError, match="stateFate_inVitro_clone_matrix.mtx.gz") as info:
        larry(cache_dir=cache)
    assert "Checksum mismatch" in str(info.value) and "deleted" in str(info.value)
    assert not (cache / "stateFate_inVitro_clone_matrix.mtx.gz").exists()
    # files before it in _FILES order were downloaded and verified; no partial/temp files
    assert _leftovers(cache) == [
        "stateFate_inVitro_gene_names.txt.gz",
        "stateFate_inVitro_normed_counts.mtx.gz",
    ]


def test_offline_error(tmp_path, blobs, monkeypatch):
    # the failure modes (DNS, timeout, HTTP, interrupted read) are tested in test_download.py
    cache = tmp_path / "cache"
    error = urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer(blobs, fail=error))
    with pytest.raises(ConnectionError) as info:
        larry(cache_dir=cache)
    message = str(info.value)
    first = _larry._FILES["counts"]
    assert "LARRY" in message and first["filename"] in message and first["url"] in message
    assert str(cache / first["filename"]) in message and "place" in message
    assert f"larry(cache_dir={str(cache)!r})" in message
    assert all(spec["filename"] in message for spec in _larry._FILES.values())
    assert _leftovers(cache) == []
