#!/usr/bin/env python
"""Predict unseen genetic knock-downs in SIMULATED data: PerturbationGDE against baselines.

Run from the repository root::

    python benchmarks/perturbation_sim.py --threads 1     # 3 seeds (~15 min on 2 idle cores)
    python benchmarks/perturbation_sim.py --quick         # smoke profile (< 2 min)
    python benchmarks/perturbation_sim.py --seed 4        # one seed
    python benchmarks/perturbation_sim.py --seeds 0 1 2 3 4
    python benchmarks/perturbation_sim.py --control-cells 10000 --output OUT.md  # less noise

**SIMULATED data.** ``scgde.datasets.grn_perturbations`` simulates single-gene CRISPRi-style
knock-downs on a random gene-regulatory network, with gene abundances, dispersions and library
sizes calibrated on the real demo data (``reference=scgde.datasets.demo()``) and one context.
Knock-down effects propagate to the target's downstream genes, and so does the cell-to-cell
noise: a gene's co-expression in control cells carries information on what its knock-down does.

Each seed draws a new network and cells (``seed``) and a new split: a fifth of the
perturbations (``numpy.random.default_rng(seed)``) is held out. All methods see only the
training perturbations and the control cells, and are scored by the same code path
(``scgde.tl.score_perturbations``) on the held-out perturbations:

- **GDE (predictor + target knock-down)**: ``PerturbationGDE`` with its default
  co-expression features of the target genes; ``predict(method="predictor")`` with the target
  gene's generated counts thinned to the training targets' median knock-down factor (the
  default for genetic perturbations), scored on ``uns["predicted_shift"]`` (bias-corrected
  shift of the decoded cells) and, for the energy distance, on the generated cells
  (log-normalised). **GDE (predictor only)**: the same model without the knock-down.
- **mean shift**: ``scgde.tl.mean_shift_baseline``, the mean shift of the training
  perturbations, the same for every held-out one; **mean shift + target knock-down**: the
  same with ``target_knockdown=True`` (the target gene gets the training targets' median
  shift on themselves).
- **ridge (co-expression)**: ``scgde.tl.ridge_baseline`` on the *same* feature table as the
  model (``model.perturbation_features_`` rows of each perturbation's parts, summed by
  ``scgde.data.perturbation_feature_matrix``), penalty chosen by leave-one-perturbation-out
  cross-validation on the training perturbations (``sklearn.linear_model.RidgeCV``).

Metrics (log1p counts per 10k): r2 / mse of the pseudobulk shift over all genes and over the
20 top DE genes (largest true |shift|), energy distance between predicted and observed cells.
The tables are printed and written to ``--output`` (default
``benchmarks/results/perturbation_sim.md``).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "perturbation_sim.md"

sys.path.insert(0, str(HERE))
from _common import (  # noqa: E402
    add_model_kwargs_argument,
    add_seed_arguments,
    command_line,
    kwargs_text,
    log,
    log_normalized,
    machine_section,
    mean_se,
    metrics_table,
    metrics_text,
    paired_margin,
    start,
    table,
    write_report,
)

PERTURBATION, CONTEXT, CONTROL = "perturbation", "context", "control"
GDE = "GDE (predictor + target knock-down)"
GDE_NO_KD = "GDE (predictor only)"
GDE_GENERATED = "GDE (predictor + target knock-down, generated cells)"
MEAN, MEAN_KD = "mean shift", "mean shift + target knock-down"
RIDGE = "ridge (co-expression)"
BASELINES = (MEAN, MEAN_KD, RIDGE)
RIDGE_ALPHAS = np.logspace(-2, 4, 13)

PROFILES = {
    "default": {
        "n_genes": 500,
        "n_perturbations": 250,
        "n_cells_per_perturbation": 100,
        "n_control_cells": 2000,
        "held_out_fraction": 0.2,
        "n_latent": 16,
        "set_size": 128,
        "max_epochs": 120,
        "predictor_epochs": 500,
        "n_predicted_cells": 500,
        "seeds": [0, 1, 2],
    },
    "quick": {
        "n_genes": 200,
        "n_perturbations": 60,
        "n_cells_per_perturbation": 50,
        "n_control_cells": 500,
        "held_out_fraction": 0.2,
        "n_latent": 8,
        "set_size": 64,
        "max_epochs": 3,
        "predictor_epochs": 50,
        "n_predicted_cells": 200,
        "seeds": [0],
    },
}


# --------------------------------------------------------------------------------- data
def simulate(cfg: dict, reference, seed: int):
    """SIMULATED knock-downs, without perturbations whose target never varies in controls.

    Such targets have no co-expression features (neither the model nor the ridge baseline can
    describe them); the number dropped is returned.
    """
    import scgde

    adata = scgde.datasets.grn_perturbations(
        n_genes=cfg["n_genes"],
        n_perturbations=cfg["n_perturbations"],
        n_cells_per_perturbation=cfg["n_cells_per_perturbation"],
        n_control_cells=cfg["n_control_cells"],
        n_contexts=1,
        reference=reference,
        seed=seed,
    )
    control = (adata.obs[PERTURBATION] == CONTROL).to_numpy()
    x = adata.X[control]
    mean = np.asarray(x.mean(0)).ravel()
    variance = np.asarray(x.multiply(x).mean(0)).ravel() - mean**2
    varies = set(adata.var_names[variance > 1e-12])
    perturbations = [p for p in adata.obs[PERTURBATION].cat.categories if p != CONTROL]
    dropped = [p for p in perturbations if p not in varies]
    if dropped:
        adata = adata[~adata.obs[PERTURBATION].isin(dropped).to_numpy()].copy()
        adata.obs[PERTURBATION] = adata.obs[PERTURBATION].cat.remove_unused_categories()
    return adata, len(dropped)


def split(adata, fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Training and held-out perturbations (a seeded random ``fraction`` held out)."""
    perturbations = sorted(p for p in adata.obs[PERTURBATION].cat.categories if p != CONTROL)
    n_test = max(1, int(round(fraction * len(perturbations))))
    rng = np.random.default_rng(seed)
    test = sorted(rng.choice(perturbations, n_test, replace=False).tolist())
    train = [p for p in perturbations if p not in set(test)]
    return train, test


