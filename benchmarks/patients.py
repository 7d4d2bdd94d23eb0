#!/usr/bin/env python
"""Classify patients' samples from their cells: semi-supervised GDE against baselines.

Run from the repository root::

    python benchmarks/patients.py            # bundled demo data (~15 min on 2 cores)
    python benchmarks/patients.py --quick    # smoke profile (~2 min)
    python benchmarks/patients.py --data full  # the 30,534-cell file (needs scgde[liu2021])

Task: predict each sample's condition (HC vs Severe COVID-19) in the real Liu et al. 2021 PBMC
data. Cross-validation **by donor** (``StratifiedGroupKFold`` on samples, groups = donors):
repeated samples of one donor are never split across folds. In each fold the samples of the
test donors are unlabelled.

Methods, all scored on the test samples of each fold:

- **GDE semi-supervised**: ``setup_anndata(group_key="sample", batch_key="batch",
  group_label_key=...)`` with the training samples' conditions and NaN for the test samples;
  every sample's cells train the embedding, the labelled ones also train the classifier head;
  ``predict_group_labels()``.
- **GDE supervised only**: the same model with ``generative_weight=0`` (a deep-set classifier
  trained on the labelled samples only).
- **GDE unsupervised + logistic regression**: one GDE trained without labels on all samples
  (labels are never seen), a logistic regression on the sample embeddings of the training
  folds.
- **pseudobulk + logistic regression**: mean log1p(CP10k) expression per sample.
- **cell-type composition + logistic regression**: fraction of each cell type per sample.
  Caveat: the source data were subsampled stratified by batch x condition x cell type, so
  compositions are not the natural ones.

Metrics: accuracy, ROC AUC (Severe as positive), macro F1, mean ± sd over folds. The table is
printed and written to ``--output`` (default ``benchmarks/results/patients.md``).
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
DEFAULT_OUTPUT = HERE / "results" / "patients.md"

sys.path.insert(0, str(HERE))
from _common import (  # noqa: E402
    command_line,
    kwargs_text,
    log,
    machine_section,
    start,
    table,
    write_report,
)
from _samples import composition, load, pseudobulk  # noqa: E402

GROUP, DONOR, LABEL, POSITIVE = "sample", "donor", "condition", "Severe"

PROFILES = {
    "default": {"n_splits": 5, "max_epochs": 150, "n_latent": 16, "set_size": 128},
    "quick": {"n_splits": 3, "max_epochs": 5, "n_latent": 8, "set_size": 64},
}


# --------------------------------------------------------------------------------- data
def sample_table(adata) -> pd.DataFrame:
    """One row per sample: donor and condition (constant within samples)."""
    obs = adata.obs[[GROUP, DONOR, LABEL]].astype(str).drop_duplicates()
    if obs[GROUP].duplicated().any():
        raise ValueError("donor / condition vary within a sample")
    return obs.set_index(GROUP).sort_index()


# ------------------------------------------------------------------------------- models
def train_gde(
    adata,
    labels: pd.Series | None,
    cfg,
    seed: int,
    generative_weight: float = 1.0,
    model_kwargs: dict | None = None,
):
    """A GDE on all samples; ``labels`` (per sample, NaN = unlabelled) adds the classifier;
    ``model_kwargs`` go to ``GDE(...)``."""
    import scvi

    from scgde.model import GDE

    scvi.settings.seed = seed
    adata = adata.copy()
    label_key = None
    if labels is not None:
        label_key = "label_for_training"
        adata.obs[label_key] = adata.obs[GROUP].astype(str).map(labels).astype(object)
    GDE.setup_anndata(adata, group_key=GROUP, batch_key="batch", group_label_key=label_key)
    kwargs = dict(model_kwargs or {})
    if labels is not None:
        kwargs["group_label_categories"] = ["HC", POSITIVE]
    model = GDE(adata, n_latent=cfg["n_latent"], generative_weight=generative_weight, **kwargs)
    model.train(
        max_epochs=cfg["max_epochs"],
        set_size=cfg["set_size"],
        train_size=1.0,
        enable_progress_bar=False,
    )
    return model


def logistic_regression(x_train, y_train, x_test, seed: int) -> np.ndarray:
    """P(Severe) from a standardised, L2-regularised logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    clf.fit(x_train, y_train == POSITIVE)
    return clf.predict_proba(x_test)[:, 1]


