"""The group as a registered scvi-tools field: codes, names, transfer to new data, MuData,
and models saved before the field existed."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from _helpers import fresh_copy, small_demo

from scgde._constants import GROUP_REGISTRY_KEY
from scgde.data import GroupField, group_labels, registered_group_labels
from scgde.model import GDE, PerturbationGDE


@pytest.fixture(scope="module")
def demo():
    return small_demo(6, 20, 40)


def _manager(adata):
    from scvi.data import AnnDataManager

    manager = AnnDataManager(fields=[GroupField(GROUP_REGISTRY_KEY, ["condition", "sample"])])
    manager.register_fields(adata)
    return manager


def test_registered_codes_and_names_are_the_group_labels(demo):
    adata = demo.copy()
    manager = _manager(adata)
    expected = group_labels(adata.obs, ["condition", "sample"])
    labels = registered_group_labels(manager, GROUP_REGISTRY_KEY)
    assert list(labels.categories) == list(expected.categories)
    np.testing.assert_array_equal(np.asarray(labels), np.asarray(expected))
    assert adata.obs["_scvi_group"].dtype == np.int32
    summary = manager.get_state_registry(GROUP_REGISTRY_KEY)
    assert list(summary["original_keys"]) == ["condition", "sample"]
    assert manager.summary_stats["n_groups"] == len(expected.categories)


def test_transfer_keeps_the_registered_codes_and_appends_new_groups(demo):
    adata = demo.copy()
    manager = _manager(adata)
    known = list(manager.get_state_registry(GROUP_REGISTRY_KEY)["categorical_mapping"])
    # new data: two registered groups (in another order) and one new group
    samples = list(demo.obs["sample"].cat.categories)
    target = fresh_copy(demo[demo.obs["sample"].isin(samples[:2])])
    target = target[::-1].copy()
    new = target[:5].copy()
    new.obs["sample"] = "new_sample"
    new.obs_names = [f"new_{name}" for name in new.obs_names]
    target = fresh_copy(ad.concat([target, new]))
    moved = manager.transfer_fields(target)  # extend_categories is not needed for groups
    mapping = list(moved.get_state_registry(GROUP_REGISTRY_KEY)["categorical_mapping"])
    assert mapping[: len(known)] == known
    assert mapping[len(known) :] == [f"{target.obs['condition'].iloc[-1]} | new_sample"]
    labels = registered_group_labels(moved, GROUP_REGISTRY_KEY)
    np.testing.assert_array_equal(
        np.asarray(labels), np.asarray(group_labels(target.obs, ["condition", "sample"]))
    )
    codes = target.obs["_scvi_group"].to_numpy()
    names = target.obs["condition"].astype(str) + " | " + target.obs["sample"].astype(str)
    assert all(mapping[c] == n for c, n in zip(codes, names, strict=True))


def test_missing_group_column_is_the_usual_keyerror(demo):
    adata = demo.copy()
    manager = _manager(adata)
    del adata.obs["sample"]
    with pytest.raises(KeyError, match="Group column"):
        manager.transfer_fields(fresh_copy(adata))


def test_gde_registers_the_group_and_reads_it_back(demo):
    adata = demo.copy()
    GDE.setup_anndata(adata, group_key="sample")
    model = GDE(adata, n_latent=4)
    manager = model.adata_manager
    assert GROUP_REGISTRY_KEY in manager.data_registry
    assert manager.summary_stats["n_groups"] == adata.obs["sample"].nunique()
    np.testing.assert_array_equal(
        np.asarray(model._group_labels(adata)), np.asarray(group_labels(adata.obs, "sample"))
    )
    model.view_anndata_setup(hide_state_registries=False)  # the group table renders
    # the registered codes, not the column, are read for the registered object: relabelling
    # a group after set-up needs a new set-up (as for batches in scvi-tools)
    codes_before = model._group_labels(adata).codes.copy()
    relabelled = adata.obs["sample"].cat.rename_categories(lambda c: f"x{c}")
    adata.obs["sample"] = relabelled
    np.testing.assert_array_equal(model._group_labels(adata).codes, codes_before)
    # any other object (a user's copy) is read from its columns, and is not registered
    other = fresh_copy(adata)
    assert list(model._group_labels(other).categories)[0].startswith("x")
    assert "_scvi_uuid" not in other.uns and "_scvi_group" not in other.obs


def test_perturbation_model_registers_perturbation_and_context_pairs():
    rng = np.random.default_rng(0)
    demo = small_demo(4, 30, 30)
    adata = demo.copy()
    adata.obs["perturbation"] = pd.Categorical(rng.choice(["control", "A", "B"], adata.n_obs))
    adata.obs["context"] = adata.obs["condition"].astype(str)
    PerturbationGDE.setup_anndata(
        adata, perturbation_key="perturbation", control="control", context_key="context"
    )
    model = PerturbationGDE(adata, n_latent=4)
    mapping = model.adata_manager.get_state_registry(GROUP_REGISTRY_KEY)["categorical_mapping"]
    assert set(mapping) == {f"{p} | {c}" for p in "AB" for c in ("HC", "Severe")} | {
        f"control | {c}" for c in ("HC", "Severe")
    }


def test_new_groups_embed_on_a_loaded_model_saved_without_the_group_field(demo, tmp_path):
    adata = demo.copy()
    GDE.setup_anndata(adata, group_key="sample")
    model = GDE(adata, n_latent=4)
    model.train(max_epochs=1, set_size=16, train_size=1.0, enable_progress_bar=False)
    # a folder saved before the group was a field: its registry has no group entry
    del model.adata_manager.registry["field_registries"][GROUP_REGISTRY_KEY]
    model.save(tmp_path / "old")
    assert GROUP_REGISTRY_KEY not in GDE.load_registry(tmp_path / "old")["field_registries"]
    loaded = GDE.load(tmp_path / "old", adata=fresh_copy(demo))
    assert GROUP_REGISTRY_KEY in loaded.adata_manager.data_registry
    query = fresh_copy(demo)
    query.obs["sample"] = query.obs["sample"].cat.rename_categories(lambda c: f"new_{c}")
    emb = loaded.get_distribution_embedding(query, key_added=None)
    assert list(emb.index) == [f"new_{c}" for c in demo.obs["sample"].cat.categories]
    assert "_scvi_group" not in query.obs
