"""Tests of the flow-matching generator (scgde.nn.FlowGenerator), the data-driven defaults of
``likelihood`` / ``generator``, and the training recipe (scgde.train.GDETrainingPlan)."""

import math

import numpy as np
import pytest
import scanpy as sc
import scvi
import torch
from _helpers import small_demo
from scipy import stats

from scgde.data._set_sampler import GroupSetSampler
from scgde.model import GDE
from scgde.module import GDEModule
from scgde.nn import GENERATORS, FlowGenerator
from scgde.nn._conditional_mlp import TimeConditionedMLP
from scgde.train import GDETrainingPlan


# ------------------------------------------------------------------------------ generator
def test_flow_is_registered_and_rejects_counts_and_bad_options():
    assert GENERATORS["flow"] is FlowGenerator
    with pytest.raises(ValueError, match="continuous data, not counts"):
        FlowGenerator(4, 2, 0, "nb")
    with pytest.raises(ValueError, match="ODE method"):
        FlowGenerator(4, 2, 0, method="rk45")
    with pytest.raises(ValueError, match="n_sampling_steps"):
        FlowGenerator(4, 2, 0, n_sampling_steps=0)
    with pytest.raises(ValueError, match="frame"):
        FlowGenerator(4, 2, 0, frame="local")
    with pytest.raises(ValueError, match="frame_scale"):
        FlowGenerator(4, 2, 0, frame_scale="sqrt")
    # a head linear in the scale: its output is the softplus of the raw output, floored
    linear = FlowGenerator(4, 2, 0, frame_scale="linear")
    condition = torch.randn(5, 2)
    _, raw = linear.frame_head(condition).chunk(2, dim=-1)
    _, log_scale = linear.frame(condition)
    torch.testing.assert_close(log_scale.exp(), torch.nn.functional.softplus(raw) + 0.02)
    gen = FlowGenerator(4, 2, 0)
    with pytest.raises(ValueError, match="ODE method"):
        gen.sample(torch.zeros(3, 2), torch.zeros(3, 0), method="ddim")


def _logit(t):
    return np.log(t / (1 - t))


#: cumulative distribution functions of the training times t in (0, 1)
_TIME_CDFS = {
    "uniform": lambda t: t,
    "logit_normal": lambda t: stats.norm.cdf(_logit(t)),
}


@pytest.mark.parametrize("distribution", sorted(_TIME_CDFS))
def test_training_times_follow_the_chosen_distribution(distribution):
    with pytest.raises(ValueError, match="time_distribution"):
        FlowGenerator(4, 2, 0, time_distribution="beta")
    assert FlowGenerator(1, 2, 0).time_distribution == "uniform"  # the default
    gen = FlowGenerator(1, 2, 0, time_distribution=distribution)
    torch.manual_seed(0)
    n = 20_000
    t = gen.inference(torch.zeros(n, 1), None, None)["t"].double().numpy()
    assert t.min() > 0 and t.max() < 1
    # Kolmogorov-Smirnov distance to the intended law below its 0.1% critical value
    # (1.95 / sqrt(n)), and above 5 times that against the other law
    critical = 1.95 / math.sqrt(n)
    for name, cdf in _TIME_CDFS.items():
        distance = stats.kstest(t, cdf).statistic
        assert distance < critical if name == distribution else distance > 5 * critical


def test_conditioning_once_per_distinct_row_equals_conditioning_per_cell():
    torch.manual_seed(0)
    net = TimeConditionedMLP(6, 3, n_hidden=16, n_layers=2).eval()
    x = torch.randn(10, 6)
    t, c = torch.rand(3), torch.randn(3, 3)
    index = torch.tensor([0, 0, 1, 2, 2, 2, 1, 0, 1, 2])
    torch.testing.assert_close(net(x, t, c, index), net(x, t[index], c[index]))


