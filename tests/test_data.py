"""Unit tests of scgde.data: group labels, value checks, set sampling and group-wise splitting."""

import math
from collections import Counter

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

import scgde
from scgde._constants import BATCH_KEY, SET_IDS_KEY, X_KEY
from scgde.data import (
    GroupDataSplitter,
    GroupSetSampler,
    RegisteredData,
    cells_of_groups,
    check_values,
    group_labels,
    sets_per_epoch,
)


# ------------------------------------------------------------------------------ group labels
def test_group_labels_single_column():
    obs = pd.DataFrame({"g": ["b", "a", "b", "c"]})
    labels = group_labels(obs, "g")
    assert isinstance(labels, pd.Categorical)
    assert list(labels) == ["b", "a", "b", "c"]
    assert list(labels.categories) == ["a", "b", "c"]


def test_group_labels_non_string_column_gives_string_labels():
    labels = group_labels(pd.DataFrame({"g": [3, 1, 3]}), "g")
    assert list(labels) == ["3", "1", "3"]


def test_group_labels_list_of_columns_combines_labels():
    obs = pd.DataFrame({"donor": ["a", "a", "b", "b"], "time": ["x", "y", "x", "x"]})
    labels = group_labels(obs, ["donor", "time"])
    assert list(labels) == ["a | x", "a | y", "b | x", "b | x"]
    assert list(labels.categories) == ["a | x", "a | y", "b | x"]
    # a list with one column is the same as the column
    assert list(group_labels(obs, ["donor"])) == list(group_labels(obs, "donor"))


def test_group_labels_many_categorical_combinations_do_not_overflow():
    # categorical codes are int8 for < 128 categories; 80 x 3 combinations exceed that range
    clones = [f"c{i:02d}" for i in range(80)]
    obs = pd.DataFrame(
        {
            "clone": pd.Categorical(np.repeat(clones, 3), categories=clones),
            "time": pd.Categorical(np.tile([2, 4, 6], 80), ordered=True),
        }
    )
    labels = group_labels(obs, ["clone", "time"])
    assert len(labels.categories) == 240
    assert labels[0] == "c00 | 2" and labels[-1] == "c79 | 6"
    expected = obs["clone"].astype(str) + " | " + obs["time"].astype(str)
    assert list(labels) == list(expected)


def test_group_labels_missing_column_raises_keyerror_naming_it():
    obs = pd.DataFrame({"donor": ["a"], "time": ["x"]})
    with pytest.raises(KeyError, match="patient"):
        group_labels(obs, "patient")
    with pytest.raises(KeyError, match="nothere"):
        group_labels(obs, ["donor", "nothere"])


@pytest.mark.parametrize("missing", [np.nan, None])
def test_group_labels_missing_label_raises(missing):
    obs = pd.DataFrame({"g": ["a", missing, "b"], "h": ["x", "y", "z"]})
    with pytest.raises(ValueError, match="missing"):
        group_labels(obs, "g")
    with pytest.raises(ValueError, match="missing"):
        group_labels(obs, ["h", "g"])
    obs_cat = obs.assign(g=pd.Categorical(obs["g"]))
    with pytest.raises(ValueError, match="missing"):
        group_labels(obs_cat, "g")


def test_group_labels_removes_unused_categories():
    column = pd.Categorical(["a", "c", "a"], categories=["a", "b", "c", "d"])
    labels = group_labels(pd.DataFrame({"g": column}), "g")
    assert list(labels.categories) == ["a", "c"]
    # also after subsetting an AnnData-like obs
    obs = pd.DataFrame({"g": pd.Categorical(["a", "b", "c"]), "h": ["x", "x", "y"]})
    sub = obs.iloc[[0, 2]]
    assert list(group_labels(sub, "g").categories) == ["a", "c"]
    assert list(group_labels(sub, ["g", "h"]).categories) == ["a | x", "c | y"]


@pytest.mark.parametrize(
    "bad",
    [
        [],
        ["g", 3],
        3,
    ],
)
def test_group_labels_rejects_bad_group_key(bad):
    with pytest.raises(ValueError, match="group_key"):
        group_labels(pd.DataFrame({"g": ["a"]}), bad)


