"""RNA + protein (CITE-seq) models set up from a MuData."""

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scvi
from scipy import sparse

from scgde.model import GDE

N_GROUPS, N_CELLS, N_GENES, N_PROTEINS = 12, 60, 30, 6
MODALITIES = {"rna_layer": "rna", "protein_layer": "prot"}


def protein_mudata(seed: int = 0) -> md.MuData:
    """Groups with the SAME RNA distribution that differ only in their proteins.

    Group ``g`` has protein ``g % 6`` raised 6-fold over the others, so only a model that reads
    the proteins can tell the groups apart or regenerate them.
    """
    rng = np.random.default_rng(seed)
    n = N_GROUPS * N_CELLS
    group = np.repeat(np.arange(N_GROUPS), N_CELLS)
    gene_means = rng.gamma(2.0, 2.0, N_GENES)
    rna = rng.negative_binomial(5, 5 / (5 + gene_means), size=(n, N_GENES))
    levels = np.full((N_GROUPS, N_PROTEINS), 20.0)
    levels[np.arange(N_GROUPS), np.arange(N_GROUPS) % N_PROTEINS] = 120.0
    prot = rng.negative_binomial(10, 10 / (10 + levels[group]))
    obs = pd.DataFrame(
        {"sample": pd.Categorical([f"s{g:02d}" for g in group])},
        index=[f"cell{i}" for i in range(n)],
    )
    rna_ad = ad.AnnData(
        sparse.csr_matrix(rna.astype(np.float32)),
        obs=obs.copy(),
        var=pd.DataFrame(index=[f"gene{j}" for j in range(N_GENES)]),
    )
    prot_ad = ad.AnnData(
        prot.astype(np.float32),
        obs=obs.copy(),
        var=pd.DataFrame(index=[f"CD{j}" for j in range(N_PROTEINS)]),
    )
    mdata = md.MuData({"rna": rna_ad, "prot": prot_ad})
    mdata.obs["sample"] = obs["sample"]
    return mdata


def raised_protein(names) -> np.ndarray:
    return np.array([int(str(name)[1:]) % N_PROTEINS for name in names])


@pytest.fixture(scope="module")
def trained():
    scvi.settings.seed = 0
    mdata = protein_mudata()
    GDE.setup_mudata(mdata, group_key="sample", modalities=MODALITIES)
    model = GDE(mdata, n_latent=8, encoder_kwargs={"n_hidden": 32})
    model.train(
        max_epochs=250, set_size=32, groups_per_batch=12, lr=3e-3, enable_progress_bar=False
    )
    return model, mdata


def test_model_registers_both_modalities(trained):
    model, _ = trained
    assert list(model.var_names) == [f"gene{j}" for j in range(N_GENES)]
    assert list(model.protein_names) == [f"CD{j}" for j in range(N_PROTEINS)]
    assert model.module.n_proteins == N_PROTEINS
    # the group is a registered field of the MuData's obs, too
    mapping = model.adata_manager.get_state_registry("group")["categorical_mapping"]
    assert list(mapping) == [f"s{g:02d}" for g in range(N_GROUPS)]
    assert model.module.block_sizes == (N_GENES, N_PROTEINS)
    assert "6 proteins" in model._model_summary_string


def test_encoder_reads_the_proteins(trained):
    """Groups differing only in proteins: random halves of a group embed next to each other."""
    model, mdata = trained
    halves = protein_mudata()
    rng = np.random.default_rng(1)
    side = np.where(rng.random(halves.n_obs) < 0.5, "|A", "|B")
    halves.obs["sample"] = halves.obs["sample"].astype(str) + side
    z = model.get_distribution_embedding(halves, key_added=None)
    names = sorted(mdata.obs["sample"].unique())
    a = z.loc[[f"{n}|A" for n in names]].to_numpy()
    b = z.loc[[f"{n}|B" for n in names]].to_numpy()
    nearest = np.linalg.norm(a[:, None] - b[None], axis=-1).argmin(1)
    # the two groups sharing a raised protein (g and g + 6) are alike; anything that reads the
    # proteins must at least find a half with the same raised protein (chance: 1 in 6)
    same_protein = raised_protein(np.array(names)[nearest]) == raised_protein(names)
    assert same_protein.mean() >= 0.9


def test_without_a_protein_modality_only_rna_is_modelled():
    scvi.settings.seed = 0
    mdata = protein_mudata()
    GDE.setup_mudata(mdata, group_key="sample", modalities={"rna_layer": "rna"})
    model = GDE(mdata, n_latent=8, encoder_kwargs={"n_hidden": 32})
    assert model.module.n_proteins == 0
    model.train(max_epochs=5, set_size=32, groups_per_batch=12, enable_progress_bar=False)
    generated = model.sample(n_cells=5, seed=0)
    assert isinstance(generated, ad.AnnData)
    assert generated.n_vars == N_GENES


