"""Distribution-invariant set encoders.

Every encoder here is built from *mean pooling* only, so its output depends on the empirical
distribution of the set alone (invariant to permuting the cells and to replicating each cell K
times). An encoder is described by four pieces:

``project(x)``
    what each cell's input contributes, computed once per cell (e.g. all linear maps of the
    input, in one matrix product; the identity by default); ``projector()`` returns it with
    what it needs from the parameters prepared once, for a streaming pass;
``embed_cells(p)``
    per-cell states before any pooling, from the projections ``p``;
``set_layer(i, p, h, pooled, set_ids)``
    the i-th layer, which updates each cell's state ``h`` given the mean states ``pooled`` of
    the sets (one row per set; ``set_ids`` gives each cell's row);
``readout(pooled)``
    maps the final set means to the distribution embedding.

Because each pooling step is a mean, a set of any size can be encoded *exactly* in chunks with
``n_set_layers + 1`` streaming passes over its cells (see :meth:`SetEncoder.encode_streaming`);
the projections of the first pass are kept for the later ones within a memory budget, so the
input is read and projected once (beyond the budget, the chunks that do not fit go to a
temporary file if one is given, else are read again).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice

import torch
import torch.nn.functional as F
from torch import nn

from ._mlp import mlp
from ._projection_spill import ProjectionSpill
from ._segment import segment_mean, segment_sum

ChunkFactory = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]

#: Bytes of cell projections and states :meth:`SetEncoder.encode_streaming` keeps between its
#: passes by default (chunks beyond it are read and projected again), and what
#: ``get_distribution_embedding`` keeps for backed or lazy data: 512 MiB holds about 250,000
#: cells of a default deep set (~540 floats each), and keeps the peak memory of embedding a
#: 10^7-cell group from a backed file near 1 GB above the loaded model
#: (benchmarks/scale.py --one-group).
STREAMING_CACHE_BYTES = 2**29


class SetEncoder(nn.Module):
    """Base class of mean-pooled set encoders.

    Subclasses define ``projector()`` (returns ``project(x)``, what each cell's input
    contributes; default: the input itself), ``embed_cells(p)`` (per-cell states from the
    projections), ``set_layer(i, p, h, pooled, set_ids)`` (update each cell's state given the
    mean state of its set) and ``readout(pooled)`` (set means to the embedding); pooling is
    by means only, so :meth:`encode_streaming` encodes a set of any size exactly in
    ``n_set_layers + 1`` passes over chunks of its cells.
    """

    n_set_layers: int = 0

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Per-cell projections of the input, the only place the encoder reads it (``x`` may
        be a sparse CSR tensor)."""
        return self.projector()(x)

    def projector(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """``project(x)`` for a run of chunks whose parameters do not change in between
        (a streaming pass): what it needs from the parameters is prepared once."""
        return lambda x: x.to_dense() if x.layout == torch.sparse_csr else x

    def embed_cells(self, p: torch.Tensor) -> torch.Tensor:
        """Per-cell states before the first pooling, from the projections ``p``."""
        raise NotImplementedError

    def set_layer(
        self, i: int, p: torch.Tensor, h: torch.Tensor, pooled: torch.Tensor, set_ids: torch.Tensor
    ) -> torch.Tensor:
        """Update cell states ``h`` with layer ``i`` given the sets' mean states ``pooled``
        (``(n_sets, width)``; cell ``j`` is in set ``set_ids[j]``)."""
        raise NotImplementedError

    def readout(self, pooled: torch.Tensor) -> torch.Tensor:
        """Map the final per-set mean states to embeddings."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, set_ids: torch.Tensor, n_sets: int) -> torch.Tensor:
        """Encode the sets of a flat minibatch.

        Parameters
        ----------
        x
            ``(n_cells, n_input)`` encoder input.
        set_ids
            ``(n_cells,)`` set index of each cell.
        n_sets
            Number of sets; every set must contain at least one cell.

        Returns
        -------
        ``(n_sets, n_latent)`` distribution embeddings.
        """
        p = self.project(x)
        h = self.embed_cells(p)
        for i in range(self.n_set_layers):
            h = self.set_layer(i, p, h, segment_mean(h, set_ids, n_sets), set_ids)
        return self.readout(segment_mean(h, set_ids, n_sets))

    @torch.inference_mode()
    def encode_streaming(
        self,
        chunks: ChunkFactory,
        n_sets: int,
        cache_bytes: int = STREAMING_CACHE_BYTES,
        spill_dir: str | os.PathLike | None = None,
        spill_bytes: int | None = None,
    ) -> torch.Tensor:
        """Encode sets too large for memory, exactly, from a stream of cell chunks.

        Parameters
        ----------
        chunks
            Callable returning a fresh iterable of ``(x, set_ids)`` chunks covering every cell
            once, in the same order each time; it is called once when the projections of all
            chunks fit in ``cache_bytes``, else ``n_set_layers + 1`` times. A chunk
            ``(x, set_ids, weights)`` gives each row a weight ``>= 0`` in its set's means (a
            weighted set: weight ``k`` counts as ``k`` copies of the cell); a cell may then
            appear in several sets, one row per set, or a chunk ``(x, set_ids, weights, rows)``
            whose rows are ``x[rows]``: consecutive chunks sharing one ``x`` project it once.
        n_sets
            Number of sets; every set must receive a positive total weight.
        cache_bytes
            Memory for the cells' projections and states between passes. The first pass
            keeps the last chunks that fit; later passes read and project only the chunks
            before them (0: read every chunk in every pass).
        spill_dir
            Folder for a temporary file (``nn._projection_spill.ProjectionSpill``) that
            receives the projections of the chunks beyond ``cache_bytes``, so that later
            passes read them back instead of reading and projecting the data again; deleted
            before returning. ``None``: no file.
        spill_bytes
            Most bytes of that file; chunks beyond both budgets are read again. Default:
            ``nn._projection_spill.default_spill_bytes`` (half the free space of the
            folder and at most half the memory available).

        Returns
        -------
        ``(n_sets, n_latent)`` embeddings, equal (to float tolerance) to :meth:`forward` on all
        cells at once. Means are accumulated in float64.
        """
        spill = None if spill_dir is None else ProjectionSpill(spill_dir, spill_bytes)
        try:
            means = self._streaming_means(chunks, n_sets, cache_bytes, spill)
        finally:
            if spill is not None:
                spill.close()
        return self.readout(means[-1])

    def _streaming_means(
        self,
        chunks: ChunkFactory,
        n_sets: int,
        cache_bytes: int = STREAMING_CACHE_BYTES,
        spill: ProjectionSpill | None = None,
    ) -> list[torch.Tensor]:
        """The per-set mean states of every level, one streaming pass per level. The first
        pass keeps the last chunks whose projections and states fit in ``cache_bytes``, and
        moves the older ones to ``spill`` while it has room; later passes read only the
        chunks before those, recompute the states of the spilled chunks from their
        projections, and advance the kept states one level per pass."""
        means: list[torch.Tensor] = []
        dtype = next(self.parameters()).dtype
        # [projections, set ids, weights, states] of the kept chunks, oldest first
        kept: deque[list] = deque()
        kept_bytes, n_read_again = 0, 0
        for level in range(self.n_set_layers + 1):
            sums, counts = None, None
            read = islice(self._projected(chunks), None if level == 0 else n_read_again)
            stream = ([p, set_ids, w, None] for p, set_ids, w in read)
            spilled = ([p, set_ids, w, None] for p, set_ids, *w in spill or ())
            for entry in stream if level == 0 else chain(stream, spilled, kept):
                p, set_ids, weights, previous = entry
                if previous is None:
                    h = self._states_at_level(p, set_ids, means, level)
                else:
                    h = self.set_layer(level - 1, p, previous, means[level - 1], set_ids)
                entry[3] = h
                if level == 0:
                    kept.append(entry)
                    kept_bytes += _entry_bytes(entry)
                    while kept and kept_bytes > cache_bytes:  # the oldest: spilled or read again
                        old = kept.popleft()
                        kept_bytes -= _entry_bytes(old)
                        n_read_again += 1 if spill is None else spill.put([*old[:2], *old[2]])
                h = h.double()
                if weights:
                    w = _row_weights(weights, h)
                    chunk_sums = segment_sum(h * w, set_ids, n_sets)
                    chunk_counts = segment_sum(w, set_ids, n_sets)[:, 0]
                else:  # every row counts once
                    chunk_sums = segment_sum(h, set_ids, n_sets)
                    chunk_counts = torch.bincount(set_ids, minlength=n_sets).to(h.dtype)
                sums = chunk_sums if sums is None else sums + chunk_sums
                counts = chunk_counts if counts is None else counts + chunk_counts
            if sums is None or bool((counts <= 0).any()):
                raise ValueError("Every set must contain at least one cell of positive weight.")
            means.append((sums / counts.unsqueeze(-1)).to(dtype))
        return means

    @torch.inference_mode()
    def bootstrap_streaming(
        self, chunks: ChunkFactory, n_sets: int, n_replicates: int, seed: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings and their Poisson-bootstrap replicates, from a stream of cell chunks.

        Each replicate weights every cell by an independent Poisson(1) count (the Poisson
        bootstrap, the streaming form of resampling cells with replacement) and encodes each
        set with weighted means at every pooling level, exactly as :meth:`encode_streaming`
        does with weights 1. The weights of a chunk are drawn from a generator seeded by
        ``seed`` and the chunk's position, so every pass sees the same weights. A set whose
        weights are all 0 in a replicate (likely only for sets of a few cells) keeps the
        unweighted mean at that level.

        Parameters
        ----------
        chunks, n_sets
            As in :meth:`encode_streaming`; ``chunks`` is called ``n_set_layers + 2`` times.
            Rows of weighted chunks get their weight times their Poisson count.
        n_replicates
            Number of bootstrap replicates ``B``.
        seed
            Seed of the weights.

        Returns
        -------
        embeddings
            ``(n_sets, n_latent)``, as :meth:`encode_streaming`.
        replicates
            ``(n_replicates, n_sets, n_latent)``.
        """
        point = self._streaming_means(chunks, n_sets)
        dtype = point[0].dtype
        means: list[torch.Tensor] = []  # per level: (n_replicates, n_sets, width)
        for level in range(self.n_set_layers + 1):
            sums = point[level].new_zeros((n_replicates, *point[level].shape), dtype=torch.float64)
            totals = sums.new_zeros((n_replicates, n_sets))
            for k, (p, set_ids, row_weights) in enumerate(self._projected(chunks)):
                generator = torch.Generator().manual_seed(seed * 1_000_003 + k)
                weights = torch.poisson(torch.ones(n_replicates, p.shape[0]), generator=generator)
                weights = weights.to(p.device, torch.float64) * _row_weights(row_weights, p)[:, 0]
                cells = self.embed_cells(p)  # the same for every replicate: computed once
                for b in range(n_replicates):
                    replicate_means = [m[b] for m in means]
                    h = self._states_at_level(p, set_ids, replicate_means, level, cells)
                    sums[b] += segment_sum(h.double() * weights[b, :, None], set_ids, n_sets)
                    totals[b] += segment_sum(weights[b, :, None], set_ids, n_sets)[:, 0]
            level_means = sums / torch.where(totals > 0, totals, 1.0).unsqueeze(-1)
            empty = totals == 0
            level_means[empty] = point[level].double().expand_as(level_means)[empty]
            means.append(level_means.to(dtype))
        replicates = torch.stack([self.readout(m) for m in means[-1]])
        return self.readout(point[-1]), replicates

    def _projected(self, chunks: ChunkFactory) -> Iterator[tuple[torch.Tensor, torch.Tensor, list]]:
        """``(projections, set ids, [weights] or [])`` of every chunk. A chunk
        ``(x, set_ids, weights, rows)`` has the rows ``x[rows]``, and consecutive chunks that
        share one ``x`` project it once (a cell in several sets is read and projected once)."""
        last_x, last_p = None, None
        project = self.projector()
        for x, set_ids, *rest in chunks():
            p = last_p if x is last_x else project(x)
            last_x, last_p = x, p
            yield (p if len(rest) < 2 else p[rest[1]]), set_ids, rest[:1]

    def _states_at_level(
        self,
        p: torch.Tensor,
        set_ids: torch.Tensor,
        means: list[torch.Tensor],
        level: int,
        cells: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Cell states after ``level`` set layers from the projections ``p``; ``cells``:
        ``embed_cells(p)`` if known."""
        h = self.embed_cells(p) if cells is None else cells
        for i in range(level):
            h = self.set_layer(i, p, h, means[i], set_ids)
        return h


def _entry_bytes(entry: list) -> int:
    """Bytes of a kept chunk's projections and states."""
    p, h = entry[0], entry[3]
    return p.shape[0] * (p.shape[1] + h.shape[1]) * p.element_size()


def _row_weights(weights: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """``(n_rows, 1)`` float64 weights of a chunk's rows: the chunk's own, or ones."""
    if not weights:
        return torch.ones((like.shape[0], 1), dtype=torch.float64, device=like.device)
    return weights[0].to(like.device, torch.float64).reshape(-1, 1)


class _MeanContextLayer(nn.Module):
    """Cell state and set mean concatenated, MLP, residual, input re-injection, LayerNorm.

    The re-injection ``inject(x)`` is computed with the encoder's other linear maps of the
    input (:meth:`DeepSetEncoder.project`) and passed in as ``injected``.
    """

    def __init__(self, n_hidden: int, n_input: int, dropout: float):
        super().__init__()
        self.mlp = mlp(2 * n_hidden, n_hidden, n_hidden, n_layers=1, dropout=dropout)
        self.inject = nn.Linear(n_input, n_hidden)
        self.norm = nn.LayerNorm(n_hidden)

    def forward(
        self, injected: torch.Tensor, h: torch.Tensor, pooled: torch.Tensor, set_ids: torch.Tensor
    ) -> torch.Tensor:
        """``norm(h + mlp([h, pooled[set_ids]]) + injected)``. The first linear map of the MLP
        is split in its cell and set halves, and the set half applied once per set: the same
        map without the concatenation and with half the per-cell products."""
        first, n = self.mlp[0], h.shape[1]
        hidden = F.linear(h, first.weight[:, :n], first.bias)
        hidden = hidden + F.linear(pooled, first.weight[:, n:])[set_ids]
        return self.norm(h + self.mlp[1:](hidden) + injected)


class DeepSetEncoder(SetEncoder):
    """Mean-pooled residual deep set (the best encoder of the GDE paper).

    A per-cell MLP maps the input to width ``n_hidden``; then ``n_layers`` layers each concatenate
    every cell's state with the mean state of its set, apply an MLP back to ``n_hidden``, add a
    residual and a linear re-injection of the raw input, and LayerNorm. A final mean pool and an
    MLP give the embedding.

    With ``mean_skip`` (default), the embedding also gets a linear map of the set mean of the
    input itself (each cell's state carries its input alongside): the first moments reach
    ``z`` linearly, so sets outside the bulk of the training sets (e.g. a corner of the
    range of means) are located by the same linear map instead of by the MLP's extrapolation.

    Parameters
    ----------
    n_input
        Number of input features.
    n_latent
        Dimension of the distribution embedding.
    n_hidden
        Width of the cell states.
    n_layers
        Number of mean-context layers.
    dropout
        Dropout rate inside the MLPs.
    mean_skip
        Add a linear map of the set mean of the input to the embedding.
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int,
        n_hidden: int = 128,
        n_layers: int = 2,
        dropout: float = 0.0,
        mean_skip: bool = True,
    ):
        super().__init__()
        self.n_set_layers = n_layers
        self.n_hidden = n_hidden
        self.skip = nn.Linear(n_input, n_latent, bias=False) if mean_skip else None
        self.cell_mlp = mlp(n_input, n_hidden, n_hidden, n_layers=1, dropout=dropout)
        self.layers = nn.ModuleList(
            [_MeanContextLayer(n_hidden, n_input, dropout) for _ in range(n_layers)]
        )
        self.head = mlp(n_hidden, n_latent, n_hidden, n_layers=1)

    def projector(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """Every linear map of the input in one product: the first layer of the cell MLP,
        each layer's re-injection and (with the skip) the skip map, side by side. The maps
        are concatenated once per projector, not once per chunk (2,000 genes: 3 MB)."""
        maps = [self.cell_mlp[0]] + [layer.inject for layer in self.layers]
        weights = [m.weight for m in maps]
        biases = [m.bias for m in maps]
        if self.skip is not None:
            weights.append(self.skip.weight)
            biases.append(self.skip.weight.new_zeros(self.skip.out_features))
        bias = torch.cat(biases)
        dense, transposed = None, None

        def project(x: torch.Tensor) -> torch.Tensor:
            nonlocal dense, transposed
            if x.layout == torch.sparse_csr:  # sparse rows times the maps, without densifying
                if transposed is None:  # the maps' transposes: a contiguous right factor
                    transposed = torch.cat([w.t() for w in weights], dim=1)
                return torch.addmm(bias, x, transposed)
            if dense is None:
                dense = torch.cat(weights)
            return F.linear(x, dense, bias)

        return project

    # with the skip, a state is [hidden state, skip(input)]; pooled, its skip part is the
    # skip map of the set mean (the map is linear)
    def _with_skip(self, h: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        if self.skip is None:
            return h
        return torch.cat([h, p[:, (self.n_set_layers + 1) * self.n_hidden :]], dim=-1)

    def embed_cells(self, p: torch.Tensor) -> torch.Tensor:
        return self._with_skip(self.cell_mlp[1:](p[:, : self.n_hidden]), p)

    def set_layer(self, i, p, h, pooled, set_ids):
        n = self.n_hidden
        h = self.layers[i](p[:, (i + 1) * n : (i + 2) * n], h[:, :n], pooled[:, :n], set_ids)
        return self._with_skip(h, p)

    def readout(self, pooled: torch.Tensor) -> torch.Tensor:
        z = self.head(pooled[:, : self.n_hidden])
        return z if self.skip is None else z + pooled[:, self.n_hidden :]


class KMEEncoder(SetEncoder):
    """Kernel mean embedding with random Fourier features (the KME baseline of the GDE paper).

    Each cell maps to ``sqrt(2 / D) cos(W x / bandwidth + b)`` with fixed random ``W ~ N(0, I)``
    and ``b ~ U(0, 2 pi)``, which approximates a Gaussian kernel; the bandwidth is trained. The
    set mean of these features is the empirical kernel mean embedding, mapped linearly to ``z``.

    Parameters
    ----------
    n_input
        Number of input features.
    n_latent
        Dimension of the distribution embedding.
    n_features
        Number ``D`` of random Fourier features.
    bandwidth
        Initial kernel bandwidth (default: ``sqrt(n_input)``, suited to unit-scale features).
    seed
        Seed of the random frequencies and phases.
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int,
        n_features: int = 512,
        bandwidth: float | None = None,
        seed: int = 0,
    ):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("frequencies", torch.randn(n_input, n_features, generator=generator))
        self.register_buffer("phases", 2 * torch.pi * torch.rand(n_features, generator=generator))
        initial = float(bandwidth) if bandwidth is not None else float(n_input) ** 0.5
        self.log_bandwidth = nn.Parameter(torch.tensor(initial).log())
        self.scale = (2.0 / n_features) ** 0.5
        self.head = nn.Linear(n_features, n_latent)

    def projector(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda x: x @ self.frequencies

    def embed_cells(self, p: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.cos(p / self.log_bandwidth.exp() + self.phases)

    def readout(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(pooled)


class MeanEncoder(SetEncoder):
    """A linear map of the set mean: the simplest distribution-invariant baseline."""

    def __init__(self, n_input: int, n_latent: int):
        super().__init__()
        self.head = nn.Linear(n_input, n_latent)

    def embed_cells(self, p: torch.Tensor) -> torch.Tensor:
        return p

    def readout(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(pooled)


#: Set encoders by name; add a new encoder by subclassing :class:`SetEncoder` and registering it.
ENCODERS: dict[str, type[SetEncoder]] = {
    "deepset": DeepSetEncoder,
    "kme": KMEEncoder,
    "mean": MeanEncoder,
}


def make_encoder(name: str, n_input: int, n_latent: int, **kwargs) -> SetEncoder:
    """Instantiate the set encoder registered under ``name``."""
    if name not in ENCODERS:
        raise ValueError(f"Unknown encoder {name!r}; choose one of {sorted(ENCODERS)}.")
    return ENCODERS[name](n_input, n_latent, **kwargs)
