"""Tests of grn_perturbations (scgde.datasets._grn), the gene-regulatory-network simulator.

The seeds are fixed, so the tests are deterministic; the tolerances are derived from the
sampling distribution of each statistic under the documented model (stated in the comments),
so that a correct simulator passes with any seed except with small probability (~1e-4 per
check) and the fixed seed only makes the outcome reproducible.

Two facts of the model make many checks exact. (i) Counts are normalised by a per-context
constant, so E[X_ig] = E[L] E[exp(l_ig)] / N_c and a gene's expected count changes only if its
activity distribution does. (ii) A knock-down of gene t changes the activities of t's
descendants only; t itself is multiplied by kappa in every cell (its parents are unaffected), so
E[X_t | knock-down] = kappa E[X_t | control] exactly, and every gene with no path from t has
exactly the control expectation.
"""

from __future__ import annotations

import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from _helpers import nb_reference
from scipy import sparse, stats

from scgde.datasets._grn import grn_perturbations

Z = stats.norm.isf(1e-4 / 2)  # two-sided 1e-4 normal quantile, ~3.9


def _zbonf(m: int) -> float:
    """Two-sided normal quantile for a family-wise level 1e-4 over m tests."""
    return stats.norm.isf(1e-4 / 2 / max(m, 1))


def _adjacency(adata) -> sparse.csr_matrix:
    g = adata.uns["grn"]
    return sparse.csr_matrix(
        (g["W_data"], g["W_indices"], g["W_indptr"]), shape=tuple(g["W_shape"])
    )


def _descendants(w: sparse.csr_matrix, gene: int) -> set[int]:
    """gene and every gene reachable from it (children of j: column j of W)."""
    csc = w.tocsc()
    seen, frontier = {gene}, [gene]
    while frontier:
        frontier = [
            int(c)
            for j in frontier
            for c in csc.indices[csc.indptr[j] : csc.indptr[j + 1]]
            if int(c) not in seen
        ]
        seen.update(frontier)
    return seen


def _cells(adata, group, context="context_0"):
    obs = adata.obs
    return ((obs["perturbation"] == group) & (obs["context"] == context)).to_numpy()


def _diff_z(x_a: np.ndarray, x_b: np.ndarray, ratio=1.0, scale=None) -> np.ndarray:
    """z-statistics of mean(x_a) - ratio * mean(x_b) per column (independent samples).

    Counts are right-skewed (log-normal activities and libraries), so a sample of a few hundred
    cells that misses the tail underestimates its own variance, and the plain Welch statistic
    has a heavy tail. The variance of group a is therefore taken as the larger of its sample
    variance and scale^2 times the variance of group b (the same coefficient of variation,
    for expected counts ``scale`` times those of b; default ``scale = ratio``).
    """
    ratio = np.asarray(ratio, dtype=np.float64)
    scale = ratio if scale is None else np.asarray(scale, dtype=np.float64)
    var_b = x_b.var(axis=0, ddof=1)
    var_a = np.maximum(x_a.var(axis=0, ddof=1), scale**2 * var_b)
    se = np.sqrt(var_a / len(x_a) + ratio**2 * var_b / len(x_b))
    return (x_a.mean(axis=0) - ratio * x_b.mean(axis=0)) / se


@pytest.fixture(scope="module")
def sim():
    """Two contexts, 40 singles and 6 pairs over 200 genes; 22,400 cells."""
    adata = grn_perturbations(
        n_genes=200,
        n_perturbations=40,
        n_cells_per_perturbation=200,
        n_control_cells=2000,
        n_combinations=6,
        n_contexts=2,
        seed=1,
    )
    return adata, adata.X.toarray().astype(np.float64)


