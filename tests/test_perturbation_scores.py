"""Tests of the perturbation scores (pseudobulk shifts, score table) and baselines.

All data are small synthetic log-normalised cells (log1p of counts per 10k). Expected shifts are
computed here with plain numpy (mean of the perturbed cells minus mean of the control cells of the
same context), so every check compares against an independent computation.
"""

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.spatial.distance import pdist
from threadpoolctl import threadpool_limits

from scgde.tl._perturbation_baselines import mean_shift_baseline, ridge_baseline
from scgde.tl._perturbation_scores import (
    pseudobulk_shifts,
    score_perturbations,
    summarize_scores,
)

N_GENES = 200
PERTURBATIONS = ("p0", "p1", "p2", "p3")
CONTEXTS = ("A", "B")


def _lognorm(counts):
    return np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)


def _rates(seed=0, contexts=CONTEXTS, perturbations=PERTURBATIONS, n_genes=N_GENES):
    """Poisson rates per (perturbation, context): a context baseline times a perturbation effect.

    The context baselines differ strongly (independent gamma profiles of different scales), so
    using the wrong context's control would change the shifts.
    """
    rng = np.random.default_rng(seed)
    base = {c: rng.gamma(2.0, 1.0 + 3.0 * i, size=n_genes) for i, c in enumerate(contexts)}
    effect = {p: rng.normal(0.0, 1.0, n_genes) * (rng.random(n_genes) < 0.3) for p in perturbations}
    rates = {("control", c): base[c] for c in contexts}
    rates.update({(p, c): base[c] * np.exp(effect[p]) for p in perturbations for c in contexts})
    return rates


def _cells(rates, pairs, n_cells=40, seed=1, dense=False):
    """Log-normalised cells of the given (perturbation, context) pairs (sparse float32 X)."""
    rng = np.random.default_rng(seed)
    blocks, obs = [], []
    for p, c in pairs:
        blocks.append(_lognorm(rng.poisson(rates[(p, c)], size=(n_cells, len(rates[(p, c)])))))
        obs += [(p, c)] * n_cells
    x = np.concatenate(blocks).astype(np.float32)
    frame = pd.DataFrame(obs, columns=["perturbation", "cell_line"])
    frame.index = [f"cell{seed}_{i}" for i in range(len(frame))]
    frame = frame.astype("category")
    var = pd.DataFrame(index=[f"g{j}" for j in range(x.shape[1])])
    return ad.AnnData(X=x if dense else sparse.csr_matrix(x), obs=frame, var=var)


def _dense(adata):
    x = adata.X
    return np.asarray(x.toarray() if sparse.issparse(x) else x, dtype=np.float64)


def _mean(adata, perturbation, context=None, context_key="cell_line"):
    mask = adata.obs["perturbation"].astype(str).to_numpy() == perturbation
    if context is not None:
        mask &= adata.obs[context_key].astype(str).to_numpy() == context
    return _dense(adata)[mask].mean(axis=0)


def _numpy_shift(observed, control, perturbation, context=None):
    return _mean(observed, perturbation, context) - _mean(control, "control", context)


def _build(control, shifts_by_pair, context_key="cell_line", dtype=np.float64):
    """Predicted cells: every control cell of the pair's context plus the given shift (dense)."""
    blocks, obs = [], []
    cx = _dense(control)
    for (p, c), shift in shifts_by_pair.items():
        mask = np.ones(control.n_obs, dtype=bool)
        if c is not None:
            mask = control.obs[context_key].astype(str).to_numpy() == c
        blocks.append(cx[mask] + shift)
        obs += [(p, c)] * int(mask.sum())
    frame = pd.DataFrame(obs, columns=["perturbation", context_key])
    frame.index = [f"pred{i}" for i in range(len(frame))]
    return ad.AnnData(X=np.concatenate(blocks).astype(dtype), obs=frame, var=control.var.copy())


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    # The matrices here are tiny; on a loaded 2-core machine, spinning BLAS worker threads made
    # these tests ~30x slower (as torch threads do, see conftest.py).
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def data():
    rates = _rates()
    control = _cells(rates, [("control", c) for c in CONTEXTS], seed=1)
    observed = _cells(rates, [(p, c) for p in PERTURBATIONS for c in CONTEXTS], seed=2)
    return rates, control, observed


def _no_warnings():
    return warnings.catch_warnings(action="error")


