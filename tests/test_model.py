"""End-to-end tests of scgde.model.GDE on a small subset of the real demo data."""

import tempfile

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scvi
from _helpers import fresh_copy, small_demo
from scipy import sparse

from scgde.model import GDE


@pytest.fixture(scope="module")
def trained():
    """A GDE trained briefly on a small real subset; returns (model, adata)."""
    scvi.settings.seed = 0
    adata = small_demo()
    GDE.setup_anndata(adata, group_key="sample", batch_key="batch")
    model = GDE(
        adata, n_latent=8, encoder_kwargs={"n_hidden": 32}, generator_kwargs={"n_hidden": 32}
    )
    model.train(max_epochs=3, set_size=16, groups_per_batch=4, enable_progress_bar=False)
    return model, adata


# ------------------------------------------------------------------------- bad input
def test_missing_group_column_raises_keyerror():
    adata = small_demo(4, 10, 20)
    with pytest.raises(KeyError, match="not_a_column"):
        GDE.setup_anndata(adata, group_key="not_a_column")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_raises(bad):
    adata = small_demo(4, 10, 20)
    adata.X = adata.X.toarray()
    adata.X[-1, -1] = bad
    GDE.setup_anndata(adata, group_key="sample")
    with pytest.raises(ValueError, match="NaN or infinite"):
        GDE(adata)


def test_negative_values_raise():
    adata = small_demo(4, 10, 20)
    adata.X = adata.X.toarray()
    adata.X[3, 2] = -1
    GDE.setup_anndata(adata, group_key="sample")
    with pytest.raises(ValueError, match="negative"):
        GDE(adata, likelihood="nb")
    # without a likelihood, data that are not all counts are modelled as continuous
    assert GDE(adata, n_latent=4).module.likelihood == "gaussian"


def test_non_integer_counts_raise_but_gaussian_accepts():
    adata = small_demo(4, 10, 20)
    adata.layers["log"] = sc.pp.log1p(adata.X.copy())
    GDE.setup_anndata(adata, group_key="sample", layer="log")
    with pytest.raises(ValueError, match="non-integer"):
        GDE(adata, likelihood="nb")
    model = GDE(adata, likelihood="gaussian")
    assert model.module.likelihood == "gaussian"


def test_single_group_raises():
    adata = small_demo(4, 10, 20)
    adata.obs["one"] = "a"
    GDE.setup_anndata(adata, group_key="one")
    with pytest.raises(ValueError, match="at least 2 groups"):
        GDE(adata)


def test_too_few_training_groups_raise():
    adata = small_demo(2, 10, 20)
    GDE.setup_anndata(adata, group_key="sample")
    model = GDE(adata)
    with pytest.raises(ValueError, match="at least 2 groups"):
        model.train(max_epochs=1, train_size=0.5, enable_progress_bar=False)


@pytest.mark.parametrize("name", ["set_size", "groups_per_batch", "max_epochs"])
@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-3, ValueError), (2.5, TypeError), ("8", TypeError), (True, TypeError)],
)
def test_non_positive_integer_training_sizes_raise(trained, name, value, error):
    model, _ = trained
    with pytest.raises(error, match=f"`{name}` must be"):
        model.train(**{name: value})


def test_group_without_cells_after_subsetting_raises(trained):
    model, adata = trained
    first = adata.obs["sample"].cat.categories[0]
    subset = fresh_copy(adata[adata.obs["sample"] != first])
    with pytest.raises(ValueError, match="no cells"):
        model.get_distribution_embedding(subset, groups=[first], key_added=None)


def test_var_names_mismatch_raises(trained):
    model, adata = trained
    other = fresh_copy(adata)
    other.var_names = [f"gene{i}" for i in range(other.n_vars)]
    with pytest.raises(ValueError, match="var names"):
        model.get_distribution_embedding(other, key_added=None)
    reordered = fresh_copy(adata)[:, ::-1].copy()
    with pytest.raises(ValueError, match="var names"):
        model.get_distribution_embedding(reordered, key_added=None)


