#!/usr/bin/env python
"""Training and embedding throughput of scgde ``GDE`` next to scvi-tools ``SCVI``.

Run from the repository root::

    python benchmarks/throughput.py            # default profile (~3 min on 2 idle cores)
    python benchmarks/throughput.py --quick    # smoke profile (~1 min)

Timings on a shared machine swing by an order of magnitude when other jobs hold the CPUs
(torch's threads then wait for each other); the report flags this from the CPU/wall column.

Two measurements, in the same run, on the bundled real demo data (7,553 cells x 500 genes,
raw counts, 63 samples, 3 batches):

1. **Training.** Wall time of ``model.train(max_epochs=E)`` for GDE at several set sizes and
   for SCVI, with fresh models on the same cells. Cells processed are counted from the
   training minibatches themselves (a Lightning callback) and the steps from
   ``model.trainer.global_step``; the ratio GDE/SCVI time per cell is computed within each
   repeat and the median over repeats is reported.
2. **Embedding.** ``GDE.get_distribution_embedding`` and ``SCVI.get_latent_representation`` on
   AnnData objects of growing size made by tiling the real demo cells into a few large groups.
   Every (model, size) runs in a fresh subprocess, so its peak memory is not hidden by memory
   that an earlier measurement freed; peak extra memory is read from the kernel's resettable
   RSS high-water mark, cross-checked by an RSS sampler thread and by ``tracemalloc``.

The tables are printed and written to ``--output`` (default
``benchmarks/results/throughput.md``) with the machine, the settings and the date.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path

from _common import quiet  # the script's folder is on sys.path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUTPUT = HERE / "results" / "throughput.md"

PROFILES = {
    "default": {
        "repeats": 3,
        "epochs": 10,
        "set_sizes": (32, 128, 512),
        "groups_per_batch": 16,
        "embed_sizes": (2_000, 20_000, 200_000),
        "embed_groups": 4,
        "batch_size": 4096,
    },
    "quick": {
        "repeats": 1,
        "epochs": 1,
        "set_sizes": (32, 128, 512),
        "groups_per_batch": 16,
        "embed_sizes": (2_000, 20_000),
        "embed_groups": 4,
        "batch_size": 4096,
    },
}

SCVI_SIZES = {"n_latent": 10, "n_hidden": 128}
TRAIN_SIZE = 0.9
GROUP_KEY = "sample"
BATCH_KEY = "batch"
WARMUP_CELLS = 1_000  # cells of the untimed warm-up call in each embedding subprocess
WARMUP_TRAIN_CELLS = 2_000  # cells of the untimed warm-up trainings
# glibc: serve blocks >= 64 KiB by mmap and return them to the OS when freed (no dynamic
# threshold), so that the RSS high-water mark follows the live memory (see the notes)
LIVE_MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}
RSS_SAMPLE_S = 0.002  # RSS sampler period
MiB = 2**20


# --------------------------------------------------------------------------------- helpers
def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(value, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    return f"{value:,.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _proc_status() -> dict[str, int]:
    """VmRSS / VmHWM / RssAnon of this process in bytes (Linux), else {}."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon"):
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        status = _proc_status()
        return bool(status) and status["VmHWM"] <= status["VmRSS"] + 4 * 1024 * 1024
    except OSError:
        return False


class _RssSampler(threading.Thread):
    """Sample this process's RSS every ``RSS_SAMPLE_S`` seconds and keep the maximum."""

    def __init__(self):
        super().__init__(daemon=True)
        import psutil

        self._process = psutil.Process()
        self._stop_event = threading.Event()
        self.peak = self._process.memory_info().rss

    def run(self):
        while not self._stop_event.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(RSS_SAMPLE_S)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, self._process.memory_info().rss)
        return self.peak


