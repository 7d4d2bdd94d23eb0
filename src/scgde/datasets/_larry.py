"""On-demand loader for the LARRY in-vitro lineage-tracing data (Weinreb et al. 2020).

The four public files of "Experiment 1: in vitro differentiation time course" are downloaded
once into a cache folder, checked against SHA-256 checksums, and parsed into an AnnData with
one row per cell and a ``clone`` column from the clone (barcode) matrix.

Sources and checksums live in :data:`_FILES`, the one place to update if the hosting moves.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.io
from scipy import sparse

from . import _download

__all__ = ["larry"]

# ------------------------------------------------------------------------------ sources
#: Where the LARRY in-vitro files come from. The file list and descriptions are those of the
#: authors' data page, https://github.com/AllonKleinLab/paper-data/tree/master/
#: Lineage_tracing_on_transcriptional_landscapes_links_state_to_fate_during_differentiation,
#: which links to the files on the Klein lab server below (raw data: GEO GSE140802).
#: ``sha256`` is the expected SHA-256 of each file; ``None`` means not yet recorded: the file is
#: then accepted, and its observed hash is shown in a warning and stored in
#: ``adata.uns["larry"]["sha256"]``, to be pasted here.
_BASE_URL = "https://kleintools.hms.harvard.edu/paper_websites/state_fate2020/"
_FILES: dict[str, dict[str, str | None]] = {
    "counts": {
        "filename": "stateFate_inVitro_normed_counts.mtx.gz",
        "url": _BASE_URL + "stateFate_inVitro_normed_counts.mtx.gz",
        "sha256": None,
    },
    "gene_names": {
        "filename": "stateFate_inVitro_gene_names.txt.gz",
        "url": _BASE_URL + "stateFate_inVitro_gene_names.txt.gz",
        "sha256": None,
    },
    "clone_matrix": {
        "filename": "stateFate_inVitro_clone_matrix.mtx.gz",
        "url": _BASE_URL + "stateFate_inVitro_clone_matrix.mtx.gz",
        "sha256": None,
    },
    "metadata": {
        "filename": "stateFate_inVitro_metadata.txt.gz",
        "url": _BASE_URL + "stateFate_inVitro_metadata.txt.gz",
        "sha256": None,
    },
}

_CITATION = (
    "Weinreb C., Rodriguez-Fraticelli A., Camargo F. D., Klein A. M. (2020). Lineage tracing "
    "on transcriptional landscapes links state to fate during differentiation. Science "
    "367(6479):eaaw3381. doi:10.1126/science.aaw3381"
)
# metadata header -> tidy obs column (other columns are kept under a snake_case name)
_COLUMNS = {
    "Library": "library",
    "Cell barcode": "barcode",
    "Time point": "time_point",
    "Starting population": "starting_population",
    "Cell type annotation": "cell_type",
    "Well": "well",
}
_SPRING = ("SPRING-x", "SPRING-y")
_CATEGORICAL = ("library", "starting_population", "cell_type", "well")


# ------------------------------------------------------------------------------ files
def _resolve_files(
    cache_dir: str | os.PathLike | None,
    download: bool,
    files: Mapping[str, str | os.PathLike] | None,
) -> tuple[dict[str, Path], dict[str, str]]:
    """Local path and SHA-256 of every file: given in ``files``, cached, or downloaded."""
    files = dict(files or {})
    unknown = sorted(set(files) - set(_FILES))
    if unknown:
        raise ValueError(f"Unknown keys in files: {unknown}; expected a subset of {list(_FILES)}.")
    paths: dict[str, Path] = {}
    hashes: dict[str, str] = {}
    for key, value in files.items():
        path = Path(value).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"files[{key!r}] = {str(path)!r} is not a file.")
        # user files: recorded, not verified
        paths[key], hashes[key] = path, _download.file_digests(path)["sha256"]

    if cache_dir is None:
        cache = _download.default_cache_dir("larry")
    else:
        cache = Path(cache_dir).expanduser()
    needed = [key for key in _FILES if key not in paths]
    missing = [key for key in needed if not (cache / _FILES[key]["filename"]).is_file()]
    if missing and not download:
        listing = "\n".join(
            f"  {cache / _FILES[k]['filename']}  (from {_FILES[k]['url']})" for k in missing
        )
        raise FileNotFoundError(
            f"LARRY files missing from the cache folder {cache} and download=False:\n{listing}\n"
            "Call larry(download=True), or place the files there by hand."
        )
    for key in needed:
        spec = _FILES[key]
        path = cache / spec["filename"]
        if key in missing:
            names = ", ".join(s["filename"] for s in _FILES.values())
            digests = _download.download(
                spec["url"],
                path,
                sha256=spec["sha256"],
                what=f"LARRY file {spec['filename']!r}",
                manual=f"then call larry(cache_dir={str(cache)!r}) (the folder should hold "
                f"{names})",
                record=f"_FILES[{key!r}]['sha256'] in scgde/datasets/_larry.py",
            )
        else:
            digests = _download.verify_file(
                path, sha256=spec["sha256"], what="LARRY file", retry="larry()"
            )
        paths[key], hashes[key] = path, digests["sha256"]
    return paths, hashes


# ------------------------------------------------------------------------------ parsing
@contextlib.contextmanager
def _open(path: Path) -> Iterator[io.BufferedIOBase]:
    """Binary file handle, transparently gunzipped when the file starts with the gzip magic."""
    with open(path, "rb") as raw:
        if raw.peek(2)[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=raw, mode="rb") as fh:
                yield fh
        else:
            yield raw


def _read_mtx(path: Path, what: str) -> sparse.csr_matrix:
    """A MatrixMarket file (gzip'd or not) as a CSR float32 matrix."""
    try:
        with _open(path) as fh:
            matrix = scipy.io.mmread(fh)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"Could not read the {what} {path} as MatrixMarket: {exc}") from exc
    matrix = sparse.coo_matrix(matrix)
    matrix.data = matrix.data.astype(np.float32, copy=False)  # before CSR: lower peak memory
    return matrix.tocsr()