def test_unseen_batch_raises_but_unseen_group_is_accepted(trained):
    model, adata = trained
    new = fresh_copy(adata)
    new.obs["sample"] = "new_" + new.obs["sample"].astype(str)
    table = model.get_distribution_embedding(new, key_added=None)
    assert all(name.startswith("new_") for name in table.index)
    new.obs["batch"] = new.obs["batch"].astype(str)
    new.obs.iloc[0, new.obs.columns.get_loc("batch")] = "B99"
    with pytest.raises(ValueError, match="B99"):
        model.get_distribution_embedding(new, key_added=None)


def test_load_with_mismatched_var_names_raises(trained, tmp_path):
    model, adata = trained
    model.save(tmp_path / "m", overwrite=True)
    other = fresh_copy(adata)
    other.var_names = [f"gene{i}" for i in range(other.n_vars)]
    with pytest.raises(ValueError, match="var names"):
        GDE.load(tmp_path / "m", adata=other)


# ----------------------------------------------------------------- user data untouched
def test_user_anndata_only_gets_documented_keys():
    adata = small_demo(6, 20, 50)
    before = adata.copy()
    GDE.setup_anndata(adata, group_key="sample", batch_key="batch")
    model = GDE(adata, n_latent=4)
    model.train(max_epochs=1, set_size=8, groups_per_batch=2, enable_progress_bar=False)
    model.get_distribution_embedding()
    model.get_group_adata()
    model.get_latent_representation()
    model.sample(n_cells=3)
    assert (adata.X != before.X).nnz == 0
    added_obs = set(adata.obs.columns) - set(before.obs.columns)
    assert added_obs == {"_scvi_group", "_scvi_batch"}
    pd.testing.assert_frame_equal(adata.obs[before.obs.columns], before.obs)
    assert set(adata.uns) - set(before.uns) == {"_scvi_uuid", "_scvi_manager_uuid", "X_gde", "gde"}
    assert set(adata.obsm) == {"X_gde"}
    assert adata.var.equals(before.var) and not adata.layers


def test_failed_embedding_writes_nothing(trained):
    model, adata = trained
    new = fresh_copy(adata)
    with pytest.raises(ValueError):
        model.get_distribution_embedding(new, groups=["no_such_group"])
    assert "X_gde" not in new.uns and "X_gde" not in new.obsm


# --------------------------------------------------------------------------- outputs
def test_embedding_written_the_scanpy_way(trained):
    model, adata = trained
    table = model.get_distribution_embedding(key_added="X_test")
    groups = list(adata.obs["sample"].cat.categories)
    assert list(table.index) == groups and table.shape == (len(groups), 8)
    assert adata.uns["X_test"].equals(table)
    per_cell = adata.obsm["X_test"]
    for group in groups[:3]:
        rows = per_cell[(adata.obs["sample"] == group).to_numpy()]
        np.testing.assert_array_equal(rows, np.tile(table.loc[group].to_numpy(), (len(rows), 1)))
    assert adata.uns["gde"]["X_test"]["group_key"] == "sample"
    # a second key keeps the settings of the first
    model.get_distribution_embedding(key_added="X_second")
    assert set(adata.uns["gde"]) >= {"X_test", "X_second"}
    assert adata.uns["gde"]["X_second"]["n_latent"] == 8
    # the flat settings of scgde 0.1 move under their key
    adata.uns["gde"] = {"key_added": "X_old", "group_key": "sample"}
    model.get_distribution_embedding(key_added="X_new")
    assert adata.uns["gde"]["X_old"] == {"group_key": "sample"} and "X_new" in adata.uns["gde"]


def test_embedding_of_a_subset_of_groups_leaves_other_cells_nan(trained):
    model, adata = trained
    new = fresh_copy(adata)
    wanted = list(adata.obs["sample"].cat.categories[:2])
    table = model.get_distribution_embedding(new, groups=wanted)
    assert list(table.index) == wanted
    inside = new.obs["sample"].isin(wanted).to_numpy()
    assert np.isfinite(new.obsm["X_gde"][inside]).all()
    assert np.isnan(new.obsm["X_gde"][~inside]).all()


