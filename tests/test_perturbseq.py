"""Tests of scgde.datasets.norman2019 / replogle2022, the on-demand Perturb-seq loaders, on tiny
h5ad files in the formats of the real sources. No test touches the network:
``urllib.request.urlopen`` is replaced for every test (by a fake serving the tiny files, or
failing).

The tiny files copy the layout of the scPerturb v1.4 files (Zenodo record 13350497):

- ``NormanWeissman2019_filtered.h5ad``: X raw counts (CSR float32); obs columns ``guide_id``,
  ``read_count``, ``UMI_count``, ``coverage``, ``gemgroup``, ``good_coverage``,
  ``number_of_cells``, ``tissue_type``, ``cell_line``, ``cancer``, ``disease``,
  ``perturbation_type``, ``celltype``, ``organism``, ``perturbation``, ``nperts``, ``ngenes``,
  ``ncounts``, ``percent_mito``, ``percent_ribo``; var index gene symbols, var columns
  ``ensemble_id`` (sic), ``ncounts``, ``ncells``. ``perturbation`` is "control", a gene
  ("KLF1") or two genes joined by "_" ("CEBPE_RUNX1T1"), as in the published file.
- ``ReplogleWeissman2022_K562_essential.h5ad``: X raw counts stored *dense*; obs columns
  ``batch``, ``gene``, ``gene_id``, ``transcript``, ``gene_transcript``, ``guide_id``,
  ``percent_mito``, ``UMI_count``, ``z_gemgroup_UMI``, ``core_scale_factor``,
  ``core_adjusted_UMI_count``, ``disease``, ``cancer``, ``cell_line``, ``sex``, ``age``,
  ``perturbation``, ``organism``, ``perturbation_type``, ``tissue_type``, ``ncounts``,
  ``ngenes``, ``nperts``, ``percent_ribo``; var index gene symbols, var ``ensembl_id``,
  ``ncounts``, ``ncells``. ``perturbation`` is the target gene or "control" ("gene" keeps the
  authors' "non-targeting").

Also covered: the GEARS Norman format (obs ``condition`` "ctrl" / "A+ctrl" / "A+B", var index
Ensembl IDs with ``gene_name``, log-normalised X) and the authors' figshare Replogle format
(obs ``gene`` with "non-targeting", var index Ensembl IDs with ``gene_name``). Column values
(guide names, barcodes, numbers) are illustrative, column names and label formats are not.
"""

from __future__ import annotations

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
from scipy import sparse

from scgde.datasets import _h5ad_reader, _perturbseq
from scgde.datasets._perturbseq import _tidy_label, norman2019, replogle2022

# ------------------------------------------------------------------------------ tiny files
NORMAN_LABELS = [
    "control",
    "KLF1",
    "CEBPE_RUNX1T1",
    "SET_KLF1",  # a double whose genes are not in alphabetical order
    "control",
    "BAK1",
    "KLF1",
]
NORMAN_GUIDES = [
    "NegCtrl10_NegCtrl0__NegCtrl10_NegCtrl0",
    "KLF1_NegCtrl0__KLF1_NegCtrl0",
    "CEBPE_RUNX1T1__CEBPE_RUNX1T1",
    "SET_KLF1__SET_KLF1",
    "NegCtrl1_NegCtrl0__NegCtrl1_NegCtrl0",
    "BAK1_NegCtrl0__BAK1_NegCtrl0",
    "KLF1_NegCtrl0__KLF1_NegCtrl0",
]
NORMAN_GENES = ["KLF1", "BAK1", "CEBPE", "RUNX1T1", "SET", "HBG1"]
NORMAN_COUNTS = np.array(
    [
        [0, 1, 0, 0, 2, 9],
        [5, 0, 0, 1, 0, 3],
        [0, 0, 7, 4, 0, 1],
        [3, 0, 0, 0, 6, 0],
        [0, 2, 0, 0, 0, 8],
        [0, 9, 1, 0, 0, 2],
        [4, 0, 0, 0, 1, 5],
    ],
    dtype=np.float32,
)
REPLOGLE_LABELS = ["control", "AAAS", "POLR2A", "control", "RPL3", "AAAS"]
REPLOGLE_GENES = ["AAAS", "POLR2A", "RPL3", "TBCE_ENSG00000284770", "GAPDH"]
REPLOGLE_COUNTS = np.array(
    [
        [2, 3, 40, 0, 11],
        [0, 4, 35, 1, 12],
        [3, 0, 38, 0, 9],
        [1, 5, 0, 0, 10],
        [2, 2, 5, 1, 0],
        [0, 3, 44, 0, 13],
    ],
    dtype=np.float32,
)


