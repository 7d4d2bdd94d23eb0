#!/usr/bin/env python
"""The GDE paper's synthetic "Normal" (and "GMM") benchmark rows for scgde ``GDE``.

Run from the repository root::

    python benchmarks/synthetic.py            # CPU profile (~25 min on 2 cores)
    python benchmarks/synthetic.py --quick    # smoke profile (~1 min)
    python benchmarks/synthetic.py --full     # the paper's scale, for a GPU (not run on CPU)

Protocol ("Normal" row):

- Training: ``gaussian_sets(n_train_sets, 64)``: 5-d Gaussians, mu ~ U(0, 5)^5,
  Sigma ~ inverse Wishart(df 40, I); ``GDE.setup_anndata(adata, group_key="set")`` on ``X``,
  ``likelihood="gaussian"``, ``set_size=64``.
- Evaluation on *fresh* distributions (another seed): for each evaluation set, ``n`` points are
  drawn, encoded (``get_distribution_embedding`` on an AnnData of the evaluation points), ``n``
  points are generated from the embedding (``model.sample(embedding=..., n_cells=n)``) and
  scored with ``gaussian_fit_error(generated, true_mean, true_cov)``
  = ||mu - mean(gen)||_2 + Bures^2(Sigma, cov(gen)). The table reports the mean over the
  evaluation sets, for evaluation means drawn from U(0, 5)^5 (the training range) and from
  U(0, 1)^5 (the default of the authors' evaluation notebook).
- Reference rows: the metric's own sampling floor (``n`` points drawn from the *true*
  Gaussian, no model) and a moment baseline (a Gaussian fitted to the ``n`` input points, then
  ``n`` points drawn from it).

"GMM" row (``--gmm``, on by default; ``--no-gmm`` skips it): training sets from
``mixed_gaussian_sets`` (3 Gaussian source sets per set), evaluation mixtures from
``gaussian_mixture_sets(df=10)`` (3 components); a 3-component full-covariance
``sklearn.mixture.GaussianMixture`` is fitted to the ``n`` generated points, initialised at the
true parameters, and scored with ``gmm_w2_squared`` against the truth. The GMM models use the
same models and settings as the Normal row.

The table is printed and written to ``--output`` (default ``benchmarks/results/synthetic.md``)
with the machine and the settings.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUTPUT = HERE / "results" / "synthetic.md"

DIM = 5
SET_SIZE = 64

PROFILES = {
    # CPU default: ~25 min on 2 idle cores
    "default": {
        "n_train_sets": 2_000,
        "max_epochs": 100,
        "time_budget_s": 240.0,
        "n_eval_sets": 50,
        "n_eval_points": 1_000,
        "groups_per_batch": 16,
        "sampler": {"method": "ddim", "n_sampling_steps": 50},
        "gmm_train_sets": 2_000,
        "gmm_time_budget_s": 150.0,
    },
    # smoke: ~1 min on 2 cores
    "quick": {
        "n_train_sets": 500,
        "max_epochs": 5,
        "time_budget_s": 25.0,
        "n_eval_sets": 10,
        "n_eval_points": 500,
        "groups_per_batch": 16,
        "sampler": {"method": "ddim", "n_sampling_steps": 20},
        "gmm_train_sets": 500,
        "gmm_time_budget_s": 25.0,
    },
    # the paper's scale, for a GPU (not run on the CPU machines)
    "full": {
        "n_train_sets": 20_000,
        "max_epochs": 400,
        "time_budget_s": None,
        "n_eval_sets": 200,
        "n_eval_points": 10_000,
        "groups_per_batch": 64,
        "sampler": None,  # ancestral DDPM over all training steps
        "gmm_train_sets": 20_000,
        "gmm_time_budget_s": None,
    },
}

MODELS = [
    # (label, encoder, generator); the first is GDE's default for continuous data
    ("deepset + flow (default)", "deepset", "flow"),
    ("deepset + diffusion", "deepset", "diffusion"),
    ("deepset + CVAE", "deepset", "cvae"),
    ("kme + flow", "kme", "flow"),
]


sys.path.insert(0, str(HERE))
from _common import (  # noqa: E402
    command_line,
    generate_from_sets,
    log,
    machine_section,
    mean_se,
    set_points,
    start,
    table,
    train_gde,
    write_report,
)


def train_model(adata, encoder, generator, cfg, seed, budget_s, n_latent):
    return train_gde(
        adata,
        encoder,
        generator,
        n_latent=n_latent,
        set_size=SET_SIZE,
        groups_per_batch=cfg["groups_per_batch"],
        max_epochs=cfg["max_epochs"],
        budget_s=budget_s,
        seed=seed,
    )


def _generate(model, eval_adata, n, cfg, seed):
    return generate_from_sets(model, eval_adata, n, cfg["sampler"], seed)


def normal_eval_data(cfg, mean_range, seed):
    from scgde.datasets import gaussian_sets

    return gaussian_sets(
        cfg["n_eval_sets"], cfg["n_eval_points"], dim=DIM, mean_range=mean_range, seed=seed
    )


def normal_references(eval_adata, params, seed):
    """Scores of the sampling floor and of the moment baseline."""
    from scgde.metrics import gaussian_fit_error

    rng = np.random.default_rng(seed)
    names, pts = set_points(eval_adata)
    floor, moment = [], []
    for i, x in enumerate(pts):
        mu, cov = params["means"][i], params["covs"][i]
        n = x.shape[0]
        floor.append(gaussian_fit_error(rng.multivariate_normal(mu, cov, size=n), mu, cov))
        fitted = rng.multivariate_normal(x.mean(0), np.cov(x, rowvar=False), size=n)
        moment.append(gaussian_fit_error(fitted, mu, cov))
    return floor, moment


def normal_scores(model, eval_adata, params, cfg, seed):
    from scgde.metrics import gaussian_fit_error

    names, _ = set_points(eval_adata)
    t0 = time.perf_counter()
    generated = _generate(model, eval_adata, cfg["n_eval_points"], cfg, seed)
    scores = [
        gaussian_fit_error(generated[name], params["means"][i], params["covs"][i])
        for i, name in enumerate(names)
    ]
    return scores, time.perf_counter() - t0


def _fit_gmm(points, weights, means, covs, seed):
    from sklearn.mixture import GaussianMixture

    precisions = np.linalg.inv(covs)
    gm = GaussianMixture(
        n_components=len(weights),
        covariance_type="full",
        weights_init=weights,
        means_init=means,
        precisions_init=0.5 * (precisions + precisions.swapaxes(-1, -2)),
        random_state=seed,
    )
    gm.fit(points)
    return gm.weights_, gm.means_, gm.covariances_


def gmm_score(points, w, m, c, seed):
    from scgde.metrics import gmm_w2_squared

    fw, fm, fc = _fit_gmm(points, w, m, c, seed)
    return gmm_w2_squared(w, m, c, fw, fm, fc)


def gmm_eval_data(cfg, seed):
    from scgde.datasets import gaussian_mixture_sets

    return gaussian_mixture_sets(
        cfg["n_eval_sets"], cfg["n_eval_points"], n_components=3, dim=DIM, df=10, seed=seed
    )


def gmm_references(eval_adata, params, seed):
    """Floor: GMM fit to n fresh points of the true mixture; baseline: fit to the input points."""
    from scgde.datasets import gaussian_mixture_sets  # noqa: F401

    rng = np.random.default_rng(seed)
    names, pts = set_points(eval_adata)
    floor, fit_input = [], []
    for i, x in enumerate(pts):
        w, m, c = params["weights"][i], params["means"][i], params["covs"][i]
        n = x.shape[0]
        z = rng.choice(len(w), size=n, p=w)
        fresh = np.empty((n, DIM))
        for k in range(len(w)):
            sel = z == k
            fresh[sel] = rng.multivariate_normal(m[k], c[k], size=int(sel.sum()))
        floor.append(gmm_score(fresh, w, m, c, seed))
        fit_input.append(gmm_score(x, w, m, c, seed))
    return floor, fit_input


def gmm_scores(model, eval_adata, params, cfg, seed):
    names, _ = set_points(eval_adata)
    t0 = time.perf_counter()
    generated = _generate(model, eval_adata, cfg["n_eval_points"], cfg, seed)
    scores = [
        gmm_score(
            generated[name], params["weights"][i], params["means"][i], params["covs"][i], seed
        )
        for i, name in enumerate(names)
    ]
    return scores, time.perf_counter() - t0


# --------------------------------------------------------------------------------- main
def _parse(argv=None):
    parser = argparse.ArgumentParser(
        description="The GDE paper's synthetic Normal / GMM benchmark rows for scgde GDE."
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="smoke profile (~1 min)")
    group.add_argument(
        "--full", action="store_true", help="the paper's scale (n = 10^4, ancestral sampling; GPU)"
    )
    parser.add_argument("--train-sets", type=int, default=None, help="training sets (Normal)")
    parser.add_argument("--epochs", type=int, default=None, help="max_epochs per model")
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="seconds of training per model (stops at the end of the epoch past it; 0 = no budget)",
    )
    parser.add_argument("--eval-sets", type=int, default=None, help="evaluation sets")
    parser.add_argument("--eval-points", type=int, default=None, help="n, points per eval set")
    parser.add_argument("--n-latent", type=int, default=32, help="GDE n_latent (default 32)")
    parser.add_argument(
        "--gmm", action=argparse.BooleanOptionalAction, default=True, help="run the GMM row"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0, help="base seed")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    t_start = time.perf_counter()
    load_start = start(args.threads)

    from scgde.datasets import gaussian_sets, mixed_gaussian_sets

    profile = "quick" if args.quick else "full" if args.full else "default"
    cfg = dict(PROFILES[profile])
    for key, arg in (
        ("n_train_sets", "train_sets"),
        ("max_epochs", "epochs"),
        ("n_eval_sets", "eval_sets"),
        ("n_eval_points", "eval_points"),
    ):
        if getattr(args, arg) is not None:
            cfg[key] = getattr(args, arg)
    if args.time_budget is not None:
        budget = args.time_budget if args.time_budget > 0 else None
        cfg["time_budget_s"] = cfg["gmm_time_budget_s"] = budget
    log(f"profile {profile}: {cfg}")

    seed_train, seed_eval5, seed_eval1 = args.seed, args.seed + 1000, args.seed + 2000
    train_adata, _ = gaussian_sets(cfg["n_train_sets"], SET_SIZE, dim=DIM, seed=seed_train)
    eval5, params5 = normal_eval_data(cfg, (0.0, 5.0), seed_eval5)
    eval1, params1 = normal_eval_data(cfg, (0.0, 1.0), seed_eval1)

    floor5, moment5 = normal_references(eval5, params5, args.seed + 3000)
    floor1, moment1 = normal_references(eval1, params1, args.seed + 4000)
    log(f"floor U(0,5): {mean_se(floor5)}; U(0,1): {mean_se(floor1)}")

    rows, details = [], []
    for label, encoder, generator in MODELS:
        log(f"Normal: training {label} on {cfg['n_train_sets']:,} sets")
        model, info = train_model(
            train_adata, encoder, generator, cfg, args.seed, cfg["time_budget_s"], args.n_latent
        )
        log(
            f"  {info['epochs']} epochs, {info['steps']} steps, {info['train_s']:.1f} s"
            f"{' (time budget)' if info['stopped_by_budget'] else ''}; evaluating"
        )
        s5, t5 = normal_scores(model, eval5, params5, cfg, args.seed + 5000)
        s1, t1 = normal_scores(model, eval1, params1, cfg, args.seed + 6000)
        log(f"  U(0,5): {mean_se(s5)} ({t5:.1f} s); U(0,1): {mean_se(s1)} ({t1:.1f} s)")
        rows.append(
            [
                label,
                f"{cfg['n_train_sets']:,}",
                f"{info['train_s']:.0f} s ({info['epochs']} ep, {info['steps']:,} steps)",
                mean_se(s5),
                mean_se(s1),
                f"{np.mean(floor5):.4f} / {np.mean(floor1):.4f}",
            ]
        )
        details.append({"label": label, **info, "eval_s": t5 + t1})
    rows.append(
        [
            "moment baseline (Gaussian fit to the n inputs)",
            "—",
            "—",
            mean_se(moment5),
            mean_se(moment1),
            f"{np.mean(floor5):.4f} / {np.mean(floor1):.4f}",
        ]
    )
    rows.append(
        [
            "sampling floor (n points of the true Gaussian)",
            "—",
            "—",
            mean_se(floor5),
            mean_se(floor1),
            "—",
        ]
    )
    header = [
        "model",
        "train sets",
        "train time",
        "Normal score U(0,5)",
        "Normal score U(0,1)",
        "floor U(0,5) / U(0,1)",
    ]
    normal_md = table(header, rows)
    print("\n## Normal\n\n" + normal_md + "\n", flush=True)

    gmm_md = ""
    if args.gmm:
        gtrain, _ = mixed_gaussian_sets(
            cfg["gmm_train_sets"], SET_SIZE, n_sources=3, dim=DIM, seed=args.seed + 7000
        )
        geval, gparams = gmm_eval_data(cfg, args.seed + 8000)
        gfloor, gfit = gmm_references(geval, gparams, args.seed + 9000)
        log(f"GMM floor: {mean_se(gfloor)}; GMM fit to inputs: {mean_se(gfit)}")
        grows = []
        for label, encoder, generator in MODELS:
            log(f"GMM: training {label} on {cfg['gmm_train_sets']:,} sets")
            model, info = train_model(
                gtrain, encoder, generator, cfg, args.seed, cfg["gmm_time_budget_s"], args.n_latent
            )
            s, t = gmm_scores(model, geval, gparams, cfg, args.seed + 10000)
            log(f"  {info['train_s']:.1f} s training; GMM score {mean_se(s)} ({t:.1f} s)")
            grows.append(
                [
                    label,
                    f"{cfg['gmm_train_sets']:,}",
                    f"{info['train_s']:.0f} s ({info['epochs']} ep, {info['steps']:,} steps)",
                    mean_se(s),
                    f"{np.mean(gfloor):.4f}",
                ]
            )
        grows.append(
            [
                "GMM fit to the n input points (no model)",
                "—",
                "—",
                mean_se(gfit),
                f"{np.mean(gfloor):.4f}",
            ]
        )
        grows.append(["sampling floor (n points of the true GMM)", "—", "—", mean_se(gfloor), "—"])
        gmm_md = table(["model", "train sets", "train time", "GMM score (MW2²)", "floor"], grows)
        print("\n## GMM\n\n" + gmm_md + "\n", flush=True)

    runtime = time.perf_counter() - t_start
    command = command_line("synthetic.py")
    sampler = (
        f"DDIM with {cfg['sampler']['n_sampling_steps']} steps (`sampler_kwargs="
        f"{cfg['sampler']}`), for speed on the CPU"
        if cfg["sampler"]
        else "ancestral DDPM over all training steps (the default)"
    )
    budget = (
        f"training stops at the end of the first epoch past {cfg['time_budget_s']:.0f} s "
        f"(GMM: {cfg['gmm_time_budget_s']:.0f} s) or after {cfg['max_epochs']} epochs"
        if cfg["time_budget_s"]
        else f"{cfg['max_epochs']} epochs"
    )
    gmm_section = (
        f"""
