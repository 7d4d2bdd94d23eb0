"""Seeded simulator of clonal lineage-tracing scRNA-seq data (LARRY-like).

:func:`lineage_sets` simulates barcoded clones sampled at several time points, with raw UMI-like
counts, so that every clone x time group is a set of cells whose distribution is known. The
clone state at an early time point predicts the state at a later one to a degree set by
``fate_strength``, which is what lineage-tracing analyses (and set embeddings of clones) try to
recover. The data are **simulated**; see the function's docstring for the exact model.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import anndata
import numpy as np
import pandas as pd
from scipy import sparse

from .._utils import check_int
from ._arguments import Seed, finite_real, nonneg_real

__all__ = ["lineage_sets"]

# Built-in defaults used when no ``reference`` is given (documented in lineage_sets).
_LOG_ABUNDANCE_SD = 1.5  # sd of the baseline log relative abundance log p_g
_LIBRARY_MEDIAN = 3000.0  # median library size (UMIs per cell)
_LIBRARY_LOG_SD = 0.4  # sd of log library size
_DISPERSION_MEDIAN = 0.1  # median NB dispersion phi_g (variance mu + phi mu^2)
_DISPERSION_LOG_SD = 0.5  # sd of log phi_g
# Method-of-moments dispersions estimated from a reference are clipped to this range.
_DISPERSION_CLIP = (1e-3, 1e2)
_CHUNK_ELEMENTS = 1 << 22  # counts are drawn in row blocks of at most this many entries


# ------------------------------------------------------------------------------ validation
def _cells_per_clone(value: object) -> tuple[int, int]:
    """``int`` n -> ``(n, n)``; a pair ``(low, high)`` of positive integers with low <= high."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
        n = check_int(value, "cells_per_clone")
        return n, n
    try:
        low, high = value  # type: ignore[misc]
    except (TypeError, ValueError):
        raise TypeError(
            "cells_per_clone must be a positive integer or a pair (low, high) of positive "
            f"integers, got {value!r}."
        ) from None
    low = check_int(low, "cells_per_clone[0]")
    high = check_int(high, "cells_per_clone[1]")
    if low > high:
        raise ValueError(f"cells_per_clone must satisfy low <= high, got {value!r}.")
    return low, high


def _time_points(value: object) -> np.ndarray:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
        raise TypeError(
            f"time_points must be a sequence of numbers such as (2, 4, 6), got {value!r}."
        )
    times = np.array([finite_real(f"time_points[{i}]", t) for i, t in enumerate(value)])
    if times.size == 0:
        raise ValueError("time_points must contain at least one time point.")
    if np.any(np.diff(times) <= 0):
        raise ValueError(f"time_points must be strictly increasing, got {tuple(value)!r}.")
    return times


def _time_label(t: float) -> str:
    return f"{t:g}"


