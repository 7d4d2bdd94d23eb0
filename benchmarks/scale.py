"""Embedding and training from a backed or lazy ``.h5ad`` beside in memory, and the
sparse-pass floor.

The baseline of the out-of-core work: for random count matrices of ``n`` cells × 2,000 genes
(5% non-zeros, 10 groups), written to ``.h5ad`` files, every (size, mode) runs in a fresh
subprocess that opens the file in memory, ``backed="r"`` or with
``anndata.experimental.read_lazy`` (X a dask array), loads a trained model, embeds
every group (``get_distribution_embedding``, 3 timed calls after an untimed warm-up) and
trains a fresh model for 20 steps. Reported: embedding cells/s, peak RSS, training steps/s,
and the *sparse-pass floor* measured in the same run: one contiguous pass over the in-memory
CSR matrix that normalises, log-transforms the non-zeros and multiplies by a dense
2,000 × 128 matrix (the first layer of the encoder), in cells/s.

    python benchmarks/scale.py            # 10^4 and 10^5 cells (~3 min on 2 cores)
    python benchmarks/scale.py --full     # also 10^6 cells
    python benchmarks/scale.py --one-group 10000000   # one group of 10^7 cells, backed

``--one-group N`` instead writes one group of ``N`` cells, ``N / 10^5`` copies of one block
of 10^5 cells (CSR, written to the ``.h5ad`` block by block), embeds it from the file opened
``backed="r"`` in a fresh subprocess, and compares the result with the in-memory embedding of
the block: the encoder pools by means, so the copies must give the block's embedding. It
reports the time, the resident memory after loading the model and the peak while embedding.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "scale.md"
ONE_GROUP_OUTPUT = HERE / "results" / "scale_one_group.md"
N_GENES, DENSITY, N_GROUPS, CHUNK = 2_000, 0.05, 10, 4_096
MODES = ("memory", "backed", "lazy")
BLOCK = 100_000  # cells per copy in --one-group

sys.path.insert(0, str(HERE))
from _common import command_line, log, machine_section, start, table, write_report  # noqa: E402

from scgde.nn._set_encoders import STREAMING_CACHE_BYTES  # noqa: E402  the out-of-core cache


def _counts(n_cells: int, seed: int):
    """Random CSR counts (values 1-5 on 5% of entries) with a group column."""
    import anndata as ad
    import pandas as pd
    from scipy import sparse

    rng = np.random.default_rng(seed)
    x = sparse.random(n_cells, N_GENES, density=DENSITY, format="csr", random_state=rng)
    x.data = rng.integers(1, 6, x.data.size).astype(np.float32)
    groups = pd.Categorical([f"g{i}" for i in rng.integers(0, N_GROUPS, n_cells)])
    obs = pd.DataFrame({"group": groups}, index=[f"c{i}" for i in range(n_cells)])
    var = pd.DataFrame(index=[f"gene{j}" for j in range(N_GENES)])
    return ad.AnnData(x.astype(np.float32), obs=obs, var=var)


def _sparse_pass(x, seed: int) -> float:
    """Seconds of one contiguous pass: normalise, log1p the non-zeros, multiply by a dense
    ``N_GENES × 128`` matrix."""
    from scipy import sparse

    weights = np.random.default_rng(seed).standard_normal((N_GENES, 128)).astype(np.float32)
    began = time.perf_counter()
    for row in range(0, x.shape[0], CHUNK):
        block = x[row : row + CHUNK]
        totals = np.asarray(block.sum(axis=1)).reshape(-1)
        block = sparse.csr_matrix(block.multiply((1e4 / np.maximum(totals, 1.0))[:, None]))
        block.data = np.log1p(block.data)
        _ = block @ weights
    return time.perf_counter() - began


def _peak_rss() -> int:
    """The kernel's peak-RSS mark of this process (bytes)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _worker(spec: dict) -> dict:
    """In a fresh subprocess: embedding times, peak RSS and training steps/s of one mode."""
    import anndata as ad
    import scvi

    from scgde.model import GDE

    start(spec["threads"])
    if spec["mode"] == "lazy":
        from anndata.experimental import read_lazy

        adata = read_lazy(spec["path"])
    else:
        adata = ad.read_h5ad(spec["path"], backed="r" if spec["mode"] == "backed" else None)
    model = GDE.load(spec["model"], adata=adata)
    model.get_distribution_embedding(adata[: min(1_000, adata.n_obs)].to_memory(), key_added=None)
    times = []
    for _ in range(3):
        began = time.perf_counter()
        model.get_distribution_embedding(key_added=None)
        times.append(time.perf_counter() - began)
    peak = _peak_rss()
    bounded = []  # in memory with the out-of-core cache, for a comparison at equal budget
    for _ in range(3 if spec["mode"] == "memory" else 0):
        began = time.perf_counter()
        model.get_distribution_embedding(key_added=None, cache_bytes=STREAMING_CACHE_BYTES)
        bounded.append(time.perf_counter() - began)
    no_disk = []  # backed without the temporary file of projections: each pass reads again
    for _ in range(3 if spec["mode"] == "backed" else 0):
        began = time.perf_counter()
        model.get_distribution_embedding(key_added=None, disk_cache=False)
        no_disk.append(time.perf_counter() - began)
    scvi.settings.seed = 0
    fresh = GDE(model.adata, n_latent=16)
    began = time.perf_counter()
    fresh.train(max_epochs=100, max_steps=20, set_size=128, groups_per_batch=8)
    train_s = time.perf_counter() - began
    return {
        "embed_s": times,
        "bounded_embed_s": bounded,
        "no_disk_embed_s": no_disk,
        "peak_rss": peak,
        "steps_per_s": 20 / train_s,
    }


