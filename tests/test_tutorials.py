"""Execute the tutorial notebooks so they cannot rot."""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TUTORIALS = Path(__file__).parents[1] / "tutorials"


def _outputs(nb) -> str:
    return "\n".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
    )


@pytest.mark.parametrize("name", ["01_embed_samples.ipynb", "02_clones.ipynb"])
def test_tutorial_runs(name, tmp_path):
    nb = nbformat.read(TUTORIALS / name, as_version=4)
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    text = _outputs(nb)
    if name == "01_embed_samples.ipynb":
        assert "identical after reload: True" in text
        assert "nearest half B is its own sample's" in text
    else:
        _check_clones(text)


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"not printed: {pattern!r}"
    return float(match.group(1))


def _check_clones(text: str) -> None:
    assert "SIMULATED data from scgde.datasets.lineage_sets" in text
    assert "240 sets embedded; early and late matrices: (80, 8), (80, 8)" in text
    true_mi = _number(r"True MI between day-2 and day-6 clone states: ([\d.]+) nats", text)
    assert true_mi > 3  # -5/2 log(1 - 0.9^2) = 4.15 nats
    # each clone's own late embedding is the nearest far more often than chance (1/80)
    rate = _number(r"Nearest day-6 embedding is the clone's own for ([\d.]+)% of clones", text)
    assert rate >= 5 * 100 / 80
    # fate memory shows as MI well above both controls (both have true MI 0)
    mi = _number(r"fate_strength=0\.9: (-?[\d.]+) nats", text)
    shuffled = _number(r"MI with shuffled clone pairing: (-?[\d.]+) ±", text)
    control = _number(r"fate_strength=0 control: (-?[\d.]+) nats", text)
    assert mi > 0.4
    assert mi > shuffled + 0.3 and mi > control + 0.3
    assert abs(shuffled) < 0.2 and abs(control) < 0.3
    # the embedding MI is a lower-bound estimate of the clone-state MI
    assert mi < true_mi
