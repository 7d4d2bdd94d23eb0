#!/usr/bin/env python
"""Does the distribution embedding see Wasserstein geometry? (GDE paper, W2 geometry).

Run from the repository root::

    python benchmarks/geometry.py            # CPU profile (~20 min on 2 cores)
    python benchmarks/geometry.py --quick    # smoke profile (~2 min)
    python benchmarks/geometry.py --full     # larger training, for a GPU

Three measurements, for each learned model and beside simple baselines computed from the same
input points:

1. **2-d Gaussians.** Train on ``gaussian_sets(dim=2, mean_range=(0, 2), df=5)`` (means
   U(0, 2)^2, covariances inverse Wishart(df 5, I), so that both means and covariances matter
   for W2). Embed fresh evaluation sets of n points and report the Spearman correlation between
   ||z_i - z_j|| and the true W2(P_i, P_j) (closed form) over all pairs (>= 5,000).
2. **Gaussian mixtures.** Train on ``mixed_gaussian_sets`` (3 Gaussian source sets per set,
   Dirichlet(1) weights), evaluate on fresh 3-component ``gaussian_mixture_sets``; the "true"
   distance is the mixture-Wasserstein distance MW2 (Delon & Desolneux; an upper bound on W2
   that is exact for single Gaussians), because exact W2 between mixtures has no closed form.
3. **Interpolation.** For pairs of evaluation Gaussians A, B: decode n points from
   z_t = (1 - t) z_A + t z_B and compare them with the exact McCann (displacement)
   interpolant N_t (:func:`scgde.metrics.gaussian_geodesic`): exact W2 (optimal transport
   between point clouds) from the n decoded points to n points of N_t, divided by W2(A, B).
   The same with A's own points moved to z_t by the generator
   (``GDE.counterfactual_cells``), the cell-level analogue of displacement interpolation.
   Beside it: the mixture path (1 - t) A + t B (what a model that interpolates densities
   would give) and the sampling floor (n points drawn from N_t itself).

Baselines (no training): distance between the sets' empirical means, and between
(mean, sqrt(covariance)) vectors (Frobenius norm for the root). The table is printed and
written to ``--output`` (default ``benchmarks/results/geometry.md``), with a figure
(``geometry.png``) and the machine and settings.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "geometry.md"

sys.path.insert(0, str(HERE))
from _common import (  # noqa: E402
    budget_text,
    command_line,
    generate_from_embeddings,
    log,
    machine_section,
    sampler_for,
    set_points,
    start,
    table,
    train_gde,
    write_report,
)

DIM = 2
SET_SIZE = 64
MEAN_RANGE = (0.0, 2.0)
DF = 5
INTERPOLATION_TIMES = (0.0, 0.25, 0.5, 0.75, 1.0)
N_BOOTSTRAP = 200
SPEARMAN_HEADER = ["embedding", "kind", "Spearman ρ", "95% CI (bootstrap over sets)"]

PROFILES = {
    "default": {
        "n_train_sets": 2_000,
        "max_epochs": 100,
        "time_budget_s": 120.0,
        "groups_per_batch": 16,
        "n_eval_sets": 150,  # 11,175 pairs
        "n_gmm_eval_sets": 120,  # 7,140 pairs
        "n_eval_points": 1_000,
        "n_interpolation_pairs": 20,
        "sampler": {"method": "ddim", "n_sampling_steps": 50},
    },
    "quick": {
        "n_train_sets": 400,
        "max_epochs": 3,
        "time_budget_s": 15.0,
        "groups_per_batch": 16,
        "n_eval_sets": 101,  # 5,050 pairs
        "n_gmm_eval_sets": 101,
        "n_eval_points": 300,
        "n_interpolation_pairs": 4,
        "sampler": {"method": "ddim", "n_sampling_steps": 20},
    },
    "full": {
        "n_train_sets": 20_000,
        "max_epochs": 200,
        "time_budget_s": None,
        "groups_per_batch": 64,
        "n_eval_sets": 300,
        "n_gmm_eval_sets": 200,
        "n_eval_points": 2_000,
        "n_interpolation_pairs": 50,
        "sampler": None,
    },
}

MODELS = [
    # (label, encoder, generator, generator_kwargs); the first is GDE's default for continuous
    # data
    ("deepset + flow (default)", "deepset", "flow", None),
    ("deepset + flow, source frame", "deepset", "flow", {"frame": "source"}),
    ("deepset + diffusion", "deepset", "diffusion", None),
    ("deepset + CVAE", "deepset", "cvae", None),
    ("kme + diffusion", "kme", "diffusion", None),
]


# ------------------------------------------------------------------------------- distances
def pair_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Upper-triangle index pairs (i < j)."""
    return np.triu_indices(n, k=1)