def _trained_model(workdir: str, seed: int) -> str:
    """A ``GDE(n_latent=16)`` trained 20 steps on 10^4 random cells, saved with them; its
    folder."""
    import scvi

    from scgde.model import GDE

    small = _counts(10_000, seed)
    GDE.setup_anndata(small, group_key="group")
    scvi.settings.seed = seed
    model = GDE(small, n_latent=16)
    model.train(max_epochs=100, max_steps=20, set_size=128, groups_per_batch=8)
    model_dir = str(Path(workdir) / "model")
    model.save(model_dir, save_anndata=True)
    return model_dir


def _rss() -> tuple[int, int]:
    """This process's resident memory now and its peak (bytes)."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values["VmRSS"], values["VmHWM"]


def _one_group_worker(spec: dict) -> dict:
    """In a fresh subprocess: embed the one group of a backed file once; memory after loading
    the model and the peak above it while embedding."""
    import anndata as ad

    from scgde.model import GDE

    start(spec["threads"])
    model = GDE.load(spec["model"])  # with the 10^4 cells it was trained on
    adata = ad.read_h5ad(spec["path"], backed="r")
    loaded, _ = _rss()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak mark to the current resident memory
    began = time.perf_counter()
    z = model.get_distribution_embedding(adata, key_added=None, disk_cache=spec["disk_cache"])
    seconds = time.perf_counter() - began
    _, peak = _rss()
    return {"embed_s": seconds, "rss_loaded": loaded, "peak": peak, "z": z.to_numpy().tolist()}


def _write_copies(block, copies: int, path: str) -> None:
    """An ``.h5ad`` whose X is ``copies`` copies of ``block``'s CSR rows, one group, written
    block by block (never whole in memory)."""
    import anndata as ad
    import h5py
    import pandas as pd
    from anndata.io import write_elem

    x = block.X
    n, nnz = x.shape[0] * copies, x.nnz
    obs = pd.DataFrame({"group": pd.Categorical(["all"] * n)}, index=pd.RangeIndex(n).astype(str))
    ad.AnnData(obs=obs, var=block.var).write_h5ad(path)
    with h5py.File(path, "a") as f:
        group = f.create_group("X")
        group.attrs.update(
            {"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": (n, x.shape[1])}
        )
        data = group.create_dataset("data", (nnz * copies,), dtype=np.float32)
        indices = group.create_dataset("indices", (nnz * copies,), dtype=np.int32)
        indptr = np.concatenate(
            [[0], (x.indptr[1:][None, :] + nnz * np.arange(copies)[:, None]).reshape(-1)]
        )
        for k in range(copies):
            data[k * nnz : (k + 1) * nnz] = x.data
            indices[k * nnz : (k + 1) * nnz] = x.indices
        write_elem(f, "X/indptr", indptr.astype(np.int64))


def _one_group(args, model_dir: str, workdir: str, load_start: str, t_start: float) -> int:
    """The ``--one-group`` run: the report of one large group against its block in memory."""
    from scgde.model import GDE

    block = _counts(BLOCK, args.seed)
    block.obs["group"] = "all"
    reference = GDE.load(model_dir).get_distribution_embedding(block, key_added=None)
    copies = max(1, args.one_group // BLOCK)
    path = str(Path(workdir) / "one_group.h5ad")
    began = time.perf_counter()
    _write_copies(block, copies, path)
    size_gb = Path(path).stat().st_size / 1e9
    written_s = time.perf_counter() - began
    log(f"{BLOCK * copies:,} cells written ({size_gb:.1f} GB) in {written_s:.0f} s")
    spec = {"path": path, "model": model_dir, "threads": args.threads, "one_group": True}
    n = BLOCK * copies
    rows = []
    for disk_cache in (None, False):  # the default (a temporary file of projections), none
        out = _run_worker({**spec, "disk_cache": disk_cache})
        log(f"disk_cache={disk_cache}: {out['embed_s']:.0f} s")
        z = np.asarray(out["z"])
        difference = np.abs(z - reference.to_numpy()).max() / np.abs(reference.to_numpy()).max()
        rows.append(
            [
                f"{n:,}",
                f"{size_gb:.1f}",
                "default" if disk_cache is None else "`disk_cache=False`",
                f"{out['embed_s']:.0f}",
                f"{n / out['embed_s']:,.0f}",
                f"{out['rss_loaded'] / 2**20:,.0f}",
                f"{out['peak'] / 2**20:,.0f}",
                f"{(out['peak'] - out['rss_loaded']) / 2**20:,.0f}",
                f"{difference:.1e}",
            ]
        )
    header = ["cells", "file GB", "disk cache", "embed s", "cells/s", "RSS after load MB"]
    header += ["peak RSS MB", "peak above load MB"]
    header += ["largest difference from the block's z (relative)"]
    runtime = time.perf_counter() - t_start
    doc = f"""# One group of {n:,} cells from a backed file

