"""Training in several processes (Lightning DDP on CPU, gloo) learns what one process learns."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy.spatial.distance import pdist

SCRIPT = Path(__file__).with_name("_ddp_training.py")


def _train(tmp_path, processes: int, seed: int) -> dict:
    output = tmp_path / f"p{processes}_s{seed}.npz"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--processes", str(processes), "--seed", str(seed)]
        + ["--output", str(output)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return dict(np.load(output))


def test_two_processes_train_like_one_with_the_same_sets_per_step(tmp_path):
    """Two processes of 4 sets per step against one of 8: the same steps and learning rate
    (the recipe follows the sets of all processes), an ELBO equal within its noise, and group
    distances at least as close to the one-process run's as another seed's are."""
    one = _train(tmp_path, 1, seed=0)
    two = _train(tmp_path, 2, seed=0)
    other_seed = _train(tmp_path, 1, seed=1)
    assert int(two["processes"]) == 2 and int(one["processes"]) == 1
    assert int(two["steps"]) == int(one["steps"])
    assert float(two["lr"]) == float(one["lr"])
    # the last 10 epochs' training ELBO: equal means within 4 standard errors
    se = np.hypot(*(run["elbo"].std(ddof=1) / np.sqrt(run["elbo"].size) for run in (one, two)))
    assert abs(two["elbo"].mean() - one["elbo"].mean()) <= 4 * se
    distances = {
        name: pdist(run["z"]) for name, run in [("one", one), ("two", two), ("seed", other_seed)]
    }
    same_recipe = np.corrcoef(distances["one"], distances["two"])[0, 1]
    another_seed = np.corrcoef(distances["one"], distances["seed"])[0, 1]
    assert same_recipe >= another_seed
