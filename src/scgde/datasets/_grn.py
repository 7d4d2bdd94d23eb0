"""Seeded simulator of genetic-perturbation scRNA-seq data (Perturb-seq-like) on a gene network.

:func:`grn_perturbations` simulates CRISPRi-style knock-downs of single genes and of gene pairs
on a random, layered gene-regulatory network (GRN), in one or several cellular contexts, with
raw UMI-like counts and the *true* expected effect of every perturbation. Cell-to-cell noise
propagates through the same network as the knock-downs, so the co-expression of a gene in
control cells reveals its downstream targets: the effect of a perturbation that was never
observed can in principle be predicted from control data. The data are **simulated**; see the
function's docstring for the exact model.
"""

from __future__ import annotations

import math
import numbers

import anndata
import numpy as np
import pandas as pd
from scipy import sparse

from .._utils import check_int
from ._arguments import Seed, nonneg_real, unit_interval
from ._grn_network import (
    _activities,
    _descendants,
    _draw_network,
    _group_activities,
    _propagate,
    _to_csr,
    _union_in_order,
)
from ._lineage import (
    _DISPERSION_CLIP,
    _DISPERSION_LOG_SD,
    _DISPERSION_MEDIAN,
    _LIBRARY_LOG_SD,
    _LIBRARY_MEDIAN,
    _LOG_ABUNDANCE_SD,
    _reference_stats,
)

__all__ = ["grn_perturbations"]

# Built-in constants of the model (documented in grn_perturbations).
_KNOCKDOWN_FLOOR = 1e-3  # the knock-down factor 1 - knockdown is clamped at this value
_CONTEXT_GENE_FRACTION = 0.25  # share of genes in each non-reference context programme
_CHUNK_ELEMENTS = 1 << 21  # rows are simulated in blocks of at most this many activities


