#!/usr/bin/env python
"""Real-cell fidelity: do cells generated for unseen samples look like their real cells?

Run from the repository root::

    python benchmarks/fidelity.py            # default profile (~3 min on 2 idle cores)
    python benchmarks/fidelity.py --quick    # smoke profile (< 1.5 min)

Real data (Liu et al. 2021 COVID-19 PBMC, the bundled demo subset ``scgde.datasets.demo()``:
raw counts, one ``sample`` per donor and time point). Whole **donors** are held out (so no
sample of a held-out donor is seen in training), stratified by condition and seeded: about
``--held-out-fraction`` of the samples of each condition, at least ``--min-per-condition``
samples of each. A ``GDE`` with the library's default settings for counts (``make_model``)
trains on the other samples for a wall-time budget. Each held-out sample is then embedded
from its own cells, as a new group, and the model generates as many cells as the sample has
(``model.sample(groups=[sample], adata=held_out)``: each generated cell copies the library
size and batch of a random real cell of the sample).

Baselines, producing the same number of cells per held-out sample:

- **nearest training sample (pseudobulk PCA)**: the cells of the training sample whose mean
  PCA coordinates are nearest (Euclidean) to the held-out sample's;
- **nearest training sample (GDE embedding)**: the same, nearest by the GDE distribution
  embedding (the held-out sample embedded from its cells, as for generation);
- **pooled training cells**: a random draw from all training cells.

A training sample with fewer cells than needed is drawn with replacement, otherwise without.

Two controls ask whether the generator uses the embedding at all: the same model generates
through ``model.sample(embedding=...)`` (batch from the sample's cells, library sizes drawn
from the training batch's log-normal rather than copied) from the sample's **own** embedding
and from **another** held-out sample's embedding (a seeded random derangement). If the two
score alike, the generated cells do not depend on ``z``.

Scoring (the same code for every method): log1p(counts per 10k), then a 30-component PCA
fitted on the training cells only. In each of ``repeats`` random splits, the real cells of a
held-out sample are split into halves A and B, and the method's cells into halves M1 (size of
B) and M2 (size of A). The **split-half floor** is the energy distance (``scgde.metrics``)
E(A, B); the method's distance is (E(A, M1) + E(B, M2)) / 2, so both compare sets of the same
sizes. Per sample: distance averaged over splits, divided by the floor averaged over splits
(1.0 = as close as a second real draw of the same size). Gene-mean r and gene-variance r:
Pearson correlations over genes of the log-normalised means (variances) of a real half and a
method half (the floor: of A and B). Condition difference: per gene, the mean over held-out
Severe samples minus the mean over held-out HC samples of the per-sample gene means, from the
method's halves against the real halves; Pearson r and the least-squares slope of the
method's difference on the real one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "fidelity.md"

sys.path.insert(0, str(HERE))
from _common import (  # noqa: E402
    command_line,
    log,
    log_normalized,
    machine_section,
    mean_se,
    start,
    table,
    time_budget_callback,
    write_report,
)
from _samples import BATCH, CONDITION, DONOR, GROUP, sample_table  # noqa: E402

CONDITIONS = ("HC", "Severe")

PROFILES = {
    "default": {"time_budget_s": 400.0, "repeats": 20, "n_comps": 30},
    "quick": {"time_budget_s": 20.0, "repeats": 5, "n_comps": 30},
}

FLOOR = "split-half floor (real half vs real half)"
NEAREST_PCA = "nearest training sample (pseudobulk PCA)"
NEAREST_GDE = "nearest training sample (GDE embedding)"
POOLED = "pooled training cells"
OWN_Z = "control: GDE from the sample's own embedding, library drawn"
OTHER_Z = "control: GDE from another held-out sample's embedding, library drawn"


# ------------------------------------------------------------------------------ model
def make_model(adata, model_kwargs: dict | None = None):
    """The model under test, with the library's defaults for count data.

    ``adata`` (raw counts, a copy owned by the benchmark) is registered in place. This is the
    one place to change the generator or likelihood, e.g. ``GDE(adata, generator=...)``;
    ``model_kwargs`` (``--model-kwargs``) go to ``GDE`` for ablations.
    """
    from scgde.model import GDE

    GDE.setup_anndata(adata, group_key=GROUP, batch_key=BATCH)
    return GDE(adata, **(model_kwargs or {}))


def model_name(model) -> str:
    return (
        f"GDE ({model.encoder_name_} encoder, {model.generator_name_} generator, "
        f"{model.module.likelihood} likelihood)"
    )


def train_model(
    train, budget_s: float, seed: int, model_kwargs: dict | None = None, train_kwargs=None
):
    """``make_model`` on a copy of ``train``, trained with ``train``'s defaults (updated by
    ``train_kwargs``) and a time budget.

    ``train_size=1.0``: the held-out samples are the benchmark's own test set, so no further
    training samples are set aside for validation (the library default is 0.9).
    """
    import scvi

    scvi.settings.seed = seed
    model = make_model(train.copy(), model_kwargs)
    callback = time_budget_callback(budget_s)
    t0 = time.perf_counter()
    model.train(
        train_size=1.0, enable_progress_bar=False, callbacks=[callback], **(train_kwargs or {})
    )
    info = {
        "train_s": time.perf_counter() - t0,
        "epochs": callback.epochs,
        "max_epochs": int(model.trainer.max_epochs),
        "steps": int(model.trainer.global_step),
        "stopped_by_budget": callback.stopped_early,
    }
    return model, info


# ------------------------------------------------------------------------------- data
def hold_out_donors(
    samples: pd.DataFrame, fraction: float, min_per_condition: int, seed: int
) -> list[str]:
    """Held-out samples: whole donors, drawn per condition until the condition's quota of
    samples (``fraction`` of them, at least ``min_per_condition``) is reached."""
    rng = np.random.default_rng(seed)
    held = []
    for condition in CONDITIONS:
        rows = samples[samples[CONDITION] == condition]
        quota = max(min_per_condition, int(round(fraction * len(rows))))
        donors = np.array(sorted(rows[DONOR].unique()))
        chosen = 0
        for donor in rng.permutation(donors):
            if chosen >= quota:
                break
            names = rows.index[rows[DONOR] == donor].tolist()
            held += names
            chosen += len(names)
    return sorted(held)


class Space:
    """log1p(CP10k) genes and the PCA of the training cells, for any raw-count cells."""

    def __init__(self, train, n_comps: int, seed: int):
        import scanpy as sc

        fit = log_normalized(train)
        sc.pp.pca(fit, n_comps=n_comps, random_state=seed)
        self.loadings = np.asarray(fit.varm["PCs"], dtype=np.float64)
        self.centre = np.asarray(fit.X.mean(0), dtype=np.float64).ravel()
        self.genes = train.var_names

    def __call__(self, counts) -> tuple[np.ndarray, np.ndarray]:
        """``(log-normalised genes, PCA coordinates)`` of an AnnData of raw counts."""
        if not counts.var_names.equals(self.genes):
            raise ValueError("cells must have the training genes, in order")
        x = log_normalized(counts).X
        x = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)
        return x, (x - self.centre) @ self.loadings


def cells_of(adata, name: str):
    return adata[adata.obs[GROUP].astype(str).to_numpy() == name].copy()


def draw(n_available: int, n: int, rng) -> np.ndarray:
    """``n`` row indices out of ``n_available``, with replacement only when there are too few."""
    return rng.choice(n_available, n, replace=n_available < n)


# ---------------------------------------------------------------------------- methods
def generate_gde(model, heldout, names: list[str], seed: int) -> dict[str, object]:
    """Raw-count cells generated for each held-out sample, as many as it has."""
    out = {}
    labels = heldout.obs[GROUP].astype(str).to_numpy()
    for i, name in enumerate(names):
        n = int((labels == name).sum())
        out[name] = model.sample(groups=[name], adata=heldout, n_cells=n, seed=seed + i)
    return out


def generate_from_embeddings(
    model, heldout, z: pd.DataFrame, source: dict[str, str], seed: int
) -> dict[str, object]:
    """Raw-count cells for each held-out sample from the embedding of ``source[sample]``.

    The embedding path of ``model.sample``: batch from random cells of the sample, library
    sizes drawn from the training batch's log-normal (not copied), for both controls alike.
    """
    out = {}
    for i, (name, other) in enumerate(source.items()):
        cells = cells_of(heldout, name)
        out[name] = model.sample(
            embedding=z.loc[[other]], n_cells=cells.n_obs, adata=cells, seed=seed + i
        )
    return out


def derangement(names: list[str], rng) -> dict[str, str]:
    """A random pairing of each name with another name (no name with itself)."""
    while True:
        order = rng.permutation(len(names))
        if (order != np.arange(len(names))).all():
            return {name: names[j] for name, j in zip(names, order, strict=True)}


def nearest_sample(train_features: pd.DataFrame, heldout_features: pd.DataFrame) -> dict[str, str]:
    """Held-out sample -> the training sample whose feature row is nearest (Euclidean)."""
    a = heldout_features.to_numpy(dtype=np.float64)
    b = train_features.to_numpy(dtype=np.float64)
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return {
        str(h): str(train_features.index[j])
        for h, j in zip(heldout_features.index, d.argmin(1), strict=True)
    }


def pseudobulk_pca(pcs: np.ndarray, labels: np.ndarray, names) -> pd.DataFrame:
    return pd.DataFrame(np.stack([pcs[labels == n].mean(0) for n in names]), index=list(names))


# ---------------------------------------------------------------------------- scoring
def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of ``y`` on ``x`` (with intercept)."""
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


