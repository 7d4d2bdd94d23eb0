"""Train a GDE in one or several CPU processes (Lightning DDP, gloo) and save what it learned.

Run by ``tests/test_distributed.py`` as a script, because Lightning's DDP launcher starts the
other processes by re-running the command line::

    python tests/_ddp_training.py --processes 2 --seed 0 --output out.npz
"""

import argparse
import sys

import anndata as ad
import numpy as np
import pandas as pd
import scvi
from scipy import sparse

from scgde.model import GDE

#: Sets drawn per optimizer step, by all processes together.
SETS_PER_STEP = 8


def group_counts(n_groups=8, n_cells=64, n_genes=30, seed=0):
    """Poisson counts of groups whose rates differ by a group-specific log-normal factor."""
    rng = np.random.default_rng(seed)
    rates = np.exp(rng.normal(1.0, 0.8, (n_groups, n_genes)))
    x = rng.poisson(np.repeat(rates, n_cells, axis=0)).astype(np.float32)
    obs = pd.DataFrame({"group": np.repeat([f"g{i}" for i in range(n_groups)], n_cells)})
    obs.index = [f"cell{i}" for i in range(len(obs))]
    return ad.AnnData(sparse.csr_matrix(x), obs=obs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    adata = group_counts()
    GDE.setup_anndata(adata, group_key="group")
    scvi.settings.seed = args.seed
    model = GDE(adata, n_latent=4)
    distributed = {"strategy": "ddp"} if args.processes > 1 else {}
    model.train(
        max_epochs=40,
        set_size=32,
        groups_per_batch=SETS_PER_STEP // args.processes,
        train_size=1.0,
        accelerator="cpu",
        devices=args.processes,
        enable_progress_bar=False,
        **distributed,
    )
    if model.trainer.global_rank == 0:  # the other processes only train
        z = model.get_distribution_embedding(key_added=None).sort_index()
        np.savez(
            args.output,
            z=z.to_numpy(),
            elbo=model.history["elbo_train"].iloc[-10:, 0].to_numpy(dtype=float),
            steps=model.trainer.global_step,
            processes=model.trainer.world_size,
            lr=model.trainer.lightning_module.lr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
