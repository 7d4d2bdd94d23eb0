"""Tests of scgde.datasets.lineage_sets, the clonal lineage-tracing simulator.

The seeds are fixed, so the tests are deterministic; the tolerances are derived from the
sampling distribution of each statistic under the documented model (stated in the comments),
so that a correct simulator passes with any seed except with small probability (~1e-4 per
check) and the fixed seed only makes the outcome reproducible.
"""

from __future__ import annotations

import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from _helpers import nb_reference
from scipy import sparse, stats

from scgde.datasets._lineage import lineage_sets

Z = stats.norm.isf(1e-4 / 2)  # two-sided 1e-4 normal quantile, ~3.9


def _means_from_params(adata, params):
    """The NB means mu_ig = L_i softmax(W x_i + b) of the documented model."""
    logits = adata.obsm["X_latent"].astype(np.float64) @ params["W"].T + params["b"]
    logits -= logits.max(axis=1, keepdims=True)
    prob = np.exp(logits)
    prob /= prob.sum(axis=1, keepdims=True)
    return adata.obs["library_size"].to_numpy()[:, None] * prob


# ------------------------------------------------------------------------------ layout
def test_shapes_obs_and_uns():
    adata, params = lineage_sets(
        n_clones=7, cells_per_clone=3, time_points=(2, 4, 6), n_genes=30, n_programs=4, seed=0
    )
    assert adata.shape == (7 * 3 * 3, 30)
    assert sparse.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    assert list(adata.var_names) == [f"gene_{g}" for g in range(30)]
    assert adata.obs_names.is_unique and list(adata.obs_names[:2]) == ["0", "1"]
    obs = adata.obs
    for key in ("clone", "time_point", "clone_time", "fate"):
        assert isinstance(obs[key].dtype, pd.CategoricalDtype), key
    assert list(obs["clone"].cat.categories) == [f"c{c}" for c in range(7)]
    assert obs["time_point"].cat.ordered and list(obs["time_point"].cat.categories) == [2, 4, 6]
    # clone-major, then time, contiguous blocks of 3 cells
    expected = [(f"c{c}", t) for c in range(7) for t in (2, 4, 6) for _ in range(3)]
    assert list(zip(obs["clone"], obs["time_point"], strict=True)) == expected
    assert list(obs["clone_time"]) == [f"{c}|d{t}" for c, t in expected]
    assert obs["clone_time"].nunique() == 21
    # fate: the clone's dominant program at the last time point, constant within a clone
    fate = obs.groupby("clone", observed=True)["fate"].nunique()
    assert (fate == 1).all()
    dominant = np.argmax(params["clone_states"][:, -1], axis=1)
    first = obs.groupby("clone", observed=True)["fate"].first()
    assert list(first) == [f"program_{j}" for j in dominant]
    assert adata.obsm["X_latent"].shape == (63, 4) and adata.obsm["X_latent"].dtype == np.float32
    assert (obs["library_size"] > 0).all()

    shapes = {k: v.shape for k, v in params.items() if isinstance(v, np.ndarray)}
    assert shapes == {
        "clone_states": (7, 3, 4),
        "fate_map": (3, 4, 4),
        "time_shift": (3, 4),
        "rotation_basis": (4, 4),
        "W": (30, 4),
        "b": (30,),
        "dispersion": (30,),
        "mutual_information": (2,),
    }
    sim = adata.uns["simulation"]
    assert sim["simulated"] is True and "SIMULATED" in sim["description"]
    assert sim["seed"] == 0 and sim["n_clones"] == 7 and sim["calibration"] == "built-in defaults"
    assert params["settings"]["fate_strength"] == sim["fate_strength"]
    assert set(adata.uns["params"]) == set(shapes)


def test_cells_per_clone_range_and_float_times():
    adata, _ = lineage_sets(
        n_clones=25, cells_per_clone=(2, 5), time_points=(0.5, 1.5), n_genes=10, seed=3
    )
    sizes = adata.obs.groupby("clone_time", observed=False).size()
    assert len(sizes) == 50 and sizes.between(2, 5).all()
    assert sizes.nunique() > 1  # P(all 50 groups equal) = 4 * 4**-50
    assert list(adata.obs["time_point"].cat.categories) == [0.5, 1.5]
    assert adata.obs["clone_time"].iloc[0] == "c00|d0.5"