# ----------------------------------------------------------------------------- training
def _cell_counter():
    from lightning.pytorch.callbacks import Callback

    class CellCounter(Callback):
        """Count training steps, cells and sets, and time the optimisation steps."""

        def __init__(self):
            self.steps = self.cells = self.sets = 0
            self.step_seconds = 0.0
            self._t0 = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            x = batch["X"]
            self.cells += int(x.shape[0])
            if "set_ids" in batch:
                self.sets += int(batch["set_ids"].max()) + 1
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.step_seconds += time.perf_counter() - self._t0
            self.steps += 1

    return CellCounter()


def _train_once(base, kind: str, set_size: int | None, cfg: dict, seed: int, epochs: int):
    """Train one fresh model; return its measurements and the model."""
    import scvi

    from scgde.model import GDE

    scvi.settings.seed = seed
    adata = base.copy()
    if kind == "scvi":
        scvi.model.SCVI.setup_anndata(adata, batch_key=BATCH_KEY)
        model = scvi.model.SCVI(adata, **SCVI_SIZES)
        # GDE validates every epoch on its held-out groups; make SCVI do the same amount of work
        kwargs = {"check_val_every_n_epoch": 1}
    else:
        GDE.setup_anndata(adata, group_key=GROUP_KEY, batch_key=BATCH_KEY)
        model = GDE(adata)
        kwargs = {"set_size": set_size, "groups_per_batch": cfg["groups_per_batch"]}
    counter = _cell_counter()
    gc.collect()
    cpu_start = time.process_time()
    start = time.perf_counter()
    model.train(
        max_epochs=epochs,
        train_size=TRAIN_SIZE,
        enable_progress_bar=False,
        callbacks=[counter],
        **kwargs,
    )
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    steps = int(model.trainer.global_step)
    if steps != counter.steps:
        _log(f"warning: trainer.global_step={steps} but {counter.steps} training batches seen")
    result = {
        "kind": kind,
        "set_size": set_size,
        "epochs": epochs,
        "steps": steps,
        "cells": counter.cells,
        "sets": counter.sets,
        "wall_s": wall,
        "cpu_per_wall": cpu / wall,
        "step_s": counter.step_seconds,
    }
    if kind == "scvi":
        n_train = len(model.train_indices)
        result["n_train"] = n_train
        result["formula_cells"] = epochs * n_train  # epochs x training cells
    else:
        mean_set = counter.cells / counter.sets if counter.sets else float("nan")
        result["mean_cells_per_set"] = mean_set
        # steps x groups_per_batch x mean cells per set
        result["formula_cells"] = steps * cfg["groups_per_batch"] * mean_set
        result["n_train"] = int(sum(model.adata.obs[GROUP_KEY].isin(model.train_groups_)))
    result["cells_per_s"] = result["cells"] / wall
    result["step_cells_per_s"] = result["cells"] / counter.step_seconds
    return result, model


def run_training(base, cfg: dict, seed: int):
    """All repeats of the training benchmark; returns (per-run results, last models)."""
    from _machine import load_average

    configs = [("scvi", None)] + [("gde", s) for s in cfg["set_sizes"]]
    _log(f"training: untimed warm-up of SCVI and GDE (1 epoch on {WARMUP_TRAIN_CELLS:,} cells)")
    subset = base[:WARMUP_TRAIN_CELLS].copy()
    _train_once(subset, "scvi", None, cfg, seed, epochs=1)
    _train_once(subset, "gde", cfg["set_sizes"][0], cfg, seed, epochs=1)
    runs, models = [], {}
    for r in range(cfg["repeats"]):
        # rotate the order each repeat so slow drifts of a shared machine hit every config
        order = configs[r % len(configs) :] + configs[: r % len(configs)]
        for kind, set_size in order:
            result, model = _train_once(base, kind, set_size, cfg, seed + r, cfg["epochs"])
            result["repeat"] = r
            runs.append(result)
            models[(kind, set_size)] = model
            _log(
                f"training repeat {r + 1}/{cfg['repeats']}: {kind.upper()}"
                f"{'' if set_size is None else f' set_size={set_size}'}: {result['steps']} steps,"
                f" {result['cells']:,} cells, {result['wall_s']:.1f} s,"
                f" {result['cells_per_s']:,.0f} cells/s, CPU/wall {result['cpu_per_wall']:.2f},"
                f" load {load_average()}"
            )
    return runs, models


