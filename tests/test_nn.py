"""Unit tests of scgde.nn: set pooling, set encoders and conditional generators."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scgde.nn import (
    ENCODERS,
    GENERATORS,
    CVAEGenerator,
    DeepSetEncoder,
    make_encoder,
    make_generator,
    segment_mean,
    segment_sum,
)
from scgde.nn._segment import segment_counts

N_INPUT = 7
N_LATENT = 5
N_HIDDEN = 16

# Float32 tolerance of the encoder invariance tests. The invariances are exact in real
# arithmetic; in float32 only the order and number of terms of the pooled sums change. A mean of
# n <= 100 O(1) terms carries a rounding error of at most ~n * eps32 = 100 * 6e-8 = 6e-6
# (typically sqrt(n) * eps32 < 1e-6), and the LayerNorm'd MLPs after it are O(1)-Lipschitz at
# initialisation, so the embeddings (of size O(1)) agree to well within 1e-5.
ATOL = 1e-5

# derandomize: the same examples on every run, so the suite is reproducible
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


def _encoder(n_layers: int, seed: int = 0, n_input: int = N_INPUT) -> DeepSetEncoder:
    torch.manual_seed(seed)
    return DeepSetEncoder(
        n_input, N_LATENT, n_hidden=N_HIDDEN, n_layers=n_layers, dropout=0.0
    ).eval()


def _cells(n: int, seed: int, n_input: int = N_INPUT) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, n_input, generator=gen)


def _encode_one(encoder, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return encoder(x, torch.zeros(x.shape[0], dtype=torch.long), 1)[0]


# ----------------------------------------------------------------------------- segment ops
def _numpy_segments(values: np.ndarray, set_ids: np.ndarray, n_sets: int):
    sums = np.zeros((n_sets, values.shape[1]))
    counts = np.zeros(n_sets)
    for row, s in zip(values, set_ids, strict=True):
        sums[s] += row
        counts[s] += 1
    return sums, sums / counts[:, None]


def test_segment_sum_and_mean_match_numpy_loop():
    rng = np.random.default_rng(0)
    sizes = [1, 7, 3, 20]  # unequal set sizes
    set_ids = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))  # unsorted
    values = rng.normal(size=(set_ids.size, 6)).astype(np.float32)
    ref_sum, ref_mean = _numpy_segments(values.astype(np.float64), set_ids, len(sizes))

    t_values, t_ids = torch.from_numpy(values), torch.from_numpy(set_ids)
    got_sum = segment_sum(t_values, t_ids, len(sizes))
    got_mean = segment_mean(t_values, t_ids, len(sizes))

    assert got_sum.shape == got_mean.shape == (len(sizes), 6)
    assert got_sum.dtype == got_mean.dtype == torch.float32
    # <= 20 float32 terms of size O(1): rounding error <= 20 * 6e-8 ~ 1.2e-6
    np.testing.assert_allclose(got_sum.numpy(), ref_sum, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_mean.numpy(), ref_mean, rtol=1e-5, atol=1e-5)
    counts = segment_counts(t_ids, len(sizes), torch.float32)
    np.testing.assert_array_equal(counts.numpy().ravel(), sizes)


def test_segment_sum_gives_zero_for_trailing_empty_sets():
    values = torch.ones(3, 2)
    out = segment_sum(values, torch.tensor([0, 0, 1]), 4)
    np.testing.assert_array_equal(out.numpy(), [[2, 2], [1, 1], [0, 0], [0, 0]])


def test_replication_changes_segment_sum_but_not_segment_mean():
    # negative control: the replication test below would catch a sum-pooled encoder
    values = _cells(9, 1)
    set_ids = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1])
    k = 3
    rep_values, rep_ids = values.repeat(k, 1), set_ids.repeat(k)
    torch.testing.assert_close(
        segment_sum(rep_values, rep_ids, 3), k * segment_sum(values, set_ids, 3)
    )
    assert not torch.allclose(
        segment_sum(rep_values, rep_ids, 3), segment_sum(values, set_ids, 3), atol=0.1
    )
    torch.testing.assert_close(
        segment_mean(rep_values, rep_ids, 3), segment_mean(values, set_ids, 3), atol=ATOL, rtol=0
    )


# ------------------------------------------------------------------- encoder invariances
@pytest.mark.parametrize("n_layers", [0, 1, 3])
@SETTINGS
@given(n_cells=st.integers(1, 20), seed=st.integers(0, 2**16))
def test_deepset_permutation_invariance(n_layers, n_cells, seed):
    encoder = _encoder(n_layers, seed)
    x = _cells(n_cells, seed)
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(n_cells))
    torch.testing.assert_close(
        _encode_one(encoder, x[perm]), _encode_one(encoder, x), atol=ATOL, rtol=0
    )


@pytest.mark.parametrize("n_layers", [0, 1, 3])
@SETTINGS
@given(n_cells=st.integers(1, 20), k=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_deepset_replication_invariance(n_layers, n_cells, k, seed):
    encoder = _encoder(n_layers, seed)
    x = _cells(n_cells, seed)
    # each cell repeated k times, in shuffled order
    replicated = x.repeat(k, 1)[
        torch.from_numpy(np.random.default_rng(seed).permutation(k * n_cells))
    ]
    torch.testing.assert_close(
        _encode_one(encoder, replicated), _encode_one(encoder, x), atol=ATOL, rtol=0
    )


class _SumPooledDeepSet(DeepSetEncoder):
    """DeepSetEncoder with sum instead of mean pooling (not distribution invariant)."""

    def forward(self, x, set_ids, n_sets):
        p = self.project(x)
        h = self.embed_cells(p)
        for i in range(self.n_set_layers):
            h = self.set_layer(i, p, h, segment_sum(h, set_ids, n_sets), set_ids)
        return self.readout(segment_sum(h, set_ids, n_sets))


def test_mean_context_layer_equals_the_mlp_of_the_concatenated_states():
    # the layer applies the set half of its first linear map once per set; the definition is
    # the MLP of each cell's state concatenated with its set's mean state
    from scgde.nn._set_encoders import _MeanContextLayer

    torch.manual_seed(0)
    layer = _MeanContextLayer(N_HIDDEN, N_INPUT, dropout=0.0)
    h, injected = torch.randn(30, N_HIDDEN), torch.randn(30, N_HIDDEN)
    set_ids = torch.randint(0, 4, (30,))
    pooled = segment_mean(h, set_ids, 4)
    expected = layer.norm(h + layer.mlp(torch.cat([h, pooled[set_ids]], -1)) + injected)
    torch.testing.assert_close(layer(injected, h, pooled, set_ids), expected)


@pytest.mark.parametrize("n_layers", [0, 1, 3])
def test_sum_pooled_variant_fails_replication_check(n_layers):
    # negative control: the tolerance of the replication test is tight enough to catch sum pooling
    torch.manual_seed(0)
    encoder = _SumPooledDeepSet(N_INPUT, N_LATENT, n_hidden=N_HIDDEN, n_layers=n_layers).eval()
    x = _cells(10, 0)
    diff = (_encode_one(encoder, x.repeat(3, 1)) - _encode_one(encoder, x)).abs().max()
    assert diff > 100 * ATOL


@pytest.mark.parametrize("n_layers", [0, 1, 3])
def test_deepset_distinguishes_different_sets(n_layers):
    # guards the invariance tests against a trivially constant encoder
    encoder = _encoder(n_layers)
    a, b = _cells(30, 1), _cells(30, 2) * 2 + 1
    assert (_encode_one(encoder, a) - _encode_one(encoder, b)).abs().max() > 100 * ATOL


@pytest.mark.parametrize("n_layers", [0, 1, 3])
def test_deepset_interleaved_sets_match_sets_encoded_alone(n_layers):
    encoder = _encoder(n_layers, seed=3)
    sizes = [1, 4, 11, 25]
    sets = [_cells(n, 10 + i) + i for i, n in enumerate(sizes)]
    x = torch.cat(sets)
    set_ids = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    perm = torch.from_numpy(np.random.default_rng(0).permutation(x.shape[0]))
    with torch.no_grad():
        flat = encoder(x[perm], set_ids[perm], len(sizes))
    assert flat.shape == (len(sizes), N_LATENT)
    alone = torch.stack([_encode_one(encoder, s) for s in sets])
    torch.testing.assert_close(flat, alone, atol=ATOL, rtol=0)


def test_deepset_eval_mode_with_dropout_is_deterministic_and_train_mode_is_not():
    torch.manual_seed(0)
    encoder = DeepSetEncoder(N_INPUT, N_LATENT, n_hidden=N_HIDDEN, n_layers=2, dropout=0.5)
    x = _cells(50, 0)
    encoder.eval()
    torch.testing.assert_close(_encode_one(encoder, x), _encode_one(encoder, x), atol=0, rtol=0)
    encoder.train()
    assert not torch.equal(_encode_one(encoder, x), _encode_one(encoder, x))


# ---------------------------------------------------------------------- streaming encoding
def _chunk_factory(x, set_ids, chunk_size, calls):
    """Chunks of ``chunk_size`` rows; each call appends to ``calls`` the number of chunks it
    yielded."""

    def chunks():
        calls.append(0)
        for start in range(0, x.shape[0], chunk_size):
            calls[-1] += 1
            yield x[start : start + chunk_size], set_ids[start : start + chunk_size]

    return chunks


@pytest.mark.parametrize("n_layers", [0, 2])
@pytest.mark.parametrize("shuffle", [False, True])
def test_encode_streaming_equals_forward(n_layers, shuffle):
    sizes = [2500, 1700, 800]
    encoder = _encoder(n_layers, seed=5, n_input=20)
    x = torch.cat([_cells(n, 20 + i, n_input=20) * (1 + i) for i, n in enumerate(sizes)])
    set_ids = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    if shuffle:  # chunks interleave the sets in arbitrary order
        perm = torch.from_numpy(np.random.default_rng(1).permutation(x.shape[0]))
        x, set_ids = x[perm], set_ids[perm]
    with torch.no_grad():
        one_shot = encoder(x, set_ids, 3)
    calls = []
    streamed = encoder.encode_streaming(_chunk_factory(x, set_ids, 97, calls), n_sets=3)
    assert streamed.shape == (3, N_LATENT)
    assert len(calls) == 1  # the projections of the first pass serve the later ones
    uncached_calls = []
    uncached = encoder.encode_streaming(
        _chunk_factory(x, set_ids, 97, uncached_calls), n_sets=3, cache_bytes=0
    )
    # without a cache: every pass reads every chunk
    assert uncached_calls == [-(-x.shape[0] // 97)] * (n_layers + 1)
    # a budget for about half the chunks: the first pass keeps the last ones that fit, and
    # later passes read only the chunks before them
    n_chunks = -(-x.shape[0] // 97)
    state_width = encoder.embed_cells(encoder.project(x[:1])).shape[1]
    row_bytes = (encoder.project(x[:1]).shape[1] + state_width) * 4
    half_calls = []
    half = encoder.encode_streaming(
        _chunk_factory(x, set_ids, 97, half_calls), 3, cache_bytes=row_bytes * x.shape[0] // 2
    )
    assert half_calls[0] == n_chunks and len(half_calls) == (n_layers + 1 if n_layers else 1)
    if n_layers:
        assert all(abs(n - n_chunks / 2) <= 2 for n in half_calls[1:])
    # float32 one-shot sums of up to 2,500 terms: error ~ sqrt(n) * eps32 ~ 3e-6 relative
    for result in (streamed, uncached, half):
        torch.testing.assert_close(result, one_shot, rtol=1e-5, atol=1e-5)


def test_encode_streaming_raises_when_a_set_gets_no_cells():
    encoder = _encoder(1)
    x = _cells(30, 0)
    set_ids = torch.tensor([0, 2] * 15)  # set 1 receives no cells
    with pytest.raises(ValueError, match="at least one cell"):
        encoder.encode_streaming(_chunk_factory(x, set_ids, 7, []), n_sets=3)
    with pytest.raises(ValueError, match="at least one cell"):
        encoder.encode_streaming(lambda: iter(()), n_sets=1)


@SETTINGS
@given(
    budget=st.integers(64, 4_000),
    rows=st.lists(st.integers(0, 12), min_size=1, max_size=40),
)
def test_projection_spill_keeps_the_newest_chunks_within_its_budget(tmp_path_factory, budget, rows):
    """The spill file is a ring: each chunk reads back bit for bit, the chunks dropped to make
    room are always the oldest (so the caller's chunks to read again stay a prefix of the
    stream), and the file never grows beyond the budget."""
    from scgde.nn._projection_spill import ProjectionSpill

    spill = ProjectionSpill(tmp_path_factory.mktemp("spill"), budget)
    generator = torch.Generator().manual_seed(budget)
    stored, n_dropped = [], 0
    for n in rows:
        chunk = [
            torch.randn(n, 5, generator=generator),
            torch.arange(n),
            torch.rand(n, generator=generator, dtype=torch.float64),
        ]
        n_dropped += spill.put(chunk)
        stored.append(chunk)
        assert len(spill) == len(stored) - n_dropped
        for read, written in zip(spill, stored[n_dropped:], strict=True):
            for a, b in zip(read, written, strict=True):
                assert a.dtype == b.dtype and torch.equal(a, b)
        if spill._file is not None:
            assert spill._file.seek(0, 2) <= budget
    spill.close()
    assert len(spill) == 0


def test_default_spill_budget_is_half_the_smaller_of_free_disk_and_available_memory(
    tmp_path, monkeypatch
):
    from types import SimpleNamespace

    from scgde.nn import _projection_spill

    for free, available in [(100 * 2**30, 8 * 2**30), (2 * 2**30, 8 * 2**30)]:
        monkeypatch.setattr(
            _projection_spill.shutil, "disk_usage", lambda folder, f=free: SimpleNamespace(free=f)
        )
        monkeypatch.setattr(
            _projection_spill.psutil,
            "virtual_memory",
            lambda a=available: SimpleNamespace(available=a),
        )
        assert _projection_spill.default_spill_bytes(tmp_path) == min(free, available) // 2
        assert _projection_spill.ProjectionSpill(tmp_path).budget == min(free, available) // 2


@pytest.mark.parametrize(("cache_chunks", "spill_chunks"), [(0, None), (0, 10), (8, 10)])
def test_encode_streaming_reads_spilled_projections_instead_of_the_data(
    tmp_path, cache_chunks, spill_chunks
):
    """Chunks beyond the memory budget go to the spill file and later passes read them from
    there; only chunks beyond both budgets are read from the data again. The result is the
    same."""
    encoder = _encoder(2, seed=5, n_input=20)
    x = _cells(3000, 3, n_input=20)
    set_ids = torch.randint(0, 3, (3000,), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        one_shot = encoder(x, set_ids, 3)
    p = encoder.project(x[:97])
    kept_bytes = p.numel() * 4 + encoder.embed_cells(p).numel() * 4  # one chunk in memory
    spilled_bytes = -(-p.numel() * 4 // 64) * 64 + -(-97 * 8 // 64) * 64  # one chunk in the file
    calls = []
    streamed = encoder.encode_streaming(
        _chunk_factory(x, set_ids, 97, calls),
        3,
        cache_bytes=cache_chunks * kept_bytes,
        spill_dir=tmp_path,
        spill_bytes=None if spill_chunks is None else spill_chunks * spilled_bytes,
    )
    n_chunks = -(-3000 // 97)
    if spill_chunks is None:  # room for every chunk: the data are read once
        assert calls == [n_chunks]
    else:  # later passes read the chunks before the last cache_chunks + spill_chunks
        assert calls == [n_chunks] + [n_chunks - cache_chunks - spill_chunks] * 2
    torch.testing.assert_close(streamed, one_shot, rtol=1e-5, atol=1e-5)
    assert list(tmp_path.iterdir()) == []  # the spill file is gone


def test_weighted_chunks_survive_the_spill_file(tmp_path):
    """Weighted chunks ``(x, set_ids, weights)`` keep their weights through the spill file:
    the same embedding as with every chunk kept in memory."""
    encoder = _encoder(2, seed=6, n_input=20)
    x = _cells(1000, 8, n_input=20)
    set_ids = torch.randint(0, 2, (1000,), generator=torch.Generator().manual_seed(9))
    weights = torch.rand(1000, generator=torch.Generator().manual_seed(10), dtype=torch.float64)

    def chunks():
        for start in range(0, 1000, 97):
            part = slice(start, start + 97)
            yield x[part], set_ids[part], weights[part]

    kept = encoder.encode_streaming(chunks, 2)
    spilled = encoder.encode_streaming(chunks, 2, cache_bytes=0, spill_dir=tmp_path)
    torch.testing.assert_close(spilled, kept, rtol=1e-6, atol=1e-6)
    unweighted = encoder.encode_streaming(lambda: ((a, b) for a, b, _ in chunks()), 2)
    assert not torch.allclose(kept, unweighted, atol=1e-3)  # the weights matter here


# ------------------------------------------------------------------------------ registries
# ------------------------------------------------------------------------ baseline encoders
@pytest.mark.parametrize("name", ["kme", "mean"])
@SETTINGS
@given(n_cells=st.integers(1, 20), k=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_baseline_encoders_are_distribution_invariant(name, n_cells, k, seed):
    torch.manual_seed(0)
    encoder = make_encoder(name, N_INPUT, N_LATENT).eval()
    x = _cells(n_cells, seed)
    reference = _encode_one(encoder, x)
    permuted = x[torch.randperm(n_cells, generator=torch.Generator().manual_seed(seed))]
    torch.testing.assert_close(_encode_one(encoder, permuted), reference, atol=ATOL, rtol=0)
    torch.testing.assert_close(_encode_one(encoder, x.repeat(k, 1)), reference, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["kme", "mean"])
def test_baseline_encoders_stream_exactly(name):
    torch.manual_seed(0)
    encoder = make_encoder(name, N_INPUT, N_LATENT).eval()
    x = _cells(3000, seed=1)
    set_ids = torch.randint(0, 3, (3000,), generator=torch.Generator().manual_seed(2))
    calls = []
    streamed = encoder.encode_streaming(_chunk_factory(x, set_ids, 97, calls), 3)
    with torch.no_grad():
        torch.testing.assert_close(streamed, encoder(x, set_ids, 3), atol=ATOL, rtol=1e-5)
    assert len(calls) == 1  # no set layers: a single pass over the cells


def test_mean_encoder_is_a_linear_map_of_the_set_mean():
    torch.manual_seed(0)
    encoder = make_encoder("mean", N_INPUT, N_LATENT)
    x = _cells(40, seed=3)
    with torch.no_grad():
        expected = encoder.head(x.mean(0))
        torch.testing.assert_close(_encode_one(encoder, x), expected, atol=1e-6, rtol=0)


def test_kme_features_approximate_a_gaussian_kernel():
    # Random Fourier features: E[phi(x) . phi(y)] = exp(-|x - y|^2 / (2 bandwidth^2)); each
    # feature pair contributes a term bounded by 2/D in absolute value, so with D = 20,000 the
    # estimate has standard deviation below 1 / sqrt(D) ~ 0.007: 0.03 is > 4 standard deviations.
    encoder = make_encoder("kme", 3, 2, n_features=20_000, bandwidth=1.5, seed=0)
    x = _cells(6, seed=4, n_input=3)
    with torch.no_grad():
        features = encoder.embed_cells(encoder.project(x))
    approx = features @ features.T
    exact = torch.exp(-(torch.cdist(x, x) ** 2) / (2 * 1.5**2))
    torch.testing.assert_close(approx, exact, atol=0.03, rtol=0)


def test_kme_bandwidth_is_trained():
    encoder = make_encoder("kme", N_INPUT, N_LATENT, n_features=64)
    x = _cells(30, seed=5)
    encoder(x, torch.zeros(30, dtype=torch.long), 1).sum().backward()
    assert encoder.log_bandwidth.grad is not None and encoder.log_bandwidth.grad.abs() > 0
    assert {name for name, _ in encoder.named_buffers()} == {"frequencies", "phases"}


def test_registries_and_factories():
    assert "deepset" in ENCODERS
    assert "cvae" in GENERATORS
    encoder = make_encoder("deepset", N_INPUT, N_LATENT, n_hidden=8, n_layers=1)
    assert isinstance(encoder, DeepSetEncoder)
    assert encoder.n_set_layers == 1
    generator = make_generator("cvae", N_INPUT, N_LATENT, 2, "zinb", n_hidden=8)
    assert isinstance(generator, CVAEGenerator)
    assert generator.likelihood == "zinb"
    with pytest.raises(ValueError, match="nope"):
        make_encoder("nope", N_INPUT, N_LATENT)
    with pytest.raises(ValueError, match="nope"):
        make_generator("nope", N_INPUT, N_LATENT, 0, "nb")
    with pytest.raises(ValueError, match="likelihood"):
        CVAEGenerator(N_INPUT, N_LATENT, 0, likelihood="bernoulli")


# ------------------------------------------------------------------------------ generator
def _count_data(n_cells, n_genes, seed):
    rng = np.random.default_rng(seed)
    x = rng.poisson(rng.gamma(2.0, 2.0, size=(n_cells, n_genes))).astype(np.float32)
    return torch.from_numpy(x)


@pytest.mark.parametrize("likelihood", ["nb", "zinb", "poisson", "gaussian"])
def test_cvae_forward_loss_gradients_and_sample(likelihood):
    n_cells, n_genes, n_cov = 40, 12, 3
    torch.manual_seed(0)
    gen = CVAEGenerator(
        n_genes, N_LATENT, n_cov, likelihood=likelihood, n_latent_cell=4, n_hidden=16
    )
    x = _count_data(n_cells, n_genes, 0)
    if likelihood == "gaussian":
        x = torch.log1p(x)
    x_in = torch.log1p(x)
    z = torch.randn(n_cells, N_LATENT, requires_grad=True)
    cov = torch.randn(n_cells, n_cov)

    reconstruction, kl = gen.loss(x, *gen(x, x_in, z, cov))
    assert reconstruction.shape == kl.shape == (n_cells,)
    assert torch.isfinite(reconstruction).all() and torch.isfinite(kl).all()
    assert (kl >= 0).all()
    # the reconstruction term reaches the cell encoder through the reparameterised sample of u
    encoder_grads = torch.autograd.grad(
        reconstruction.mean(), list(gen.cell_encoder.parameters()), retain_graph=True
    )
    assert all(torch.isfinite(g).all() for g in encoder_grads)
    assert sum(g.abs().sum() for g in encoder_grads) > 0
    (reconstruction + kl).mean().backward()

    assert z.grad is not None and z.grad.abs().sum() > 0  # gradient reaches the set encoder
    unused = {"log_gene_param"} if likelihood == "poisson" else set()
    for name, param in gen.named_parameters():
        if name in unused:
            assert param.grad is None, name
        else:
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
            assert param.grad.abs().sum() > 0, name
    assert hasattr(gen, "decoder_dropout") == (likelihood == "zinb")

    gen.eval()
    library = x.sum(-1, keepdim=True) if likelihood != "gaussian" else None
    with torch.no_grad():
        samples = gen.sample(z[:25], cov[:25], None if library is None else library[:25])
        latent = gen.cell_latent(x_in, z)
    assert samples.shape == (25, n_genes)
    assert torch.isfinite(samples).all()
    assert latent.shape == (n_cells, 4)
    if likelihood != "gaussian":
        assert (samples >= 0).all()
        assert torch.equal(samples, torch.round(samples))


@pytest.mark.parametrize("likelihood", ["nb", "zinb", "poisson"])
def test_cvae_loss_finite_for_a_cell_with_no_counts(likelihood):
    torch.manual_seed(0)
    gen = CVAEGenerator(6, N_LATENT, 0, likelihood=likelihood, n_hidden=8)
    x = _count_data(5, 6, 1)
    x[2] = 0
    reconstruction, kl = gen.loss(
        x, *gen(x, torch.log1p(x), torch.randn(5, N_LATENT), torch.zeros(5, 0))
    )
    assert torch.isfinite(reconstruction).all() and torch.isfinite(kl).all()


def _nb_reference_in_float64(x, mu, theta):
    """scvi-tools' ``NegativeBinomial.log_prob`` on the whole matrix, in float64, with its
    gradients with respect to ``mu`` and ``theta``."""
    from scvi.distributions import NegativeBinomial

    mu64 = mu.detach().double().requires_grad_()
    theta64 = theta.detach().double().requires_grad_()
    log_likelihood = NegativeBinomial(mu=mu64, theta=theta64).log_prob(x.double()).sum(-1)
    log_likelihood.sum().backward()
    return log_likelihood.detach(), mu64.grad, theta64.grad


def test_negative_binomial_log_likelihood_matches_scvi_values_and_gradients():
    from scgde.nn._negative_binomial import negative_binomial_log_likelihood

    torch.manual_seed(0)
    n_cells, n_genes = 300, 50
    x = torch.poisson(torch.rand(n_cells, n_genes) * 3) * (torch.rand(n_cells, n_genes) < 0.3)
    x[0] = 0  # a cell with no counts
    x[:, 1] = 0  # a gene with no counts
    x[5, 7] = 500  # a large count
    mu = (torch.rand(n_cells, n_genes) * 5).requires_grad_()
    # inverse dispersions from 0.02 to 400: small theta is where lgamma(x + theta) and
    # lgamma(theta) nearly cancel
    theta = torch.exp(torch.linspace(-4, 6, n_genes)).requires_grad_()

    log_likelihood = negative_binomial_log_likelihood(x, mu, theta)
    log_likelihood.sum().backward()
    expected, mu_grad, theta_grad = _nb_reference_in_float64(x, mu, theta)

    # float32 against float64: relative errors of a few float32 epsilons (1.2e-7) per entry,
    # accumulated over the 50 genes of a cell and the 300 cells of a gene's theta gradient
    np.testing.assert_allclose(log_likelihood.detach().double(), expected, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(mu.grad.double(), mu_grad, rtol=1e-5, atol=1e-6)
    theta_scale = theta_grad.abs().max()
    assert (theta.grad.double() - theta_grad).abs().max() < 1e-4 * theta_scale
    assert log_likelihood[0] < 0 and torch.isfinite(log_likelihood).all()


def test_cvae_nb_loss_equals_scvi_log_prob():
    torch.manual_seed(0)
    gen = CVAEGenerator(12, N_LATENT, 2, likelihood="nb", n_hidden=16)
    with torch.no_grad():
        gen.log_gene_param.copy_(torch.linspace(-3, 3, 12))
    x = _count_data(30, 12, 2)
    x[3] = 0
    latent, generative_outputs = gen(
        x, torch.log1p(x), torch.randn(30, N_LATENT), torch.randn(30, 2)
    )
    reconstruction, _ = gen.loss(x, latent, generative_outputs)
    expected = -generative_outputs["px"].log_prob(x).sum(-1)
    torch.testing.assert_close(reconstruction, expected, rtol=1e-5, atol=1e-4)


def _set_prior_output(gen, output):
    """Make the prior network output ``output`` for every input (zero last weights)."""
    last = [m for m in gen.prior_network.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(output)


def test_cvae_mixture_prior_weights_means_and_samples():
    torch.manual_seed(0)
    k, d = 3, 2
    gen = CVAEGenerator(
        N_INPUT, N_LATENT, 0, likelihood="gaussian", n_latent_cell=d, n_hidden=8, prior_components=k
    )
    weights = torch.tensor([0.2, 0.3, 0.5])
    means = torch.tensor([[-6.0, 0.0], [0.0, 6.0], [6.0, 0.0]])
    log_var = torch.full((k, d), 2 * np.log(0.5))  # standard deviation 0.5
    _set_prior_output(gen, torch.cat([weights.log(), torch.cat([means, log_var], -1).ravel()]))
    n = 20_000
    u = gen.prior(torch.randn(n, N_LATENT), torch.zeros(n, 0)).sample()
    # each draw lies within 3 sd (0.5 each) of exactly one of the far-apart means
    component = torch.cdist(u, means).argmin(-1)
    assert (u - means[component]).abs().max() < 2.5
    shares = torch.bincount(component, minlength=k) / n
    # binomial standard error of a share: sqrt(0.25 / 20,000) = 0.0035; 5 of them
    torch.testing.assert_close(shares, weights, atol=0.018, rtol=0)
    std = torch.stack([u[component == j].std(0) for j in range(k)])
    torch.testing.assert_close(std, torch.full((k, d), 0.5), atol=0.05, rtol=0)


def test_cvae_mixture_prior_kl_estimate_is_unbiased():
    # with identical components the mixture is one Gaussian: the one-sample KL estimate must
    # average to the closed-form KL
    torch.manual_seed(0)
    k, d, n = 4, 3, 50_000
    gen = CVAEGenerator(
        N_INPUT, N_LATENT, 0, likelihood="gaussian", n_latent_cell=d, n_hidden=8, prior_components=k
    )
    prior_mean, prior_log_var = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([0.0, 0.4, -0.6])
    component = torch.cat([prior_mean, prior_log_var])
    _set_prior_output(gen, torch.cat([torch.randn(k), component.repeat(k)]))
    x = torch.randn(n, N_INPUT)
    z = torch.randn(n, N_LATENT)
    with torch.no_grad():
        latent, outputs = gen(x, x, z, torch.zeros(n, 0))
        _, kl = gen.loss(x, latent, outputs)
    exact = torch.distributions.kl_divergence(
        latent["qu"], torch.distributions.Normal(prior_mean, torch.exp(0.5 * prior_log_var))
    ).sum(-1)
    difference = kl - exact  # zero mean; its spread sets the tolerance (5 standard errors)
    assert difference.mean().abs() < 5 * difference.std() / np.sqrt(n)
    assert difference.std() > 0  # an estimate, not the closed form


def test_cvae_mixture_prior_trains_every_part():
    torch.manual_seed(0)
    gen = CVAEGenerator(
        N_INPUT,
        N_LATENT,
        2,
        likelihood="gaussian",
        n_latent_cell=3,
        n_hidden=8,
        prior_components=3,
        dropout=0.0,
    )
    x, z = torch.randn(20, N_INPUT), torch.randn(20, N_LATENT, requires_grad=True)
    reconstruction, kl = gen.loss(x, *gen(x, x, z, torch.randn(20, 2)))
    (reconstruction + kl).mean().backward()
    # the weights, means and scales of the components, the cell encoder and z all learn
    for name, param in gen.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert z.grad.abs().sum() > 0


def test_cvae_mixture_prior_needs_a_conditional_prior():
    with pytest.raises(ValueError, match="prior_components"):
        CVAEGenerator(N_INPUT, N_LATENT, 0, prior_components=2, conditional_prior=False)
    with pytest.raises(ValueError, match="prior_components"):
        CVAEGenerator(N_INPUT, N_LATENT, 0, prior_components=0)
    with pytest.raises(ValueError, match="prior_components"):
        CVAEGenerator(N_INPUT, N_LATENT, 0, prior_components=2.5)


def test_cvae_training_reduces_nb_loss():
    from scvi.distributions import NegativeBinomial

    n_cells, n_genes = 200, 20
    rng = np.random.default_rng(0)
    # sparse gene proportions and theta = 20: a structure the decoder can learn from its output
    # bias and log_gene_param alone, far from the uniform softmax and theta = 1 it starts with
    proportions = rng.dirichlet(np.full(n_genes, 0.2))
    library = rng.integers(500, 1500, size=(n_cells, 1))
    true_mu = torch.tensor(proportions * library, dtype=torch.float32)
    theta = torch.full((n_genes,), 20.0)
    torch.manual_seed(0)
    x = NegativeBinomial(mu=true_mu, theta=theta).sample().clone()
    x_in = torch.log1p(x / x.sum(-1, keepdim=True) * 1e4)
    z = torch.zeros(n_cells, N_LATENT)
    cov = torch.zeros(n_cells, 0)

    gen = CVAEGenerator(n_genes, N_LATENT, 0, likelihood="nb", n_hidden=32, dropout=0.0)
    optimizer = torch.optim.Adam(gen.parameters(), lr=1e-2)
    losses = []
    for _ in range(300):
        reconstruction, kl = gen.loss(x, *gen(x, x_in, z, cov))
        loss = (reconstruction + kl).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])

    # Oracle: the mean NLL under the true generating distribution (the KL term can be driven to
    # ~0 by ignoring u, so the optimum of the loss is close to it). The initial loss exceeds it by
    # ~30 nats per cell, while the only noise of this full-batch loss is the single draw of u
    # (well under 1 nat once averaged over 200 cells and 10 steps). Requiring that at least half
    # of the gap be closed is therefore met only by real learning of proportions and dispersion.
    oracle = -NegativeBinomial(mu=true_mu, theta=theta).log_prob(x).sum(-1).mean().item()
    assert first - oracle > 20  # the check is not vacuous
    assert last < first - 0.5 * (first - oracle), (first, last, oracle)