# ------------------------------------------------------------------------------ reference
def _reference_stats(reference: object) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Per-gene relative abundance, MoM dispersion, library sizes and gene names of a reference.

    With per-cell size factors :math:`s_i = L_i / \\bar L` (:math:`L_i` the cell's total count)
    and :math:`y_{ig} = x_{ig} / s_i`, the model :math:`x_{ig} \\sim NB(s_i \\mu_g, \\phi_g)`
    gives :math:`E[y_g] = \\mu_g` and :math:`Var(y_g) = \\mu_g E[1/s] + \\phi_g \\mu_g^2`, so
    :math:`\\hat\\phi_g = (v_g - m_g \\overline{1/s}) / m_g^2`, clipped to ``_DISPERSION_CLIP``.
    Genes never detected get the median dispersion of the detected ones (or the built-in
    median if none is detected twice).
    """
    if not isinstance(reference, anndata.AnnData):
        raise TypeError(
            f"reference must be an AnnData of raw counts, got {type(reference).__name__}."
        )
    if reference.n_obs < 2 or reference.n_vars < 1:
        raise ValueError(
            f"reference must have at least 2 cells and 1 gene, got shape {reference.shape}."
        )
    x = reference.X
    if x is None:
        raise ValueError("reference.X is empty; it must hold raw counts (cells x genes).")
    x = sparse.csr_matrix(x, dtype=np.float64) if sparse.issparse(x) else np.asarray(x, float)
    values = x.data if sparse.issparse(x) else x
    if not np.all(np.isfinite(values)) or np.any(values < 0) or np.any(values != np.round(values)):
        raise ValueError(
            "reference.X must hold raw counts (finite, non-negative integers); it looks "
            "normalised or log-transformed. Pass an AnnData with raw counts in X."
        )
    totals = np.asarray(x.sum(axis=1)).ravel()
    keep = totals > 0
    if keep.sum() < 2:
        raise ValueError("reference must have at least 2 cells with a positive total count.")
    x, totals = x[keep], totals[keep]
    size = totals / totals.mean()
    inv = 1.0 / size
    if sparse.issparse(x):
        y = sparse.diags(inv) @ x
        m = np.asarray(y.mean(axis=0)).ravel()
        m2 = np.asarray(y.multiply(y).mean(axis=0)).ravel()
    else:
        y = x * inv[:, None]
        m, m2 = y.mean(axis=0), (y * y).mean(axis=0)
    n = x.shape[0]
    v = (m2 - m * m) * n / (n - 1)
    detected = m > 0
    phi = np.full(m.shape, np.nan)
    phi[detected] = (v[detected] - m[detected] * inv.mean()) / m[detected] ** 2
    phi = np.clip(phi, *_DISPERSION_CLIP)
    nonzero = np.asarray((x > 0).sum(axis=0)).ravel() >= 2
    fill = np.median(phi[nonzero]) if nonzero.any() else _DISPERSION_MEDIAN
    phi[~detected] = fill
    # relative abundance with a pseudocount of half a count over the whole reference
    col_totals = np.asarray(x.sum(axis=0)).ravel() + 0.5
    p = col_totals / col_totals.sum()
    return p, phi, totals, [str(g) for g in reference.var_names]


# ------------------------------------------------------------------------------ model pieces
def _haar_orthogonal(rng: np.random.Generator, k: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((k, k)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def _rotation(basis: np.ndarray, angle: float) -> np.ndarray:
    """``basis @ blockdiag(rot(angle), ..., [1]) @ basis.T``: a rotation by ``angle`` in each of
    the ``k // 2`` planes spanned by consecutive column pairs of ``basis``."""
    k = basis.shape[0]
    block = np.eye(k)
    c, s = math.cos(angle), math.sin(angle)
    for j in range(0, k - 1, 2):
        block[j : j + 2, j : j + 2] = [[c, -s], [s, c]]
    return basis @ block @ basis.T


def lineage_sets(
    n_clones: int = 50,
    cells_per_clone: int | tuple[int, int] = (5, 20),
    time_points: Sequence[float] = (2, 4, 6),
    n_genes: int | None = None,
    n_programs: int = 5,
    fate_strength: float = 0.8,
    drift: float = 0.1,
    time_effect: float = 0.25,
    cell_noise: float = 0.5,
    program_scale: float = 0.7,
    reference: anndata.AnnData | None = None,
    seed: Seed = 0,
) -> tuple[anndata.AnnData, dict[str, object]]:
    r"""Simulate clonal lineage-tracing scRNA-seq counts (barcoded clones over time).

    The data are **simulated**, not measured. Cells sharing a barcode (a clone) inherit the
    clone's state in a :math:`k`-dimensional space of gene programs (``k = n_programs``); the
    clone state drifts over the time points :math:`t_1 < \dots < t_T` (``time_points``) so
    that the early state predicts the late state to a degree set by ``fate_strength``
    :math:`f \in [0, 1]`.

    **Clone states.** For each clone :math:`c`, the founding state is
    :math:`z_c(t_1) = s_c \sim \mathcal{N}(0, I_k)`; between consecutive time points
    (:math:`\Delta_j = t_j - t_{j-1}`)

    .. math::

        z_c(t_j) = \rho_j R(\Delta_j)\, z_c(t_{j-1}) + \sqrt{1 - \rho_j^2}\;\varepsilon_{cj},
        \qquad \rho_j = f^{\Delta_j / (t_T - t_1)}, \quad
        \varepsilon_{cj} \sim \mathcal{N}(0, I_k),

    where :math:`R(\Delta) = Q\,\mathrm{blockdiag}(\mathrm{rot}(\omega\Delta), \dots)\,Q^\top`
    rotates by the angle :math:`\omega\Delta` (``drift`` :math:`= \omega`, radians per time
    unit) in each of the :math:`\lfloor k/2 \rfloor` planes of a random orthonormal basis
    :math:`Q`: the *fate drift*, :math:`dz/dt = \Omega z` with :math:`\Omega` skew-symmetric,
    i.e. each clone moves in a direction :math:`\Omega z` set by its own state. Every
    :math:`z_c(t)` is marginally :math:`\mathcal{N}(0, I_k)`, and

    .. math::

        z_c(t_j) \mid s_c \sim \mathcal{N}\big(f^{\tau_j} R(t_j - t_1)\, s_c,\;
        (1 - f^{2\tau_j}) I_k\big), \qquad \tau_j = \frac{t_j - t_1}{t_T - t_1},

    so the mutual information between the first and the last clone state is
    :math:`I(z_c(t_1); z_c(t_T)) = -\tfrac{k}{2}\log(1 - f^2)` nats: 0 for ``fate_strength=0``
    (the late state is independent of the early one) and infinite for ``fate_strength=1``
    (deterministic fate). The matrix :math:`f^{\tau_j} R(t_j - t_1)` is ``params["fate_map"]``.

    **Cells.** At time :math:`t`, clone :math:`c` contributes :math:`n_{ct}` cells
    (``cells_per_clone``: a fixed number, or uniform on the integers ``low..high``
    independently per clone and time). Cell :math:`i` has latent state
    :math:`x_i = m(t) + z_c(t) + \sigma \xi_i` with :math:`\xi_i \sim \mathcal{N}(0, I_k)`,
    ``cell_noise`` :math:`= \sigma`, and a population time trend
    :math:`m(t) = \gamma (t - t_1) u` shared by all clones (``time_effect`` :math:`= \gamma`,
    :math:`u` a random unit vector), which makes time points distinguishable.

    **Counts.** Over :math:`G` = ``n_genes`` genes, the mean expression of cell :math:`i` is
    :math:`\mu_i = L_i\,\mathrm{softmax}(W x_i + b)` and
    :math:`X_{ig} \sim \mathrm{NB}(\mu_{ig}, \phi_g)` (mean :math:`\mu`, variance
    :math:`\mu + \phi_g \mu^2`), with

    - loadings :math:`W_{gj} \sim \mathcal{N}(0, \lambda^2 / k)` (``program_scale``
      :math:`= \lambda`, so the programs move each gene's log expression with sd about
      :math:`\lambda` per unit of latent state);
    - baseline :math:`b_g = \log p_g - \tfrac12 (1 + \sigma^2) \lVert W_g \rVert^2`, where the
      correction makes :math:`E[e^{W_g x + b_g}] = p_g` at :math:`t_1`, so that gene
      :math:`g`'s share of the counts is about :math:`p_g`;
    - without ``reference`` (built-in values): :math:`\log p_g \sim \mathcal{N}(0, 1.5^2)`
      (then normalised to sum to 1), library sizes
      :math:`\log L_i \sim \mathcal{N}(\log 3000, 0.4^2)` and dispersions
      :math:`\log \phi_g \sim \mathcal{N}(\log 0.1, 0.5^2)`;
    - with ``reference`` (raw counts, its genes become the simulated genes): :math:`p_g` is
      the gene's share of all reference counts (plus half a count), :math:`L_i` is resampled
      with replacement from the reference cells' total counts (cells with zero total
      excluded), and :math:`\phi_g` is the method-of-moments estimate on size-factor-normalised
      counts, :math:`\hat\phi_g = (v_g - m_g \overline{1/s}) / m_g^2` (:math:`m_g, v_g` the
      mean and variance of :math:`x_{ig}/s_i`, :math:`s_i` the cell's total over the mean
      total), clipped to :math:`[10^{-3}, 10^2]`; undetected genes get the median estimate.

    Parameters
    ----------
    n_clones
        Number of clones (barcodes), > 0.
    cells_per_clone
        Cells per clone *and time point*: a positive integer, or a pair ``(low, high)`` of
        positive integers (inclusive), drawn uniformly per clone and time point.
    time_points
        Strictly increasing, finite time points (e.g. days), at least one. With a single time
        point ``fate_strength`` and ``drift`` have no effect.
    n_genes
        Number of genes, > 0. Default 200, or ``reference.n_vars`` with a reference (then it
        must equal ``reference.n_vars`` if given).
    n_programs
        Dimension :math:`k` of the latent program space, > 0.
    fate_strength
        :math:`f \in [0, 1]`: the correlation between each coordinate of the first and the
        (rotated) last clone state. 0: no memory of the early state; 1: fully heritable.
    drift
        :math:`\omega`, fate-drift rotation speed in radians per time unit (any finite real).
    time_effect
        :math:`\gamma`, shift of the population mean per time unit along :math:`u` (finite).
    cell_noise
        :math:`\sigma \ge 0`, the sd of the cell-level noise around the clone state.
    program_scale
        :math:`\lambda \ge 0`, scale of the gene loadings :math:`W`.
    reference
        Optional AnnData with raw counts in ``X`` (cells x genes, dense or sparse) used to
        calibrate gene abundances, dispersions and library sizes (see above).
    seed
        Anything :func:`numpy.random.default_rng` accepts; the same integer seed gives
        identical output. Draw order: :math:`W`; :math:`\log p` and :math:`\phi` (only without
        reference); :math:`Q`; :math:`u`; founding states; innovations (time-major); cell
        numbers; cell noise; library sizes; counts (cell by cell, in row order).

    Returns
    -------
    adata
        One row per cell, ordered by clone, then time point. ``X``: raw integer counts, CSR
        ``float32`` (cells x genes). ``obs``:

        - ``clone``: categorical ``"c00"``, ``"c01"``, ... (zero-padded, in clone order);
        - ``time_point``: ordered categorical of the time values (ints if all integral);
        - ``clone_time``: categorical ``"<clone>|d<time>"`` (e.g. ``"c12|d2"``), the sets;
        - ``fate``: categorical ``"program_j"``, the clone's dominant program
          :math:`\arg\max_j z_{cj}(t_T)` at the last time point (same for all its cells);
        - ``library_size``: :math:`L_i` (float64).

        ``obsm["X_latent"]``: the cell states :math:`x_i` (float32). ``var_names``: the
        reference's genes or ``"gene_0"``, ... ``uns["params"]``: the array entries of
        ``params``; ``uns["simulation"]``: a plain statement that the data are simulated, the
        settings and the seed (when an integer).
    params
        ``"clone_states"``: :math:`z_c(t_j)`, ``(n_clones, T, k)``; ``"fate_map"``:
        ``(T, k, k)``, :math:`E[z_c(t_j) \mid s_c] = ` ``fate_map[j] @ s_c``;
        ``"time_shift"``: :math:`m(t_j)`, ``(T, k)``; ``"rotation_basis"``: :math:`Q`;
        ``"W"``: ``(n_genes, k)``; ``"b"``: ``(n_genes,)``; ``"dispersion"``: :math:`\phi`,
        ``(n_genes,)``; ``"mutual_information"``: :math:`I(z_c(t_1); z_c(t_j))` in nats for
        :math:`j = 2, \dots, T`, ``(T - 1,)`` (``inf`` if :math:`f = 1`); all float64.
        ``"settings"``: the dict stored in ``uns["simulation"]``.

    Raises
    ------
    TypeError
        If a size is not an integer, a number is not real, ``time_points`` is not a sequence
        or ``reference`` is not an AnnData.
    ValueError
        If a size is not positive, ``time_points`` is empty or not strictly increasing,
        ``fate_strength`` is outside [0, 1], ``cell_noise`` or ``program_scale`` is negative,
        ``n_genes`` disagrees with the reference, or the reference does not hold raw counts.

    Examples
    --------
    >>> from scgde.datasets import lineage_sets
    >>> adata, params = lineage_sets(n_clones=20, cells_per_clone=10, seed=0)
    >>> adata.shape, params["clone_states"].shape
    ((600, 200), (20, 3, 5))
    >>> adata.obs["clone_time"].iloc[0]
    'c00|d2'
    """
    n_clones = check_int(n_clones, "n_clones")
    low, high = _cells_per_clone(cells_per_clone)
    times = _time_points(time_points)
    k = check_int(n_programs, "n_programs")
    f = finite_real("fate_strength", fate_strength)
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"fate_strength must be in [0, 1], got {f}.")
    omega = finite_real("drift", drift)
    gamma = finite_real("time_effect", time_effect)
    sigma = nonneg_real("cell_noise", cell_noise)
    lam = nonneg_real("program_scale", program_scale)
    if reference is not None:
        ref_p, ref_phi, ref_lib, gene_names = _reference_stats(reference)
        if n_genes is not None and check_int(n_genes, "n_genes") != len(gene_names):
            raise ValueError(
                f"n_genes={n_genes} disagrees with reference.n_vars={len(gene_names)}; "
                "leave n_genes=None to use the reference's genes."
            )
        n_genes = len(gene_names)
    else:
        n_genes = 200 if n_genes is None else check_int(n_genes, "n_genes")
        gene_names = [f"gene_{g}" for g in range(n_genes)]
    rng = np.random.default_rng(seed)
    n_times = times.size

    # ---- gene model
    w = rng.normal(0.0, lam / math.sqrt(k), size=(n_genes, k))
    if reference is None:
        log_p = rng.normal(0.0, _LOG_ABUNDANCE_SD, size=n_genes)
        log_p -= np.logaddexp.reduce(log_p)
        phi = np.exp(rng.normal(math.log(_DISPERSION_MEDIAN), _DISPERSION_LOG_SD, n_genes))
    else:
        log_p, phi = np.log(ref_p), ref_phi
    b = log_p - 0.5 * (1.0 + sigma**2) * np.sum(w * w, axis=1)

    # ---- clone states
    basis = _haar_orthogonal(rng, k)
    u = rng.standard_normal(k)
    u /= np.linalg.norm(u)
    span = times[-1] - times[0]
    tau = (times - times[0]) / span if n_times > 1 else np.zeros(1)
    fate_map = np.stack(
        [f ** tau[j] * _rotation(basis, omega * (times[j] - times[0])) for j in range(n_times)]
    )
    with np.errstate(divide="ignore"):  # f = 1: infinite information
        mutual_information = -0.5 * k * np.log1p(-(f ** (2 * tau[1:])))
    states = np.empty((n_clones, n_times, k))
    states[:, 0] = rng.standard_normal((n_clones, k))
    for j in range(1, n_times):
        rho = f ** (tau[j] - tau[j - 1])
        rot = _rotation(basis, omega * (times[j] - times[j - 1]))
        eps = rng.standard_normal((n_clones, k))
        states[:, j] = rho * states[:, j - 1] @ rot.T + math.sqrt(1.0 - rho**2) * eps
    time_shift = gamma * (times - times[0])[:, None] * u[None, :]

    # ---- cells
    sizes = rng.integers(low, high + 1, size=(n_clones, n_times))
    clone_idx = np.repeat(np.repeat(np.arange(n_clones), n_times), sizes.ravel())
    time_idx = np.repeat(np.tile(np.arange(n_times), n_clones), sizes.ravel())
    n_cells = int(sizes.sum())
    latent = (
        states[clone_idx, time_idx]
        + time_shift[time_idx]
        + sigma * rng.standard_normal((n_cells, k))
    )
    if reference is None:
        library = np.exp(rng.normal(math.log(_LIBRARY_MEDIAN), _LIBRARY_LOG_SD, n_cells))
    else:
        library = rng.choice(ref_lib, size=n_cells, replace=True)

    # ---- counts, in row blocks to bound memory
    theta = 1.0 / phi
    step = max(1, _CHUNK_ELEMENTS // n_genes)
    blocks = []
    for start in range(0, n_cells, step):
        stop = min(start + step, n_cells)
        logits = latent[start:stop] @ w.T + b
        logits -= logits.max(axis=1, keepdims=True)
        prob = np.exp(logits)
        prob /= prob.sum(axis=1, keepdims=True)
        mu = library[start:stop, None] * prob
        counts = rng.negative_binomial(theta, theta / (theta + mu))
        blocks.append(sparse.csr_matrix(counts.astype(np.float32)))
    x = sparse.vstack(blocks, format="csr") if blocks else sparse.csr_matrix((0, n_genes))

    # ---- AnnData
    width = len(str(n_clones - 1))
    clone_names = [f"c{c:0{width}d}" for c in range(n_clones)]
    integral = bool(np.all(times == np.round(times)))
    time_values = [int(t) for t in times] if integral else [float(t) for t in times]
    group_names = [f"{c}|d{_time_label(t)}" for c in clone_names for t in times]
    fate_idx = np.argmax(states[:, -1], axis=1)
    program_names = [f"program_{j}" for j in range(k)]
    obs = pd.DataFrame(
        {
            "clone": pd.Categorical.from_codes(clone_idx, categories=clone_names),
            "time_point": pd.Categorical.from_codes(time_idx, categories=time_values, ordered=True),
            "clone_time": pd.Categorical.from_codes(
                clone_idx * n_times + time_idx, categories=group_names
            ),
            "fate": pd.Categorical.from_codes(fate_idx[clone_idx], categories=program_names),
            "library_size": library,
        },
        index=pd.Index(np.arange(n_cells).astype(str)),
    )
    settings: dict[str, object] = {
        "description": (
            "SIMULATED data from scgde.datasets.lineage_sets (clonal lineage-tracing model); "
            "not real measurements."
        ),
        "simulated": True,
        "family": "lineage",
        "n_clones": n_clones,
        "cells_per_clone": np.array([low, high]),
        "time_points": times.copy(),
        "n_genes": n_genes,
        "n_programs": k,
        "fate_strength": f,
        "drift": omega,
        "time_effect": gamma,
        "cell_noise": sigma,
        "program_scale": lam,
        "calibration": "reference" if reference is not None else "built-in defaults",
    }
    if reference is not None:
        settings["reference_shape"] = np.array(reference.shape)
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool | np.bool_):
        settings["seed"] = int(seed)
    arrays = {
        "clone_states": states,
        "fate_map": fate_map,
        "time_shift": time_shift,
        "rotation_basis": basis,
        "W": w,
        "b": b,
        "dispersion": phi,
        "mutual_information": mutual_information,
    }
    adata = anndata.AnnData(
        X=x,
        obs=obs,
        var=pd.DataFrame(index=pd.Index(gene_names)),
        obsm={"X_latent": latent.astype(np.float32)},
        uns={"params": {key: v.copy() for key, v in arrays.items()}, "simulation": settings},
    )
    params: dict[str, object] = {**arrays, "settings": dict(settings)}
    return adata, params