# --------------------------------------------------------------------------- cells_of_groups
def test_cells_of_groups_all_and_selected_in_requested_order():
    labels = pd.Categorical(["b", "a", "c", "b", "a"])
    names, cells, ids = cells_of_groups(labels, None)
    assert names == ["a", "b", "c"]
    np.testing.assert_array_equal(cells, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(ids, [1, 0, 2, 1, 0])

    names, cells, ids = cells_of_groups(labels, ["c", "a"])
    assert names == ["c", "a"]
    np.testing.assert_array_equal(cells, [1, 2, 4])  # increasing cell order
    np.testing.assert_array_equal(ids, [1, 0, 1])  # position of the group in `names`
    assert ids.dtype == np.int64

    names, cells, ids = cells_of_groups(labels, "b")  # a single name
    assert names == ["b"]
    np.testing.assert_array_equal(cells, [0, 3])
    np.testing.assert_array_equal(ids, [0, 0])


def test_cells_of_groups_errors():
    labels = pd.Categorical(["b", "a", "b"])
    with pytest.raises(ValueError, match="'zz'"):
        cells_of_groups(labels, ["a", "zz"])
    with pytest.raises(ValueError, match="duplicates"):
        cells_of_groups(labels, ["a", "b", "a"])
    with pytest.raises(ValueError, match="no cells"):
        cells_of_groups(pd.Categorical([]), None)


# ------------------------------------------------------------------------------ check_values
def _counts(fmt):
    x = np.array([[0, 1, 2], [3, 0, 5], [0, 0, 7]])
    return {
        "dense_float": x.astype(np.float32),
        "dense_int": x.astype(np.int64),
        "csr": sparse.csr_matrix(x.astype(np.float32)),
        "csc": sparse.csc_matrix(x.astype(np.float64)),
    }[fmt]


FORMATS = ["dense_float", "dense_int", "csr", "csc"]


def _with_value(fmt, value):
    """The count matrix of ``fmt`` with entry (1, 2) (stored in every format) set to ``value``."""
    x = _counts(fmt)
    if fmt == "dense_int":
        x = x.copy()
    else:
        x = x.astype(np.float64)
    x[1, 2] = value
    return x


@pytest.mark.parametrize("fmt", FORMATS)
def test_check_values_accepts_counts(fmt):
    check_values(_counts(fmt), "X", require_counts=True, likelihood="nb")
    check_values(_counts(fmt), "X", require_counts=False, likelihood="gaussian")


@pytest.mark.parametrize("fmt", ["dense_float", "csr", "csc"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("require_counts", [True, False])
def test_check_values_rejects_nan_and_inf(fmt, value, require_counts):
    with pytest.raises(ValueError, match="NaN"):
        check_values(_with_value(fmt, value), "X", require_counts=require_counts, likelihood="nb")


@pytest.mark.parametrize("fmt", FORMATS)
def test_check_values_negative(fmt):
    x = _with_value(fmt, -2)
    with pytest.raises(ValueError, match="negative"):
        check_values(x, "adata.layers['counts']", require_counts=True, likelihood="poisson")
    check_values(x, "X", require_counts=False, likelihood="gaussian")


@pytest.mark.parametrize("fmt", ["dense_float", "csr", "csc"])
def test_check_values_non_integer(fmt):
    x = _with_value(fmt, 2.5)
    with pytest.raises(ValueError, match="non-integer") as info:
        check_values(x, "adata.X", require_counts=True, likelihood="zinb")
    assert "adata.X" in str(info.value) and "2.5" in str(info.value)
    check_values(x, "adata.X", require_counts=False, likelihood="gaussian")


def test_check_values_rejects_non_numeric():
    with pytest.raises(ValueError, match="real numbers"):
        check_values(np.array([["a", "b"]]), "X", require_counts=False, likelihood="gaussian")


@pytest.mark.parametrize(
    ("bad", "message"), [(np.nan, "NaN"), (0.5, "non-integer"), (-1.0, "negative")]
)
@pytest.mark.parametrize("position", [0, 300_000, -1])  # the first, a middle, the last piece
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_check_values_checks_all_values_of_large_dense(bad, message, position, layout):
    # 1,001,000 values: several pieces of the check and more than one block of rows; a bad
    # value anywhere is found with its own message, whatever the other pieces hold
    x = np.ones((1001, 2000 if layout == "strided" else 1000), dtype=np.float32, order="C")
    x = x[:, ::2] if layout == "strided" else np.asfortranarray(x) if layout == "F" else x
    x.flat[position] = bad
    with pytest.raises(ValueError, match=message):
        check_values(x, "X", require_counts=True, likelihood="nb")
    if message == "NaN":
        with pytest.raises(ValueError, match=message):
            check_values(x, "X", require_counts=False, likelihood="gaussian")
    else:
        check_values(x, "X", require_counts=False, likelihood="gaussian")


def test_check_values_checks_all_values_of_large_sparse():
    n_rows, per_row = 1100, 1000  # 1,100,000 stored values
    data = np.ones(n_rows * per_row, dtype=np.float32)
    indices = np.tile(np.arange(per_row), n_rows)
    indptr = np.arange(0, n_rows * per_row + 1, per_row)
    check_values(sparse.csr_matrix((data, indices, indptr)), "X", True, "nb")
    data[-1] = 0.5  # last stored value, in the last row
    x = sparse.csr_matrix((data, indices, indptr), shape=(n_rows, per_row))
    with pytest.raises(ValueError, match="non-integer"):
        check_values(x, "X", require_counts=True, likelihood="nb")


# ---------------------------------------------------------------------------- set sampler
def _groups(sizes, seed=0):
    """Disjoint, shuffled cell indices of groups of the given sizes."""
    cells = np.random.default_rng(seed).permutation(sum(sizes))
    return np.split(cells, np.cumsum(sizes)[:-1])


def _group_of(groups):
    return {int(c): g for g, cells in enumerate(groups) for c in cells}


def _batches(sampler):
    return [(idx.copy(), ids.copy()) for idx, ids in sampler]


def test_sampler_batches_have_the_right_sets():
    sizes = [50, 3, 20, 7, 1, 12]
    groups = _groups(sizes)
    group_of = _group_of(groups)
    sampler = GroupSetSampler(groups, set_size=10, groups_per_batch=4, n_batches=30, seed=1)
    batches = _batches(sampler)
    assert len(sampler) == 30 and len(batches) == 30
    drawn_small = set()
    for indices, set_ids in batches:
        assert indices.dtype == set_ids.dtype == np.int64
        assert indices.shape == set_ids.shape
        assert sorted(np.unique(set_ids)) == [0, 1, 2, 3]
        assert (np.diff(set_ids) >= 0).all()  # sets are contiguous in the batch
        for s in range(4):
            cells = indices[set_ids == s]
            owners = {group_of[int(c)] for c in cells}
            assert len(owners) == 1  # a set holds cells of one group only
            (g,) = owners
            assert len(np.unique(cells)) == cells.size  # no repeated cell
            assert cells.size == min(10, sizes[g])
            if sizes[g] <= 10:  # small groups contribute all their cells
                assert set(cells.tolist()) == set(groups[g].tolist())
                drawn_small.add(g)
    assert drawn_small == {1, 3, 4}
    # large groups are subsampled anew each time: group 0 (50 cells) is drawn 30 * 4 / 6 = 20
    # times, 10 cells each, so a cell is missed with probability 0.8 ** 20 ~ 1%; a sampler that
    # always took the same 10 cells would cover only 10
    seen = {int(c) for indices, _ in batches for c in indices if group_of[int(c)] == 0}
    assert len(seen) >= 40


def test_sampler_rejects_empty_groups():
    with pytest.raises(ValueError, match="at least one cell"):
        GroupSetSampler([np.arange(3), np.array([], dtype=int)], 2, 2, 1)
    with pytest.raises(ValueError, match="at least one cell"):
        GroupSetSampler([], 2, 2, 1)


def _assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for (ia, sa), (ib, sb) in zip(batches_a, batches_b, strict=True):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(sa, sb)


def _differ(batches_a, batches_b):
    return any(not np.array_equal(a[0], b[0]) for a, b in zip(batches_a, batches_b, strict=True))


def test_sampler_fixed_seed_repeats_batches():
    groups = _groups([40, 30, 25, 60])
    sampler = GroupSetSampler(groups, set_size=8, groups_per_batch=3, n_batches=5, seed=7)
    first = _batches(sampler)
    _assert_same(first, _batches(sampler))
    other_seed = GroupSetSampler(groups, set_size=8, groups_per_batch=3, n_batches=5, seed=8)
    assert _differ(first, _batches(other_seed))


def test_sampler_without_seed_follows_torch_seed():
    groups = _groups([40, 30, 25, 60])
    sampler = GroupSetSampler(groups, set_size=8, groups_per_batch=3, n_batches=5, seed=None)
    torch.manual_seed(123)
    first = _batches(sampler)
    second = _batches(sampler)  # a new epoch draws new sets
    assert _differ(first, second)
    torch.manual_seed(123)
    _assert_same(first, _batches(sampler))


def test_sampler_ranks_draw_different_sets():
    groups = _groups([40, 30, 25, 60])
    kwargs = dict(set_size=8, groups_per_batch=3, n_batches=5, seed=3, world_size=2)
    rank0 = _batches(GroupSetSampler(groups, rank=0, **kwargs))
    rank1 = _batches(GroupSetSampler(groups, rank=1, **kwargs))
    assert _differ(rank0, rank1)
    _assert_same(rank0, _batches(GroupSetSampler(groups, rank=0, **kwargs)))


def _drawn_groups(groups, indices, set_ids):
    group_of = _group_of(groups)
    return [group_of[int(indices[set_ids == s][0])] for s in range(set_ids.max() + 1)]


@pytest.mark.parametrize("groups_per_batch", [3, 6])
def test_sampler_with_fewer_groups_than_groups_per_batch(groups_per_batch):
    groups = _groups([5, 9, 4])
    sampler = GroupSetSampler(groups, 4, groups_per_batch, n_batches=6, seed=0)
    for indices, set_ids in sampler:
        drawn = _drawn_groups(groups, indices, set_ids)
        assert len(drawn) == groups_per_batch
        # groups_per_batch is a multiple of the number of groups here, so every batch is made of
        # whole permutations of the groups: each group appears groups_per_batch / 3 times
        assert Counter(drawn) == {
            0: groups_per_batch // 3,
            1: groups_per_batch // 3,
            2: groups_per_batch // 3,
        }


def test_sampler_with_fewer_groups_every_batch_holds_every_group():
    groups = _groups([5, 9, 4])
    for seed in range(10):
        sampler = GroupSetSampler(groups, 4, groups_per_batch=4, n_batches=10, seed=seed)
        batches = [_drawn_groups(groups, i, s) for i, s in sampler]
        assert all(len(b) == 4 and set(b) == {0, 1, 2} for b in batches)


@pytest.mark.parametrize(
    ("n_groups", "groups_per_batch", "n_batches"), [(7, 3, 50), (5, 5, 9), (4, 6, 11)]
)
def test_sampler_draws_groups_equally_often(n_groups, groups_per_batch, n_batches):
    # The sampler consumes a stream of concatenated random permutations of the groups. After
    # T = n_batches * groups_per_batch draws, c = T // n_groups whole permutations and a part of
    # the next one have been consumed, so every group was drawn c or c + 1 times.
    groups = _groups([3] * n_groups)
    sampler = GroupSetSampler(groups, 2, groups_per_batch, n_batches, seed=0)
    counts = Counter(g for i, s in sampler for g in _drawn_groups(groups, i, s))
    total = n_batches * groups_per_batch
    assert sum(counts.values()) == total
    assert set(counts) == set(range(n_groups))
    c = total // n_groups
    assert set(counts.values()) <= {c, c + 1}


def test_sampler_repeats_a_group_within_a_batch_only_when_groups_are_too_few():
    groups = _groups([3] * 3)
    for seed in range(20):
        sampler = GroupSetSampler(groups, 2, groups_per_batch=2, n_batches=30, seed=seed)
        for indices, set_ids in sampler:
            drawn = _drawn_groups(groups, indices, set_ids)
            assert len(set(drawn)) == len(drawn)


# ------------------------------------------------------------------------- data splitter
def _registered_adata(sizes, seed=0, batch=False):
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    names = [f"g{i:02d}" for i in range(len(sizes))]
    obs = pd.DataFrame(
        {"g": np.repeat(names, sizes)[rng.permutation(n)]}, index=[f"c{i}" for i in range(n)]
    )
    if batch:
        obs["b"] = rng.choice(["b0", "b1"], size=n)
    x = rng.poisson(1.0, size=(n, 6)).astype(np.float32)
    x[:, 0] = np.arange(n)  # the first feature names the cell, to trace loader rows back
    adata = ad.AnnData(sparse.csr_matrix(x), obs=obs)
    scgde.model.GDE.setup_anndata(adata, group_key="g", batch_key="b" if batch else None)
    manager = scgde.model.GDE._get_most_recent_anndata_manager(adata, required=True)
    return adata, manager, group_labels(adata.obs, "g")


SIZES = [30, 5, 12, 40, 8, 22, 3, 17, 9, 14]


def test_splitter_splits_groups_not_cells():
    adata, manager, labels = _registered_adata(SIZES)
    splitter = GroupDataSplitter(manager, labels, set_size=10, groups_per_batch=3, train_size=0.7)
    train, val = set(splitter.train_groups.tolist()), set(splitter.val_groups.tolist())
    assert len(train) == 7 and len(val) == 3
    assert train.isdisjoint(val) and train | val == set(range(len(SIZES)))
    group_of_cell = np.asarray(labels.codes)
    np.testing.assert_array_equal(np.sort(splitter.train_idx), splitter.train_idx)
    assert set(group_of_cell[splitter.train_idx]) == train
    assert set(group_of_cell[splitter.val_idx]) == val
    assert splitter.n_train + splitter.n_val == adata.n_obs
    assert splitter.n_train == sum(SIZES[g] for g in train)
    assert len(np.intersect1d(splitter.train_idx, splitter.val_idx)) == 0
    assert list(splitter.group_names) == list(labels.categories)

    same = GroupDataSplitter(manager, labels, set_size=10, groups_per_batch=3, train_size=0.7)
    np.testing.assert_array_equal(same.train_groups, splitter.train_groups)
    other = GroupDataSplitter(manager, labels, 10, 3, train_size=0.7, seed=1)
    assert set(other.train_groups.tolist()) != train


def test_splitter_validation_size_and_no_validation():
    _, manager, labels = _registered_adata(SIZES)
    part = GroupDataSplitter(manager, labels, 10, 3, train_size=0.5, validation_size=0.2)
    assert len(part.train_groups) == 5 and len(part.val_groups) == 2
    assert part.n_train + part.n_val < sum(SIZES)  # the remaining groups are unused
    everything = GroupDataSplitter(manager, labels, 10, 3, train_size=1.0)
    assert len(everything.train_groups) == len(SIZES) and everything.n_val == 0
    assert everything.val_dataloader() == []


def test_splitter_group_counts_are_exact_for_round_fractions():
    _, manager, labels = _registered_adata([2] * 25)
    splitter = GroupDataSplitter(manager, labels, 2, 2, train_size=0.56)
    assert (len(splitter.train_groups), len(splitter.val_groups)) == (14, 11)


def test_splitter_errors():
    _, manager, labels = _registered_adata(SIZES)
    with pytest.raises(ValueError, match="at least 2 groups"):
        GroupDataSplitter(manager, labels, 10, 3, train_size=0.1)  # ceil(0.1 * 10) = 1
    _, manager2, labels2 = _registered_adata([20])
    with pytest.raises(ValueError, match="at least 2 groups"):
        GroupDataSplitter(manager2, labels2, 10, 3, train_size=1.0)
    for train_size in (0, 1.5):
        with pytest.raises(ValueError, match="train_size"):
            GroupDataSplitter(manager, labels, 10, 3, train_size=train_size)
    with pytest.raises(ValueError, match="validation_size"):
        GroupDataSplitter(manager, labels, 10, 3, train_size=0.8, validation_size=0.3)


def test_splitter_loaders():
    adata, manager, labels = _registered_adata(SIZES, batch=True)
    splitter = GroupDataSplitter(manager, labels, set_size=10, groups_per_batch=3, train_size=0.7)
    group_of_cell = np.asarray(labels.codes)
    train_groups = set(splitter.train_groups.tolist())

    train_loader = splitter.train_dataloader()
    assert len(train_loader) == splitter.n_batches_train == sets_per_epoch(splitter.n_train, 10, 3)
    n_seen = 0
    for batch in train_loader:
        n_seen += 1
        assert set(batch) == {X_KEY, BATCH_KEY, SET_IDS_KEY}
        n = batch[SET_IDS_KEY].shape[0]
        assert batch[X_KEY].shape == (n, adata.n_vars) and batch[X_KEY].dtype == torch.float32
        assert batch[BATCH_KEY].shape == (n, 1)
        assert batch[SET_IDS_KEY].dtype == torch.long
        assert sorted(batch[SET_IDS_KEY].unique().tolist()) == [0, 1, 2]
        cells = batch[X_KEY][:, 0].long().numpy()
        np.testing.assert_array_equal(batch[X_KEY].numpy(), adata.X[cells].toarray())
        np.testing.assert_array_equal(
            batch[BATCH_KEY].numpy().ravel(), adata.obs["_scvi_batch"].to_numpy()[cells]
        )
        for s in range(3):  # every set holds cells of one training group, without repeats
            in_set = cells[batch[SET_IDS_KEY].numpy() == s]
            owners = set(group_of_cell[in_set].tolist())
            assert len(owners) == 1 and owners <= train_groups
            assert len(np.unique(in_set)) == in_set.size
    assert n_seen == len(train_loader)

    val_batches = [{k: v.clone() for k, v in b.items()} for b in splitter.val_dataloader()]
    assert len(val_batches) == sets_per_epoch(splitter.n_val, 10, 3)
    again = list(splitter.val_dataloader())
    for a, b in zip(val_batches, again, strict=True):
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=0, rtol=0)


def test_splitter_val_loader_uses_validation_groups_only():
    adata, manager, labels = _registered_adata(SIZES)
    splitter = GroupDataSplitter(manager, labels, set_size=10, groups_per_batch=3, train_size=0.7)
    group_of_cell = np.asarray(labels.codes)
    drawn = set()
    for batch in splitter.val_dataloader():
        cells = batch[X_KEY][:, 0].long().numpy()
        for s in batch[SET_IDS_KEY].unique().tolist():
            owners = set(group_of_cell[cells[batch[SET_IDS_KEY].numpy() == s]].tolist())
            assert len(owners) == 1
            drawn |= owners
    assert drawn == set(splitter.val_groups.tolist())


@pytest.mark.parametrize(
    ("n_cells", "set_size", "groups_per_batch", "expected"),
    [
        (100, 10, 2, 5),
        (101, 10, 2, 6),
        (5, 10, 4, 1),
        (1000, 64, 8, 2),
        (1, 1, 1, 1),
        (90, 10, 4, 3),
    ],
)
def test_sets_per_epoch(n_cells, set_size, groups_per_batch, expected):
    assert sets_per_epoch(n_cells, set_size, groups_per_batch) == expected
    # enough sets to draw each cell about once, and never fewer than one batch
    n_batches = sets_per_epoch(n_cells, set_size, groups_per_batch)
    assert n_batches * groups_per_batch * set_size >= n_cells
    assert n_batches >= 1
    assert (n_batches - 1) * groups_per_batch < max(math.ceil(n_cells / set_size), groups_per_batch)


def test_splitter_shares_an_epoch_between_distributed_ranks(monkeypatch):
    import scgde.data._splitter as splitter_module

    _, manager, labels = _registered_adata(SIZES)
    splitter = GroupDataSplitter(manager, labels, set_size=4, groups_per_batch=2, train_size=0.7)
    single = splitter.train_dataloader()
    monkeypatch.setattr(splitter_module, "_distributed_rank", lambda: (1, 2))
    shard = splitter.train_dataloader()
    assert len(shard) == -(-len(single) // 2)
    assert (shard.sampler.rank, shard.sampler.world_size) == (1, 2)
    cells_rank_1 = [b[X_KEY][:, 0].tolist() for b in splitter.val_dataloader()]
    monkeypatch.setattr(splitter_module, "_distributed_rank", lambda: (0, 2))
    cells_rank_0 = [b[X_KEY][:, 0].tolist() for b in splitter.val_dataloader()]
    assert len(cells_rank_0) == len(cells_rank_1)
    assert cells_rank_0 != cells_rank_1  # the two ranks evaluate different sets


def test_distributed_ranks_train_on_disjoint_shares_of_the_groups(monkeypatch):
    """With at least groups_per_batch x processes training groups, each process draws its
    sets from its own share; with fewer, every process draws from all of them."""
    import scgde.data._splitter as splitter_module

    _, manager, labels = _registered_adata(SIZES)
    splitter = GroupDataSplitter(manager, labels, set_size=4, groups_per_batch=2, train_size=1.0)
    assert len(splitter.train_groups) >= 4

    def groups_drawn(rank, world_size):
        monkeypatch.setattr(splitter_module, "_distributed_rank", lambda: (rank, world_size))
        sampler = splitter.train_dataloader().sampler
        return {int(labels.codes[cells[0]]) for cells in sampler.group_cells}

    shares = [groups_drawn(rank, 2) for rank in (0, 1)]
    assert not shares[0] & shares[1]
    assert shares[0] | shares[1] == set(splitter.train_groups.tolist())
    assert abs(len(shares[0]) - len(shares[1])) <= 1
    n_groups = len(splitter.train_groups)
    assert groups_drawn(0, n_groups) == set(splitter.train_groups.tolist())  # too few to share


def test_splitter_is_scvi_data_splitter_and_honours_its_loader_settings(monkeypatch):
    from scvi import settings
    from scvi.dataloaders import DataSplitter

    _, manager, labels = _registered_adata(SIZES)
    splitter = GroupDataSplitter(manager, labels, set_size=10, groups_per_batch=3, train_size=0.7)
    assert isinstance(splitter, DataSplitter)
    assert splitter.train_dataloader().num_workers == 0
    monkeypatch.setattr(settings, "dl_num_workers", 1)
    loader = splitter.train_dataloader()
    assert loader.num_workers == 1
    batch = next(iter(loader))  # served by a worker process
    cells = batch[X_KEY][:, 0].long().numpy()
    assert set(np.asarray(labels.codes)[cells]) <= set(splitter.train_groups.tolist())


def test_registered_data_rows_in_the_order_asked_in_memory_and_backed(tmp_path):
    adata, manager, _ = _registered_adata(SIZES, batch=True)
    indices = np.array([17, 3, 120, 3 + 1, 0, 59])
    in_memory = RegisteredData(manager, extra={"code": np.arange(adata.n_obs)})[indices]
    np.testing.assert_array_equal(in_memory[X_KEY][:, 0].numpy(), indices)  # feature 0 = cell
    np.testing.assert_array_equal(in_memory["code"].numpy(), indices)
    np.testing.assert_array_equal(in_memory[X_KEY].numpy(), adata.X[indices].toarray())

    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    backed_manager = manager.transfer_fields(backed)
    rows = RegisteredData(backed_manager)[indices]  # h5py needs increasing indices
    for key in (X_KEY, BATCH_KEY):
        np.testing.assert_array_equal(rows[key].numpy(), in_memory[key].numpy())
    backed.file.close()