# ------------------------------------------------------------------------------ main
def grn_perturbations(
    n_genes: int = 500,
    n_perturbations: int = 300,
    n_cells_per_perturbation: int = 100,
    n_control_cells: int = 2000,
    n_combinations: int = 0,
    n_contexts: int = 1,
    knockdown: float = 0.9,
    reference: anndata.AnnData | None = None,
    seed: Seed = 0,
    *,
    n_layers: int = 4,
    regulator_fraction: float = 0.5,
    in_degree: float = 2.5,
    edge_strength: float = 1.0,
    activation_fraction: float = 0.6,
    cell_noise: float = 0.4,
    context_strength: float = 0.7,
    n_monte_carlo: int = 1000,
) -> anndata.AnnData:
    r"""Simulate Perturb-seq-like knock-down data on a random gene-regulatory network.

    The data are **simulated**, not measured. Genes regulate each other through a sparse,
    directed, acyclic network; a knock-down lowers its target gene's expression and the effect
    propagates to the target's downstream genes. Cell-to-cell variation comes from intrinsic
    noise that propagates through the *same* network, so in control cells a gene co-varies
    with its downstream genes: control data carry information about the effect of knock-downs
    never observed, which is what benchmarks of unseen-perturbation prediction need. The true
    expected expression of every (perturbation, context) group is returned with the data.

    **Network.** Each of the :math:`G` = ``n_genes`` genes has a layer
    :math:`\ell_g \in \{0, \dots, L-1\}` (``n_layers`` :math:`= L`). A random
    ``regulator_fraction`` of the genes are *candidate regulators*, placed uniformly on
    layers :math:`0, \dots, L-2`; the other genes are placed uniformly on layers
    :math:`1, \dots, L-1`. Every gene on a layer :math:`\ell_g > 0` draws
    :math:`k_g \sim \mathrm{Poisson}(\bar k)` (``in_degree`` :math:`= \bar k`; capped at the
    number available) distinct regulators among the candidates on lower layers, with
    probability proportional to a log-normal hubness
    :math:`h_j \sim \log\mathcal{N}(0, 0.75^2)` (so a few regulators have many targets);
    genes with :math:`k_g = 0` are unregulated. The weight of the edge :math:`j \to g` is
    :math:`W_{gj} = \pm\, s\, u_{gj} / \sqrt{k_g}`, positive (activation) with probability
    ``activation_fraction``, :math:`u_{gj} \sim U(0.5, 1.5)` and ``edge_strength``
    :math:`= s`. Edges only go from lower to higher layers, so the network is acyclic and has
    depth below :math:`L`. *Regulators* are the genes with at least one edge out.

    **Activities.** Cell :math:`i` of context :math:`c` has the log-expression
    :math:`l_{ig} = b_g + z_{ig}`, with the activity :math:`z_i` (a log fold change relative
    to the baseline :math:`b`) the steady state of

    .. math::

        z_{ig} = o_{cg} + \sum_j W_{gj} \tanh(z_{ij}) + \sigma \varepsilon_{ig}
        + \log(\kappa)\, \mathbb{1}[g \in T_i], \qquad \varepsilon_{ig} \sim \mathcal{N}(0, 1),

    solved exactly by one pass in layer order. :math:`\sigma` is ``cell_noise`` (the
    intrinsic noise, which propagates downstream through :math:`\tanh`), :math:`T_i` the
    genes knocked down in the cell (empty for controls, one gene for a single and two for a
    double knock-down) and :math:`\kappa = \max(1 - \text{knockdown}, 10^{-3})`: a knock-down
    multiplies the target's expression by :math:`\kappa` (so ``knockdown=1`` is a 1000-fold
    knock-down), and downstream genes see the saturated :math:`\tanh` of the lowered
    activity. Knocking down an activator (:math:`W_{gj} > 0`) therefore lowers :math:`g`,
    knocking down a repressor raises it, and in control cells :math:`\tanh(z_j)` and
    :math:`z_g` co-vary with the sign of :math:`W_{gj}`. Genes with no directed path from the
    targets are unaffected. **Contexts** ``context_0``, ``context_1``, ... differ by a
    baseline programme :math:`o_c` that also propagates through the network (and moves the
    operating point of :math:`\tanh`, so effects are context-specific): :math:`o_0 = 0` (the
    reference context); for :math:`c \ge 1` a random quarter of the genes get
    :math:`o_{cg} \sim \mathcal{N}(0, \gamma^2)` (``context_strength`` :math:`= \gamma`) and
    the others 0.

    **Counts.** :math:`X_{ig} \sim \mathrm{NB}(\mu_{ig}, \phi_g)` (mean :math:`\mu`, variance
    :math:`\mu + \phi_g \mu^2`) with :math:`\mu_{ig} = L_i\, e^{l_{ig}} / N_c` and
    :math:`N_c = \sum_g E[e^{l_g} \mid \text{control}, c]`: the expression is normalised by
    the average total of the control cells of the context (not cell by cell), so control cells
    have about :math:`L_i` counts, and a knock-down changes the expected counts of exactly
    the target and its downstream genes (strong knock-downs of hubs change the total, as in
    real screens). The baseline is :math:`b_g = \log p_g - \log E[e^{z_g} \mid
    \text{control}, 0]`, so that gene :math:`g`'s expected share of a reference-context
    control cell's counts is :math:`p_g`. Expectations are Monte Carlo averages over
    ``n_monte_carlo`` noise draws :math:`\varepsilon` shared by all groups (common random
    numbers, so the true effects are exact where they should be: exactly :math:`\log\kappa`
    on a single knock-down's target, exactly 0 on genes with no path from the targets).

    - Without ``reference`` (built-in values): :math:`\log p_g \sim \mathcal{N}(0, 1.5^2)`
      (normalised to sum to 1), library sizes :math:`\log L_i \sim \mathcal{N}(\log 3000,
      0.4^2)` and dispersions :math:`\log \phi_g \sim \mathcal{N}(\log 0.1, 0.5^2)`.
    - With ``reference`` (raw counts): each simulated gene takes the statistics of one
      reference gene (a random subset of the reference genes, drawn with replacement only if
      ``n_genes`` exceeds their number; recorded in ``var["reference_gene"]``): :math:`p_g`
      is that gene's share of all reference counts (plus half a count, renormalised over the
      drawn genes), :math:`L_i` is resampled from the reference cells' total counts (cells
      with zero total excluded) and the dispersion is the method-of-moments estimate on
      size-factor-normalised counts, :math:`\hat\phi = (v - m \overline{1/s}) / m^2` (as in
      :func:`~scgde.datasets.lineage_sets`; undetected and zero-variance genes are handled by
      clipping to :math:`[10^{-3}, 10^2]` and the median), corrected for the
      over-dispersion that the network noise already adds: with
      :math:`v_g = \mathrm{Var}(e^{z_g}) / E[e^{z_g}]^2` (control, reference context) a
      gamma-Poisson count with dispersion :math:`\phi_g` has total over-dispersion
      :math:`\phi_g (1 + v_g) + v_g`, so :math:`\phi_g = (\hat\phi - v_g) / (1 + v_g)`,
      clipped to :math:`[10^{-3}, 10^2]`: a control gene is as over-dispersed as in the
      reference (unless the network noise alone already exceeds it).

    **Perturbations.** The ``n_perturbations`` single-gene targets are drawn at random among
    the regulators first (some have a single, weak downstream gene: realistic screens
    contain knock-downs with few effects), then, if more are needed, among the other genes
    (whose knock-down affects only themselves). ``n_combinations`` distinct unordered pairs
    of single targets are knocked down together (``"A+B"``). Every group (control, each
    single, each pair) is simulated in every context.

    Parameters
    ----------
    n_genes
        Number of genes :math:`G`, > 0.
    n_perturbations
        Number of single-gene knock-downs, :math:`0 \le` ``n_perturbations`` :math:`\le G`.
    n_cells_per_perturbation
        Cells per perturbation (single or pair) and context, > 0.
    n_control_cells
        Control cells per context, > 0.
    n_combinations
        Number of double knock-downs, at most ``n_perturbations * (n_perturbations - 1) / 2``.
    n_contexts
        Number of contexts (each with its own controls and all perturbations), > 0.
    knockdown
        Knock-down efficiency in (0, 1]: the target's expression is multiplied by
        ``1 - knockdown`` (clamped at :math:`10^{-3}`).
    reference
        Optional AnnData with raw counts in ``X`` (cells x genes, dense or sparse) used to
        calibrate baseline abundances, dispersions and library sizes (see above).
    seed
        Anything :func:`numpy.random.default_rng` accepts; the same integer seed gives
        identical output. Draw order: the network (candidate regulators, layers, hubness,
        in-degrees, parents gene by gene, signs, magnitudes); context programmes (membership,
        offsets); :math:`\log p` and :math:`\phi` (only without reference) or the reference
        genes; the Monte Carlo noise; the targets (regulators' order, other genes' order);
        the pairs; then, block by block of cells, the intrinsic noise, the library sizes and
        the counts.
    n_layers
        Number of network layers :math:`L \ge 2`; the longest regulatory chain has at most
        :math:`L - 1` edges.
    regulator_fraction
        Share of the genes that are candidate regulators, in (0, 1].
    in_degree
        Mean number :math:`\bar k \ge 0` of regulators per gene above layer 0.
    edge_strength
        Scale :math:`s \ge 0` of the edge weights (0: no regulation).
    activation_fraction
        Probability in [0, 1] that an edge is activating (positive).
    cell_noise
        Standard deviation :math:`\sigma \ge 0` of the intrinsic activity noise.
    context_strength
        Standard deviation :math:`\gamma \ge 0` of the context programme offsets.
    n_monte_carlo
        Number :math:`M \ge 2` of shared noise draws used for the true expectations and the
        calibration; their relative Monte Carlo error is about
        :math:`\mathrm{sd}(e^{z_g}) / (E[e^{z_g}] \sqrt{M})`.

    Returns
    -------
    anndata.AnnData
        One row per cell, ordered by context, then group (control, singles, pairs). ``X``:
        raw integer counts, CSR ``float32`` (cells x genes). ``obs``:

        - ``perturbation``: categorical, ``"control"``, the target gene's name (e.g.
          ``"G0042"``) for single knock-downs or ``"A+B"`` for pairs, in that order of
          categories (singles ordered by gene);
        - ``context``: categorical ``"context_0"``, ``"context_1"``, ...;
        - ``n_targets``: 0, 1 or 2 (``int64``);
        - ``library_size``: :math:`L_i` (float64).

        ``var_names``: ``"G0000"``, ``"G0001"``, ... (zero-padded to at least four digits);
        ``var``: ``layer``, ``in_degree``, ``out_degree`` (ints), ``perturbed`` (bool: a
        single-knock-down target) and, with a reference, ``reference_gene``.

        ``uns["simulated"]``: ``True``. ``uns["simulation"]``: a plain statement that the data
        are simulated, the settings and the seed (when an integer). ``uns["grn"]``:

        - ``W_data``, ``W_indices``, ``W_indptr``, ``W_shape``: :math:`W` in CSR form,
          ``W[i, j]`` the effect of gene ``j`` on gene ``i`` (rebuild with
          ``scipy.sparse.csr_matrix((W_data, W_indices, W_indptr), shape=W_shape)``);
        - ``layer``: :math:`\ell_g`; ``targets``: the single targets' names (ordered by
          gene); ``groups``: the perturbation categories (``"control"`` first);
          ``contexts``: the context names; ``context_offset``: :math:`o`,
          ``(n_contexts, G)``; ``baseline``: :math:`b`; ``dispersion``: :math:`\phi`;
          ``normaliser``: :math:`N_c`; ``library_mean``: :math:`E[L_i]`; ``knockdown_factor``:
          :math:`\kappa`;
        - ``true_mean``: ``(n_contexts, n_groups, G)``, the expected expression
          :math:`q = E[e^{l_g}] / N_c` of each group, so that :math:`E[X_{ig}] =`
          ``library_mean * true_mean`` (controls: :math:`\sum_g q_g = 1`);
        - ``true_log_fold_change``: :math:`\log(q_{\text{group}} / q_{\text{control}})`,
          the log ratio of expected counts to the context's controls;
        - ``true_log_shift``: :math:`E[l_g \mid \text{group}] - E[l_g \mid \text{control}]`,
          the mean log-expression shift (exactly :math:`\log\kappa` on a single target, 0
          off the targets' descendants);
        - ``settings``: the dict stored in ``uns["simulation"]``.

    Raises
    ------
    TypeError
        If a size is not an integer, a number is not real or ``reference`` is not an AnnData.
    ValueError
        If a size is negative (or zero where it must be positive), ``knockdown`` is outside
        (0, 1], there are more perturbations than genes or more pairs than the singles allow,
        another parameter is outside its range, or the reference does not hold raw counts.

    Examples
    --------
    >>> from scgde.datasets import grn_perturbations
    >>> adata = grn_perturbations(n_genes=100, n_perturbations=10, n_cells_per_perturbation=20,
    ...                           n_control_cells=200, n_combinations=2, seed=0)
    >>> adata.shape
    (440, 100)
    >>> adata.obs["perturbation"].cat.categories[0], adata.uns["grn"]["true_mean"].shape
    ('control', (1, 13, 100))
    """
    n_genes = check_int(n_genes, "n_genes")
    n_pert = check_int(n_perturbations, "n_perturbations", minimum=0)
    n_cells = check_int(n_cells_per_perturbation, "n_cells_per_perturbation")
    n_control = check_int(n_control_cells, "n_control_cells")
    n_comb = check_int(n_combinations, "n_combinations", minimum=0)
    n_ctx = check_int(n_contexts, "n_contexts")
    kd = unit_interval("knockdown", knockdown, open_low=True)
    n_layers = check_int(n_layers, "n_layers")
    if n_layers < 2:
        raise ValueError(f"n_layers must be >= 2, got {n_layers}.")
    reg_frac = unit_interval("regulator_fraction", regulator_fraction, open_low=True)
    in_degree = nonneg_real("in_degree", in_degree)
    strength = nonneg_real("edge_strength", edge_strength)
    act_frac = unit_interval("activation_fraction", activation_fraction)
    sigma = nonneg_real("cell_noise", cell_noise)
    gamma = nonneg_real("context_strength", context_strength)
    n_mc = check_int(n_monte_carlo, "n_monte_carlo")
    if n_mc < 2:
        raise ValueError(f"n_monte_carlo must be >= 2, got {n_mc}.")
    if n_pert > n_genes:
        raise ValueError(
            f"n_perturbations={n_pert} exceeds n_genes={n_genes}: every perturbation targets "
            "a distinct gene."
        )
    max_pairs = n_pert * (n_pert - 1) // 2
    if n_comb > max_pairs:
        raise ValueError(
            f"n_combinations={n_comb} needs more single perturbations: {n_pert} singles allow "
            f"at most {max_pairs} distinct pairs."
        )
    if reference is not None:
        ref_p, ref_phi, ref_lib, ref_genes = _reference_stats(reference)
    rng = np.random.default_rng(seed)

    # ---- network and contexts
    net = _draw_network(rng, n_genes, n_layers, reg_frac, in_degree, strength, act_frac)
    offset = np.zeros((n_ctx, n_genes))
    if n_ctx > 1:
        member = rng.random((n_ctx - 1, n_genes)) < _CONTEXT_GENE_FRACTION
        offset[1:] = np.where(member, gamma * rng.standard_normal((n_ctx - 1, n_genes)), 0.0)

    # ---- gene abundances and dispersions
    if reference is None:
        log_p = rng.normal(0.0, _LOG_ABUNDANCE_SD, size=n_genes)
        log_p -= np.logaddexp.reduce(log_p)
        phi_total = np.exp(rng.normal(math.log(_DISPERSION_MEDIAN), _DISPERSION_LOG_SD, n_genes))
        ref_idx = None
    else:
        ref_idx = rng.choice(ref_p.size, size=n_genes, replace=n_genes > ref_p.size)
        log_p = np.log(ref_p[ref_idx])
        log_p -= np.logaddexp.reduce(log_p)
        phi_total = ref_phi[ref_idx]

    # ---- Monte Carlo noise (shared by all groups) and baseline calibration
    mc_noise = rng.standard_normal((n_mc, n_genes))
    z_ref = _propagate(offset[0] + sigma * mc_noise, net)
    ez = np.exp(z_ref - z_ref.max(axis=0))
    log_mean_ez = np.log(ez.mean(axis=0)) + z_ref.max(axis=0)
    baseline = log_p - log_mean_ez
    if reference is None:
        phi = phi_total
    else:  # remove the over-dispersion that the activity noise adds (see docstring)
        cv2 = ez.var(axis=0) / ez.mean(axis=0) ** 2
        phi = np.clip((phi_total - cv2) / (1.0 + cv2), *_DISPERSION_CLIP)
    del ez

    # ---- perturbations
    out_degree = np.diff(sparse.csc_matrix(net.w).indptr)
    in_deg = np.diff(net.w.indptr)
    regulators = np.flatnonzero(out_degree > 0)
    others = np.flatnonzero(out_degree == 0)
    ranked = np.concatenate([rng.permutation(regulators), rng.permutation(others)])
    targets = np.sort(ranked[:n_pert]).astype(np.int64)
    pair_rows, pair_cols = np.triu_indices(n_pert, k=1)
    chosen = np.sort(rng.choice(pair_rows.size, size=n_comb, replace=False)).astype(np.int64)
    pairs = np.stack([pair_rows[chosen], pair_cols[chosen]], axis=1).astype(np.int64)
    width = max(4, len(str(n_genes - 1)))
    gene_names = [f"G{g:0{width}d}" for g in range(n_genes)]
    group_targets = -np.ones((1 + n_pert + n_comb, 2), dtype=np.int64)
    group_targets[1 : 1 + n_pert, 0] = targets
    group_targets[1 + n_pert :] = targets[pairs] if n_comb else np.zeros((0, 2), np.int64)
    group_names = (
        ["control"]
        + [gene_names[t] for t in targets]
        + [f"{gene_names[targets[a]]}+{gene_names[targets[b]]}" for a, b in pairs]
    )
    n_groups = len(group_names)
    log_kd = math.log(max(1.0 - kd, _KNOCKDOWN_FLOOR))

    # ---- true expectations (common random numbers across groups and contexts): a group
    # differs from the controls only on the descendants of its targets, recomputed gene by gene
    descendants = _descendants(net, targets)
    true_mean = np.empty((n_ctx, n_groups, n_genes))
    true_log = np.empty((n_ctx, n_groups, n_genes))
    for c in range(n_ctx):
        base = offset[c] + sigma * mc_noise
        z_ctrl = z_ref if c == 0 else _propagate(base.copy(), net)
        true_log[c] = z_ctrl.mean(axis=0)
        true_mean[c] = np.exp(z_ctrl + baseline).mean(axis=0)
        for k in range(1, n_groups):
            hit = group_targets[k][group_targets[k] >= 0]
            genes = _union_in_order(net, [descendants[t] for t in hit])
            z = _group_activities(z_ctrl, base, net, genes, hit, log_kd)
            true_log[c, k, genes] = z.mean(axis=0)
            true_mean[c, k, genes] = np.exp(z + baseline[genes]).mean(axis=0)
    del z_ref
    normaliser = true_mean[:, 0].sum(axis=1)
    true_mean /= normaliser[:, None, None]
    true_log_shift = true_log - true_log[:, :1]
    true_lfc = np.log(true_mean) - np.log(true_mean[:, :1])

    # ---- cells: context-major, then group; simulated and counted in row blocks
    sizes = np.array([n_control] + [n_cells] * (n_groups - 1))
    cell_group = np.tile(np.repeat(np.arange(n_groups), sizes), n_ctx)
    cell_ctx = np.repeat(np.arange(n_ctx), sizes.sum())
    n_total = cell_group.size
    if reference is None:
        library_mean = math.exp(math.log(_LIBRARY_MEDIAN) + 0.5 * _LIBRARY_LOG_SD**2)
    else:
        library_mean = float(ref_lib.mean())
    theta = 1.0 / phi
    step = max(1, _CHUNK_ELEMENTS // n_genes)
    library = np.empty(n_total)
    blocks = []
    for start in range(0, n_total, step):
        stop = min(start + step, n_total)
        ctx = cell_ctx[start:stop]
        noise = rng.standard_normal((stop - start, n_genes))
        z = _activities(
            noise, offset[ctx], sigma, group_targets[cell_group[start:stop]], log_kd, net
        )
        if reference is None:
            lib = np.exp(rng.normal(math.log(_LIBRARY_MEDIAN), _LIBRARY_LOG_SD, stop - start))
        else:
            lib = rng.choice(ref_lib, size=stop - start, replace=True)
        library[start:stop] = lib
        mu = np.exp(z + baseline) * (lib / normaliser[ctx])[:, None]
        counts = rng.poisson(rng.gamma(theta, mu / theta))  # NB(mu, phi) as gamma-Poisson
        blocks.append(_to_csr(counts))
    x = sparse.vstack(blocks, format="csr")

    # ---- AnnData
    context_names = [f"context_{c}" for c in range(n_ctx)]
    obs = pd.DataFrame(
        {
            "perturbation": pd.Categorical.from_codes(cell_group, categories=group_names),
            "context": pd.Categorical.from_codes(cell_ctx, categories=context_names),
            "n_targets": (group_targets[cell_group] >= 0).sum(axis=1).astype(np.int64),
            "library_size": library,
        },
        index=pd.Index(np.arange(n_total).astype(str)),
    )
    perturbed = np.zeros(n_genes, dtype=bool)
    perturbed[targets] = True
    var = pd.DataFrame(
        {
            "layer": net.layer,
            "in_degree": in_deg.astype(np.int64),
            "out_degree": out_degree.astype(np.int64),
            "perturbed": perturbed,
        },
        index=pd.Index(gene_names),
    )
    if ref_idx is not None:
        var["reference_gene"] = [ref_genes[j] for j in ref_idx]
    settings: dict[str, object] = {
        "description": (
            "SIMULATED data from scgde.datasets.grn_perturbations (knock-downs on a random "
            "gene-regulatory network); not real measurements."
        ),
        "simulated": True,
        "family": "grn",
        "n_genes": n_genes,
        "n_perturbations": n_pert,
        "n_cells_per_perturbation": n_cells,
        "n_control_cells": n_control,
        "n_combinations": n_comb,
        "n_contexts": n_ctx,
        "knockdown": kd,
        "n_layers": n_layers,
        "regulator_fraction": reg_frac,
        "in_degree": in_degree,
        "edge_strength": strength,
        "activation_fraction": act_frac,
        "cell_noise": sigma,
        "context_strength": gamma,
        "n_monte_carlo": n_mc,
        "n_edges": int(net.w.nnz),
        "n_regulators": int(regulators.size),
        "calibration": "reference" if reference is not None else "built-in defaults",
    }
    if reference is not None:
        settings["reference_shape"] = np.array(reference.shape)
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool | np.bool_):
        settings["seed"] = int(seed)
    grn = {
        "W_data": net.w.data.copy(),
        "W_indices": net.w.indices.astype(np.int64),
        "W_indptr": net.w.indptr.astype(np.int64),
        "W_shape": np.array([n_genes, n_genes]),
        "layer": net.layer.copy(),
        "targets": np.array([gene_names[t] for t in targets], dtype=str),
        "groups": np.array(group_names, dtype=str),
        "contexts": np.array(context_names, dtype=str),
        "context_offset": offset,
        "baseline": baseline,
        "dispersion": phi,
        "normaliser": normaliser,
        "library_mean": library_mean,
        "knockdown_factor": math.exp(log_kd),
        "true_mean": true_mean,
        "true_log_fold_change": true_lfc,
        "true_log_shift": true_log_shift,
        "settings": dict(settings),
    }
    return anndata.AnnData(
        X=x,
        obs=obs,
        var=var,
        uns={"simulated": True, "simulation": settings, "grn": grn},
    )
