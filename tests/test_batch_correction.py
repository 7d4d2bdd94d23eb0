"""Batch penalties on the set embedding: building blocks, errors, and their effect."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from _helpers import fresh_copy

from scgde.model import GDE
from scgde.nn._batch_penalty import normalized_hsic, set_batch_composition


# ------------------------------------------------------------------------ building blocks
def test_set_batch_composition_gives_fractions_of_each_sets_cells():
    batch = torch.tensor([0, 0, 1, 2, 2, 2, 1])
    set_ids = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    composition = set_batch_composition(batch, set_ids, n_sets=3, n_batch=3)
    expected = torch.tensor([[2 / 3, 1 / 3, 0], [0, 0, 1], [0, 0.5, 0.5]])
    torch.testing.assert_close(composition, expected)


def test_normalized_hsic_separates_dependent_from_independent():
    gen = torch.Generator().manual_seed(0)
    n = 200
    batch = torch.randint(0, 3, (n,), generator=gen)
    onehot = torch.nn.functional.one_hot(batch, 3).float()
    dependent = onehot @ torch.randn(3, 8, generator=gen) + 0.3 * torch.randn(n, 8, generator=gen)
    independent = torch.randn(n, 8, generator=gen)
    high, low = normalized_hsic(dependent, onehot), normalized_hsic(independent, onehot)
    # independent: the centred Gram matrices are nearly orthogonal, alignment O(1/sqrt(n))
    assert low < 0.1
    assert high > 0.5
    # invariant to the scale of z (the bandwidth is the median distance)
    torch.testing.assert_close(normalized_hsic(10 * dependent, onehot), high)


# ---------------------------------------------------------------------------- model level
def batch_confounded_counts(seed=0, n_groups=24, n_cells=60, n_genes=60):
    """Poisson counts of groups that each lie in one of two batches; the condition (A/B,
    balanced within each batch) raises genes 0-9 three-fold, the batch raises genes 10-29
    four-fold; each group has a small random shift of its own."""
    rng = np.random.default_rng(seed)
    base = np.exp(rng.uniform(np.log(0.5), np.log(5.0), n_genes))
    rows, obs = [], []
    for g in range(n_groups):
        batch, condition = g % 2, (g // 2) % 2
        rate = base * np.exp(0.15 * rng.standard_normal(n_genes))
        rate[:10] *= 3.0 if condition else 1.0
        rate[10:30] *= 4.0 if batch else 1.0
        rows.append(rng.poisson(rate, size=(n_cells, n_genes)))
        obs += [(f"g{g}", f"b{batch}", "AB"[condition])] * n_cells
    obs = pd.DataFrame(obs, columns=["group", "batch", "condition"]).astype("category")
    obs.index = obs.index.astype(str)
    return ad.AnnData(np.vstack(rows).astype(np.float32), obs=obs)


def same_label_fraction(z: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    d = ((z[:, None] - z[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :k]
    return float((labels[nearest] == labels[:, None]).mean())


@pytest.fixture(scope="module")
def batch_models():
    adata = batch_confounded_counts()
    out = {}
    for name in (None, "hsic"):
        scvi.settings.seed = 0
        data = fresh_copy(adata)
        GDE.setup_anndata(data, group_key="group", batch_key="batch")
        model = GDE(data, n_latent=8, batch_correction=name)
        model.train(max_epochs=150, train_size=1.0, enable_progress_bar=False)
        z = model.get_distribution_embedding(key_added=None)
        groups = data.obs.drop_duplicates("group").set_index("group").loc[z.index]
        out[name] = (model, z.to_numpy(), groups)
    return out


def test_batch_penalty_mixes_batches_and_keeps_the_condition(batch_models):
    """24 groups, 12 per batch: a batch-blind ranking puts 11/23 = 0.48 of the 5 nearest
    groups in the own batch. Without a penalty z separates the batches (the batch effect is
    larger than the condition's); with it the batch fraction must fall below halfway between
    0.48 and 1 while the nearest groups keep sharing the condition."""
    _, z_plain, groups = batch_models[None]
    _, z_fixed, _ = batch_models["hsic"]
    batch, condition = groups["batch"].to_numpy(), groups["condition"].to_numpy()
    assert same_label_fraction(z_plain, batch) > 0.9
    assert same_label_fraction(z_fixed, batch) < (11 / 23 + 1) / 2
    assert same_label_fraction(z_fixed, condition) > 0.9


def test_batch_penalty_is_logged_and_survives_save_load(batch_models, tmp_path):
    model, z, _ = batch_models["hsic"]
    penalty = model.history["batch_penalty_train"].to_numpy().ravel()
    # the penalty falls as z sheds the batch (first vs last tenth of the epochs)
    assert penalty[-15:].mean() < penalty[:15].mean()
    model.save(tmp_path / "model")
    loaded = GDE.load(tmp_path / "model", adata=fresh_copy(model.adata))
    assert loaded.module.batch_penalty is not None
    reloaded = loaded.get_distribution_embedding(key_added=None).to_numpy()
    np.testing.assert_allclose(reloaded, z, atol=1e-5)


# --------------------------------------------------------------------------------- errors
def test_batch_correction_errors():
    adata = batch_confounded_counts(n_groups=4, n_cells=5, n_genes=10)
    GDE.setup_anndata(adata, group_key="group")
    with pytest.raises(ValueError, match="batch_key"):
        GDE(adata, batch_correction="hsic")
    GDE.setup_anndata(adata, group_key="group", batch_key="batch")
    with pytest.raises(ValueError, match="Unknown batch_correction"):
        GDE(adata, batch_correction="adversarial")
    with pytest.raises(ValueError, match="batch_correction_weight"):
        GDE(adata, batch_correction="hsic", batch_correction_weight=-1.0)


def test_batch_equal_to_group_is_refused_and_a_single_group_batch_warned():
    adata = batch_confounded_counts(n_groups=4, n_cells=5, n_genes=10)
    GDE.setup_anndata(adata, group_key="group", batch_key="group")
    GDE(adata)  # conditioning on it alone is allowed
    with pytest.raises(ValueError, match="cannot be told apart"):
        GDE(adata, batch_correction="hsic")
    adata = batch_confounded_counts(n_groups=6, n_cells=5, n_genes=10)
    adata.obs["batch"] = adata.obs["batch"].cat.add_categories("b2")
    adata.obs.loc[adata.obs["group"] == "g5", "batch"] = "b2"
    GDE.setup_anndata(adata, group_key="group", batch_key="batch")
    with pytest.warns(UserWarning, match=r"\['b2'\] hold a single group"):
        GDE(adata, batch_correction="hsic")
