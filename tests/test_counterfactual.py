"""Counterfactual cells: real cells moved from one set embedding to another by the generator."""

import numpy as np
import pytest
import scvi
import torch

from scgde.datasets import grn_perturbations
from scgde.model import PerturbationGDE
from scgde.nn import make_generator
from scgde.nn._generators import transport_counts

N_CELLS, N_INPUT, N_LATENT = 400, 6, 4


def _embeddings(seed=0):
    generator = torch.Generator().manual_seed(seed)
    z_from = torch.randn(1, N_LATENT, generator=generator).expand(N_CELLS, -1)
    return z_from, z_from + torch.randn(1, N_LATENT, generator=generator)


GENERATOR_CASES = [
    ("cvae", "nb", {}),
    ("cvae", "zinb", {}),
    ("cvae", "gaussian", {}),
    ("flow", "gaussian", {"frame": "set"}),
    ("flow", "gaussian", {"frame": "source"}),
    ("flow", "gaussian", {"frame": "global"}),
    ("diffusion", "gaussian", {"n_steps": 20}),
]


@pytest.mark.parametrize(("name", "likelihood", "kwargs"), GENERATOR_CASES)
def test_a_cell_stays_where_it_is_when_the_embedding_does_not_change(name, likelihood, kwargs):
    torch.manual_seed(0)
    generator = make_generator(name, N_INPUT, N_LATENT, 0, likelihood, n_hidden=16, **kwargs)
    generator.eval()
    counts = likelihood != "gaussian"
    x = torch.poisson(torch.full((N_CELLS, N_INPUT), 4.0)) if counts else torch.randn(N_CELLS, 6)
    library = x.sum(-1, keepdim=True).clamp(min=1.0) if counts else None
    z_from, z_to = _embeddings()
    x_in = torch.log1p(x) if counts else x
    cov = torch.zeros(N_CELLS, 0)
    with torch.no_grad():
        same = generator.counterfactual(x, x_in, z_from, z_from, cov, library)
        moved = generator.counterfactual(x, x_in, z_from, z_to, cov, library)
    # the diffusion default moves by two samples with the same noise: equal to float rounding
    torch.testing.assert_close(same, x, rtol=0, atol=1e-5 if name == "diffusion" else 0)
    assert (moved - x).abs().mean() > 1e-3  # another embedding does move the cells
    if counts:
        assert torch.all(moved >= 0) and torch.equal(moved, moved.round())


@pytest.mark.parametrize("frame", ["set", "source", "global"])
def test_the_flow_moves_a_generated_cell_to_the_cell_its_noise_gives_under_the_new_embedding(
    frame,
):
    """A cell generated from noise e under z_from, moved to z_to, is the cell e generates
    under z_to: the backward solve recovers e (to the solver's error, small with 200 steps)."""
    torch.manual_seed(1)
    generator = make_generator("flow", N_INPUT, N_LATENT, 0, "gaussian", n_hidden=16, frame=frame)
    generator.eval()
    z_from, z_to = _embeddings(1)
    cov = torch.zeros(N_CELLS, 0)
    steps = {"n_sampling_steps": 200, "method": "heun"}
    torch.manual_seed(5)
    x = generator.sample(z_from, cov, **steps)
    torch.manual_seed(5)
    expected = generator.sample(z_to, cov, **steps)
    moved = generator.counterfactual(x, x, z_from, z_to, cov, **steps)
    assert (expected - x).abs().mean() > 0.05
    torch.testing.assert_close(moved, expected, rtol=0, atol=1e-3)


def test_transported_counts_follow_the_change_of_their_means():
    """Falling means thin each count binomially, rising means add Poisson counts: the totals
    match their expectations within 4 standard errors of those draws."""
    torch.manual_seed(0)
    n = 20_000
    x = torch.poisson(torch.full((n, 3), 5.0))
    source = torch.full((n, 3), 5.0)
    target = torch.tensor([2.0, 5.0, 9.0]).expand(n, 3)
    out = transport_counts(x, source, target)
    assert torch.equal(out[:, 1], x[:, 1])  # an unchanged mean leaves the counts
    assert torch.all(out[:, 0] <= x[:, 0])  # thinning never adds
    assert torch.all(out[:, 2] >= x[:, 2])  # rising means never remove
    kept = x[:, 0].sum().item()
    p = 2.0 / 5.0
    assert abs(out[:, 0].sum().item() - p * kept) < 4 * np.sqrt(kept * p * (1 - p))
    added = (out[:, 2] - x[:, 2]).sum().item()
    assert abs(added - 4.0 * n) < 4 * np.sqrt(4.0 * n)
    # a feature the cell does not express can appear where its mean rises
    silent = transport_counts(torch.zeros(n, 1), torch.full((n, 1), 0.1), torch.ones(n, 1))
    assert abs(silent.mean().item() - 0.9) < 4 * np.sqrt(0.9 / n)


