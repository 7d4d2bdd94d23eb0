#!/usr/bin/env python
"""Sample embeddings free of technical batch: GDE with and without a batch penalty, MrVI,
pseudobulk with and without ComBat, and cell-type composition.

Run from the repository root::

    python benchmarks/batch.py               # bundled demo data (~15 min on 2 cores)
    python benchmarks/batch.py --quick       # smoke profile (~2 min)
    python benchmarks/batch.py --data full   # the 30,534-cell file (needs scgde[liu2021])

Real Liu et al. 2021 PBMC samples (COVID-19 severe and healthy controls), sequenced in three
batches that are not confounded with the condition. Every method gives a distance between
samples; from it:

- **same-batch 5-NN**: the fraction of each sample's 5 nearest samples that share its batch
  (lower is better; the "mixed" expectation is what a batch-blind ranking gives);
- **batch / condition silhouette** of the samples (batch: lower is better, condition: higher);
- **same-condition 5-NN**: the fraction of the 5 nearest samples with the sample's condition;
- **condition AUC**: HC vs Severe by a logistic regression on the samples' coordinates
  (classical MDS of the distances, 20 dimensions), 5-fold cross-validation by donor, scored on
  the pooled out-of-fold predictions;
- **donor retrieval**: for samples whose donor has other samples (time points of one
  patient), is the nearest other sample one of them?

The table is printed and written to ``--output`` (default ``benchmarks/results/batch.md``).
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
DEFAULT_OUTPUT = HERE / "results" / "batch.md"

sys.path.insert(0, str(HERE))
from _common import command_line, log, machine_section, start, table, write_report  # noqa: E402
from _samples import (  # noqa: E402
    BATCH,
    CONDITION,
    DONOR,
    GROUP,
    composition,
    load,
    pseudobulk,
    sample_table,
)

PROFILES = {
    "default": {"gde_epochs": None, "mrvi_epochs": 100, "k": 5, "n_mds": 20},
    "quick": {"gde_epochs": 20, "mrvi_epochs": 5, "k": 5, "n_mds": 10},
}
#: GDE rows: name -> GDE(...) arguments
GDE_ROWS = {
    "GDE, no batch correction": {},
    "GDE, batch_correction='hsic'": {"batch_correction": "hsic"},
}


# ------------------------------------------------------------------------------ metrics
def distances(x: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``x``."""
    from scipy.spatial.distance import cdist

    return cdist(x, x)


def nearest_same(d: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Mean fraction of each sample's ``k`` nearest other samples that share its label."""
    d = d.copy()
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :k]
    return float((labels[nearest] == labels[:, None]).mean())


def mixed_expectation(labels: np.ndarray) -> float:
    """``nearest_same`` of a ranking blind to the label: the mean fraction of the other
    samples that share each sample's label."""
    counts = pd.Series(labels).value_counts()
    return float(np.mean([(counts[label] - 1) / (len(labels) - 1) for label in labels]))


def silhouette(d: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(d, labels, metric="precomputed"))


def donor_retrieval(
    d: np.ndarray, donors: np.ndarray, batches: np.ndarray | None = None
) -> tuple[float, int]:
    """Fraction of samples with a same-donor sample whose nearest other sample is one; and
    the number of such samples. With ``batches``, only samples of the query's batch are
    candidates (in Liu 2021 every donor's samples share one batch, so this takes away the cue
    that a batch-laden embedding gets from the batch itself)."""
    d = d.copy()
    np.fill_diagonal(d, np.inf)
    if batches is not None:
        d[batches[:, None] != batches[None, :]] = np.inf
    counts = pd.Series(donors).value_counts()
    queries = np.flatnonzero(counts.loc[donors].to_numpy() > 1)
    hits = donors[np.argmin(d[queries], axis=1)] == donors[queries]
    return float(hits.mean()), len(queries)


def classical_mds(d: np.ndarray, n_components: int) -> np.ndarray:
    """Coordinates whose Euclidean distances best match ``d`` (Torgerson's classical MDS)."""
    n = d.shape[0]
    centre = np.eye(n) - 1.0 / n
    gram = -0.5 * centre @ (d**2) @ centre
    values, vectors = np.linalg.eigh(gram)
    order = np.argsort(values)[::-1][:n_components]
    return vectors[:, order] * np.sqrt(np.clip(values[order], 0, None))