def _read_gene_names(path: Path) -> list[str]:
    with _open(path) as fh:
        lines = fh.read().decode("utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.strip() for line in lines]


def _snake(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower() or "column"


def _time_categories(values: pd.Series) -> pd.Categorical:
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() == values.notna().sum():  # all numeric
        present = np.sort(numeric.dropna().unique())
        if np.all(present == np.round(present)):
            present = present.astype(np.int64)
            numeric = numeric.round().astype("Int64")
        return pd.Categorical(numeric, categories=present, ordered=True)
    return pd.Categorical(values.astype("string"), ordered=True)


def _clone_labels(
    clones: sparse.csr_matrix, multi_clone: str, path: Path
) -> tuple[pd.Categorical, np.ndarray]:
    """Per cell, the clone (column) it belongs to; the codes are column indices (-1: none)."""
    clones = clones.copy()
    clones.eliminate_zeros()
    clones.sort_indices()
    n_cells, n_clones = clones.shape
    per_cell = np.diff(clones.indptr)
    multi = np.flatnonzero(per_cell > 1)
    if multi.size and multi_clone == "error":
        row = int(multi[0])
        raise ValueError(
            f"{multi.size} cells belong to more than one clone in {path} (e.g. row {row}: "
            f"clones {clones.indices[clones.indptr[row] : clones.indptr[row + 1]].tolist()}). "
            "Pass multi_clone='first' to keep the lowest clone index, or multi_clone='drop' "
            "to leave such cells without a clone; obsm['X_clone'] keeps the full matrix."
        )
    codes = np.full(n_cells, -1, dtype=np.int64)
    has = per_cell > 0
    codes[has] = clones.indices[clones.indptr[:-1][has]]  # sorted indices: the lowest column
    if multi_clone == "drop":
        codes[multi] = -1
    width = len(str(max(n_clones - 1, 0)))
    categories = [f"c{j:0{width}d}" for j in range(n_clones)]
    return pd.Categorical.from_codes(codes, categories=categories), per_cell


def _parse(paths: dict[str, Path], multi_clone: str) -> anndata.AnnData:
    counts = _read_mtx(paths["counts"], "counts matrix")
    genes = _read_gene_names(paths["gene_names"])
    with _open(paths["metadata"]) as fh:
        meta = pd.read_csv(fh, sep="\t")
    clones = _read_mtx(paths["clone_matrix"], "clone matrix")

    n_cells, n_genes = counts.shape
    if len(genes) != n_genes:
        raise ValueError(
            f"The counts matrix {paths['counts']} has {n_genes} columns (genes) but "
            f"{paths['gene_names']} lists {len(genes)} gene names."
        )
    for what, n in (("metadata", len(meta)), ("clone_matrix", clones.shape[0])):
        if n != n_cells:
            raise ValueError(
                f"The counts matrix {paths['counts']} has {n_cells} rows (cells) but the "
                f"{what} {paths[what]} has {n}; the files must come from the same release."
            )
    if "Time point" not in meta.columns:
        raise ValueError(
            f"The metadata {paths['metadata']} has no 'Time point' column; found "
            f"{list(meta.columns)}."
        )

    obs = pd.DataFrame(index=pd.Index(np.arange(n_cells).astype(str)))
    for column in meta.columns:
        if column in _SPRING:
            continue
        name = _COLUMNS.get(column, _snake(column))
        values = meta[column].reset_index(drop=True)
        values.index = obs.index
        if name == "time_point":
            obs[name] = _time_categories(values)
        elif name in _CATEGORICAL:
            obs[name] = values.astype("category")
        elif name == "barcode":
            obs[name] = values.astype(str)
        else:
            obs[name] = values
    clone, per_cell = _clone_labels(clones, multi_clone, paths["clone_matrix"])
    obs["clone"] = clone
    time_label = obs["time_point"].astype(str).where(obs["time_point"].notna())
    labels = pd.Series(clone, index=obs.index).astype(str) + "|d" + time_label
    labels = labels.where(obs["clone"].notna() & obs["time_point"].notna())
    order = (
        pd.DataFrame({"c": obs["clone"].cat.codes, "t": obs["time_point"].cat.codes, "l": labels})
        .dropna()
        .sort_values(["c", "t"])["l"]
        .unique()
    )
    obs["clone_time"] = pd.Categorical(labels, categories=order)

    obsm = {"X_clone": clones}
    if all(c in meta.columns for c in _SPRING):
        obsm["X_spring"] = meta[list(_SPRING)].to_numpy(dtype=np.float64)
    var = pd.DataFrame(index=pd.Index(genes))
    adata = anndata.AnnData(X=counts, obs=obs, var=var, obsm=obsm)
    if not adata.var_names.is_unique:
        adata.var["gene_symbol"] = genes
        adata.var_names = anndata.utils.make_index_unique(pd.Index(genes))
    adata.uns["larry"] = {
        "n_cells_in_several_clones": int((per_cell > 1).sum()),
        "multi_clone": multi_clone,
    }
    return adata


# ------------------------------------------------------------------------------ public API
def larry(
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    files: Mapping[str, str | os.PathLike] | None = None,
    multi_clone: str = "error",
) -> anndata.AnnData:
    """Load the LARRY in-vitro lineage-tracing data set (real data, downloaded on demand).

    Hematopoietic progenitors (Lin-Kit+Sca1+ and Lin-Kit+) were barcoded with the LARRY
    lentiviral library and profiled by inDrops on days 2, 4 and 6 of culture (about 130,000
    cells, 25,000 genes and 5,000 clones). Cells sharing a barcode form a clone, so each clone x
    time point is a set of cells, the natural input of a set encoder. Please cite

        Weinreb C., Rodriguez-Fraticelli A., Camargo F. D., Klein A. M. (2020). Lineage tracing
        on transcriptional landscapes links state to fate during differentiation. *Science*
        367(6479):eaaw3381. doi:10.1126/science.aaw3381

    **X is not raw counts.** The published matrix ``stateFate_inVitro_normed_counts.mtx.gz``
    holds UMI counts after total-count (L1) normalisation of each cell, i.e. non-integer
    values; raw reads are on GEO (GSE140802). Use a likelihood for continuous data, or
    log-transform, rather than a count likelihood.

    Files: the four in-vitro files of the authors' data page (github.com/AllonKleinLab/
    paper-data, folder ``Lineage_tracing_on_transcriptional_landscapes_links_state_to_fate_
    during_differentiation``), served from ``kleintools.hms.harvard.edu``. Their URLs and
    SHA-256 checksums are in the module-level dict ``scgde.datasets._larry._FILES``. Missing
    files are downloaded with :mod:`urllib` into ``cache_dir`` through a temporary file that
    is renamed only after its checksum matched, so the cache never holds a partial file.
    Where no checksum is recorded (``None``), the file is accepted, a :class:`UserWarning`
    shows its observed SHA-256, and the hashes of all files used are kept in
    ``adata.uns["larry"]["sha256"]``. Files already in the cache are re-verified on each load.

    Parameters
    ----------
    cache_dir
        Folder holding the files (created if needed). Default ``$SCGDE_DATA_DIR/larry`` if the
        environment variable ``SCGDE_DATA_DIR`` is set, else ``~/.cache/scgde/larry``. To work
        offline, place the four files there under their published names.
    download
        Download missing files. With ``False``, missing files raise :class:`FileNotFoundError`.
    files
        Local paths to use instead of the cache, as a dict with any of the keys ``"counts"``,
        ``"gene_names"``, ``"clone_matrix"`` and ``"metadata"`` (gzip-compressed or not);
        the other files come from the cache. Their hashes are recorded but not checked
        against the published checksums.
    multi_clone
        What to do with a cell whose row of the clone matrix has several nonzero entries:
        ``"error"`` (default) raises :class:`ValueError`; ``"first"`` assigns the lowest clone
        index; ``"drop"`` leaves the cell without a clone. Either way ``obsm["X_clone"]``
        keeps the full membership matrix.

    Returns
    -------
    anndata.AnnData
        One row per cell, in the files' row order; ``obs_names`` are the 0-based row indices
        (``"0"``, ``"1"``, ...; the cell index used by the authors' other files), ``var_names``
        the gene symbols (made unique if needed, originals in ``var["gene_symbol"]``).

        - ``X``: total-count-normalised expression, CSR ``float32`` (cells x genes).
        - ``obs["library"]``, ``obs["starting_population"]`` (LSK / LK),
          ``obs["cell_type"]`` (annotation: undifferentiated or one of ten mature types),
          ``obs["well"]`` (0 on day 2, then 1 or 2): categorical; ``obs["barcode"]``: the
          inDrops cell barcode (str), from the metadata columns "Library",
          "Starting population", "Cell type annotation", "Well" and "Cell barcode"; any
          other metadata column is kept under a snake_case name.
        - ``obs["time_point"]``: day of profiling, ordered categorical (2, 4, 6).
        - ``obs["clone"]``: categorical ``"c0000"``, ``"c0001"``, ...: the clone-matrix column
          of the cell's barcode (categories in column order, so the code is the column index);
          missing (NaN) for cells without a clone.
        - ``obs["clone_time"]``: categorical ``"<clone>|d<day>"`` (e.g. ``"c0012|d2"``), the
          clone x time sets; NaN for cells without a clone.
        - ``obsm["X_spring"]``: the authors' SPRING layout (columns "SPRING-x", "SPRING-y").
        - ``obsm["X_clone"]``: the clone matrix, CSR ``float32`` (cells x clones, 0/1).
        - ``uns["larry"]``: citation, source URLs, file names, SHA-256 of the files used,
          a note that ``X`` is normalised, and the number of cells in several clones.

    Raises
    ------
    FileNotFoundError
        If ``download=False`` and files are missing from the cache (all listed), or a path in
        ``files`` does not exist.
    ConnectionError
        If a download fails (no network, HTTP error, interrupted transfer); the message names
        the file, the URL and where to place it by hand.
    ValueError
        If a checksum does not match (a bad download is deleted), the files disagree in
        their numbers of cells or genes, ``files`` has unknown keys, ``multi_clone`` is
        invalid, or a cell is in several clones with ``multi_clone="error"``.

    Examples
    --------
    >>> from scgde.datasets import larry
    >>> adata = larry()  # doctest: +SKIP
    >>> adata.obs.groupby("clone_time", observed=True).size()  # doctest: +SKIP
    """
    if multi_clone not in ("error", "first", "drop"):
        raise ValueError(f"multi_clone must be 'error', 'first' or 'drop', got {multi_clone!r}.")
    paths, hashes = _resolve_files(cache_dir, bool(download), files)
    adata = _parse(paths, multi_clone)
    adata.uns["larry"] = {
        "description": "LARRY in vitro differentiation time course (real data).",
        "citation": _CITATION,
        "normalization": (
            "X is the published total-count (L1) normalised matrix, not raw integer counts."
        ),
        "files": {key: path.name for key, path in paths.items()},
        "urls": {key: str(spec["url"]) for key, spec in _FILES.items()},
        "sha256": dict(hashes),
        **adata.uns["larry"],
    }
    return adata
