#!/usr/bin/env python
"""Ablation of the training recipe and of the flow generator on the paper's Normal benchmark.

Run from the repository root::

    python benchmarks/ablation.py              # every row, 60 s of training each (~25 min)
    python benchmarks/ablation.py --quick      # 3 rows, 15 s each (~2 min)
    python benchmarks/ablation.py --budget 240 --rows default "- EMA"

Each row trains one ``GDE`` on ``gaussian_sets(2000, 64)`` (5-d Normal sets, as in
``synthetic.py``) for a fixed wall-time budget with the defaults of ``GDE`` and ``GDE.train``
except for the one change the row names, then embeds fresh evaluation sets of 1,000 points and
generates 1,000 points from each embedding; the score is ``gaussian_fit_error`` (||mu −
mean|| + Bures²) against the true parameters, for evaluation means from U(0,5)^5 and from
U(0,1)^5. Rows at a fixed budget compare what each recipe achieves **per second** of CPU time:
a change that makes steps slower or faster shows in the number of steps.

The table is printed and written to ``--output`` (default ``benchmarks/results/ablation.md``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "ablation.md"
sys.path.insert(0, str(HERE))
from _common import (  # noqa: E402
    command_line,
    log,
    machine_section,
    mean_se,
    set_points,
    start,
    table,
    time_budget_callback,
    write_report,
)

SET_SIZE = 64

#: label -> changes from the defaults: GDE arguments (``gde``), ``train`` arguments
#: (``train``), ``plan_kwargs`` (``plan``), sampler options (``sampler``), and
#: ``raw_input=True`` to undo the standardisation of the encoder input.
ROWS: dict[str, dict] = {
    "default (flow, all of the recipe)": {},
    "- EMA of the weights": {"plan": {"ema_decay": None}},
    "- lr warm-up": {"plan": {"lr_warmup_steps": 0}},
    "- standardised encoder input": {"raw_input": True},
    "- mean skip in the encoder": {"gde": {"encoder_kwargs": {"mean_skip": False}}},
    "- frame (plain flow matching)": {"gde": {"generator_kwargs": {"frame": "global"}}},
    "flow frame: source (paths from the frame's Gaussian)": {
        "gde": {"generator_kwargs": {"frame": "source"}}
    },
    "- variable set sizes (all 64)": {"train": {"min_set_size": SET_SIZE}},
    "flow n_hidden 256": {"gde": {"generator_kwargs": {"n_hidden": 256}}},
    "flow sampler: midpoint, 10 steps": {"sampler": {"method": "midpoint"}},
    "flow sampler: Euler, 5 steps": {"sampler": {"n_sampling_steps": 5}},
    "64 sets per step (lr 4e-3, EMA 0.996)": {"train": {"groups_per_batch": 64}},
    "64 sets per step, lr 2e-3": {"train": {"groups_per_batch": 64, "lr": 2e-3}},
    "64 sets per step, lr 1e-3, EMA 0.999": {
        "train": {"groups_per_batch": 64, "lr": 1e-3},
        "plan": {"ema_decay": 0.999},
    },
    "generator: diffusion (DDIM 50)": {
        "gde": {"generator": "diffusion"},
        "sampler": {"method": "ddim", "n_sampling_steps": 50},
    },
    "generator: CVAE (Gaussian)": {"gde": {"generator": "cvae"}},
    "previous recipe (plain flow, no EMA / warm-up / standardisation / skip, sets of 64)": {
        "gde": {"generator_kwargs": {"frame": "global"}, "encoder_kwargs": {"mean_skip": False}},
        "train": {"min_set_size": SET_SIZE},
        "plan": {"ema_decay": None, "lr_warmup_steps": 0},
        "raw_input": True,
    },
}
QUICK_ROWS = [
    "default (flow, all of the recipe)",
    "- EMA of the weights",
    "generator: CVAE (Gaussian)",
]


def run_row(changes: dict, train_adata, evals, budget_s: float, seed: int) -> dict:
    """Train with ``changes`` for ``budget_s`` seconds and score both evaluation ranges."""
    import scvi

    from scgde.metrics import gaussian_fit_error
    from scgde.model import GDE

    scvi.settings.seed = seed
    adata = train_adata.copy()
    GDE.setup_anndata(adata, group_key="set")
    model = GDE(adata, n_latent=32, **changes.get("gde", {}))
    if changes.get("raw_input"):
        model.module.input_mean.zero_()
        model.module.input_std.fill_(1.0)
    callback = time_budget_callback(budget_s)
    t0 = time.perf_counter()
    model.train(
        max_epochs=10_000,
        set_size=SET_SIZE,
        train_size=1.0,
        plan_kwargs=changes.get("plan"),
        enable_progress_bar=False,
        callbacks=[callback],
        **changes.get("train", {}),
    )
    result = {"train_s": time.perf_counter() - t0, "steps": int(model.trainer.global_step)}
    eval_s = 0.0
    for name, (eval_adata, params) in evals.items():
        t1 = time.perf_counter()
        emb = model.get_distribution_embedding(eval_adata, key_added=None)
        n = int(eval_adata.n_obs / len(emb))
        cells = model.sample(
            embedding=emb,
            n_cells=n,
            adata=eval_adata,
            seed=seed + 1,
            sampler_kwargs=changes.get("sampler"),
        )
        x, source = np.asarray(cells.X, dtype=np.float64), cells.obs["group"].astype(str)
        generated = {str(g): x[(source == str(g)).to_numpy()] for g in emb.index}
        eval_s += time.perf_counter() - t1
        names, _ = set_points(eval_adata)
        result[name] = [
            gaussian_fit_error(generated[g], params["means"][i], params["covs"][i])
            for i, g in enumerate(names)
        ]
    result["eval_s_per_set"] = eval_s / sum(len(p["means"]) for _, p in evals.values())
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rows, 15 s each")
    parser.add_argument("--budget", type=float, default=None, help="training seconds per row")
    parser.add_argument("--rows", nargs="+", default=None, help="row labels (prefix match)")
    parser.add_argument("--eval-sets", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    load_start = start(args.threads)

    from scgde.datasets import gaussian_sets

    budget = args.budget or (15.0 if args.quick else 60.0)
    labels = QUICK_ROWS if args.quick else list(ROWS)
    if args.rows:
        labels = [label for label in ROWS if any(label.startswith(r) for r in args.rows)]
    train_adata, _ = gaussian_sets(2_000, SET_SIZE, dim=5, seed=args.seed)
    evals = {
        "U(0,5)": gaussian_sets(args.eval_sets, 1_000, dim=5, mean_range=(0, 5), seed=1000),
        "U(0,1)": gaussian_sets(args.eval_sets, 1_000, dim=5, mean_range=(0, 1), seed=2000),
    }
    rows = []
    for label in labels:
        log(f"{label}: training for {budget:.0f} s")
        r = run_row(ROWS[label], train_adata, evals, budget, args.seed)
        scores = f"U(0,5) {np.mean(r['U(0,5)']):.4f}, U(0,1) {np.mean(r['U(0,1)']):.4f}"
        log(f"  {r['steps']} steps; {scores}")
        rows.append(
            [
                label,
                f"{r['steps']:,}",
                mean_se(r["U(0,5)"]),
                mean_se(r["U(0,1)"]),
                f"{r['eval_s_per_set']:.3f}",
            ]
        )
    md = table(
        ["row", "steps", "Normal U(0,5)", "Normal U(0,1)", "encode + generate (s per set)"], rows
    )
    print("\n" + md + "\n", flush=True)
    runtime = time.perf_counter() - t_start
    doc = f"""# Ablation of the training recipe and the flow generator (Normal benchmark)

