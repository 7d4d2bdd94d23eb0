"""PerturbationGDE: registration, features, the shift predictor and predictions."""

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scvi

import scgde
from scgde.datasets import grn_perturbations
from scgde.model import PerturbationGDE
from scgde.tl import pseudobulk_shifts

N_HELD = 6


def simulated(seed=0, n_contexts=2):
    return grn_perturbations(
        n_genes=80,
        n_perturbations=30,
        n_cells_per_perturbation=40,
        n_control_cells=300,
        n_contexts=n_contexts,
        seed=seed,
    )


@pytest.fixture(scope="module")
def data():
    adata = simulated()
    perturbations = [p for p in adata.obs["perturbation"].cat.categories if p != "control"]
    held = perturbations[:N_HELD]
    train = adata[~adata.obs["perturbation"].isin(held)].copy()
    return adata, train, held


@pytest.fixture(scope="module")
def trained(data):
    _, train, _ = data
    scvi.settings.seed = 0
    PerturbationGDE.setup_anndata(
        train, perturbation_key="perturbation", control="control", context_key="context"
    )
    model = PerturbationGDE(train, n_latent=8, encoder_kwargs={"n_hidden": 32})
    model.train(max_epochs=15, predictor_epochs=150, enable_progress_bar=False)
    return model


def test_weight_average_is_off_by_default_for_perturbation_models(trained):
    plan = trained.trainer.lightning_module
    assert plan.ema_decay is None


def test_sets_are_perturbation_context_pairs(trained, data):
    _, train, _ = data
    assert trained.group_key == ["perturbation", "context"]
    pairs = trained._pairs(train)
    expected = train.obs.groupby(["perturbation", "context"], observed=True).ngroups
    assert len(pairs) == expected
    assert set(pairs["context"]) == {"context_0", "context_1"}


def test_default_features_are_coexpression_for_every_varying_gene(trained, data):
    adata, train, held = data
    assert trained.feature_kind_ == "coexpression"
    table = trained.perturbation_features_
    # held-out genes were never perturbed in training but get features from the controls
    assert set(held) <= set(table.index)
    assert table.shape[1] == 16


def test_predictor_starts_at_and_is_fitted_around_the_mean_shift(trained):
    shifts = trained.latent_shifts_
    values = shifts.drop(columns=["perturbation", "context"]).to_numpy()
    np.testing.assert_allclose(
        trained.module.shift_predictor.mean_shift.cpu().numpy(), values.mean(0), rtol=1e-5
    )
    history = trained.predictor_history_
    assert history["train_mse"].iloc[-1] < history["train_mse"].iloc[0]
    assert 1 <= trained.predictor_epochs_ <= 150
    # the same curves in model.history, beside the embedding's, for pl.training_history
    for split in ("train", "validation"):
        curve = trained.history[f"shift_mse_{split}"][f"shift_mse_{split}"]
        np.testing.assert_array_equal(curve.to_numpy(), history[f"{split}_mse"].to_numpy())
    assert "train_loss_epoch" in trained.history or "train_loss" in trained.history
    axes = scgde.pl.training_history(trained, "shift_mse", show=False)
    assert len(axes.get_lines()) == 2


def test_predict_held_out_perturbations(trained, data):
    adata, _, held = data
    predicted = trained.predict(held, n_cells=50, seed=0)
    assert predicted.n_obs == len(held) * 2 * 50  # every context with controls
    assert set(predicted.obs["perturbation"]) == set(held)
    assert set(predicted.obs["context"]) == {"context_0", "context_1"}
    x = predicted.X.toarray()
    assert np.all(x >= 0) and np.all(x == np.round(x))
    shift = predicted.uns["predicted_shift"]
    assert shift.shape == (len(held) * 2, adata.n_vars)
    assert list(shift.index.names) == ["perturbation", "context"]
    assert np.isfinite(shift.to_numpy()).all()
    embedding = predicted.uns["predicted_embedding"]
    assert embedding.shape == (len(held) * 2, 8)