# ------------------------------------------------------------------------------ layout
def test_layout_obs_var_and_uns(sim, tmp_path):
    adata, x = sim
    assert adata.shape == (2 * (2000 + 46 * 200), 200)
    assert sparse.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    assert np.all(x >= 0) and np.all(x == np.round(x))  # raw non-negative integer counts
    assert list(adata.var_names[:2]) == ["G0000", "G0001"] and adata.var_names.is_unique
    assert adata.obs_names.is_unique
    obs = adata.obs
    for key in ("perturbation", "context"):
        assert isinstance(obs[key].dtype, pd.CategoricalDtype), key
    assert list(obs["context"].cat.categories) == ["context_0", "context_1"]
    groups = list(obs["perturbation"].cat.categories)
    grn = adata.uns["grn"]
    targets = list(grn["targets"])
    assert groups == list(grn["groups"]) and groups[0] == "control"
    assert groups[1:41] == targets == sorted(targets) and len(set(targets)) == 40
    assert set(targets) <= set(adata.var_names)
    pairs = groups[41:]
    assert len(pairs) == 6 and len(set(pairs)) == 6
    for pair in pairs:
        a, b = pair.split("+")
        assert a in targets and b in targets and targets.index(a) < targets.index(b)
    sizes = obs.groupby(["context", "perturbation"], observed=False).size()
    assert sizes[("context_1", "control")] == 2000 and sizes.drop("control", level=1).eq(200).all()
    expected_n = {"control": 0, **{t: 1 for t in targets}, **{p: 2 for p in pairs}}
    assert (obs["n_targets"].to_numpy() == obs["perturbation"].map(expected_n).to_numpy()).all()
    assert (obs["library_size"] > 0).all()
    # context-major, control first
    assert obs["context"].iloc[0] == "context_0" and obs["perturbation"].iloc[0] == "control"
    assert obs["context"].iloc[-1] == "context_1" and obs["perturbation"].iloc[-1] == pairs[-1]

    var = adata.var
    assert var["perturbed"].sum() == 40 and set(var.index[var["perturbed"]]) == set(targets)
    w = _adjacency(adata)
    np.testing.assert_array_equal(var["in_degree"], np.diff(w.indptr))
    np.testing.assert_array_equal(var["out_degree"], np.diff(w.tocsc().indptr))
    np.testing.assert_array_equal(var["layer"], grn["layer"])

    shapes = {"true_mean": (2, 47, 200), "true_log_fold_change": (2, 47, 200)}
    shapes |= {"true_log_shift": (2, 47, 200), "context_offset": (2, 200)}
    shapes |= {"baseline": (200,), "dispersion": (200,), "normaliser": (2,)}
    for key, shape in shapes.items():
        assert grn[key].shape == shape, key
    assert adata.uns["simulated"] is True
    sim_settings = adata.uns["simulation"]
    assert sim_settings["simulated"] is True and "SIMULATED" in sim_settings["description"]
    assert sim_settings["seed"] == 1 and sim_settings["calibration"] == "built-in defaults"
    assert grn["settings"]["knockdown"] == 0.9 and grn["knockdown_factor"] == pytest.approx(0.1)

    path = tmp_path / "grn.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    assert (back.X != adata.X).nnz == 0
    pd.testing.assert_frame_equal(back.obs, adata.obs)
    np.testing.assert_array_equal(back.uns["grn"]["true_mean"], grn["true_mean"])
    assert bool(back.uns["simulated"])


def test_reproducible_with_seed():
    kwargs = dict(n_genes=60, n_perturbations=8, n_cells_per_perturbation=10, n_control_cells=50)
    a1 = grn_perturbations(**kwargs, n_combinations=2, seed=5)
    a2 = grn_perturbations(**kwargs, n_combinations=2, seed=5)
    a3 = grn_perturbations(**kwargs, n_combinations=2, seed=6)
    assert (a1.X != a2.X).nnz == 0
    pd.testing.assert_frame_equal(a1.obs, a2.obs)
    for key in ("W_data", "W_indices", "true_mean", "baseline", "targets"):
        np.testing.assert_array_equal(a1.uns["grn"][key], a2.uns["grn"][key])
    assert a1.shape == a3.shape and (a1.X != a3.X).nnz > 0
    assert (_adjacency(a1) != _adjacency(a3)).nnz > 0  # another network
    # a Generator is used and advanced in place; no integer seed to record
    rng = np.random.default_rng(0)
    b1 = grn_perturbations(**kwargs, seed=rng)
    b2 = grn_perturbations(**kwargs, seed=rng)
    assert (b1.X != b2.X).nnz > 0 and "seed" not in b1.uns["simulation"]


