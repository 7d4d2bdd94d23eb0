"""Tests of the conditional diffusion generator (scgde.nn.DiffusionGenerator) and its use in GDE."""

import math

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scvi
import torch
from _helpers import fresh_copy, small_demo
from scipy import sparse

from scgde.data import column_statistics
from scgde.model import GDE
from scgde.nn import GENERATORS, DiffusionGenerator, make_generator
from scgde.nn._diffusion import beta_schedule

N_LATENT = 5


def _generator(n_input=12, n_cov=3, seed=0, **kwargs):
    torch.manual_seed(seed)
    kwargs = {"n_hidden": 32, "n_layers": 2, **kwargs}
    return DiffusionGenerator(n_input, N_LATENT, n_cov, "gaussian", **kwargs)


# ------------------------------------------------------------------------------ schedules
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("n_steps", [400, 50])
def test_alphas_cumprod_strictly_decrease_in_the_unit_interval(schedule, n_steps):
    betas = beta_schedule(n_steps, schedule)
    alphas_cumprod = np.cumprod(1 - betas)
    assert betas.shape == alphas_cumprod.shape == (n_steps,)
    assert (betas > 0).all() and (betas < 1).all()
    assert (alphas_cumprod > 0).all() and (alphas_cumprod < 1).all()
    assert (np.diff(alphas_cumprod) < 0).all()
    # the generator holds the same schedule (float32) on buffers that are not saved
    gen = _generator(schedule=schedule, n_steps=n_steps)
    np.testing.assert_allclose(gen.alphas_cumprod.numpy(), alphas_cumprod, rtol=1e-6, atol=0)
    assert gen.alphas_cumprod.dtype == torch.float32
    assert "alphas_cumprod" not in gen.state_dict() and "betas" not in gen.state_dict()


def test_linear_schedule_endpoints():
    betas = beta_schedule(400, "linear")
    assert betas[0] == pytest.approx(1e-4, rel=1e-12)
    assert betas[-1] == pytest.approx(0.02, rel=1e-12)
    np.testing.assert_allclose(np.diff(betas), (0.02 - 1e-4) / 399, rtol=1e-9)
    # T = 400 leaves ~1.8% of the signal variance: exp(-sum(beta)) = exp(-4.02)
    assert np.prod(1 - betas) == pytest.approx(math.exp(-betas.sum()), rel=0.05)


def test_cosine_schedule_follows_the_closed_form_and_ends_near_zero():
    n_steps, s = 400, 0.008
    alphas_cumprod = np.cumprod(1 - beta_schedule(n_steps, "cosine"))
    t = np.arange(1, n_steps + 1) / n_steps
    closed_form = np.cos((t + s) / (1 + s) * np.pi / 2) ** 2 / np.cos(s / (1 + s) * np.pi / 2) ** 2
    # equal except where betas are capped at 0.999 (the last step only)
    np.testing.assert_allclose(alphas_cumprod[:-1], closed_form[:-1], rtol=1e-9)
    assert alphas_cumprod[-1] < 1e-6
    assert beta_schedule(n_steps, "cosine").max() == pytest.approx(0.999)