def pairwise_euclidean(vectors: np.ndarray) -> np.ndarray:
    """Full matrix of Euclidean distances between the rows of ``vectors``."""
    vectors = np.asarray(vectors, dtype=np.float64)
    sq = (vectors**2).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * vectors @ vectors.T
    return np.sqrt(np.clip(d2, 0.0, None))


def baseline_vectors(points: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-set summary vectors of the two no-training baselines."""
    from scgde.metrics import sqrtm_psd

    means = np.stack([x.mean(0) for x in points])
    roots = np.stack([sqrtm_psd(np.cov(x, rowvar=False)).ravel() for x in points])
    return {
        "empirical mean distance": means,
        "(mean, sqrt cov) distance": np.concatenate([means, roots], axis=1),
    }


def spearman_with_ci(distance: np.ndarray, truth: np.ndarray, seed: int) -> tuple[float, tuple]:
    """Spearman correlation over all pairs, and a 95% bootstrap interval resampling the *sets*.

    Pairs share sets, so resampling pairs would understate the uncertainty; each bootstrap
    replicate draws sets with replacement and uses the pairs among distinct drawn sets.
    """
    from scipy.stats import spearmanr

    n = truth.shape[0]
    i, j = pair_indices(n)
    rho = float(spearmanr(distance[i, j], truth[i, j])[0])
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(N_BOOTSTRAP):
        drawn = np.unique(rng.integers(0, n, size=n))
        a, b = pair_indices(drawn.size)
        reps.append(spearmanr(distance[drawn[a], drawn[b]], truth[drawn[a], drawn[b]])[0])
    low, high = np.percentile(reps, [2.5, 97.5])
    return rho, (float(low), float(high))


def gaussian_truth(params) -> np.ndarray:
    from scgde.metrics import gaussian_w2_matrix

    means, covs = params["means"], params["covs"]
    return np.sqrt(np.clip(gaussian_w2_matrix(means, covs, means, covs), 0.0, None))


def mixture_truth(params) -> np.ndarray:
    from scgde.metrics import gmm_w2_squared

    w, m, c = params["weights"], params["means"], params["covs"]
    n = len(w)
    truth = np.zeros((n, n))
    for i, j in zip(*pair_indices(n), strict=True):
        value = gmm_w2_squared(w[i], m[i], c[i], w[j], m[j], c[j])
        truth[i, j] = truth[j, i] = np.sqrt(max(value, 0.0))
    return truth


def geometry_rows(models, eval_adata, truth, seed) -> tuple[list[list[str]], dict]:
    """Spearman rows for the learned models and the baselines on one evaluation family."""
    _, pts = set_points(eval_adata)
    rows, distances = [], {}
    for label, model in models.items():
        z = model.get_distribution_embedding(eval_adata, key_added=None).to_numpy()
        distances[label] = pairwise_euclidean(z)
    for label, vectors in baseline_vectors(pts).items():
        distances[label] = pairwise_euclidean(vectors)
    for label, distance in distances.items():
        rho, (low, high) = spearman_with_ci(distance, truth, seed)
        kind = "learned" if label in models else "baseline"
        rows.append([label, kind, f"{rho:.3f}", f"[{low:.3f}, {high:.3f}]"])
    return rows, distances


# --------------------------------------------------------------------------- interpolation
def sample_w2(points: np.ndarray, mean: np.ndarray, cov: np.ndarray, rng) -> float:
    """Exact W2 (POT ``emd2``) between ``points`` and as many fresh points of N(mean, cov)."""
    import ot
    from scipy.spatial.distance import cdist

    reference = rng.multivariate_normal(mean, cov, size=points.shape[0])
    weights = np.full(points.shape[0], 1.0 / points.shape[0])
    return float(np.sqrt(ot.emd2(weights, weights, cdist(points, reference, "sqeuclidean"))))


def interpolation_pairs(n_sets: int, n_pairs: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(n_sets, size=2, replace=False) for _ in range(n_pairs)])


def interpolation_errors(model, eval_adata, params, pairs, n, sampler, seed) -> np.ndarray:
    """Relative W2 error of decoded z-interpolations: shape ``(n_pairs, len(times))``."""
    from scgde.metrics import gaussian_geodesic, gaussian_w2

    z = model.get_distribution_embedding(eval_adata, key_added=None).to_numpy()
    means, covs = params["means"], params["covs"]
    names, embeddings, targets = [], [], []
    for p, (a, b) in enumerate(pairs):
        for k, t in enumerate(INTERPOLATION_TIMES):
            names.append(f"pair{p}_t{k}")
            embeddings.append((1.0 - t) * z[a] + t * z[b])
            targets.append(gaussian_geodesic(means[a], covs[a], means[b], covs[b], t))
    import pandas as pd

    emb = pd.DataFrame(np.stack(embeddings), index=names)
    generated = generate_from_embeddings(model, emb, eval_adata, n, sampler, seed)
    rng = np.random.default_rng(seed)
    errors = np.empty((len(pairs), len(INTERPOLATION_TIMES)))
    for idx, (name, (mean_t, cov_t)) in enumerate(zip(names, targets, strict=True)):
        p, k = divmod(idx, len(INTERPOLATION_TIMES))
        a, b = pairs[p]
        scale = gaussian_w2(means[a], covs[a], means[b], covs[b], squared=False)
        errors[p, k] = sample_w2(generated[name], mean_t, cov_t, rng) / scale
    return errors


def moved_interpolation_errors(model, eval_adata, params, pairs, sampler, seed) -> np.ndarray:
    """Relative W2 error of A's own points moved to z_t = (1 - t) z_A + t z_B
    (``GDE.counterfactual_cells``): shape ``(n_pairs, len(times))``."""
    from scgde.metrics import gaussian_geodesic, gaussian_w2

    z = model.get_distribution_embedding(eval_adata, key_added=None)
    means, covs = params["means"], params["covs"]
    rng = np.random.default_rng(seed)
    errors = np.empty((len(pairs), len(INTERPOLATION_TIMES)))
    for p, (a, b) in enumerate(pairs):
        scale = gaussian_w2(means[a], covs[a], means[b], covs[b], squared=False)
        for k, t in enumerate(INTERPOLATION_TIMES):
            moved = model.counterfactual_cells(
                to=(1.0 - t) * z.iloc[a].to_numpy() + t * z.iloc[b].to_numpy(),
                groups=[z.index[a]],
                adata=eval_adata,
                seed=seed,
                sampler_kwargs=sampler_for(model, sampler),
            )
            mean_t, cov_t = gaussian_geodesic(means[a], covs[a], means[b], covs[b], t)
            points = np.asarray(moved.X, dtype=np.float64)
            errors[p, k] = sample_w2(points, mean_t, cov_t, rng) / scale
    return errors


def reference_interpolation_errors(params, pairs, n, seed) -> dict[str, np.ndarray]:
    """The mixture path (1 - t) A + t B and the sampling floor of N_t, same score."""
    from scgde.metrics import gaussian_geodesic, gaussian_w2

    rng = np.random.default_rng(seed)
    means, covs = params["means"], params["covs"]
    mixture_label, floor_label = "mixture path (1 - t) A + t B", "sampling floor (n points of N_t)"
    out = {
        label: np.empty((len(pairs), len(INTERPOLATION_TIMES)))
        for label in (mixture_label, floor_label)
    }
    for p, (a, b) in enumerate(pairs):
        scale = gaussian_w2(means[a], covs[a], means[b], covs[b], squared=False)
        for k, t in enumerate(INTERPOLATION_TIMES):
            mean_t, cov_t = gaussian_geodesic(means[a], covs[a], means[b], covs[b], t)
            from_b = rng.random(n) < t
            mixture = np.where(
                from_b[:, None],
                rng.multivariate_normal(means[b], covs[b], size=n),
                rng.multivariate_normal(means[a], covs[a], size=n),
            )
            floor = rng.multivariate_normal(mean_t, cov_t, size=n)
            out[mixture_label][p, k] = sample_w2(mixture, mean_t, cov_t, rng) / scale
            out[floor_label][p, k] = sample_w2(floor, mean_t, cov_t, rng) / scale
    return out


def interpolation_row(label: str, errors: np.ndarray) -> list[str]:
    se = errors.std(0, ddof=1) / np.sqrt(errors.shape[0])
    cells = [f"{m:.3f} ± {s:.3f}" for m, s in zip(errors.mean(0), se, strict=True)]
    return [label, *cells, f"{errors.mean():.3f}"]


# ---------------------------------------------------------------------------------- figure
def plot(path: Path, distance, truth, label, model, eval_adata, params, pair, n, sampler, seed):
    """Left: ||z_i - z_j|| against W2; right: decoded z-interpolation vs McCann ellipses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from scgde.metrics import gaussian_geodesic

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.4))
    i, j = pair_indices(truth.shape[0])
    ax1.scatter(truth[i, j], distance[i, j], s=2, alpha=0.25, rasterized=True)
    ax1.set_xlabel("true W2 between the Gaussians")
    ax1.set_ylabel("||z_i - z_j||")
    ax1.set_title(f"{label}: embedding distance vs W2")

    a, b = pair
    z = model.get_distribution_embedding(eval_adata, key_added=None).to_numpy()
    times = np.linspace(0.0, 1.0, 5)
    emb = pd.DataFrame(
        np.stack([(1 - t) * z[a] + t * z[b] for t in times]), index=[f"t={t:.2f}" for t in times]
    )
    generated = generate_from_embeddings(model, emb, eval_adata, n, sampler, seed)
    colours = plt.cm.viridis(np.linspace(0, 1, len(times)))
    extent = []
    angle = np.linspace(0, 2 * np.pi, 200)
    circle = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    for t, name, colour in zip(times, emb.index, colours, strict=True):
        pts = generated[name]
        ax2.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.2, color=colour)
        mean_t, cov_t = gaussian_geodesic(
            params["means"][a], params["covs"][a], params["means"][b], params["covs"][b], t
        )
        values, vectors = np.linalg.eigh(cov_t)
        ellipse = mean_t + 2.0 * (circle * np.sqrt(values)) @ vectors.T
        ax2.plot(ellipse[:, 0], ellipse[:, 1], color=colour, lw=1.5, label=name)
        extent.append(mean_t + 3.0 * (circle * np.sqrt(values)) @ vectors.T)
    ax2.set_title("decoded (1-t) z_A + t z_B (points)\nvs McCann interpolant (2-sd ellipses)")
    ax2.legend(fontsize=7, loc="best")
    extent = np.concatenate(extent)  # 3-sd ellipses: outlying decoded points are clipped
    ax2.set_xlim(extent[:, 0].min(), extent[:, 0].max())
    ax2.set_ylim(extent[:, 1].min(), extent[:, 1].max())
    ax2.set_aspect("equal", adjustable="box")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