def test_chunked_embedding_equals_one_shot(trained):
    model, adata = trained
    one_shot = model.get_distribution_embedding(batch_size=adata.n_obs, key_added=None)
    chunked = model.get_distribution_embedding(batch_size=7, key_added=None)
    np.testing.assert_allclose(chunked.to_numpy(), one_shot.to_numpy(), rtol=1e-5, atol=1e-5)


def test_embedding_cache_budget_changes_reads_not_results(trained):
    """``cache_bytes=0`` reads the data once per pass of the encoder instead of once."""
    model, adata = trained
    kept = model.get_distribution_embedding(key_added=None)
    read_again = model.get_distribution_embedding(key_added=None, cache_bytes=0, batch_size=37)
    np.testing.assert_allclose(read_again.to_numpy(), kept.to_numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="cache_bytes"):
        model.get_distribution_embedding(key_added=None, cache_bytes=-1)


def test_default_embedding_cache_scales_with_free_memory_only_for_data_in_memory(monkeypatch):
    """A matrix in memory gets a quarter of the available memory (never below the out-of-core
    budget; on a CUDA device, of the smaller of host and device memory); a backed or lazy one
    always gets the out-of-core budget."""
    from types import SimpleNamespace

    from scgde.model import _embedding_mixin
    from scgde.nn._set_encoders import STREAMING_CACHE_BYTES

    for available, expected in [(8 * 2**30, 2 * 2**30), (2**30, STREAMING_CACHE_BYTES)]:
        monkeypatch.setattr(
            _embedding_mixin.psutil,
            "virtual_memory",
            lambda a=available: SimpleNamespace(available=a),
        )
        assert _embedding_mixin.default_cache_bytes(True) == expected
        assert _embedding_mixin.default_cache_bytes(False) == STREAMING_CACHE_BYTES
    # on a CUDA device the cache lives there: its free memory bounds the budget too
    host = SimpleNamespace(available=16 * 2**30)
    monkeypatch.setattr(_embedding_mixin.psutil, "virtual_memory", lambda: host)
    monkeypatch.setattr(_embedding_mixin.torch.cuda, "mem_get_info", lambda d: (4 * 2**30, 0))
    assert _embedding_mixin.default_cache_bytes(True, "cuda:0") == 2**30
    assert _embedding_mixin.default_cache_bytes(True, "cpu") == 4 * 2**30


def test_default_embedding_cache_follows_where_the_matrix_is(trained, tmp_path, monkeypatch):
    """The default budget is chosen from the registered matrix: in memory, or backed."""
    from scgde.model import _embedding_mixin

    model, adata = trained
    asked = []
    budget = _embedding_mixin.default_cache_bytes
    monkeypatch.setattr(
        _embedding_mixin,
        "default_cache_bytes",
        lambda kept, device: asked.append((kept, str(device))) or budget(kept, device),
    )
    kept = model.get_distribution_embedding(key_added=None)
    path = tmp_path / "x.h5ad"
    adata.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    try:
        from_file = model.get_distribution_embedding(backed, key_added=None)
    finally:
        backed.file.close()
    assert asked == [(True, "cpu"), (False, "cpu")]
    np.testing.assert_allclose(from_file.to_numpy(), kept.to_numpy(), rtol=1e-5, atol=1e-6)
    model.get_distribution_embedding(key_added=None, cache_bytes=0)
    assert len(asked) == 2  # an explicit budget is used as given