def training_table(runs: list[dict], cfg: dict) -> str:
    header = [
        "model",
        "set size",
        "groups/step",
        "epochs",
        "steps",
        "mean cells/set",
        "cells/step",
        "`train()` wall (s)",
        "cells/s",
        "cells/s, steps only",
        "GDE/SCVI time per cell",
        "same, steps only",
        "CPU/wall",
    ]
    rows = []
    scvi_by_repeat = {r["repeat"]: r for r in runs if r["kind"] == "scvi"}
    keys = [("scvi", None)] + [("gde", s) for s in cfg["set_sizes"]]
    for kind, set_size in keys:
        sel = [r for r in runs if r["kind"] == kind and r["set_size"] == set_size]
        if kind == "gde":
            ratios = [scvi_by_repeat[r["repeat"]]["cells_per_s"] / r["cells_per_s"] for r in sel]
            step_ratios = [
                scvi_by_repeat[r["repeat"]]["step_cells_per_s"] / r["step_cells_per_s"] for r in sel
            ]
            ratio, step_ratio = _median(ratios), _median(step_ratios)
        else:
            ratio = step_ratio = None
        steps = _median([r["steps"] for r in sel])
        cells = _median([r["cells"] for r in sel])
        rows.append(
            [
                "SCVI" if kind == "scvi" else "GDE",
                "—" if set_size is None else str(set_size),
                "—" if kind == "scvi" else str(cfg["groups_per_batch"]),
                str(cfg["epochs"]),
                _fmt(steps),
                "—" if kind == "scvi" else _fmt(_median([r["mean_cells_per_set"] for r in sel]), 1),
                _fmt(cells / steps if steps else None),
                _fmt(_median([r["wall_s"] for r in sel]), 1),
                _fmt(_median([r["cells_per_s"] for r in sel])),
                _fmt(_median([r["step_cells_per_s"] for r in sel])),
                "1 (reference)" if kind == "scvi" else f"{ratio:.2f}×",
                "1 (reference)" if kind == "scvi" else f"{step_ratio:.2f}×",
                _fmt(_median([r["cpu_per_wall"] for r in sel]), 2),
            ]
        )
    return _table(header, rows)


# ---------------------------------------------------------------------------- embedding
def tiled_adata(base, n_cells: int, n_groups: int):
    """``n_cells`` copies of the real demo cells (tiled in order) split into ``n_groups`` groups.

    The counts are the real ones, concatenated; the groups are contiguous blocks of the tiled
    cells and carry no biological meaning: this input is for throughput and memory only.
    """
    import numpy as np
    import pandas as pd
    from anndata import AnnData

    rows = np.resize(np.arange(base.n_obs), n_cells)
    sizes = [len(b) for b in np.array_split(np.arange(n_cells), n_groups)]
    names = [f"tile_group_{g}" for g in range(n_groups)]
    obs = pd.DataFrame(
        {
            GROUP_KEY: pd.Categorical(np.repeat(names, sizes), categories=names),
            BATCH_KEY: pd.Categorical(
                np.asarray(base.obs[BATCH_KEY])[rows],
                categories=base.obs[BATCH_KEY].cat.categories,
            ),
        },
        index=pd.Index([f"cell_{i}" for i in range(n_cells)]),
    )
    return AnnData(X=base.X[rows], obs=obs, var=base.var[[]].copy())


