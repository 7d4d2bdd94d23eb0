"""Tests of scgde.tl.group_distances on hand-built AnnData objects (no model needed)."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.spatial.distance import cdist

from scgde import tl
from scgde.metrics import energy_distance


def _cells(seed=0, sizes=(30, 12, 25, 7)):
    """Cells of a few groups (shifted Gaussians) with an embedding table as the model writes."""
    rng = np.random.default_rng(seed)
    names = [f"s{i}" for i in range(len(sizes))]
    group = np.repeat(names, sizes)
    order = rng.permutation(len(group))  # cells of a group are not contiguous
    group = group[order]
    shift = {name: 2.0 * i for i, name in enumerate(names)}
    pca = rng.normal(size=(len(group), 5)) + np.array([shift[g] for g in group])[:, None]
    obs = pd.DataFrame(
        {
            "sample": pd.Categorical(group, categories=names[::-1]),  # unsorted categories
            "donor": np.where(np.isin(group, names[:2]), "d1", "d2"),
        },
        index=[f"c{i}" for i in range(len(group))],
    )
    adata = ad.AnnData(X=sparse.csr_matrix(pca.astype(np.float32)), obs=obs)
    adata.obsm["X_pca"] = pca
    table = pd.DataFrame(
        rng.normal(size=(len(names), 3)),
        index=pd.Index(names[::-1], name="group"),
        columns=["gde_0", "gde_1", "gde_2"],
    )
    adata.uns["X_gde"] = table
    adata.obsm["X_gde"] = table.loc[group].to_numpy(np.float32)
    adata.uns["gde"] = {"X_gde": {"group_key": "sample", "n_groups": len(names)}}
    return adata


def _snapshot(adata):
    return adata.copy()


def _assert_same(before, after, ignore_uns=()):
    assert before.obs.equals(after.obs)
    assert before.var.equals(after.var)
    assert (abs(before.X - after.X)).sum() == 0
    assert set(before.obsm) == set(after.obsm)
    for k in before.obsm:
        np.testing.assert_array_equal(before.obsm[k], after.obsm[k])
    assert set(before.uns) == set(after.uns) - set(ignore_uns)
    for k, v in before.uns.items():
        if isinstance(v, pd.DataFrame):
            pd.testing.assert_frame_equal(v, after.uns[k])
        else:
            assert v == after.uns[k]


@pytest.fixture
def cells():
    return _cells()


# ------------------------------------------------------------------------------ euclidean
def test_euclidean_matches_direct_computation_and_writes_only_its_key(cells):
    before = _snapshot(cells)
    d = tl.group_distances(cells)
    table = cells.uns["X_gde"]
    expected = cdist(table.to_numpy(), table.to_numpy())
    np.testing.assert_allclose(d.to_numpy(), expected, atol=1e-12)
    assert list(d.index) == list(table.index) == list(d.columns)
    assert d is cells.uns["X_gde_distances_euclidean"]
    _assert_same(before, cells, ignore_uns={"X_gde_distances_euclidean"})


def test_result_is_symmetric_with_zero_diagonal(cells):
    for method in ("euclidean", "energy"):
        d = tl.group_distances(cells, method=method).to_numpy()
        np.testing.assert_array_equal(d, d.T)
        np.testing.assert_array_equal(np.diag(d), 0.0)
        assert (d >= 0).all()


def test_key_and_key_added(cells):
    cells.uns["other"] = cells.uns.pop("X_gde")
    d = tl.group_distances(cells, key="other")
    assert "other_distances_euclidean" in cells.uns
    tl.group_distances(cells, key="other", key_added="mine")
    pd.testing.assert_frame_equal(cells.uns["mine"], d)


# --------------------------------------------------------------------------------- energy
def test_energy_matches_metrics_energy_distance(cells):
    before = _snapshot(cells)
    d = tl.group_distances(cells, method="energy", max_cells_per_group=None)
    groups = sorted(cells.obs["sample"].cat.categories)[::-1]  # categories order is kept
    assert list(d.index) == list(cells.obs["sample"].cat.categories) == groups
    x = cells.obsm["X_pca"]
    labels = cells.obs["sample"].to_numpy()
    for i, a in enumerate(d.index):
        for j, b in enumerate(d.index):
            expected = 0.0 if i == j else energy_distance(x[labels == a], x[labels == b])
            assert d.iloc[i, j] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert "X_gde_distances_energy" in cells.uns
    _assert_same(before, cells, ignore_uns={"X_gde_distances_energy"})


def test_energy_subsampling_is_seeded_and_bounded(cells):
    full = tl.group_distances(cells, method="energy", max_cells_per_group=None)
    # a limit above every group's size changes nothing
    same = tl.group_distances(cells, method="energy", max_cells_per_group=30)
    pd.testing.assert_frame_equal(full, same)
    a = tl.group_distances(cells, method="energy", max_cells_per_group=8, seed=1)
    b = tl.group_distances(cells, method="energy", max_cells_per_group=8, seed=1)
    c = tl.group_distances(cells, method="energy", max_cells_per_group=8, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a.to_numpy(), c.to_numpy())


def test_energy_subsample_equals_energy_of_some_subsets():
    """With one group subsampled, the value is the energy distance to one of its subsets."""
    adata = _cells(sizes=(5, 3))
    d = tl.group_distances(adata, method="energy", max_cells_per_group=4, seed=0)
    x = adata.obsm["X_pca"]
    labels = adata.obs["sample"].to_numpy()
    x0, x1 = x[labels == "s0"], x[labels == "s1"]
    candidates = [energy_distance(np.delete(x0, i, axis=0), x1) for i in range(5)]
    assert min(abs(d.loc["s0", "s1"] - c) for c in candidates) < 1e-9


def test_energy_use_rep_x_sparse_and_explicit_group_key(cells):
    dense = tl.group_distances(cells, method="energy", use_rep="X_pca")
    from_x = tl.group_distances(cells, method="energy", use_rep="X", key_added="from_x")
    np.testing.assert_allclose(dense.to_numpy(), from_x.to_numpy(), rtol=1e-5, atol=1e-6)
    donors = tl.group_distances(cells, method="energy", group_key="donor")
    assert list(donors.index) == ["d1", "d2"]


def test_energy_group_key_list_uses_model_labels(cells):
    cells.uns["gde"]["X_gde"]["group_key"] = ["donor", "sample"]
    d = tl.group_distances(cells, method="energy")
    assert "d1 | s0" in d.index and "d2 | s3" in d.index
    assert len(d) == 4


def test_energy_uses_group_key_from_settings(cells):
    cells.uns["gde"]["X_gde"]["group_key"] = "donor"
    assert list(tl.group_distances(cells, method="energy").index) == ["d1", "d2"]
    # the settings of each key are its own
    cells.uns["X_other"] = cells.uns["X_gde"]
    cells.uns["gde"]["X_other"] = {"group_key": "sample"}
    other = tl.group_distances(cells, key="X_other", method="energy")
    assert sorted(other.index) == ["s0", "s1", "s2", "s3"]
    # the flat settings of scgde 0.1 are still read
    cells.uns["gde"] = {"key_added": "X_gde", "group_key": "donor"}
    assert list(tl.group_distances(cells, method="energy").index) == ["d1", "d2"]


# --------------------------------------------------------------------------------- errors
def test_errors_and_nothing_written_on_failure(cells):
    before = _snapshot(cells)
    with pytest.raises(ValueError, match="Unknown method"):
        tl.group_distances(cells, method="cosine")
    with pytest.raises(KeyError, match="get_distribution_embedding"):
        tl.group_distances(cells, key="missing")
    with pytest.raises(ValueError, match="use_rep"):
        tl.group_distances(cells, use_rep="X_pca")
    with pytest.raises(KeyError, match="sc.pp.pca"):
        tl.group_distances(_without_pca(cells), method="energy")
    with pytest.raises(KeyError, match="X_umap"):
        tl.group_distances(cells, method="energy", use_rep="X_umap")
    with pytest.raises(KeyError, match="nope"):
        tl.group_distances(cells, method="energy", group_key="nope")
    for bad, error in ((0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="max_cells_per_group"):
            tl.group_distances(cells, method="energy", max_cells_per_group=bad)
    _assert_same(before, cells)


def _without_pca(adata):
    out = adata.copy()
    del out.obsm["X_pca"]
    return out


def test_error_without_recorded_group_key(cells):
    del cells.uns["gde"]
    with pytest.raises(ValueError, match="group_key"):
        tl.group_distances(cells, method="energy")


def test_error_for_bad_table_or_values(cells):
    cells.uns["X_gde"] = cells.uns["X_gde"].to_numpy()
    with pytest.raises(ValueError, match="DataFrame"):
        tl.group_distances(cells)
    cells = _cells()
    cells.uns["X_gde"].iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tl.group_distances(cells)
    cells = _cells()
    cells.obsm["X_pca"][0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        tl.group_distances(cells, method="energy", max_cells_per_group=None)
