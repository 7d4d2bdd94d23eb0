"""Distances between groups: between their embeddings, or between their cells."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse
from scipy.spatial.distance import pdist, squareform

from .._constants import COV_SUFFIX, DEFAULT_KEY_ADDED, SE_SUFFIX, UNS_SETTINGS_KEY
from .._utils import check_int, check_key_added
from ..data import group_labels
from ..metrics._kernel import energy_matrix

METHODS = ("euclidean", "energy")
#: Representation used by ``method="energy"`` when ``use_rep`` is not given.
DEFAULT_ENERGY_REP = "X_pca"


def group_distances(
    adata: AnnData,
    key: str = DEFAULT_KEY_ADDED,
    group_key: str | Sequence[str] | None = None,
    method: str = "euclidean",
    use_rep: str | None = None,
    key_added: str | None = None,
    max_cells_per_group: int | None = 500,
    seed: int = 0,
) -> pd.DataFrame:
    r"""Group × group distance matrix, written to ``adata.uns``.

    ``method="euclidean"``
        Euclidean distance between the groups' distribution embeddings, the table
        ``adata.uns[key]`` written by :meth:`scgde.model.GDE.get_distribution_embedding`.
        Groups and their order are those of the table.
    ``method="energy"``
        A model-free reference: the squared energy distance
        (:func:`scgde.metrics.energy_distance`, V-statistic)

        .. math::

            \mathcal{E}^2(A, B) = 2\,E\lVert a-b\rVert - E\lVert a-a'\rVert - E\lVert b-b'\rVert

        between the **cells** of every two groups, in the representation
        ``adata.obsm[use_rep]`` (default ``"X_pca"``; ``"X"`` for ``adata.X``). Groups with
        more than ``max_cells_per_group`` cells are subsampled (without replacement, with
        ``seed``). Groups are the sorted categories of ``adata.obs[group_key]``. Each group's
        within-group term is computed once, and all pairs in one blocked pass over the cells,
        so memory stays bounded (about 32 MiB of pairwise distances at a time).

    Comparing the two (e.g. with a Mantel-style correlation of the matrices) shows how well
    distances between embeddings reflect distances between the groups' cells.

    Parameters
    ----------
    adata
        The cell-level AnnData; for ``"euclidean"``, with the embedding table in
        ``adata.uns[key]``.
    key
        ``uns`` key of the embedding table (``key_added`` of ``get_distribution_embedding``).
        Also names the default output key.
    group_key
        ``"energy"`` only: obs column(s) defining the groups. Default: the ``group_key``
        recorded in ``adata.uns["gde"][key]`` by ``get_distribution_embedding``. A list of
        columns defines groups by their combination, labelled ``"a | b"`` as in the model.
    method
        ``"euclidean"`` or ``"energy"``.
    use_rep
        ``"energy"`` only: the cell representation, a key of ``adata.obsm`` or ``"X"``.
        Default ``"X_pca"`` (run ``sc.pp.pca`` on log-normalised data first).
    key_added
        ``uns`` key of the result; default ``f"{key}_distances_{method}"``. With
        ``"euclidean"`` and the embeddings' covariances in ``uns[key + "_cov"]`` (from
        :meth:`~scgde.model.GDE.get_embedding_uncertainty`), the distances' standard errors
        (delta method) go to ``uns[key_added + "_se"]``.
    max_cells_per_group
        ``"energy"`` only: cells used per group at most; ``None`` uses all cells (the cost
        grows with the square of the total number of cells used).
    seed
        ``"energy"`` only: seed of the subsampling.

    Returns
    -------
    DataFrame
        Symmetric groups × groups matrix with a zero diagonal, index and columns the group
        names. The same table is stored in ``adata.uns[key_added]``; nothing else in
        ``adata`` changes.

    Raises
    ------
    KeyError
        If ``adata.uns[key]``, ``adata.obsm[use_rep]`` or the group column is missing.
    ValueError
        For an unknown ``method``, values that are not finite, ``use_rep`` with
        ``"euclidean"``, a bad ``max_cells_per_group``, or no recorded ``group_key``.

    Examples
    --------
    >>> model.get_distribution_embedding()  # adata.uns["X_gde"]
    >>> d_z = scgde.tl.group_distances(adata)  # adata.uns["X_gde_distances_euclidean"]
    >>> cells = adata.copy()  # keeps uns["gde"], so the group key is known
    >>> sc.pp.normalize_total(cells, target_sum=1e4)
    >>> sc.pp.log1p(cells)
    >>> sc.pp.pca(cells)
    >>> d_cells = scgde.tl.group_distances(cells, method="energy")  # uses obsm["X_pca"]
    >>> scgde.pl.group_distance_heatmap(d_z)
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {METHODS}.")
    if key_added is None:
        key_added = f"{key}_distances_{method}"
    check_key_added(key_added)
    covariances = None
    if method == "euclidean":
        if use_rep is not None:
            raise ValueError(
                "`use_rep` is only used with method='energy'; method='euclidean' compares the "
                f"group embeddings in adata.uns[{key!r}]."
            )
        embeddings = embedding_table(adata, key)
        names, matrix = _euclidean(embeddings)
        covariances = recorded_covariances(adata, key, embeddings.index)
    else:
        if group_key is None:
            group_key = recorded_group_key(adata, key)
        names, matrix = _energy(
            adata, group_key, use_rep or DEFAULT_ENERGY_REP, max_cells_per_group, seed
        )
    index = pd.Index(names, name="group")
    table = pd.DataFrame(matrix, index=index, columns=index.copy())
    se = None
    if method == "euclidean" and covariances is not None:
        se = _euclidean_se(embeddings.to_numpy(dtype=np.float64), covariances)
        se = pd.DataFrame(se, index=index.copy(), columns=index.copy())
    adata.uns[key_added] = table
    if se is not None:
        adata.uns[key_added + SE_SUFFIX] = se
    return table


