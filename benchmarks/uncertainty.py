"""Calibration of the embeddings' standard errors (``GDE.get_embedding_uncertainty``).

A GDE is trained on the paper's Normal sets (5-d Gaussians with random means and covariances).
For new Gaussians, ``z(P)`` is the embedding of 20,000 of their points; from each Gaussian,
``draws`` sets of ``m`` points are drawn, and every set gets its embedding ``z(S)`` and the
bootstrap standard errors ``se(S)`` (``n_bootstrap`` Poisson-bootstrap replicates). The table
gives, per set size ``m``: the coverage of the nominal 95% intervals ``z(S) ± 1.96 se(S)``
(the fraction containing ``z(P)``, over sets, draws and embedding coordinates; goal 0.90–0.99),
the mean standard error against the actual spread of ``z(S)`` over the draws, and how both
shrink with ``m``.

    python benchmarks/uncertainty.py            # about 3 minutes on 2 cores
    python benchmarks/uncertainty.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "uncertainty.md"

sys.path.insert(0, str(HERE))
from _common import (  # noqa: E402
    GROUP_KEY,
    command_line,
    log,
    machine_section,
    start,
    table,
    train_gde,
    write_report,
)

PROFILES = {
    "default": {"n_train_sets": 1000, "max_epochs": 20, "n_test": 20, "draws": 20},
    "quick": {"n_train_sets": 200, "max_epochs": 2, "n_test": 4, "draws": 5},
}
N_POINTS, N_POPULATION, Z_DIM = 100, 20_000, 8
HEADER = ["m (points per set)", "coverage of z ± 1.96 se", "mean se", "sd of z over draws"]
HEADER += ["se / sd", "seconds"]


def _draws(population, sizes_and_seed):
    """AnnData of ``draws`` sets of ``m`` points of every population set, named
    ``"<set>|<draw>"``."""
    import anndata as ad
    import pandas as pd

    m, draws, seed = sizes_and_seed
    rng = np.random.default_rng(seed)
    labels = population.obs[GROUP_KEY].astype(str).to_numpy()
    rows, names = [], []
    for name in population.obs[GROUP_KEY].cat.categories:
        members = np.flatnonzero(labels == name)
        for d in range(draws):
            rows.append(rng.choice(members, m, replace=False))
            names += [f"{name}|{d}"] * m
    rows = np.concatenate(rows)
    obs = pd.DataFrame({GROUP_KEY: pd.Categorical(names)}, index=[str(i) for i in range(len(rows))])
    return ad.AnnData(np.asarray(population.X[rows]), obs=obs, var=population.var.copy())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke profile")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 100, 500])
    parser.add_argument("--n-bootstrap", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    load_start = start(args.threads)
    from scgde.datasets import gaussian_sets

    cfg = PROFILES["quick" if args.quick else "default"]
    train, _ = gaussian_sets(cfg["n_train_sets"], N_POINTS, seed=args.seed)
    population, _ = gaussian_sets(cfg["n_test"], N_POPULATION, seed=args.seed + 1000)
    log(f"training on {cfg['n_train_sets']} sets of {N_POINTS} points, {cfg['max_epochs']} epochs")
    model, info = train_gde(
        train,
        "deepset",
        "flow",
        n_latent=Z_DIM,
        set_size=N_POINTS,
        groups_per_batch=16,
        max_epochs=cfg["max_epochs"],
        budget_s=None,
        seed=args.seed,
    )
    log(f"  {info['steps']:,} steps, {info['train_s']:.0f} s")
    from scgde.model import GDE

    GDE.setup_anndata(population, group_key=GROUP_KEY)
    truth = model.get_distribution_embedding(population, key_added=None)

    rows, summary = [], {}
    for i, m in enumerate(args.sizes):
        sets = _draws(population, (m, cfg["draws"], args.seed + i))
        GDE.setup_anndata(sets, group_key=GROUP_KEY)
        began = time.perf_counter()
        se = model.get_embedding_uncertainty(
            sets, n_bootstrap=args.n_bootstrap, seed=args.seed, key_added=None
        )
        seconds = time.perf_counter() - began
        z = model.get_distribution_embedding(sets, key_added=None).loc[se.index]
        source = [name.split("|")[0] for name in se.index]
        errors = z.to_numpy() - truth.loc[source].to_numpy()
        covered = np.abs(errors) <= 1.96 * se.to_numpy()
        per_draw = covered.mean(axis=1)
        spread = z.groupby(source).std(ddof=1).to_numpy().mean()
        summary[m] = (float(se.to_numpy().mean()), float(spread))
        rows.append(
            [
                str(m),
                f"{covered.mean():.3f} ± {per_draw.std(ddof=1) / np.sqrt(per_draw.size):.3f}",
                f"{se.to_numpy().mean():.4f}",
                f"{spread:.4f}",
                f"{se.to_numpy().mean() / spread:.2f}",
                f"{seconds:.1f} ({len(se)} sets)",
            ]
        )
        log(f"m = {m}: coverage {covered.mean():.3f}")
    smallest, largest = min(args.sizes), max(args.sizes)
    shrink = summary[largest][0] / summary[smallest][0]
    runtime = time.perf_counter() - t_start
    doc = f"""# Calibration of the embeddings' standard errors

`{command_line("uncertainty.py")}`; run time {runtime / 60:.1f} min.

{table(HEADER, rows)}

- Coverage: the fraction of intervals `z(S) ± 1.96 se(S)` that contain `z(P)`, over
  {cfg["n_test"]} Gaussians × {cfg["draws"]} draws × {Z_DIM} coordinates (± its standard
  error over draws). Nominal 0.95; goal 0.90–0.99.
- The mean standard error shrinks by {shrink:.3f} from m = {smallest} to m = {largest}
  (1 / sqrt({largest} / {smallest}) = {np.sqrt(smallest / largest):.3f}).
- Data: `gaussian_sets` (the paper's Normal family, 5-d, means U(0, 5)^5, covariances inverse
  Wishart with 40 degrees of freedom). `z(P)`: the embedding of {N_POPULATION:,} points of
  each test Gaussian (seed {args.seed + 1000}); the draws are sets of m of those points,
  without replacement.
- Model: `GDE(n_latent={Z_DIM}, encoder="deepset", generator="flow")` trained on
  {cfg["n_train_sets"]:,} sets of {N_POINTS} points for {cfg["max_epochs"]} epochs
  ({info["steps"]:,} steps, {info["train_s"]:.0f} s), `scvi.settings.seed = {args.seed}`.
- Standard errors: `model.get_embedding_uncertainty(n_bootstrap={args.n_bootstrap})`; seconds
  for all sets of a size at once.

## Machine

{machine_section(load_start)}
"""
    write_report(args.output, doc, runtime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
