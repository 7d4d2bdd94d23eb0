"""On-demand loaders for two real Perturb-seq data sets in K562 cells.

- :func:`norman2019`: Norman et al. 2019, CRISPRa single and pairwise (double) perturbations.
- :func:`replogle2022`: Replogle et al. 2022, CRISPRi screen of common essential genes.

Both read the harmonised h5ad files of scPerturb (Peidli et al. 2024), downloaded once into a
cache folder, checked against checksums, and turned into an AnnData with raw counts in ``X``
(CSR float32) and a tidy ``obs["perturbation"]``: ``"control"`` for non-targeting controls,
``"A"`` for a single target gene and ``"A+B"`` for a double (genes in alphabetical order).

Sources and checksums live in :data:`_SOURCES`, the one place to update if the hosting moves.
The generic download, cache and checksum logic is in :mod:`scgde.datasets._download`.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import anndata
import numpy as np
import pandas as pd

from . import _download
from ._h5ad_reader import _are_counts, _read_source
from ._larry import _snake

__all__ = ["norman2019", "replogle2022"]

# ------------------------------------------------------------------------------ sources
#: scPerturb v1.4 on Zenodo (record 13350497, licence CC BY 4.0; the earlier versions 7041849
#: and 10044268 hold files of the same names). ``sha256`` is the expected SHA-256 of each file;
#: ``None`` means not yet recorded: the file is then accepted, its observed hash is shown in a
#: warning and stored in ``adata.uns[<name>]["sha256"]``, to be pasted here. ``md5`` is the MD5
#: listed for the file by Zenodo (``None`` if unknown); when given it is checked as well. The
#: Norman MD5 is the one reported independently for records 10044268 and 13350497 (the file did
#: not change between them).
_ZENODO_RECORD = "13350497"
_ZENODO_URL = f"https://zenodo.org/records/{_ZENODO_RECORD}/files/"
_SOURCES: dict[str, dict[str, str | None]] = {
    "norman2019": {
        "filename": "NormanWeissman2019_filtered.h5ad",
        "url": _ZENODO_URL + "NormanWeissman2019_filtered.h5ad?download=1",
        "sha256": None,
        "md5": "c870e6967d91c017d9da827bab183cd6",
    },
    "replogle2022": {
        "filename": "ReplogleWeissman2022_K562_essential.h5ad",
        "url": _ZENODO_URL + "ReplogleWeissman2022_K562_essential.h5ad?download=1",
        "sha256": None,
        "md5": None,
    },
}

_SCPERTURB_CITATION = (
    "Peidli S., Green T. D., Shen C., et al. (2024). scPerturb: harmonized single-cell "
    "perturbation data. Nature Methods 21:531-540. doi:10.1038/s41592-023-02144-y"
)
_CITATIONS = {
    "norman2019": (
        "Norman T. M., Horlbeck M. A., Replogle J. M., Ge A. Y., Xu A., Jost M., Gilbert L. A., "
        "Weissman J. S. (2019). Exploring genetic interaction manifolds constructed from rich "
        "single-cell phenotypes. Science 365(6455):786-793. doi:10.1126/science.aax4438"
    ),
    "replogle2022": (
        "Replogle J. M., Saunders R. A., Pogson A. N., Hussmann J. A., Lenail A., Guna A., "
        "Mascibroda L., Wagner E. J., Adelman K., Lithwick-Yanai G., Iremadze N., Oberstrass F., "
        "Lipson D., Bonnar J. L., Jost M., Norman T. M., Weissman J. S. (2022). Mapping "
        "information-rich genotype-phenotype landscapes with genome-scale Perturb-seq. Cell "
        "185(14):2559-2575.e28. doi:10.1016/j.cell.2022.05.013"
    ),
}
_DESCRIPTIONS = {
    "norman2019": (
        "Norman et al. 2019 Perturb-seq: K562 cells, CRISPRa single and double perturbations "
        "of 105 target genes (real data, scPerturb 'NormanWeissman2019_filtered')."
    ),
    "replogle2022": (
        "Replogle et al. 2022 Perturb-seq: K562 cells, CRISPRi knockdown of common essential "
        "genes, day 6 (real data, scPerturb 'ReplogleWeissman2022_K562_essential')."
    ),
}

#: Source obs column -> tidy name (other columns: snake_case of the source name).
_OBS_RENAME = {
    "UMI_count": "umi_count",
    "gemgroup": "gem_group",
    "ncounts": "n_counts",
    "ngenes": "n_genes",
}
#: Source var column -> tidy name ("ensemble_id" is scPerturb's spelling in the Norman file).
_VAR_RENAME = {"ensemble_id": "ensembl_id", "ncounts": "n_counts", "ncells": "n_cells"}
#: Source obs columns not kept: ``nperts`` is superseded by ``n_perturbations``.
_OBS_DROP = ("nperts",)
#: Source columns holding the perturbation label, in order of preference: scPerturb
#: ``perturbation``, GEARS ``condition``, the authors' (figshare) ``gene``.
_LABEL_COLUMNS = ("perturbation", "condition", "gene")
#: A label or label part that denotes a non-targeting control: scPerturb "control", GEARS
#: "ctrl", Replogle "non-targeting", Norman guide names "NegCtrl0", ... (case-insensitive,
#: except "ctrl": CTRL is also a human gene symbol).
_CONTROL = re.compile(r"(?i:control|non-?targeting|negctrl\d*)|ctrl")
#: Separators between the genes of a combination: scPerturb "A_B", GEARS "A+B" / "A+ctrl".
_SEPARATORS = re.compile(r"[+_]")
_CONTROL_LABEL = "control"


# ------------------------------------------------------------------------------ files
def _resolve_file(
    name: str,
    cache_dir: str | os.PathLike | None,
    download: bool,
    path: str | os.PathLike | None,
) -> tuple[Path, str, str, bool]:
    """Local path, SHA-256, MD5 and 'checked against the record' of the source file."""
    spec = _SOURCES[name]
    if path is not None:
        local = Path(path).expanduser()
        if not local.is_file():
            raise FileNotFoundError(f"path={str(local)!r} is not a file.")
        digests = _download.file_digests(local)  # a user's file: recorded, not verified
        return local, digests["sha256"], digests["md5"], False

    if cache_dir is None:
        cache = _download.default_cache_dir(name)
    else:
        cache = Path(cache_dir).expanduser()
    local = cache / str(spec["filename"])
    checksums = {"sha256": spec["sha256"], "md5": spec["md5"]}
    if local.is_file():
        digests = _download.verify_file(local, **checksums, what=f"{name} file", retry=f"{name}()")
    elif not download:
        raise FileNotFoundError(
            f"The {name} file is missing from the cache folder {cache} and download=False.\n"
            f"  expected: {local}\n  source:   {spec['url']}\n"
            f"Call {name}(download=True), place the file there by hand, or pass "
            f"{name}(path=...) to read a copy from elsewhere."
        )
    else:
        digests = _download.download(
            str(spec["url"]),
            local,
            **checksums,
            what=f"{name} file {local.name!r}",
            manual=f"then call {name}(cache_dir={str(cache)!r}) (or {name}(path=...) to read "
            "it from anywhere)",
            record=f"_SOURCES[{name!r}]['sha256'] in scgde/datasets/_perturbseq.py",
        )
    return local, digests["sha256"], digests["md5"], True


# ------------------------------------------------------------------------------ tidying
def _tidy_label(value: object, combinations: bool) -> tuple[str | None, int]:
    """Tidy perturbation label and number of perturbed genes of one source label.

    Control parts are dropped ("A+ctrl" -> "A"); the remaining genes are de-duplicated and
    sorted ("B_A" -> "A+B"); nothing left means "control". Missing labels stay missing.
    With ``combinations=False`` the label is one gene name and is not split.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None, -1
    text = str(value).strip()
    if not text or text.lower() in ("nan", "none"):
        return None, -1
    parts = _SEPARATORS.split(text) if combinations else [text]
    genes = sorted({p.strip() for p in parts if p.strip() and not _CONTROL.fullmatch(p.strip())})
    if not genes:
        return _CONTROL_LABEL, 0
    return "+".join(genes), len(genes)