# ------------------------------------------------------------------------------ network
def test_network_structure(sim):
    adata, _ = sim
    w = _adjacency(adata).tocoo()
    layer = adata.var["layer"].to_numpy()
    n_layers = adata.uns["simulation"]["n_layers"]
    # acyclic: every edge goes to a higher layer; regulators sit below the top layer
    assert w.nnz > 0 and np.all(layer[w.row] > layer[w.col])
    assert layer[w.col].max() <= n_layers - 2 and layer.max() <= n_layers - 1
    # |W_gj| = s u / sqrt(k_g), u ~ U(0.5, 1.5), s = 1
    k = np.diff(_adjacency(adata).indptr)[w.row]
    u = np.abs(w.data) * np.sqrt(k)
    assert np.all((u >= 0.5) & (u <= 1.5))
    # activating with probability 0.6: binomial two-sided 1e-4 bounds
    lo, hi = stats.binom.ppf(1e-4 / 2, w.nnz, 0.6), stats.binom.isf(1e-4 / 2, w.nnz, 0.6)
    assert lo <= (w.data > 0).sum() <= hi
    # targets are drawn among regulators first: with fewer targets than regulators, all of
    # them regulate something
    out_degree = adata.var["out_degree"].to_numpy()
    assert (out_degree > 0).sum() > 40 and np.all(out_degree[adata.var["perturbed"]] > 0)


def test_more_targets_than_regulators_uses_all_regulators():
    adata = grn_perturbations(
        n_genes=50, n_perturbations=50, n_cells_per_perturbation=2, n_control_cells=5, seed=0
    )
    assert adata.var["perturbed"].all()
    small = grn_perturbations(
        n_genes=100, n_perturbations=60, n_cells_per_perturbation=2, n_control_cells=5, seed=0
    )
    regulators = small.var["out_degree"] > 0
    assert regulators.sum() < 60 and small.var["perturbed"][regulators].all()


def test_no_regulation_without_edges():
    adata = grn_perturbations(
        n_genes=40,
        n_perturbations=5,
        n_cells_per_perturbation=5,
        n_control_cells=10,
        edge_strength=0.0,
        seed=0,
    )
    grn = adata.uns["grn"]
    shift = grn["true_log_shift"][0, 1:]
    idx = [adata.var_names.get_loc(t) for t in grn["targets"]]
    # with zero weights only the targets themselves move
    expected = np.zeros_like(shift)
    expected[np.arange(5), idx] = math.log(0.1)
    np.testing.assert_allclose(shift, expected, atol=1e-12)


# ------------------------------------------------------------------------------ true effects
def test_true_effects_follow_the_network(sim):
    adata, _ = sim
    grn = adata.uns["grn"]
    w = _adjacency(adata)
    groups = list(grn["groups"])
    log_kd = math.log(0.1)
    for c in range(2):
        np.testing.assert_allclose(grn["true_mean"][c, 0].sum(), 1.0, rtol=1e-12)
        np.testing.assert_array_equal(grn["true_log_shift"][c, 0], 0.0)
    n_checked_children = 0
    for target in grn["targets"]:
        t = adata.var_names.get_loc(target)
        k = groups.index(target)
        desc = _descendants(w, t)
        off = np.array(sorted(set(range(adata.n_vars)) - desc), dtype=int)
        for c in range(2):
            shift = grn["true_log_shift"][c, k]
            # common random numbers: exact up to float rounding
            assert shift[t] == pytest.approx(log_kd, abs=1e-9)
            np.testing.assert_array_equal(shift[off], 0.0)
            np.testing.assert_array_equal(grn["true_log_fold_change"][c, k, off], 0.0)
            assert grn["true_log_fold_change"][c, k, t] == pytest.approx(log_kd, abs=1e-9)
        # a child whose only regulator is the target moves against the edge's sign (knocking
        # down an activator lowers it): d tanh(z_t) < 0 in every noise draw
        col = w.tocsc()[:, t]
        for child, weight in zip(col.indices, col.data, strict=True):
            if np.diff(w.indptr)[child] == 1:
                n_checked_children += 1
                for c in range(2):
                    assert np.sign(grn["true_log_shift"][c, k, child]) == -np.sign(weight)
    assert n_checked_children >= 5


