"""Sets indexed by a continuous or noisy label: LabelSets, their sampler and LabelGDE."""

import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from _helpers import fresh_copy
from scipy import stats

import scgde
from scgde.data import (
    ContinuousLabelSets,
    LabelDataSplitter,
    LabelSetSampler,
    ProbabilityLabelSets,
)
from scgde.datasets import dose_response_truth
from scgde.metrics import energy_distance
from scgde.model import LabelGDE

#: Cells with doses in this band are left out of training (a held-out label range).
GAP = (0.4, 0.6)
DIM = 5


def dose_response(n=6000, seed=0, gap=GAP):
    return scgde.datasets.dose_response(n, dim=DIM, held_out=gap, seed=seed)


def draw(dose, rng):
    """Cells at the given doses from the simulation's true distributions."""
    mean, sd = dose_response_truth(dose, DIM)
    return mean + rng.normal(size=mean.shape) * np.asarray(sd)[..., None]


def w2(y1, y2):
    """W2 between the isotropic Gaussians at two doses."""
    (m1, s1), (m2, s2) = dose_response_truth(y1, DIM), dose_response_truth(y2, DIM)
    return np.sqrt(((m1 - m2) ** 2).sum(-1) + DIM * (s1 - s2) ** 2)


def test_dose_response_draws_its_documented_distribution():
    adata = scgde.datasets.dose_response(40_000, held_out=(0.4, 0.6), seed=3)
    dose = adata.obs["dose"].to_numpy()
    assert not ((dose > 0.4) & (dose < 0.6)).any()
    mean, sd = dose_response_truth(dose)
    standardized = (adata.X - mean) / sd[:, None]
    # standardized cells are N(0, 1): means within 4 standard errors, variances likewise
    n = adata.n_obs
    assert np.abs(standardized.mean(0)).max() < 4 / np.sqrt(n)
    assert np.abs(standardized.var(0) - 1).max() < 4 * np.sqrt(2 / n)


# ------------------------------------------------------------------------------ label sets
def test_continuous_members_are_the_cut_off_gaussian_kernel():
    labels = np.random.default_rng(0).uniform(0, 10, 500)
    sets = ContinuousLabelSets(labels, bandwidth=0.5)
    indices, weights = sets.members(4.0)
    inside = np.flatnonzero(np.abs(labels - 4.0) <= 4 * 0.5)
    np.testing.assert_array_equal(indices, inside)
    np.testing.assert_allclose(weights, np.exp(-0.5 * ((labels[inside] - 4.0) / 0.5) ** 2))


def test_pairs_agree_with_members():
    labels = np.random.default_rng(1).uniform(0, 1, 300)
    sets = ContinuousLabelSets(labels, bandwidth=0.05)
    values = [0.7, 0.1, 0.5, 0.52]  # unsorted, and close values share cells
    cells = np.arange(50, 250)
    cell_pos, value_pos, weights = sets.pairs(cells, values)
    for v, value in enumerate(values):
        indices, expected = sets.members(value)
        in_block = (indices >= 50) & (indices < 250)
        mine = value_pos == v
        np.testing.assert_array_equal(cells[cell_pos[mine]], indices[in_block])
        np.testing.assert_allclose(weights[mine], expected[in_block])
    assert (np.diff(cell_pos) >= 0).all()


def test_probability_sets_weight_cells_by_their_probability():
    table = np.array([[0.9, 0.1, 0.0], [0.0, 0.5, 0.5], [0.2, 0.0, 0.8]])
    sets = ProbabilityLabelSets(table, ["a", "b", "c"])
    indices, weights = sets.members("c")
    np.testing.assert_array_equal(indices, [1, 2])
    np.testing.assert_allclose(weights, [0.5, 0.8])
    cell_pos, value_pos, weights = sets.pairs(np.array([0, 2]), ["c", "a"])
    found = sorted(zip(cell_pos, value_pos, weights, strict=True))
    assert found == [(0, 1, 0.9), (1, 0, 0.8), (1, 1, 0.2)]
    with pytest.raises(ValueError, match="Unknown label 'd'"):
        sets.members("d")


