"""Baselines for predicting held-out perturbations, in the output format of a model.

Both predict a shift per (perturbation, context) pair, with the conventions of
:func:`scgde.tl.pseudobulk_shifts` (log-normalised expression, pseudobulk = mean, shift =
pseudobulk of the perturbed cells minus that of the control cells of the same context), and
return predicted cells (control cells plus the shift) that
:func:`scgde.tl.score_perturbations` scores: the reference a model has to beat.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from anndata import AnnData

from .._utils import check_int, dense_rows, layer_matrix
from ..data import looks_like_counts, split_combination
from ._perturbation_inputs import Control, names_list, pair_index, shifts_and_control

Pair = tuple[str, "str | None"]


# ---------------------------------------------------------------------------------- inputs
def parse_pairs(items, context_key: str | None, name: str) -> list[Pair]:
    """``train``/``predict`` as a list of (perturbation, context) pairs (context ``None``).

    Without a context key, items are perturbation names (a single string is one name); with
    one, items are ``(perturbation, context)`` pairs (e.g. a ``MultiIndex``). Labels become
    strings; repeated items are kept once, in first-seen order.
    """
    if items is None:
        raise ValueError(f"`{name}` is required.")
    if isinstance(items, str) or (context_key is None and np.isscalar(items)):
        items = [items]
    if not isinstance(items, Iterable):
        raise TypeError(f"`{name}` must be a list, got {type(items).__name__}.")
    pairs: list[Pair] = []
    for item in items:
        if context_key is None:
            if isinstance(item, tuple | list | np.ndarray):
                raise ValueError(
                    f"`{name}` holds {item!r}, a pair, but no `context_key` was given: pass "
                    "perturbation names, or give `context_key`."
                )
            pairs.append((str(item), None))
        else:
            if isinstance(item, str) or not isinstance(item, Iterable) or len(list(item)) != 2:
                raise ValueError(
                    f"With `context_key`, `{name}` must hold (perturbation, context) pairs; got "
                    f"{item!r}."
                )
            perturbation, context = list(item)
            pairs.append((str(perturbation), str(context)))
    pairs = list(dict.fromkeys(pairs))
    if not pairs:
        raise ValueError(f"`{name}` is empty.")
    return pairs


def training_shifts(
    adata: AnnData,
    perturbation_key: str,
    control,
    train,
    predict,
    context_key: str | None,
    layer: str | None,
) -> tuple[pd.DataFrame, list[Pair], list[Pair], Control]:
    """Shifts of the training pairs, the parsed pairs, and the control (all checked)."""
    if adata.var_names.has_duplicates:
        raise ValueError("adata.var_names has duplicates; make them unique first.")
    predict_pairs = parse_pairs(predict, context_key, "predict")
    if looks_like_counts(layer_matrix(adata, layer)):
        warnings.warn(
            "The expression looks like raw counts (all values are non-negative integers); the "
            "baselines shift log-normalised expression (e.g. sc.pp.normalize_total + "
            "sc.pp.log1p).",
            UserWarning,
            stacklevel=3,
        )
    shifts, _, control_object = shifts_and_control(
        adata, perturbation_key, control, context_key, layer
    )
    if train is None:  # every perturbed pair of adata that is not predicted
        predicted = {p if c is None else (p, c) for p, c in predict_pairs}
        train = [key for key in shifts.index if key not in predicted]
        if not train:
            raise ValueError("adata has no perturbed pairs besides those of `predict`.")
    train_pairs = parse_pairs(train, context_key, "train")
    present = set(shifts.index)
    keys = [p if c is None else (p, c) for p, c in train_pairs]
    missing = [pair for pair, key in zip(train_pairs, keys, strict=True) if key not in present]
    if missing:
        raise KeyError(
            f"Training pair(s) {names_list(missing)} have no perturbed cells in adata (by "
            f"{perturbation_key!r}{'' if context_key is None else f', {context_key!r}'})."
        )
    control_object.check_contexts([c for _, c in predict_pairs], "`predict`")
    return shifts.loc[keys], train_pairs, predict_pairs, control_object


def feature_table(features, adata: AnnData, perturbation_key: str) -> pd.DataFrame:
    """Perturbation features as a float64 DataFrame indexed by perturbation name (strings).

    Accepts a DataFrame indexed by perturbation, a mapping name -> vector, or an ndarray whose
    rows follow the categories of the categorical ``adata.obs[perturbation_key]``.
    """
    if isinstance(features, pd.DataFrame):
        table = features
    elif isinstance(features, Mapping):
        table = pd.DataFrame.from_dict(
            {k: np.atleast_1d(np.asarray(v, dtype=np.float64)) for k, v in features.items()},
            orient="index",
        )
    elif isinstance(features, np.ndarray):
        column = adata.obs.get(perturbation_key)
        categories = (
            column.cat.categories
            if column is not None and isinstance(column.dtype, pd.CategoricalDtype)
            else None
        )
        if features.ndim != 2 or categories is None or len(categories) != features.shape[0]:
            raise TypeError(
                "An ndarray of `features` must be 2-d with one row per category of the "
                f"categorical adata.obs[{perturbation_key!r}], in order; pass a DataFrame indexed "
                "by perturbation name instead."
            )
        table = pd.DataFrame(features, index=categories)
    else:
        raise TypeError(
            "`features` must be a DataFrame indexed by perturbation, a mapping perturbation -> "
            f"vector, or an ndarray; got {type(features).__name__}."
        )
    table = table.copy()
    table.index = table.index.astype(str)
    if table.index.has_duplicates:
        duplicated = table.index[table.index.duplicated()].unique()
        raise ValueError(f"`features` has duplicated perturbation(s) {names_list(duplicated)}.")
    try:
        table = table.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError("`features` must hold numbers only.") from error
    if table.shape[1] == 0:
        raise ValueError("`features` has no columns.")
    return table


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Closed-form ridge regression with an unpenalised intercept.

    Minimises :math:`\lVert Y - 1b^\top - XW\rVert_F^2 + \alpha\lVert W\rVert_F^2` via the SVD of
    the centred inputs, :math:`W = V\,\mathrm{diag}(s/(s^2+\alpha))\,U^\top Y_c`, dropping
    singular values below round-off; so ``alpha=0`` is the minimum-norm least-squares fit.
    Returns ``(W, b)``.
    """
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    u, s, vt = np.linalg.svd(x - x_mean, full_matrices=False)
    keep = s > s.max(initial=0.0) * max(x.shape) * np.finfo(np.float64).eps
    factor = np.zeros_like(s)
    factor[keep] = s[keep] / (s[keep] ** 2 + alpha)
    weights = vt.T @ (factor[:, None] * (u.T @ (y - y_mean)))
    return weights, y_mean - x_mean @ weights