# ------------------------------------------------------------------------------ methods
def train_gde(train_adata, cfg: dict, seed: int):
    import scvi

    from scgde.model import PerturbationGDE

    scvi.settings.seed = seed
    adata = train_adata.copy()
    PerturbationGDE.setup_anndata(
        adata, perturbation_key=PERTURBATION, control=CONTROL, context_key=CONTEXT
    )
    model = PerturbationGDE(adata, n_latent=cfg["n_latent"], **cfg["model_kwargs"])
    t0 = time.perf_counter()
    model.train(
        max_epochs=cfg["max_epochs"],
        predictor_epochs=cfg["predictor_epochs"],
        set_size=cfg["set_size"],
        train_size=1.0,
        enable_progress_bar=False,
    )
    info = {
        "train_s": time.perf_counter() - t0,
        "steps": int(model.trainer.global_step),
        "predictor_epochs": int(model.predictor_epochs_),
        "features": f"{model.feature_kind_} ({model.perturbation_features_.shape[1]})",
    }
    return model, info


def ridge_alpha(train_log, features: pd.DataFrame, train: list[str], context: str) -> float:
    """Penalty by leave-one-perturbation-out CV (efficient LOO of ``RidgeCV``) on the shifts."""
    from sklearn.linear_model import RidgeCV

    import scgde

    shifts = scgde.tl.pseudobulk_shifts(train_log, PERTURBATION, CONTROL, context_key=CONTEXT)
    y = shifts.loc[[(p, context) for p in train]].to_numpy()
    cv = RidgeCV(alphas=RIDGE_ALPHAS, fit_intercept=True).fit(features.loc[train].to_numpy(), y)
    return float(cv.alpha_)