def test_generator_regenerates_each_groups_proteins(trained):
    model, mdata = trained
    generated = model.sample(n_cells=200, seed=0)
    assert isinstance(generated, md.MuData)
    assert set(generated.mod) == {"rna", "prot"}
    prot = generated["prot"]
    assert list(prot.var_names) == list(model.protein_names)
    assert list(generated["rna"].var_names) == list(model.var_names)
    values = prot.X.toarray()
    assert np.all(values >= 0) and np.all(values == np.round(values))
    means = pd.DataFrame(values).groupby(generated.obs["group"].to_numpy()).mean()
    # each group's generated cells carry its raised protein (6-fold over the others)
    assert np.mean(means.to_numpy().argmax(1) == raised_protein(means.index)) >= 0.9


def test_protein_library_is_modelled_separately(trained):
    """Generated protein totals follow the copied cells' protein library, not the RNA one."""
    model, mdata = trained
    generated = model.sample(groups=["s00"], n_cells=2000, seed=0)
    real = mdata["prot"][mdata.obs["sample"] == "s00"].X.sum(1).mean()
    totals = np.asarray(generated["prot"].X.sum(1)).ravel()
    # NB draws whose means sum to the library: the mean total matches within a few SE
    se = totals.std() / np.sqrt(totals.size)
    assert abs(totals.mean() - real) < 4 * se + 0.02 * real
    rna_real = np.asarray(mdata["rna"][mdata.obs["sample"] == "s00"].X.sum(1)).mean()
    rna_totals = np.asarray(generated["rna"].X.sum(1)).ravel()
    assert abs(rna_totals.mean() - rna_real) < 0.1 * rna_real


def test_sampling_from_an_embedding_draws_both_libraries(trained):
    model, mdata = trained
    z = model.get_distribution_embedding(key_added=None).iloc[:2]
    generated = model.sample(embedding=z, n_cells=500, seed=0)
    prot_totals = np.asarray(generated["prot"].X.sum(1)).ravel()
    real_log = np.log(np.asarray(mdata["prot"].X.sum(1)).ravel())
    # library sizes are log-normal draws with the training data's per-modality moments
    assert abs(np.log(prot_totals).mean() - real_log.mean()) < 0.15


def test_save_load_round_trip_and_feature_checks(trained, tmp_path):
    model, mdata = trained
    model.save(tmp_path / "m")
    loaded = GDE.load(tmp_path / "m", adata=mdata)
    np.testing.assert_allclose(
        loaded.get_distribution_embedding(key_added=None),
        model.get_distribution_embedding(key_added=None),
        rtol=1e-5,
        atol=1e-6,
    )
    renamed = protein_mudata()
    renamed.mod["prot"].var_names = [f"X{j}" for j in range(N_PROTEINS)]
    renamed.update()
    with pytest.raises(ValueError, match="protein names"):
        model.get_distribution_embedding(renamed, key_added=None)
    with pytest.raises(ValueError, match="protein names"):
        GDE.load(tmp_path / "m", adata=renamed)


def test_setup_only_adds_registration_keys():
    mdata = protein_mudata()
    before_obs = set(mdata.obs.columns)
    before_x = mdata["prot"].X.copy()
    GDE.setup_mudata(mdata, group_key="sample", modalities=MODALITIES)
    added = set(mdata.obs.columns) - before_obs
    assert all(c.startswith("_scvi") for c in added)
    np.testing.assert_array_equal(mdata["prot"].X, before_x)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"modalities": {"rna_layer": "rna", "protein_layer": "adt"}}, KeyError, "adt"),
        ({"modalities": {"rna_layer": "rna", "atac": "atac"}}, ValueError, "Unknown"),
        ({"modalities": {"protein_layer": "prot"}}, ValueError, "RNA modality"),
        ({"modalities": {"rna_layer": "rna"}, "protein_layer": "x"}, ValueError, "protein_layer"),
        ({"modalities": MODALITIES, "protein_layer": "raw"}, KeyError, "no layer 'raw'"),
    ],
)
def test_setup_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        GDE.setup_mudata(protein_mudata(), group_key="sample", **kwargs)


def test_non_count_proteins_are_rejected():
    mdata = protein_mudata()
    mdata.mod["prot"].X = np.log1p(mdata.mod["prot"].X)
    GDE.setup_mudata(mdata, group_key="sample", modalities=MODALITIES)
    with pytest.raises(ValueError, match="prot"):
        GDE(mdata)


def test_proteins_need_a_count_likelihood():
    mdata = protein_mudata()
    mdata.mod["rna"].X = np.log1p(mdata.mod["rna"].X.toarray())
    GDE.setup_mudata(mdata, group_key="sample", modalities=MODALITIES)
    with pytest.raises(ValueError, match="count likelihood"):
        GDE(mdata, likelihood="gaussian")