# ------------------------------------------------------------------------ pseudobulk_shifts
def test_pseudobulk_shifts_match_numpy(data):
    _, control, observed = data
    table = pseudobulk_shifts(observed, "perturbation", control, context_key="cell_line")
    assert list(table.index.names) == ["perturbation", "cell_line"]
    assert table.index.tolist() == sorted((p, c) for p in PERTURBATIONS for c in CONTEXTS)
    assert table.columns.equals(observed.var_names)
    for p, c in table.index:
        np.testing.assert_allclose(
            table.loc[(p, c)], _numpy_shift(observed, control, p, c), atol=1e-12
        )

    # the control given as a label of the same AnnData, and the data in a layer, change nothing
    combined = ad.concat([observed, control])
    combined.layers["lognorm"] = combined.X.copy()
    combined.X = sparse.csr_matrix(combined.shape, dtype=np.float32)  # all zeros
    by_label = pseudobulk_shifts(combined, "perturbation", "control", "cell_line", layer="lognorm")
    pd.testing.assert_frame_equal(by_label, table, check_exact=False, atol=1e-12)

    # without contexts: one pooled control, indexed by perturbation
    pooled = pseudobulk_shifts(observed, "perturbation", control)
    assert pooled.index.name == "perturbation" and pooled.index.tolist() == list(PERTURBATIONS)
    np.testing.assert_allclose(
        pooled.loc["p1"], _mean(observed, "p1") - _mean(control, "control"), atol=1e-12
    )


