"""The random layered gene-regulatory network of :func:`scgde.datasets.grn_perturbations`
and the propagation of activities (noise, knock-downs) through it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

_WEIGHT_RANGE = (0.5, 1.5)  # |W| ~ edge_strength * U(0.5, 1.5) / sqrt(in-degree)
_HUB_LOG_SD = 0.75  # log-normal "hubness" of regulators: P(parent) proportional to it


# ------------------------------------------------------------------------------ network
@dataclass
class _Network:
    """A layered network; ``w[i, j]`` is the effect of regulator ``j`` on gene ``i``."""

    layer: np.ndarray  # (G,) int64
    w: sparse.csr_matrix  # (G, G)
    blocks: list[tuple[np.ndarray, np.ndarray, sparse.csr_matrix]]  # (genes, sources, W^T block)


def _draw_network(
    rng: np.random.Generator,
    n_genes: int,
    n_layers: int,
    regulator_fraction: float,
    in_degree: float,
    edge_strength: float,
    activation_fraction: float,
) -> _Network:
    n_candidates = min(n_genes, max(1, round(regulator_fraction * n_genes)))
    candidate = np.zeros(n_genes, dtype=bool)
    candidate[rng.choice(n_genes, size=n_candidates, replace=False)] = True
    layer = np.where(
        candidate,
        rng.integers(0, n_layers - 1, size=n_genes),  # regulators: layers 0 .. L-2
        rng.integers(1, n_layers, size=n_genes),  # other genes: layers 1 .. L-1
    ).astype(np.int64)
    hub = np.exp(rng.normal(0.0, _HUB_LOG_SD, size=n_genes))
    n_parents = rng.poisson(in_degree, size=n_genes)
    rows, cols = [], []
    for g in np.flatnonzero(layer > 0):
        eligible = np.flatnonzero(candidate & (layer < layer[g]))
        k = min(int(n_parents[g]), eligible.size)
        if k == 0:
            continue
        prob = hub[eligible] / hub[eligible].sum()
        rows.append(np.full(k, g))
        cols.append(rng.choice(eligible, size=k, replace=False, p=prob))
    row = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    col = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    sign = np.where(rng.random(row.size) < activation_fraction, 1.0, -1.0)
    magnitude = rng.uniform(*_WEIGHT_RANGE, size=row.size)
    k_of_row = np.bincount(row, minlength=n_genes)[row]
    weight = edge_strength * sign * magnitude / np.sqrt(np.maximum(k_of_row, 1))
    w = sparse.csr_matrix((weight, (row, col)), shape=(n_genes, n_genes))
    w.sort_indices()
    blocks = []
    for level in range(1, n_layers):
        genes = np.flatnonzero(layer == level)
        sub = w[genes]
        sources = np.unique(sub.indices)
        if genes.size and sources.size:
            blocks.append((genes, sources, sparse.csr_matrix(sub[:, sources].T)))
    return _Network(layer=layer, w=w, blocks=blocks)


def _propagate(z: np.ndarray, net: _Network) -> np.ndarray:
    """Solve ``z = base + W tanh(z)`` in place (``z`` holds ``base`` on entry), layer by layer.

    ``W`` only connects lower to higher layers, so one pass in layer order is exact.
    """
    for genes, sources, block in net.blocks:
        z[:, genes] += np.asarray(np.tanh(z[:, sources]) @ block)
    return z


def _descendants(net: _Network, genes: np.ndarray) -> dict[int, np.ndarray]:
    """``{g: g and all genes reachable from g}`` for each ``g`` in ``genes``."""
    csc = sparse.csc_matrix(net.w)
    out: dict[int, np.ndarray] = {}
    for g in genes:
        seen = {int(g)}
        frontier = [int(g)]
        while frontier:
            nxt = []
            for j in frontier:
                for child in csc.indices[csc.indptr[j] : csc.indptr[j + 1]]:
                    if int(child) not in seen:
                        seen.add(int(child))
                        nxt.append(int(child))
            frontier = nxt
        out[int(g)] = np.fromiter(seen, dtype=np.int64)
    return out


def _union_in_order(net: _Network, parts: list[np.ndarray]) -> np.ndarray:
    """The union of ``parts``, ordered by layer (then index), so parents come first."""
    genes = np.unique(np.concatenate(parts))
    return genes[np.lexsort((genes, net.layer[genes]))]


def _group_activities(
    z_ctrl: np.ndarray,
    base: np.ndarray,
    net: _Network,
    genes: np.ndarray,
    hit: np.ndarray,
    log_kd: float,
) -> np.ndarray:
    """Activities of ``genes`` (the descendants of the knocked-down ``hit``, in layer order)
    for the noise behind ``z_ctrl`` / ``base``; every other gene keeps its control activity."""
    w = net.w
    col = {int(g): j for j, g in enumerate(genes)}
    out = np.empty((z_ctrl.shape[0], genes.size))
    for j, g in enumerate(genes):
        value = base[:, g] + log_kd if g in hit else base[:, g].copy()
        parents = w.indices[w.indptr[g] : w.indptr[g + 1]]
        if parents.size:
            inputs = np.column_stack(
                [out[:, col[p]] if p in col else z_ctrl[:, p] for p in parents]
            )
            value += np.tanh(inputs) @ w.data[w.indptr[g] : w.indptr[g + 1]]
        out[:, j] = value
    return out


def _to_csr(counts: np.ndarray) -> sparse.csr_matrix:
    """A dense count block as CSR ``float32`` (faster than going through COO)."""
    nonzero = counts != 0
    indptr = np.concatenate([[0], np.cumsum(nonzero.sum(axis=1))])
    indices = np.nonzero(nonzero)[1]
    return sparse.csr_matrix(
        (counts[nonzero].astype(np.float32), indices, indptr), shape=counts.shape
    )


def _activities(
    noise: np.ndarray,
    offset: np.ndarray,
    sigma: float,
    targets: np.ndarray,
    log_kd: float,
    net: _Network,
) -> np.ndarray:
    """Activities of cells with intrinsic noise ``noise`` (rows) whose knocked-down genes are
    ``targets`` (rows x 2, -1 for none)."""
    z = offset + sigma * noise
    for slot in range(targets.shape[1]):
        hit = targets[:, slot] >= 0
        z[np.flatnonzero(hit), targets[hit, slot]] += log_kd
    return _propagate(z, net)