def run_seed(cfg: dict, reference, seed: int) -> dict:
    """Simulate, split, fit every method and score it on the held-out perturbations."""
    import scgde

    t0 = time.perf_counter()
    adata, n_dropped = simulate(cfg, reference, seed)
    train, test = split(adata, cfg["held_out_fraction"], seed)
    context = str(adata.obs[CONTEXT].cat.categories[0])
    is_test = adata.obs[PERTURBATION].isin(test).to_numpy()
    is_control = (adata.obs[PERTURBATION] == CONTROL).to_numpy()
    train_adata = adata[~is_test].copy()
    observed_log = log_normalized(adata[is_test | is_control])
    train_log = log_normalized(train_adata)
    regulator = adata.var["out_degree"] > 0
    log(
        f"seed {seed}: SIMULATED {adata.n_obs:,} cells x {adata.n_vars} genes, "
        f"{len(train)} training / {len(test)} held-out perturbations "
        f"({int(regulator[test].sum())} held-out targets are regulators; {n_dropped} dropped)"
    )

    model, info = train_gde(train_adata, cfg, seed)
    log(f"  GDE trained in {info['train_s']:.0f} s ({info['steps']} steps)")
    predictions = {}
    for method, knockdown, cells in (
        (GDE, True, "counterfactual"),
        (GDE_NO_KD, False, "counterfactual"),
        (GDE_GENERATED, True, "generated"),
    ):
        pred = model.predict(
            test,
            contexts=context,
            n_cells=cfg["n_predicted_cells"],
            seed=seed,
            target_knockdown=knockdown,
            cells=cells,
        )
        predictions[method] = (log_normalized(pred), pred.uns["predicted_shift"])
    info["knockdown_factor"] = model.knockdown_factor_

    train_pairs = [(p, context) for p in train]
    test_pairs = [(p, context) for p in test]
    for method, knockdown in ((MEAN, False), (MEAN_KD, True)):
        cells = scgde.tl.mean_shift_baseline(
            train_log,
            PERTURBATION,
            CONTROL,
            train_pairs,
            test_pairs,
            context_key=CONTEXT,
            seed=seed,
            target_knockdown=knockdown,
        )
        predictions[method] = (cells, cells.uns["predicted_shift"])
    names = train + test
    features = pd.DataFrame(
        scgde.data.perturbation_feature_matrix(names, model.perturbation_features_, CONTROL),
        index=names,
    )
    alpha = ridge_alpha(train_log, features, train, context)
    ridge = scgde.tl.ridge_baseline(
        train_log,
        PERTURBATION,
        CONTROL,
        features,
        train_pairs,
        test_pairs,
        context_key=CONTEXT,
        alpha=alpha,
        seed=seed,
    )
    predictions[RIDGE] = (ridge, ridge.uns["predicted_shift"])

    scores = {}
    for method, (cells, shift) in predictions.items():
        frame = scgde.tl.score_perturbations(
            cells,
            observed_log,
            CONTROL,
            PERTURBATION,
            CONTEXT,
            predicted_shift=shift,
            seed=seed,
        )
        frame = frame.reset_index()
        frame["seed"] = seed
        frame["regulator"] = regulator.loc[frame[PERTURBATION]].to_numpy()
        frame["r2_true"] = [
            r2_true(adata, shift.loc[(p, context)].to_numpy(), p) for p in frame[PERTURBATION]
        ]
        scores[method] = frame
    info.update(
        seed=seed,
        n_cells=adata.n_obs,
        n_train=len(train),
        n_test=len(test),
        n_test_regulators=int(regulator[test].sum()),
        n_dropped=n_dropped,
        ridge_alpha=alpha,
        seconds=time.perf_counter() - t0,
    )
    log(
        "  mean r2: "
        + "; ".join(f"{m}: {np.nanmean(s['r2']):.3f}" for m, s in scores.items())
        + f" ({info['seconds']:.0f} s)"
    )
    return {"scores": scores, "info": info}


def r2_true(adata, predicted: np.ndarray, perturbation: str) -> float:
    """Squared Pearson r of a predicted shift and the simulation's true expected shift,
    ``log1p(1e4 q_perturbation) - log1p(1e4 q_control)`` (``q``: expected share of counts)."""
    grn = adata.uns["grn"]
    groups = [str(g) for g in grn["groups"]]
    q = grn["true_mean"][0]
    truth = np.log1p(1e4 * q[groups.index(perturbation)]) - np.log1p(1e4 * q[0])
    return float(np.corrcoef(predicted, truth)[0, 1] ** 2)


# --------------------------------------------------------------------------------- report
def margin_text(m: dict) -> str:
    return f"{m['mean']:+.4f} ± {m['se']:.4f} ({m['wins']}/{m['n']})"