def test_single_time_point_and_h5ad_round_trip(tmp_path):
    adata, params = lineage_sets(n_clones=4, cells_per_clone=2, time_points=(3,), seed=0)
    assert adata.n_obs == 8 and params["mutual_information"].shape == (0,)
    path = tmp_path / "sim.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    assert (back.X != adata.X).nnz == 0
    pd.testing.assert_frame_equal(back.obs, adata.obs)
    assert bool(back.uns["simulation"]["simulated"])


# ------------------------------------------------------------------------------ counts
def test_counts_are_nonnegative_integers_with_nb_moments():
    adata, params = lineage_sets(n_clones=30, cells_per_clone=(5, 15), n_genes=80, seed=1)
    x = adata.X.toarray().astype(np.float64)
    assert np.all(x >= 0) and np.all(x == np.round(x))
    mu = _means_from_params(adata, params)
    var = mu + params["dispersion"] * mu**2  # NB(mu, phi) variance
    # per gene, sum_i (x_ig - mu_ig) / sqrt(sum_i var_ig) ~ N(0, 1) (CLT); Bonferroni over genes
    z = (x - mu).sum(axis=0) / np.sqrt(var.sum(axis=0))
    assert np.abs(z).max() < stats.norm.isf(1e-4 / 2 / z.size)
    # Pearson residuals r^2 = (x - mu)^2 / var have mean exactly 1 under the model, which checks
    # the dispersion; tolerance Z standard errors of the mean of the n entries
    r2 = (x - mu) ** 2 / var
    assert abs(r2.mean() - 1.0) < Z * r2.std() / math.sqrt(r2.size)


def test_reproducible_with_seed():
    a1, p1 = lineage_sets(n_clones=10, seed=42)
    a2, p2 = lineage_sets(n_clones=10, seed=42)
    a3, _ = lineage_sets(n_clones=10, seed=43)
    assert (a1.X != a2.X).nnz == 0
    pd.testing.assert_frame_equal(a1.obs, a2.obs)
    for key, value in p1.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, p2[key])
    assert a1.shape != a3.shape or (a1.X != a3.X).nnz > 0
    # a Generator is used and advanced in place
    rng = np.random.default_rng(0)
    b1, _ = lineage_sets(n_clones=5, seed=rng)
    b2, _ = lineage_sets(n_clones=5, seed=rng)
    assert b1.shape != b2.shape or (b1.X != b2.X).nnz > 0
    assert "seed" not in b1.uns["simulation"]


# ------------------------------------------------------------------------------ clone dynamics
@pytest.mark.parametrize("fate_strength", [0.0, 0.6, 1.0])
def test_clone_state_law(fate_strength):
    n, k = 4000, 3
    _, params = lineage_sets(
        n_clones=n,
        cells_per_clone=1,
        time_points=(2, 3, 6),
        n_genes=5,
        n_programs=k,
        fate_strength=fate_strength,
        drift=0.3,
        seed=7,
    )
    z = params["clone_states"]
    f = fate_strength
    tau = np.array([0.0, 0.25, 1.0])
    # the fate map is f^tau_j times a rotation by 0.3 * (t_j - t_1) (orthogonal, det 1)
    for j in range(3):
        m = params["fate_map"][j] / f ** tau[j] if f > 0 else None
        if m is not None:
            np.testing.assert_allclose(m @ m.T, np.eye(k), atol=1e-12)
    mi = -0.5 * k * np.log1p(-(f ** (2 * tau[1:]))) if f < 1 else np.full(2, np.inf)
    np.testing.assert_allclose(params["mutual_information"], mi)
    # each z(t_j) is N(0, I): per coordinate, n * var / 1 ~ chi2(n - 1); Bonferroni over 3 x 3
    for j in range(3):
        v = z[:, j].var(axis=0, ddof=1) * (n - 1)
        lo, hi = stats.chi2.ppf(1e-4 / 18, n - 1), stats.chi2.isf(1e-4 / 18, n - 1)
        assert np.all((lo < v) & (v < hi))
    # OLS of z(t_T) on z(t_1): coefficients fate_map[-1] with sd sqrt((1 - f^2) / n) each
    coef, *_ = np.linalg.lstsq(z[:, 0], z[:, -1], rcond=None)
    sd = math.sqrt(max(1 - f**2, 0.0) / n)
    bound = stats.norm.isf(1e-4 / 2 / k**2) * sd * 1.05 + 1e-9
    assert np.abs(coef.T - params["fate_map"][-1]).max() < bound