def _tidy_perturbations(labels: pd.Series, combinations: bool) -> tuple[pd.Categorical, np.ndarray]:
    """Categorical of tidy labels (control, then singles, then doubles, ...) and the number of
    target genes per cell (-1 where the label is missing)."""
    codes, uniques = pd.factorize(labels.astype(object), use_na_sentinel=True)
    parsed = [_tidy_label(value, combinations) for value in uniques]
    tidy_u = np.array([label for label, _ in parsed] + [None], dtype=object)
    n_u = np.array([n for _, n in parsed] + [-1], dtype=np.int64)
    present = {label: n for label, n in parsed if label is not None}
    order = sorted(present, key=lambda label: (present[label], label))
    # code -1 (missing) indexes the trailing None / -1
    return pd.Categorical(tidy_u[codes], categories=order), n_u[codes]


def _unique_name(name: str, taken: set[str]) -> str:
    candidate, i = name, 1
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    return candidate


def _tidy_obs(obs: pd.DataFrame, combinations: bool, path: Path) -> tuple[pd.DataFrame, str]:
    label_column = next((c for c in _LABEL_COLUMNS if c in obs.columns), None)
    if label_column is None:
        raise ValueError(
            f"{path} has no perturbation label column: expected one of {list(_LABEL_COLUMNS)} "
            f"in obs, found {list(obs.columns)}."
        )
    labels = obs[label_column]
    perturbation, n_genes = _tidy_perturbations(labels, combinations)
    tidy = pd.DataFrame(index=pd.Index(obs.index.astype(str), name=None))
    tidy["perturbation"] = perturbation
    tidy["n_perturbations"] = pd.array([pd.NA if n < 0 else int(n) for n in n_genes], dtype="Int64")
    tidy["perturbation_source"] = pd.Categorical(labels.astype(object).where(labels.notna()))
    taken = set(tidy.columns)
    for column in obs.columns:
        if column == label_column or column in _OBS_DROP:
            continue
        name = _unique_name(_OBS_RENAME.get(column, _snake(str(column))), taken)
        taken.add(name)
        series = obs[column]
        if isinstance(series.dtype, pd.CategoricalDtype):
            values = series.array
        elif series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
            values = pd.Categorical(series.astype(object).where(series.notna()))
        else:
            values = series.to_numpy()
        tidy[name] = values
    return tidy, label_column


