"""The shared argument checks."""

import numpy as np
import pytest

from scgde._utils import check_int


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.uint8(2)])
def test_check_int_accepts_integers_and_returns_python_ints(value):
    out = check_int(value, "n")
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value", [2.0, 2.5, "3", True, np.bool_(True), None, [1]])
def test_check_int_refuses_non_integers_with_a_type_error(value):
    with pytest.raises(TypeError, match="`n` must be an integer, got"):
        check_int(value, "n")


@pytest.mark.parametrize(
    ("minimum", "value", "message"),
    [
        (1, 0, "`n` must be a positive integer, got 0"),
        (0, -1, "`n` must be a non-negative integer, got -1"),
        (2, 1, "`n` must be an integer >= 2, got 1"),
    ],
)
def test_check_int_refuses_values_below_the_minimum(minimum, value, message):
    with pytest.raises(ValueError, match=message):
        check_int(value, "n", minimum=minimum)
    assert check_int(minimum, "n", minimum=minimum) == minimum


def test_check_int_allows_none_only_when_asked():
    assert check_int(None, "n", allow_none=True) is None
    with pytest.raises(TypeError, match="integer or None"):
        check_int(1.5, "n", allow_none=True)


def _adata():
    import anndata as ad
    from scipy import sparse

    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    adata = ad.AnnData(x.copy())
    adata.layers["counts"] = sparse.csr_matrix(x)
    return adata, x


def test_layer_matrix_returns_x_or_the_layer_uncopied():
    from scgde._utils import layer_matrix

    adata, _ = _adata()
    assert layer_matrix(adata) is adata.X
    assert layer_matrix(adata, "counts") is adata.layers["counts"]
    with pytest.raises(KeyError, match="control.layers has no 'raw'; available: \\['counts'\\]"):
        layer_matrix(adata, "raw", what="control")
    adata.X = None
    with pytest.raises(ValueError, match="adata.X is empty; pass `layer`"):
        layer_matrix(adata)


def test_dense_rows_selects_rows_then_columns_of_dense_and_sparse():
    from scgde._utils import dense_rows

    adata, x = _adata()
    for m in (adata.X, adata.layers["counts"]):
        out = dense_rows(m, np.array([2, 0]), np.array([1]))
        assert out.dtype == np.float64
        np.testing.assert_array_equal(out, x[[2, 0]][:, [1]])
    bad = x.copy()
    bad[1, 1] = np.nan
    assert np.isnan(dense_rows(bad)).any()
    with pytest.raises(ValueError, match="NaN or infinite"):
        dense_rows(bad, check_finite=True)


def test_subsample_keeps_small_sets_and_draws_sorted_reproducible_subsets():
    from scgde._utils import subsample

    rows = np.arange(10, 30)
    np.testing.assert_array_equal(subsample(rows, None, 0), rows)
    np.testing.assert_array_equal(subsample(rows, 20, 0), rows)
    a, b = subsample(rows, 5, 3), subsample(rows, 5, 3)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 5 and len(set(a)) == 5 and set(a) <= set(rows)
    assert np.all(np.diff(a) > 0)
    # a generator is used as it is: two draws from one generator differ
    rng = np.random.default_rng(0)
    assert not np.array_equal(subsample(rows, 5, rng), subsample(rows, 5, rng))
