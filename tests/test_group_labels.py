"""Semi-supervised group labels: registration, the classifier head, predict_group_labels."""

import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from _helpers import fresh_copy, small_demo

from scgde._constants import GROUP_LABEL_KEY, SET_IDS_KEY, UNLABELED_CODE, X_KEY
from scgde.data import group_labels, group_level_labels
from scgde.model import GDE
from scgde.module import GDEModule

N_LABELLED = 4  # groups per condition whose label is shown to the model


def labelled_demo():
    """12 real samples (6 HC, 6 Severe); ``label`` keeps the condition of 8, NaN for 4."""
    adata = small_demo(12, 30, 100)
    shown = (
        adata.obs.groupby("condition", observed=True)["sample"]
        .apply(lambda s: sorted(s.unique())[:N_LABELLED])
        .explode()
    )
    adata.obs["label"] = (
        adata.obs["condition"].astype(object).where(adata.obs["sample"].isin(shown))
    )
    return adata


@pytest.fixture(scope="module")
def semi_supervised():
    scvi.settings.seed = 0
    adata = labelled_demo()
    GDE.setup_anndata(adata, group_key="sample", group_label_key="label")
    model = GDE(
        adata, n_latent=8, encoder_kwargs={"n_hidden": 32}, generator_kwargs={"n_hidden": 32}
    )
    model.train(
        max_epochs=40, set_size=16, groups_per_batch=6, train_size=1.0, enable_progress_bar=False
    )
    return model, adata


# --------------------------------------------------------------------- group-level labels
def test_group_level_labels_codes_and_unlabelled_groups():
    obs = pd.DataFrame(
        {
            "g": ["a", "a", "b", "b", "c", "d"],
            "y": ["x", np.nan, "w", "w", np.nan, "x"],
        }
    )
    codes, categories = group_level_labels(group_labels(obs, "g"), obs["y"])
    assert categories == ["w", "x"]
    # a: x (its NaN cell carries no information), b: w, c: unlabelled, d: x
    np.testing.assert_array_equal(codes, [1, 0, UNLABELED_CODE, 1])
    codes, categories = group_level_labels(group_labels(obs, "g"), obs["y"], ["x", "w", "v"])
    np.testing.assert_array_equal(codes, [0, 1, UNLABELED_CODE, 0])


def test_group_level_labels_errors():
    obs = pd.DataFrame({"g": ["a", "a", "b"], "y": ["x", "w", "w"]})
    with pytest.raises(ValueError, match=r"constant within each group.*\['a'\]"):
        group_level_labels(group_labels(obs, "g"), obs["y"], label_key="y")
    obs = pd.DataFrame({"g": ["a", "b"], "y": ["x", "w"]})
    with pytest.raises(ValueError, match=r"\['w'\].*not among"):
        group_level_labels(group_labels(obs, "g"), obs["y"], ["x", "v"])
    obs = pd.DataFrame({"g": ["a", "b"], "y": ["x", np.nan]})
    with pytest.raises(ValueError, match="at least 2"):
        group_level_labels(group_labels(obs, "g"), obs["y"])


def test_setup_errors_for_bad_label_column():
    adata = labelled_demo()
    with pytest.raises(KeyError, match="not a column"):
        GDE.setup_anndata(adata, group_key="sample", group_label_key="missing")
    adata.obs["per_cell"] = np.arange(adata.n_obs) % 2
    with pytest.raises(ValueError, match="constant within each group"):
        GDE.setup_anndata(adata, group_key="sample", group_label_key="per_cell")


def test_label_categories_need_a_label_key():
    adata = labelled_demo()
    GDE.setup_anndata(adata, group_key="sample")
    with pytest.raises(ValueError, match="needs a `group_label_key`"):
        GDE(adata, group_label_categories=["HC", "Severe"])
    model = GDE(adata, n_latent=4)
    with pytest.raises(ValueError, match="no group classifier"):
        model.predict_group_labels()


