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