# ----------------------------------------------------------------- PerturbationGDE.predict
@pytest.fixture(scope="module")
def trained():
    adata = grn_perturbations(
        n_genes=60,
        n_perturbations=20,
        n_cells_per_perturbation=40,
        n_control_cells=200,
        n_contexts=1,
        seed=2,
    )
    scvi.settings.seed = 0
    PerturbationGDE.setup_anndata(adata, perturbation_key="perturbation", control="control")
    model = PerturbationGDE(adata, n_latent=6, encoder_kwargs={"n_hidden": 32})
    model.train(max_epochs=10, predictor_epochs=50, enable_progress_bar=False)
    return model


def _rows(matrix) -> list[bytes]:
    return sorted(np.asarray(row, dtype=np.int64).tobytes() for row in matrix)


def test_counterfactual_control_prediction_returns_the_control_cells(trained):
    predicted = trained.predict("control", n_cells=150, seed=0)
    assert predicted.uns["perturbation_prediction"]["cells"] == "counterfactual"
    controls = trained.adata[trained.adata.obs["perturbation"] == "control"].X.toarray()
    rows = _rows(predicted.X.toarray())
    assert len(set(rows)) == len(rows)  # 150 of the 200 controls, none twice
    assert set(rows) <= set(_rows(controls))
    np.testing.assert_array_equal(predicted.uns["predicted_shift"].to_numpy(), 0.0)


def test_counterfactual_cells_keep_their_library_sizes_roughly(trained):
    """A perturbation moves each control cell by how its decoded means change, which keeps
    its total count within a few per cent on average (the expected count is the decoded
    one, whose total is the cell's library), while generated cells copy library sizes."""
    perturbation = [p for p in trained.adata.obs["perturbation"].cat.categories if p != "control"]
    kwargs = {"n_cells": 200, "seed": 1, "target_knockdown": False}
    moved = trained.predict(perturbation[0], **kwargs)
    controls = trained.adata[trained.adata.obs["perturbation"] == "control"].X.toarray()
    ratio = moved.X.toarray().sum(1).mean() / controls.sum(1).mean()
    assert 0.9 < ratio < 1.1
    generated = trained.predict(perturbation[0], cells="generated", **kwargs)
    assert generated.uns["perturbation_prediction"]["cells"] == "generated"
    assert not np.array_equal(generated.X.toarray(), moved.X.toarray())


def test_unknown_cells_option_is_an_error(trained):
    with pytest.raises(ValueError, match="Unknown `cells`"):
        trained.predict("control", cells="real")


# ------------------------------------------------------------------ GDE.counterfactual_cells
def _two_kinds_of_groups(seed=0, n_groups=8, n_cells=60, n_genes=40):
    """NB counts; groups of kind "b" express genes 0-9 five times more than kind "a"."""
    import anndata as ad
    import pandas as pd
    from scipy import sparse

    rng = np.random.default_rng(seed)
    base = np.exp(rng.uniform(np.log(0.5), np.log(5.0), n_genes))
    rows, groups, kinds = [], [], []
    for g in range(n_groups):
        kind = "ab"[g % 2]
        mean = base.copy()
        if kind == "b":
            mean[:10] *= 5.0
        size = np.exp(rng.normal(0.0, 0.2, (n_cells, 1)))
        rows.append(rng.negative_binomial(5, 5 / (5 + size * mean)))
        groups += [f"{kind}{g}"] * n_cells
        kinds += [kind] * n_cells
    names = [f"c{i}" for i in range(len(groups))]
    obs = pd.DataFrame({"group": groups, "kind": kinds}, index=names)
    x = sparse.csr_matrix(np.concatenate(rows).astype(np.float32))
    return ad.AnnData(x, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]))