def test_combinations_involve_both_parts(sim):
    adata, _ = sim
    grn = adata.uns["grn"]
    w = _adjacency(adata)
    groups = list(grn["groups"])
    shift = grn["true_log_shift"]
    for pair in groups[41:]:
        a, b = pair.split("+")
        ia, ib = adata.var_names.get_loc(a), adata.var_names.get_loc(b)
        k, ka, kb = groups.index(pair), groups.index(a), groups.index(b)
        da, db = _descendants(w, ia), _descendants(w, ib)
        for c in range(2):
            # both targets are knocked down (on top of any effect of the other part on them)
            assert shift[c, k, ia] == pytest.approx(shift[c, kb, ia] + math.log(0.1), abs=1e-9)
            assert shift[c, k, ib] == pytest.approx(shift[c, ka, ib] + math.log(0.1), abs=1e-9)
            # genes reached from only one part carry exactly that part's effect
            only_a = np.array(sorted(da - db - {ia}), dtype=int)
            only_b = np.array(sorted(db - da - {ib}), dtype=int)
            np.testing.assert_allclose(shift[c, k, only_a], shift[c, ka, only_a], atol=1e-12)
            np.testing.assert_allclose(shift[c, k, only_b], shift[c, kb, only_b], atol=1e-12)
            none = np.array(sorted(set(range(adata.n_vars)) - da - db), dtype=int)
            np.testing.assert_array_equal(shift[c, k, none], 0.0)


def test_knockdown_one_is_clamped():
    adata = grn_perturbations(
        n_genes=30,
        n_perturbations=3,
        n_cells_per_perturbation=50,
        n_control_cells=50,
        knockdown=1.0,
        seed=0,
    )
    grn = adata.uns["grn"]
    assert grn["knockdown_factor"] == pytest.approx(1e-3)
    for k, target in enumerate(grn["targets"], start=1):
        t = adata.var_names.get_loc(target)
        assert grn["true_log_shift"][0, k, t] == pytest.approx(math.log(1e-3), abs=1e-9)
        assert np.all(np.isfinite(grn["true_log_fold_change"]))


# ------------------------------------------------------------------------------ counts
def test_counts_match_true_means(sim):
    """Group means of the counts agree with library * true_mean for every group and gene.

    E[X_ig | L] = L_i q_g, so mean_i X_ig - mean(L) q_g has mean 0 and variance s^2 / n, with
    s^2 the group's count variance: estimated as the larger of the group's sample variance and
    the control variance scaled by (q_group / q_control)^2 (see _diff_z). q is a Monte Carlo
    average over M = 1000 shared noise draws; its error in units of counts is at most about
    s / sqrt(M), since the count variance exceeds the variance of the mean L q(z) it mixes
    over. Genes with a control mean below 2 counts are left out (the normal approximation of
    a mean of 200 such counts is poor in the far tail used for the Bonferroni bound).
    """
    adata, x = sim
    grn = adata.uns["grn"]
    groups = list(grn["groups"])
    lib = adata.obs["library_size"].to_numpy()
    z_all = []
    for c, context in enumerate(["context_0", "context_1"]):
        ctrl = x[_cells(adata, "control", context)]
        keep = ctrl.mean(axis=0) >= 2
        var_ctrl = ctrl[:, keep].var(axis=0, ddof=1)
        for k, group in enumerate(groups):
            cells = _cells(adata, group, context)
            xs = x[cells][:, keep]
            ratio = grn["true_mean"][c, k, keep] / grn["true_mean"][c, 0, keep]
            s2 = np.maximum(xs.var(axis=0, ddof=1), ratio**2 * var_ctrl)
            expected = lib[cells].mean() * grn["true_mean"][c, k, keep]
            z_all.append((xs.mean(axis=0) - expected) / np.sqrt(s2 / len(xs) + s2 / 1000))
    z_all = np.concatenate(z_all)
    assert np.abs(z_all).max() < _zbonf(z_all.size)
    # on average too: the z have variance <= 1 (the tolerance is conservative), so their mean
    # square is < 1.2 except with negligible probability over ~10^4 weakly dependent values
    assert (z_all**2).mean() < 1.2