def test_control_prediction_has_zero_shift(trained):
    """Decoding z_ctrl twice with the same noise: the bias-corrected shift is exactly 0."""
    predicted = trained.predict("control", contexts="context_0", n_cells=30, seed=1)
    np.testing.assert_allclose(predicted.uns["predicted_shift"].to_numpy(), 0.0, atol=1e-12)


def test_predicted_embedding_is_control_plus_predicted_shift(trained, data):
    _, train, held = data
    predicted = trained.predict(held[:2], contexts="context_1", n_cells=5)
    z_ctrl = trained.get_distribution_embedding(
        train, groups=["control | context_1"], key_added=None
    ).to_numpy()[0]
    features = trained.perturbation_features_.loc[held[:2]].to_numpy(dtype=np.float32)
    import torch

    with torch.no_grad():
        shift = trained.module.shift_predictor(
            torch.as_tensor(np.tile(z_ctrl, (2, 1)), dtype=torch.float32),
            torch.as_tensor(features),
        ).numpy()
    np.testing.assert_allclose(
        predicted.uns["predicted_embedding"].to_numpy(),
        z_ctrl + trained.shift_scale_ * shift,
        rtol=1e-4,
        atol=1e-5,
    )


def test_latent_arithmetic_uses_the_mean_training_shift(trained, data):
    _, train, _ = data
    seen = [p for p in train.obs["perturbation"].cat.categories if p != "control"][0]
    predicted = trained.predict(seen, contexts="context_0", n_cells=5, method="latent_arithmetic")
    shifts = trained.latent_shifts_
    mean = shifts[shifts["perturbation"] == seen].drop(columns=["perturbation", "context"])
    z_ctrl = trained.get_distribution_embedding(
        train, groups=["control | context_0"], key_added=None
    ).to_numpy()[0]
    np.testing.assert_allclose(
        predicted.uns["predicted_embedding"].to_numpy()[0],
        z_ctrl + mean.to_numpy().mean(0),
        rtol=1e-4,
        atol=1e-5,
    )


def test_latent_arithmetic_refuses_unseen_perturbations(trained, data):
    _, _, held = data
    with pytest.raises(ValueError, match="observed in training"):
        trained.predict(held[0], method="latent_arithmetic")


def test_perturbation_embedding_written_to_uns(trained, data):
    _, train, _ = data
    table = trained.get_perturbation_embedding()
    perturbed = sorted(set(train.obs["perturbation"]) - {"control"})
    assert list(table.index) == perturbed
    assert table.shape[1] == 8
    assert train.uns["X_gde_perturbation"] is table


def test_missing_features_name_the_perturbation(trained):
    with pytest.raises(KeyError, match="NOT_A_GENE"):
        trained.predict("NOT_A_GENE", contexts="context_0")


def test_bad_requests(trained):
    with pytest.raises(ValueError, match="Unknown method"):
        trained.predict("G0000", method="magic")
    with pytest.raises(ValueError, match="same length"):
        trained.predict(["G0000", "G0001"], contexts=["context_0"])
    with pytest.raises(ValueError, match="context_9"):
        trained.predict("G0000", contexts="context_9")


def test_user_feature_table_and_one_hot_default():
    adata = simulated(seed=1, n_contexts=1)
    adata.obs["perturbation"] = adata.obs["perturbation"].astype(str)
    adata.obs.loc[adata.obs["perturbation"] != "control", "perturbation"] = "drug_" + (
        adata.obs["perturbation"].astype(str)
    )
    adata.obs["perturbation"] = adata.obs["perturbation"].astype("category")
    PerturbationGDE.setup_anndata(adata, perturbation_key="perturbation")
    model = PerturbationGDE(adata, n_latent=4)
    assert model.feature_kind_ == "one_hot"  # parts are not genes
    parts = [p for p in adata.obs["perturbation"].cat.categories if p != "control"]
    table = pd.DataFrame(np.eye(len(parts))[:, :3], index=parts)
    adata.uns["drug_embedding"] = table
    model = PerturbationGDE(adata, n_latent=4, features="drug_embedding")
    assert model.perturbation_features_.shape == (len(parts), 3)
    with pytest.raises(KeyError, match="drug_"):
        PerturbationGDE(adata, n_latent=4, features=table.iloc[1:])


