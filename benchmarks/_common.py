"""Helpers shared by the synthetic benchmarks: logging, tables, training with a time budget."""

from __future__ import annotations

import logging
import sys
import time
import warnings

import numpy as np

GROUP_KEY = "set"


def quiet() -> None:
    """Silence Lightning / scvi-tools chatter that would drown the benchmark log."""
    import lightning.fabric  # noqa: F401
    import lightning.pytorch  # noqa: F401
    import scvi

    scvi.settings.verbosity = logging.WARNING
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("scvi").setLevel(logging.WARNING)
    for message in (
        r".*LeafSpec.*",
        r".*number of training batches .* is smaller than the logging interval.*",
        r".*does not have many workers.*",
        r".*Observation names are not unique.*",
        r".*not been trained.*",
    ):
        warnings.filterwarnings("ignore", message=message)


def log(message: str) -> None:
    """Time-stamped progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def mean_se(values, digits: int = 4) -> str:
    """``mean ± standard error`` of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return "n/a"
    se = values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else float("nan")
    return f"{values.mean():.{digits}f} ± {se:.{digits}f}"


def time_budget_callback(budget_s: float | None):
    """A Lightning callback that stops training at the end of the first epoch past ``budget_s``."""
    from lightning.pytorch.callbacks import Callback

    class TimeBudget(Callback):
        def __init__(self):
            self.t0 = None
            self.epochs = 0
            self.stopped_early = False

        def on_train_start(self, trainer, pl_module):
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            self.epochs += 1
            if budget_s is not None and time.perf_counter() - self.t0 > budget_s:
                self.stopped_early = trainer.current_epoch + 1 < trainer.max_epochs
                trainer.should_stop = True

    return TimeBudget()


def train_gde(
    adata,
    encoder: str,
    generator: str,
    *,
    n_latent: int,
    set_size: int,
    groups_per_batch: int,
    max_epochs: int,
    budget_s: float | None,
    seed: int,
    likelihood: str = "gaussian",
    lr: float | None = None,
    generator_kwargs: dict | None = None,
):
    """Train a GDE on the sets in ``adata.obs["set"]`` (all sets, no validation split).

    Returns
    -------
    model, info
        The trained model and ``{"train_s", "epochs", "steps", "stopped_by_budget"}``.
    """
    import scvi

    from scgde.model import GDE

    scvi.settings.seed = seed
    adata = adata.copy()
    GDE.setup_anndata(adata, group_key=GROUP_KEY)
    model = GDE(
        adata,
        n_latent=n_latent,
        encoder=encoder,
        generator=generator,
        likelihood=likelihood,
        generator_kwargs=generator_kwargs,
    )
    callback = time_budget_callback(budget_s)
    start = time.perf_counter()
    model.train(
        max_epochs=max_epochs,
        set_size=set_size,
        groups_per_batch=groups_per_batch,
        train_size=1.0,
        lr=lr,
        enable_progress_bar=False,
        callbacks=[callback],
    )
    info = {
        "train_s": time.perf_counter() - start,
        "epochs": callback.epochs,
        "steps": int(model.trainer.global_step),
        "stopped_by_budget": callback.stopped_early,
    }
    return model, info


def set_points(adata) -> tuple[list[str], list[np.ndarray]]:
    """Names of the sets in ``adata.obs["set"]`` and the float64 points of each."""
    x = np.asarray(adata.X, dtype=np.float64)
    labels = adata.obs[GROUP_KEY].astype(str).to_numpy()
    names = [str(name) for name in adata.obs[GROUP_KEY].cat.categories]
    return names, [x[labels == name] for name in names]


def sampler_for(model, sampler: dict | None) -> dict | None:
    """``sampler_kwargs`` for ``model.sample``: only diffusion generators take them."""
    return sampler if model.generator_name_ == "diffusion" else None


def start(threads: int | None) -> str:
    """Silence the libraries, set torch's threads, and return the load average at the start."""
    quiet()
    import torch
    from _machine import load_average

    if threads:
        torch.set_num_threads(threads)
    return load_average()


def generate_from_embeddings(model, emb, eval_adata, n: int, sampler: dict | None, seed: int):
    """Generate ``n`` points from each row of the embedding table ``emb``: name -> points."""
    gen = model.sample(
        embedding=emb,
        n_cells=n,
        adata=eval_adata,
        seed=seed,
        sampler_kwargs=sampler_for(model, sampler),
    )
    x = np.asarray(gen.X, dtype=np.float64)
    groups = gen.obs["group"].astype(str).to_numpy()
    return {str(name): x[groups == str(name)] for name in emb.index}