# ---------------------------------------------------------------------------------- output
def predicted_cells(
    adata: AnnData,
    shift: pd.DataFrame,
    pairs: list[Pair],
    control_object: Control,
    perturbation_key: str,
    context_key: str | None,
    n_cells: int | None,
    layer: str | None,
    seed: int,
    method: str,
) -> AnnData:
    """The predicted cells of every pair: control cells of its context plus its shift."""
    if n_cells is not None:
        n_cells = check_int(n_cells, "n_cells")
    rng = np.random.default_rng(seed)
    dtype = control_object.matrix.dtype
    dtype = np.float32 if np.dtype(dtype).itemsize <= 4 else np.float64
    values, sources, perturbations, contexts = [], [], [], []
    for (perturbation, context), row in zip(pairs, shift.to_numpy(), strict=True):
        rows = control_object.rows[context]
        if n_cells is not None:
            rows = rng.choice(rows, n_cells, replace=True)
        cells = dense_rows(control_object.matrix, rows)
        cells += row
        values.append(cells.astype(dtype, copy=False))
        sources.append(control_object.obs_names[rows])
        perturbations += [perturbation] * len(rows)
        contexts += [context] * len(rows)
    matrix = np.concatenate(values)
    obs = pd.DataFrame(
        {perturbation_key: pd.Categorical(perturbations)},
        index=pd.Index([f"predicted_{i}" for i in range(len(matrix))]),
    )
    if context_key is not None:
        obs[context_key] = pd.Categorical(contexts)
    obs["control_cell"] = np.concatenate([np.asarray(s, dtype=object) for s in sources])
    out = AnnData(X=matrix, obs=obs, var=adata.var.copy())
    if layer is not None:
        out.layers[layer] = matrix.copy()
    out.uns["predicted_shift"] = shift
    settings = {"method": method, "perturbation_key": perturbation_key}
    if context_key is not None:
        settings["context_key"] = context_key
    out.uns["perturbation_baseline"] = settings
    return out