def test_target_is_knocked_down_in_counts(sim):
    """mean(X_t | knock-down) - kappa mean(X_t | control) has mean exactly 0 (see module
    docstring); z-test per target, context and double knock-down part (Bonferroni)."""
    adata, x = sim
    groups = list(adata.uns["grn"]["groups"])
    zs, pooled = [], {"pert": 0.0, "ctrl": 0.0}
    for context in ["context_0", "context_1"]:
        ctrl = x[_cells(adata, "control", context)]
        for group in groups[1:]:
            pert = x[_cells(adata, group, context)]
            for target in group.split("+"):
                t = adata.var_names.get_loc(target)
                if ctrl[:, t].mean() < 1:  # too few counts for the normal approximation
                    continue
                if "+" in group:  # the other part may regulate t: compare with its single
                    other = group.replace(target, "").strip("+")
                    ref = x[_cells(adata, other, context)][:, t]
                else:
                    ref = ctrl[:, t]
                    pooled["pert"] += pert[:, t].mean()
                    pooled["ctrl"] += ref.mean()
                zs.append(_diff_z(pert[:, [t]], ref[:, None], ratio=0.1)[0])
    assert len(zs) > 40
    assert np.abs(zs).max() < _zbonf(len(zs))
    # pooled over targets the ratio is within a few percent of 1 - knockdown = 0.1
    assert abs(pooled["pert"] / pooled["ctrl"] - 0.1) < 0.01


def test_downstream_and_unaffected_genes_in_counts(sim):
    adata, x = sim
    grn = adata.uns["grn"]
    w = _adjacency(adata)
    csc = w.tocsc()
    in_degree = np.diff(w.indptr)
    ctrl = x[_cells(adata, "control")]
    expressed = ctrl.mean(axis=0) >= 2
    null_p, children = [], 0
    for target in grn["targets"]:
        t = adata.var_names.get_loc(target)
        pert = x[_cells(adata, target)]
        lfc = grn["true_log_fold_change"][0, list(grn["groups"]).index(target)]
        z = _diff_z(pert, ctrl, scale=np.exp(lfc))  # the change from the controls
        # genes with no path from the target: their whole count distribution is unchanged
        # (same activity law, same library law), so a rank test is exact; counts are skewed
        # (log-normal activities), which makes a t-test unreliable this far in the tail
        off = np.zeros(adata.n_vars, dtype=bool)
        off[sorted(set(range(adata.n_vars)) - _descendants(w, t))] = True
        cols = off & expressed
        null_p.append(stats.mannwhitneyu(pert[:, cols], ctrl[:, cols], axis=0).pvalue)
        # single-regulator children move against the sign of the edge: significantly, where the
        # true effect is large (|log fold change| > 0.3 on >= 2 counts, 200 vs 2000 cells:
        # expected |z| above ~5)
        for child, weight in zip(
            csc.indices[csc.indptr[t] : csc.indptr[t + 1]],
            csc.data[csc.indptr[t] : csc.indptr[t + 1]],
            strict=True,
        ):
            if in_degree[child] == 1 and expressed[child] and abs(lfc[child]) > 0.3:
                children += 1
                assert -np.sign(weight) * z[child] > Z
    null_p = np.concatenate(null_p)
    assert children >= 5 and null_p.size > 1000
    assert null_p.min() > 1e-4 / null_p.size  # Bonferroni