# ------------------------------------------------------------------------------- euclidean
def embedding_table(adata: AnnData, key: str) -> pd.DataFrame:
    """The group embedding table ``adata.uns[key]``, checked (numeric, finite, unique index)."""
    if key not in adata.uns:
        tables = [k for k, v in adata.uns.items() if isinstance(v, pd.DataFrame)]
        raise KeyError(
            f"adata.uns has no {key!r}. Run `model.get_distribution_embedding(adata, "
            f"key_added={key!r})` first, or pass the key it was written to "
            f"(tables in adata.uns: {tables})."
        )
    table = adata.uns[key]
    if not isinstance(table, pd.DataFrame):
        raise ValueError(
            f"adata.uns[{key!r}] must be a DataFrame of groups × embedding dimensions, got "
            f"{type(table).__name__}."
        )
    try:
        values = table.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"adata.uns[{key!r}] must hold numbers only.") from error
    if values.shape[0] == 0 or values.shape[1] == 0:
        raise ValueError(f"adata.uns[{key!r}] is empty (shape {values.shape}).")
    if not np.isfinite(values).all():
        raise ValueError(f"adata.uns[{key!r}] contains NaN or infinite values.")
    if table.index.has_duplicates:
        raise ValueError(f"adata.uns[{key!r}] has duplicated group names in its index.")
    return table