`{command_line("scale.py")}`; run time {runtime / 60:.1f} min.

{table(header, rows)}

- Data: one group of {copies:,} copies of a block of {BLOCK:,} random count cells
  ({N_GENES:,} genes, {DENSITY:.0%} non-zeros, values 1-5), CSR `.h5ad` written block by
  block, opened with `read_h5ad(path, backed="r")` in a fresh subprocess.
- Embedding: one call of `model.get_distribution_embedding(backed, key_added=None)` (new
  data) by a `GDE(n_latent=16)` loaded with `GDE.load(dir)` (with the 10^4 cells it was
  trained on), in one fresh subprocess with the default `disk_cache` (projections beyond
  the 512 MiB cache in a temporary file of at most half the free disk and half the available
  memory) and then in another with `disk_cache=False` (each pass reads them again). RSS
  after load: `VmRSS` once the model and the backed AnnData (its `obs` of {n:,} rows
  included) are loaded; the peak mark is then reset (`/proc/self/clear_refs`) and read
  (`VmHWM`) after embedding.
- Last column: the largest difference from the in-memory embedding of the block (the
  copies have the block's distribution, so the mean-pooling encoder must give its
  embedding), relative to the largest entry.

## Machine

{machine_section(load_start)}
"""
    write_report(args.output, doc, runtime)
    return 0


def _run_worker(spec: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(f"worker failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="also 10^6 cells")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="default: results/scale.md, or results/scale_one_group.md with --one-group",
    )
    parser.add_argument(
        "--one-group",
        type=int,
        default=None,
        metavar="CELLS",
        help="instead: one group of CELLS cells (copies of 10^5), embedded from a backed file",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        worker = _one_group_worker if spec.get("one_group") else _worker
        print(json.dumps(worker(spec)), flush=True)
        return 0
    if args.output is None:
        args.output = DEFAULT_OUTPUT if args.one_group is None else ONE_GROUP_OUTPUT
    t_start = time.perf_counter()
    load_start = start(args.threads)
    sizes = [10_000, 100_000] + ([1_000_000] if args.full else [])
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        model_dir = _trained_model(workdir, args.seed)
        if args.one_group:
            return _one_group(args, model_dir, workdir, load_start, t_start)
        paths = {}
        for n in sizes:
            adata = _counts(n, args.seed)
            paths[n] = str(Path(workdir) / f"cells_{n}.h5ad")
            adata.write_h5ad(paths[n])
            floor = n / min(_sparse_pass(adata.X, args.seed) for _ in range(3))
            paths[n, "floor"] = floor
            log(f"{n:,} cells written; sparse-pass floor {floor:,.0f} cells/s")
        for n in sizes:
            result = {}
            for mode in MODES:
                spec = {"path": paths[n], "mode": mode, "model": model_dir}
                result[mode] = _run_worker({**spec, "threads": args.threads})
                log(f"{n:,} cells, {mode}: {result[mode]}")
            speed = {m: n / float(np.median(r["embed_s"])) for m, r in result.items()}
            bounded = n / float(np.median(result["memory"]["bounded_embed_s"]))
            no_disk = n / float(np.median(result["backed"]["no_disk_embed_s"]))
            floor = paths[n, "floor"]
            rows.append(
                [f"{n:,}", f"{floor:,.0f}", f"{speed['memory'] / floor:.3f}"]
                + [f"{speed[m]:,.0f}" for m in MODES]
                + [f"{bounded:,.0f}", f"{speed['backed'] / bounded:.2f}"]
                + [f"{speed[m] / speed['memory']:.2f}" for m in MODES[1:]]
                + [f"{no_disk / speed['memory']:.2f}"]
                + [f"{result[m]['peak_rss'] / 2**20:,.0f}" for m in MODES]
                + [f"{result[m]['steps_per_s']:.1f}" for m in MODES]
            )
    header = ["cells", "sparse-pass floor, cells/s", "memory / floor"]
    header += [f"embed cells/s, {m}" for m in MODES]
    header += ["embed cells/s, memory, 512 MiB cache", "backed / memory, both 512 MiB"]
    header += [f"{m} / memory" for m in MODES[1:]] + ["backed without disk cache / memory"]
    header += [f"peak RSS MB, {m}" for m in MODES] + [f"train steps/s, {m}" for m in MODES]
    runtime = time.perf_counter() - t_start
    doc = f"""# Backed and lazy beside in memory, and the sparse-pass floor