def _load_caller(kind: str, model_dir: str, base, batch_size: int):
    """Load a saved model with the demo data; return a function embedding a new AnnData."""
    import scvi

    from scgde.model import GDE

    if kind == "gde":
        model = GDE.load(model_dir, adata=base)
        return lambda adata: model.get_distribution_embedding(
            adata, key_added=None, batch_size=batch_size
        )
    model = scvi.model.SCVI.load(model_dir, adata=base)
    return lambda adata: model.get_latent_representation(adata, batch_size=batch_size)


def _embed_worker(spec: dict) -> dict:
    """Run in a fresh subprocess: the timings of both models, or the memory of one."""
    quiet()
    if spec["threads"]:
        import torch

        torch.set_num_threads(spec["threads"])
    import scgde

    base = scgde.datasets.demo()
    kinds = ("gde", "scvi") if spec["mode"] == "time" else (spec["kind"],)
    calls = {k: _load_caller(k, spec["model_dirs"][k], base, spec["batch_size"]) for k in kinds}
    # page in code and lazily initialised state on a small input first (untimed)
    warmup = tiled_adata(base, WARMUP_CELLS, spec["n_groups"])
    for call in calls.values():
        call(warmup)
    adata = tiled_adata(base, spec["n_cells"], spec["n_groups"])
    x = adata.X
    result = {
        **{k: spec[k] for k in ("mode", "n_cells", "n_groups", "batch_size")},
        "kind": spec.get("kind"),
        "input_mib": (x.data.nbytes + x.indices.nbytes + x.indptr.nbytes) / MiB,
        "n_vars": int(adata.n_vars),
    }

    if spec["mode"] == "time":
        for call in calls.values():  # first call on this AnnData registers it (untimed)
            call(adata)
        times = {k: [] for k in kinds}
        for r in range(spec["repeats"]):
            # interleave the models (alternating which goes first) so that both see the same
            # machine state; ratios are taken within a repeat
            for kind in kinds if r % 2 == 0 else kinds[::-1]:
                gc.collect()
                start = time.perf_counter()
                calls[kind](adata)
                times[kind].append(time.perf_counter() - start)
        result["times_s"] = times
        return result

    # memory: one call, the first on this AnnData (so it includes its registration)
    call = calls[spec["kind"]]
    gc.collect()
    time.sleep(0.05)
    before = _proc_status()
    hwm_ok = _reset_hwm()
    sampler = _RssSampler()
    sampler.start()
    tracemalloc.start()
    tracemalloc.reset_peak()
    call(adata)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    sampled_peak = sampler.stop()
    after = _proc_status()
    result.update(
        {
            "hwm_extra_mib": (after["VmHWM"] - before["VmRSS"]) / MiB if hwm_ok else None,
            "sampled_extra_mib": (sampled_peak - before.get("VmRSS", sampler.peak)) / MiB,
            "tracemalloc_peak_mib": traced_peak / MiB,
            "rss_before_mib": before.get("VmRSS", 0) / MiB,
        }
    )
    if spec.get("second_call") and hwm_ok:
        # a later call on the now registered AnnData: the streaming embedding alone
        gc.collect()
        before = _proc_status()
        _reset_hwm()
        call(adata)
        result["hwm_extra_2_mib"] = (_proc_status()["VmHWM"] - before["VmRSS"]) / MiB
    return result


def _run_worker(spec: dict, env_extra: dict | None = None) -> dict:
    env = dict(os.environ, **(env_extra or {}))
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--_worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    what = f"{spec['mode']} {spec.get('kind') or 'gde+scvi'} n_cells={spec['n_cells']:,}"
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"embedding worker ({what}) failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    result = json.loads(lines[-1][len("RESULT ") :])
    result["live_memory_env"] = bool(env_extra)
    if spec["mode"] == "time":
        detail = ", ".join(
            f"{k.upper()} median {_median(v):.2f} s" for k, v in result["times_s"].items()
        )
    else:
        detail = f"peak extra RSS {_fmt(result['hwm_extra_mib'], 1)} MiB"
    env_text = " ".join(f"{k}={v}" for k, v in (env_extra or {}).items())
    _log(
        f"embedding {what}{' (' + env_text + ')' if env_text else ''}: {detail} "
        f"(subprocess {time.perf_counter() - start:.0f} s)"
    )
    return result