def _tidy_var(var: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Gene-symbol index (from a ``gene_name``/``gene_symbol`` column if the source index holds
    Ensembl IDs, as in the authors' files) and tidy column names."""
    var = var.copy()
    index = var.index.astype(str)
    symbol_column = next((c for c in ("gene_name", "gene_symbol") if c in var.columns), None)
    if symbol_column is not None and index.str.match(r"ENS[A-Z]*G\d+").mean() > 0.5:
        var["ensembl_id"] = index.to_numpy()
        symbols = var.pop(symbol_column).astype(str).to_numpy()
    else:
        symbols = index.to_numpy()
    var = var.rename(columns=_VAR_RENAME)
    var.columns = [_snake(str(c)) if c not in _VAR_RENAME.values() else c for c in var.columns]
    var.index = pd.Index(symbols, dtype=object)
    return var, list(symbols)


def _load(
    name: str,
    cache_dir: str | os.PathLike | None,
    download: bool,
    path: str | os.PathLike | None,
    combinations: bool,
) -> anndata.AnnData:
    local, sha256, md5, verified = _resolve_file(name, cache_dir, bool(download), path)
    counts, obs, var, where = _read_source(local)
    raw_counts = _are_counts(counts)
    if not raw_counts:
        warnings.warn(
            f"The {name} matrix taken from {where} of {local} is not integer counts (it has "
            "negative, non-finite or non-integer values): the file holds normalised data, not "
            "the published raw counts. X is loaded as is.",
            UserWarning,
            stacklevel=3,
        )
    tidy_obs, label_column = _tidy_obs(obs, combinations, local)
    tidy_var, symbols = _tidy_var(var)
    adata = anndata.AnnData(X=counts, obs=tidy_obs, var=tidy_var)
    if not adata.var_names.is_unique:
        adata.var["gene_symbol"] = symbols
        adata.var_names = anndata.utils.make_index_unique(pd.Index(symbols))
    if not adata.obs_names.is_unique:
        adata.obs["barcode"] = adata.obs_names.to_numpy()
        adata.obs_names_make_unique()
    spec = _SOURCES[name]
    citation = _CITATIONS[name]
    adata.uns["attribution"] = (
        f"Real data from {citation}. Processed file from scPerturb: {_SCPERTURB_CITATION} "
        f"(Zenodo record {_ZENODO_RECORD}, CC BY 4.0; {spec['url']}). Loaded by "
        f"scgde.datasets.{name}: raw counts in X; obs['perturbation'] tidied from the source "
        f"column {label_column!r}; other columns renamed to snake_case."
    )
    adata.uns[name] = {
        "description": _DESCRIPTIONS[name],
        "citation": citation,
        "source": f"scPerturb ({_SCPERTURB_CITATION})",
        "url": str(spec["url"]),
        "filename": local.name,
        "sha256": sha256,
        "md5": md5,
        "checksum_verified": bool(
            verified and (spec["sha256"] is not None or spec["md5"] is not None)
        ),
        "counts_from": where,
        "raw_counts": raw_counts,
        "perturbation_column": label_column,
    }
    return adata


# ------------------------------------------------------------------------------ public API
def norman2019(
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    path: str | os.PathLike | None = None,
) -> anndata.AnnData:
    """Load the Norman et al. 2019 Perturb-seq data (real data, downloaded on demand).

    K562 cells expressing dCas9 (CRISPR activation) were transduced with one or two guides,
    activating one gene or a pair of genes (105 genes, 131 pairs) and profiled by 10x
    Perturb-seq: about 111,000 cells and 33,700 genes after scPerturb's filtering, among
    them about 11,900 non-targeting control cells. Please cite

        Norman T. M., Horlbeck M. A., Replogle J. M., et al. (2019). Exploring genetic
        interaction manifolds constructed from rich single-cell phenotypes. *Science*
        365(6455):786-793. doi:10.1126/science.aax4438

    and scPerturb (Peidli et al. 2024, *Nature Methods* 21:531-540), whose harmonised file
    ``NormanWeissman2019_filtered.h5ad`` is read, from
    https://zenodo.org/records/13350497/files/NormanWeissman2019_filtered.h5ad (scPerturb
    v1.4, CC BY 4.0; raw data GEO GSE133344). Its obs column ``perturbation`` holds
    ``"control"``, single genes (``"KLF1"``) and doubles joined by an underscore
    (``"CEBPE_RUNX1T1"``); they become ``"control"``, ``"KLF1"`` and ``"CEBPE+RUNX1T1"``.
    Files in the GEARS format (obs ``condition`` with ``"ctrl"``, ``"KLF1+ctrl"``,
    ``"ctrl+KLF1"``, ``"CEBPE+RUNX1T1"``) can be read with ``path=`` too; GEARS files hold
    log-normalised values, not counts, and a warning says so.

    The file is downloaded with :mod:`urllib` into ``cache_dir`` through a temporary file
    that is renamed only after its checksums matched, so the cache never holds a partial
    file. The URL and checksums are in ``scgde.datasets._perturbseq._SOURCES``. Where no
    SHA-256 is recorded (``None``), the file is accepted (after its MD5 matched, where one is
    recorded), a :class:`UserWarning` shows its observed SHA-256, and the hashes are kept in
    ``adata.uns["norman2019"]``. A cached file is re-verified on each load.

    Parameters
    ----------
    cache_dir
        Folder holding the file (created if needed). Default ``$SCGDE_DATA_DIR/norman2019``
        if the environment variable ``SCGDE_DATA_DIR`` is set, else
        ``~/.cache/scgde/norman2019``. To work offline, place
        ``NormanWeissman2019_filtered.h5ad`` there.
    download
        Download the file if it is not in the cache. With ``False``, a missing file raises
        :class:`FileNotFoundError` (the message gives the expected path and the URL).
    path
        Read this h5ad file instead (no download; the cache folder is not used). Its hashes
        are recorded in ``uns["norman2019"]`` but not checked against the record.

    Returns
    -------
    anndata.AnnData
        One row per cell, in the file's order.

        - ``X``: raw UMI counts, CSR ``float32`` (cells x genes). The counts are taken from
          ``layers["counts"]`` if the file has that layer, else from ``raw.X`` (with
          ``raw.var``), else from ``X`` (the case of the scPerturb file);
          ``uns["norman2019"]["counts_from"]`` says which. If the values are not
          non-negative integers, a :class:`UserWarning` is raised and
          ``uns["norman2019"]["raw_counts"]`` is ``False``.
        - ``obs_names``: the source cell barcodes. ``var_names``: gene symbols (made unique
          if needed, originals in ``var["gene_symbol"]``); ``var["ensembl_id"]`` and the
          source's per-gene ``n_counts`` and ``n_cells``.
        - ``obs["perturbation"]``: categorical, ``"control"`` for non-targeting controls,
          else the target genes joined by ``"+"`` in alphabetical order (``"B_A"`` ->
          ``"A+B"``). Categories: control, then single genes, then doubles, each
          alphabetical. Missing labels stay missing.
        - ``obs["n_perturbations"]``: number of target genes (0, 1, 2; nullable ``Int64``).
        - ``obs["perturbation_source"]``: the published label (categorical).
        - The other source obs columns under snake_case names (``guide_id``,
          ``read_count``, ``umi_count``, ``coverage``, ``gem_group``, ``good_coverage``,
          ``number_of_cells``, ``n_genes``, ``n_counts``, ``percent_mito``,
          ``percent_ribo``, and scPerturb's constant annotations such as ``cell_line``);
          text columns are categorical. ``nperts`` is dropped (see ``n_perturbations``).
          The source ``uns``, ``obsm`` and other layers are not kept.
        - ``uns["attribution"]``: citation and provenance text.
        - ``uns["norman2019"]``: ``description``, ``citation``, ``source``, ``url``,
          ``filename``, ``sha256`` and ``md5`` of the file read, ``checksum_verified``,
          ``counts_from``, ``raw_counts`` and ``perturbation_column``.

    Raises
    ------
    FileNotFoundError
        If ``download=False`` and the file is not in the cache, or ``path`` is not a file.
    ConnectionError
        If the download fails (no network, HTTP error, interrupted transfer); the message
        names the URL and where to place the file by hand.
    ValueError
        If a checksum does not match (a bad download is deleted; a bad cached file is kept
        and reported), the file is not an h5ad, or it has no perturbation label column.

    Examples
    --------
    >>> from scgde.datasets import norman2019
    >>> adata = norman2019()  # doctest: +SKIP
    >>> adata.obs["n_perturbations"].value_counts()  # doctest: +SKIP
    """
    return _load("norman2019", cache_dir, download, path, combinations=True)


def replogle2022(
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    path: str | os.PathLike | None = None,
) -> anndata.AnnData:
    """Load the Replogle et al. 2022 K562 essential-gene Perturb-seq data (real, on demand).

    K562 cells expressing dCas9-KRAB (CRISPR interference) were transduced with a dual-guide
    library knocking down about 2,000 common essential genes and profiled by 10x Perturb-seq
    on day 6: about 310,000 cells and 8,563 genes, among them about 10,700 non-targeting
    control cells. Please cite

        Replogle J. M., Saunders R. A., Pogson A. N., et al. (2022). Mapping
        information-rich genotype-phenotype landscapes with genome-scale Perturb-seq.
        *Cell* 185(14):2559-2575.e28. doi:10.1016/j.cell.2022.05.013

    and scPerturb (Peidli et al. 2024, *Nature Methods* 21:531-540), whose harmonised file
    ``ReplogleWeissman2022_K562_essential.h5ad`` is read, from
    https://zenodo.org/records/13350497/files/ReplogleWeissman2022_K562_essential.h5ad
    (scPerturb v1.4, CC BY 4.0; made from the authors' figshare file
    ``K562_essential_raw_singlecell_01.h5ad``). Its obs column ``perturbation`` holds the
    target gene symbol (``"AAAS"``) or the control label ``"control"`` (the authors' label
    ``"non-targeting"`` is recognised too). Labels are not split, so every cell is a control
    or a single perturbation. The authors' figshare file (obs ``gene``; var index Ensembl
    IDs with a ``gene_name`` column) can be read with ``path=``.

    scPerturb stores this matrix dense (about 10 GiB as float32); it is converted to CSR a
    block of rows at a time, so the dense matrix is never held in memory whole.

    Download, cache and checksums work as in :func:`norman2019` (URL and checksums in
    ``scgde.datasets._perturbseq._SOURCES``; hashes in ``adata.uns["replogle2022"]``).

    Parameters
    ----------
    cache_dir
        Folder holding the file (created if needed). Default ``$SCGDE_DATA_DIR/replogle2022``
        if the environment variable ``SCGDE_DATA_DIR`` is set, else
        ``~/.cache/scgde/replogle2022``. To work offline, place
        ``ReplogleWeissman2022_K562_essential.h5ad`` there.
    download
        Download the file if it is not in the cache. With ``False``, a missing file raises
        :class:`FileNotFoundError` (the message gives the expected path and the URL).
    path
        Read this h5ad file instead (no download; the cache folder is not used). Its hashes
        are recorded in ``uns["replogle2022"]`` but not checked against the record.

    Returns
    -------
    anndata.AnnData
        One row per cell, in the file's order.

        - ``X``: raw UMI counts, CSR ``float32`` (cells x genes), from ``layers["counts"]``,
          ``raw.X`` or ``X`` as in :func:`norman2019` (``X`` for the scPerturb file);
          ``uns["replogle2022"]["counts_from"]`` says which.
        - ``obs_names``: the source cell barcodes. ``var_names``: gene symbols (scPerturb
          names the duplicated symbols TBCE and HSPA14 ``"<symbol>_<Ensembl ID>"``);
          ``var["ensembl_id"]``, ``var["n_counts"]``, ``var["n_cells"]``.
        - ``obs["perturbation"]``: categorical, ``"control"`` for non-targeting controls,
          else the target gene symbol; ``"control"`` is the first category.
        - ``obs["n_perturbations"]``: 0 for controls, 1 otherwise (nullable ``Int64``).
        - ``obs["perturbation_source"]``: the published label (categorical).
        - The other source obs columns under snake_case names (``batch`` (the 10x gem
          group), ``gene``, ``gene_id``, ``transcript``, ``gene_transcript``, ``guide_id``,
          ``percent_mito``, ``umi_count``, ``z_gemgroup_umi``, ``core_scale_factor``,
          ``core_adjusted_umi_count``, ``n_counts``, ``n_genes``, ``percent_ribo``, and
          scPerturb's constant annotations such as ``cell_line``); text columns are
          categorical. ``nperts`` is dropped. The source ``uns``, ``obsm`` and other
          layers are not kept.
        - ``uns["attribution"]``: citation and provenance text.
        - ``uns["replogle2022"]``: as ``uns["norman2019"]`` in :func:`norman2019`.

    Raises
    ------
    FileNotFoundError
        If ``download=False`` and the file is not in the cache, or ``path`` is not a file.
    ConnectionError
        If the download fails; the message names the URL and where to place the file.
    ValueError
        If a checksum does not match, the file is not an h5ad, or it has no perturbation
        label column.

    Examples
    --------
    >>> from scgde.datasets import replogle2022
    >>> adata = replogle2022()  # doctest: +SKIP
    >>> (adata.obs["perturbation"] == "control").sum()  # doctest: +SKIP
    """
    return _load("replogle2022", cache_dir, download, path, combinations=False)