def test_embedding_invariant_to_cell_order_and_replication(trained):
    model, adata = trained
    reference = model.get_distribution_embedding(key_added=None)
    shuffled = fresh_copy(adata)[np.random.default_rng(1).permutation(adata.n_obs)].copy()
    np.testing.assert_allclose(
        model.get_distribution_embedding(shuffled, key_added=None).to_numpy(),
        reference.to_numpy(),
        atol=1e-5,
    )
    replicated = ad.concat([fresh_copy(adata)] * 3, index_unique="-")
    np.testing.assert_allclose(
        model.get_distribution_embedding(replicated, key_added=None).loc[reference.index],
        reference.to_numpy(),
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "convert",
    [
        lambda x: x.tocsc(),
        lambda x: x.toarray(),
        lambda x: x.toarray().astype(np.int32),
        lambda x: sparse.csr_matrix(x.astype(np.int64)),
    ],
    ids=["csc", "dense-float32", "dense-int32", "csr-int64"],
)
def test_matrix_formats_and_dtypes_give_the_same_embedding(trained, convert):
    model, adata = trained
    reference = model.get_distribution_embedding(key_added=None)
    other = fresh_copy(adata)
    other.X = convert(other.X)
    np.testing.assert_allclose(
        model.get_distribution_embedding(other, key_added=None).to_numpy(),
        reference.to_numpy(),
        atol=1e-5,
    )


def test_data_in_a_layer_is_read_from_the_layer():
    adata = small_demo(6, 20, 50)
    adata.layers["counts"] = adata.X.copy()
    adata.X = sc.pp.log1p(adata.X.copy())  # X now non-integer: must not be read
    GDE.setup_anndata(adata, group_key="sample", layer="counts")
    model = GDE(adata, n_latent=4)
    model.train(max_epochs=1, set_size=8, groups_per_batch=2, enable_progress_bar=False)
    from_layer = model.get_distribution_embedding(key_added=None)
    swapped = fresh_copy(adata)
    swapped.layers["counts"] = swapped.layers["counts"] * 2
    doubled = model.get_distribution_embedding(swapped, key_added=None)
    # the encoder reads library-normalised counts, so doubling every count changes nothing
    np.testing.assert_allclose(doubled.to_numpy(), from_layer.to_numpy(), atol=1e-5)
    swapped.layers["counts"] = swapped.layers["counts"][::-1]
    assert not np.allclose(
        model.get_distribution_embedding(swapped, key_added=None).to_numpy(),
        from_layer.to_numpy(),
        atol=1e-3,
    )


def test_group_adata_for_scanpy(trained):
    model, adata = trained
    groups = model.get_group_adata()
    assert groups.n_obs == adata.obs["sample"].nunique()
    assert {"sample", "donor", "condition", "batch", "time_point"} <= set(groups.obs.columns)
    assert "cell_type" not in groups.obs.columns  # varies within groups
    counts = adata.obs["sample"].value_counts()
    assert (groups.obs["n_cells"] == counts.loc[groups.obs_names].to_numpy()).all()
    severe = adata.obs.loc[adata.obs["condition"] == "Severe", "sample"].unique()
    assert set(groups.obs_names[groups.obs["condition"] == "Severe"]) == set(severe)
    sc.pp.neighbors(groups, use_rep="X", n_neighbors=4)
    sc.tl.umap(groups)
    assert groups.obsm["X_umap"].shape == (groups.n_obs, 2)


def test_latent_representation_per_cell(trained):
    model, adata = trained
    u = model.get_latent_representation()
    assert u.shape == (adata.n_obs, model.module.generator.n_latent_cell)
    subset = model.get_latent_representation(indices=[5, 0, 3])
    np.testing.assert_allclose(subset, u[[5, 0, 3]], atol=1e-5)


def test_sample_counts_from_groups_and_embeddings(trained):
    model, adata = trained
    groups = list(adata.obs["sample"].cat.categories[:2])
    generated = model.sample(groups=groups, n_cells=25, seed=0)
    assert generated.shape == (50, adata.n_vars)
    assert list(generated.var_names) == list(adata.var_names)
    assert generated.obs["group"].value_counts().to_dict() == {groups[0]: 25, groups[1]: 25}
    values = generated.X.data
    assert (
        sparse.issparse(generated.X) and (values >= 0).all() and (values == np.round(values)).all()
    )
    again = model.sample(groups=groups, n_cells=25)  # seed=0 by default, as predict
    assert (generated.X != again.X).nnz == 0
    fresh = [model.sample(groups=groups, n_cells=25, seed=None).X for _ in range(2)]
    assert (fresh[0] != fresh[1]).nnz > 0

    table = model.get_distribution_embedding(key_added=None)
    midpoint = ((table.iloc[[0]].to_numpy() + table.iloc[[1]].to_numpy()) / 2).astype(np.float32)
    path = pd.DataFrame(midpoint, index=["midpoint"], columns=table.columns)
    from_embedding = model.sample(embedding=path, n_cells=10, batch="B1", seed=0)
    assert list(from_embedding.obs["group"].unique()) == ["midpoint"]
    with pytest.raises(ValueError, match="Unknown batch"):
        model.sample(embedding=path, batch="B99")
    with pytest.raises(ValueError, match="columns"):
        model.sample(embedding=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="no sampler options"):
        model.sample(groups=groups, n_cells=2, sampler_kwargs={"method": "ddim"})