def _euclidean(table: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    values = table.to_numpy(dtype=np.float64)
    matrix = squareform(pdist(values)) if len(values) > 1 else np.zeros((1, 1))
    return [str(name) for name in table.index], matrix


def recorded_covariances(adata: AnnData, key: str, names: pd.Index) -> np.ndarray | None:
    """The covariances of the embeddings of ``names`` that
    :meth:`~scgde.model.GDE.get_embedding_uncertainty` recorded for ``key``
    (``(len(names), d, d)``, NaN for groups without one), or ``None`` if there are none."""
    covariances, errors = adata.uns.get(key + COV_SUFFIX), adata.uns.get(key + SE_SUFFIX)
    if covariances is None or not isinstance(errors, pd.DataFrame):
        return None
    covariances = np.asarray(covariances, dtype=np.float64)
    d = errors.shape[1]
    if covariances.shape != (len(errors), d, d):
        raise ValueError(
            f"adata.uns[{key + COV_SUFFIX!r}] has shape {covariances.shape}, but "
            f"adata.uns[{key + SE_SUFFIX!r}] lists {len(errors)} groups of {d} dimensions."
        )
    position = pd.Series(np.arange(len(errors)), index=errors.index.astype(str))
    rows = position.reindex(pd.Index(names).astype(str)).to_numpy()
    known = ~np.isnan(rows)
    out = np.full((len(rows), d, d), np.nan)
    out[known] = covariances[rows[known].astype(np.int64)]
    return out


def _euclidean_se(values: np.ndarray, covariances: np.ndarray) -> np.ndarray:
    """Standard errors of the distances between the rows of ``values`` (embeddings with these
    ``covariances``).

    Groups are drawn independently, so by the delta method the variance of
    ``d = |z_a - z_b|`` is ``u' (cov_a + cov_b) u`` with ``u = (z_a - z_b) / d`` (valid when
    ``d`` is large against the errors). Pairs with a group without a covariance get NaN; a
    group with itself gets 0.
    """
    difference = values[:, None, :] - values[None, :, :]
    norm = np.linalg.norm(difference, axis=-1, keepdims=True)
    unit = np.divide(difference, norm, out=np.zeros_like(difference), where=norm > 0)
    variance = np.einsum("abi,aij,abj->ab", unit, covariances, unit) + np.einsum(
        "abi,bij,abj->ab", unit, covariances, unit
    )
    se = np.sqrt(np.maximum(variance, 0.0))
    np.fill_diagonal(se, 0.0)
    return se


# ---------------------------------------------------------------------------------- energy
def recorded_settings(adata: AnnData, key: str | None = None) -> dict:
    """Settings that :meth:`~scgde.model.GDE.get_distribution_embedding` recorded in
    ``adata.uns["gde"]``: those of ``key`` (``{}`` if none), or, with ``key=None``, those of
    every key (``{key: settings}``).

    Data written by scgde 0.1 hold one flat settings dict for the last ``key_added``; it is
    read as the settings of any key (the group key is the model's, whatever the key).
    """
    recorded = adata.uns.get(UNS_SETTINGS_KEY)
    if not isinstance(recorded, Mapping):
        return {}
    if isinstance(recorded.get("key_added"), str):  # scgde 0.1
        settings = {k: v for k, v in recorded.items() if k != "key_added"}
        return {recorded["key_added"]: settings} if key is None else settings
    by_key = {k: dict(v) for k, v in recorded.items() if isinstance(v, Mapping)}
    return by_key if key is None else by_key.get(key, {})


def recorded_group_key(adata: AnnData, key: str) -> str | list[str]:
    """The ``group_key`` recorded for ``key`` in ``adata.uns["gde"]``, or a clear error."""
    group_key = recorded_settings(adata, key).get("group_key")
    if group_key is None:
        raise ValueError(
            f"Pass `group_key`: adata.uns[{UNS_SETTINGS_KEY!r}] records none for {key!r} (it is "
            "written by `model.get_distribution_embedding`)."
        )
    if isinstance(group_key, np.ndarray):  # lists come back from h5ad as arrays
        group_key = [str(k) for k in group_key]
    return group_key


def representation(adata: AnnData, use_rep: str):
    """``adata.obsm[use_rep]`` (or ``adata.X`` for ``"X"``), without copying."""
    if use_rep == "X":
        return adata.X
    if use_rep not in adata.obsm:
        hint = " Run `sc.pp.pca(adata)` on log-normalised data first." if use_rep == "X_pca" else ""
        raise KeyError(
            f"adata.obsm has no {use_rep!r}; available: {list(adata.obsm)} (or 'X').{hint}"
        )
    rep = adata.obsm[use_rep]
    return rep.to_numpy() if isinstance(rep, pd.DataFrame) else rep


def subsample_groups(
    labels: pd.Categorical, max_cells: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cell indices of every group (at most ``max_cells`` each), concatenated group by group.

    Returns the indices (sorted within each group) and the number of cells kept per group.
    """
    rng = np.random.default_rng(seed)
    codes = np.asarray(labels.codes)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=len(labels.categories))
    chunks = np.split(order, np.cumsum(counts)[:-1])
    kept = []
    for cells in chunks:
        if max_cells is not None and len(cells) > max_cells:
            cells = np.sort(rng.choice(cells, max_cells, replace=False))
        kept.append(cells)
    return np.concatenate(kept), np.array([len(c) for c in kept])


def _energy(
    adata: AnnData,
    group_key,
    use_rep: str,
    max_cells_per_group,
    seed: int,
) -> tuple[list[str], np.ndarray]:
    max_cells_per_group = check_int(max_cells_per_group, "max_cells_per_group", allow_none=True)
    rep = representation(adata, use_rep)
    labels = group_labels(adata.obs, group_key)
    if len(labels.categories) == 0:
        raise ValueError("The AnnData has no cells, so there are no groups to compare.")
    cells, sizes = subsample_groups(labels, max_cells_per_group, seed)
    points = rep[cells]
    points = points.toarray() if sparse.issparse(points) else np.asarray(points)
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] == 0:
        raise ValueError(f"The representation {use_rep!r} must be a 2-d array with columns.")
    if not np.isfinite(points).all():
        raise ValueError(f"The representation {use_rep!r} contains NaN or infinite values.")
    return [str(c) for c in labels.categories], energy_matrix(points, sizes)