## GMM

{gmm_md}

- Training: `mixed_gaussian_sets({cfg["gmm_train_sets"]}, {SET_SIZE}, n_sources=3)` (each set
  resamples points of 3 Normal-family source sets, Dirichlet(1) weights); the same models
  and settings as the Normal row.
- Evaluation: `gaussian_mixture_sets({cfg["n_eval_sets"]}, {cfg["n_eval_points"]},
  n_components=3, df=10)` (fresh mixtures, means U(0,5)^5). A 3-component full-covariance
  `sklearn.mixture.GaussianMixture` is fitted to the n generated points, initialised at the true
  weights / means / precisions, and scored with `gmm_w2_squared` (mixture-Wasserstein
  MW2², Delon & Desolneux) against the true mixture. The reference rows fit the same GMM to
  the n input points, and to n fresh points of the true mixture (the floor).
"""
        if gmm_md
        else ""
    )
    details_md = table(
        [
            "model",
            "epochs",
            "steps",
            "train (s)",
            "stopped by time budget",
            "eval (s, both ranges)",
        ],
        [
            [
                d["label"],
                str(d["epochs"]),
                f"{d['steps']:,}",
                f"{d['train_s']:.1f}",
                "yes" if d["stopped_by_budget"] else "no",
                f"{d['eval_s']:.1f}",
            ]
            for d in details
        ],
    )
    doc = f"""# Synthetic benchmark: the GDE paper's Normal{" and GMM" if gmm_md else ""} rows