def test_cell_noise_and_time_shift():
    adata, params = lineage_sets(
        n_clones=50, cells_per_clone=20, n_programs=3, cell_noise=0.7, time_effect=0.4, seed=2
    )
    codes_c = adata.obs["clone"].cat.codes.to_numpy()
    codes_t = adata.obs["time_point"].cat.codes.to_numpy()
    times = np.array([2.0, 4.0, 6.0])
    shift = params["time_shift"]
    np.testing.assert_allclose(np.linalg.norm(shift, axis=1), 0.4 * (times - 2))
    resid = adata.obsm["X_latent"] - params["clone_states"][codes_c, codes_t] - shift[codes_t]
    # residuals are N(0, 0.7^2 I): sum of squares / 0.49 ~ chi2(n * k); float32 rounding is tiny
    ss = float((resid.astype(np.float64) ** 2).sum()) / 0.49
    dof = resid.size
    assert stats.chi2.ppf(1e-4, dof) < ss < stats.chi2.isf(1e-4, dof)


def _match_count(adata, n_clones):
    """Clones whose first-time-point group is nearest (log-normalised mean) to its own last one."""
    x = adata.X.toarray().astype(np.float64)
    x = np.log1p(x / x.sum(axis=1, keepdims=True) * 1e4)
    codes = adata.obs["clone_time"].cat.codes.to_numpy()
    n_times = adata.obs["time_point"].cat.categories.size
    means = np.stack([x[codes == g].mean(axis=0) for g in range(n_clones * n_times)])
    means = means.reshape(n_clones, n_times, -1)
    d = ((means[:, 0, None, :] - means[None, :, -1, :]) ** 2).sum(axis=-1)
    return int((d.argmin(axis=1) == np.arange(n_clones)).sum())


def test_early_state_predicts_late_state():
    """Nearest-clone matching across time: above chance iff fate_strength > 0.

    With fate_strength=0 the last-time groups are i.i.d. across clones and independent of the
    first-time groups, so each clone's nearest last-time group is its own with probability
    exactly 1 / C; the count of matches is then approximately Binomial(C, 1 / C) (the weak
    dependence through shared groups was checked by simulation: over 300 seeds mean 1.12 and
    variance 1.04 against 1 and 0.975). Threshold: its 1e-4 upper quantile. With
    fate_strength=0.9 the expected count is about 15 of 40 (10 to 19 over 20 seeds).
    """
    n_clones = 40
    threshold = stats.binom.isf(1e-4, n_clones, 1 / n_clones)  # 6
    kwargs = dict(n_clones=n_clones, cells_per_clone=(10, 20), n_genes=100, seed=0)
    high, _ = lineage_sets(fate_strength=0.9, **kwargs)
    null, _ = lineage_sets(fate_strength=0.0, **kwargs)
    assert _match_count(high, n_clones) > threshold
    assert _match_count(null, n_clones) <= threshold


# ------------------------------------------------------------------------------ reference
def _reference(seed=0, n_cells=400, n_genes=150, phi=0.3):
    return nb_reference(seed, n_cells, n_genes, phi)


def test_reference_calibration():
    ref, true_means = _reference()
    adata, params = lineage_sets(n_clones=30, cells_per_clone=10, reference=ref, seed=0)
    assert list(adata.var_names) == list(ref.var_names)
    assert adata.uns["simulation"]["calibration"] == "reference"
    # library sizes are resampled from the reference's cell totals
    totals = np.asarray(ref.X.sum(axis=1)).ravel()
    assert np.isin(adata.obs["library_size"].to_numpy(), totals).all()
    # Per-gene mean counts: log means span log(1000) ~ 6.9 (sd ~2.0 over genes); the noise of a
    # log mean is <= ~0.3 (Poisson/NB sampling of >= ~20 counts per gene and the average of
    # exp(W_g z) over 90 clone-time states), so the expected Spearman is ~0.99; 0.9 would need
    # a noise sd above ~1.0, i.e. a broken calibration.
    sim_means = np.asarray(adata.X.mean(axis=0)).ravel()
    ref_means = np.asarray(ref.X.mean(axis=0)).ravel()
    assert stats.spearmanr(sim_means, ref_means)[0] > 0.9
    assert stats.spearmanr(sim_means, true_means)[0] > 0.9
    # same overall scale: the baseline b is corrected so that E[share] = p_g
    assert abs(np.log(sim_means.sum() / ref_means.sum())) < 0.1
    # method-of-moments dispersion (true 0.3) on genes with mean > 2: the relative error of a
    # sample variance over 400 cells is ~ sqrt(2 / 400) * (1 + kurtosis term) ~ 0.1, and the
    # median over ~50 genes shrinks it further; +-25% is > 5 standard errors.
    phi = params["dispersion"][true_means > 2]
    assert 0.75 * 0.3 < np.median(phi) < 1.25 * 0.3