def test_setup_errors():
    adata = simulated(seed=2, n_contexts=2)
    with pytest.raises(ValueError, match="No control cells"):
        PerturbationGDE.setup_anndata(adata, perturbation_key="perturbation", control="ctrl")
    with pytest.raises(KeyError, match="cell_line"):
        PerturbationGDE.setup_anndata(
            adata, perturbation_key="perturbation", context_key="cell_line"
        )
    no_control = adata[
        ~((adata.obs["perturbation"] == "control") & (adata.obs["context"] == "context_1"))
    ].copy()
    with pytest.raises(ValueError, match="context_1"):
        PerturbationGDE.setup_anndata(
            no_control, perturbation_key="perturbation", context_key="context"
        )


def test_save_load_keeps_features_predictor_and_knockdown(trained, data, tmp_path):
    _, train, held = data
    trained.save(tmp_path / "m")
    loaded = PerturbationGDE.load(tmp_path / "m", adata=train)
    pd.testing.assert_frame_equal(loaded.perturbation_features_, trained.perturbation_features_)
    pd.testing.assert_series_equal(loaded.knockdown_factors_, trained.knockdown_factors_)
    assert loaded.knockdown_factor_ == trained.knockdown_factor_
    loaded.latent_shifts_ = trained.latent_shifts_
    a = trained.predict(held[:2], contexts="context_0", n_cells=5, seed=0)
    b = loaded.predict(held[:2], contexts="context_0", n_cells=5, seed=0)
    np.testing.assert_allclose(
        a.uns["predicted_embedding"].to_numpy(), b.uns["predicted_embedding"].to_numpy(), rtol=1e-5
    )


def test_training_data_is_not_modified_beyond_registration(data):
    _, train, _ = data
    fresh = simulated()
    before = fresh.obs.copy()
    PerturbationGDE.setup_anndata(
        fresh, perturbation_key="perturbation", control="control", context_key="context"
    )
    added = set(fresh.obs.columns) - set(before.columns)
    assert all(c.startswith("_scvi") for c in added)
    pd.testing.assert_frame_equal(fresh.obs[before.columns], before)


def test_embedding_shifts_grow_with_the_perturbation_effect(trained, data):
    """Perturbations that change expression more move their set's embedding further."""
    from scipy.stats import spearmanr

    _, train, _ = data
    lognorm = train.copy()
    sc.pp.normalize_total(lognorm, target_sum=1e4)
    sc.pp.log1p(lognorm)
    truth = pseudobulk_shifts(lognorm, "perturbation", "control", context_key="context")
    shifts = trained.latent_shifts_
    dz = np.linalg.norm(shifts.drop(columns=["perturbation", "context"]).to_numpy(), axis=1)
    pairs = zip(shifts["perturbation"], shifts["context"], strict=True)
    effect = np.array([np.linalg.norm(truth.loc[pair]) for pair in pairs])
    rho = spearmanr(dz, effect).statistic
    # 48 pairs: under no relation rho ~ N(0, 1 / sqrt(47) = 0.15); ask for > 2 SE
    assert rho > 0.3