Generated by `{command_line("ablation.py")}` in {runtime / 60:.1f} min.

Lower is better; mean ± standard error over {args.eval_sets} evaluation sets of 1,000 points
(sampling floor of the metric at n = 1,000: about 0.012; a Gaussian fitted to the 1,000 input
points: about 0.016, see `synthetic.md`). Every row trains for **{budget:.0f} s** of wall time
(the epoch in progress is finished), so rows compare quality per second of CPU time.

{md}

- Training: `gaussian_sets(2000, 64)` (5-d, means U(0,5)^5, covariances inverse Wishart(df 40,
  I)), `GDE(adata, n_latent=32)` with the library's defaults (continuous data: flow generator,
  Gaussian likelihood) and `train(set_size=64, train_size=1.0)`, `scvi.settings.seed =
  {args.seed}`, except for what the row changes ("-" removes one part of the default recipe).
- Evaluation: fresh `gaussian_sets({args.eval_sets}, 1000, mean_range=...)` (seeds 1000 and
  2000); each set is embedded from its 1,000 points and 1,000 points are generated from the
  embedding; score `gaussian_fit_error` against the true mean and covariance.
- "encode + generate": wall time of embedding and generating, per evaluation set of 1,000
  points.
- One seed, one run per row: differences below about two standard errors are noise.

## Machine

{machine_section(load_start)}
"""
    write_report(args.output, doc, runtime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