def test_contexts_have_different_controls(sim):
    adata, x = sim
    grn = adata.uns["grn"]
    offset = grn["context_offset"]
    assert np.all(offset[0] == 0)
    share = (offset[1] != 0).mean()  # Binomial(200, 0.25) / 200, 1e-4 bounds ~ [0.15, 0.36]
    assert 0.15 < share < 0.36
    c0, c1 = x[_cells(adata, "control", "context_0")], x[_cells(adata, "control", "context_1")]
    keep = (c0.mean(axis=0) >= 2) & (c1.mean(axis=0) >= 2)
    z = _diff_z(c1[:, keep], c0[:, keep])
    # under "no context effect" at most ~1e-4 of the genes would pass |z| > Z
    assert (np.abs(z) > Z).sum() > 10
    true = np.log(grn["true_mean"][1, 0, keep] / grn["true_mean"][0, 0, keep])
    emp = np.log(c1[:, keep].mean(axis=0) / c0[:, keep].mean(axis=0))
    assert stats.pearsonr(true, emp)[0] > 0.9


def test_control_coexpression_reveals_edges(sim):
    """In control cells a regulator and its direct target co-vary with the sign of the edge.

    Correlations of log-normalised counts over n = 2000 control cells (null sd 1 / sqrt(n)).
    For a child with a single regulator the correlation has the sign of W_gj in expectation;
    with other regulators it can in principle be confounded, so over all edges only a large
    majority is required (binomial 1e-4 bound against sign agreement by chance).
    """
    adata, x = sim
    ctrl = x[_cells(adata, "control")]
    y = np.log1p(ctrl / ctrl.sum(axis=1, keepdims=True) * 1e4)
    corr = np.corrcoef(y.T)
    w = _adjacency(adata).tocoo()
    mean = ctrl.mean(axis=0)
    ok = (mean[w.row] >= 5) & (mean[w.col] >= 5)
    r, sign = corr[w.row[ok], w.col[ok]], np.sign(w.data[ok])
    assert ok.sum() >= 30
    assert (np.sign(r) == sign).sum() > stats.binom.isf(1e-4, ok.sum(), 0.5)
    single = np.diff(_adjacency(adata).indptr)[w.row[ok]] == 1
    assert single.sum() >= 3
    assert np.all(r[single] * sign[single] > Z / math.sqrt(len(ctrl)))


@pytest.mark.parametrize("cell_noise", [0.4, 0.0])
def test_control_coexpression_predicts_knockdown_effects(cell_noise):
    """Unseen perturbations are predictable from control data because the noise propagates.

    For each expressed regulator target, the Spearman correlation over genes between its
    control co-expression profile and its true log fold changes is negative (co-expressed
    genes are activated by it and drop when it is knocked down). Without intrinsic noise
    (cell_noise=0) the control co-expression is pure count noise and the signs are
    symmetric: the number of negative correlations is then Binomial(n, 1/2) (approximately),
    and with noise it must exceed that null's 1e-4 upper quantile.
    """
    adata = grn_perturbations(
        n_genes=200,
        n_perturbations=60,
        n_cells_per_perturbation=2,
        n_control_cells=2000,
        cell_noise=cell_noise,
        seed=3,
    )
    grn = adata.uns["grn"]
    groups = list(grn["groups"])
    ctrl = adata.X[_cells(adata, "control")].toarray().astype(np.float64)
    y = np.log1p(ctrl / ctrl.sum(axis=1, keepdims=True) * 1e4)
    corr = np.nan_to_num(np.corrcoef(y.T))
    signs = []
    for target in grn["targets"]:
        t = adata.var_names.get_loc(target)
        if adata.var["out_degree"].iloc[t] == 0 or ctrl[:, t].mean() < 2:
            continue
        others = np.arange(adata.n_vars) != t
        lfc = grn["true_log_fold_change"][0, groups.index(target)]
        signs.append(stats.spearmanr(corr[t, others], lfc[others])[0] < 0)
    n = len(signs)
    threshold = stats.binom.isf(1e-4, n, 0.5)
    assert n >= 20
    if cell_noise > 0:
        assert sum(signs) > threshold
    else:
        assert sum(signs) <= threshold


# ------------------------------------------------------------------------------ reference
def _reference(seed=0, n_cells=500, n_genes=150, phi=0.3):
    return nb_reference(seed, n_cells, n_genes, phi)