def test_bad_schedule_arguments_raise():
    with pytest.raises(ValueError, match="schedule"):
        _generator(schedule="quadratic")
    for bad, error in ((0, ValueError), (-5, ValueError), (2.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="n_steps"):
            _generator(n_steps=bad)
    with pytest.raises(ValueError, match="`mean` must have shape"):
        _generator().set_feature_statistics(mean=np.zeros(3))
    with pytest.raises(ValueError, match="Unknown feature statistics"):
        _generator().set_feature_statistics(median=np.zeros(7))


# --------------------------------------------------------------------- construction, errors
def test_registered_and_built_by_the_factory():
    assert GENERATORS["diffusion"] is DiffusionGenerator
    gen = make_generator("diffusion", 7, N_LATENT, 2, "gaussian", n_steps=30, n_hidden=8)
    assert isinstance(gen, DiffusionGenerator) and gen.n_steps == 30
    assert not gen.has_cell_latent
    with pytest.raises(NotImplementedError, match="no per-cell latent"):
        gen.cell_latent(torch.zeros(2, 7), torch.zeros(2, N_LATENT))


@pytest.mark.parametrize("likelihood", ["nb", "zinb", "poisson"])
def test_count_likelihood_raises_with_what_to_do(likelihood):
    with pytest.raises(ValueError, match="continuous data") as info:
        DiffusionGenerator(10, N_LATENT, 0, likelihood)
    message = str(info.value)
    assert "likelihood='gaussian'" in message and "obsm_key='X_pca'" in message
    assert "layer" in message
    with pytest.raises(ValueError, match="Unknown likelihood"):
        DiffusionGenerator(10, N_LATENT, 0, "bernoulli")


# -------------------------------------------------------------------------- forward, loss
def test_forward_loss_shapes_zero_kl_and_gradients():
    n_cells, n_genes, n_cov = 40, 12, 3
    gen = _generator(n_genes, n_cov)
    gen.train()
    x = torch.randn(n_cells, n_genes, generator=torch.Generator().manual_seed(1))
    z = torch.randn(n_cells, N_LATENT, requires_grad=True)
    cov = torch.randn(n_cells, n_cov)
    torch.manual_seed(2)
    latent, outputs = gen(x, x, z, cov)
    assert latent["eps"].shape == outputs["eps_pred"].shape == (n_cells, n_genes)
    reconstruction, kl = gen.loss(x, latent, outputs)
    assert reconstruction.shape == kl.shape == (n_cells,)
    assert torch.isfinite(reconstruction).all() and (reconstruction >= 0).all()
    assert torch.equal(kl, torch.zeros(n_cells))
    torch.testing.assert_close(reconstruction, ((outputs["eps_pred"] - latent["eps"]) ** 2).sum(-1))
    # the noised cell is the forward process at each cell's step
    alpha_bar = gen.alphas_cumprod[latent["t"]].unsqueeze(-1)
    torch.testing.assert_close(
        latent["x_t"], alpha_bar.sqrt() * x + (1 - alpha_bar).sqrt() * latent["eps"]
    )
    (reconstruction + kl).mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0  # reaches the set encoder
    for name, param in gen.named_parameters():  # every part of the denoiser is trained
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_standardisation_buffers_are_saved_and_invert():
    mean, std = np.linspace(-100, 100, 12), np.linspace(0.5, 50, 12)
    std[3] = 0.0  # a constant feature: floored, not a division by zero
    gen = _generator()
    gen.set_feature_statistics(mean=mean, std=std)
    state = gen.state_dict()
    for name in ("feature_mean", "feature_std", "feature_min", "feature_max"):
        assert name in state
    assert gen.feature_std[3] == pytest.approx(1e-3)
    x = (torch.randn(5, 12) * torch.tensor(std) + torch.tensor(mean)).float()
    torch.testing.assert_close(gen.unstandardize(gen.standardize(x)), x)
    # the loss is computed at unit scale: finite and of the order of n_features at init
    reconstruction, _ = gen.loss(x, *gen(x, x, torch.zeros(5, N_LATENT), torch.zeros(5, 3)))
    assert torch.isfinite(reconstruction).all() and (reconstruction < 100 * 12).all()


# ------------------------------------------------------------------------------- sampling
def test_sample_shapes_seeds_methods_and_arguments():
    gen = _generator().eval()
    z, cov = torch.randn(6, N_LATENT), torch.randn(6, 3)
    draws = {}
    for method in ("ddpm", "ddim"):
        for seed in (0, 0, 1):
            torch.manual_seed(seed)
            draws.setdefault(method, []).append(
                gen.sample(z, cov, None, n_sampling_steps=20, method=method)
            )
        first, same_seed, other_seed = draws[method]
        assert first.shape == (6, 12) and torch.isfinite(first).all()
        assert torch.equal(first, same_seed)
        assert not torch.equal(first, other_seed)
    # library is ignored; defaults: DDPM over all steps
    torch.manual_seed(0)
    a = gen.sample(z, cov, torch.full((6, 1), 1e4), n_sampling_steps=20, method="ddim")
    assert torch.equal(a, draws["ddim"][0])
    assert (gen.sampling_method, gen.n_sampling_steps) == ("ddpm", gen.n_steps)
    assert gen.sample(z, cov, None).shape == (6, 12)
    assert gen.sample(z, cov, None, n_sampling_steps=1).shape == (6, 12)
    with pytest.raises(ValueError, match="method"):
        gen.sample(z, cov, None, method="euler")
    for bad in (0, gen.n_steps + 1, 2.5):
        with pytest.raises(ValueError, match="n_sampling_steps"):
            gen.sample(z, cov, None, n_sampling_steps=bad)
    # defaults can be set on the generator
    fast = _generator(sampling_method="ddim", n_sampling_steps=20).eval()
    torch.manual_seed(0)
    assert torch.equal(fast.sample(z, cov, None), draws["ddim"][0])


def test_samples_stay_in_the_training_range():
    # the clean-cell prediction is clipped to [feature_min, feature_max] at every step, and the
    # last step returns it, so even an untrained generator samples within the range
    lo, hi = np.full(12, -0.5), np.linspace(0.1, 2.0, 12)
    gen = _generator(schedule="cosine").eval()
    gen.set_feature_statistics(min=lo, max=hi)
    torch.manual_seed(0)
    for method in ("ddpm", "ddim"):
        x = gen.sample(torch.randn(50, N_LATENT), torch.randn(50, 3), None, 25, method)
        assert (x >= torch.tensor(lo) - 1e-5).all() and (x <= torch.tensor(hi) + 1e-5).all()


# ------------------------------------------------------------------- learning a known answer
# x | z ~ N(OFFSET + SCALE * z, SIGMA²), z ~ U[-1, 1]²: the generator must learn the mean as a
# function of z and the conditional spread, which is 2.5x narrower than the marginal one.
OFFSET, SCALE, SIGMA = torch.tensor([3.0, -1.0]), 2.0, 0.5


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_generator_learns_conditional_gaussians(schedule):
    n_train, n_samples = 20_000, 1_000
    data_rng = torch.Generator().manual_seed(0)
    z_train = torch.rand(n_train, 2, generator=data_rng) * 2 - 1
    x_train = OFFSET + SCALE * z_train + SIGMA * torch.randn(n_train, 2, generator=data_rng)
    torch.manual_seed(0)
    gen = DiffusionGenerator(
        2,
        2,
        0,
        "gaussian",
        schedule=schedule,
        n_hidden=64,
        n_layers=2,
    )
    gen.set_feature_statistics(
        mean=x_train.mean(0),
        std=x_train.std(0),
        min=x_train.min(0).values,
        max=x_train.max(0).values,
    )
    n_steps, batch = 1_000, 512
    optimizer = torch.optim.Adam(gen.parameters(), lr=2e-3)
    decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1 - i / n_steps)
    no_cov = torch.zeros(batch, 0)
    for _ in range(n_steps):
        idx = torch.randint(0, n_train, (batch,), generator=data_rng)
        x, z = x_train[idx], z_train[idx]
        reconstruction, kl = gen.loss(x, *gen(x, x, z, no_cov))
        optimizer.zero_grad()
        (reconstruction + kl).mean().backward()
        optimizer.step()
        decay.step()
    gen.eval()

    z_test = torch.tensor([[-0.8, -0.8], [0.0, 0.5], [0.8, -0.3]])
    true_means = OFFSET + SCALE * z_test  # differ by 1.0 to 3.2 in each coordinate
    z_rows = z_test.repeat_interleave(n_samples, 0)
    # Tolerances = sampling error + model error. Sampling error: the standard error of a mean
    # of 1,000 draws is 0.5 / sqrt(1000) = 0.016 and that of a standard deviation about 2.2% of
    # it; 4 standard errors are 0.063 and 9%. Model error: 1,000 Adam steps leave a small error
    # in the denoiser (seen over 3 seeds, 2,000 draws: means <= 0.06 off and spreads <= 7% off
    # with DDPM; means <= 0.13 and spreads <= 21% off with DDIM, which integrates the denoiser's
    # errors without the noise that lets DDPM correct them). We allow 0.15 for the means (0.3
    # sigma), 10% (DDPM) or 25% (DDIM) for the spreads. A generator that ignored z would have
    # spreads 2.5x too large and means 1.0 to 1.6 off, and fail every check.
    mean_tol = 0.063 + 0.15
    samplers = [("ddpm", None, 0.09 + 0.10), ("ddim", 50, 0.09 + 0.25)]
    for method, n_sampling_steps, spread_tol in samplers:
        torch.manual_seed(1)
        x = gen.sample(z_rows, torch.zeros(len(z_rows), 0), None, n_sampling_steps, method)
        x = x.view(len(z_test), n_samples, 2)
        mean_error = (x.mean(1) - true_means).abs().max().item()
        spread_error = (x.std(1) / SIGMA - 1).abs().max().item()
        assert mean_error < mean_tol, (method, mean_error)
        assert spread_error < spread_tol, (method, spread_error)


