"""The shared argument checks and matrix helpers."""

import numpy as np
import pytest
from scipy import sparse

from scgde import _utils
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


# ------------------------------------------------------------------------- normalisation
def test_normalisation_matches_scanpy_and_keeps_empty_cells_zero():
    import anndata as ad
    import scanpy as sc

    rng = np.random.default_rng(0)
    counts = rng.poisson(2.0, size=(30, 12)).astype(np.float32)
    counts[3] = 0  # a cell without counts
    reference = ad.AnnData(sparse.csr_matrix(counts))
    sc.pp.normalize_total(reference, target_sum=1e4)
    sc.pp.log1p(reference)
    for x in (counts, sparse.csr_matrix(counts)):
        normalised = _utils.log_normalize(x)
        assert normalised.dtype == np.float64 and normalised.shape == counts.shape
        np.testing.assert_allclose(normalised, reference.X.toarray(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(_utils.normalize_total(x).sum(1)[counts.sum(1) > 0], 1e4)
    assert (_utils.normalize_total(counts)[3] == 0).all()
    np.testing.assert_array_equal(_utils.size_factors([0.0, 2.0, 4.0], 8.0), [8.0, 4.0, 2.0])


def test_distinct_names():
    assert _utils.distinct_names((1, "b"), "genes", "hint") == ["1", "b"]
    with pytest.raises(ValueError, match="`genes` is empty; pass genes"):
        _utils.distinct_names([], "genes", "pass genes")
    with pytest.raises(ValueError, match=r"lists \['a'\] more than once"):
        _utils.distinct_names(["a", "b", "a"], "genes", "hint")


# ------------------------------------------------------------------------- docstrings
def test_doc_params_fills_blocks_at_the_placeholder_indent_and_needs_a_placeholder():
    from scgde._docs import SHOW_SAVE, doc_params

    @doc_params(show_save=SHOW_SAVE)
    def plot():
        """Plot.

        Parameters
        ----------
        {show_save}
        """

    lines = plot.__doc__.split("\n")
    start = lines.index("        show")
    assert lines[start + 2] == "        save"
    assert lines[start + 1].startswith("            Show the figure")
    assert "{show_save}" not in plot.__doc__
    with pytest.raises(ValueError, match="no {show_save} line"):
        doc_params(show_save=SHOW_SAVE)(lambda: None)


# ---------------------------------------------------------------------------------- PCA
@pytest.mark.parametrize("shape", [(40, 6), (300, 150)])  # full SVD / ARPACK
def test_principal_axes_match_sklearn_up_to_sign_with_fixed_signs(shape):
    from sklearn.decomposition import PCA

    from scgde._pca import PrincipalAxes

    rng = np.random.default_rng(0)
    x = rng.normal(size=shape) @ np.diag(np.linspace(3.0, 0.1, shape[1])) + 5.0
    pca = PrincipalAxes.fit(x, 4)
    reference = PCA(n_components=4, svd_solver="full").fit(x)
    signs = np.sign(np.sum(pca.axes * reference.components_, axis=1))
    np.testing.assert_allclose(pca.axes, reference.components_ * signs[:, None], atol=1e-8)
    np.testing.assert_allclose(pca.explained_ratio, reference.explained_variance_ratio_)
    np.testing.assert_allclose(pca.transform(x), reference.transform(x) * signs, atol=1e-8)
    largest = np.abs(pca.axes).argmax(axis=1)
    assert (pca.axes[np.arange(4), largest] > 0).all()


def test_principal_axes_keep_at_most_what_the_data_have():
    from scgde._pca import PrincipalAxes
    from scgde.pl._reduce import pca_2d

    x = np.random.default_rng(1).normal(size=(3, 5))
    assert PrincipalAxes.fit(x, 10).axes.shape == (3, 5)
    one_feature = pca_2d(np.arange(4.0)[:, None])
    assert (
        one_feature.axes.shape == (2, 1)
        and (one_feature.transform(np.ones((2, 1)))[:, 1] == 0).all()
    )


def test_row_blocks_cover_every_row_once_in_blocks_of_about_n_values():
    x = sparse.random(23, 4, density=0.5, format="csr", random_state=0)
    blocks = list(_utils.row_blocks(x, n_values=20))  # 5 rows of 4 values per block
    assert [b.shape[0] for b in blocks] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(sparse.vstack(blocks).toarray(), x.toarray())
    assert [b.shape[0] for b in _utils.row_blocks(x.toarray(), n_values=1)] == [1] * 23