def _norman_adata() -> anndata.AnnData:
    n = len(NORMAN_LABELS)
    obs = pd.DataFrame(
        {
            "guide_id": pd.Categorical(NORMAN_GUIDES),
            "read_count": np.arange(100, 100 + n, dtype=np.float64),
            "UMI_count": np.arange(10, 10 + n, dtype=np.float64),
            "coverage": np.linspace(5.0, 8.0, n),
            "gemgroup": np.array([1, 1, 2, 2, 3, 3, 3]),
            "good_coverage": np.array([True, True, False, True, True, True, True]),
            "number_of_cells": np.ones(n, dtype=np.int64),
            "tissue_type": pd.Categorical(["cell_line"] * n),
            "cell_line": pd.Categorical(["K562"] * n),
            "cancer": np.ones(n, dtype=bool),
            "disease": pd.Categorical(["chronic myelogenous leukemia"] * n),
            "perturbation_type": pd.Categorical(["CRISPR"] * n),
            "celltype": pd.Categorical(["lymphoblasts"] * n),
            "organism": pd.Categorical(["human"] * n),
            "perturbation": pd.Categorical(NORMAN_LABELS),
            "nperts": np.array([1, 1, 2, 2, 1, 1, 1]),
            "ngenes": (NORMAN_COUNTS > 0).sum(1),
            "ncounts": NORMAN_COUNTS.sum(1),
            "percent_mito": np.linspace(0.01, 0.07, n),
            "percent_ribo": np.linspace(0.2, 0.3, n),
        },
        index=[f"AAACCTGAGAAGGCCT-{i}" for i in range(n)],
    )
    var = pd.DataFrame(
        {
            "ensemble_id": [f"ENSG0000000000{i}" for i in range(len(NORMAN_GENES))],
            "ncounts": NORMAN_COUNTS.sum(0),
            "ncells": (NORMAN_COUNTS > 0).sum(0),
        },
        index=NORMAN_GENES,
    )
    return anndata.AnnData(X=sparse.csr_matrix(NORMAN_COUNTS), obs=obs, var=var)


def _replogle_adata(labels=REPLOGLE_LABELS) -> anndata.AnnData:
    n = len(labels)
    genes = ["non-targeting" if label == "control" else label for label in labels]
    obs = pd.DataFrame(
        {
            "batch": pd.Categorical(["1", "1", "2", "2", "48", "48"]),
            "gene": pd.Categorical(genes),
            "gene_id": pd.Categorical(
                ["non-targeting" if g == "non-targeting" else f"ENSG_{g}" for g in genes]
            ),
            "transcript": pd.Categorical(["P1P2"] * n),
            "gene_transcript": pd.Categorical([f"{i}_{g}_P1P2" for i, g in enumerate(genes)]),
            "guide_id": pd.Categorical([f"{g}_+_1234.23-P1P2|{g}_-_1250.23-P1P2" for g in genes]),
            "percent_mito": np.linspace(0.05, 0.1, n),
            "UMI_count": REPLOGLE_COUNTS.sum(1),
            "z_gemgroup_UMI": np.linspace(-1.0, 1.0, n),
            "core_scale_factor": np.linspace(0.9, 1.1, n),
            "core_adjusted_UMI_count": REPLOGLE_COUNTS.sum(1) * 1.01,
            "disease": pd.Categorical(["chronic myeloid leukemia"] * n),
            "cancer": np.ones(n, dtype=bool),
            "cell_line": pd.Categorical(["K562"] * n),
            "sex": pd.Categorical(["Female"] * n),
            "age": np.full(n, 53),
            "perturbation": pd.Categorical(labels),
            "organism": pd.Categorical(["human"] * n),
            "perturbation_type": pd.Categorical(["CRISPR"] * n),
            "tissue_type": pd.Categorical(["cell_line"] * n),
            "ncounts": REPLOGLE_COUNTS.sum(1),
            "ngenes": (REPLOGLE_COUNTS > 0).sum(1),
            "nperts": np.array([0 if g == "non-targeting" else 1 for g in genes]),
            "percent_ribo": np.linspace(0.3, 0.4, n),
        },
        index=[f"AAACCCAAGAAACCAT-{i}" for i in range(n)],
    )
    var = pd.DataFrame(
        {
            "ensembl_id": [f"ENSG0000001000{i}" for i in range(len(REPLOGLE_GENES))],
            "ncounts": REPLOGLE_COUNTS.sum(0),
            "ncells": (REPLOGLE_COUNTS > 0).sum(0),
        },
        index=REPLOGLE_GENES,
    )
    return anndata.AnnData(X=REPLOGLE_COUNTS.copy(), obs=obs, var=var)  # dense, as published