# ------------------------------------------------------------------- per-feature statistics
@pytest.mark.parametrize("fmt", ["dense", "csr", "dataframe"])
@pytest.mark.parametrize("rows_per_block", [3, 7, 1000])
def test_column_statistics_in_chunks_match_numpy(fmt, rows_per_block):
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 2.0, size=(50, 6)) * (rng.random((50, 6)) < 0.6)
    x[:, 2] = np.abs(x[:, 2])  # a sparse column whose minimum is an implicit zero
    data = {"dense": x, "csr": sparse.csr_matrix(x), "dataframe": pd.DataFrame(x)}[fmt]
    stats = column_statistics(data, n_values=rows_per_block * x.shape[1])
    np.testing.assert_allclose(stats["mean"], x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats["std"], x.std(0), rtol=1e-9)
    np.testing.assert_array_equal(stats["min"], x.min(0))
    np.testing.assert_array_equal(stats["max"], x.max(0))


# --------------------------------------------------------------------------- end to end


FAST = {"method": "ddim", "n_sampling_steps": 10}


@pytest.fixture(scope="module")
def pca_model():
    scvi.settings.seed = 0
    adata = small_demo(6, 20, 50)
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=10)
    GDE.setup_anndata(adata, group_key="sample", obsm_key="X_pca")
    model = GDE(adata, generator="diffusion", likelihood="gaussian", n_latent=4)
    model.train(max_epochs=2, set_size=8, groups_per_batch=4, enable_progress_bar=False)
    return model, adata