# ------------------------------------------------------------------------------- baselines
def mean_shift_baseline(
    adata: AnnData,
    perturbation_key: str,
    control,
    train,
    predict,
    context_key: str | None = None,
    n_cells: int | None = None,
    layer: str | None = None,
    seed: int = 0,
    target_knockdown: bool = False,
    separator: str = "+",
) -> AnnData:
    """Predict every held-out perturbation by the mean shift of the training perturbations.

    The predicted shift of a pair is the unweighted mean (each training pair counts once,
    whatever its number of cells) of the training shifts
    (:func:`scgde.tl.pseudobulk_shifts`) **in the same context**, when
    that context has training pairs; otherwise the mean over all training pairs of all contexts.
    Without ``context_key``, the mean over all training perturbations. It ignores which
    perturbation is asked for, so it measures how much of a response is generic.

    Parameters
    ----------
    adata
        Training cells (perturbed and, with a label ``control``, control), log-normalised in
        ``X`` or ``layers[layer]``.
    perturbation_key
        obs column naming each cell's perturbation.
    control
        Control label of ``obs[perturbation_key]``, or an AnnData of control cells with the same
        genes (and ``obs[context_key]``). Predicted cells are built from these control cells,
        so every context of ``predict`` needs control cells.
    train
        Training perturbations, or ``(perturbation, context)`` pairs with ``context_key``; all
        must have cells in ``adata``. ``None``: every perturbed pair of ``adata`` that is not
        in ``predict``.
    predict
        Perturbations or pairs to predict (they need no cells in ``adata``).
    context_key
        obs column naming the context; ``None``: one pooled control.
    n_cells
        Predicted cells per pair: ``None`` uses every control cell of the context once; an
        integer draws that many with replacement.
    layer
        Layer holding the log-normalised expression (also written to the output's layers).
    seed
        Seed of the control-cell draw.
    target_knockdown
        For genetic perturbations: each part of a predicted perturbation that is a gene of
        ``adata`` (split at ``separator``) gets, instead of the mean shift, the median shift
        that the single-gene training perturbations show on their own target gene: "the
        target goes down by the typical amount, everything else moves by the mean shift".
    separator
        Separator of the parts of combinations (with ``target_knockdown``).

    Returns
    -------
    AnnData
        The predicted cells, in the format a model's predictions take (``adata`` is not
        modified):

        * ``X``: control cells of the pair's context plus the predicted shift (log-normalised
          scale, not clipped: a negative shift can give slightly negative values; float32
          unless the input is float64). With ``n_cells=None`` every control cell of the context
          is used once, so the pseudobulk shift of the predicted cells is the predicted shift;
          with ``n_cells=k``, ``k`` control cells are drawn with replacement
          (``numpy.random.default_rng(seed)``, one generator for the call). With ``layer``,
          the same values are also in ``layers[layer]``, so the output can be scored with that
          ``layer``.
        * ``obs[perturbation_key]``, ``obs[context_key]`` (with contexts) and
          ``obs["control_cell"]``, the name of the control cell each cell was built from.
        * ``uns["predicted_shift"]``: the predicted shifts, pairs of ``predict`` × genes,
          indexed like :func:`scgde.tl.pseudobulk_shifts` (with contexts a ``MultiIndex``,
          which h5ad cannot store: save ``table.reset_index()`` instead).
        * ``uns["perturbation_baseline"]``: ``method`` and the keys.

    Raises
    ------
    KeyError
        If a training pair has no cells, a context of ``predict`` has no control cells, or a
        column or layer is missing.
    ValueError
        For empty or malformed ``train``/``predict`` or bad arguments.
    """
    train_shifts, train_pairs, predict_pairs, control_object = training_shifts(
        adata, perturbation_key, control, train, predict, context_key, layer
    )
    values = train_shifts.to_numpy()
    contexts = np.array([c for _, c in train_pairs], dtype=object)
    overall = values.mean(axis=0)
    by_context = {c: values[contexts == c].mean(axis=0) for c in set(contexts)}
    rows = np.stack([by_context.get(c, overall) for _, c in predict_pairs])
    if target_knockdown:
        rows = _with_target_shifts(rows, train_shifts, train_pairs, predict_pairs, adata, separator)
    shift = pd.DataFrame(
        rows,
        index=pair_index(predict_pairs, perturbation_key, context_key),
        columns=adata.var_names.copy(),
    )
    return predicted_cells(
        adata,
        shift,
        predict_pairs,
        control_object,
        perturbation_key,
        context_key,
        n_cells,
        layer,
        seed,
        "mean_shift",
    )