def test_reference_edge_cases():
    ref, _ = _reference(n_cells=50, n_genes=20)
    dense = ref.X.toarray()
    dense[:, 0] = 0  # an undetected gene
    dense[:, 1] = 3  # a constant gene: MoM variance below Poisson, clipped
    dense[0] = 0  # a cell with zero total: excluded from the library pool
    ref2 = ad.AnnData(dense, var=ref.var)
    adata, params = lineage_sets(n_clones=3, cells_per_clone=2, reference=ref2, seed=0)
    phi = params["dispersion"]
    assert np.all(np.isfinite(phi)) and np.all((phi >= 1e-3) & (phi <= 1e2))
    assert phi[1] == 1e-3
    assert np.all(np.isfinite(params["b"]))
    assert (adata.obs["library_size"] > 0).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_clones": 0}, ValueError, "`n_clones` must be a positive integer"),
        ({"n_clones": 2.5}, TypeError, "`n_clones` must be an integer"),
        ({"n_clones": True}, TypeError, "`n_clones` must be an integer"),
        ({"cells_per_clone": 0}, ValueError, "`cells_per_clone` must be a positive"),
        ({"cells_per_clone": (5, 2)}, ValueError, "low <= high"),
        ({"cells_per_clone": (0, 2)}, ValueError, r"cells_per_clone\[0\]"),
        ({"cells_per_clone": "3"}, TypeError, "cells_per_clone must be"),
        ({"time_points": ()}, ValueError, "at least one"),
        ({"time_points": (2, 2)}, ValueError, "strictly increasing"),
        ({"time_points": (4, 2)}, ValueError, "strictly increasing"),
        ({"time_points": (2, float("nan"))}, ValueError, "finite"),
        ({"time_points": 2}, TypeError, "time_points must be a sequence"),
        ({"time_points": "246"}, TypeError, "time_points must be a sequence"),
        ({"n_genes": -1}, ValueError, "n_genes"),
        ({"n_programs": 0}, ValueError, "n_programs"),
        ({"fate_strength": 1.5}, ValueError, r"fate_strength must be in \[0, 1\]"),
        ({"fate_strength": -0.1}, ValueError, "fate_strength"),
        ({"fate_strength": "high"}, TypeError, "fate_strength must be a real"),
        ({"cell_noise": -1}, ValueError, "cell_noise must be >= 0"),
        ({"program_scale": -0.1}, ValueError, "program_scale must be >= 0"),
        ({"drift": float("inf")}, ValueError, "drift must be finite"),
        ({"reference": np.ones((3, 3))}, TypeError, "reference must be an AnnData"),
    ],
)
def test_bad_inputs(kwargs, error, match):
    with pytest.raises(error, match=match):
        lineage_sets(**kwargs)


def test_bad_reference():
    ref, _ = _reference(n_cells=20, n_genes=10)
    with pytest.raises(ValueError, match="disagrees with reference.n_vars=10"):
        lineage_sets(n_genes=5, reference=ref)
    lognorm = ref.copy()
    lognorm.X = np.log1p(ref.X.toarray())
    with pytest.raises(ValueError, match="raw counts"):
        lineage_sets(reference=lognorm)
    negative = ad.AnnData(-np.ones((5, 3)))
    with pytest.raises(ValueError, match="raw counts"):
        lineage_sets(reference=negative)
    with pytest.raises(ValueError, match="at least 2 cells"):
        lineage_sets(reference=ref[:1].copy())
    with pytest.raises(ValueError, match="positive total"):
        lineage_sets(reference=ad.AnnData(np.zeros((4, 3))))