# ------------------------------------------------------------------------------------ main
def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="smoke profile (~2 min)")
    group.add_argument("--full", action="store_true", help="larger training, for a GPU")
    parser.add_argument(
        "--time-budget", type=float, default=None, help="seconds of training per model (0: none)"
    )
    parser.add_argument("--n-latent", type=int, default=32, help="GDE n_latent (default 32)")
    parser.add_argument(
        "--rows", nargs="+", default=None, help="only the models whose label contains one of these"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0, help="base seed")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown file")
    return parser.parse_args(argv)


def _train_all(train_adata, cfg, args, family: str):
    models, details = {}, []
    for label, encoder, generator, generator_kwargs in MODELS:
        if args.rows and not any(row in label for row in args.rows):
            continue
        log(f"{family}: training {label} on {cfg['n_train_sets']:,} sets")
        model, info = train_gde(
            train_adata,
            encoder,
            generator,
            n_latent=args.n_latent,
            set_size=SET_SIZE,
            groups_per_batch=cfg["groups_per_batch"],
            max_epochs=cfg["max_epochs"],
            budget_s=cfg["time_budget_s"],
            seed=args.seed,
            generator_kwargs=generator_kwargs,
        )
        log(f"  {info['epochs']} epochs, {info['steps']:,} steps, {info['train_s']:.0f} s")
        models[label] = model
        details.append(
            [
                family,
                label,
                str(info["epochs"]),
                f"{info['steps']:,}",
                f"{info['train_s']:.0f}",
                "yes" if info["stopped_by_budget"] else "no",
            ]
        )
    return models, details