def generate_from_sets(model, eval_adata, n: int, sampler: dict | None, seed: int) -> dict:
    """Encode every set of ``eval_adata`` from its points and generate ``n`` points from each."""
    emb = model.get_distribution_embedding(eval_adata, key_added=None)
    return generate_from_embeddings(model, emb, eval_adata, n, sampler, seed)


def command_line(script: str) -> str:
    """The command that ran this benchmark, for the report."""
    return f"python benchmarks/{script}" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")


def add_seed_arguments(parser) -> None:
    """``--seed N`` or ``--seeds N ...`` (exclusive); ``None`` both: the profile's seeds."""
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=None, help="one seed")
    seeds.add_argument("--seeds", type=int, nargs="+", default=None, help="several seeds")


def add_model_kwargs_argument(parser, model: str = "PerturbationGDE") -> None:
    """``--model-kwargs JSON``: further arguments of ``model(...)``, for ablations."""
    import json

    parser.add_argument(
        "--model-kwargs",
        type=json.loads,
        default={},
        help=f"JSON of further {model}(...) arguments, for ablations, e.g. "
        '\'{"generator_kwargs": {"prior_components": 8}}\'',
    )


def kwargs_text(kwargs: dict) -> str:
    """``, key=value`` for each further argument, as a report's settings write a call."""
    return "".join(f", {k}={v!r}" for k, v in kwargs.items())


def budget_text(cfg: dict) -> str:
    """How training was stopped, in words."""
    if cfg.get("time_budget_s"):
        return (
            f"training stops at the end of the first epoch past {cfg['time_budget_s']:.0f} s "
            f"or after {cfg['max_epochs']} epochs"
        )
    return f"{cfg['max_epochs']} epochs"


def machine_section(load_start: str) -> str:
    """Markdown table of the machine and versions, with the load average at start and end."""
    import torch
    from _machine import load_average, machine_info

    machine = machine_info()
    machine["load average (1, 5, 15 min): start / end"] = f"{load_start} / {load_average()}"
    if torch.cuda.is_available():
        machine["CUDA used"] = f"available ({torch.cuda.get_device_name(0)}; Lightning 'auto')"
    return table(["", ""], [[k, v] for k, v in machine.items()])


def write_report(path, doc: str, runtime_s: float) -> None:
    """Write the markdown report atomically and say where it went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(doc)
    tmp.replace(path)
    print(f"\nTotal runtime: {runtime_s / 60:.1f} min. Written to {path}", flush=True)


# ------------------------------------------------------------------ perturbation benchmarks
#: Metric columns of ``scgde.tl.score_perturbations`` in the tables, with the better direction.
PERTURBATION_METRICS = {
    "r2": "↑",
    "r2_top_de": "↑",
    "mse": "↓",
    "mse_top_de": "↓",
    "energy_distance": "↓",
}


def log_normalized(adata):
    """A copy of ``adata`` (raw counts) with log1p(counts per 10k) in ``X`` (what the scores
    expect)."""
    import scanpy as sc

    out = adata.copy()
    sc.pp.normalize_total(out, target_sum=1e4)
    sc.pp.log1p(out)
    return out


def metrics_text() -> str:
    """The perturbation metrics with their better direction, for a report's prose."""
    return ", ".join(
        f"`{m}` ({'higher' if a == '↑' else 'lower'} is better)"
        for m, a in PERTURBATION_METRICS.items()
    )


def metrics_table(scores: dict, digits: int = 4) -> str:
    """Markdown table: one row per method, ``mean ± SE`` of every metric over its scored pairs.

    ``scores`` maps a method name to a ``score_perturbations`` table; NaN scores are left out,
    as in ``scgde.tl.summarize_scores``.
    """
    header = ["method", "n"] + [f"{m} {arrow}" for m, arrow in PERTURBATION_METRICS.items()]
    rows = []
    for method, frame in scores.items():
        cells = []
        for metric in PERTURBATION_METRICS:
            values = frame[metric].to_numpy(dtype=np.float64)
            cells.append(mean_se(values[np.isfinite(values)], digits))
        rows.append([method, str(len(frame))] + cells)
    return table(header, rows)


def paired_margin(a, b) -> dict:
    """``a − b`` over the items where both are finite: mean, SE, n and how often ``a > b``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    diff = a[keep] - b[keep]
    n = int(diff.size)
    return {
        "mean": float(diff.mean()) if n else float("nan"),
        "se": float(diff.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
        "n": n,
        "wins": int((diff > 0).sum()),
    }