def scores(y_true: np.ndarray, p_positive: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    y = y_true == POSITIVE
    predicted = p_positive >= 0.5
    return {
        "accuracy": accuracy_score(y, predicted),
        "ROC AUC": roc_auc_score(y, p_positive) if 0 < y.sum() < y.size else float("nan"),
        "macro F1": f1_score(y, predicted, average="macro"),
    }


# --------------------------------------------------------------------------------- main
def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke profile")
    parser.add_argument("--data", choices=["demo", "full"], default="demo")
    parser.add_argument(
        "--few-labels",
        action="store_true",
        help="label one fold of donors and test on the other folds (default: the reverse)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--model-kwargs",
        type=json.loads,
        default={},
        help='JSON of further GDE(...) arguments for every GDE row, e.g. \'{"batch_correction": '
        '"hsic"}\'',
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    t_start = time.perf_counter()
    from sklearn.model_selection import StratifiedGroupKFold

    load_start = start(args.threads)
    profile = "quick" if args.quick else "default"
    cfg = PROFILES[profile]
    adata = load(args.data)
    samples = sample_table(adata)
    names, y, donors = samples.index, samples[LABEL].to_numpy(), samples[DONOR].to_numpy()
    log(
        f"{args.data}: {adata.n_obs:,} cells x {adata.n_vars:,} genes, {len(names)} samples, "
        f"{len(set(donors))} donors, {int((y == POSITIVE).sum())} {POSITIVE}"
    )
    bulk, comp = pseudobulk(adata, names), composition(adata, names)
    log("training the unsupervised GDE (labels never seen)")
    unsupervised = train_gde(adata, None, cfg, args.seed, model_kwargs=args.model_kwargs)
    z_all = unsupervised.get_distribution_embedding(key_added=None).loc[names].to_numpy()

    folds = StratifiedGroupKFold(n_splits=cfg["n_splits"], shuffle=True, random_state=args.seed)
    results: dict[str, list[dict[str, float]]] = {}
    for k, (train, test) in enumerate(folds.split(np.zeros(len(y)), y, groups=donors)):
        if args.few_labels:  # label one fold, test on the others
            train, test = test, train
        assert not set(donors[train]) & set(donors[test])
        log(f"fold {k + 1}/{cfg['n_splits']}: {len(train)} labelled, {len(test)} test samples")
        labels = pd.Series(np.where(np.isin(np.arange(len(y)), train), y, None), index=names)
        for label, weight in (("GDE semi-supervised", 1.0), ("GDE supervised only", 0.0)):
            model = train_gde(
                adata, labels, cfg, args.seed + k, weight, model_kwargs=args.model_kwargs
            )
            table_k = model.predict_group_labels().loc[names[test]]
            results.setdefault(label, []).append(scores(y[test], table_k[POSITIVE].to_numpy()))
        for label, features in (
            ("GDE unsupervised + logistic regression", z_all),
            ("pseudobulk + logistic regression", bulk),
            ("cell-type composition + logistic regression", comp),
        ):
            p = logistic_regression(features[train], y[train], features[test], args.seed)
            results.setdefault(label, []).append(scores(y[test], p))
        log("  " + "; ".join(f"{m}: {r[-1]['ROC AUC']:.2f}" for m, r in results.items()))

    metrics = ["accuracy", "ROC AUC", "macro F1"]
    rows = []
    for label, per_fold in results.items():
        frame = pd.DataFrame(per_fold)
        rows.append(
            [label] + [f"{frame[m].mean():.3f} ± {frame[m].std(ddof=1):.3f}" for m in metrics]
        )
    result_md = table(["method", *metrics], rows)
    print(f"\n{result_md}\n", flush=True)

    runtime = time.perf_counter() - t_start
    command = command_line("patients.py")
    n_hc = int((y != POSITIVE).sum())
    regime = (
        "**Few labels**: in each round one fold is labelled and the other folds are tested."
        if args.few_labels
        else "In each round the other folds are labelled and one fold is tested."
    )
    model_args = kwargs_text(args.model_kwargs)
    doc = f"""# Patient classification: HC vs Severe COVID-19 from a sample's cells

Generated by `{command}` (profile **{profile}**, data **{args.data}**) in
{runtime / 60:.1f} min. Real data (Liu et al. 2021): {adata.n_obs:,} cells x
{adata.n_vars:,} genes, {len(names)} samples ({n_hc} HC, {len(names) - n_hc} {POSITIVE}) of
{len(set(donors))} donors.

{result_md}

Mean ± sd over {cfg["n_splits"]} folds of `StratifiedGroupKFold(shuffle=True,
random_state={args.seed})` over samples with donors as groups: a donor's samples are all
labelled or all tested. {regime} Positive class: {POSITIVE}; threshold 0.5.

- GDE models: `GDE(adata, n_latent={cfg["n_latent"]}{model_args})` with `batch_key="batch"`,
  `train(max_epochs={cfg["max_epochs"]}, set_size={cfg["set_size"]}, train_size=1.0)`;
  semi-supervised: `group_label_key` = condition for the training folds' samples, NaN for the
  test samples (their cells still train the embedding); supervised only:
  `generative_weight=0`; unsupervised: no labels, one model for all folds, then a logistic
  regression on the embeddings of the training samples.
- Baselines: scikit-learn `LogisticRegression` (L2, C = 1) on standardised features:
  mean log1p(CP10k) per sample (pseudobulk) or cell-type fractions per sample (composition;
  the source data were subsampled stratified by batch x condition x cell type, so
  compositions are not natural here).

## Machine

{machine_section(load_start)}
"""
    write_report(args.output, doc, runtime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