@pytest.mark.parametrize("frame", ["source", "set"])
def test_frame_is_trained_by_the_gaussian_likelihood_and_the_flow_from_it(frame):
    torch.manual_seed(0)
    gen = FlowGenerator(3, 2, 0, n_hidden=16, n_layers=1, frame=frame)
    x, z = torch.randn(8, 3), torch.randn(8, 2)
    latent, out = gen(x, x, z, torch.zeros(8, 0))
    reconstruction, kl = gen.loss(x, latent, out)
    assert reconstruction.shape == kl.shape == (8,) and (kl == 0).all()
    loc, log_scale = out["loc"], out["log_scale"]
    residual = (latent["x1"] - loc) * torch.exp(-log_scale)
    nll = (0.5 * residual**2 + log_scale).sum(-1)
    # the straight path from noise: from the frame's Gaussian to the cell, or from N(0, I) to
    # the cell in the frame's coordinates; the error is measured in the frame's units
    noise, scale = latent["y0"], log_scale.detach().exp()
    if frame == "source":
        velocity, units = latent["x1"] - (loc.detach() + scale * noise), scale
    else:
        velocity, units = residual.detach() - noise, torch.ones_like(scale)
    torch.testing.assert_close(out["velocity"], velocity)
    flow = ((out["velocity_pred"] - out["velocity"]) / units).pow(2).sum(-1)
    torch.testing.assert_close(reconstruction, flow + nll)
    # the flow's target does not move the frame: only the likelihood trains it
    flow.sum().backward()
    assert all(p.grad is None or (p.grad == 0).all() for p in gen.frame_head.parameters())
    # without a frame there is no likelihood term
    plain = FlowGenerator(3, 2, 0, n_hidden=16, n_layers=1, frame="global")
    latent, out = plain(x, x, z, torch.zeros(8, 0))
    reconstruction, _ = plain.loss(x, latent, out)
    torch.testing.assert_close(
        reconstruction, (out["velocity_pred"] - out["velocity"]).pow(2).sum(-1)
    )


# Conditional Gaussians whose mean is a linear function of z and whose two coordinates are
# correlated (rho = 0.8) with a spread 2.5x narrower than the marginal one: the frame gives the
# location and the per-feature spread, the flow must add the correlation.
OFFSET, SCALE, SIGMA, RHO = torch.tensor([3.0, -1.0]), 2.0, 0.5, 0.8


@pytest.mark.parametrize(
    ("frame", "frame_scale"),
    [("source", "log"), ("source", "linear"), ("set", "log"), ("global", "log")],
)
def test_flow_learns_correlated_conditional_gaussians(frame, frame_scale):
    n_train, n_samples = 20_000, 2_000
    rng = torch.Generator().manual_seed(0)
    z_train = torch.rand(n_train, 2, generator=rng) * 2 - 1
    e1, e2 = torch.randn(2, n_train, generator=rng)
    noise = torch.stack([e1, RHO * e1 + math.sqrt(1 - RHO**2) * e2], dim=-1)
    x_train = OFFSET + SCALE * z_train + SIGMA * noise
    torch.manual_seed(0)
    gen = FlowGenerator(
        2,
        2,
        0,
        n_hidden=64,
        n_layers=2,
        frame=frame,
        frame_scale=frame_scale,
    )
    gen.set_feature_statistics(mean=x_train.mean(0), std=x_train.std(0))
    n_steps, batch = 1_000, 512
    optimizer = torch.optim.Adam(gen.parameters(), lr=2e-3)
    decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1 - i / n_steps)
    for _ in range(n_steps):
        idx = torch.randint(0, n_train, (batch,), generator=rng)
        x, z = x_train[idx], z_train[idx]
        reconstruction, _ = gen.loss(x, *gen(x, x, z, torch.zeros(batch, 0)))
        optimizer.zero_grad()
        reconstruction.mean().backward()
        optimizer.step()
        decay.step()
    gen.eval()

    z_test = torch.tensor([[-0.8, -0.8], [0.0, 0.5], [0.8, -0.3]])
    true_means = OFFSET + SCALE * z_test  # 1.0 to 3.2 apart in each coordinate
    z_rows = z_test.repeat_interleave(n_samples, 0)
    # Sampling error at 2,000 draws: 4 standard errors of a mean are 4 * 0.5 / sqrt(2000) =
    # 0.045, of a standard deviation about 6%, of a correlation of 0.8 about 4 * (1 - 0.64) /
    # sqrt(2000) = 0.032. On top we allow a model error of 0.1 sigma for the means, 10% for
    # the spreads and 0.1 for the correlation (1,000 small Adam steps). A generator that ignored
    # z would be 1.0 to 1.6 off in the means and 2.5x too wide; one without the correlation
    # would be 0.8 off.
    for method, n_sampling_steps in (("euler", 20), ("midpoint", 10), ("heun", 10)):
        torch.manual_seed(1)
        x = gen.sample(z_rows, torch.zeros(len(z_rows), 0), None, n_sampling_steps, method)
        x = x.view(len(z_test), n_samples, 2)
        mean_error = (x.mean(1) - true_means).abs().max().item()
        spread_error = (x.std(1) / SIGMA - 1).abs().max().item()
        correlation = torch.stack([torch.corrcoef(cells.T)[0, 1] for cells in x])
        assert mean_error < 0.045 + 0.05, (method, mean_error)
        assert spread_error < 0.06 + 0.10, (method, spread_error)
        assert (correlation - RHO).abs().max().item() < 0.032 + 0.1, (method, correlation)