def test_save_load_roundtrip_gives_identical_embeddings(trained, tmp_path):
    model, adata = trained
    before = model.get_distribution_embedding(key_added=None)
    model.save(tmp_path / "model", overwrite=True)
    loaded = GDE.load(tmp_path / "model", adata=fresh_copy(adata))
    after = loaded.get_distribution_embedding(key_added=None)
    pd.testing.assert_frame_equal(after, before)
    assert loaded.group_key == "sample"


def test_combined_group_key_defines_sets_by_combination():
    adata = small_demo(6, 30, 50)
    adata.obs["half"] = np.where(np.arange(adata.n_obs) % 2 == 0, "a", "b")
    GDE.setup_anndata(adata, group_key=["sample", "half"])
    model = GDE(adata, n_latent=4)
    model.train(max_epochs=1, set_size=8, groups_per_batch=4, enable_progress_bar=False)
    table = model.get_distribution_embedding()
    assert len(table) == 2 * adata.obs["sample"].nunique()
    assert all(name.endswith((" | a", " | b")) for name in table.index)
    groups = model.get_group_adata()
    assert {"sample", "half"} <= set(groups.obs.columns)


@pytest.mark.parametrize("likelihood", ["zinb", "poisson"])
def test_other_count_likelihoods_train(likelihood):
    adata = small_demo(6, 20, 50)
    GDE.setup_anndata(adata, group_key="sample")
    model = GDE(adata, n_latent=4, likelihood=likelihood)
    model.train(max_epochs=2, set_size=8, groups_per_batch=4, enable_progress_bar=False)
    assert np.isfinite(model.history["elbo_train"].to_numpy(dtype=float)).all()
    assert np.isfinite(model.get_distribution_embedding(key_added=None).to_numpy()).all()


def test_gaussian_on_an_obsm_representation():
    adata = small_demo(6, 20, 50)
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=10)
    GDE.setup_anndata(adata, group_key="sample", obsm_key="X_pca")
    model = GDE(adata, n_latent=4, likelihood="gaussian")
    model.train(max_epochs=2, set_size=8, groups_per_batch=4, enable_progress_bar=False)
    generated = model.sample(n_cells=5)
    assert generated.shape == (5 * adata.obs["sample"].nunique(), 10)
    assert not sparse.issparse(generated.X) and (generated.X < 0).any()

    # back to genes through the PCA loadings: X = X_pca @ PCs.T + gene means
    in_genes = model.sample(n_cells=5, seed=1, loadings="PCs")
    assert in_genes.shape == (5 * adata.obs["sample"].nunique(), adata.n_vars)
    assert list(in_genes.var_names) == list(adata.var_names)
    rep = in_genes.obsm["X_pca"]
    np.testing.assert_array_equal(rep, model.sample(n_cells=5, seed=1).X)
    expected = rep @ adata.varm["PCs"].T + np.asarray(adata.X.mean(0)).ravel()
    np.testing.assert_allclose(in_genes.X, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(KeyError, match="varm has no 'nope'"):
        model.sample(n_cells=2, loadings="nope")
    adata.varm["bad"] = np.zeros((adata.n_vars, 3))
    with pytest.raises(ValueError, match="expected"):
        model.sample(n_cells=2, loadings="bad")


def test_representation_to_genes_inverts_a_full_rank_pca():
    """With as many components as genes, rep -> genes recovers the data exactly."""
    from scgde.model._gene_space import representation_to_genes

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)) @ rng.normal(size=(6, 6)) + rng.normal(size=6)
    adata = ad.AnnData(x.astype(np.float32))
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    adata.varm["PCs"] = vt.T
    rep = centred @ vt.T
    # float32 round-off of O(10) values
    np.testing.assert_allclose(representation_to_genes(rep, adata, "PCs"), x, atol=1e-4)