def test_reference_calibration():
    ref, true_means = _reference()
    adata = grn_perturbations(
        n_genes=150,
        n_perturbations=10,
        n_cells_per_perturbation=20,
        n_control_cells=3000,
        reference=ref,
        seed=0,
    )
    assert adata.uns["simulation"]["calibration"] == "reference"
    assert list(adata.var_names[:1]) == ["G0000"]  # simulated names, not the reference's
    src = [ref.var_names.get_loc(g) for g in adata.var["reference_gene"]]
    assert sorted(src) == list(range(150))  # n_genes == reference.n_vars: a permutation
    ctrl = adata.X[_cells(adata, "control")].toarray().astype(np.float64)
    sim_means = ctrl.mean(axis=0)
    ref_means = np.asarray(ref.X.mean(axis=0)).ravel()[src]
    # log means span log(1000) ~ 6.9; the sampling noise of a log mean over 3000 cells and
    # the network's effect on the baseline (calibrated away up to Monte Carlo error) are far
    # below that, so the expected Spearman is ~0.99; 0.9 needs a noise sd of ~1 (broken).
    assert stats.spearmanr(sim_means, ref_means)[0] > 0.9
    assert stats.spearmanr(sim_means, true_means[src])[0] > 0.9
    # library sizes are resampled from the reference's totals; the median of 3000 draws is
    # within ~1.25 sd(L) / sqrt(3000) ~ 2.3% sd of the reference median
    totals = np.asarray(ref.X.sum(axis=1)).ravel()
    lib = adata.obs["library_size"].to_numpy()
    assert np.isin(lib, totals).all()
    assert abs(np.log(np.median(lib) / np.median(totals))) < 0.1
    # the cell totals: E[total / L] = 1 for controls (up to the Monte Carlo error of N, which
    # has about the same sd over M = 1000 draws as the mean over 1000 cells)
    ratio = ctrl.sum(axis=1) / lib[_cells(adata, "control")]
    assert abs(ratio.mean() - 1) < Z * ratio.std() * math.sqrt(1 / len(ratio) + 1 / 1000)
    assert abs(np.log(np.median(ctrl.sum(axis=1)) / np.median(totals))) < 0.1
    # over-dispersion: reference phi = 0.3; the per-gene phi is corrected for the network
    # noise, so the method-of-moments dispersion of simulated controls is ~0.3 again (the
    # median over genes with mean > 2; sampling sd of each estimate ~ 0.1 relative)
    size = ctrl.sum(axis=1) / ctrl.sum(axis=1).mean()
    yv = ctrl / size[:, None]
    m, v = yv.mean(axis=0), yv.var(axis=0, ddof=1)
    phi_hat = (v - m * (1 / size).mean()) / m**2
    assert 0.75 * 0.3 < np.median(phi_hat[m > 2]) < 1.25 * 0.3


def test_reference_gene_sampling_and_edge_cases():
    ref, _ = _reference(n_cells=60, n_genes=20)
    dense = ref.X.toarray()
    dense[:, 0] = 0  # an undetected gene
    dense[:, 1] = 3  # a constant gene (zero variance)
    dense[0] = 0  # a cell with zero total: excluded from the library pool
    ref2 = ad.AnnData(dense, var=ref.var)
    adata = grn_perturbations(
        n_genes=35,
        n_perturbations=5,
        n_cells_per_perturbation=5,
        n_control_cells=20,
        reference=ref2,
        seed=0,
    )
    assert adata.var["reference_gene"].isin(ref.var_names).all()
    assert adata.var["reference_gene"].nunique() <= 20  # drawn with replacement
    phi = adata.uns["grn"]["dispersion"]
    assert np.all(np.isfinite(phi)) and np.all((phi >= 1e-3) & (phi <= 1e2))
    assert np.all(np.isfinite(adata.uns["grn"]["baseline"]))
    assert np.all(np.isfinite(adata.uns["grn"]["true_mean"]))
    assert (adata.obs["library_size"] > 0).all()
    fewer = grn_perturbations(
        n_genes=10,
        n_perturbations=2,
        n_cells_per_perturbation=2,
        n_control_cells=5,
        reference=ref,
        seed=0,
    )
    assert fewer.var["reference_gene"].is_unique  # without replacement