def condition_auc(d: np.ndarray, samples: pd.DataFrame, n_mds: int, seed: int) -> float:
    """Out-of-fold ROC AUC of Severe vs HC, logistic regression on MDS coordinates, 5-fold CV
    by donor."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = classical_mds(d, n_mds)
    y = (samples[CONDITION] == "Severe").to_numpy()
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    p = np.zeros(len(y))
    for train, test in folds.split(x, y, groups=samples[DONOR].to_numpy()):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        clf.fit(x[train], y[train])
        p[test] = clf.predict_proba(x[test])[:, 1]
    return float(roc_auc_score(y, p))


def score(d: np.ndarray, samples: pd.DataFrame, cfg: dict, seed: int) -> dict[str, float]:
    batch = samples[BATCH].to_numpy()
    condition = samples[CONDITION].to_numpy()
    donors = samples[DONOR].to_numpy()
    retrieval, _ = donor_retrieval(d, donors)
    return {
        "same-batch 5-NN": nearest_same(d, batch, cfg["k"]),
        "batch silhouette": silhouette(d, batch),
        "condition silhouette": silhouette(d, condition),
        "same-condition 5-NN": nearest_same(d, condition, cfg["k"]),
        "condition AUC": condition_auc(d, samples, cfg["n_mds"], seed),
        "donor retrieval": retrieval,
        "donor retrieval within batch": donor_retrieval(d, donors, batch)[0],
    }


# ------------------------------------------------------------------------------ methods
def gde_distances(adata, names: pd.Index, model_kwargs: dict, cfg: dict, seed: int):
    """Distances between the GDE embeddings of the samples (library defaults otherwise) and
    the training time."""
    import scvi

    from scgde.model import GDE

    scvi.settings.seed = seed
    adata = adata.copy()
    GDE.setup_anndata(adata, group_key=GROUP, batch_key=BATCH)
    model = GDE(adata, **model_kwargs)
    t0 = time.perf_counter()
    model.train(max_epochs=cfg["gde_epochs"], train_size=1.0, enable_progress_bar=False)
    train_s = time.perf_counter() - t0
    z = model.get_distribution_embedding(key_added=None).loc[names].to_numpy()
    return distances(z), {"train_s": train_s, "epochs": int(model.trainer.max_epochs)}


def mrvi_distances(adata, names: pd.Index, cfg: dict, seed: int):
    """MrVI's (scvi-tools, torch) sample distances averaged over all cells, and its training
    time."""
    import scvi
    from scvi.external import TorchMRVI

    scvi.settings.seed = seed
    adata = adata.copy()
    adata.obs["_all_cells"] = "all"
    TorchMRVI.setup_anndata(adata, sample_key=GROUP, batch_key=BATCH)
    model = TorchMRVI(adata)
    t0 = time.perf_counter()
    model.train(max_epochs=cfg["mrvi_epochs"], enable_progress_bar=False)
    train_s = time.perf_counter() - t0
    result = model.get_local_sample_distances(groupby="_all_cells", keep_cell=False)
    frame = result["_all_cells"].sel(_all_cells_name="all").to_pandas()
    frame.index, frame.columns = frame.index.astype(str), frame.columns.astype(str)
    return frame.loc[names, names].to_numpy(), {"train_s": train_s, "epochs": cfg["mrvi_epochs"]}


def pseudobulk_distances(adata, samples: pd.DataFrame, combat: bool, n_comps: int = 20):
    """Distances between the samples' pseudobulk profiles in a PCA (after ComBat on the
    pseudobulk profiles with the batch, if ``combat``)."""
    import anndata as ad
    import scanpy as sc

    bulk = ad.AnnData(pseudobulk(adata, samples.index), obs=samples[[BATCH]].copy())
    bulk = bulk[:, bulk.X.std(0) > 0].copy()
    if combat:
        sc.pp.combat(bulk, key=BATCH)
    sc.pp.pca(bulk, n_comps=min(n_comps, bulk.n_obs - 1))
    return distances(bulk.obsm["X_pca"])


# --------------------------------------------------------------------------------- main
def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke profile")
    parser.add_argument("--data", choices=["demo", "full"], default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--no-mrvi", action="store_true", help="leave out the MrVI row")
    parser.add_argument(
        "--mrvi-epochs", type=int, default=None, help="MrVI's training epochs (profile's)"
    )
    parser.add_argument(
        "--gde-rows",
        type=json.loads,
        default=None,
        help="JSON {row name: GDE(...) arguments} replacing the GDE rows, for ablations, e.g. "
        '\'{"hsic, weight 0.3": {"batch_correction": "hsic", "batch_correction_weight": 0.3}}\'',
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    t_start = time.perf_counter()
    load_start = start(args.threads)
    profile = "quick" if args.quick else "default"
    cfg = dict(PROFILES[profile])
    if args.mrvi_epochs is not None:
        cfg["mrvi_epochs"] = args.mrvi_epochs
    adata = load(args.data)
    samples = sample_table(adata)
    names = samples.index
    log(
        f"{args.data} data: {adata.n_obs:,} cells x {adata.n_vars} genes, {len(samples)} samples "
        f"of {samples[DONOR].nunique()} donors in {samples[BATCH].nunique()} batches"
    )
    results, times = {}, {}
    gde_rows = args.gde_rows or GDE_ROWS
    for row, kwargs in gde_rows.items():
        log(f"training {row}")
        d, info = gde_distances(adata, names, kwargs, cfg, args.seed)
        results[row], times[row] = d, info
        log(f"  {info['epochs']} epochs in {info['train_s']:.0f} s")
    if not args.no_mrvi:
        row = "MrVI (scvi-tools TorchMRVI, sample_key + batch_key)"
        log(f"training {row}")
        results[row], times[row] = mrvi_distances(adata, names, cfg, args.seed)
        log(f"  {times[row]['epochs']} epochs in {times[row]['train_s']:.0f} s")
    results["pseudobulk PCA"] = pseudobulk_distances(adata, samples, combat=False)
    results["pseudobulk PCA after ComBat"] = pseudobulk_distances(adata, samples, combat=True)
    results["cell-type composition"] = distances(composition(adata, names))

    scores = {row: score(d, samples, cfg, args.seed) for row, d in results.items()}
    metrics = list(next(iter(scores.values())))
    rows = [
        [row]
        + [f"{value:.3f}" for value in scores[row].values()]
        + [f"{times[row]['train_s']:.0f} s ({times[row]['epochs']} ep)" if row in times else "–"]
        for row in results
    ]
    mixed_batch = mixed_expectation(samples[BATCH].to_numpy())
    mixed_condition = mixed_expectation(samples[CONDITION].to_numpy())
    rows.append(
        ["batch-blind expectation", f"{mixed_batch:.3f}", "0", "–", f"{mixed_condition:.3f}"]
        + ["0.5", "–", "–", "–"]
    )
    result_md = table(["method", *metrics, "training time"], rows)
    _, n_queries = donor_retrieval(results["pseudobulk PCA"], samples[DONOR].to_numpy())
    replicated = samples[samples[DONOR].duplicated(keep=False)]
    batches_per_donor = replicated.groupby(DONOR, observed=True)[BATCH].nunique()
    n_donors_with_replicates = len(batches_per_donor)
    same_batch_donors = int((batches_per_donor == 1).sum())
    print(f"\n{result_md}\n", flush=True)

    from scgde.nn import DEFAULT_BATCH_CORRECTION_WEIGHTS as DEFAULT_WEIGHTS

    rows_text = "; ".join(f"{row}: `{json.dumps(kw)}`" for row, kw in gde_rows.items())
    runtime = time.perf_counter() - t_start
    batches = samples.groupby(BATCH)[CONDITION].value_counts().unstack(fill_value=0)
    batches_md = table(
        ["batch", *batches.columns],
        [[b, *(str(v) for v in batches.loc[b])] for b in batches.index],
    )
    doc = f"""# Sample embeddings and technical batch (Liu 2021, {args.data} data)