def _with_target_shifts(
    rows: np.ndarray,
    train_shifts: pd.DataFrame,
    train_pairs: list[Pair],
    predict_pairs: list[Pair],
    adata: AnnData,
    separator: str,
) -> np.ndarray:
    """``rows`` with each predicted pair's target genes set to the median training shift of
    single-gene perturbations on their own target."""
    column = {str(g): i for i, g in enumerate(adata.var_names)}

    def parts(perturbation: str) -> list[str]:
        try:
            return split_combination(str(perturbation), separator)
        except ValueError:  # the control condition itself: no parts
            return []

    own = [
        values[column[names[0]]]
        for (perturbation, _), values in zip(train_pairs, train_shifts.to_numpy(), strict=True)
        if len(names := parts(perturbation)) == 1 and names[0] in column
    ]
    if not own:
        raise ValueError(
            "`target_knockdown=True` needs single-gene training perturbations named by a gene "
            "of adata.var_names; there are none."
        )
    rows = rows.copy()
    for i, (perturbation, _) in enumerate(predict_pairs):
        rows[i, [column[p] for p in parts(perturbation) if p in column]] = float(np.median(own))
    return rows


def ridge_baseline(
    adata: AnnData,
    perturbation_key: str,
    control,
    features,
    train,
    predict,
    context_key: str | None = None,
    alpha: float = 1.0,
    n_cells: int | None = None,
    layer: str | None = None,
    seed: int = 0,
) -> AnnData:
    r"""Predict held-out perturbations by ridge regression from perturbation features to shifts.

    Fits :math:`\text{shift} = W^\top x + b` on the training pairs (one row per pair, each pair
    counting once), in closed form (SVD; intercept :math:`b` not penalised, features used as
    given — standardise them first if their scales differ), and applies it to ``predict``.

    With ``context_key`` the input of a pair is its perturbation's features followed by a
    **one-hot encoding of its context** (one column per context of the training pairs), i.e. an
    additive per-context offset learned from the training pairs. A context without training
    pairs gets an all-zero encoding: its offset is then the intercept alone, roughly the
    average context. (A one-hot is used rather than the context's control pseudobulk, which
    would add one input per gene.)

    Parameters
    ----------
    adata, perturbation_key, control, train, predict, context_key, n_cells, layer, seed
        As in :func:`mean_shift_baseline`.
    features
        Perturbation features: a DataFrame indexed by perturbation name (one row each, numeric
        columns), a mapping name -> vector, or an ndarray with one row per category of the
        categorical ``adata.obs[perturbation_key]``, in order. Every perturbation of ``train``
        and ``predict`` needs a finite row.
    alpha
        Ridge penalty (>= 0; 0 is minimum-norm least squares).

    Returns
    -------
    AnnData
        As :func:`mean_shift_baseline`; ``uns["perturbation_baseline"]`` also records ``alpha``.

    Raises
    ------
    KeyError
        If a perturbation of ``train`` or ``predict`` has no feature row (the message names
        them), plus the errors of :func:`mean_shift_baseline`.
    ValueError
        For non-numeric or non-finite features, a negative ``alpha``, or bad arguments.
    """
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"`alpha` must be finite and >= 0, got {alpha}.")
    table = feature_table(features, adata, perturbation_key)
    train_shifts, train_pairs, predict_pairs, control_object = training_shifts(
        adata, perturbation_key, control, train, predict, context_key, layer
    )
    needed = list(dict.fromkeys(p for p, _ in train_pairs + predict_pairs))
    missing = [p for p in needed if p not in table.index]
    if missing:
        raise KeyError(
            f"Perturbation(s) {names_list(missing)} have no row in `features` "
            f"({len(table)} rows, e.g. {names_list(table.index[:5])})."
        )
    used = table.loc[needed].to_numpy()
    if not np.isfinite(used).all():
        bad = [p for p, row in zip(needed, used, strict=True) if not np.isfinite(row).all()]
        raise ValueError(f"`features` has NaN or infinite values for {names_list(bad)}.")

    train_contexts = sorted({c for _, c in train_pairs if c is not None})

    def design(pairs: list[Pair]) -> np.ndarray:
        x = table.loc[[p for p, _ in pairs]].to_numpy(dtype=np.float64)
        if context_key is None:
            return x
        onehot = np.array([[float(c == t) for t in train_contexts] for _, c in pairs])
        return np.hstack([x, onehot.reshape(len(pairs), len(train_contexts))])

    weights, intercept = ridge_fit(design(train_pairs), train_shifts.to_numpy(), alpha)
    shift = pd.DataFrame(
        design(predict_pairs) @ weights + intercept,
        index=pair_index(predict_pairs, perturbation_key, context_key),
        columns=adata.var_names.copy(),
    )
    out = predicted_cells(
        adata,
        shift,
        predict_pairs,
        control_object,
        perturbation_key,
        context_key,
        n_cells,
        layer,
        seed,
        "ridge",
    )
    out.uns["perturbation_baseline"]["alpha"] = alpha
    return out