`{command_line("scale.py")}`; run time {runtime / 60:.1f} min.

{table(header, rows)}

- Data: random counts, {N_GENES:,} genes, {DENSITY:.0%} non-zeros (values 1-5), {N_GROUPS}
  groups, CSR `.h5ad` files opened with `read_h5ad(path)` (memory), `backed="r"` or
  `anndata.experimental.read_lazy(path)` (lazy: X a dask array of CSR blocks).
- Embedding: `get_distribution_embedding(key_added=None)` of every group, median of 3 calls
  after an untimed warm-up, by a `GDE(n_latent=16)` loaded with `GDE.load(dir, adata=...)`
  in a fresh subprocess per (size, mode); peak RSS is that process's `VmHWM` (it includes
  the in-memory matrix where there is one). The cache between the encoder's passes is the
  default: a quarter of the available memory for a matrix in memory, 512 MiB for backed
  and lazy ones, whose projections beyond it go to a temporary file (`disk_cache`, on by
  default for them). The "512 MiB cache" column times the in-memory matrix with
  `cache_bytes={STREAMING_CACHE_BYTES:_}` in the same process (3 more calls), to compare
  with backed at an equal memory budget; "backed without disk cache" times the backed file
  with `disk_cache=False` in its process (3 more calls: each pass reads the chunks beyond
  the cache again).
- Training: a fresh `GDE(n_latent=16)` on the same data, 20 steps of 8 sets of 128 cells.
- Sparse-pass floor: one contiguous pass over the in-memory CSR in chunks of {CHUNK:,}
  rows: normalise to 10^4, log1p the non-zeros, multiply by a dense {N_GENES:,} × 128
  matrix; best of 3.

## Machine

{machine_section(load_start)}
"""
    write_report(args.output, doc, runtime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