def _h5ad_bytes(adata: anndata.AnnData, tmp_path: Path, name: str = "src.h5ad") -> bytes:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / name
    adata.write_h5ad(path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("sources")
    return {
        "norman2019": _h5ad_bytes(_norman_adata(), folder, "norman.h5ad"),
        "replogle2022": _h5ad_bytes(_replogle_adata(), folder, "replogle.h5ad"),
    }


def _sha(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _md5(blob: bytes) -> str:
    return hashlib.md5(blob).hexdigest()


def _filename(name: str) -> str:
    return str(_perturbseq._SOURCES[name]["filename"])


def _url(name: str) -> str:
    return str(_perturbseq._SOURCES[name]["url"])


def _set_checksums(monkeypatch, name: str, sha256=None, md5=None) -> None:
    spec = dict(_perturbseq._SOURCES[name])
    spec.update(sha256=sha256, md5=md5)
    monkeypatch.setitem(_perturbseq._SOURCES, name, spec)


def _write_cache(cache: Path, name: str, blob: bytes) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / _filename(name)
    path.write_bytes(blob)
    return path


class FakeServer:
    """Stands in for urllib.request.urlopen: serves blobs by URL and records the calls."""

    def __init__(self, by_url: dict[str, bytes], fail: BaseException | None = None):
        self.by_url, self.fail, self.calls = by_url, fail, []

    def __call__(self, url, timeout=None):
        self.calls.append(url)
        if self.fail is not None:
            raise self.fail
        return io.BytesIO(self.by_url[url])


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------------------ labels
@pytest.mark.parametrize(
    ("label", "combinations", "expected"),
    [
        ("control", True, ("control", 0)),  # scPerturb
        ("ctrl", True, ("control", 0)),  # GEARS
        ("KLF1", True, ("KLF1", 1)),
        ("KLF1+ctrl", True, ("KLF1", 1)),  # GEARS single
        ("ctrl+KLF1", True, ("KLF1", 1)),
        ("CEBPE_RUNX1T1", True, ("CEBPE+RUNX1T1", 2)),  # scPerturb double
        ("RUNX1T1+CEBPE", True, ("CEBPE+RUNX1T1", 2)),  # GEARS double, sorted
        ("SET_KLF1", True, ("KLF1+SET", 2)),
        ("KLF1_KLF1", True, ("KLF1", 1)),
        ("NegCtrl10_NegCtrl0__NegCtrl10_NegCtrl0", True, ("control", 0)),  # Norman guides
        ("KLF1_NegCtrl0__KLF1_NegCtrl0", True, ("KLF1", 1)),
        (" KLF1 ", True, ("KLF1", 1)),
        ("non-targeting", False, ("control", 0)),  # Replogle (authors)
        ("control", False, ("control", 0)),  # Replogle (scPerturb)
        ("AAAS", False, ("AAAS", 1)),
        ("TBCE_ENSG00000284770", False, ("TBCE_ENSG00000284770", 1)),  # never split
        ("CTRL", False, ("CTRL", 1)),  # CTRL is a gene symbol, not a control
        ("CTRL+ctrl", True, ("CTRL", 1)),
        (float("nan"), True, (None, -1)),
        (None, False, (None, -1)),
        ("", True, (None, -1)),
    ],
)
def test_tidy_label(label, combinations, expected):
    assert _tidy_label(label, combinations) == expected


# ------------------------------------------------------------------------------ parsing
def test_norman_scperturb_format(tmp_path, blobs):
    src = tmp_path / "NormanWeissman2019_filtered.h5ad"
    src.write_bytes(blobs["norman2019"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # integer counts, local file: no warning
        adata = norman2019(path=src, cache_dir=tmp_path / "cache")

    assert adata.shape == (7, 6)
    assert sparse.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), NORMAN_COUNTS)
    assert list(adata.var_names) == NORMAN_GENES
    assert list(adata.var.columns) == ["ensembl_id", "n_counts", "n_cells"]
    assert list(adata.obs_names) == [f"AAACCTGAGAAGGCCT-{i}" for i in range(7)]

    obs = adata.obs
    assert isinstance(obs["perturbation"].dtype, pd.CategoricalDtype)
    assert list(obs["perturbation"]) == [
        "control",
        "KLF1",
        "CEBPE+RUNX1T1",
        "KLF1+SET",
        "control",
        "BAK1",
        "KLF1",
    ]
    assert list(obs["perturbation"].cat.categories) == [
        "control",
        "BAK1",
        "KLF1",
        "CEBPE+RUNX1T1",
        "KLF1+SET",
    ]
    assert list(obs["n_perturbations"]) == [0, 1, 2, 2, 0, 1, 1]
    assert list(obs["perturbation_source"]) == NORMAN_LABELS
    # other columns kept under tidy names; nperts and the raw label column replaced
    assert list(obs["umi_count"]) == list(range(10, 17))
    assert list(obs["gem_group"]) == [1, 1, 2, 2, 3, 3, 3]
    assert list(obs["guide_id"]) == NORMAN_GUIDES
    np.testing.assert_array_equal(obs["n_counts"], NORMAN_COUNTS.sum(1))
    for column in ("read_count", "coverage", "good_coverage", "percent_mito", "cell_line"):
        assert column in obs.columns, column
    assert "nperts" not in obs.columns and "UMI_count" not in obs.columns

    info = adata.uns["norman2019"]
    assert info["sha256"] == _sha(blobs["norman2019"])
    assert info["md5"] == _md5(blobs["norman2019"])
    assert info["checksum_verified"] is False  # a user's file is recorded, not verified
    assert info["counts_from"] == "X" and info["raw_counts"] is True
    assert info["perturbation_column"] == "perturbation"
    assert info["url"] == _url("norman2019") and "Norman" in info["citation"]
    assert "Norman" in adata.uns["attribution"] and "scPerturb" in adata.uns["attribution"]
    assert not (tmp_path / "cache").exists()  # path= does not touch the cache

    adata.write_h5ad(tmp_path / "out.h5ad")
    back = anndata.read_h5ad(tmp_path / "out.h5ad")
    pd.testing.assert_frame_equal(back.obs, adata.obs)


def test_replogle_scperturb_format_dense_x(tmp_path, blobs, monkeypatch):
    src = tmp_path / "ReplogleWeissman2022_K562_essential.h5ad"
    src.write_bytes(blobs["replogle2022"])
    # blocks of 2 rows, so the dense -> CSR conversion runs over several blocks
    monkeypatch.setattr(_h5ad_reader, "_DENSE_BLOCK_BYTES", 2 * len(REPLOGLE_GENES) * 4)
    adata = replogle2022(path=src)

    assert sparse.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), REPLOGLE_COUNTS)
    assert list(adata.var_names) == REPLOGLE_GENES
    assert list(adata.obs["perturbation"]) == REPLOGLE_LABELS
    assert list(adata.obs["perturbation"].cat.categories) == ["control", "AAAS", "POLR2A", "RPL3"]
    assert list(adata.obs["n_perturbations"]) == [0, 1, 1, 0, 1, 1]
    assert list(adata.obs["gene"])[0] == "non-targeting"
    for column in ("batch", "guide_id", "core_adjusted_umi_count", "z_gemgroup_umi", "n_genes"):
        assert column in adata.obs.columns, column
    assert adata.uns["replogle2022"]["counts_from"] == "X"
    assert "Replogle" in adata.uns["attribution"]


