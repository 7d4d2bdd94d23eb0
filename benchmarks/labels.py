"""Sets indexed by a continuous label (``LabelGDE``) on a simulated dose–response.

Cells at dose ``y ~ U(0, 1)`` are ``N(mu(y), sd(y)^2 I)`` in 5 dimensions, with a curved path
of the mean and a growing spread (``scgde.datasets.dose_response``); doses in (0.4, 0.6) are
held out of training. A ``LabelGDE`` with its defaults (Gaussian kernel of a twentieth of
the dose range, flow generator) is trained once, then:

- **smoothness** of ``z(y)`` along the observed doses: mean ``|Δ²z|`` / mean ``|Δz|`` on a
  grid (0 for a straight line; an embedding that jumps between neighbouring doses gives ~1);
- **W2 tracking**: Spearman and Pearson correlation of ``|z(y1) − z(y2)|`` with the true
  W2 between the doses' distributions, over all pairs of grid doses;
- **generation** at observed doses and inside the held-out band: energy distance between
  generated and true cells, divided by the same distance between two true samples (the
  sampling floor, ratio 1). Rows in the same run: the real training cells drawn by kernel
  weight (the Nadaraya–Watson set the model encodes), the real cells at the nearest observed
  dose, and GDE from the linear interpolation of ``z`` between the band's edges.

    python benchmarks/labels.py            # about 5 minutes on 2 cores
    python benchmarks/labels.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "labels.md"

sys.path.insert(0, str(HERE))
from _common import command_line, log, machine_section, start, table, write_report  # noqa: E402

PROFILES = {
    "default": {"n_cells": 20_000, "max_epochs": None, "n_eval": 2000, "repeats": 5},
    "quick": {"n_cells": 3000, "max_epochs": 3, "n_eval": 300, "repeats": 2},
}
GAP = (0.4, 0.6)
DIM = 5
OBSERVED = np.r_[np.linspace(0.0, 0.4, 17), np.linspace(0.6, 1.0, 17)]
TEST_DOSES = (0.2, 0.45, 0.5, 0.55, 0.8)


def _truth(dose: float, n: int, rng) -> np.ndarray:
    from scgde.datasets import dose_response_truth

    mean, sd = dose_response_truth(np.full(n, dose), DIM)
    return mean + rng.normal(size=mean.shape) * sd[:, None]


def _ratio(energy, cells, dose, n, repeats, seed):
    """Median over ``repeats`` of energy(cells, truth) / energy(truth, truth')."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(repeats):
        real, other = _truth(dose, n, rng), _truth(dose, n, rng)
        values.append(energy(cells, real) / energy(other, real))
    return float(np.median(values))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke profile")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    load_start = start(args.threads)
    import scvi
    from scipy import stats

    from scgde.datasets import dose_response, dose_response_truth
    from scgde.metrics import energy_distance
    from scgde.model import LabelGDE

    cfg = PROFILES["quick" if args.quick else "default"]
    scvi.settings.seed = args.seed
    adata = dose_response(cfg["n_cells"], dim=DIM, held_out=GAP, seed=args.seed)
    LabelGDE.setup_anndata(adata, label_key="dose")
    model = LabelGDE(adata, n_latent=8)
    log(f"training on {adata.n_obs:,} cells (doses in {GAP} held out)")
    began = time.perf_counter()
    model.train(max_epochs=cfg["max_epochs"], enable_progress_bar=False)
    train_s = time.perf_counter() - began
    steps = model.trainer.global_step
    log(f"  {steps:,} steps, {train_s:.0f} s")

    began = time.perf_counter()
    grid = model.get_label_embedding(values=OBSERVED, key_added=None)
    embed_s = time.perf_counter() - began
    z = grid.X.astype(np.float64)
    roughness = []
    for part in (z[:17], z[17:]):
        second = np.linalg.norm(part[2:] - 2 * part[1:-1] + part[:-2], axis=1).mean()
        roughness.append(second / np.linalg.norm(np.diff(part, axis=0), axis=1).mean())
    i, j = np.triu_indices(len(OBSERVED), 1)
    distance = np.linalg.norm(z[i] - z[j], axis=1)
    (m1, s1), (m2, s2) = (dose_response_truth(OBSERVED[k], DIM) for k in (i, j))
    true_w2 = np.sqrt(((m1 - m2) ** 2).sum(-1) + DIM * (s1 - s2) ** 2)
    spearman = stats.spearmanr(distance, true_w2)[0]
    pearson = stats.pearsonr(distance, true_w2)[0]

    n, repeats = cfg["n_eval"], cfg["repeats"]
    rng = np.random.default_rng(args.seed + 1)
    sets = model.get_label_sets(adata)
    edges = model.get_label_embedding(values=list(GAP), key_added=None).X
    rows = []
    for k, value in enumerate(TEST_DOSES):
        generated = model.sample(label_values=[value], n_cells=n, seed=args.seed + k).X
        kernel_cells = adata.X[sets.draw_cells(rng, value, n)]
        nearest = OBSERVED[np.argmin(np.abs(OBSERVED - value))]
        nearest_cells = adata.X[sets.draw_cells(rng, nearest, n)]
        held_out = GAP[0] < value < GAP[1]
        candidates = [generated, kernel_cells] + ([nearest_cells] if held_out else [])
        if held_out:
            t = (value - GAP[0]) / (GAP[1] - GAP[0])
            between = (1 - t) * edges[0] + t * edges[1]
            candidates.append(
                model.sample(embedding=between[None], n_cells=n, seed=args.seed + k).X
            )
        row = [f"{value:g}" + (" (held out)" if held_out else "")]
        for cells in candidates:
            row.append(f"{_ratio(energy_distance, np.asarray(cells), value, n, repeats, k):.2f}")
        rows.append(row + ["–"] * (5 - len(row)))
        log(f"  dose {value}: {row[1:]}")
    geometry = table(
        ["", "value"],
        [
            [
                "roughness along observed doses, mean \\|Δ²z\\| / mean \\|Δz\\| (two stretches)",
                f"{roughness[0]:.3f}, {roughness[1]:.3f}",
            ],
            [
                f"Spearman ρ of \\|z(y1) − z(y2)\\| with the true W2 ({i.size} pairs)",
                f"{spearman:.3f}",
            ],
            ["Pearson r of the same", f"{pearson:.3f}"],
            [
                f"seconds to embed {len(OBSERVED)} doses from all {adata.n_obs:,} cells",
                f"{embed_s:.2f}",
            ],
        ],
    )
    runtime = time.perf_counter() - t_start
    header = ["dose", "GDE at the dose", "real cells by kernel weight", "nearest observed dose's"]
    header.append("GDE, z interpolated between the band's edges")
    doc = f"""# Sets indexed by a continuous label: a simulated dose–response

`{command_line("labels.py")}`; run time {runtime / 60:.1f} min.

## The embedding z(dose)

{geometry}

## Generated cells against the truth (energy distance / sampling floor; 1 is the floor)

{table(header, rows)}

- Data: `scgde.datasets.dose_response({cfg["n_cells"]:,}, dim={DIM}, held_out={GAP},
  seed={args.seed})`: {adata.n_obs:,} training cells; at dose y, `N(mu(y), (0.5 + y)^2 I)`
  with `mu(y) = (3y, 2 sin 3y, 0, 0, 0)`.
- Model: `LabelGDE.setup_anndata(adata, label_key="dose")` (bandwidth
  {model.label_bandwidth:.4f}, the default), `LabelGDE(adata, n_latent=8)` (flow generator),
  `train(max_epochs={cfg["max_epochs"]})`: {steps:,} steps in {train_s:.0f} s,
  `scvi.settings.seed = {args.seed}`; one training run.
- Each ratio: {n:,} cells against {n:,} fresh true cells at the dose, divided by the energy
  distance between two fresh true samples of {n:,}; median over {repeats} draws of the truth.
- "real cells by kernel weight": training cells drawn by their kernel weight at the dose,
  the set the model encodes (in the band, a mixture of the cells at its edges);
  "nearest observed dose's": in the band, the same at the band's nearer edge (what a model that
  cannot generate between observed doses would give).

## Machine

{machine_section(load_start)}
"""
    write_report(args.output, doc, runtime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
