"""Execute the tutorial notebooks so they cannot rot."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TUTORIALS = Path(__file__).parents[1] / "tutorials"


def _outputs(nb) -> str:
    return "\n".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
    )


@pytest.mark.parametrize("name", ["01_embed_samples.ipynb"])
def test_tutorial_runs(name, tmp_path):
    nb = nbformat.read(TUTORIALS / name, as_version=4)
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    text = _outputs(nb)
    assert "identical after reload: True" in text
    assert "nearest half B is its own sample's" in text