def margins_section(runs: list[dict]) -> str:
    """GDE's margin over each baseline in mean r2: per seed (paired over perturbations) and
    the spread over seeds."""
    rows, per_seed = [], {b: [] for b in BASELINES}
    for run in runs:
        scores, seed = run["scores"], run["info"]["seed"]
        row = [str(seed)]
        for b in BASELINES:
            m = paired_margin(scores[GDE]["r2"], scores[b]["r2"])
            per_seed[b].append(m["mean"])
            row.append(margin_text(m))
        rows.append(row)
    if len(runs) > 1:
        summary = ["**over seeds**"]
        for b in BASELINES:
            v = np.asarray(per_seed[b])
            summary.append(
                f"**{mean_se(v)}** (min {v.min():+.4f}, max {v.max():+.4f}, "
                f"{int((v > 0).sum())}/{v.size} seeds > 0)"
            )
        rows.append(summary)
    header = ["seed"] + [f"GDE − {b}" for b in BASELINES]
    return table(header, rows)


def regulator_section(pooled: dict) -> str:
    """Mean r2 by kind of target, and r2 against the simulation's true (noise-free) shift."""
    rows = []
    for method, frame in pooled.items():
        row = [method]
        for flag in (True, False):
            values = frame.loc[frame["regulator"] == flag, "r2"].to_numpy(dtype=np.float64)
            row.append(f"{mean_se(values[np.isfinite(values)])} (n={np.isfinite(values).sum()})")
        values = frame["r2_true"].to_numpy(dtype=np.float64)
        row.append(mean_se(values[np.isfinite(values)]))
        rows.append(row)
    header = [
        "method",
        "r2: target is a regulator",
        "r2: target regulates nothing",
        "r2 against the true shift",
    ]
    return table(header, rows)


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke profile")
    add_seed_arguments(parser)
    parser.add_argument("--epochs", type=int, default=None, help="max_epochs of the GDE")
    parser.add_argument(
        "--control-cells", type=int, default=None, help="control cells simulated (default 2000)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    add_model_kwargs_argument(parser)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    t_start = time.perf_counter()
    load_start = start(args.threads)
    warnings.filterwarnings("ignore", message=r"Converting a tensor with requires_grad")
    import scgde

    profile = "quick" if args.quick else "default"
    cfg = dict(PROFILES[profile])
    cfg["model_kwargs"] = args.model_kwargs
    if args.epochs is not None:
        cfg["max_epochs"] = args.epochs
    if args.control_cells is not None:
        cfg["n_control_cells"] = args.control_cells
    seeds = [args.seed] if args.seed is not None else (args.seeds or cfg["seeds"])
    print("SIMULATED data (scgde.datasets.grn_perturbations), not real measurements.", flush=True)
    reference = scgde.datasets.demo()
    runs = [run_seed(cfg, reference, seed) for seed in seeds]

    pooled = {
        method: pd.concat([run["scores"][method] for run in runs], ignore_index=True)
        for method in runs[0]["scores"]
    }
    result_md = metrics_table(pooled)
    margins_md = margins_section(runs)
    regulators_md = regulator_section(pooled)
    info = pd.DataFrame([run["info"] for run in runs])
    runs_md = table(
        [
            "seed",
            "cells",
            "train / held-out perts",
            "held-out regulators",
            "dropped",
            "GDE steps",
            "GDE train (s)",
            "predictor epochs",
            "knock-down factor",
            "ridge alpha",
            "seed total (s)",
        ],
        [
            [
                str(r.seed),
                f"{r.n_cells:,}",
                f"{r.n_train} / {r.n_test}",
                str(r.n_test_regulators),
                str(r.n_dropped),
                str(r.steps),
                f"{r.train_s:.0f}",
                str(r.predictor_epochs),
                f"{r.knockdown_factor:.3f}",
                f"{r.ridge_alpha:g}",
                f"{r.seconds:.0f}",
            ]
            for r in info.itertuples()
        ],
    )
    print(
        f"\nSIMULATED data — held-out perturbations, mean ± SE over {len(pooled[GDE])} "
        f"(perturbation, seed) items, seeds {seeds}:\n\n{result_md}\n\n"
        f"GDE's margin in mean r2 (mean ± SE of paired differences over held-out perturbations; "
        f"wins/n):\n\n{margins_md}\n\n{regulators_md}\n\n{runs_md}\n",
        flush=True,
    )

    runtime = time.perf_counter() - t_start
    command = command_line("perturbation_sim.py")
    metrics = metrics_text()
    gde_args = kwargs_text(cfg["model_kwargs"])
    doc = f"""# Unseen genetic perturbations, SIMULATED data: PerturbationGDE vs baselines

**SIMULATED data** (`scgde.datasets.grn_perturbations`), not real measurements.
Generated by `{command}` (profile **{profile}**, seeds {seeds}) in {runtime / 60:.1f} min.

## Held-out perturbations

Mean ± SE over the held-out perturbations of all seeds ({len(pooled[GDE])} items; the SE
treats them as independent and ignores the variation between seeds — see the margins below).
Metrics: {metrics}.

{result_md}

## GDE's margin over each baseline in mean r2

Per seed: mean ± SE of the paired difference GDE r2 − baseline r2 over the held-out
perturbations, and how many of them GDE wins. Over seeds: mean ± SE of the per-seed margins,
their range and the number of seeds with a positive margin.

{margins_md}

## r2 by kind of target, and against the true shift

A knock-down of a gene that regulates nothing changes only that gene; a regulator's spreads
to its downstream genes. The observed shifts that `r2` is computed on are noisy (about 100
cells per perturbation) and share the sampling noise of the control cells' pseudobulk, which
the mean-shift baselines reproduce; the last column scores every prediction against the
simulation's true expected shift instead, `log1p(1e4 q_pert) − log1p(1e4 q_control)` with
`q` the expected share of counts (`uns["grn"]["true_mean"]`).

{regulators_md}

## Runs

{runs_md}

## Settings

- Simulation, per seed: `grn_perturbations(n_genes={cfg["n_genes"]},
  n_perturbations={cfg["n_perturbations"]},
  n_cells_per_perturbation={cfg["n_cells_per_perturbation"]},
  n_control_cells={cfg["n_control_cells"]}, n_contexts=1, reference=scgde.datasets.demo(),
  seed=seed)`, other arguments at their defaults (knock-down 0.9, 4 layers, in-degree 2.5).
  Perturbations whose target gene has no counts in any control cell are dropped ("dropped":
  no co-expression features exist for them). A fraction {cfg["held_out_fraction"]} of the
  remaining perturbations is held out with `numpy.random.default_rng(seed)`; training data
  are the control cells and the training perturbations' cells.
- GDE: `PerturbationGDE.setup_anndata(perturbation_key="perturbation", control="control",
  context_key="context")`, `PerturbationGDE(train, n_latent={cfg["n_latent"]}{gde_args})` (default
  co-expression features, 16 components; deep-set encoder, CVAE generator, NB likelihood),
  `train(max_epochs={cfg["max_epochs"]}, predictor_epochs={cfg["predictor_epochs"]},
  set_size={cfg["set_size"]}, train_size=1.0)`, `scvi.settings.seed = seed`;
  `predict(held_out, contexts="context_0", n_cells={cfg["n_predicted_cells"]}, seed=seed,
  target_knockdown=True)` (the default for genetic perturbations: each target's generated
  counts are thinned to the median knock-down factor of the training targets, "knock-down
  factor" in the runs table), with the default `cells="counterfactual"` (each predicted cell
  is a control cell of the context moved from `z_ctrl` to the predicted embedding: the
  CVAE thins or adds its counts by how its decoded means change). Ablations:
  `target_knockdown=False` ("predictor only") and `cells="generated"` ("generated cells":
  new cells generated from the predicted embedding, the default before).
  The same trained model makes all three predictions.
  Training length is fixed in epochs (not wall time), so the results do not depend on the
  machine's load.
- Baselines on log1p(CP10k) training data: `mean_shift_baseline`, the same with
  `target_knockdown=True` (the target gene gets the median shift of the training targets on
  themselves instead of the mean shift) and `ridge_baseline` (alpha
  by `RidgeCV` leave-one-out over the training perturbations, grid 10^-2 … 10^4) with the
  model's own feature table; predicted cells = every control cell plus the predicted shift.
- Scores: `score_perturbations(predicted, observed, "control", "perturbation", "context",
  predicted_shift=predicted.uns["predicted_shift"], seed=seed)` with the default 20 top DE
  genes, 30 PCs and at most 500 cells per set for the energy distance; observed = the held-out
  perturbations' cells plus all control cells, log1p(CP10k). GDE's cells are generated counts,
  log-normalised the same way.

## Machine

{machine_section(load_start)}
"""
    write_report(args.output, doc, runtime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