# ------------------------------------------------------------------------- target knock-down
def test_knockdown_factors_estimated_from_training_targets(trained, data):
    adata, train, held = data
    assert trained.target_knockdown_  # genetic perturbations of count data: on by default
    factors = trained.knockdown_factors_
    singles = set(train.obs["perturbation"].cat.categories) - {"control"}
    assert set(factors.index) <= singles and not set(held) & set(factors.index)
    assert len(factors) >= 0.8 * len(singles)
    # the simulation knocks every target down to kappa = 0.1 of its expression; the median
    # of ~24 noisy per-target ratios (40 cells each) is within a factor 1.5 of it
    kappa = adata.uns["grn"]["knockdown_factor"]
    assert abs(np.log(trained.knockdown_factor_ / kappa)) < np.log(1.5)


def test_predicted_targets_are_knocked_down_and_nothing_else_changes(trained, data):
    _, _, held = data
    kwargs = {"contexts": "context_0", "n_cells": 300, "seed": 3}
    knocked = trained.predict(held, **kwargs)
    plain = trained.predict(held, target_knockdown=False, **kwargs)
    assert knocked.uns["perturbation_prediction"]["target_knockdown"]
    assert not plain.uns["perturbation_prediction"]["target_knockdown"]
    record = knocked.uns["target_knockdown"]
    assert list(record["target"]) == held and not record["seen"].any()
    np.testing.assert_allclose(record["factor"], trained.knockdown_factor_)
    a, b = knocked.X.toarray(), plain.X.toarray()
    genes = list(trained.var_names)
    target_column = np.array([genes.index(p) for p in knocked.obs["perturbation"]])
    is_target = np.arange(a.shape[1])[None, :] == target_column[:, None]
    np.testing.assert_array_equal(a[~is_target], b[~is_target])  # same cells otherwise
    assert np.all(a[is_target] <= b[is_target])
    # pooled over targets the counts drop by about the factor (0.1; the decoder barely lowers
    # unseen targets by itself); without thinning the ratio would be 1
    assert a[is_target].sum() / b[is_target].sum() < 0.5
    shift_a, shift_b = knocked.uns["predicted_shift"], plain.uns["predicted_shift"]
    for p in held:
        assert shift_a.loc[(p, "context_0"), p] < shift_b.loc[(p, "context_0"), p]


def test_seen_target_uses_its_own_factor(trained):
    target = trained.knockdown_factors_.index[0]
    predicted = trained.predict(target, contexts="context_0", n_cells=20, seed=0)
    record = predicted.uns["target_knockdown"].iloc[0]
    assert record["seen"]
    assert record["factor"] == pytest.approx(trained.knockdown_factors_[target])


def test_target_knockdown_errors():
    adata = simulated(seed=1, n_contexts=1)
    adata.obs["perturbation"] = adata.obs["perturbation"].astype(str)
    drugs = adata.obs["perturbation"] != "control"
    adata.obs.loc[drugs, "perturbation"] = "drug_" + adata.obs.loc[drugs, "perturbation"]
    adata.obs["perturbation"] = adata.obs["perturbation"].astype("category")
    PerturbationGDE.setup_anndata(adata, perturbation_key="perturbation")
    assert not PerturbationGDE(adata, n_latent=4).target_knockdown_  # parts are not genes
    with pytest.raises(ValueError, match="drug_.*not genes"):
        PerturbationGDE(adata, n_latent=4, target_knockdown=True)
    with pytest.raises(TypeError, match="target_knockdown"):
        PerturbationGDE(adata, n_latent=4, target_knockdown="yes")


def test_combination_knocks_down_every_gene_part(trained, data):
    _, _, held = data
    combo = f"{held[0]}+{held[1]}"
    kwargs = {"contexts": "context_0", "n_cells": 200, "seed": 5}
    knocked = trained.predict(combo, **kwargs)
    plain = trained.predict(combo, target_knockdown=False, **kwargs)
    assert list(knocked.uns["target_knockdown"]["target"]) == held[:2]
    genes = list(trained.var_names)
    columns = [genes.index(g) for g in held[:2]]
    a, b = knocked.X.toarray(), plain.X.toarray()
    others = np.setdiff1d(np.arange(a.shape[1]), columns)
    np.testing.assert_array_equal(a[:, others], b[:, others])
    assert a[:, columns].sum() < 0.5 * b[:, columns].sum()


