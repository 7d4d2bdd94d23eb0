"""Command-line interface: ``scgde embed``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

_DEMO_GROUP_KEY = "sample"
_DEMO_BATCH_KEY = "batch"
_DEMO_COLOR = ["condition", "time_point", "batch"]
#: Fewer groups than this are plotted by their first two embedding components, not by UMAP.
_MIN_UMAP_GROUPS = 5


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scgde", description="Generative distribution embeddings of groups of cells."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    embed = sub.add_parser(
        "embed",
        help="train GDE on an .h5ad file and write the group embeddings",
        description=(
            "Train a GDE model, embed every group, and write OUTPUT (the input annotated with "
            "uns/obsm['X_gde']), OUTPUT_groups.h5ad (one row per group) and "
            "OUTPUT_groups_umap.png. With --demo, runs on the bundled Liu 2021 COVID PBMC data."
        ),
    )
    embed.add_argument("input", nargs="?", help="input .h5ad file (cells x genes)")
    embed.add_argument("--demo", action="store_true", help="use the bundled demo data")
    embed.add_argument("--group-key", help="obs column(s) defining the groups", nargs="+")
    embed.add_argument("--output", required=True, help="output .h5ad path")
    embed.add_argument("--layer", help="layer with raw counts (default: X)")
    embed.add_argument("--batch-key", help="obs column with technical batches")
    embed.add_argument(
        "--batch-correction",
        choices=["hsic"],
        help="keep the --batch-key batch out of the embedding (GDE(batch_correction=...))",
    )
    embed.add_argument("--likelihood", default="nb", choices=["nb", "zinb", "poisson", "gaussian"])
    embed.add_argument("--n-latent", type=int, default=32)
    embed.add_argument("--max-epochs", type=int, help="default: about 2,000 training steps")
    embed.add_argument("--set-size", type=int, default=128)
    embed.add_argument("--groups-per-batch", type=int, default=16)
    embed.add_argument("--accelerator", default="auto", help="'cpu', 'gpu' or 'auto'")
    embed.add_argument("--color", nargs="*", help="obs columns to colour the group UMAP by")
    embed.add_argument("--save-model", help="directory to save the trained model to")
    embed.add_argument("--seed", type=int, default=0)
    return parser


def _same_file(a, b) -> bool:
    """Whether two paths name the same existing file."""
    try:
        return Path(a).resolve() == Path(b).resolve() or Path(a).samefile(b)
    except OSError:
        return False


def _read_input(path: str):
    """The input AnnData, with a clear error for a missing or unreadable file."""
    import anndata

    if not Path(path).is_file():
        raise FileNotFoundError(f"Input file {path} does not exist.")
    try:
        return anndata.read_h5ad(path)
    except OSError as err:
        raise ValueError(
            f"Cannot read {path} as an .h5ad file (AnnData's HDF5 format): {err}"
        ) from None


def _clean_copy(adata):
    """The input with only scgde's documented additions (drop scvi-tools registration keys)."""
    out = adata.copy()
    out.obs = out.obs.loc[:, [c for c in out.obs.columns if not c.startswith("_scvi")]]
    for key in [k for k in out.uns if k.startswith("_scvi")]:
        del out.uns[key]
    return out


def _default_colors(groups, group_key: list[str]) -> list[str]:
    candidates = [c for c in groups.obs.columns if c not in (*group_key, "n_cells")]
    few = [c for c in candidates if 1 < groups.obs[c].nunique() <= 20]
    return few[:3]


def _plot_group_umap(groups, colors: list[str], path: Path) -> None:
    """UMAP of the groups (:func:`scgde.pl.group_embedding`); with fewer than
    ``_MIN_UMAP_GROUPS`` groups (too few for UMAP), a PCA of their embeddings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._io import write_atomic
    from .pl import group_embedding

    basis, what = ("umap", "UMAP") if groups.n_obs >= _MIN_UMAP_GROUPS else ("pca", "PCA")
    drawn = group_embedding(groups, color=colors or None, basis=basis, size=120, show=False)
    fig = next(iter(drawn.values())).figure if isinstance(drawn, dict) else drawn.figure
    fig.suptitle(f"GDE embedding of {groups.n_obs} groups ({what})")
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png", bbox_inches="tight"))
    plt.close(fig)


def embed(args: argparse.Namespace) -> dict[str, Path]:
    """Run ``scgde embed``; returns the paths written."""
    import scvi

    from ._io import write_atomic
    from .datasets import demo
    from .model import GDE

    if args.demo == bool(args.input):
        raise SystemExit("scgde embed: give either an INPUT file or --demo.")
    if args.demo:
        adata = demo()
        group_key = args.group_key or [_DEMO_GROUP_KEY]
        batch_key = args.batch_key or _DEMO_BATCH_KEY
        colors = args.color if args.color is not None else _DEMO_COLOR
    else:
        if not args.group_key:
            raise SystemExit("scgde embed: --group-key is required with an INPUT file.")
        group_key, batch_key, colors = args.group_key, args.batch_key, args.color
    output = Path(args.output)
    if output.suffix != ".h5ad":
        raise SystemExit(f"scgde embed: --output must end in .h5ad, got {output}.")
    paths = {
        "annotated": output,
        "groups": output.with_name(f"{output.stem}_groups.h5ad"),
        "umap": output.with_name(f"{output.stem}_groups_umap.png"),
    }
    if args.input and any(_same_file(args.input, path) for path in paths.values()):
        raise SystemExit(
            f"scgde embed: --output {output} would overwrite the input file {args.input}; "
            "choose another output name."
        )
    if not args.demo:
        adata = _read_input(args.input)
    key = group_key[0] if len(group_key) == 1 else group_key
    scvi.settings.seed = args.seed
    start = time.time()
    GDE.setup_anndata(adata, group_key=key, layer=args.layer, batch_key=batch_key)
    model = GDE(
        adata,
        n_latent=args.n_latent,
        likelihood=args.likelihood,
        batch_correction=args.batch_correction,
    )
    print(model, flush=True)
    model.train(
        max_epochs=args.max_epochs,
        set_size=args.set_size,
        groups_per_batch=args.groups_per_batch,
        accelerator=args.accelerator,
    )
    model.get_distribution_embedding()
    groups = model.get_group_adata()
    # results first: a failure in the plot must not lose them
    write_atomic(paths["annotated"], _clean_copy(adata).write_h5ad)
    write_atomic(paths["groups"], groups.write_h5ad)
    if args.save_model:
        model.save(args.save_model, overwrite=True)
    colors = colors if colors is not None else _default_colors(groups, group_key)
    _plot_group_umap(groups, colors, paths["umap"])
    print(f"Embedded {groups.n_obs} groups in {time.time() - start:.0f} s. Wrote:")
    for path in paths.values():
        print(f"  {path}")
    return paths


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scgde`` console script."""
    args = _parser().parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    try:
        embed(args)
    except (KeyError, ValueError, FileNotFoundError) as err:
        print(f"scgde {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