Generated by `{command_line("batch.py")}` (profile **{profile}**, seed {args.seed}) in
{runtime / 60:.1f} min. **Real data**: {adata.n_obs:,} cells x {adata.n_vars} genes,
{len(samples)} samples of {samples[DONOR].nunique()} donors, sequenced in
{samples[BATCH].nunique()} batches (samples per batch and condition below; the batch is not
confounded with the condition).

## Results

{result_md}

- **same-batch 5-NN** (lower is better, down to the batch-blind expectation): fraction of
  each sample's 5 nearest samples from its own batch. **same-condition 5-NN**: the same for the
  condition (higher is better).
- **Silhouettes** on the sample distances (`metric="precomputed"`): batch (lower is better,
  0 = mixed) and condition (higher is better).
- **condition AUC**: Severe vs HC, logistic regression on {cfg["n_mds"]} classical-MDS
  coordinates of each method's distances, 5-fold `StratifiedGroupKFold` by donor, ROC AUC of
  the pooled out-of-fold predictions.
- **donor retrieval**: over the {n_queries} samples whose donor has other samples, the
  fraction whose nearest other sample is from the same donor. {same_batch_donors} of the
  {n_donors_with_replicates} donors with several samples have all of them in one batch, so an
  embedding that keeps the batch gets part of this score from the batch alone. **within
  batch**: the same, with only the samples of the query's batch as candidates, which takes
  that cue away from every method and compares the donor-specific biology each one keeps.

## Methods

- **GDE**: `GDE.setup_anndata(adata, group_key="sample", batch_key="batch")`, `GDE(adata,
  batch_correction=...)` with the library defaults otherwise (deep set, CVAE, NB,
  n_latent 32), `train(train_size=1.0)` with the default epochs unless the profile sets them;
  distances between `get_distribution_embedding()` rows. The batch penalty reads each
  training set's batch composition; its weight is the library default
  (`scgde.nn.DEFAULT_BATCH_CORRECTION_WEIGHTS`: {DEFAULT_WEIGHTS}) unless a row names one.
  Rows and their arguments: {rows_text}.
- **MrVI**: `scvi.external.TorchMRVI.setup_anndata(adata, sample_key="sample",
  batch_key="batch")`, `TorchMRVI(adata)` with its defaults, `train(max_epochs=
  {cfg["mrvi_epochs"]})`; its sample distance matrix averaged over all cells
  (`get_local_sample_distances(groupby=<one group of all cells>)`).
- **pseudobulk PCA**: mean log1p(CP10k) per sample, PCA (20 components) of the samples;
  **after ComBat**: `scanpy.pp.combat(key="batch")` on the pseudobulk profiles first.
- **cell-type composition**: Euclidean distance between cell-type fractions (the source data
  were subsampled by batch x condition x cell type, so compositions are not the natural ones).

Samples per batch and condition:

{batches_md}

## Machine

{machine_section(load_start)}
"""
    write_report(args.output, doc, runtime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