Generated by `{command}` (profile **{profile}**) in {runtime / 60:.1f} min.

Lower is better. Scores are **mean ± standard error over {cfg["n_eval_sets"]} evaluation
sets**. This is a {"CPU-sized" if profile != "full" else "paper-scale"} run: fewer training
sets, much shorter training and n = {cfg["n_eval_points"]:,} points per evaluation set, so the
numbers are not directly comparable with the paper's table (n = 10^4).

## Normal

{normal_md}

- Score: `gaussian_fit_error(generated, mu, Sigma)` = ||mu − mean(gen)||₂ + Bures²(Sigma,
  cov(gen)) (plain norm for the mean, *squared* Bures for the covariance), averaged over the
  evaluation sets.
- **floor**: the same score for n points drawn from the true Gaussian (no model): the
  metric's own sampling noise at this n. **moment baseline**: a Gaussian fitted (sample mean /
  covariance) to the n input points, then n points drawn from it: what a perfect
  "encode the moments, sample" model would get.
- Training: `gaussian_sets({cfg["n_train_sets"]}, {SET_SIZE})` (5-d, mu ~ U(0,5)^5,
  Sigma ~ inverse Wishart(df 40, I), seed {seed_train});
  `GDE.setup_anndata(adata, group_key="set")`,
  `GDE(adata, n_latent={args.n_latent}, encoder=..., generator=..., likelihood="gaussian")`,
  `train(set_size={SET_SIZE}, groups_per_batch={cfg["groups_per_batch"]}, train_size=1.0)`
  (no validation groups), `scvi.settings.seed = {args.seed}`; {budget}.
- Evaluation: fresh sets `gaussian_sets({cfg["n_eval_sets"]}, {cfg["n_eval_points"]},
  mean_range=...)` with seeds {seed_eval5} (U(0,5)^5, the training range) and {seed_eval1}
  (U(0,1)^5, the authors' evaluation notebook default). Each set is embedded from its n points
  (`get_distribution_embedding(eval_adata, key_added=None)`) and n points are generated from the
  embedding (`sample(embedding=..., n_cells=n, adata=eval_adata)`).
- Diffusion sampling: {sampler}. Flow sampling: the generator's default (Euler ODE
  solver, 10 steps).
- Training recipe: the defaults of `GDE.train` (learning-rate warm-up over 200 steps, weight
  EMA 0.999, encoder input standardised, learning rate 1e-3 at 16 sets per step).

### Training and evaluation details

{details_md}
{gmm_section}
## Machine

{machine_section(load_start)}
"""
    write_report(args.output, doc, runtime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