def test_demo_reference():
    from scgde.datasets import demo

    ref = demo()
    adata = grn_perturbations(
        n_perturbations=20,
        n_cells_per_perturbation=10,
        n_control_cells=2000,
        reference=ref,
        seed=0,
    )
    ctrl = adata.X[_cells(adata, "control")]
    src = [ref.var_names.get_loc(g) for g in adata.var["reference_gene"]]
    ref_means = np.asarray(ref.X.mean(axis=0)).ravel()[src]
    assert stats.spearmanr(np.asarray(ctrl.mean(axis=0)).ravel(), ref_means)[0] > 0.9
    totals = np.asarray(ref.X.sum(axis=1)).ravel()
    sim_totals = np.asarray(ctrl.sum(axis=1)).ravel()
    assert abs(np.log(np.median(sim_totals) / np.median(totals))) < 0.1


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_genes": 0}, ValueError, "`n_genes` must be a positive integer"),
        ({"n_genes": -5}, ValueError, "`n_genes` must be a positive integer"),
        ({"n_genes": 2.5}, TypeError, "`n_genes` must be an integer"),
        ({"n_perturbations": -1}, ValueError, "`n_perturbations` must be a non-negative"),
        ({"n_perturbations": True}, TypeError, "`n_perturbations` must be an integer"),
        ({"n_cells_per_perturbation": 0}, ValueError, "n_cells_per_perturbation"),
        ({"n_control_cells": -3}, ValueError, "n_control_cells"),
        ({"n_combinations": -1}, ValueError, "`n_combinations` must be a non-negative"),
        ({"n_contexts": 0}, ValueError, "n_contexts"),
        ({"knockdown": 0.0}, ValueError, r"knockdown must be in \(0, 1\]"),
        ({"knockdown": 1.2}, ValueError, r"knockdown must be in \(0, 1\]"),
        ({"knockdown": float("nan")}, ValueError, "knockdown must be finite"),
        ({"knockdown": "0.9"}, TypeError, "knockdown must be a real"),
        ({"n_genes": 10, "n_perturbations": 11}, ValueError, "exceeds n_genes=10"),
        ({"n_perturbations": 3, "n_combinations": 4}, ValueError, "at most 3 distinct pairs"),
        ({"n_perturbations": 1, "n_combinations": 1}, ValueError, "needs more single"),
        ({"n_layers": 1}, ValueError, "n_layers must be >= 2"),
        ({"regulator_fraction": 0.0}, ValueError, "regulator_fraction"),
        ({"in_degree": -1.0}, ValueError, "in_degree must be >= 0"),
        ({"edge_strength": -0.5}, ValueError, "edge_strength must be >= 0"),
        ({"activation_fraction": 1.5}, ValueError, "activation_fraction"),
        ({"cell_noise": -0.1}, ValueError, "cell_noise must be >= 0"),
        ({"context_strength": float("inf")}, ValueError, "context_strength must be finite"),
        ({"n_monte_carlo": 1}, ValueError, "n_monte_carlo must be >= 2"),
        ({"reference": np.ones((3, 3))}, TypeError, "reference must be an AnnData"),
    ],
)
def test_bad_inputs(kwargs, error, match):
    with pytest.raises(error, match=match):
        grn_perturbations(**kwargs)


def test_bad_reference():
    ref, _ = _reference(n_cells=20, n_genes=10)
    lognorm = ref.copy()
    lognorm.X = np.log1p(ref.X.toarray())
    with pytest.raises(ValueError, match="raw counts"):
        grn_perturbations(n_genes=10, n_perturbations=2, reference=lognorm)
    empty = ad.AnnData(
        obs=pd.DataFrame(index=[str(i) for i in range(5)]), var=pd.DataFrame(index=["a", "b"])
    )
    with pytest.raises(ValueError, match="X is empty"):
        grn_perturbations(n_genes=10, n_perturbations=2, reference=empty)
    with pytest.raises(ValueError, match="positive total"):
        grn_perturbations(n_genes=10, n_perturbations=2, reference=ad.AnnData(np.zeros((4, 3))))