# ---------------------------------------------------------------------- defaults of GDE
@pytest.fixture(scope="module")
def log_normalised():
    adata = small_demo(6, 20, 40)
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    return adata


def test_continuous_data_default_to_gaussian_flow(log_normalised):
    adata = log_normalised.copy()
    GDE.setup_anndata(adata, group_key="sample")
    model = GDE(adata, n_latent=4)
    assert (model.module.likelihood, model.generator_name_) == ("gaussian", "flow")
    assert isinstance(model.module.generator, FlowGenerator)
    # the encoder reads the data standardised with their own statistics
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    np.testing.assert_allclose(model.module.input_mean.numpy(), x.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        model.module.input_std.numpy(), np.maximum(x.std(0), 1e-3), rtol=1e-4, atol=1e-6
    )
    scvi.settings.seed = 0
    model.train(max_epochs=2, set_size=8, groups_per_batch=4, enable_progress_bar=False)
    generated = model.sample(n_cells=5, seed=0)
    assert generated.shape == (5 * adata.obs["sample"].nunique(), adata.n_vars)
    assert np.isfinite(generated.X).all()
    # cells stay within the range of the training data
    assert generated.X.min() >= x.min(0).min() - 1e-5
    assert (generated.X <= x.max(0) + 1e-4).all()


def test_a_continuous_generator_implies_the_gaussian_likelihood(log_normalised):
    adata = log_normalised.copy()
    GDE.setup_anndata(adata, group_key="sample")
    for generator in ("diffusion", "flow"):
        model = GDE(adata, n_latent=4, generator=generator)
        assert model.module.likelihood == "gaussian"
    # an explicit count likelihood for a continuous generator is still refused clearly
    with pytest.raises(ValueError, match="non-integer values"):
        GDE(adata, n_latent=4, generator="flow", likelihood="nb")
    counts = log_normalised.copy()
    GDE.setup_anndata(counts, group_key="sample", layer="counts")
    with pytest.raises(ValueError, match="continuous data, not counts"):
        GDE(counts, n_latent=4, generator="flow", likelihood="nb")
    with pytest.raises(ValueError, match="Unknown generator"):
        GDE(adata, generator="gan")


def test_counts_default_to_the_nb_cvae(log_normalised):
    adata = log_normalised.copy()
    GDE.setup_anndata(adata, group_key="sample", layer="counts")
    model = GDE(adata, n_latent=4)
    assert (model.module.likelihood, model.generator_name_) == ("nb", "cvae")
    # count data have no input standardisation (the encoder reads log1p-normalised counts)
    assert (model.module.input_mean == 0).all() and (model.module.input_std == 1).all()
    # a continuous generator on raw counts says what to do, unless asked for explicitly
    with pytest.raises(ValueError, match="raw counts"):
        GDE(adata, generator="flow")
    explicit = GDE(adata, n_latent=4, generator="flow", likelihood="gaussian")
    assert isinstance(explicit.module.generator, FlowGenerator)


def test_input_statistics_are_for_continuous_data_only():
    with pytest.raises(ValueError, match="continuous data only"):
        GDEModule(4, likelihood="nb", feature_statistics={"mean": np.zeros(4)})
    statistics = {"mean": np.array([1.0, 2.0, 3.0]), "std": np.ones(3) * 2, "max": np.ones(3)}
    module = GDEModule(3, likelihood="gaussian", generator="flow", feature_statistics=statistics)
    x = torch.tensor([[3.0, 2.0, 1.0]])
    torch.testing.assert_close(module.encoder_input(x), torch.tensor([[1.0, 0.0, -1.0]]))
    # the generator receives the same statistics; those not given keep their neutral values
    torch.testing.assert_close(module.generator.feature_std, torch.ones(3) * 2)
    torch.testing.assert_close(module.generator.feature_max, torch.ones(3))
    assert torch.isneginf(module.generator.feature_min).all()