# ----------------------------------------------------------------------------------- scores
def test_perfect_prediction(data):
    _, control, observed = data
    predicted = observed[observed.obs["perturbation"].isin(["p0", "p2"])].copy()
    with _no_warnings():
        table = score_perturbations(predicted, observed, control, context_key="cell_line")
    assert table.index.tolist() == [("p0", "A"), ("p0", "B"), ("p2", "A"), ("p2", "B")]
    assert list(table.columns) == [
        "r2", "mse", "r2_top_de", "mse_top_de", "energy_distance", "n_predicted", "n_observed"
    ]  # fmt: skip
    np.testing.assert_allclose(table["r2"], 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(table["r2_top_de"], 1.0, rtol=0, atol=1e-12)
    # identical cells give identical pseudobulks: the errors are exactly 0
    assert (table["mse"] == 0).all() and (table["mse_top_de"] == 0).all()
    # identical point sets: the V-statistic is 0 up to the round-off of |a|^2+|b|^2-2a.b on the
    # diagonal (sqrt(eps)*|a| per entry, divided by n); far below 1e-6
    assert (table["energy_distance"] < 1e-6).all()
    assert (table["n_predicted"] == 40).all() and (table["n_observed"] == 40).all()


def test_energy_distance_same_distribution_is_within_finite_sample_bias(data):
    rates, control, observed = data
    pair = [("p1", "A")]
    redrawn = _cells(rates, pair, seed=7)  # new cells, same distribution
    wrong = _cells(rates, [("p3", "A")], seed=8)
    wrong.obs["perturbation"] = pd.Categorical(["p1"] * wrong.n_obs)
    with _no_warnings():
        same = score_perturbations(redrawn, observed, control, context_key="cell_line")
        other = score_perturbations(wrong, observed, control, context_key="cell_line")
    # Under equal distributions the V-statistic has expectation (1/n + 1/m) E|X - X'|. The PCA
    # projection only shortens distances, so the mean pairwise distance of the cells in gene
    # space bounds E|X - X'| from above; allow 3x for the spread of the statistic.
    true_cells = _dense(observed)[
        (observed.obs["perturbation"] == "p1").to_numpy()
        & (observed.obs["cell_line"] == "A").to_numpy()
    ]
    bound = 3 * (1 / 40 + 1 / 40) * pdist(true_cells).mean()
    energy = same["energy_distance"].iloc[0]
    assert 0 < energy < bound
    assert other["energy_distance"].iloc[0] > 3 * bound  # another perturbation is far away


def test_negated_shift_has_r2_one_but_large_mse(data):
    _, control, observed = data
    true = {("p1", c): _numpy_shift(observed, control, "p1", c) for c in CONTEXTS}
    predicted = _build(control, {pair: -shift for pair, shift in true.items()})
    table = score_perturbations(predicted, observed, control, context_key="cell_line", n_top_de=10)
    np.testing.assert_allclose(table["r2"], 1.0, atol=1e-10)
    np.testing.assert_allclose(table["r2_top_de"], 1.0, atol=1e-10)
    for c in CONTEXTS:  # predicted - true = -2 true
        row = table.loc[("p1", c)]
        np.testing.assert_allclose(row["mse"], 4 * np.mean(true[("p1", c)] ** 2), rtol=1e-9)
        assert row["mse"] > 0.05


def test_random_shift_has_low_r2(data):
    _, control, observed = data
    rng = np.random.default_rng(3)
    true = _numpy_shift(observed, control, "p2", "B")
    random_shift = rng.normal(0.0, true.std(), N_GENES)
    predicted = _build(control, {("p2", "B"): random_shift})
    table = score_perturbations(predicted, observed, control, context_key="cell_line")
    # independent vectors: E[r^2] = 1/(n-1) = 0.005 for 200 genes; r^2 > 0.1 would need |z| > 4.4
    assert table["r2"].iloc[0] < 0.1
    np.testing.assert_allclose(table["mse"].iloc[0], np.mean((random_shift - true) ** 2), rtol=1e-9)


def test_top_de_genes_are_the_largest_true_shifts(data):
    _, control, observed = data
    true = _numpy_shift(observed, control, "p0", "A")
    k = 15
    top = np.argsort(-np.abs(true), kind="stable")[:k]
    rest = np.setdiff1d(np.arange(N_GENES), top)
    noise = np.random.default_rng(4).normal(0.0, 1.0, N_GENES)
    exact_on_top = true.copy()
    exact_on_top[rest] += noise[rest]
    exact_on_rest = true.copy()
    exact_on_rest[top] += noise[top]
    predicted = _build(control, {("p0", "A"): exact_on_top})
    predicted_rest = _build(control, {("p0", "A"): exact_on_rest})
    kwargs = {"context_key": "cell_line", "n_top_de": k}
    good = score_perturbations(predicted, observed, control, **kwargs).iloc[0]
    bad = score_perturbations(predicted_rest, observed, control, **kwargs).iloc[0]
    assert good["r2_top_de"] == pytest.approx(1.0, abs=1e-10)
    assert good["mse_top_de"] == pytest.approx(0.0, abs=1e-20)
    assert good["r2"] < 0.9
    assert good["mse"] == pytest.approx(np.sum(noise[rest] ** 2) / N_GENES)
    assert bad["mse_top_de"] == pytest.approx(np.mean(noise[top] ** 2))
    r_top = np.corrcoef(exact_on_rest[top], true[top])[0, 1]
    assert bad["r2_top_de"] == pytest.approx(r_top**2, rel=1e-9)


def test_contexts_use_their_own_control(data):
    _, control, observed = data
    true_b = _numpy_shift(observed, control, "p3", "B")
    # twice the true shift on B's own control: r2 = 1 only if B's control is subtracted from both
    # pseudobulks (the A or pooled control has another profile, which would lower r2)
    predicted = _build(control, {("p3", "B"): 2 * true_b})
    table = score_perturbations(predicted, observed, control, context_key="cell_line")
    assert table.index.tolist() == [("p3", "B")]
    assert table["r2"].iloc[0] == pytest.approx(1.0, abs=1e-10)
    assert table["mse"].iloc[0] == pytest.approx(np.mean(true_b**2), rel=1e-9)
    # (check that this discriminates: with the pooled control, r2 would be far from 1)
    offset = _mean(control, "control", "B") - _mean(control, "control")
    assert np.corrcoef(2 * true_b + offset, true_b + offset)[0, 1] ** 2 < 0.99

    # a context without control cells is named
    only_a = control[control.obs["cell_line"] == "A"].copy()
    with pytest.raises(KeyError, match=r"'B'"):
        score_perturbations(predicted, observed, only_a, context_key="cell_line")


def test_constant_predicted_shift_gives_nan_r2_with_warning(data):
    _, control, observed = data
    predicted = _build(control, {("p0", "A"): np.zeros(N_GENES), ("p1", "A"): np.ones(N_GENES)})
    true = _numpy_shift(observed, control, "p0", "A")
    with pytest.warns(RuntimeWarning, match=r"constant across genes for 2 pair\(s\).*'p0', 'A'"):
        table = score_perturbations(predicted, observed, control, context_key="cell_line")
    assert table[["r2", "r2_top_de"]].isna().all().all()
    assert table.loc[("p0", "A"), "mse"] == pytest.approx(np.mean(true**2), rel=1e-9)
    assert np.isfinite(table["energy_distance"]).all()
    summary = summarize_scores(table)
    assert summary.loc["r2", "n"] == 0 and np.isnan(summary.loc["r2", "mean"])
    assert summary.loc["mse", "n"] == 2


def test_summarize_scores():
    table = pd.DataFrame(
        {"r2": [0.2, 0.5, np.nan, 0.9], "mse": [1.0, 2.0, 3.0, 10.0], "n_predicted": [5, 5, 5, 5]}
    )
    summary = summarize_scores(table)
    assert summary.index.tolist() == ["r2", "mse"]
    assert list(summary.columns) == ["mean", "median", "se", "n"]
    values = np.array([0.2, 0.5, 0.9])
    assert summary.loc["r2", "mean"] == pytest.approx(values.mean())
    assert summary.loc["r2", "median"] == pytest.approx(0.5)
    assert summary.loc["r2", "se"] == pytest.approx(values.std(ddof=1) / np.sqrt(3))
    assert summary.loc["mse", "median"] == pytest.approx(2.5) and summary.loc["mse", "n"] == 4
    with pytest.raises(KeyError, match="nope"):
        summarize_scores(table, columns=["nope"])


def test_scores_without_context_and_reordered_genes(data):
    _, control, observed = data
    observed_a = observed[observed.obs["cell_line"] == "A"].copy()
    control_a = control[control.obs["cell_line"] == "A"].copy()
    predicted = observed_a[observed_a.obs["perturbation"] == "p1"].copy()
    table = score_perturbations(predicted, observed_a, control_a)
    assert table.index.name == "perturbation" and table.index.tolist() == ["p1"]
    assert table["r2"].iloc[0] == pytest.approx(1.0, abs=1e-12)
    # the same genes in another order are aligned by name
    order = np.random.default_rng(5).permutation(N_GENES)
    observed_b, control_b = observed_a[:, order].copy(), control_a[:, order].copy()
    shuffled = score_perturbations(predicted, observed_b, control_b)
    pd.testing.assert_frame_equal(shuffled, table, check_exact=False, atol=1e-10)
    # the control as a label of `observed`
    combined = ad.concat([observed_a, control_a])
    by_label = score_perturbations(predicted, combined, "control")
    pd.testing.assert_frame_equal(by_label, table, check_exact=False, atol=1e-10)


def test_score_errors_name_the_problem(data):
    _, control, observed = data
    predicted = observed[observed.obs["perturbation"] == "p0"].copy()
    with pytest.raises(ValueError, match="var_names"):
        score_perturbations(predicted[:, :-1].copy(), observed, control, context_key="cell_line")
    missing = predicted.copy()
    missing.obs["perturbation"] = pd.Categorical(["p9"] * missing.n_obs)
    with pytest.raises(KeyError, match=r"\('p9', 'A'\)"):
        score_perturbations(missing, observed, control, context_key="cell_line")
    with pytest.raises(KeyError, match="no column 'donor'"):
        score_perturbations(predicted, observed, control, context_key="donor")
    with pytest.raises(ValueError, match="n_top_de"):
        score_perturbations(predicted, observed, control, context_key="cell_line", n_top_de=1)


def test_inputs_are_not_modified(data):
    _, control, observed = data
    predicted = observed[observed.obs["perturbation"] == "p2"].copy()
    before = [a.copy() for a in (predicted, observed, control)]
    score_perturbations(predicted, observed, control, context_key="cell_line", max_cells=10)
    train = [("p0", "A"), ("p1", "B")]
    mean_shift_baseline(observed, "perturbation", control, train, [("p2", "A")], "cell_line")
    features = pd.DataFrame(np.eye(4), index=list(PERTURBATIONS))
    ridge_baseline(observed, "perturbation", control, features, train, [("p2", "A")], "cell_line")
    for old, new in zip(before, (predicted, observed, control), strict=True):
        assert old.obs.equals(new.obs) and old.var.equals(new.var)
        assert abs(old.X - new.X).sum() == 0
        assert set(old.uns) == set(new.uns) and set(old.layers) == set(new.layers)


def test_subsampling_is_seeded(data):
    rates, control, observed = data
    redrawn = _cells(rates, [("p1", "A")], seed=9)
    kwargs = {"context_key": "cell_line", "max_cells": 15}
    first = score_perturbations(redrawn, observed, control, seed=1, **kwargs)
    again = score_perturbations(redrawn, observed, control, seed=1, **kwargs)
    other = score_perturbations(redrawn, observed, control, seed=2, **kwargs)
    pd.testing.assert_frame_equal(first, again)
    assert first["energy_distance"].iloc[0] != other["energy_distance"].iloc[0]
    assert first["n_predicted"].iloc[0] == 40  # counts are before subsampling
    # identical sets stay identical after subsampling (same positions drawn on both sides)
    same = observed[(observed.obs["perturbation"] == "p1").to_numpy()].copy()
    assert (score_perturbations(same, observed, control, **kwargs)["energy_distance"] < 1e-6).all()


# -------------------------------------------------------------------------------- baselines
def test_mean_shift_baseline_is_the_mean_training_shift():
    contexts = ("A", "B", "C")
    rates = _rates(seed=11, contexts=contexts)
    control = _cells(rates, [("control", c) for c in contexts], n_cells=12, seed=12)
    train = [("p0", "A"), ("p1", "A"), ("p2", "A"), ("p0", "B"), ("p3", "B")]
    cells = _cells(rates, train, n_cells=20, seed=13)
    adata = ad.concat([cells, control])
    predict = [("p3", "A"), ("p1", "B"), ("p2", "C")]  # C has control cells but no training pair
    with _no_warnings():
        out = mean_shift_baseline(adata, "perturbation", "control", train, predict, "cell_line")
    shift = {pair: _numpy_shift(cells, control, *pair) for pair in train}
    expected = {
        ("p3", "A"): np.mean([shift[p] for p in train[:3]], axis=0),
        ("p1", "B"): np.mean([shift[p] for p in train[3:]], axis=0),
        ("p2", "C"): np.mean([shift[p] for p in train], axis=0),  # fallback: all contexts
    }
    table = out.uns["predicted_shift"]
    assert table.index.tolist() == predict and table.columns.equals(adata.var_names)
    for pair, value in expected.items():
        np.testing.assert_allclose(table.loc[pair], value, atol=1e-12)

    # cells: every control cell of the context once, plus the shift (float32 like the input)
    assert out.X.dtype == np.float32 and out.n_obs == 3 * 12
    for p, c in predict:
        mask = (out.obs["perturbation"] == p).to_numpy() & (out.obs["cell_line"] == c).to_numpy()
        sources = out.obs.loc[mask, "control_cell"].tolist()
        assert sources == control.obs_names[(control.obs["cell_line"] == c).to_numpy()].tolist()
        np.testing.assert_allclose(
            out.X[mask], _dense(control[sources]) + expected[(p, c)], rtol=0, atol=1e-5
        )

    # scoring the baseline's cells recovers its shift (up to the float32 rounding of X)
    observed = _cells(rates, predict, n_cells=20, seed=14)
    scores = score_perturbations(out, observed, control, context_key="cell_line")
    for pair, value in expected.items():
        true = _numpy_shift(observed, control, *pair)
        assert scores.loc[pair, "mse"] == pytest.approx(np.mean((value - true) ** 2), rel=1e-4)


def test_baseline_cell_sampling_and_layer(data):
    _, control, observed = data
    train, predict = ["p0", "p1"], ["p2", "p3"]
    observed_a = observed[observed.obs["cell_line"] == "A"].copy()
    control_a = control[control.obs["cell_line"] == "A"].copy()
    kwargs = {"n_cells": 7, "layer": "lognorm"}
    for a in (observed_a, control_a):
        a.layers["lognorm"] = a.X.copy()
    args = (observed_a, "perturbation", control_a, train, predict)
    out = mean_shift_baseline(*args, seed=3, **kwargs)
    again = mean_shift_baseline(*args, seed=3, **kwargs)
    other = mean_shift_baseline(*args, seed=4, **kwargs)
    assert out.n_obs == 14 and out.obs["perturbation"].tolist() == ["p2"] * 7 + ["p3"] * 7
    assert "cell_line" not in out.obs and out.uns["predicted_shift"].index.name == "perturbation"
    np.testing.assert_array_equal(out.X, again.X)
    np.testing.assert_array_equal(out.layers["lognorm"], out.X)
    assert not np.array_equal(out.X, other.X)
    expected = np.mean([_numpy_shift(observed_a, control_a, p) for p in train], axis=0)
    sources = out.obs["control_cell"].tolist()
    np.testing.assert_allclose(out.X, _dense(control_a[sources]) + expected, atol=1e-5)
    score_perturbations(out, observed_a, control_a, layer="lognorm")  # scorable with the layer


def _linear_data(seed, contexts):
    """Cells whose pseudobulk shifts are exactly F @ B + b0 (+ a context offset).

    Perturbed cells are the control cells of their context plus the shift, so their pseudobulk
    shift equals it up to round-off.
    """
    rng = np.random.default_rng(seed)
    names = [f"q{i}" for i in range(10)]
    features = pd.DataFrame(rng.normal(size=(10, 3)), index=names, columns=["f0", "f1", "f2"])
    loadings, intercept = rng.normal(size=(3, N_GENES)), rng.normal(size=N_GENES)
    offset = {c: rng.normal(size=N_GENES) for c in contexts}
    rates = _rates(seed=seed, contexts=contexts)
    pairs = [("control", c) for c in contexts]
    control = _cells(rates, pairs, n_cells=10, seed=seed + 1, dense=True)
    control.X = control.X.astype(np.float64)
    truth = {
        (p, c): features.loc[p].to_numpy() @ loadings + intercept + offset[c]
        for p in names
        for c in contexts
    }
    return features, control, truth


def test_ridge_recovers_a_linear_map_on_held_out_perturbations():
    features, control, truth = _linear_data(21, ("A",))
    train = [f"q{i}" for i in range(7)]
    predict = ["q7", "q8", "q9"]
    perturbed = _build(control, {(p, None): truth[(p, "A")] for p in train})
    adata = ad.concat([perturbed, control])
    out = ridge_baseline(adata, "perturbation", "control", features, train, predict, alpha=1e-10)
    table = out.uns["predicted_shift"]
    assert table.index.tolist() == predict
    for p in predict:  # 7 pairs, 3 features + intercept: the map is identified exactly
        np.testing.assert_allclose(table.loc[p], truth[(p, "A")], rtol=0, atol=1e-6)
    # a huge penalty shrinks the map to its intercept: the mean training shift (error ~ 1/alpha)
    flat = ridge_baseline(adata, "perturbation", "control", features, train, predict, alpha=1e12)
    mean = mean_shift_baseline(adata, "perturbation", "control", train, predict)
    np.testing.assert_allclose(
        flat.uns["predicted_shift"], mean.uns["predicted_shift"], rtol=0, atol=1e-8
    )


def test_ridge_with_contexts_learns_context_offsets():
    features, control, truth = _linear_data(31, ("A", "B"))
    train = [(f"q{i}", c) for i in range(7) for c in ("A", "B")]
    predict = [("q7", "A"), ("q8", "B"), ("q9", "B")]
    perturbed = _build(control, {pair: truth[pair] for pair in train})
    adata = ad.concat([perturbed, control])
    out = ridge_baseline(
        adata, "perturbation", "control", features, train, predict, "cell_line", alpha=1e-10
    )
    for pair in predict:
        np.testing.assert_allclose(out.uns["predicted_shift"].loc[pair], truth[pair], atol=1e-6)
    assert out.uns["perturbation_baseline"] == {
        "method": "ridge", "perturbation_key": "perturbation", "context_key": "cell_line",
        "alpha": 1e-10,
    }  # fmt: skip


def test_baseline_errors_name_the_problem(data):
    _, control, observed = data
    features = pd.DataFrame(np.eye(3), index=["p0", "p1", "p2"])
    train, predict = [("p0", "A"), ("p1", "A")], [("p3", "A")]
    with pytest.raises(KeyError, match="'p3'"):
        ridge_baseline(observed, "perturbation", control, features, train, predict, "cell_line")
    with pytest.raises(KeyError, match=r"\('p7', 'A'\)"):
        mean_shift_baseline(observed, "perturbation", control, [("p7", "A")], predict, "cell_line")
    with pytest.raises(ValueError, match="no `context_key`"):
        mean_shift_baseline(observed, "perturbation", control, train, predict)
    with pytest.raises(ValueError, match="pairs"):
        mean_shift_baseline(observed, "perturbation", control, ["p0"], predict, "cell_line")
    with pytest.raises(KeyError, match="'Z'"):
        mean_shift_baseline(observed, "perturbation", control, train, [("p3", "Z")], "cell_line")
    fewer_genes = control[:, :5].copy()
    with pytest.raises(ValueError, match="var_names"):
        mean_shift_baseline(observed, "perturbation", fewer_genes, train, predict, "cell_line")
    with pytest.raises(ValueError, match="alpha"):
        ridge_baseline(
            observed, "perturbation", control, features, train, predict, "cell_line", alpha=-1
        )