def run_embedding(models: dict, cfg: dict, threads: int | None, workdir: str) -> list[dict]:
    """Save the trained models; per size, one timing subprocess and three memory ones."""
    model_dirs = {}
    for kind, model in models.items():
        model_dirs[kind] = os.path.join(workdir, kind)
        model.save(model_dirs[kind], overwrite=True)
    results = []
    for n_cells in cfg["embed_sizes"]:
        spec = {
            "mode": "time",
            "model_dirs": model_dirs,
            "n_cells": n_cells,
            "n_groups": cfg["embed_groups"],
            "batch_size": cfg["batch_size"],
            "repeats": cfg["repeats"],
            "threads": threads,
        }
        results.append(_run_worker(spec))
        for kind in ("gde", "scvi"):
            results.append(_run_worker(dict(spec, mode="memory", kind=kind)))
        # GDE once more with big blocks returned to the OS when freed
        results.append(
            _run_worker(dict(spec, mode="memory", kind="gde", second_call=True), LIVE_MEMORY_ENV)
        )
    return results


def _growth_note(results: list[dict]) -> str:
    """How much the live-memory peaks grow per added cell between the two largest inputs."""
    live = sorted(
        (r for r in results if r["mode"] == "memory" and r["live_memory_env"]),
        key=lambda r: r["n_cells"],
    )
    if len(live) < 2 or live[-1]["hwm_extra_mib"] is None:
        return ""
    a, b = live[-2], live[-1]
    added = b["n_cells"] - a["n_cells"]

    def per_cell(key):
        if a.get(key) is None or b.get(key) is None:
            return "n/a"
        return f"{(b[key] - a[key]) * MiB / added:,.0f}"

    if a["n_cells"] >= a["batch_size"]:
        why = (
            "Both inputs fill whole chunks, so the streamed encoder's working memory is the same; "
            "what grows is per-cell bookkeeping outside it (e.g. group labels and cell indices)."
        )
    else:
        why = (
            f"The smaller input has fewer cells than one chunk ({a['batch_size']}), so part of "
            "the growth is the chunks themselves filling up."
        )
    text = (
        f"From {a['n_cells']:,} to {b['n_cells']:,} cells ({b['n_cells'] / a['n_cells']:.0f}× "
        f"the cells, group size {a['n_cells'] // a['n_groups']:,} → "
        f"{b['n_cells'] // b['n_groups']:,}), "
        f"the GDE live-memory peak (mmap ≥64 KiB) grows by {per_cell('hwm_extra_mib')} bytes per "
        f"added cell for the first call and by {per_cell('hwm_extra_2_mib')} bytes per added cell "
        f"for a later call, against {b['n_vars'] * 4:,} bytes per cell for a dense float32 copy "
        f"of the input ({b['n_vars']} genes). {why}"
    )
    return textwrap.fill(text, width=96, initial_indent="- ", subsequent_indent="  ") + "\n"