def main(argv=None) -> int:
    args = _parse(argv)
    t_start = time.perf_counter()
    load_start = start(args.threads)
    from scgde.datasets import gaussian_mixture_sets, gaussian_sets, mixed_gaussian_sets

    profile = "quick" if args.quick else "full" if args.full else "default"
    cfg = dict(PROFILES[profile])
    if args.time_budget is not None:
        cfg["time_budget_s"] = args.time_budget if args.time_budget > 0 else None
    log(f"profile {profile}: {cfg}")
    n = cfg["n_eval_points"]
    family_kwargs = {"dim": DIM, "mean_range": MEAN_RANGE}

    # 1. Gaussians ------------------------------------------------------------------------
    train, _ = gaussian_sets(cfg["n_train_sets"], SET_SIZE, df=DF, seed=args.seed, **family_kwargs)
    evaluation, params = gaussian_sets(
        cfg["n_eval_sets"], n, df=DF, seed=args.seed + 1000, **family_kwargs
    )
    truth = gaussian_truth(params)
    models, details = _train_all(train, cfg, args, "Gaussians")
    gauss_rows, gauss_distances = geometry_rows(models, evaluation, truth, args.seed + 1)
    n_pairs = truth.shape[0] * (truth.shape[0] - 1) // 2
    gauss_md = table(SPEARMAN_HEADER, gauss_rows)
    print(f"\n## 2-d Gaussians ({n_pairs:,} pairs)\n\n{gauss_md}\n", flush=True)

    # 3. interpolation (uses the Gaussian models) -----------------------------------------
    pairs = interpolation_pairs(cfg["n_eval_sets"], cfg["n_interpolation_pairs"], args.seed + 2)
    interp_rows, interp_means = [], {}
    for label, model in models.items():
        log(f"interpolation: {label}")
        errors = interpolation_errors(
            model, evaluation, params, pairs, n, cfg["sampler"], args.seed + 3
        )
        interp_rows.append(interpolation_row(f"{label}: decode (1 - t) z_A + t z_B", errors))
        interp_means[label] = errors.mean()
        moved = moved_interpolation_errors(
            model, evaluation, params, pairs, cfg["sampler"], args.seed + 3
        )
        interp_rows.append(
            interpolation_row(f"{label}: move A's points to (1 - t) z_A + t z_B", moved)
        )
    for label, errors in reference_interpolation_errors(params, pairs, n, args.seed + 4).items():
        interp_rows.append(interpolation_row(label, errors))
    interp_md = table(["path", *(f"t = {t}" for t in INTERPOLATION_TIMES), "mean"], interp_rows)
    print(f"\n## Interpolation (W2 to McCann / W2(A, B))\n\n{interp_md}\n", flush=True)
    figure = args.output.with_suffix(".png")
    best = min(interp_means, key=interp_means.get)  # the figure shows the best interpolator
    plot(
        figure, gauss_distances[best], truth, best, models[best], evaluation, params,
        pairs[0], n, cfg["sampler"], args.seed + 5,
    )  # fmt: skip
    del models

    # 2. mixtures -------------------------------------------------------------------------
    mix_train, _ = mixed_gaussian_sets(
        cfg["n_train_sets"], SET_SIZE, n_sources=3, df=DF, seed=args.seed + 6, **family_kwargs
    )
    mix_eval, mix_params = gaussian_mixture_sets(
        cfg["n_gmm_eval_sets"], n, n_components=3, df=DF, seed=args.seed + 7, **family_kwargs
    )
    mix_truth = mixture_truth(mix_params)
    mix_models, mix_details = _train_all(mix_train, cfg, args, "mixtures")
    mix_rows, _ = geometry_rows(mix_models, mix_eval, mix_truth, args.seed + 8)
    mix_pairs = mix_truth.shape[0] * (mix_truth.shape[0] - 1) // 2
    mix_md = table(SPEARMAN_HEADER, mix_rows)
    print(f"\n## Gaussian mixtures ({mix_pairs:,} pairs)\n\n{mix_md}\n", flush=True)

    runtime = time.perf_counter() - t_start
    command = command_line("geometry.py")
    budget = budget_text(cfg)
    sampler = (
        f"DDIM, {cfg['sampler']['n_sampling_steps']} steps" if cfg["sampler"] else "ancestral DDPM"
    )
    details_md = table(
        ["family", "model", "epochs", "steps", "train (s)", "stopped by time budget"],
        details + mix_details,
    )
    doc = f"""# W2 geometry of the distribution embedding

Generated by `{command}` (profile **{profile}**) in {runtime / 60:.1f} min. Paper (GDE,
NeurIPS 2025): Spearman 0.96 on 2-d Gaussians, 0.76 on Gaussian mixtures.

## 2-d Gaussians ({n_pairs:,} pairs of {cfg["n_eval_sets"]} evaluation sets)

{gauss_md}

- Spearman correlation between the distance of two sets' representations and the true
  W2 between their distributions (closed form), over all pairs. Higher is better.
- Training: `gaussian_sets({cfg["n_train_sets"]}, {SET_SIZE}, dim=2, mean_range=(0, 2),
  df=5)`; evaluation: `gaussian_sets({cfg["n_eval_sets"]}, {n}, ...)` (fresh seed), each
  set embedded from its {n:,} points.
- Baselines use the same {n:,} points: the empirical means; the vector (mean,
  sqrt(covariance)) — for Gaussians W2² = ||Δmean||² + Bures², and the Bures distance is at
  most the Frobenius distance of the roots, so this baseline is close to an oracle here.

## Gaussian mixtures ({mix_pairs:,} pairs of {cfg["n_gmm_eval_sets"]} evaluation mixtures)

{mix_md}

- "True" distance: MW2 (`sqrt(gmm_w2_squared)`), the mixture-Wasserstein distance between the
  true mixtures (exact W2 between mixtures has no closed form; MW2 ≥ W2).
- Training: `mixed_gaussian_sets({cfg["n_train_sets"]}, {SET_SIZE}, n_sources=3, dim=2,
  mean_range=(0, 2), df=5)`; evaluation: `gaussian_mixture_sets({cfg["n_gmm_eval_sets"]},
  {n}, n_components=3, dim=2, mean_range=(0, 2), df=5)`.

## Interpolation ({cfg["n_interpolation_pairs"]} pairs of evaluation Gaussians)

{interp_md}

- Score: exact W2 (POT `emd2` between point clouds) from n = {n:,} decoded points to n
  points drawn from the McCann interpolant N_t (`scgde.metrics.gaussian_geodesic`), divided
  by W2(A, B); mean ± standard error over pairs. Lower is better. The floor row scores n
  points drawn from N_t itself (the empirical W2 between two samples is not zero); the
  mixture row scores the density mixture (1 - t) A + t B, the path a model that blends
  distributions instead of transporting them would follow. The t = 0 and t = 1 columns are
  the models' reconstruction errors of the endpoints themselves (there the mixture path is
  exact and scores the floor): a path error well above them is the interpolation's own.
- Decoding: `model.sample(embedding=...)`; diffusion sampler: {sampler}. Moving:
  `model.counterfactual_cells(to=z_t, groups=[A])`, A's own n points each moved by the
  generator from z_A to z_t (at t = 0 they are A's points, a sample of N_0).
- Figure: `{figure.name}` ({best}, the model with the lowest interpolation error; left:
  embedding distance vs W2; right: decoded interpolation of one pair against the McCann
  interpolant's 2-sd ellipses).

## Training

{details_md}

All models: `GDE(adata, n_latent={args.n_latent}, encoder=..., generator=...,
likelihood="gaussian")`, `train(set_size={SET_SIZE}, groups_per_batch={cfg["groups_per_batch"]},
train_size=1.0)`, `scvi.settings.seed = {args.seed}`; {budget}.

## Machine

{machine_section(load_start)}
"""
    write_report(args.output, doc, runtime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