def score(
    real: dict[str, tuple[np.ndarray, np.ndarray]],
    methods: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
    conditions: dict[str, str],
    repeats: int,
    seed: int,
):
    """Score every method's cells against the real held-out cells (see the module docstring).

    ``real[sample]`` and ``methods[method][sample]`` are ``(log-normalised genes, PCs)`` with
    the same number of cells. Returns ``(per_sample, condition)``: a DataFrame with one row per
    (method, sample) and columns ``energy``, ``floor``, ``ratio``, ``mean_r``, ``var_r``
    (averaged over splits; the floor rows compare real half with real half), and one with one
    row per method: ``diff_r`` and ``diff_slope`` of the condition difference (mean over
    splits) and their sd over splits.
    """
    from scgde.metrics import energy_distance

    rng = np.random.default_rng(seed)
    names = list(real)
    rows, diffs = [], []
    for _ in range(repeats):
        halves = {}  # sample -> (A rows, B rows) of the real cells
        for name in names:
            order = rng.permutation(real[name][0].shape[0])
            halves[name] = (order[: len(order) // 2], order[len(order) // 2 :])
        # per method: sample -> [(real half, method half of the other half's size), ...]
        pairs: dict[str, dict[str, list]] = {FLOOR: {}}
        for name in names:
            a, b = halves[name]
            pairs[FLOOR][name] = [(a, real[name], b, real[name])]
        for method, cells in methods.items():
            pairs[method] = {}
            for name in names:
                a, b = halves[name]
                order = rng.permutation(cells[name][0].shape[0])
                m1, m2 = order[: len(b)], order[len(b) : len(b) + len(a)]
                pairs[method][name] = [
                    (a, real[name], m1, cells[name]),
                    (b, real[name], m2, cells[name]),
                ]
        for method, by_sample in pairs.items():
            sample_means = {}
            for name, comparisons in by_sample.items():
                energy, mean_r, var_r, means = [], [], [], []
                for rows_x, (gx, px), rows_y, (gy, py) in comparisons:
                    energy.append(energy_distance(px[rows_x], py[rows_y]))
                    mean_x, mean_y = gx[rows_x].mean(0), gy[rows_y].mean(0)
                    mean_r.append(pearson(mean_x, mean_y))
                    var_r.append(pearson(gx[rows_x].var(0), gy[rows_y].var(0)))
                    means.append((mean_x, mean_y))
                rows.append(
                    {
                        "method": method,
                        "sample": name,
                        "energy": np.mean(energy),
                        "mean_r": np.mean(mean_r),
                        "var_r": np.mean(var_r),
                    }
                )
                sample_means[name] = means
            # condition difference, for each of the method's comparisons (1 for the floor)
            for k in range(len(next(iter(sample_means.values())))):
                diff = {}
                for side in (0, 1):  # 0: real half, 1: the method's half
                    by_condition = {
                        c: np.mean(
                            [sample_means[n][k][side] for n in names if conditions[n] == c], 0
                        )
                        for c in CONDITIONS
                    }
                    diff[side] = by_condition["Severe"] - by_condition["HC"]
                diffs.append(
                    {
                        "method": method,
                        "diff_r": pearson(diff[0], diff[1]),
                        "diff_slope": slope(diff[0], diff[1]),
                    }
                )
    per_split = pd.DataFrame(rows)
    per_sample = per_split.groupby(["method", "sample"], sort=False).mean().reset_index()
    floor = per_sample[per_sample["method"] == FLOOR].set_index("sample")["energy"]
    per_sample["floor"] = per_sample["sample"].map(floor)
    per_sample["ratio"] = per_sample["energy"] / per_sample["floor"]
    condition = pd.DataFrame(diffs).groupby("method", sort=False).agg(["mean", "std"])
    return per_sample, condition


def results_table(per_sample: pd.DataFrame, condition: pd.DataFrame, order: list[str]) -> str:
    header = [
        "method",
        "energy ratio median",
        "energy ratio mean ± SE",
        "energy distance mean ± SE",
        "gene-mean r",
        "gene-variance r",
        "condition-difference r",
        "condition-difference slope",
    ]
    rows = []
    for method in order:
        frame = per_sample[per_sample["method"] == method]
        c = condition.loc[method]
        rows.append(
            [
                method,
                f"{frame['ratio'].median():.2f}",
                mean_se(frame["ratio"], 2),
                mean_se(frame["energy"], 3),
                mean_se(frame["mean_r"], 3),
                mean_se(frame["var_r"], 3),
                f"{c[('diff_r', 'mean')]:.3f} (sd {c[('diff_r', 'std')]:.3f})",
                f"{c[('diff_slope', 'mean')]:.3f} (sd {c[('diff_slope', 'std')]:.3f})",
            ]
        )
    return table(header, rows)


# ------------------------------------------------------------------------------- main
def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke profile")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--budget", type=float, default=None, help="training time budget in s (profile's)"
    )
    parser.add_argument("--held-out-fraction", type=float, default=0.2)
    parser.add_argument("--min-per-condition", type=int, default=3)
    parser.add_argument(
        "--model-kwargs",
        type=json.loads,
        default=None,
        help="JSON passed to GDE(...), for ablations, e.g. '{\"generator_kwargs\": {...}}'",
    )
    parser.add_argument(
        "--train-kwargs",
        type=json.loads,
        default=None,
        help="JSON passed to model.train(...), for ablations",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    t_start = time.perf_counter()
    load_start = start(args.threads)
    import scgde

    profile = "quick" if args.quick else "default"
    cfg = dict(PROFILES[profile])
    if args.budget is not None:
        cfg["time_budget_s"] = args.budget
    seed = args.seed

    adata = scgde.datasets.demo()
    samples = sample_table(adata)
    held = hold_out_donors(samples, args.held_out_fraction, args.min_per_condition, seed)
    is_held = adata.obs[GROUP].astype(str).isin(held).to_numpy()
    train, heldout = adata[~is_held].copy(), adata[is_held].copy()
    train_names = sorted(set(samples.index) - set(held))
    conditions = samples[CONDITION].to_dict()
    if not set(heldout.obs[BATCH].astype(str)) <= set(train.obs[BATCH].astype(str)):
        raise ValueError("a held-out batch has no training cells")
    held_donors = set(samples.loc[held, DONOR])
    assert not held_donors & set(samples.loc[train_names, DONOR])
    n_by_condition = samples.loc[held, CONDITION].value_counts().reindex(CONDITIONS).to_dict()
    log(
        f"real data (demo): {adata.n_obs:,} cells x {adata.n_vars} genes, {len(samples)} "
        f"samples; held out {len(held)} samples of {len(held_donors)} donors {n_by_condition} "
        f"({heldout.n_obs:,} cells), training on {len(train_names)} samples ({train.n_obs:,})"
    )

    log(f"training the GDE ({cfg['time_budget_s']:.0f} s budget)")
    model, info = train_model(
        train, cfg["time_budget_s"], seed, args.model_kwargs, args.train_kwargs
    )
    gde = model_name(model)
    log(
        f"  {info['epochs']} epochs / {info['steps']} steps in {info['train_s']:.0f} s "
        f"(default max_epochs {info['max_epochs']}; stopped by budget: "
        f"{info['stopped_by_budget']})"
    )

    space = Space(train, cfg["n_comps"], seed)
    train_genes, train_pcs = space(train)
    train_labels = train.obs[GROUP].astype(str).to_numpy()
    real = {name: space(cells_of(heldout, name)) for name in held}
    sizes = {name: real[name][0].shape[0] for name in held}

    log("generating cells for the held-out samples")
    generated = generate_gde(model, heldout, held, seed + 1000)
    methods: dict[str, dict] = {gde: {name: space(generated[name]) for name in held}}

    rng = np.random.default_rng(seed + 2000)
    near_pca = nearest_sample(
        pseudobulk_pca(train_pcs, train_labels, train_names),
        pd.DataFrame({name: real[name][1].mean(0) for name in held}).T,
    )
    z_train = model.get_distribution_embedding(key_added=None).loc[train_names]
    z_held = model.get_distribution_embedding(heldout, key_added=None).loc[held]
    near_gde = nearest_sample(z_train, z_held)
    for method, nearest in ((NEAREST_PCA, near_pca), (NEAREST_GDE, near_gde)):
        methods[method] = {}
        for name in held:
            rows = np.flatnonzero(train_labels == nearest[name])
            rows = rows[draw(len(rows), sizes[name], rng)]
            methods[method][name] = (train_genes[rows], train_pcs[rows])
    methods[POOLED] = {}
    for name in held:
        rows = draw(train.n_obs, sizes[name], rng)
        methods[POOLED][name] = (train_genes[rows], train_pcs[rows])
    # controls: does the generator use the embedding? same path, own vs another sample's z
    swap = derangement(held, np.random.default_rng(seed + 4000))
    for method, source in ((OWN_Z, {n: n for n in held}), (OTHER_Z, swap)):
        cells = generate_from_embeddings(model, heldout, z_held, source, seed + 5000)
        methods[method] = {name: space(cells[name]) for name in held}

    log(f"scoring ({cfg['repeats']} random splits)")
    per_sample, condition = score(real, methods, conditions, cfg["repeats"], seed + 3000)
    order = [gde, NEAREST_PCA, NEAREST_GDE, POOLED, OWN_Z, OTHER_Z, FLOOR]
    result_md = results_table(per_sample, condition, order)

    ratio = per_sample.pivot(index="sample", columns="method", values="ratio")
    floor = per_sample[per_sample["method"] == FLOOR].set_index("sample")["energy"]
    per_sample_md = table(
        [
            "held-out sample",
            "donor",
            "condition",
            "batch",
            "cells",
            "floor E(A, B)",
            "ratio: GDE",
            "ratio: nearest (PCA)",
            "ratio: nearest (GDE z)",
            "ratio: pooled",
            "ratio: own z / other z (drawn library)",
            "nearest (PCA) / (GDE z)",
        ],
        [
            [
                name,
                samples.loc[name, DONOR],
                conditions[name],
                samples.loc[name, BATCH],
                str(sizes[name]),
                f"{floor[name]:.3f}",
                f"{ratio.loc[name, gde]:.2f}",
                f"{ratio.loc[name, NEAREST_PCA]:.2f}",
                f"{ratio.loc[name, NEAREST_GDE]:.2f}",
                f"{ratio.loc[name, POOLED]:.2f}",
                f"{ratio.loc[name, OWN_Z]:.2f} / {ratio.loc[name, OTHER_Z]:.2f} "
                f"(z of {swap[name]}, {conditions[swap[name]]})",
                f"{near_pca[name]} ({conditions[near_pca[name]]}) / "
                f"{near_gde[name]} ({conditions[near_gde[name]]})",
            ]
            for name in held
        ],
    )
    same = {
        label: sum(conditions[nearest[n]] == conditions[n] for n in held)
        for label, nearest in (("PCA", near_pca), ("GDE z", near_gde))
    }
    wins = {m: int((ratio[gde] < ratio[m]).sum()) for m in (NEAREST_PCA, NEAREST_GDE, POOLED)}
    wins_text = "; ".join(f"{m}: {w}/{len(held)}" for m, w in wins.items())
    own_wins = int((ratio[OWN_Z] < ratio[OTHER_Z]).sum())
    print(
        f"\nReal data, {len(held)} held-out samples (mean ± SE over samples):\n\n{result_md}\n\n"
        f"{per_sample_md}\n\nGDE's ratio below the baseline's in: {wins_text}\n"
        f"Own embedding below another sample's in: {own_wins}/{len(held)}\n",
        flush=True,
    )

    runtime = time.perf_counter() - t_start
    budget_stop = (
        f"stopped by the budget after {info['epochs']} of the default {info['max_epochs']} epochs"
        if info["stopped_by_budget"]
        else f"all {info['max_epochs']} default epochs done within the budget"
    )
    ablation = (
        f"\n- **Ablation arguments** (not the library defaults): `GDE(...)`"
        f" `{json.dumps(args.model_kwargs)}`, `train(...)` `{json.dumps(args.train_kwargs)}`."
        if args.model_kwargs or args.train_kwargs
        else ""
    )
    doc = f"""# Real-cell fidelity: generated vs held-out real cells (Liu 2021 demo)

Generated by `{command_line("fidelity.py")}` (profile **{profile}**, seed {seed}) in
{runtime / 60:.1f} min. **Real data**, not a simulation: `scgde.datasets.demo()`, the bundled
Liu et al. 2021 COVID-19 PBMC subset ({adata.n_obs:,} cells x {adata.n_vars} genes, raw
counts, {len(samples)} samples of {samples[DONOR].nunique()} donors).

**Protocol.** {len(held)} samples of {len(held_donors)} whole donors are held out
({n_by_condition["HC"]} HC, {n_by_condition["Severe"]} Severe; donors drawn per condition with
`numpy.random.default_rng({seed})` until {args.held_out_fraction:.0%} of that condition's
samples, at least {args.min_per_condition}, are held out; no sample of a held-out donor is in
training). The GDE trains on the other {len(train_names)} samples ({train.n_obs:,} cells),
then embeds each held-out sample from its own cells, as a new group, and generates as many
cells as the sample has; each generated cell copies the library size and batch of a random
real cell of that sample. Baselines draw the same numbers of real training cells. Everything
is scored by the same code: log1p(CP10k), PCA ({cfg["n_comps"]} components) fitted on the
training cells; in each of {cfg["repeats"]} random splits the real cells of a sample are
halved into A and B and the method's cells into halves of the same sizes; the **split-half
floor** is the energy distance E(A, B) between the real halves, a method's distance is the
mean of E(A, method half) and E(B, other method half). **Energy ratio** = method distance /
floor per sample (each averaged over the splits): 1.0 means the cells are as close to the real
sample as a second real draw of the same size; the floor row is 1 by construction.

## Results

Per-sample scores summarised over the {len(held)} held-out samples (median; mean ± SE).
Gene-mean r / gene-variance r: Pearson r over the {adata.n_vars} genes between the
log-normalised means / variances of a real half and a method half (floor: of the two real
halves), averaged over splits. Condition difference: per gene, mean over held-out Severe
samples minus mean over held-out HC samples of the per-sample gene means; r and slope of the
method's difference regressed on the real one (1 = right size), mean (sd) over splits. With
only {n_by_condition["HC"]} held-out HC samples the real difference is itself noisy: the
floor row shows how well one real half reproduces the other.

{result_md}

Held-out samples where GDE's energy ratio is below the baseline's: {wins_text}.

**Controls** (the two `control:` rows): the same trained model generates through
`model.sample(embedding=...)`, which draws library sizes from the training batch's log-normal
instead of copying the sample's, from the sample's own embedding or from another held-out
sample's (a seeded random derangement, listed per sample below). If the generator used `z`,
the own embedding would score clearly better. Own embedding below another sample's in
{own_wins}/{len(held)} samples.

## Per held-out sample

Energy ratios and the nearest training samples (with their condition) picked by the two
nearest-sample baselines. The nearest training sample has the held-out sample's condition in
{same["PCA"]}/{len(held)} cases by pseudobulk PCA and {same["GDE z"]}/{len(held)} by the GDE
embedding.

{per_sample_md}

## Settings

- Model (`make_model` in the script): `GDE.setup_anndata(train, group_key="sample",
  batch_key="batch")`, `GDE(train)`: library defaults, i.e. **{gde}**, n_latent
  {model.module.n_latent}. `scvi.settings.seed = {seed}`.
- Training: `model.train(train_size=1.0, enable_progress_bar=False, callbacks=[budget])`,
  otherwise the defaults (set_size 128, 16 groups per batch, lr 1e-3, default max_epochs
  {info["max_epochs"]} for this data); all training samples train (no validation split, since
  the held-out samples are the test set). Time budget {cfg["time_budget_s"]:.0f} s (training
  stops at the end of the first epoch past it): {info["epochs"]} epochs, {info["steps"]} steps,
  {info["train_s"]:.0f} s; {budget_stop}. The budget makes the result depend on the machine's
  speed and load.
- Generation: `model.sample(groups=[sample], adata=held_out, n_cells=<cells of the sample>,
  seed={seed + 1000}+i)`.
- Nearest training sample: by Euclidean distance between mean PCA coordinates of the cells
  (pseudobulk in PCA space), or between `get_distribution_embedding` rows; its cells are
  drawn to the held-out sample's size (with replacement only when it has fewer). Pooled: a
  draw without replacement from all {train.n_obs:,} training cells. Draws use
  `numpy.random.default_rng({seed + 2000})`; splits `default_rng({seed + 3000})`.
- Energy distance: `scgde.metrics.energy_distance` (squared, V-statistic) in PCA space; since
  the V-statistic is biased upwards by the sets' within-set spread / size, all comparisons use
  halves of the same sizes.
- Held-out samples: {", ".join(held)}.{ablation}

## Machine

{machine_section(load_start)}
"""
    write_report(args.output, doc, runtime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