def test_gde_with_diffusion_on_pca(pca_model):
    model, adata = pca_model
    gen = model.module.generator
    assert isinstance(gen, DiffusionGenerator)
    # standardised with the statistics of the registered representation
    x = adata.obsm["X_pca"]
    np.testing.assert_allclose(gen.feature_mean.numpy(), x.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gen.feature_std.numpy(), x.std(0), rtol=1e-4)
    # what GDE.__init__ records (and load replays) is what the user passed, not the statistics
    assert model.init_params_["non_kwargs"]["generator_kwargs"] is None
    history = model.history["elbo_train"].to_numpy(dtype=float)
    assert np.isfinite(history).all()
    assert np.isfinite(model.history["kl_local_train"].to_numpy(dtype=float)).all()

    table = model.get_distribution_embedding(key_added=None)
    n_groups = adata.obs["sample"].nunique()
    assert table.shape == (n_groups, 4) and np.isfinite(table.to_numpy()).all()
    generated = model.sample(n_cells=5, sampler_kwargs=FAST)
    assert generated.shape == (5 * n_groups, 10)
    assert not sparse.issparse(generated.X) and np.isfinite(generated.X).all()
    # the default sampler (DDPM over all 400 steps) also runs
    default = model.sample(groups=list(table.index[:1]), n_cells=3, seed=0)
    assert default.shape == (3, 10) and np.isfinite(default.X).all()
    with pytest.raises(NotImplementedError):
        model.get_latent_representation()
    with pytest.raises(ValueError, match="sampler_kwargs"):
        model.sample(n_cells=2, sampler_kwargs=[("method", "ddim")])