# -------------------------------------------------------------------------- module loss
def test_classification_loss_uses_only_labelled_sets():
    """Three sets in one minibatch: labels 1, unlabelled, 0; the loss is CE over sets 0 and 2."""
    torch.manual_seed(0)
    module = GDEModule(n_input=5, n_latent=3, likelihood="gaussian", n_labels=2)
    module.eval()
    x = torch.randn(7, 5)
    set_ids = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    codes = torch.tensor([1, 1, -1, -1, -1, 0, 0], dtype=torch.float32)
    tensors = {X_KEY: x, SET_IDS_KEY: set_ids, GROUP_LABEL_KEY: codes}
    inference = module.inference(x, set_ids)
    generative = module.generative(**module._get_generative_input(tensors, inference))
    out = module.loss(tensors, inference, generative, kl_weight=1.0)
    logits = module.classifier(inference["z_sets"][[0, 2]])
    expected_ce = torch.nn.functional.cross_entropy(logits, torch.tensor([1, 0]))
    torch.testing.assert_close(out.extra_metrics["classification_loss"], expected_ce.detach())
    reconstruction, kl = module.generator.loss(x, inference["latent"], generative)
    torch.testing.assert_close(
        out.loss, torch.mean(reconstruction + kl) + module.classification_ratio * expected_ce
    )


# ------------------------------------------------------------------ semi-supervised model
def test_history_records_the_classification_loss(semi_supervised):
    model, _ = semi_supervised
    loss = model.history["classification_loss_train"].to_numpy().ravel()
    # the head starts near chance (CE ~ log 2) and fits the 8 labelled groups
    assert loss[0] > 0.3
    assert loss[-5:].mean() < 0.5 * loss[0]


def test_predict_group_labels_fits_the_labelled_groups(semi_supervised):
    model, adata = semi_supervised
    before = fresh_copy(adata)
    table = model.predict_group_labels()
    assert list(table.columns) == ["prediction", "HC", "Severe", "observed"]
    assert len(table) == 12
    np.testing.assert_allclose(table[["HC", "Severe"]].sum(1), 1.0, rtol=1e-5)
    labelled = table["observed"].notna()
    assert labelled.sum() == 2 * N_LABELLED
    assert (table.loc[labelled, "prediction"] == table.loc[labelled, "observed"]).all()
    # prediction is the most probable class
    np.testing.assert_array_equal(
        table["prediction"].astype(str), np.where(table["Severe"] > table["HC"], "Severe", "HC")
    )
    after = fresh_copy(adata)
    assert list(after.obs.columns) == list(before.obs.columns)
    assert set(after.uns) == set(before.uns)


def test_predictions_survive_save_and_load(semi_supervised, tmp_path):
    model, adata = semi_supervised
    before = model.predict_group_labels()
    model.save(tmp_path / "model", overwrite=True)
    loaded = GDE.load(tmp_path / "model", adata=fresh_copy(adata))
    assert loaded.group_label_categories_ == ["HC", "Severe"]
    pd.testing.assert_frame_equal(loaded.predict_group_labels(), before)


def test_new_groups_are_classified(semi_supervised):
    model, adata = semi_supervised
    new = fresh_copy(adata[adata.obs["sample"].isin(adata.obs["sample"].cat.categories[:3])])
    new.obs["sample"] = new.obs["sample"].astype(str) + "_new"
    table = model.predict_group_labels(new)
    assert list(table.index) == sorted(new.obs["sample"].unique())


def test_generative_weight_zero_trains_only_the_classifier_path():
    scvi.settings.seed = 0
    adata = labelled_demo()
    GDE.setup_anndata(adata, group_key="sample", group_label_key="label")
    model = GDE(adata, n_latent=4, generative_weight=0.0)
    generator_before = {k: v.clone() for k, v in model.module.generator.state_dict().items()}
    encoder_before = {k: v.clone() for k, v in model.module.encoder.state_dict().items()}
    model.train(max_epochs=2, set_size=16, groups_per_batch=6, enable_progress_bar=False)
    for key, value in model.module.generator.state_dict().items():
        torch.testing.assert_close(value, generator_before[key])
    changed = [
        not torch.equal(v, encoder_before[k]) for k, v in model.module.encoder.state_dict().items()
    ]
    assert any(changed)


@pytest.mark.parametrize("name", ["classification_ratio", "generative_weight"])
def test_negative_weights_raise(name):
    adata = labelled_demo()
    GDE.setup_anndata(adata, group_key="sample", group_label_key="label")
    with pytest.raises(ValueError, match=name):
        GDE(adata, **{name: -1.0})