def embedding_table(results: list[dict]) -> tuple[str, float | None]:
    """The markdown table and the largest |sampled − kernel| RSS peak difference (MiB)."""
    header = [
        "cells",
        "groups × cells/group",
        "input X, CSR (dense) MiB",
        "GDE time (s)",
        "GDE cells/s",
        "GDE peak extra RSS (MiB)",
        "GDE peak extra RSS, mmap ≥64 KiB (MiB)",
        "same, later call (MiB)",
        "GDE tracemalloc peak (MiB)",
        "SCVI latent time (s)",
        "SCVI cells/s",
        "SCVI peak extra RSS (MiB)",
        "GDE/SCVI cells/s",
    ]
    diffs = [
        abs(r["sampled_extra_mib"] - r["hwm_extra_mib"])
        for r in results
        if r["mode"] == "memory" and r["hwm_extra_mib"] is not None
    ]

    def pick(n_cells, mode, kind=None, live=False):
        return next(
            r
            for r in results
            if r["n_cells"] == n_cells
            and r["mode"] == mode
            and r["kind"] == kind
            and r["live_memory_env"] == live
        )

    def peak(r):
        return r["hwm_extra_mib"] if r["hwm_extra_mib"] is not None else r["sampled_extra_mib"]

    rows = []
    for n_cells in sorted({r["n_cells"] for r in results}):
        timing = pick(n_cells, "time")
        gde, scv = pick(n_cells, "memory", "gde"), pick(n_cells, "memory", "scvi")
        live = pick(n_cells, "memory", "gde", live=True)
        t_gde, t_scvi = timing["times_s"]["gde"], timing["times_s"]["scvi"]
        ratio = _median([s / g for g, s in zip(t_gde, t_scvi, strict=True)])
        dense_mib = n_cells * timing["n_vars"] * 4 / MiB
        rows.append(
            [
                f"{n_cells:,}",
                f"{timing['n_groups']} × {n_cells // timing['n_groups']:,}",
                f"{timing['input_mib']:,.1f} ({dense_mib:,.0f})",
                _fmt(_median(t_gde), 2),
                _fmt(n_cells / _median(t_gde)),
                _fmt(peak(gde), 1),
                _fmt(peak(live), 1),
                _fmt(live.get("hwm_extra_2_mib"), 1),
                _fmt(gde["tracemalloc_peak_mib"], 1),
                _fmt(_median(t_scvi), 2),
                _fmt(n_cells / _median(t_scvi)),
                _fmt(peak(scv), 1),
                f"{ratio:.2f}",
            ]
        )
    return _table(header, rows), (max(diffs) if diffs else None)