def test_loadings_need_a_representation_model(trained):
    model, _ = trained
    with pytest.raises(ValueError, match="already in gene space"):
        model.sample(n_cells=2, loadings="PCs")


def test_setup_mudata_reads_the_rna_modality():
    import mudata as md

    rna = small_demo(6, 20, 50)
    prot = ad.AnnData(
        np.ones((rna.n_obs, 3), dtype=np.float32), obs=pd.DataFrame(index=rna.obs_names)
    )
    mdata = md.MuData({"rna": rna, "prot": prot})
    mdata.obs["sample"] = rna.obs["sample"].to_numpy()
    GDE.setup_mudata(mdata, group_key="sample", modalities={"rna_layer": "rna"})
    model = GDE(mdata, n_latent=4)
    assert model.summary_stats.n_vars == rna.n_vars
    model.train(max_epochs=1, set_size=8, groups_per_batch=4, enable_progress_bar=False)
    table = model.get_distribution_embedding()
    assert table.shape == (rna.obs["sample"].nunique(), 4)
    assert "X_gde" in mdata.obsm


# ------------------------------------------------------------------ learning on real data
def test_training_on_real_data_learns_group_distributions():
    """Validation loss drops, and distinct groups embed farther apart than halves of one group."""
    scvi.settings.seed = 0
    adata = small_demo(n_samples=16, n_cells=80, n_genes=300)
    GDE.setup_anndata(adata, group_key="sample", batch_key="batch")
    model = GDE(adata, n_latent=16, encoder_kwargs={"n_hidden": 64})
    model.train(max_epochs=60, set_size=32, groups_per_batch=8, enable_progress_bar=False)
    validation = model.history["elbo_validation"].to_numpy(dtype=float).ravel()
    assert validation[-5:].mean() < 0.8 * validation[:1].mean()

    halves = fresh_copy(adata)
    rng = np.random.default_rng(0)
    halves.obs["sample"] = halves.obs["sample"].astype(str) + np.where(
        rng.random(halves.n_obs) < 0.5, "|A", "|B"
    )
    z = model.get_distribution_embedding(halves, key_added=None)
    names = adata.obs["sample"].cat.categories
    within = np.array([np.linalg.norm(z.loc[f"{n}|A"] - z.loc[f"{n}|B"]) for n in names])
    a_side = z.loc[[f"{n}|A" for n in names]].to_numpy()
    b_side = z.loc[[f"{n}|B" for n in names]].to_numpy()
    distances = np.linalg.norm(a_side[:, None] - b_side[None], axis=-1)
    between = distances[~np.eye(len(names), dtype=bool)]
    # each half is still nearest to its own other half for most groups
    nearest_is_self = (distances.argmin(axis=1) == np.arange(len(names))).mean()
    assert np.median(within) < np.median(between)
    assert nearest_is_self > 0.5


def test_early_stopping_needs_validation_groups(trained):
    model, _ = trained
    with pytest.raises(ValueError, match="validation groups"):
        model.train(max_epochs=2, train_size=1.0, early_stopping=True)


def test_early_stopping_monitors_held_out_groups():
    adata = small_demo(8, 20, 50)
    GDE.setup_anndata(adata, group_key="sample")
    model = GDE(adata, n_latent=4)
    model.train(
        max_epochs=4,
        set_size=8,
        groups_per_batch=4,
        train_size=0.75,
        early_stopping=True,
        enable_progress_bar=False,
    )
    assert model.trainer.early_stopping_callback.monitor == "elbo_validation"
    assert len(model.validation_groups_) == 2
    assert set(model.validation_groups_).isdisjoint(model.train_groups_)