def test_replogle_non_targeting_label(tmp_path):
    labels = ["non-targeting", "AAAS", "POLR2A", "non-targeting", "RPL3", "AAAS"]
    src = tmp_path / "k562.h5ad"
    _replogle_adata(labels).write_h5ad(src)
    adata = replogle2022(path=src)
    assert list(adata.obs["perturbation"]) == REPLOGLE_LABELS
    assert list(adata.obs["perturbation_source"])[0] == "non-targeting"


def test_replogle_authors_figshare_format(tmp_path):
    """Authors' file: label in obs 'gene', var index Ensembl IDs with a 'gene_name' column."""
    src_adata = _replogle_adata()
    src_adata.obs = src_adata.obs.drop(columns=["perturbation", "nperts"])
    ensembl = [f"ENSG0000002000{i}" for i in range(len(REPLOGLE_GENES))]
    src_adata.var = pd.DataFrame({"gene_name": REPLOGLE_GENES}, index=ensembl)
    src = tmp_path / "K562_essential_raw_singlecell_01.h5ad"
    src_adata.write_h5ad(src)
    adata = replogle2022(path=src)
    assert list(adata.var_names) == REPLOGLE_GENES
    assert list(adata.var["ensembl_id"]) == ensembl
    assert list(adata.obs["perturbation"]) == REPLOGLE_LABELS
    assert adata.uns["replogle2022"]["perturbation_column"] == "gene"
    assert "gene" not in adata.obs.columns  # it is the label column (in perturbation_source)