def test_draws_follow_the_weights():
    """Cells are drawn in proportion to their weight; label values in proportion to the
    label's mass (chi-square goodness of fit at the 0.1% level, fixed seed)."""
    rng = np.random.default_rng(0)
    table = np.array([[0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
    sets = ProbabilityLabelSets(table, ["a", "b"])
    n = 20_000
    drawn = sets.draw_cells(rng, "b", n)
    expected = n * table[:, 1] / table[:, 1].sum()
    assert stats.chisquare(np.bincount(drawn, minlength=3), expected).pvalue > 1e-3
    values = sets.draw_values(rng, n, np.arange(3))
    counts = [values.count("a"), values.count("b")]
    assert stats.chisquare(counts, n * table.sum(0) / table.sum()).pvalue > 1e-3
    allowed = np.array([True, False, True])
    assert set(sets.draw_cells(rng, "b", 1000, allowed)) == {0, 2}


def test_sampler_draws_sets_from_its_cells_around_their_labels():
    labels = np.linspace(0, 1, 400)
    sets = ContinuousLabelSets(labels, bandwidth=0.02)
    cells = np.arange(0, 400, 2)  # the even cells only
    sampler = LabelSetSampler(sets, cells, set_size=32, groups_per_batch=5, n_batches=3, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3
    for indices, set_ids in batches:
        assert (indices % 2 == 0).all()
        assert np.bincount(set_ids).tolist() == [32] * 5
        for s in range(5):
            # every set lies within the kernel's reach around one value
            assert np.ptp(labels[indices[set_ids == s]]) <= 8 * 0.02
    again = list(LabelSetSampler(sets, cells, 32, 5, 3, seed=0))
    assert all((a[0] == b[0]).all() for a, b in zip(batches, again, strict=True))


def test_weighted_streaming_equals_replicated_cells():
    """An integer weight k counts as k copies of the cell (distribution invariance)."""
    torch.manual_seed(0)
    encoder = scgde.nn.DeepSetEncoder(3, 4, n_hidden=16).eval()
    x = torch.randn(30, 3)
    set_ids = torch.arange(30) % 2
    weights = torch.randint(1, 4, (30,)).double()

    def chunks():
        for start in range(0, 30, 7):
            part = slice(start, start + 7)
            yield x[part], set_ids[part], weights[part]

    replicated = weights.long()
    expected = encoder(x.repeat_interleave(replicated, 0), set_ids.repeat_interleave(replicated), 2)
    got = encoder.encode_streaming(chunks, 2)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_label_splitter_splits_cells():
    adata = dose_response(n=500)
    LabelGDE.setup_anndata(adata, label_key="dose")
    model = LabelGDE(adata, n_latent=4)
    splitter = LabelDataSplitter(
        model.adata_manager, model.get_label_sets(adata), set_size=16, groups_per_batch=4
    )
    assert splitter.n_train + splitter.n_val == adata.n_obs
    assert splitter.n_val == pytest.approx(0.1 * adata.n_obs, abs=1)
    assert not np.intersect1d(splitter.train_idx, splitter.val_idx).size


# --------------------------------------------------------------------------- set-up
def test_setup_records_the_default_bandwidth_and_adds_only_scvi_keys():
    adata = dose_response(n=500)
    before = fresh_copy(adata)
    LabelGDE.setup_anndata(adata, label_key="dose")
    labels = adata.obs["dose"].to_numpy()
    lo, hi = np.percentile(labels, [1, 99])
    model = LabelGDE(adata, n_latent=4)
    assert model.label_bandwidth == pytest.approx((hi - lo) / 20)
    np.testing.assert_array_equal(adata.X, before.X)
    assert {c for c in adata.obs if c not in before.obs} == {"_scvi_batch"}
    assert "sets around 'dose'" in model._model_summary_string


@pytest.mark.parametrize(
    ("change", "kwargs", "error", "match"),
    [
        (None, {}, ValueError, "exactly one of"),
        (None, {"label_key": "dose", "label_probabilities_key": "p"}, ValueError, "exactly one"),
        (None, {"label_key": "missing"}, KeyError, "not found in adata.obs"),
        ("text", {"label_key": "kind"}, ValueError, "needs a numeric column"),
        ("nan", {"label_key": "dose"}, ValueError, "1 missing or infinite"),
        ("constant", {"label_key": "dose"}, ValueError, "single value"),
        (None, {"label_key": "dose", "label_bandwidth": 0}, ValueError, "must be > 0"),
        (None, {"label_probabilities_key": "missing"}, KeyError, "adata.obsm has no"),
        ("negative", {"label_probabilities_key": "p"}, ValueError, "non-negative"),
        ("empty", {"label_probabilities_key": "p"}, ValueError, r"\['b'\] have zero"),
        ("onecolumn", {"label_probabilities_key": "p"}, ValueError, "at least 2"),
        (None, {"label_probabilities_key": "p", "label_bandwidth": 1.0}, ValueError, "only"),
    ],
)
def test_bad_labels_are_clear_errors_and_leave_adata_alone(change, kwargs, error, match):
    adata = dose_response(n=200)
    adata.obs["kind"] = "x"
    p = np.abs(np.random.default_rng(0).normal(size=(adata.n_obs, 2)))
    if change == "nan":
        adata.obs.loc[adata.obs_names[3], "dose"] = np.nan
    elif change == "constant":
        adata.obs["dose"] = 1.0
    elif change == "negative":
        p[0, 0] = -0.1
    elif change == "empty":
        p[:, 1] = 0
    elif change == "onecolumn":
        p = p[:, :1]
    adata.obsm["p"] = pd.DataFrame(p, index=adata.obs_names, columns=["a", "b"][: p.shape[1]])
    before = adata.copy()
    with pytest.raises(error, match=match):
        LabelGDE.setup_anndata(adata, **kwargs)
    assert list(adata.obs.columns) == list(before.obs.columns)
    assert set(adata.uns) == set(before.uns)


# ------------------------------------------------------------------------ exactness
def _encode_cells(model, adata, cells):
    """The encoder on exactly ``cells`` of ``adata``, in one set."""
    module = model.module.eval()
    tensors = model._registered(adata).rows(cells)
    with torch.no_grad():
        x = module.encoder_input(module.modelled_data(tensors))
        return module.encoder(x, torch.zeros(len(cells), dtype=torch.long), 1).numpy()[0]


def test_a_small_bandwidth_gives_the_discrete_sets():
    """With the kernel narrower than a quarter of the gap between doses, the set at a dose
    holds that dose's cells with weight 1: the embedding of the discrete group."""
    adata = dose_response(n=600, gap=None)
    adata.obs["dose"] = np.round(adata.obs["dose"] * 4) / 4  # doses 0, 0.25, ..., 1
    LabelGDE.setup_anndata(adata, label_key="dose", label_bandwidth=0.25 / 16)
    model = LabelGDE(adata, n_latent=4)
    with pytest.warns(UserWarning, match="untrained model"):
        grid = model.get_label_embedding(values=[0.25, 0.75], key_added=None, batch_size=64)
    for row, dose in enumerate([0.25, 0.75]):
        cells = np.flatnonzero(adata.obs["dose"].to_numpy() == dose)
        np.testing.assert_allclose(grid.X[row], _encode_cells(model, adata, cells), atol=1e-5)
        assert grid.obs["n_cells_effective"].iloc[row] == pytest.approx(cells.size)


def test_one_hot_probabilities_give_the_discrete_sets():
    adata = dose_response(n=400, gap=None)
    group = (adata.obs["dose"].to_numpy() > 0.5).astype(int)
    adata.obsm["p"] = np.eye(2)[group]
    LabelGDE.setup_anndata(adata, label_probabilities_key="p")
    model = LabelGDE(adata, n_latent=4)
    with pytest.warns(UserWarning, match="untrained model"):
        grid = model.get_label_embedding(key_added=None, batch_size=50)
    assert list(grid.obs["label"]) == ["0", "1"]
    for k in (0, 1):
        cells = np.flatnonzero(group == k)
        np.testing.assert_allclose(grid.X[k], _encode_cells(model, adata, cells), atol=1e-5)


def test_the_embedding_does_not_depend_on_the_chunk_size():
    adata = dose_response(n=500)
    LabelGDE.setup_anndata(adata, label_key="dose")
    model = LabelGDE(adata, n_latent=4)
    values = [0.0, 0.3, 0.5, 0.95]
    with pytest.warns(UserWarning, match="untrained model"):
        small = model.get_label_embedding(values, key_added=None, batch_size=13)
        large = model.get_label_embedding(values, key_added=None, batch_size=4096)
    np.testing.assert_allclose(small.X, large.X, atol=1e-5)


# ------------------------------------------------------------------ a trained model
@pytest.fixture(scope="module")
def trained():
    scvi.settings.seed = 0
    adata = dose_response()
    LabelGDE.setup_anndata(adata, label_key="dose")
    model = LabelGDE(adata, n_latent=8)
    model.train(max_epochs=60, enable_progress_bar=False)
    return model, adata


def test_embedding_is_smooth_and_tracks_w2(trained):
    model, adata = trained
    observed = np.r_[np.linspace(0.05, 0.35, 7), np.linspace(0.65, 0.95, 7)]
    grid = model.get_label_embedding(values=observed, key_added=None)
    z = grid.X.astype(np.float64)
    # smooth: along each observed stretch, every embedding lies near the midpoint of its
    # neighbours (a second difference smaller than half the first difference around it)
    for stretch in (slice(0, 7), slice(7, 14)):
        part = z[stretch]
        second = np.linalg.norm(part[2:] - 2 * part[1:-1] + part[:-2], axis=1)
        first = np.linalg.norm(part[2:] - part[:-2], axis=1)
        assert (second < 0.5 * first).all()
    # distances between embeddings rank pairs of labels as W2 does (the paper: rho 0.96 on
    # Gaussians); 91 pairs give a standard error of about 0.03 on rho
    i, j = np.triu_indices(len(observed), 1)
    rho = stats.spearmanr(np.linalg.norm(z[i] - z[j], axis=1), w2(observed[i], observed[j]))[0]
    assert rho > 0.9


def test_generation_at_a_held_out_label(trained):
    """Cells generated at the middle of the held-out band are closer (energy distance) to
    the true cells there than the true cells at the band's edges are: the model generates
    between the observed labels, not the nearest observed distribution."""
    model, adata = trained
    rng = np.random.default_rng(1)
    n = 1000
    generated = model.sample(label_values=[0.5], n_cells=n)
    assert generated.shape == (n, DIM)
    np.testing.assert_array_equal(generated.obs["dose"], 0.5)
    assert list(generated.obs["group"].cat.categories) == ["dose=0.5"]
    real = draw(np.full(n, 0.5), rng)
    gen_distance = energy_distance(generated.X, real)
    for edge in GAP:
        assert gen_distance < energy_distance(draw(np.full(n, edge), rng), real)


def test_label_embedding_is_written_and_groups_methods_point_here(trained, tmp_path):
    model, adata = trained
    grid = model.get_label_embedding(values=[0.1, 0.9])
    assert list(adata.uns["X_gde"].index) == ["dose=0.1", "dose=0.9"]
    np.testing.assert_allclose(adata.uns["X_gde"].to_numpy(), grid.X, rtol=1e-6)
    settings = adata.uns["gde"]["X_gde"]
    assert settings["label_key"] == "dose"
    assert settings["label_bandwidth"] == model.label_bandwidth
    with pytest.raises(TypeError, match="get_label_embedding"):
        model.get_distribution_embedding()
    # new data: embedded from its own cells, with the training bandwidth
    new = dose_response(n=3000, seed=5, gap=None)
    on_new = model.get_label_embedding(values=[0.5], adata=new, key_added=None)
    assert on_new.obs["n_cells_effective"].iloc[0] > 100
    model.save(tmp_path / "model")
    loaded = LabelGDE.load(tmp_path / "model", adata=adata)
    again = loaded.get_label_embedding(values=[0.1, 0.9], key_added=None)
    np.testing.assert_allclose(again.X, grid.X, atol=1e-6)
    with pytest.raises(ValueError, match="No cell lies within reach"):
        model.get_label_embedding(values=[5.0], key_added=None)


def test_noisy_labels_train_and_embed():
    scvi.settings.seed = 0
    adata = dose_response(n=1500, gap=None)
    dose = adata.obs["dose"].to_numpy()
    adata.obsm["stage"] = pd.DataFrame(
        {"low": 1 - dose, "high": dose}, index=adata.obs_names
    )  # a soft call of two stages
    LabelGDE.setup_anndata(adata, label_probabilities_key="stage")
    model = LabelGDE(adata, n_latent=4)
    model.train(max_epochs=5, enable_progress_bar=False)
    grid = model.get_label_embedding(key_added=None)
    assert list(grid.obs_names) == ["low", "high"]
    generated = model.sample(label_values=["high"], n_cells=300)
    # the "high" set weights cells by their dose: its mean dose is E[y^2]/E[y] = 2/3
    mean_first = generated.X[:, 0].mean()
    assert abs(mean_first - 3 * 2 / 3) < abs(mean_first - 3 * 1 / 3)


def test_a_label_prior_centres_the_training_sets():
    labels = np.linspace(0, 1, 400)
    sets = ContinuousLabelSets(labels, bandwidth=0.01)
    prior = pd.Series([1.0, 3.0], index=[0.2, 0.8])
    sampler = LabelSetSampler(
        sets, np.arange(400), set_size=16, groups_per_batch=400, n_batches=1, seed=0, prior=prior
    )
    indices, set_ids = next(iter(sampler))
    centres = np.asarray([labels[indices[set_ids == s]].mean() for s in range(400)])
    near = np.isclose(centres, 0.8, atol=0.04)
    assert (near | np.isclose(centres, 0.2, atol=0.04)).all()
    # 400 draws with P(0.8) = 3/4: the count is within 4 standard deviations of 300
    assert abs(near.sum() - 300) < 4 * np.sqrt(400 * 0.75 * 0.25)


def test_label_prior_in_training_and_its_errors():
    adata = dose_response(n=600)
    LabelGDE.setup_anndata(adata, label_key="dose")
    model = LabelGDE(adata, n_latent=4)
    with pytest.raises(ValueError, match="within reach of the prior.s label values \\[2.0\\]"):
        model.train(max_epochs=1, label_prior=[0.1, 2.0], enable_progress_bar=False)
    with pytest.raises(ValueError, match="finite weights >= 0"):
        model.train(max_epochs=1, label_prior=pd.Series([-1.0, 1.0], index=[0.1, 0.9]))
    with pytest.raises(ValueError, match="numbers"):
        model.train(max_epochs=1, label_prior=["low"])
    model.train(
        max_epochs=1,
        label_prior=np.linspace(0, 1, 11)[[0, 1, 2, 3, 7, 8, 9, 10]],
        enable_progress_bar=False,
    )
    assert model.is_trained_


def test_label_values_are_checked_and_named_apart():
    adata = dose_response(n=300)
    LabelGDE.setup_anndata(adata, label_key="dose")
    model = LabelGDE(adata, n_latent=4)
    with pytest.raises(ValueError, match="duplicates"):
        model.get_label_embedding(values=[0.2, 0.2], key_added=None)
    with pytest.raises(ValueError, match="finite"):
        model.get_label_embedding(values=[0.2, np.nan], key_added=None)
    with pytest.warns(UserWarning, match="untrained model"):
        close = model.get_label_embedding(values=[0.2, 0.2 + 1e-9], key_added=None)
    assert close.obs_names.is_unique and close.obs_names[0] == "dose=0.2"


def test_label_embedding_standard_errors_shrink_with_the_cells(trained):
    """``get_embedding_uncertainty`` bootstraps the weighted sets at label values: errors
    are written beside the label embedding, and a quarter of the cells doubles them (the
    1/sqrt(n) law). 100 replicates give a standard error a relative error of about
    1/sqrt(200) = 7%; taking the 8 coordinates as fully correlated, the ratio of two mean
    errors has a relative error of about 10%, so it is within 2 ± 0.6 at 3 standard errors."""
    model, adata = trained
    values = [0.2, 0.8]
    se = model.get_embedding_uncertainty(groups=values, n_bootstrap=100, key_added="X_gde")
    assert list(se.index) == ["dose=0.2", "dose=0.8"]
    assert adata.uns["X_gde_se"].equals(se)
    quarter = adata[::4].copy()
    se_quarter = model.get_embedding_uncertainty(
        quarter, groups=values, n_bootstrap=100, key_added=None
    )
    ratio = se_quarter.to_numpy().mean(axis=1) / se.to_numpy().mean(axis=1)
    assert ((ratio > 1.4) & (ratio < 2.6)).all(), ratio
    with pytest.raises(TypeError, match="get_label_embedding"):
        model.get_group_adata()


def test_sparse_counts_give_the_label_embedding_of_dense_ones():
    """Counts stored sparse are read sparse, each block projected once for all its (cell,
    value) pairs; the label embedding equals that of the same counts stored dense."""
    from _helpers import small_demo
    from scipy import sparse

    adata = small_demo(n_samples=4, n_cells=50)
    adata.X = sparse.csr_matrix(adata.X)
    adata.obs["depth"] = np.log1p(np.asarray(adata.X.sum(axis=1)).ravel())
    LabelGDE.setup_anndata(adata, label_key="depth")
    model = LabelGDE(adata, n_latent=4)
    dense = fresh_copy(adata)
    dense.X = dense.X.toarray()
    values = np.percentile(adata.obs["depth"], [20, 50, 80])
    with pytest.warns(UserWarning, match="untrained model"):
        from_sparse = model.get_label_embedding(values, key_added=None, batch_size=30)
        from_dense = model.get_label_embedding(values, adata=dense, key_added=None)
    np.testing.assert_allclose(from_sparse.X, from_dense.X, rtol=1e-4, atol=1e-5)