# ---------------------------------------------------------------------------- recipe
def test_learning_rate_warms_up_in_steps_and_is_scaled_with_the_batch_of_sets(log_normalised):
    adata = log_normalised.copy()
    GDE.setup_anndata(adata, group_key="sample")
    model = GDE(adata, n_latent=4)
    model.train(
        max_epochs=10_000,
        max_steps=3,
        set_size=8,
        groups_per_batch=4,
        plan_kwargs={"lr_warmup_steps": 10},
        enable_progress_bar=False,
    )
    plan = model.trainer.lightning_module
    base = 1e-3 * 4 / 16  # scaled linearly with the sets per step
    assert plan.lr == pytest.approx(base)
    # after 3 optimizer steps the warm-up is at 4 / 10 of the learning rate
    assert model.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(base * 4 / 10)
    # the CVAE's KL warm-up is in steps, capped at 1,000 whatever the epoch cap
    assert plan.n_epochs_kl_warmup is None and plan.n_steps_kl_warmup == 1_000
    # by default the learning-rate warm-up is a tenth of the planned steps, at most 200
    model.train(max_epochs=3, set_size=8, groups_per_batch=4, enable_progress_bar=False)
    plan = model.trainer.lightning_module
    planned = 3 * model.trainer.num_training_batches
    assert plan.lr_warmup_steps == min(200, planned // 10) < 200


class _TinyModule(torch.nn.Linear):
    """The least a training plan needs: parameters and a ``loss``."""

    def __init__(self):
        super().__init__(2, 1)

    def loss(self, tensors, inference_outputs, generative_outputs):
        raise NotImplementedError


def test_weight_average_follows_its_formula_and_replaces_the_weights_at_the_end():
    module = _TinyModule()
    plan = GDETrainingPlan(module, ema_decay=0.9, lr_warmup_steps=0)
    with torch.no_grad():
        module.weight.fill_(1.0)
    plan.on_train_batch_end(None, None, 0)  # starts the average at the current weights
    values, expected = [3.0, -1.0, 5.0], torch.full((1, 2), 1.0)
    for k, value in enumerate(values, start=1):
        with torch.no_grad():
            module.weight.fill_(value)
        plan.on_train_batch_end(None, None, k)
        decay = min(0.9, (1 + k) / (10 + k))
        expected = decay * expected + (1 - decay) * value
    plan.on_train_end()
    torch.testing.assert_close(module.weight.data, expected)
    assert not torch.equal(module.weight.data, torch.full((1, 2), values[-1]))
    # without averaging the last weights stay
    plain = GDETrainingPlan(module, ema_decay=None)
    plain.on_train_batch_end(None, None, 0)
    plain.on_train_end()
    torch.testing.assert_close(module.weight.data, expected)
    for bad in ({"ema_decay": 1.0}, {"lr_warmup_steps": -1}, {"lr_warmup_steps": 1.5}):
        with pytest.raises(ValueError):
            GDETrainingPlan(module, **bad)


def test_variable_set_sizes_span_the_range_log_uniformly():
    groups = [np.arange(i * 1000, (i + 1) * 1000) for i in range(4)]
    sampler = GroupSetSampler(groups, 64, 4, n_batches=500, seed=0, min_set_size=8)
    sizes = np.concatenate([np.bincount(ids) for _, ids in sampler])
    assert sizes.min() >= 8 and sizes.max() <= 64
    # log-uniform on [8, 65): half of the sets below sqrt(8 * 65) = 22.8 (SE 0.011 at 2,000)
    assert abs(np.mean(sizes < 22.8) - 0.5) < 0.05
    assert np.mean(sizes >= 48) > 0.05
    fixed = GroupSetSampler(groups, 64, 4, n_batches=5, seed=0)
    assert all((np.bincount(ids) == 64).all() for _, ids in fixed)
    with pytest.raises(ValueError, match="min_set_size"):
        GroupSetSampler(groups, 64, 4, n_batches=5, min_set_size=65)