# --------------------------------------------------------------------------------- main
def _parse(argv=None):
    parser = argparse.ArgumentParser(
        description="Training and embedding throughput of scgde GDE vs scvi-tools SCVI (CPU)."
    )
    parser.add_argument("--quick", action="store_true", help="fast smoke profile (~1 min)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="repeats per measurement (default 3; quick 1)"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="max_epochs of every training run (default 10; quick 1)",
    )
    parser.add_argument(
        "--embed-sizes",
        type=lambda s: tuple(int(v) for v in s.split(",")),
        default=None,
        help="comma-separated cell counts of the tiled embedding inputs "
        "(default 2000,20000,200000; quick 2000,20000)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)"
    )
    parser.add_argument("--seed", type=int, default=0, help="scvi.settings.seed (+ repeat)")
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"markdown file (default {DEFAULT_OUTPUT.relative_to(REPO)})",
    )
    parser.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    if args._worker is not None:
        print("RESULT " + json.dumps(_embed_worker(json.loads(args._worker))), flush=True)
        return 0

    t_start = time.perf_counter()
    quiet()
    sys.path.insert(0, str(HERE))
    from _machine import load_average, machine_info

    load_start = load_average()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import scvi

    import scgde

    profile = "quick" if args.quick else "default"
    cfg = dict(PROFILES[profile])
    for key in ("repeats", "epochs", "embed_sizes"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if cfg["repeats"] < 1 or cfg["epochs"] < 1:
        raise SystemExit("--repeats and --epochs must be >= 1")
    scvi.settings.seed = args.seed
    base = scgde.datasets.demo()
    _log(f"profile {profile}: {cfg}")

    runs, models = run_training(base, cfg, args.seed)
    load_embed = load_average()
    train_md = training_table(runs, cfg)
    print("\n## Training throughput\n\n" + train_md + "\n", flush=True)

    default_set = 128 if 128 in cfg["set_sizes"] else cfg["set_sizes"][0]
    with tempfile.TemporaryDirectory(prefix="scgde-bench-") as workdir:
        embed = run_embedding(
            {"gde": models[("gde", default_set)], "scvi": models[("scvi", None)]},
            cfg,
            args.threads,
            workdir,
        )
    load_end = load_average()
    embed_md, sampler_diff = embedding_table(embed)
    growth = _growth_note(embed)
    threads = torch.get_num_threads()
    cpu_use = _median([r["cpu_per_wall"] for r in runs])
    contention = ""
    if threads > 1 and cpu_use < 0.75 * threads:
        contention = (
            f"> **Warning: CPU contention.** The training runs used a median {cpu_use:.2f} CPUs of "
            f"the {threads} torch threads (CPU/wall column): other processes held the CPUs, and "
            "torch's threads wait for each other, so these timings can be many times slower "
            "than on an idle machine. Rerun when the machine is idle, or with `--threads 1`.\n\n"
        )
        print("\n" + contention.strip(), flush=True)

    print("\n## Embedding throughput and memory\n\n" + embed_md + "\n", flush=True)

    runtime = time.perf_counter() - t_start
    machine = machine_info()
    machine["load average (1, 5, 15 min): start / training done / end"] = (
        f"{load_start} / {load_embed} / {load_end}"
    )
    command = "python benchmarks/throughput.py" + (
        " " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""
    )
    n_train_gde = next(r["n_train"] for r in runs if r["kind"] == "gde")
    n_train_scvi = next(r["n_train"] for r in runs if r["kind"] == "scvi")
    doc = f"""# Throughput: scgde GDE vs scvi-tools SCVI

Generated by `{command}` (profile **{profile}**) in {runtime / 60:.1f} min.

{contention}All numbers are **medians over {cfg["repeats"]} repeat(s)**. The machine is shared
and noisy (other jobs may run at the same time; see the load averages and the CPU/wall
column): compare rows of the same run with each other, and treat absolute numbers as
indicative only.

## Machine

{_table(["", ""], [[k, v] for k, v in machine.items()])}

## Settings

- Data: `scgde.datasets.demo()`, real raw counts, {base.n_obs:,} cells × {base.n_vars} genes,
  {base.obs[GROUP_KEY].nunique()} groups (`obs["{GROUP_KEY}"]`), `batch_key="{BATCH_KEY}"`.
- Both models: `train_size={TRAIN_SIZE}`, `enable_progress_bar=False`, `max_epochs={cfg["epochs"]}`,
  CPU, `scvi.settings.seed = {args.seed} + repeat`; every run trains a fresh model.
  One untimed warm-up training of each model runs first.
- GDE: default sizes (`GDE(adata)`: n_latent 32, deep-set encoder, CVAE generator),
  `groups_per_batch={cfg["groups_per_batch"]}`, set sizes {", ".join(map(str, cfg["set_sizes"]))};
  validation every epoch on its held-out groups (as `GDE.train` always does).
- SCVI: `n_latent=10, n_hidden=128` (otherwise defaults, minibatch 128),
  `check_val_every_n_epoch=1` so that it validates every epoch like GDE.
- Embedding: batch_size {cfg["batch_size"]}, {cfg["embed_groups"]} groups per input, models from
  the last training repeat (GDE with set size {default_set}).

## 1. Training throughput

{train_md}

- **cells/s** = training cells processed / wall time of `model.train(...)`. Cells are counted
  from every training minibatch (a Lightning callback); for GDE this equals
  steps × groups_per_batch × mean cells per set, with steps = `model.trainer.global_step`;
  for SCVI it equals epochs × training cells ({n_train_scvi:,}). The wall time includes
  Lightning's set-up, the per-epoch validation and data loading; model construction and
  `setup_anndata` are not timed. GDE trains on {n_train_gde:,} cells of its training groups.
- **steps only**: the same cells divided by the summed time of the optimisation steps alone
  (`on_train_batch_start` → `on_train_batch_end`: forward, backward, optimiser), excluding
  data loading, validation and set-up.
- **CPU/wall**: process CPU time / wall time of `train()` (all torch threads together; at most
  the number of torch threads). Well below the thread count means the process waited for
  CPUs that other jobs held, so its times are inflated.
- **GDE/SCVI time per cell**: (GDE s/cell) / (SCVI s/cell), computed within each repeat, then
  the median; above 1 means GDE spends more time per cell than SCVI.
- SCVI steps are minibatches of 128 cells; a GDE step holds groups_per_batch sets (see
  cells/step), and larger steps use a CPU better. Demo groups have ~120 cells, so set sizes
  128 and 512 take (nearly) whole groups and a step of set size 512 holds about as many cells
  as one of 128. An epoch draws ceil(training cells / set size) sets (at least
  groups_per_batch), so at set size 512 an epoch is a single step and fixed per-run and
  per-epoch costs weigh most.

## 2. Embedding throughput and memory

{embed_md}

- Inputs are **synthetic in size only**: the real demo counts concatenated (tiled) to the given
  number of cells and cut into {cfg["embed_groups"]} contiguous groups, with the real batch of each
  copied cell. The groups have no biological meaning; the group size grows with the input.
- GDE: `get_distribution_embedding(adata, key_added=None, batch_size={cfg["batch_size"]})`
  (the embedding only; nothing is written to the AnnData), which streams every group's cells
  in chunks of {cfg["batch_size"]} cells through the encoder, one pass per pooling level.
  SCVI: `get_latent_representation(adata, batch_size={cfg["batch_size"]})` on the same AnnData;
  its output has one row per cell. Both models were loaded with the demo data and get the
  tiled AnnData as new data, so each call includes scvi-tools' AnnData validation.
- **time / cells/s**: median wall time of {cfg["repeats"]} call(s) per model, measured in one
  subprocess per size that holds both models and alternates them call by call, after an
  untimed call of each on a {WARMUP_CELLS:,}-cell warm-up input and one on the same AnnData
  (which registers it). **GDE/SCVI cells/s**: the ratio within each repeat, then the median;
  above 1 means GDE embeds faster than SCVI computes its latent. GDE reads every cell once
  per pooling level of its encoder (three passes with the defaults), SCVI once.
- **peak extra RSS**: every (model, size) is measured in its own fresh subprocess, untimed.
  For its one call on the input (the first on that AnnData, so it includes its registration),
  the kernel's peak-RSS mark is reset (`/proc/self/clear_refs`) and the extra memory is VmHWM
  after the call − VmRSS before it: exact, not sampled. A thread sampling RSS every
  {RSS_SAMPLE_S * 1000:.0f} ms agreed within {_fmt(sampler_diff, 1)} MiB. The input AnnData is
  built before and is *not* included (its X size is listed, with what the same cells would
  take as a dense float32 array).
- This RSS is what the process grows by with the default glibc allocator, which keeps freed
  blocks for reuse (its mmap threshold rises after frees), so it also counts freed-but-retained
  memory and fragmentation. **mmap ≥64 KiB**: the same GDE measurement in another fresh
  subprocess started with `MALLOC_MMAP_THRESHOLD_=65536`, so large blocks are returned to the OS
  when freed and the peak follows the memory actually live at once. **later call**: in that
  subprocess, a second call on the same, now registered AnnData: the streamed embedding
  without the one-off validation and registration of a new AnnData.
{growth}- **tracemalloc peak**: Python/NumPy allocations during that call (torch tensors
  are not traced).
- Memory the warm-up call left in the allocator's free lists can be reused unseen; it is
  bounded by the warm-up's own peak on {WARMUP_CELLS:,} cells.
"""
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(doc)
    print(f"\nTotal runtime: {runtime / 60:.1f} min. Written to {args.output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