def test_counts_moved_from_layer_raw_and_csc(tmp_path):
    normalised = sparse.csr_matrix(np.log1p(NORMAN_COUNTS / NORMAN_COUNTS.sum(1, keepdims=True)))

    layer = _norman_adata()
    layer.layers["counts"] = layer.X.copy()
    layer.X = normalised.copy()
    layer.write_h5ad(tmp_path / "layer.h5ad")

    raw = _norman_adata()
    raw.raw = raw.copy()
    raw = raw[:, ["KLF1", "BAK1"]].copy()  # X keeps 2 genes; raw keeps all 6
    raw.X = sparse.csr_matrix(normalised[:, :2])
    raw.write_h5ad(tmp_path / "raw.h5ad")

    csc = _norman_adata()
    csc.X = sparse.csc_matrix(NORMAN_COUNTS.astype(np.float64))
    csc.write_h5ad(tmp_path / "csc.h5ad")

    for file, where in (
        ("layer.h5ad", "layers['counts']"),
        ("raw.h5ad", "raw.X"),
        ("csc.h5ad", "X"),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            adata = norman2019(path=tmp_path / file)
        assert adata.uns["norman2019"]["counts_from"] == where, file
        assert sparse.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32, file
        np.testing.assert_array_equal(adata.X.toarray(), NORMAN_COUNTS)
        assert list(adata.var_names) == NORMAN_GENES, file
        assert adata.uns["norman2019"]["raw_counts"] is True


def test_gears_norman_format_warns_not_counts(tmp_path):
    """GEARS 'norman': obs condition 'ctrl' / 'A+ctrl' / 'A+B', log-normalised X, var index
    Ensembl IDs with a 'gene_name' column."""
    src_adata = _norman_adata()
    conditions = [
        "ctrl",
        "KLF1+ctrl",
        "CEBPE+RUNX1T1",
        "SET+KLF1",
        "ctrl",
        "ctrl+BAK1",
        "KLF1+ctrl",
    ]
    src_adata.obs = pd.DataFrame(
        {
            "condition": pd.Categorical(conditions),
            "cell_type": pd.Categorical(["K562"] * 7),
            "dose_val": pd.Categorical(["1+1" if "+" in c else "1" for c in conditions]),
            "control": np.array([1, 0, 0, 0, 1, 0, 0]),
            "condition_name": pd.Categorical([f"K562_{c}_1+1" for c in conditions]),
        },
        index=src_adata.obs_names,
    )
    ensembl = list(src_adata.var["ensemble_id"])
    src_adata.var = pd.DataFrame({"gene_name": NORMAN_GENES}, index=ensembl)
    src_adata.X = sparse.csr_matrix(np.log1p(NORMAN_COUNTS / 3.0))
    src = tmp_path / "perturb_processed.h5ad"
    src_adata.write_h5ad(src)
    with pytest.warns(UserWarning, match="not integer counts"):
        adata = norman2019(path=src)
    assert list(adata.obs["perturbation"]) == [
        "control",
        "KLF1",
        "CEBPE+RUNX1T1",
        "KLF1+SET",
        "control",
        "BAK1",
        "KLF1",
    ]
    assert list(adata.var_names) == NORMAN_GENES
    assert adata.uns["norman2019"]["raw_counts"] is False
    assert adata.uns["norman2019"]["perturbation_column"] == "condition"
    assert list(adata.obs["control"]) == [1, 0, 0, 0, 1, 0, 0]  # GEARS' own column, kept


def test_missing_labels_and_duplicate_names(tmp_path):
    src_adata = _norman_adata()
    labels = list(NORMAN_LABELS)
    labels[2] = None
    src_adata.obs["perturbation"] = pd.Categorical(labels)
    genes = ["KLF1", "KLF1", "CEBPE", "RUNX1T1", "SET", "HBG1"]
    src_adata.var_names = genes
    src_adata.write_h5ad(tmp_path / "dup.h5ad")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Variable names are not unique")
        adata = norman2019(path=tmp_path / "dup.h5ad")
    assert pd.isna(adata.obs["perturbation"].iloc[2])
    assert pd.isna(adata.obs["n_perturbations"].iloc[2])
    assert "CEBPE+RUNX1T1" not in adata.obs["perturbation"].cat.categories
    assert adata.var_names.is_unique and list(adata.var["gene_symbol"]) == genes


def test_invalid_files(tmp_path):
    not_h5 = tmp_path / "not.h5ad"
    not_h5.write_text("hello\n")
    with pytest.raises(ValueError, match="Could not read .* as an h5ad"):
        norman2019(path=not_h5)
    no_label = _norman_adata()
    no_label.obs = no_label.obs.drop(columns=["perturbation"])
    no_label.write_h5ad(tmp_path / "no_label.h5ad")
    with pytest.raises(ValueError, match="no perturbation label column.*'perturbation'"):
        norman2019(path=tmp_path / "no_label.h5ad")
    with pytest.raises(FileNotFoundError, match="missing.h5ad"):
        replogle2022(path=tmp_path / "missing.h5ad")


# ------------------------------------------------------------------------------ cache
@pytest.mark.parametrize("name", ["norman2019", "replogle2022"])
def test_cached_file_needs_no_network(tmp_path, blobs, monkeypatch, name):
    cache = tmp_path / "cache"
    _write_cache(cache, name, blobs[name])
    _set_checksums(monkeypatch, name, sha256=_sha(blobs[name]), md5=_md5(blobs[name]))
    loader = {"norman2019": norman2019, "replogle2022": replogle2022}[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known checksum: no warning
        adata = loader(cache_dir=cache, download=False)
    assert adata.uns[name]["checksum_verified"] is True
    assert adata.uns[name]["filename"] == _filename(name)
    assert "control" in adata.obs["perturbation"].cat.categories


def test_cached_file_with_wrong_checksum(tmp_path, blobs, monkeypatch):
    cache = tmp_path / "cache"
    path = _write_cache(cache, "norman2019", blobs["norman2019"])
    # the default record: the real file's MD5, which the tiny file does not have
    with pytest.raises(ValueError, match="Checksum mismatch for the cached norman2019.*md5"):
        norman2019(cache_dir=cache)
    _set_checksums(monkeypatch, "norman2019", sha256="0" * 64)
    with pytest.raises(ValueError, match="expected sha256=0000"):
        norman2019(cache_dir=cache)
    assert path.exists()  # a user's file is reported, not deleted


@pytest.mark.parametrize("name", ["norman2019", "replogle2022"])
def test_missing_file_without_download(tmp_path, name):
    cache = tmp_path / "cache"
    loader = {"norman2019": norman2019, "replogle2022": replogle2022}[name]
    with pytest.raises(FileNotFoundError) as info:
        loader(cache_dir=cache, download=False)
    message = str(info.value)
    assert str(cache / _filename(name)) in message  # where to put the file
    assert _url(name) in message and "download=False" in message and "path=" in message
    assert not cache.exists()


def test_default_cache_dir(tmp_path, blobs, monkeypatch):
    # the folder rule itself is tested in test_download.py; here: each loader uses its name
    monkeypatch.setenv("SCGDE_DATA_DIR", str(tmp_path / "data"))
    _set_checksums(monkeypatch, "replogle2022")
    _write_cache(tmp_path / "data" / "replogle2022", "replogle2022", blobs["replogle2022"])
    assert replogle2022(download=False).shape == (6, 5)
    with pytest.raises(FileNotFoundError, match="cache folder .*/data/norman2019"):
        norman2019(download=False)
    monkeypatch.delenv("SCGDE_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".cache" / "scgde" / "replogle2022"
    with pytest.raises(FileNotFoundError, match="cache folder") as info:
        replogle2022(download=False)
    assert str(expected / _filename("replogle2022")) in str(info.value)


# ------------------------------------------------------------------------------ download
def test_download_then_cache_reuse(tmp_path, blobs, monkeypatch):
    cache = tmp_path / "cache"
    server = FakeServer({_url("norman2019"): blobs["norman2019"]})
    monkeypatch.setattr(urllib.request, "urlopen", server)
    blob = blobs["norman2019"]
    _set_checksums(monkeypatch, "norman2019", sha256=_sha(blob), md5=_md5(blob))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adata = norman2019(cache_dir=cache)
    assert server.calls == [_url("norman2019")]
    assert _leftovers(cache) == [_filename("norman2019")]  # no temporary files
    assert (cache / _filename("norman2019")).read_bytes() == blob
    np.testing.assert_array_equal(adata.X.toarray(), NORMAN_COUNTS)
    assert adata.uns["norman2019"]["checksum_verified"] is True
    # a second call reads the cache: no second download
    again = norman2019(cache_dir=cache)
    assert server.calls == [_url("norman2019")]
    assert list(again.obs["perturbation"]) == list(adata.obs["perturbation"])


def test_download_unknown_checksum_warns(tmp_path, blobs, monkeypatch):
    blob = blobs["replogle2022"]
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer({_url("replogle2022"): blob}))
    _set_checksums(monkeypatch, "replogle2022")  # sha256 and md5 unknown
    with pytest.warns(UserWarning, match="No SHA-256 checksum on record") as record:
        adata = replogle2022(cache_dir=tmp_path / "cache")
    message = " ".join(str(w.message) for w in record)
    assert _sha(blob) in message and "no MD5 on record" in message
    assert "_SOURCES['replogle2022']['sha256'] in scgde/datasets/_perturbseq.py" in message
    assert record[0].filename == __file__  # points at the call of replogle2022()
    assert adata.uns["replogle2022"]["sha256"] == _sha(blob)
    assert adata.uns["replogle2022"]["checksum_verified"] is False


def test_download_md5_only_warns_but_verifies(tmp_path, blobs, monkeypatch):
    blob = blobs["norman2019"]
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer({_url("norman2019"): blob}))
    _set_checksums(monkeypatch, "norman2019", md5=_md5(blob))
    with pytest.warns(UserWarning, match="MD5 matched the record"):
        adata = norman2019(cache_dir=tmp_path / "cache")
    assert adata.uns["norman2019"]["checksum_verified"] is True


def test_download_wrong_checksum_is_deleted(tmp_path, blobs, monkeypatch):
    # the default record: the real file's MD5, which the tiny file does not have (each
    # algorithm is tested in test_download.py)
    cache = tmp_path / "cache"
    monkeypatch.setattr(
        urllib.request, "urlopen", FakeServer({_url("norman2019"): blobs["norman2019"]})
    )
    with pytest.raises(ValueError, match="Checksum mismatch.*norman2019.*expected md5=") as info:
        norman2019(cache_dir=cache)
    assert "deleted" in str(info.value) and _filename("norman2019") in str(info.value)
    assert _leftovers(cache) == []  # neither the file nor a temporary one
    # nothing partial was mistaken for a cache
    with pytest.raises(FileNotFoundError):
        norman2019(cache_dir=cache, download=False)


def test_offline_error(tmp_path, monkeypatch):
    # the failure modes (DNS, timeout, HTTP, interrupted read) are tested in test_download.py
    cache = tmp_path / "cache"
    error = urllib.error.HTTPError("http://x", 404, "Not Found", None, None)
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer({}, fail=error))
    with pytest.raises(ConnectionError) as info:
        replogle2022(cache_dir=cache)
    message = str(info.value)
    assert "replogle2022" in message and _url("replogle2022") in message and "place" in message
    assert str(cache / _filename("replogle2022")) in message
    assert "replogle2022(path=...)" in message and "404" in message
    assert _leftovers(cache) == []
