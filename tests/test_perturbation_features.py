"""Perturbation features: name parsing, co-expression / one-hot tables, feature matrices."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from scgde.data import _coexpression as co
from scgde.data import (
    coexpression_features,
    default_perturbation_features,
    features_from_uns,
    one_hot_features,
    perturbation_feature_matrix,
    perturbation_parts,
    split_combination,
)

N_CONTROL = 400
N_PERTURBED = 60  # per perturbation
# Programme 1: A drives B and C. Programme 2: D drives E and F. Background genes (steady
# expression, so that library-size normalisation keeps the programmes); Z: never detected.
N_BACKGROUND = 100
GENES = ["A", "B", "C", "D", "E", "F"] + [f"bg{i}" for i in range(N_BACKGROUND)] + ["Z"]
# Agreement of float64 correlations computed two ways (sums of ~400 products of O(1) values).
ATOL = 1e-10


def simulate(seed=0):
    """Counts of control cells with two independent gene programmes, plus perturbed cells."""
    rng = np.random.default_rng(seed)
    n = N_CONTROL + 3 * N_PERTURBED
    u, v = rng.normal(size=(2, n))  # programme activities
    size = rng.lognormal(0.0, 0.3, size=n)  # library-size variation
    log_rate = np.zeros((n, len(GENES)))
    log_rate[:, 0:3] = 3.0 + 0.8 * u[:, None]  # A, B, C
    log_rate[:, 3:6] = 3.0 + 0.8 * v[:, None]  # D, E, F
    log_rate[:, 6:-1] = 3.0  # background
    rate = size[:, None] * np.exp(log_rate)
    rate[:, -1] = 0.0  # Z
    counts = rng.poisson(rate).astype(np.float32)
    labels = ["ctrl"] * N_CONTROL + ["A"] * N_PERTURBED + ["D"] * N_PERTURBED
    labels += ["A+D"] * N_PERTURBED
    adata = ad.AnnData(
        counts,
        obs=pd.DataFrame({"perturbation": labels}, index=[f"c{i}" for i in range(n)]),
        var=pd.DataFrame(index=GENES),
    )
    return adata


def control_mask(adata):
    return (adata.obs["perturbation"] == "ctrl").to_numpy()


def log_normalised(counts):
    counts = np.asarray(counts, dtype=np.float64)
    return np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "separator", "expected"),
    [
        ("A", "+", ["A"]),
        ("A+B", "+", ["A", "B"]),
        (" A + B ", "+", ["A", "B"]),
        ("A+ctrl", "+", ["A"]),
        ("ctrl+A", "+", ["A"]),
        ("control+A", "+", ["A"]),
        ("A++B+", "+", ["A", "B"]),
        ("A_B", "_", ["A", "B"]),
        ("A+B", "_", ["A+B"]),
        ("CTRL", "+", ["CTRL"]),  # a human gene; only lower-case names mean control
    ],
)
def test_split_combination(name, separator, expected):
    assert split_combination(name, separator) == expected


@pytest.mark.parametrize("name", ["", "ctrl", "+", " + ctrl "])
def test_split_combination_empty_result(name):
    with pytest.raises(ValueError, match="no parts"):
        split_combination(name)


def test_split_combination_bad_input():
    with pytest.raises(TypeError, match="string"):
        split_combination(float("nan"))
    with pytest.raises(ValueError, match="separator"):
        split_combination("A", "")


def test_perturbation_parts():
    names = ["ctrl", "B+A", "C", "A", "B+ctrl", "ctrl", "A+NT"]
    assert perturbation_parts(names, "ctrl") == ["A", "B", "C", "NT"]
    # The control name is also dropped inside combinations.
    assert perturbation_parts(["NT", "B+A", "C", "A+NT", "NT+ctrl+B"], "NT") == ["A", "B", "C"]
    assert perturbation_parts(pd.Series(["NT", "X;Y"], dtype="category"), "NT", ";") == [
        "X",
        "Y",
    ]
    assert perturbation_parts(["ctrl"], "ctrl") == []
    with pytest.raises(ValueError, match="missing"):
        perturbation_parts(["ctrl", None], "ctrl")


# --------------------------------------------------------------------------------------------
# Co-expression features
# --------------------------------------------------------------------------------------------
def test_correlations_match_numpy_on_control_cells():
    adata = simulate()
    mask = control_mask(adata)
    corr = co._coexpression_correlations(adata, ["A", "D"], mask)
    x = log_normalised(adata.X[mask])
    expected = np.corrcoef(x[:, :-1], rowvar=False)  # without Z, for which numpy gives NaN
    assert list(corr.columns) == GENES
    np.testing.assert_allclose(corr.loc["A"].to_numpy()[:-1], expected[0], atol=ATOL)
    np.testing.assert_allclose(corr.loc["D"].to_numpy()[:-1], expected[3], atol=ATOL)
    # Z is never detected: no variance, counted as uncorrelated.
    assert not x[:, -1].any()
    np.testing.assert_array_equal(corr["Z"], 0.0)
    # The simulated programmes: A goes with B, C and not with D, E, F.
    assert corr.loc["A", ["B", "C"]].min() > 0.5
    assert corr.loc["A", ["D", "E", "F"]].abs().max() < 0.25


def test_correlations_sparse_chunked_and_layer_agree(monkeypatch):
    adata = simulate()
    mask = control_mask(adata)
    dense = co._coexpression_correlations(adata, ["A", "E"], mask)
    adata.layers["counts"] = sparse.csr_matrix(adata.X)
    adata.X = np.full(adata.shape, 0.5, dtype=np.float32)  # not what is read
    monkeypatch.setattr(co, "_CHUNK_VALUES", 3 * N_CONTROL)  # 3 genes per block
    from_layer = co._coexpression_correlations(adata, ["A", "E"], mask, layer="counts")
    np.testing.assert_allclose(from_layer.to_numpy(), dense.to_numpy(), atol=ATOL)
    with pytest.raises(KeyError, match="layers has no 'raw'"):
        co._coexpression_correlations(adata, ["A", "E"], mask, layer="raw")


def test_normalisation_only_for_counts():
    adata = simulate()
    mask = control_mask(adata)
    logged = log_normalised(adata.X)
    adata.layers["log"] = logged
    # Non-integer data is used as given.
    corr = co._coexpression_correlations(adata, ["B"], mask, layer="log")
    expected = np.corrcoef(logged[mask][:, :-1], rowvar=False)[1]
    np.testing.assert_allclose(corr.loc["B"].to_numpy()[:-1], expected, atol=ATOL)
    with pytest.raises(ValueError, match="non-negative integer counts"):
        co._coexpression_correlations(adata, ["B"], mask, layer="log", normalize=True)
    # normalize=False on counts: Pearson correlation of the raw counts.
    raw = co._coexpression_correlations(adata, ["B"], mask, normalize=False)
    expected = np.corrcoef(np.asarray(adata.X[mask][:, :-1], dtype=np.float64), rowvar=False)[1]
    np.testing.assert_allclose(raw.loc["B"].to_numpy()[:-1], expected, atol=ATOL)


def test_similar_programmes_give_closer_features():
    adata = simulate()
    features = coexpression_features(adata, ["A", "B", "D", "E"], control_mask(adata))

    def dist(a, b):
        return np.linalg.norm(features.loc[a] - features.loc[b])

    assert dist("A", "B") < 0.5 * dist("A", "D")
    assert dist("D", "E") < 0.5 * dist("B", "E")


def test_pca_keeps_distances_and_caps_components():
    adata = simulate()
    mask = control_mask(adata)
    targets = ["A", "B", "C", "D", "E"]
    features = coexpression_features(adata, targets, mask)  # 16 requested, rank is 4
    assert list(features.index) == targets
    assert list(features.columns) == [f"coexpr_{i}" for i in range(4)]
    # All n_targets - 1 components of the centred rows: an isometry of the correlation rows.
    corr = co._coexpression_correlations(adata, targets, mask).to_numpy()
    expected = np.linalg.norm(corr[:, None] - corr[None], axis=-1)
    got = np.linalg.norm(features.to_numpy()[:, None] - features.to_numpy()[None], axis=-1)
    np.testing.assert_allclose(got, expected, atol=ATOL)
    # Scores are centred, with decreasing variance.
    np.testing.assert_allclose(features.mean(), 0.0, atol=ATOL)
    variance = features.var().to_numpy()
    assert np.all(np.diff(variance) <= ATOL)
    two = coexpression_features(adata, targets, mask, n_components=2)
    assert list(two.columns) == ["coexpr_0", "coexpr_1"]
    np.testing.assert_allclose(two.to_numpy(), features.to_numpy()[:, :2], atol=ATOL)
    with pytest.raises(ValueError, match="n_components"):
        coexpression_features(adata, targets, mask, n_components=0)


def test_only_control_cells_are_read():
    adata = simulate()
    mask = control_mask(adata)
    before = coexpression_features(adata, ["A", "B", "D"], mask)
    rng = np.random.default_rng(1)
    adata.X[~mask] = rng.poisson(50.0, size=adata.X[~mask].shape)
    after = coexpression_features(adata, ["A", "B", "D"], mask)
    pd.testing.assert_frame_equal(before, after)


def test_control_subsample():
    adata = simulate()
    mask = control_mask(adata)
    full = coexpression_features(adata, ["A", "B", "D"], mask)
    same = coexpression_features(adata, ["A", "B", "D"], mask, max_cells=N_CONTROL)
    pd.testing.assert_frame_equal(full, same)
    sub = coexpression_features(adata, ["A", "B", "D"], mask, max_cells=100, seed=3)
    again = coexpression_features(adata, ["A", "B", "D"], mask, max_cells=100, seed=3)
    pd.testing.assert_frame_equal(sub, again)
    assert not np.allclose(sub.to_numpy(), full.to_numpy())


def test_coexpression_errors():
    adata = simulate()
    mask = control_mask(adata)
    with pytest.raises(KeyError, match=r"\['Q1', 'Q2'\]"):
        coexpression_features(adata, ["A", "Q1", "B", "Q2"], mask)
    with pytest.raises(ValueError, match=r"\['Z'\] do not vary"):
        coexpression_features(adata, ["A", "Z"], mask)
    few = np.zeros(adata.n_obs, dtype=bool)
    few[:2] = True
    with pytest.raises(ValueError, match="at least 3 control cells"):
        coexpression_features(adata, ["A", "B"], few)
    with pytest.raises(ValueError, match="boolean array"):
        coexpression_features(adata, ["A", "B"], mask[:-1])
    with pytest.raises(ValueError, match="at least 2 target genes"):
        coexpression_features(adata, ["A"], mask)
    with pytest.raises(ValueError, match="more than once"):
        coexpression_features(adata, ["A", "B", "A"], mask)
    adata.X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        coexpression_features(adata, ["A", "B"], mask)


# --------------------------------------------------------------------------------------------
# One-hot features and the default choice
# --------------------------------------------------------------------------------------------
def test_one_hot_features():
    features = one_hot_features(["drugX", "drugY", "drugZ"])
    assert list(features.index) == ["drugX", "drugY", "drugZ"]
    assert list(features.columns) == ["onehot_drugX", "onehot_drugY", "onehot_drugZ"]
    np.testing.assert_array_equal(features.to_numpy(), np.eye(3))
    with pytest.raises(ValueError, match="more than once"):
        one_hot_features(["a", "a"])
    with pytest.raises(ValueError, match="empty"):
        one_hot_features([])


def test_default_features_coexpression_for_genes():
    adata = simulate()
    adata.obs.loc[adata.obs["perturbation"] == "A+D", "perturbation"] = "B+ctrl"
    features, kind = default_perturbation_features(adata, "perturbation", "ctrl", n_components=2)
    assert kind == "coexpression"
    # every gene that varies in the controls gets a row (unseen targets can be described);
    # Z is never expressed and gets none
    varying = [g for g in GENES if g != "Z"]
    expected = coexpression_features(adata, varying, control_mask(adata), n_components=2)
    pd.testing.assert_frame_equal(features, expected)
    assert {"A", "B", "D"} <= set(features.index) and "Z" not in features.index
    # one perturbed gene is enough: its features come from all the varying genes
    adata.obs["single"] = np.where(control_mask(adata), "ctrl", "A")
    single, kind = default_perturbation_features(adata, "single", "ctrl", n_components=2)
    assert kind == "coexpression"
    pd.testing.assert_frame_equal(single, expected)


def test_default_features_read_the_layer():
    adata = simulate()
    adata.layers["counts"] = adata.X.copy()
    adata.X = np.zeros_like(adata.X)  # nothing varies in X: the layer must be read
    features, kind = default_perturbation_features(
        adata, "perturbation", "ctrl", n_components=2, layer="counts"
    )
    assert kind == "coexpression"
    assert "A" in features.index and "Z" not in features.index


def test_default_features_one_hot_otherwise():
    adata = simulate()
    adata.obs.loc[adata.obs["perturbation"] == "D", "perturbation"] = "drugX"
    features, kind = default_perturbation_features(adata, "perturbation", "ctrl")
    assert kind == "one_hot"
    pd.testing.assert_frame_equal(features, one_hot_features(["A", "D", "drugX"]))


def test_default_features_errors():
    adata = simulate()
    with pytest.raises(ValueError, match="'non-targeting' is not among"):
        default_perturbation_features(adata, "perturbation", "non-targeting")
    with pytest.raises(KeyError, match="no column 'guide'"):
        default_perturbation_features(adata, "guide", "ctrl")
    adata.obs["only"] = "ctrl"
    with pytest.raises(ValueError, match="only the control"):
        default_perturbation_features(adata, "only", "ctrl")


# --------------------------------------------------------------------------------------------
# Feature matrices
# --------------------------------------------------------------------------------------------
@pytest.fixture
def table():
    return pd.DataFrame(
        [[1.0, 2.0, 0.0], [0.5, -1.0, 3.0], [0.0, 0.0, 1.0]],
        index=["A", "B", "C"],
        columns=["f0", "f1", "f2"],
    )


def test_feature_matrix_sums_parts(table):
    names = ["ctrl", "A", "A+B", "B+ctrl", "A+B", "C+A+B"]
    matrix = perturbation_feature_matrix(names, table, "ctrl")
    assert matrix.shape == (6, 3)
    assert matrix.dtype == np.float64
    rows = table.to_numpy()
    np.testing.assert_array_equal(matrix[0], 0.0)
    np.testing.assert_array_equal(matrix[1], rows[0])
    np.testing.assert_array_equal(matrix[2], rows[0] + rows[1])
    np.testing.assert_array_equal(matrix[3], rows[1])
    np.testing.assert_array_equal(matrix[4], matrix[2])
    np.testing.assert_array_equal(matrix[5], rows.sum(axis=0))
    # With control "NT", "NT" is a zero row and is dropped from "NT+C".
    matrix = perturbation_feature_matrix(["NT", "NT+C"], table, "NT")
    np.testing.assert_array_equal(matrix, [[0.0, 0.0, 0.0], rows[2]])


def test_feature_matrix_missing_parts(table):
    names = ["ctrl", "A+X", "A", "Y", "X+Y+B"]
    with pytest.raises(KeyError) as info:
        perturbation_feature_matrix(names, table, "ctrl")
    message = str(info.value)
    assert "3 perturbation(s)" in message
    assert "'A+X' (missing ['X'])" in message
    assert "'Y' (missing ['Y'])" in message
    assert "'X+Y+B' (missing ['X', 'Y'])" in message


def test_feature_matrix_bad_tables(table):
    bad = table.copy()
    bad.loc["B", "f1"] = np.inf
    with pytest.raises(ValueError, match=r"infinite values in the row\(s\) of \['B'\]"):
        perturbation_feature_matrix(["A"], bad, "ctrl")
    with pytest.raises(ValueError, match="repeated"):
        perturbation_feature_matrix(["A"], pd.concat([table, table.iloc[:1]]), "ctrl")
    with pytest.raises(ValueError, match="non-numeric"):
        perturbation_feature_matrix(["A"], table.assign(label="x"), "ctrl")
    with pytest.raises(TypeError, match="DataFrame"):
        perturbation_feature_matrix(["A"], table.to_numpy(), "ctrl")


# --------------------------------------------------------------------------------------------
# Feature tables in adata.uns
# --------------------------------------------------------------------------------------------
def test_features_from_uns_formats(table, tmp_path):
    adata = ad.AnnData(np.zeros((2, 2), dtype=np.float32))
    adata.uns["frame"] = table
    adata.uns["split"] = {
        "index": np.array(table.index),
        "columns": np.array(table.columns),
        "data": table.to_numpy(),
    }
    adata.uns["vectors"] = {part: row.to_numpy() for part, row in table.iterrows()}
    adata.uns["no_columns"] = {"index": np.array(table.index), "data": table.to_numpy()}
    path = tmp_path / "features.h5ad"
    adata.write_h5ad(path)
    for stored in (adata, ad.read_h5ad(path)):
        pd.testing.assert_frame_equal(features_from_uns(stored, "frame"), table)
        pd.testing.assert_frame_equal(features_from_uns(stored, "split"), table)
        vectors = features_from_uns(stored, "vectors")
        np.testing.assert_array_equal(vectors.loc[list(table.index)].to_numpy(), table.to_numpy())
        assert list(vectors.columns) == ["feature_0", "feature_1", "feature_2"]
        no_columns = features_from_uns(stored, "no_columns")
        np.testing.assert_array_equal(no_columns.to_numpy(), table.to_numpy())
    adata.uns["split_list"] = table.to_dict(orient="split")
    pd.testing.assert_frame_equal(features_from_uns(adata, "split_list"), table)


def test_features_from_uns_errors(table):
    adata = ad.AnnData(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(KeyError, match="no 'genept'"):
        features_from_uns(adata, "genept")
    adata.uns["array"] = table.to_numpy()
    with pytest.raises(TypeError, match="ndarray"):
        features_from_uns(adata, "array")
    adata.uns["short"] = {"index": ["A", "B"], "data": table.to_numpy()}
    with pytest.raises(ValueError, match="one row per index entry"):
        features_from_uns(adata, "short")
    adata.uns["ragged"] = {"A": np.zeros(3), "B": np.zeros(4)}
    with pytest.raises(ValueError, match="different lengths"):
        features_from_uns(adata, "ragged")
    adata.uns["text"] = {"A": ["x", "y"]}
    with pytest.raises(ValueError, match="not a numeric vector"):
        features_from_uns(adata, "text")
    adata.uns["nan"] = {"A": np.array([1.0, np.nan])}
    with pytest.raises(ValueError, match="NaN"):
        features_from_uns(adata, "nan")