# ---------------------------------------------------------------------- shift calibration
def test_shift_scale_is_the_validated_minimum(trained):
    calibration = trained.shift_calibration_
    np.testing.assert_allclose(calibration.index.to_numpy(), np.linspace(0, 1, 11))
    assert np.isfinite(calibration["mse"]).all() and (calibration["mse"] > 0).all()
    assert trained.shift_scale_ == calibration["mse"].idxmin()


def test_zero_shift_scale_predicts_the_controls(trained, data):
    """With scale 0 the prediction decodes z_ctrl: the same cells as the control with the
    same noise, so the shift is exactly 0 without the knock-down."""
    _, _, held = data
    scale = trained.shift_scale_
    try:
        trained.shift_scale_ = 0.0
        predicted = trained.predict(
            held[:2], contexts="context_0", n_cells=20, seed=3, target_knockdown=False
        )
        control = trained.predict("control", contexts="context_0", n_cells=20, seed=3)
    finally:
        trained.shift_scale_ = scale
    np.testing.assert_allclose(predicted.uns["predicted_shift"].to_numpy(), 0.0, atol=1e-12)
    z = predicted.uns["predicted_embedding"].to_numpy()
    np.testing.assert_allclose(z, np.tile(control.uns["predicted_embedding"].to_numpy(), (2, 1)))


def _shared_response(seed=0, n_perturbations=16, n_genes=20, n_cells=60, n_control=300):
    """Continuous data where every perturbation has the same effect: genes 0-4 up by 2."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    labels = ["control"] * n_control + [
        f"drug{i}" for i in range(n_perturbations) for _ in range(n_cells)
    ]
    x = rng.normal(size=(len(labels), n_genes)).astype(np.float32)
    x[np.array(labels) != "control", :5] += 2.0
    return ad.AnnData(
        x,
        obs=pd.DataFrame({"perturbation": labels}, index=[f"c{i}" for i in range(len(labels))]),
        var=pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]),
    )


def test_a_shared_response_keeps_the_predicted_shift():
    """When every perturbation has the same effect the predicted shift is the learned mean
    shift: decoding it explains the held-out shifts, and scale 0 (no shift) misses all of
    them (validation error 5 * 2**2 / 20 = 1 plus noise), so the calibration keeps it."""
    adata = _shared_response()
    scvi.settings.seed = 0
    PerturbationGDE.setup_anndata(adata, perturbation_key="perturbation", control="control")
    model = PerturbationGDE(adata, n_latent=4, encoder_kwargs={"n_hidden": 32})
    model.train(max_epochs=30, predictor_epochs=100, enable_progress_bar=False)
    mse = model.shift_calibration_["mse"]
    assert 0.9 < mse.loc[0.0] < 1.2
    assert model.shift_scale_ >= 0.5
    assert mse.loc[model.shift_scale_] < 0.5 * mse.loc[0.0]


def test_calibration_can_be_turned_off(trained):
    before = (trained.shift_scale_, trained.shift_calibration_.copy())
    try:
        trained.train_predictor(max_epochs=150, calibrate=False)
        assert trained.shift_scale_ == 1.0 and trained.shift_calibration_ is None
    finally:
        trained.train_predictor(max_epochs=150)
    assert trained.shift_scale_ == before[0]
    pd.testing.assert_frame_equal(trained.shift_calibration_, before[1])


# ---------------------------------------------------------------- shrinkage of the changes
def _log_cp10k(x) -> np.ndarray:
    x = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)
    return np.log1p(x / np.maximum(x.sum(1, keepdims=True), 1e-12) * 1e4)


def test_shrinkage_weights_are_the_share_of_signal_in_the_observed_shifts(trained, data):
    """The weights follow their definition, recomputed here from the training cells, and are
    larger on genes the simulation's knock-down changes than on genes it leaves alone."""
    adata, train, _ = data
    seen = [p for p in train.obs["perturbation"].cat.categories if p != "control"][:6]
    pred = trained.predict(seen, contexts="context_0", n_cells=20, seed=1, shrinkage=True)
    weights = pred.uns["response_evidence"]
    assert pred.uns["perturbation_prediction"]["shrinkage"]
    assert weights.shape == (len(seen), train.n_vars)
    assert ((weights >= 0) & (weights <= 1)).all().all()
    obs = train.obs
    values = _log_cp10k(train.X)
    affected, unaffected = [], []
    true_mean = np.log(adata.uns["grn"]["true_mean"][0])  # context_0: groups x genes
    groups = list(adata.uns["grn"]["groups"])
    for p in seen:
        signal = noise = 0.0
        for context in ("context_0", "context_1"):
            moments = []
            for label in (p, "control"):
                rows = (obs["perturbation"] == label) & (obs["context"] == context)
                v = values[rows.to_numpy()]
                moments.append((v.mean(0), v.var(0) / len(v)))
            signal = signal + (moments[0][0] - moments[1][0]) ** 2
            noise = noise + moments[0][1] + moments[1][1]
        ratio = (signal - noise) / np.where(signal > 0, signal, 1.0)
        expected = np.clip(np.where(signal > 0, ratio, 0.0), 0, 1)
        row = weights.loc[(p, "context_0")].to_numpy()
        np.testing.assert_allclose(row, expected, rtol=1e-4, atol=1e-6)
        effect = np.abs(true_mean[groups.index(p)] - true_mean[groups.index("control")])
        affected.extend(row[effect > 0.1])
        unaffected.extend(row[effect == 0])
    # most genes are untouched by a knock-down; those it moves show through the noise
    assert len(affected) > 10 and len(unaffected) > 100
    assert np.mean(affected) > np.mean(unaffected) + 0.2