def test_gde_with_diffusion_save_load_roundtrip(pca_model, tmp_path):
    model, adata = pca_model
    before = model.get_distribution_embedding(key_added=None)
    samples = model.sample(n_cells=5, seed=3, sampler_kwargs=FAST)
    stochastic = model.sample(n_cells=2, seed=3, sampler_kwargs={"n_sampling_steps": 20})
    model.save(tmp_path / "model", overwrite=True)
    loaded = GDE.load(tmp_path / "model", adata=fresh_copy(adata))
    pd.testing.assert_frame_equal(loaded.get_distribution_embedding(key_added=None), before)
    replayed = loaded.sample(n_cells=5, seed=3, sampler_kwargs=FAST)
    np.testing.assert_array_equal(replayed.X, samples.X)
    again = loaded.sample(n_cells=2, seed=3, sampler_kwargs={"n_sampling_steps": 20})
    np.testing.assert_array_equal(again.X, stochastic.X)

    # the standardisation comes from the saved buffers, not from the AnnData given to load
    two = adata.obs["sample"].cat.categories[:2]
    subset = fresh_copy(adata[adata.obs["sample"].isin(two)])
    subset.obs["sample"] = subset.obs["sample"].cat.remove_unused_categories()
    assert not np.allclose(subset.obsm["X_pca"].mean(0), adata.obsm["X_pca"].mean(0))
    reloaded = GDE.load(tmp_path / "model", adata=subset)
    for name in ("feature_mean", "feature_std", "feature_min", "feature_max"):
        torch.testing.assert_close(
            getattr(reloaded.module.generator, name), getattr(model.module.generator, name)
        )


def test_gde_with_diffusion_on_a_log_normalised_layer():
    scvi.settings.seed = 0
    adata = small_demo(6, 20, 40)
    adata.layers["log1p"] = sc.pp.log1p(sc.pp.normalize_total(adata, inplace=False)["X"])
    assert sparse.issparse(adata.layers["log1p"])
    GDE.setup_anndata(adata, group_key="sample", layer="log1p")
    model = GDE(
        adata,
        generator="diffusion",
        likelihood="gaussian",
        n_latent=4,
        generator_kwargs={"n_hidden": 64, "schedule": "cosine", "n_steps": 100},
    )
    gen = model.module.generator
    dense = adata.layers["log1p"].toarray()
    np.testing.assert_allclose(gen.feature_mean.numpy(), dense.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gen.feature_std.numpy(), np.maximum(dense.std(0), 1e-3), rtol=1e-4)
    np.testing.assert_allclose(gen.feature_min.numpy(), dense.min(0), atol=1e-6)
    np.testing.assert_allclose(gen.feature_max.numpy(), dense.max(0), rtol=1e-6)
    model.train(max_epochs=2, set_size=8, groups_per_batch=4, enable_progress_bar=False)
    assert np.isfinite(model.history["elbo_train"].to_numpy(dtype=float)).all()
    generated = model.sample(n_cells=5, seed=0, sampler_kwargs=FAST)
    assert generated.shape == (5 * adata.obs["sample"].nunique(), adata.n_vars)
    assert list(generated.var_names) == list(adata.var_names)
    assert np.isfinite(generated.X).all()
    # clipped to the training range: log-normalised values stay non-negative
    assert generated.X.min() >= -1e-5


def test_gde_with_diffusion_on_counts_raises():
    adata = small_demo(4, 10, 20)
    GDE.setup_anndata(adata, group_key="sample")
    with pytest.raises(ValueError, match="continuous data"):
        GDE(adata, generator="diffusion")
    with pytest.raises(ValueError, match="continuous data"):
        GDE(adata, generator="diffusion", likelihood="nb")