@pytest.mark.parametrize("encoder", ["kme", "mean"])
def test_baseline_encoders_train_and_embed_exactly_in_chunks(encoder):
    adata = small_demo(6, 20, 50)
    GDE.setup_anndata(adata, group_key="sample")
    model = GDE(adata, n_latent=4, encoder=encoder)
    model.train(max_epochs=2, set_size=8, groups_per_batch=4, enable_progress_bar=False)
    one_shot = model.get_distribution_embedding(key_added=None, batch_size=adata.n_obs)
    chunked = model.get_distribution_embedding(key_added=None, batch_size=9)
    np.testing.assert_allclose(chunked.to_numpy(), one_shot.to_numpy(), rtol=1e-5, atol=1e-5)
    assert model.init_params_["non_kwargs"]["encoder"] == encoder


def test_failed_save_keeps_the_previous_model(trained, tmp_path, monkeypatch):
    model, adata = trained
    target = tmp_path / "model"
    model.save(target)
    before = (target / "model.pt").read_bytes()
    with pytest.raises(ValueError, match="overwrite"):
        model.save(target)

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("torch.save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        model.save(target, overwrite=True)
    assert (target / "model.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folder left


def test_sparse_counts_are_embedded_like_dense_ones(tmp_path):
    """The embedding reads sparse counts without densifying (normalised on the non-zeros,
    projected by a sparse product); it equals the embedding of the same counts stored dense,
    in memory and from a backed file, and the sparse path is the one taken."""
    adata = small_demo(n_samples=6, n_cells=60)
    adata.X = sparse.csr_matrix(adata.X)
    GDE.setup_anndata(adata, group_key="sample")
    model = GDE(adata, n_latent=6)
    model.train(max_epochs=2, enable_progress_bar=False)
    dense = fresh_copy(adata)
    dense.X = dense.X.toarray()
    calls = []
    original = model.module.sparse_encoder_input

    def counting(x):
        calls.append(x.shape[0])
        return original(x)

    model.module.sparse_encoder_input = counting
    sparse_z = model.get_distribution_embedding(key_added=None, batch_size=50)
    assert sum(calls) == adata.n_obs  # every cell went through the sparse path
    dense_z = model.get_distribution_embedding(dense, key_added=None, batch_size=50)
    np.testing.assert_allclose(sparse_z.to_numpy(), dense_z.to_numpy(), rtol=1e-4, atol=1e-5)
    path = tmp_path / "counts.h5ad"
    fresh_copy(adata).write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    backed_z = model.get_distribution_embedding(backed, key_added=None, batch_size=50)
    np.testing.assert_allclose(backed_z.to_numpy(), dense_z.to_numpy(), rtol=1e-4, atol=1e-5)


def test_backed_embedding_reads_the_file_once_in_blocks_and_spills_to_disk(tmp_path, monkeypatch):
    """From a backed file, the encoder's projections beyond the memory cache go to a
    temporary file (by default), so the counts are read once, in blocks of several chunks;
    with ``disk_cache=False`` each pass reads them again. Results are the same."""
    from scgde.data import RegisteredData
    from scgde.nn import _set_encoders

    adata = small_demo(n_samples=6, n_cells=60)
    adata.X = sparse.csr_matrix(adata.X)
    GDE.setup_anndata(adata, group_key="sample")
    model = GDE(adata, n_latent=6)
    model.train(max_epochs=2, enable_progress_bar=False)
    in_memory = model.get_distribution_embedding(key_added=None, batch_size=50)
    path = tmp_path / "counts.h5ad"
    fresh_copy(adata).write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    reads, folders = [], []
    sparse_rows = RegisteredData.sparse_rows
    monkeypatch.setattr(
        RegisteredData,
        "sparse_rows",
        lambda self, rows: reads.append(len(rows)) or sparse_rows(self, rows),
    )

    class RecordedSpill(_set_encoders.ProjectionSpill):
        def __init__(self, folder, budget=None):
            folders.append(folder)
            super().__init__(folder, budget)

    monkeypatch.setattr(_set_encoders, "ProjectionSpill", RecordedSpill)
    n_passes = model.module.encoder.n_set_layers + 1
    try:
        spilled = model.get_distribution_embedding(
            backed, key_added=None, batch_size=50, cache_bytes=0
        )
        assert sum(reads) == adata.n_obs  # read once: the later passes read the spill file
        assert len(reads) < -(-adata.n_obs // 50)  # fewer reads than chunks
        assert folders == [tempfile.gettempdir()]
        reads.clear()
        kwargs = {"key_added": None, "batch_size": 50, "cache_bytes": 0}
        read_again = model.get_distribution_embedding(backed, disk_cache=False, **kwargs)
        assert sum(reads) == n_passes * adata.n_obs and len(folders) == 1
        spill_folder = tmp_path / "spill"
        spill_folder.mkdir()
        chosen = model.get_distribution_embedding(backed, disk_cache=spill_folder, **kwargs)
        assert folders[-1] == str(spill_folder) and list(spill_folder.iterdir()) == []
    finally:
        backed.file.close()
    for z in (spilled, read_again, chosen):
        np.testing.assert_allclose(z.to_numpy(), in_memory.to_numpy(), rtol=1e-4, atol=1e-5)
    # data in memory: no file unless asked for
    model.get_distribution_embedding(key_added=None, cache_bytes=0)
    assert len(folders) == 2


def test_bad_disk_cache_is_refused_before_anything_is_written(trained, tmp_path):
    model, adata = trained
    before = (set(adata.uns), set(adata.obsm))
    with pytest.raises(NotADirectoryError, match="does not exist"):
        model.get_distribution_embedding(disk_cache=tmp_path / "missing")
    with pytest.raises(TypeError, match="disk_cache"):
        model.get_distribution_embedding(disk_cache=1)
    assert (set(adata.uns), set(adata.obsm)) == before


@pytest.mark.parametrize(
    ("n_cells", "expected"),
    [
        (6_000, 667),  # 47 sets, 3 steps per epoch: 2,001 steps (the 400-epoch cap gave 1,200)
        (60_000, 67),  # 469 sets, 30 steps per epoch
        (10_000_000, 20),  # at least 20 epochs
        (100, 1_000),  # one step per epoch: capped at 1,000
    ],
)
def test_default_epochs_aim_at_2000_steps(n_cells, expected):
    from scgde.model._training_mixin import default_max_epochs

    assert default_max_epochs(n_cells, set_size=128, groups_per_batch=16) == expected


def test_training_processes_count_devices_times_nodes():
    """What the recipe's defaults scale with under DDP (tests/test_distributed.py trains)."""
    from scgde.model._training_mixin import training_processes

    assert training_processes("cpu", 1) == 1
    assert training_processes("cpu", 2) == 2
    assert training_processes("cpu", 2, num_nodes=3) == 6


def test_bf16_mixed_precision_trains_and_returns_float32():
    """``precision="bf16-mixed"`` (Lightning's autocast, as on a GPU) trains: the ELBO falls,
    and embeddings and generated cells are finite float32."""
    scvi.settings.seed = 0
    adata = small_demo(n_samples=6)
    GDE.setup_anndata(adata, group_key="sample")
    model = GDE(adata, n_latent=4)
    model.train(
        max_epochs=30,
        set_size=16,
        groups_per_batch=6,
        train_size=1.0,
        precision="bf16-mixed",
        enable_progress_bar=False,
    )
    elbo = model.history["elbo_train"].iloc[:, 0].to_numpy(dtype=float)
    assert np.isfinite(elbo).all() and elbo[-5:].mean() < elbo[:5].mean()
    z = model.get_distribution_embedding(key_added=None).to_numpy()
    assert z.dtype == np.float32 and np.isfinite(z).all()
    cells = model.sample(groups=[adata.obs["sample"].iloc[0]], n_cells=5).X
    cells = cells.toarray() if sparse.issparse(cells) else cells
    assert cells.dtype == np.float32 and np.isfinite(cells).all()