def test_shrinkage_removes_changes_of_genes_without_evidence(trained, data):
    """Each count of a shrunk cell is either the moved cell's or the control cell's own; genes
    with weight 0 keep the control cells' counts; an unseen perturbation is left as it was."""
    _, train, held = data
    seen = [p for p in train.obs["perturbation"].cat.categories if p != "control"][0]
    kwargs = {"contexts": "context_0", "n_cells": 50, "seed": 2, "target_knockdown": False}
    # the same control cells are drawn for one pair with the same seed
    control = trained.predict("control", **kwargs).X.toarray()
    # latent arithmetic: the mean observed shift in z, which the calibrated scale does not touch
    plain = trained.predict(seen, method="latent_arithmetic", **kwargs).X.toarray()
    shrunk = trained.predict(seen, method="latent_arithmetic", shrinkage=True, **kwargs)
    weights = shrunk.uns["response_evidence"].to_numpy()[0]
    out = shrunk.X.toarray()
    moved = plain != control
    assert moved.any()
    assert np.all((out == plain) | (out == control))
    zero = weights == 0
    assert zero.any() and moved[:, zero].any()  # the plain prediction moved those genes
    np.testing.assert_array_equal(out[:, zero], control[:, zero])
    # changed entries are kept at about their genes' weights (binomial, 5 SE)
    share = (out == plain)[moved].mean()
    expected = np.broadcast_to(weights, moved.shape)[moved]
    se = np.sqrt(np.sum(expected * (1 - expected))) / expected.size
    assert abs(share - expected.mean()) < 5 * se + 1e-9
    unseen_plain = trained.predict(held[:2], **kwargs)
    unseen = trained.predict(held[:2], shrinkage=True, **kwargs)
    np.testing.assert_array_equal(unseen.uns["response_evidence"].to_numpy(), 1.0)
    np.testing.assert_array_equal(unseen.X.toarray(), unseen_plain.X.toarray())
