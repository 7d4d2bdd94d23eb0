"""The ``scgde embed`` command line and atomic writing."""

from pathlib import Path

import anndata as ad
import numpy as np
import pytest

import scgde
from scgde._io import write_atomic
from scgde.cli import main


def test_embed_input_file_writes_three_outputs(tmp_path):
    adata = scgde.datasets.demo()
    adata = adata[adata.obs["sample"].isin(adata.obs["sample"].cat.categories[:8]), :100].copy()
    source = tmp_path / "in.h5ad"
    adata.write_h5ad(source)
    before = source.read_bytes()
    out = tmp_path / "out" / "result.h5ad"
    code = main(
        [
            "embed",
            str(source),
            "--group-key",
            "sample",
            "--batch-key",
            "batch",
            "--output",
            str(out),
            "--max-epochs",
            "2",
            "--n-latent",
            "4",
            "--set-size",
            "16",
        ]
    )
    assert code == 0
    assert source.read_bytes() == before  # the input file is never touched
    annotated = ad.read_h5ad(out)
    assert annotated.obsm["X_gde"].shape == (adata.n_obs, 4)
    assert not any(c.startswith("_scvi") for c in annotated.obs.columns)
    groups = ad.read_h5ad(out.with_name("result_groups.h5ad"))
    assert groups.n_obs == 8 and "condition" in groups.obs
    png = out.with_name("result_groups_umap.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "result.h5ad",
        "result_groups.h5ad",
        "result_groups_umap.png",
    ]  # no temporary files left behind


def test_embed_reports_a_missing_group_column(tmp_path, capsys):
    adata = scgde.datasets.demo()[:200, :50].copy()
    source = tmp_path / "in.h5ad"
    adata.write_h5ad(source)
    code = main(
        ["embed", str(source), "--group-key", "patient", "--output", str(tmp_path / "o.h5ad")]
    )
    assert code == 2
    assert "patient" in capsys.readouterr().err
    assert not (tmp_path / "o.h5ad").exists()


def test_embed_batch_correction_trains_with_the_penalty(tmp_path, capsys):
    adata = scgde.datasets.demo()
    per_batch = adata.obs.groupby("batch", observed=True)["sample"].unique()
    samples = [s for names in per_batch for s in sorted(names)[:3]]  # 3 samples of each batch
    adata = adata[adata.obs["sample"].isin(samples), :60].copy()
    source = tmp_path / "in.h5ad"
    adata.write_h5ad(source)
    common = ["embed", str(source), "--group-key", "sample", "--max-epochs", "2"]
    common += ["--n-latent", "4", "--set-size", "16", "--batch-correction", "hsic"]
    # without a batch there is nothing to correct: a clear error, nothing written
    assert main([*common, "--output", str(tmp_path / "none.h5ad")]) == 2
    assert "batch" in capsys.readouterr().err and not (tmp_path / "none.h5ad").exists()
    model_dir = tmp_path / "model"
    out = tmp_path / "out.h5ad"
    code = main(
        [*common, "--batch-key", "batch", "--output", str(out)] + ["--save-model", str(model_dir)]
    )
    assert code == 0
    model = scgde.model.GDE.load(str(model_dir), adata=ad.read_h5ad(source))
    assert isinstance(model.module.batch_penalty, scgde.nn.BatchHSIC)


def test_embed_needs_input_or_demo(tmp_path):
    with pytest.raises(SystemExit):
        main(["embed", "--output", str(tmp_path / "o.h5ad")])


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("old")

    def failing(tmp: Path):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(path, failing)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]
    write_atomic(path, lambda tmp: tmp.write_text("new"))
    assert path.read_text() == "new"
    np.testing.assert_equal(sorted(p.name for p in tmp_path.iterdir()), ["x.txt"])
