"""Short GPU check: train on the GPU, and compare GPU and CPU results of the same model.

Run on a machine with a CUDA GPU: ``python benchmarks/gpu_check.py [--output PATH]``. It
trains GDE on the demo data on the GPU, checks that the embedding computed on the GPU equals
the one computed on the CPU from the same weights (float32 tolerance), that sampling works on
the GPU, and prints training throughput on both devices side by side. Exits non-zero when a
check fails. Takes about a minute on a data-centre GPU.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scvi
import torch

import scgde


def _train_seconds(accelerator: str, max_epochs: int) -> tuple[scgde.model.GDE, float, int]:
    adata = scgde.datasets.demo()
    scgde.model.GDE.setup_anndata(adata, group_key="sample", batch_key="batch")
    model = scgde.model.GDE(adata)
    start = time.perf_counter()
    model.train(max_epochs=max_epochs, accelerator=accelerator, enable_progress_bar=False)
    return model, time.perf_counter() - start, model.trainer.global_step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="benchmarks/results/gpu_check.md")
    parser.add_argument("--max-epochs", type=int, default=50)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("No CUDA GPU visible to torch: nothing to check.")
        return 1
    scvi.settings.seed = 0
    gpu_model, gpu_s, gpu_steps = _train_seconds("gpu", args.max_epochs)
    checks = {"trained on cuda": next(gpu_model.module.parameters()).is_cuda}
    on_gpu = gpu_model.get_distribution_embedding(key_added=None, batch_size=1000)
    gpu_model.to_device("cpu")
    on_cpu = gpu_model.get_distribution_embedding(key_added=None, batch_size=1000)
    diff = float(np.abs(on_gpu.to_numpy() - on_cpu.to_numpy()).max())
    checks[f"GPU vs CPU embedding max |diff| = {diff:.2e} < 1e-3"] = diff < 1e-3
    gpu_model.to_device("cuda")
    cells = gpu_model.sample(n_cells=50, seed=0)
    checks["sampling on cuda gives counts"] = bool(
        (cells.X.data >= 0).all() and (cells.X.data == np.round(cells.X.data)).all()
    )
    _, cpu_s, cpu_steps = _train_seconds("cpu", max(2, args.max_epochs // 10))
    lines = [
        "# GPU check",
        "",
        f"- GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; "
        f"scvi-tools {scvi.__version__}; scgde {scgde.__version__}; {platform.platform()}",
        "",
        "| device | steps | seconds | steps/s |",
        "|---|---|---|---|",
        f"| cuda | {gpu_steps} | {gpu_s:.1f} | {gpu_steps / gpu_s:.1f} |",
        f"| cpu | {cpu_steps} | {cpu_s:.1f} | {cpu_steps / cpu_s:.1f} |",
        "",
        *[f"- [{'x' if ok else ' '}] {name}" for name, ok in checks.items()],
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text + "\n")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
