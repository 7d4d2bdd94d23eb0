"""Target knock-down of genetic perturbations: estimation, thinning, model and baseline."""

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from scipy import sparse

from scgde.model._knockdown import MIN_FACTOR, knockdown_factors, thin_targets
from scgde.tl import mean_shift_baseline


# ------------------------------------------------------------------------------ thinning
def test_thinning_nb_counts_gives_nb_with_the_factor_times_the_mean():
    """Binomial thinning of NB(mu, theta) is NB(f mu, theta): check mean and variance."""
    rng = np.random.default_rng(0)
    n, mu, theta, factor = 200_000, 20.0, 2.0, 0.25
    counts = rng.negative_binomial(theta, theta / (theta + mu), size=(n, 2)).astype(np.float32)
    control = np.full((n, 2), mu, dtype=np.float32)  # decoded control at the same level
    thinned = thin_targets(counts, control, [0], [factor], np.random.default_rng(1))
    mean, var = factor * mu, factor * mu + (factor * mu) ** 2 / theta
    # 4 standard errors of the sample mean and variance (4th moment of an NB ~ 3 var^2 here)
    assert abs(thinned[:, 0].mean() - mean) < 4 * np.sqrt(var / n)
    assert abs(thinned[:, 0].var() - var) < 4 * np.sqrt(3 * var**2 / n)
    np.testing.assert_array_equal(thinned[:, 1], counts[:, 1])  # other genes untouched
    assert np.all(thinned[:, 0] <= counts[:, 0])


def test_thinning_only_adds_what_the_generator_did_not_lower():
    rng = np.random.default_rng(0)
    control = rng.poisson(50.0, size=(5_000, 1)).astype(np.float32)
    lowered = rng.poisson(25.0, size=(5_000, 1)).astype(np.float32)  # generator: 0.5x
    thinned = thin_targets(lowered, control, [0], [0.1], np.random.default_rng(1))
    ratio = thinned.sum() / control.sum()
    # keep = 0.1 / 0.5 = 0.2 of ~125,000 counts: binomial SD of the ratio ~ 0.0006
    assert abs(ratio - 0.1) < 0.005
    # a target already below its factor is left as it is (never raised)
    low = rng.poisson(2.0, size=(5_000, 1)).astype(np.float32)
    np.testing.assert_array_equal(thin_targets(low, control, [0], [0.1], rng), low)


def test_thinning_clips_the_factor_and_copies():
    x = np.full((10, 1), 1000.0, dtype=np.float32)
    out = thin_targets(x, x, [0], [0.0], np.random.default_rng(0))
    assert out.sum() < 10 * 1000 * MIN_FACTOR * 3  # clipped at MIN_FACTOR, not zero
    assert np.all(x == 1000.0)


# ------------------------------------------------------------------------------ estimation
def _counts(rng, n, means, library=10_000):
    share = np.asarray(means, dtype=float) / np.sum(means)
    return rng.multinomial(library, share, size=n).astype(np.float32)


def test_factors_are_ratios_of_cp10k_means_geometric_over_contexts():
    rng = np.random.default_rng(0)
    base = np.array([100.0, 100.0, 800.0, 0.0])
    blocks = {
        "ctrl_a": _counts(rng, 400, base),
        "ctrl_b": _counts(rng, 400, base),
        "g0_a": _counts(rng, 400, base * [0.2, 1, 1, 1]),
        "g0_b": _counts(rng, 400, base * [0.05, 1, 1, 1]),
        "g3_a": _counts(rng, 400, base),  # target never detected in the controls
        "pair_a": _counts(rng, 400, base * [0.2, 0.2, 1, 1]),  # combination: not used
    }
    x = sparse.csr_matrix(np.concatenate(list(blocks.values())))
    rows, start = {}, 0
    for name, block in blocks.items():
        rows[name] = np.arange(start, start + len(block))
        start += len(block)
    sets = pd.DataFrame(
        {"target": ["g0", "g0", "g3", None], "context": ["a", "b", "a", "a"]},
        index=["g0_a", "g0_b", "g3_a", "pair_a"],
    )
    genes = {"g0": 0, "g1": 1, "g2": 2, "g3": 3}
    factors = knockdown_factors(x, genes, sets, rows, {"a": "ctrl_a", "b": "ctrl_b"})
    assert list(factors.index) == ["g0"]
    # the share of g0 changes slightly with the total: exact expected CP10k ratio per context
    expected = [(f * 100 / (f * 100 + 900)) / (100 / 1000) for f in (0.2, 0.05)]
    # 400 cells x 10k counts: relative SE of each ratio < 1%
    assert factors["g0"] == pytest.approx(np.sqrt(np.prod(expected)), rel=0.03)


# ------------------------------------------------------------------------------ baseline
def _log_data():
    rng = np.random.default_rng(0)
    genes = ["A", "B", "C", "D"]
    labels = ["control"] * 50 + ["A"] * 20 + ["B"] * 20 + ["drug"] * 20
    x = rng.normal(1.0, 0.1, size=(len(labels), 4))
    for i, label in enumerate(labels):
        if label in genes:
            x[i, genes.index(label)] -= 0.8
    return AnnData(
        x.astype(np.float32),
        obs=pd.DataFrame(
            {"perturbation": pd.Categorical(labels)},
            index=[f"cell{i}" for i in range(len(labels))],
        ),
        var=pd.DataFrame(index=genes),
    )


def test_mean_shift_baseline_with_target_knockdown():
    adata = _log_data()
    train, predict = ["A", "B", "drug"], ["C", "C+D", "drug"]
    plain = mean_shift_baseline(adata, "perturbation", "control", train, predict)
    knocked = mean_shift_baseline(
        adata, "perturbation", "control", train, predict, target_knockdown=True
    )
    shifts = plain.uns["predicted_shift"]
    observed = knocked.uns["predicted_shift"]
    x = adata.X
    control = x[adata.obs["perturbation"] == "control"].mean(0)
    own = [x[adata.obs["perturbation"] == g][:, i].mean() - control[i] for i, g in enumerate("AB")]
    target = np.median(own)
    assert observed.loc["C", "C"] == pytest.approx(target, rel=1e-5)
    assert observed.loc["C+D", ["C", "D"]].to_numpy() == pytest.approx([target, target], rel=1e-5)
    # every other entry is the plain mean shift; "drug" names no gene and is unchanged
    untouched = np.ones(observed.shape, dtype=bool)
    untouched[0, 2] = untouched[1, 2] = untouched[1, 3] = False
    np.testing.assert_allclose(observed.to_numpy()[untouched], shifts.to_numpy()[untouched])
    # the predicted cells carry the knocked-down shift
    cells = knocked[knocked.obs["perturbation"] == "C"].X
    assert cells[:, 2].mean() - control[2] == pytest.approx(target, abs=1e-5)


def test_mean_shift_baseline_target_knockdown_needs_gene_singles():
    adata = _log_data()
    with pytest.raises(ValueError, match="single-gene"):
        mean_shift_baseline(
            adata, "perturbation", "control", ["drug"], ["C"], target_knockdown=True
        )
