"""Standard errors of the embeddings: the streaming Poisson bootstrap and what the model writes."""

import warnings

import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from _helpers import fresh_copy, small_demo

import scgde
from scgde.nn import DeepSetEncoder


def _encoder(seed=0):
    torch.manual_seed(seed)
    return DeepSetEncoder(3, 4, n_hidden=16, n_layers=2).double().eval()


def _chunks(x, set_ids, size):
    def chunks():
        for start in range(0, len(x), size):
            yield x[start : start + size], set_ids[start : start + size]

    return chunks


def _bootstrap_se(encoder, x, n_replicates=200, seed=0):
    set_ids = torch.zeros(len(x), dtype=torch.long)
    z, replicates = encoder.bootstrap_streaming(_chunks(x, set_ids, 64), 1, n_replicates, seed)
    return z[0], replicates[:, 0].std(0)


def test_bootstrap_keeps_the_embedding_and_its_replicates_are_weighted_encodings():
    encoder = _encoder()
    x = torch.randn(150, 3, dtype=torch.float64)
    set_ids = torch.repeat_interleave(torch.arange(3), torch.tensor([20, 50, 80]))
    chunks = _chunks(x, set_ids, 32)
    z, replicates = encoder.bootstrap_streaming(chunks, 3, 5, seed=1)
    torch.testing.assert_close(z, encoder.encode_streaming(chunks, 3))
    torch.testing.assert_close(z, encoder(x, set_ids, 3))
    assert replicates.shape == (5, 3, 4) and not torch.equal(replicates[0], replicates[1])
    again = encoder.bootstrap_streaming(chunks, 3, 5, seed=1)[1]
    torch.testing.assert_close(replicates, again, rtol=0, atol=0)  # same seed, same draws
    # a replicate is the encoding of the cells repeated by their Poisson weights
    weights = torch.cat(
        [
            torch.poisson(torch.ones(5, len(x[start : start + 32])), generator=generator)
            for k, start in enumerate(range(0, 150, 32))
            for generator in [torch.Generator().manual_seed(1 * 1_000_003 + k)]
        ],
        dim=1,
    )
    counts = weights[2].long()
    repeated = torch.repeat_interleave(torch.arange(150), counts)
    torch.testing.assert_close(replicates[2], encoder(x[repeated], set_ids[repeated], 3))


def test_bootstrap_error_matches_the_spread_over_new_draws_and_shrinks_with_set_size():
    # the truth: the standard deviation of z over 200 fresh draws of m cells from N(0, I);
    # the estimate: the bootstrap standard error from one draw, averaged over 5 draws. Both are
    # estimated with a relative error of about 1 / sqrt(2 * 200) = 5%, so 20% is 4 sigma.
    encoder = _encoder()
    generator = torch.Generator().manual_seed(0)
    ratios, estimates = [], {}
    for m in (100, 400):
        draws = torch.randn(200, m, 3, generator=generator, dtype=torch.float64)
        set_ids = torch.arange(200).repeat_interleave(m)
        truth = encoder(draws.reshape(-1, 3), set_ids, 200).std(0)
        estimate = torch.stack([_bootstrap_se(encoder, draws[i], seed=i)[1] for i in range(5)])
        estimates[m] = estimate.mean(0)
        ratios.append(float((estimates[m] / truth).mean()))
    assert all(0.8 < r < 1.25 for r in ratios), ratios
    shrink = float((estimates[400] / estimates[100]).mean())  # 1 / sqrt(4)
    assert 0.4 < shrink < 0.6, shrink


# ------------------------------------------------------------------------------- the model
@pytest.fixture(scope="module")
def trained():
    adata = small_demo(n_samples=8, n_cells=40, n_genes=60)
    scvi.settings.seed = 0
    scgde.model.GDE.setup_anndata(adata, group_key="sample")
    model = scgde.model.GDE(adata, n_latent=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.train(max_epochs=2, max_steps=6, groups_per_batch=4, set_size=16)
    return model, adata


def test_model_writes_errors_and_covariances_next_to_the_embedding(trained):
    model, adata = trained
    table = model.get_distribution_embedding(key_added="X_u")
    se = model.get_embedding_uncertainty(n_bootstrap=30, key_added="X_u")
    assert list(se.index) == list(table.index) and list(se.columns) == list(table.columns)
    assert (se.to_numpy() > 0).all() and adata.uns["X_u_se"].equals(se)
    cov = adata.uns["X_u_cov"]
    assert cov.shape == (len(table), 5, 5)
    np.testing.assert_allclose(np.sqrt(np.einsum("gii->gi", cov)), se.to_numpy())
    np.testing.assert_allclose(cov, np.swapaxes(cov, 1, 2))
    # halving each group's cells raises its error by about sqrt(2)
    half = adata[adata.obs.groupby("sample", observed=True).cumcount().to_numpy() < 20].copy()
    smaller = model.get_embedding_uncertainty(fresh_copy(half), n_bootstrap=30, key_added=None)
    ratio = float(np.median(smaller.to_numpy() / se.to_numpy()))
    assert 1.1 < ratio < 1.9, ratio

    distances = scgde.tl.group_distances(adata, key="X_u")
    errors = adata.uns["X_u_distances_euclidean_se"]
    assert errors.shape == distances.shape and (np.diag(errors) == 0).all()
    a, b = table.index[0], table.index[1]
    u = (table.loc[a] - table.loc[b]).to_numpy() / distances.loc[a, b]
    expected = np.sqrt(u @ (cov[0] + cov[1]) @ u)
    assert errors.loc[a, b] == pytest.approx(expected)
    assert errors.loc[b, a] == pytest.approx(expected)

    # 95% error ellipses: the covariance projected on the plot's PCA axes
    from matplotlib.patches import Ellipse

    ax = scgde.pl.group_embedding(adata, key="X_u", basis="pca", uncertainty=True, show=False)
    ellipses = [p for p in ax.patches if isinstance(p, Ellipse)]
    assert len(ellipses) == len(table)
    pca = scgde.pl._reduce.pca_2d(table.to_numpy())
    projected = pca.axes @ cov[0] @ pca.axes.T
    variances = np.linalg.eigvalsh(projected)[::-1]
    expected_axes = 2 * np.sqrt(-2 * np.log(0.05)) * np.sqrt(variances)
    np.testing.assert_allclose([ellipses[0].width, ellipses[0].height], expected_axes)
    np.testing.assert_allclose(ellipses[0].center, pca.transform(table.to_numpy()[:1])[0])
    with pytest.raises(ValueError, match="basis='pca'"):
        scgde.pl.group_embedding(adata, key="X_u", basis="umap", uncertainty=True, show=False)


def test_uncertainty_of_new_data_leaves_it_unchanged_and_checks_arguments(trained):
    model, adata = trained
    new = fresh_copy(adata)
    before = new.copy()
    se = model.get_embedding_uncertainty(new, groups=[new.obs["sample"].iloc[0]], key_added=None)
    assert se.shape == (1, 5)
    assert set(new.uns) == set(before.uns) and list(new.obs) == list(before.obs)
    for bad, error in ((1, ValueError), (2.5, TypeError)):
        with pytest.raises(error, match="n_bootstrap"):
            model.get_embedding_uncertainty(n_bootstrap=bad)
    with pytest.raises(ValueError, match="reserved|gde"):
        model.get_embedding_uncertainty(key_added="gde")
    assert isinstance(se, pd.DataFrame)