@pytest.fixture(scope="module")
def two_kinds():
    from scgde.model import GDE

    adata = _two_kinds_of_groups()
    scvi.settings.seed = 0
    GDE.setup_anndata(adata, group_key="group")
    model = GDE(adata, n_latent=4, encoder_kwargs={"n_hidden": 32})
    model.train(max_epochs=400, set_size=32, train_size=1.0, enable_progress_bar=False)
    return adata, model


def test_cells_moved_to_their_own_group_are_the_cells_themselves(two_kinds):
    adata, model = two_kinds
    moved = model.counterfactual_cells(to="a0", groups=["a0"])
    cells = adata[adata.obs["group"] == "a0"]
    assert list(moved.obs_names) == list(cells.obs_names)
    np.testing.assert_array_equal(moved.X.toarray(), cells.X.toarray())
    assert set(moved.obs["group"]) == {"a0"} and set(moved.obs["moved_to"]) == {"a0"}


def test_cells_moved_to_another_kind_of_group_take_on_its_expression(two_kinds):
    """Cells of an "a" group moved to a "b" group gain on genes 0-9 (five-fold in truth)
    relative to the others, and keep their library sizes: the decoder's means are shares of
    the cell's library, so the other genes' counts fall as genes 0-9 take a larger share."""
    adata, model = two_kinds
    moved = model.counterfactual_cells(to="b1", groups=["a0", "a2"])
    source = adata[adata.obs["group"].isin(["a0", "a2"])].X.toarray()
    change = np.log((moved.X.toarray().mean(0) + 0.1) / (source.mean(0) + 0.1))
    truth = np.r_[np.full(10, np.log(5.0)), np.zeros(adata.n_vars - 10)]
    assert np.corrcoef(change, truth)[0, 1] > 0.8
    assert change[:10].mean() - change[10:].mean() > 0.5 * np.log(5.0)
    # a Poisson and binomial change of ~100 counts per cell keeps the mean total within 5%
    assert abs(moved.X.sum(1).mean() / source.sum(1).mean() - 1.0) < 0.05


def test_moved_cells_can_be_drawn_and_take_an_embedding(two_kinds):
    adata, model = two_kinds
    z = model.get_distribution_embedding(adata, key_added=None)
    moved = model.counterfactual_cells(to=z.loc["b1"], groups=["a0"], n_cells=90, seed=1)
    assert moved.n_obs == 90 and moved.obs_names.is_unique  # 60 cells drawn 90 times
    assert set(moved.obs["moved_to"]) == {"b1"}
    by_name = model.counterfactual_cells(to="b1", groups=["a0"], n_cells=90, seed=1)
    np.testing.assert_array_equal(moved.X.toarray(), by_name.X.toarray())
    unnamed = model.counterfactual_cells(to=z.loc["b1"].to_numpy(), groups=["a0"], n_cells=5)
    assert set(unnamed.obs["moved_to"]) == {"embedding"}


def test_counterfactual_cells_errors(two_kinds):
    adata, model = two_kinds
    z = model.get_distribution_embedding(adata, key_added=None)
    with pytest.raises(ValueError, match="not a table"):
        model.counterfactual_cells(to=z)
    with pytest.raises(ValueError, match="must be finite with 4 columns"):
        model.counterfactual_cells(to=np.zeros(3))
    with pytest.raises(ValueError, match="nope"):
        model.counterfactual_cells(to="nope")


def test_continuous_data_move_along_the_flow_and_stay_when_the_embedding_does_not_change():
    """The default generator of continuous data is the flow: a cell moved to its own group's
    embedding comes back exactly (the backward and forward solves cancel), and moved to
    another kind of group it gains on genes 0-9."""
    import scanpy as sc

    from scgde.model import GDE

    adata = _two_kinds_of_groups(seed=1)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    scvi.settings.seed = 0
    GDE.setup_anndata(adata, group_key="group")
    model = GDE(adata, n_latent=4, encoder_kwargs={"n_hidden": 32})
    assert model.generator_name_ == "flow"
    model.train(max_epochs=200, set_size=32, train_size=1.0, enable_progress_bar=False)
    source = adata[adata.obs["group"] == "a0"].X.toarray()
    same = model.counterfactual_cells(to="a0", groups=["a0"])
    np.testing.assert_allclose(same.X, source, atol=1e-5)
    moved = model.counterfactual_cells(to="b1", groups=["a0"])
    change = moved.X.mean(0) - source.mean(0)
    assert change[:10].mean() - change[10:].mean() > 0.5 * np.log(5.0)
