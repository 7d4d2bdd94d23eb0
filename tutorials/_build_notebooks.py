"""Write the tutorial notebooks from the cell sources below.

Run ``python tutorials/_build_notebooks.py [--execute]`` after editing a source; with
``--execute`` the notebooks are run and saved with their outputs, so they read well on the web.

Keeping the sources here makes the notebooks easy to review in a diff; the notebooks are
executed again by ``tests/test_tutorials.py`` so they cannot rot.
"""

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).parent

SAMPLES = [
    (
        "md",
        """# Embedding patient samples with GDE

This tutorial embeds the 63 blood samples of a COVID-19 cohort — 13 from healthy controls (HC)
and 50 from patients with severe disease, several of them sampled at a few time points — as
points in one space, **each sample from all of its cells**. It uses the real demo data bundled
with scgde (Liu et al. 2021, 7,553 PBMCs × 500 genes, raw counts) and runs in a couple of
minutes on a laptop CPU.

GDE learns two things together: a *set encoder* that maps all cells of a sample to one vector
`z`, and a *conditional generator* that regenerates cells of the sample from `z`. The encoder
only uses means over cells, so `z` depends on the sample's distribution of cells, not on how
many cells were sequenced or in which order.""",
    ),
    (
        "code",
        """import matplotlib.pyplot as plt
import numpy as np
import scanpy as sc
import scvi

import scgde

scvi.settings.seed = 0
adata = scgde.datasets.demo()
adata""",
    ),
    ("code", """adata.obs.groupby("condition", observed=True)["sample"].nunique()"""),
    (
        "md",
        """## Register the grouping and train

`group_key` names the column that defines the sets (here: the sample); `batch_key` the
technical batch, which the generator is conditioned on. `adata.X` holds raw counts, modelled
with a negative binomial likelihood. Each training step draws 16 samples and up to 128 cells
of each; whole samples are held out for validation.""",
    ),
    (
        "code",
        """scgde.model.GDE.setup_anndata(adata, group_key="sample", batch_key="batch")
model = scgde.model.GDE(adata, n_latent=16)
model.train(max_epochs=150, enable_progress_bar=False)
model""",
    ),
    (
        "code",
        """fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(model.history["elbo_train"], label="training samples")
ax.plot(model.history["elbo_validation"], label="held-out samples")
ax.set_xlabel("epoch")
ax.set_ylabel("negative ELBO per cell")
ax.legend();""",
    ),
    (
        "md",
        """## One vector per sample

`get_distribution_embedding` encodes every sample from all its cells, streamed in chunks.
The table goes to `adata.uns["X_gde"]`, and each cell gets its sample's vector in
`adata.obsm["X_gde"]`. `get_group_adata` returns an AnnData with one observation per sample,
carrying every obs column that is constant within samples — ready for scanpy.""",
    ),
    (
        "code",
        """embedding = model.get_distribution_embedding()
samples = model.get_group_adata()
samples""",
    ),
    (
        "code",
        """sc.pp.neighbors(samples, use_rep="X", n_neighbors=10)
sc.tl.umap(samples, random_state=0)
sc.pl.umap(samples, color=["condition", "time_point", "batch"], size=150)""",
    ),
    (
        "md",
        """How well does the embedding separate healthy from severe samples? A cross-validated
logistic regression on the 16-dimensional embedding, with folds split **by donor** (repeated
samples of a donor never end up on both sides):""",
    ),
    (
        "code",
        """from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_score

y = (samples.obs["condition"] == "Severe").to_numpy()
scores = cross_val_score(
    LogisticRegression(max_iter=2000), samples.X, y,
    groups=samples.obs["donor"], cv=GroupKFold(5), scoring="roc_auc",
)
print(f"ROC AUC, 5-fold by donor: {scores.mean():.2f} ± {scores.std():.2f}")""",
    ),
    (
        "md",
        """## New samples without retraining

The encoder is amortized: any set of cells can be embedded. Here every sample is split into two
random halves, each embedded as a new group. Halves of one sample land next to each other.""",
    ),
    (
        "code",
        """halves = adata.copy()
rng = np.random.default_rng(0)
halves.obs["half"] = np.where(rng.random(halves.n_obs) < 0.5, "A", "B")
halves.obs["sample_half"] = halves.obs["sample"].astype(str) + "/" + halves.obs["half"]
halves.obs["sample"] = halves.obs["sample_half"]
z = model.get_distribution_embedding(halves, key_added=None)

names = adata.obs["sample"].cat.categories
a = z.loc[[f"{n}/A" for n in names]].to_numpy()
b = z.loc[[f"{n}/B" for n in names]].to_numpy()
distance = np.linalg.norm(a[:, None] - b[None], axis=-1)
nearest_is_own_half = (distance.argmin(axis=1) == np.arange(len(names))).mean()
print(f"half A's nearest half B is its own sample's for {nearest_is_own_half:.0%} of samples")
plt.imshow(distance, cmap="viridis")
plt.xlabel("half B of sample")
plt.ylabel("half A of sample")
plt.colorbar(label="distance in z");""",
    ),
    (
        "md",
        """## Generate cells from a sample

`sample` draws new cells (counts) from a sample's embedding. Per-gene means of generated cells
track those of the real cells; the generator has also learnt how samples differ.""",
    ),
    (
        "code",
        """group = names[0]
generated = model.sample(groups=[group], n_cells=2000, seed=0)
real = adata[adata.obs["sample"] == group]

def log_mean(x):
    return np.log1p(np.asarray(x.mean(axis=0)).ravel())

fig, ax = plt.subplots(figsize=(4, 4))
ax.scatter(log_mean(real.X), log_mean(generated.X), s=5)
ax.plot([0, 4], [0, 4], color="grey", lw=1)
ax.set_xlabel("log1p mean count, real cells")
ax.set_ylabel("log1p mean count, generated")
ax.set_title(group)
r = np.corrcoef(log_mean(real.X), log_mean(generated.X))[0, 1]
print(f"Pearson r of per-gene log means: {r:.3f}")""",
    ),
    (
        "md",
        """## Save and reload

Models are saved in the scvi-tools format; a reloaded model gives identical embeddings.""",
    ),
    (
        "code",
        """import tempfile

with tempfile.TemporaryDirectory() as tmp:
    model.save(tmp, overwrite=True)
    reloaded = scgde.model.GDE.load(tmp, adata=scgde.datasets.demo())
    again = reloaded.get_distribution_embedding(key_added=None)
print("identical after reload:", np.allclose(again.to_numpy(), embedding.to_numpy()))""",
    ),
]


def build(cells, path: Path, execute: bool = False) -> None:
    """Write ``cells`` (pairs of kind and source) as a notebook, run it first if ``execute``."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
        for kind, src in cells
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    if execute:
        from nbclient import NotebookClient

        NotebookClient(nb, timeout=1200, resources={"metadata": {"path": str(HERE)}}).execute()
    nbformat.write(nb, path)


if __name__ == "__main__":
    build(SAMPLES, HERE / "01_embed_samples.ipynb", execute="--execute" in sys.argv)
