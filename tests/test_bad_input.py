"""Malformed and unusual input: each case is a clear error or a correct result, and the user's
AnnData is never changed except for the documented keys (issue 16)."""

import json
import signal

import anndata as ad
import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse

from scgde.cli import main as cli_main
from scgde.data import GroupDataSplitter, group_labels, sets_per_epoch
from scgde.datasets import grn_perturbations
from scgde.model import GDE, PerturbationGDE
from scgde.tl import mean_shift_baseline


def counts(n_groups=6, n_cells=30, n_genes=20, seed=0):
    """Poisson counts of ``n_groups`` groups, with an integer batch column (0/1)."""
    rng = np.random.default_rng(seed)
    rates = rng.gamma(2.0, 1.0, (n_groups, n_genes))
    x = rng.poisson(np.repeat(rates, n_cells, axis=0)).astype(np.float32)
    groups = np.repeat([f"g{i}" for i in range(n_groups)], n_cells)
    obs = pd.DataFrame(
        {"group": groups, "batch": np.tile([0, 1], len(groups) // 2)},
        index=[f"cell{i}" for i in range(len(groups))],
    )
    return ad.AnnData(
        sparse.csr_matrix(x), obs=obs, var=pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)])
    )


def snapshot(adata) -> dict:
    """The contents of an AnnData, to compare before and after a call."""
    x = adata.X.toarray() if sparse.issparse(adata.X) else np.array(adata.X)
    return {
        "obs": adata.obs.copy(),
        "var": adata.var.copy(),
        "X": x,
        "uns": sorted(adata.uns),
        "obsm": sorted(adata.obsm),
        "layers": sorted(adata.layers),
        "is_view": adata.is_view,
    }


def assert_unchanged(adata, before: dict) -> None:
    after = snapshot(adata)
    pd.testing.assert_frame_equal(after["obs"], before["obs"])
    pd.testing.assert_frame_equal(after["var"], before["var"])
    np.testing.assert_array_equal(after["X"], before["X"])
    for key in ("uns", "obsm", "layers", "is_view"):
        assert after[key] == before[key], key


def train_quietly(model, **kwargs):
    kwargs = {"max_epochs": 2, "set_size": 8, "groups_per_batch": 3, "train_size": 1.0, **kwargs}
    model.train(enable_progress_bar=False, **kwargs)
    return model


def untrained(adata=None, **setup):
    """A small GDE (seed 0) on ``adata`` (default: :func:`counts`)."""
    scvi.settings.seed = 0
    adata = counts() if adata is None else adata
    GDE.setup_anndata(adata, group_key="group", **setup)
    return GDE(adata, n_latent=4, encoder_kwargs={"n_hidden": 16})


@pytest.fixture(scope="module")
def trained():
    return train_quietly(untrained(batch_key="batch"))


# ------------------------------------------------------------------------- set-up checks
def test_no_cells_is_a_clear_error_at_setup_and_on_new_data(trained):
    empty = counts()[:0].copy()
    with pytest.raises(ValueError, match="0 cells"):
        GDE.setup_anndata(empty, group_key="group")
    with pytest.raises(ValueError, match="0 cells"):
        trained.get_distribution_embedding(counts()[:0].copy(), key_added=None)


def test_no_genes_is_a_clear_error():
    with pytest.raises(ValueError, match="0 genes"):
        GDE.setup_anndata(counts()[:, :0].copy(), group_key="group")


def test_duplicated_gene_names_are_refused_at_setup():
    adata = counts()
    adata.var_names = ["gene0", *adata.var_names[:-1]]
    with pytest.raises(ValueError, match="var_names_make_unique"):
        GDE.setup_anndata(adata, group_key="group")


def test_backed_anndata_trains_and_embeds_like_in_memory_without_writing_the_file(tmp_path):
    import hashlib

    path = tmp_path / "x.h5ad"
    counts().write_h5ad(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    backed = ad.read_h5ad(path, backed="r")
    try:
        GDE.setup_anndata(backed, group_key="group")
        scvi.settings.seed = 0
        model = GDE(backed, n_latent=3)
        model.train(max_epochs=2, set_size=8, groups_per_batch=3, enable_progress_bar=False)
        table = model.get_distribution_embedding()  # into the in-memory obsm / uns
        assert backed.isbacked and backed.obsm["X_gde"].shape == (backed.n_obs, 3)
        in_memory = model.get_distribution_embedding(ad.read_h5ad(path), key_added=None)
        np.testing.assert_allclose(table.to_numpy(), in_memory.to_numpy(), rtol=1e-6)
        assert model.sample(n_cells=4, groups=["g0"]).shape == (4, backed.n_vars)
        with pytest.raises(ValueError, match="to_memory"):  # a view of it is new data
            model.get_distribution_embedding(backed[:10], key_added=None)
    finally:
        backed.file.close()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_lazy_anndata_trains_and_embeds_like_in_memory_with_x_left_lazy(tmp_path):
    """``anndata.experimental.read_lazy``: obs and var are loaded at set-up (scvi-tools writes
    into obs), X stays a dask array read in blocks, results equal the in-memory ones, the file
    is not written, and new lazy data are embedded without changing them."""
    import hashlib

    import dask.array as da
    from anndata.experimental import read_lazy

    path = tmp_path / "x.h5ad"
    counts().write_h5ad(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    tables = {}
    for mode in ("memory", "lazy"):
        adata = ad.read_h5ad(path) if mode == "memory" else read_lazy(path)
        GDE.setup_anndata(adata, group_key="group", batch_key="batch")
        scvi.settings.seed = 0
        model = GDE(adata, n_latent=3)
        model.train(max_epochs=2, set_size=8, groups_per_batch=3, enable_progress_bar=False)
        tables[mode] = model.get_distribution_embedding()
        assert adata.obsm["X_gde"].shape == (adata.n_obs, 3)
    assert isinstance(adata.X, da.Array) and isinstance(adata.obs, pd.DataFrame)
    np.testing.assert_allclose(tables["lazy"].to_numpy(), tables["memory"].to_numpy(), rtol=1e-6)
    new = read_lazy(path)
    new_z = model.get_distribution_embedding(new, key_added=None)
    np.testing.assert_allclose(new_z.to_numpy(), tables["lazy"].to_numpy(), rtol=1e-6)
    assert not isinstance(new.obs, pd.DataFrame)  # new data are not loaded in place
    assert model.sample(n_cells=4, groups=["g0"]).shape == (4, adata.n_vars)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    with pytest.raises(KeyError, match="no_such_column"):
        GDE.setup_anndata(read_lazy(path), group_key="no_such_column")


def test_combined_group_names_that_collide_are_refused():
    obs = pd.DataFrame({"a": ["x | y", "x"], "b": ["z", "y | z"]})
    with pytest.raises(ValueError, match="same group name 'x \\| y \\| z'"):
        group_labels(obs, ["a", "b"])


@pytest.mark.parametrize(
    ("setup", "change", "error", "message"),
    [
        ({"batch_key": "batch"}, lambda a: a.obs.drop(columns="batch", inplace=True),
         KeyError, "no column 'batch'"),
        ({"batch_key": "batch"}, lambda a: a.obs.__setitem__("batch", [np.nan] + [1] * 179),
         ValueError, "1 missing values; every cell needs a batch"),
        ({"categorical_covariate_keys": ["site"]},
         lambda a: a.obs.__setitem__("site", ["x", None] * 90), ValueError, "90 missing values"),
        ({"continuous_covariate_keys": ["age"]},
         lambda a: a.obs.__setitem__("age", [np.nan] + [1.0] * 179), ValueError, "missing or inf"),
        ({"continuous_covariate_keys": ["age"]},
         lambda a: a.obs.__setitem__("age", ["y"] * 180), ValueError, "must be numeric"),
        ({}, lambda a: setattr(a, "X", None), ValueError, "adata.X is empty"),
    ],
)  # fmt: skip
def test_bad_covariate_columns_fail_before_anything_is_registered(setup, change, error, message):
    adata = counts()
    change(adata)
    before = snapshot(adata) if adata.X is not None else None
    with pytest.raises(error, match=message):
        GDE.setup_anndata(adata, group_key="group", **setup)
    assert not any(k.startswith("_scvi") for k in [*adata.obs.columns, *adata.uns, *adata.obsm])
    if before is not None:
        assert_unchanged(adata, before)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"lr": -1.0}, ValueError, "`lr` must be a positive number"),
        ({"plan_kwargs": {"no_such_option": 1}}, TypeError, "Unknown `plan_kwargs`"),
    ],
)
def test_bad_training_arguments_fail_before_training(trained, kwargs, error, message):
    with pytest.raises(error, match=message):
        trained.train(max_epochs=1, **kwargs)


# ------------------------------------------------------------------------------ new data
def test_a_mudata_for_a_model_set_up_on_an_anndata(trained):
    mudata = pytest.importorskip("mudata")
    with pytest.raises(TypeError, match="set up on an AnnData"):
        trained.get_distribution_embedding(mudata.MuData({"rna": counts()}), key_added=None)


def test_empty_groups_indices_out_of_range_and_reserved_keys(trained):
    new = counts(seed=1)
    with pytest.raises(ValueError, match="`groups` is empty"):
        trained.get_distribution_embedding(new, groups=[], key_added=None)
    with pytest.raises(IndexError, match="outside the 180 cells"):
        trained.get_latent_representation(new, indices=[0, 5000])
    np.testing.assert_allclose(
        trained.get_latent_representation(new, indices=[-1]),
        trained.get_latent_representation(new, indices=[179]),
    )
    with pytest.raises(ValueError, match="reserved"):
        trained.get_distribution_embedding(new, key_added="gde")


def test_embeddings_to_sample_from_need_rows_and_unique_names(trained):
    with pytest.raises(ValueError, match="no rows"):
        trained.sample(embedding=np.zeros((0, 4)), n_cells=2)
    table = pd.DataFrame(np.zeros((2, 4)), index=["a", "a"])
    with pytest.raises(ValueError, match=r"duplicated row names \['a'\]"):
        trained.sample(embedding=table, n_cells=2)


def test_batches_stored_as_strings_are_the_training_batches(trained):
    as_ints = counts(seed=1)
    as_strings = counts(seed=1)
    as_strings.obs["batch"] = as_strings.obs["batch"].astype(str).astype("category")
    before = snapshot(as_strings)
    expected = trained.get_distribution_embedding(as_ints, key_added=None)
    result = trained.get_distribution_embedding(as_strings, key_added=None)
    pd.testing.assert_frame_equal(result, expected)
    assert_unchanged(as_strings, before)


def test_missing_batch_column_names_the_column(trained):
    new = counts(seed=1)
    del new.obs["batch"]
    with pytest.raises(KeyError, match="no column .batch. \\(batch or covariate\\)"):
        trained.get_distribution_embedding(new, key_added=None)


def test_unseen_batch_is_a_clear_error_and_leaves_the_data_alone(trained):
    new = counts(seed=1)
    new.obs["batch"] = 7
    before = snapshot(new)
    with pytest.raises(ValueError, match=r"Batch categories \['7'\]"):
        trained.get_distribution_embedding(new)
    assert_unchanged(new, before)


def test_failed_value_check_on_new_data_leaves_no_registration_keys(trained):
    new = counts(seed=1)
    new.X = new.X.astype(np.float32) * 0.5  # non-integer counts
    before = snapshot(new)
    with pytest.raises(ValueError, match="non-integer"):
        trained.get_distribution_embedding(new)
    assert_unchanged(new, before)


def test_read_only_methods_do_not_modify_new_data(trained):
    new = counts(seed=2)
    before = snapshot(new)
    trained.get_group_adata(new)
    trained.get_distribution_embedding(new, key_added=None)
    trained.get_latent_representation(new)
    trained.sample(adata=new, n_cells=2)
    assert_unchanged(new, before)


def test_embedding_writes_only_its_keys_into_new_data(trained):
    new = counts(seed=2)
    before = snapshot(new)
    table = trained.get_distribution_embedding(new, key_added="X_new")
    assert set(new.uns) - set(before["uns"]) == {"X_new", "gde"}
    assert set(new.obsm) == {"X_new"}
    pd.testing.assert_frame_equal(new.obs, before["obs"])
    np.testing.assert_array_equal(new.obsm["X_new"][0], table.loc["g0"].to_numpy())


def test_a_view_stays_a_view(trained):
    whole = counts(seed=3)
    view = whole[whole.obs["group"] != "g5"]
    before = snapshot(view)
    table = trained.get_distribution_embedding(view, key_added=None)
    assert list(table.index) == [f"g{i}" for i in range(5)]
    assert_unchanged(view, before)


def test_key_added_with_a_slash_is_refused_before_anything_is_written(trained):
    new = counts(seed=2)
    before = snapshot(new)
    with pytest.raises(ValueError, match="contains '/'"):
        trained.get_distribution_embedding(new, key_added="X/gde")
    assert_unchanged(new, before)


def test_repeated_calls_on_new_data_do_not_accumulate_registrations(trained):
    store = trained._per_instance_manager_store[trained.id]
    for seed in range(8):
        trained.get_distribution_embedding(counts(seed=seed), key_added=None)
    assert len(store) <= 1 + 4  # the training data and the last working copies


# --------------------------------------------------------------------------- save / load
def test_load_of_missing_or_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        GDE.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no model.pt"):
        GDE.load(tmp_path / "empty")


def test_load_of_a_truncated_file(trained, tmp_path):
    trained.save(tmp_path / "m")
    weights = tmp_path / "m" / "model.pt"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(ValueError, match="damaged or not a saved model"):
        GDE.load(tmp_path / "m", adata=counts())


def test_load_of_weights_that_do_not_fit_the_settings(trained, tmp_path):
    trained.save(tmp_path / "m")
    weights = tmp_path / "m" / "model.pt"
    saved = torch.load(weights, weights_only=False)
    saved["model_state_dict"] = {
        name: torch.zeros(*(s + 1 for s in value.shape))
        if torch.is_tensor(value) and value.ndim
        else value
        for name, value in saved["model_state_dict"].items()
    }
    torch.save(saved, weights)
    with pytest.raises(ValueError, match="do not fit the model"):
        GDE.load(tmp_path / "m", adata=counts())


@pytest.mark.parametrize(
    ("info", "message"),
    [
        ({"model_class": "PerturbationGDE", "format": 1}, "PerturbationGDE.load"),
        ({"model_class": "GDE", "format": 99}, "upgrade scgde"),
    ],
)
def test_load_of_another_class_or_a_newer_format(trained, tmp_path, info, message):
    trained.save(tmp_path / "m")
    recorded = json.loads((tmp_path / "m" / "scgde.json").read_text())
    assert recorded["model_class"] == "GDE" and recorded["format"] == 1
    (tmp_path / "m" / "scgde.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=message):
        GDE.load(tmp_path / "m")


def test_load_without_data_of_a_model_saved_without_data(trained, tmp_path):
    trained.save(tmp_path / "m")
    with pytest.raises(ValueError, match="holds no data"):
        GDE.load(tmp_path / "m")
    trained.save(tmp_path / "with_data", save_anndata=True)
    assert GDE.load(tmp_path / "with_data").adata.n_obs == 180


def test_save_onto_a_file_or_a_foreign_folder_keeps_them(trained, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    with pytest.raises(ValueError, match="is a file"):
        trained.save(target, overwrite=True)
    assert target.read_text() == "mine"
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "table.csv").write_text("a,b")
    with pytest.raises(ValueError, match="not a saved model"):
        trained.save(folder, overwrite=True)
    assert (folder / "table.csv").read_text() == "a,b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "results"]


def test_save_overwrites_a_saved_model(trained, tmp_path):
    trained.save(tmp_path / "m")
    trained.save(tmp_path / "m", overwrite=True)
    loaded = GDE.load(tmp_path / "m", adata=counts())
    assert loaded.module.n_latent == trained.module.n_latent
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


# ------------------------------------------------------------------------------ training
class _InterruptAt(pl.Callback):
    """Raise KeyboardInterrupt (what Ctrl+C raises) after ``step`` optimizer steps."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step >= self.step:
            raise KeyboardInterrupt


def test_ctrl_c_stops_training_and_keeps_a_usable_model():
    model = untrained()
    initial = {k: v.clone() for k, v in model.module.state_dict().items()}
    handler = signal.getsignal(signal.SIGINT)
    with pytest.warns(UserWarning, match="interrupted"):
        train_quietly(model, max_epochs=50, callbacks=[_InterruptAt(5)])
    assert signal.getsignal(signal.SIGINT) is handler
    assert model.is_trained_ and model.trainer.global_step == 5
    changed = [k for k, v in model.module.state_dict().items() if not torch.equal(v, initial[k])]
    assert changed
    table = model.get_distribution_embedding(key_added=None)
    assert np.isfinite(table.to_numpy()).all()


def test_a_stopped_run_resumes_from_its_checkpoint(tmp_path):
    per_epoch = sets_per_epoch(180, 8, 3)
    with pytest.warns(UserWarning, match="interrupted"):
        stop = _InterruptAt(3 * per_epoch)
        train_quietly(untrained(), max_epochs=6, checkpoint_dir=tmp_path, callbacks=[stop])
    assert (tmp_path / "last.ckpt").is_file()
    resumed = train_quietly(untrained(), max_epochs=6, ckpt_path=str(tmp_path / "last.ckpt"))
    assert resumed.trainer.global_step == 6 * per_epoch
    # the weight average went on from the checkpoint's (one update per step after the first)
    assert resumed.trainer.lightning_module._ema_updates == 6 * per_epoch - 1


def test_progress_is_printed_as_lines_when_not_on_a_terminal(capsys):
    model = untrained()
    model.train(max_epochs=20, set_size=8, groups_per_batch=3, train_size=1.0)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    # the first epoch (training has started), then one line per 10% of the 20 epochs
    assert [line.split()[1] for line in lines] == [f"{e}/20" for e in (1, *range(2, 21, 2))]
    assert "train loss" in lines[-1] and "\r" not in err


# -------------------------------------------------------------------------- perturbations
def few_sets(n_perturbations=7):
    return grn_perturbations(
        n_genes=30,
        n_perturbations=n_perturbations,
        n_cells_per_perturbation=20,
        n_control_cells=60,
        n_contexts=2,
        seed=0,
    )


def test_control_sets_are_never_held_out():
    adata = few_sets()
    PerturbationGDE.setup_anndata(
        adata, perturbation_key="perturbation", control="control", context_key="context"
    )
    model = PerturbationGDE(adata, n_latent=4)
    labels = model._group_labels(adata)
    controls = model._groups_always_trained(labels)
    assert sorted(str(labels.categories[i]) for i in controls) == [
        "control | context_0",
        "control | context_1",
    ]
    for seed in range(20):
        splitter = GroupDataSplitter(
            model.adata_manager, labels, 8, 4, train_size=0.5, seed=seed, always_train=controls
        )
        assert set(controls) <= set(splitter.train_groups)
        assert not set(controls) & set(splitter.val_groups)
        assert len(splitter.val_groups) == len(labels.categories) // 2


def test_few_sets_warn_that_validation_holds_some_out():
    adata = few_sets()
    PerturbationGDE.setup_anndata(
        adata, perturbation_key="perturbation", control="control", context_key="context"
    )
    model = PerturbationGDE(adata, n_latent=4)
    with pytest.warns(UserWarning, match="holds out 1 of only 16 groups"):
        model.train(max_epochs=1, set_size=8, predictor_epochs=2, enable_progress_bar=False)
    assert not any(name.startswith("control") for name in model.validation_groups_)


def test_one_perturbation_warns_that_the_predictor_has_no_validation():
    adata = few_sets(n_perturbations=1)
    PerturbationGDE.setup_anndata(
        adata, perturbation_key="perturbation", control="control", context_key="context"
    )
    model = PerturbationGDE(adata, n_latent=4)
    with pytest.warns(UserWarning, match="leave none for validation"):
        model.train(
            max_epochs=1, set_size=8, train_size=1.0, predictor_epochs=2, enable_progress_bar=False
        )
    assert model.shift_scale_ == 1.0 and model.predictor_epochs_ == 2


def test_mean_shift_baseline_trains_on_all_other_pairs_by_default():
    adata = few_sets(n_perturbations=4)
    args = {"perturbation_key": "perturbation", "control": "control", "context_key": "context"}
    with pytest.warns(UserWarning, match="looks like raw counts"):
        mean_shift_baseline(adata, train=None, predict=[("G0005", "context_0")], **args)
    adata.X = np.log1p(adata.X.toarray() if sparse.issparse(adata.X) else adata.X)
    pairs = adata.obs.loc[adata.obs["perturbation"] != "control", ["perturbation", "context"]]
    pairs = sorted(set(map(tuple, pairs.astype(str).to_numpy())))
    predict = [pairs[0]]
    default = mean_shift_baseline(adata, train=None, predict=predict, **args)
    explicit = mean_shift_baseline(adata, train=pairs[1:], predict=predict, **args)
    pd.testing.assert_frame_equal(default.uns["predicted_shift"], explicit.uns["predicted_shift"])
    one_only = mean_shift_baseline(adata, train=pairs[1:2], predict=predict, **args)
    assert not np.allclose(default.X, one_only.X)


# ------------------------------------------------------------------------------------ CLI
def test_cli_with_three_groups_writes_results_and_a_scatter(tmp_path):
    counts(n_groups=3).write_h5ad(tmp_path / "in.h5ad")
    code = cli_main(
        ["embed", str(tmp_path / "in.h5ad"), "--group-key", "group", "--output",
         str(tmp_path / "out.h5ad"), "--max-epochs", "1", "--set-size", "8",
         "--groups-per-batch", "3", "--save-model", str(tmp_path / "model")]
    )  # fmt: skip
    assert code == 0
    groups = ad.read_h5ad(tmp_path / "out_groups.h5ad")
    assert list(groups.obs_names) == ["g0", "g1", "g2"]
    assert (tmp_path / "out_groups_umap.png").stat().st_size > 1000
    assert (tmp_path / "model" / "model.pt").is_file()


def test_cli_refuses_to_overwrite_its_input(tmp_path):
    path = tmp_path / "in.h5ad"
    counts().write_h5ad(path)
    content = path.read_bytes()
    with pytest.raises(SystemExit, match="would overwrite the input"):
        cli_main(["embed", str(path), "--group-key", "group", "--output", str(path)])
    assert path.read_bytes() == content


def test_cli_on_a_file_that_is_not_hdf5(tmp_path, capsys):
    path = tmp_path / "in.h5ad"
    path.write_text("cell,gene\n")
    code = cli_main(["embed", str(path), "--group-key", "g", "--output", str(tmp_path / "o.h5ad")])
    assert code == 2
    assert "Cannot read" in capsys.readouterr().err


# ------------------------------------------------------------------------ numerical safety
def test_extreme_library_sizes_and_all_zero_genes_train_to_finite_losses():
    adata = counts()
    x = adata.X.toarray()
    x[:, 3] = 0  # a gene with no counts
    x[0] *= 10_000  # a cell with a huge library
    x[1] = 0
    x[1, 0] = 1  # a cell with a single count
    adata.X = sparse.csr_matrix(x)
    model = train_quietly(untrained(adata), max_epochs=5)
    assert np.isfinite(model.history["train_loss"].to_numpy(dtype=float)).all()
    assert np.isfinite(model.get_distribution_embedding(key_added=None).to_numpy()).all()


def test_a_non_finite_loss_stops_training_with_the_step():
    from scgde.train import GDETrainingPlan

    plan = GDETrainingPlan(untrained().module)
    plan.on_train_batch_end({"loss": torch.tensor(1.0)}, None, 0)
    with pytest.raises(FloatingPointError, match="diverged at step 0"):
        plan.on_train_batch_end({"loss": torch.tensor(float("nan"))}, None, 1)


# ----------------------------------------------------------------------------------- fuzz
@settings(max_examples=60, deadline=None)
@given(
    group_sizes=st.lists(st.integers(1, 30), min_size=1, max_size=8),
    set_size=st.integers(1, 12),
    groups_per_batch=st.integers(1, 10),
    min_fraction=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_set_sampler_batches_are_well_formed(
    group_sizes, set_size, groups_per_batch, min_fraction, seed
):
    from scgde.data import GroupSetSampler

    bounds = np.cumsum([0, *group_sizes])
    cells = [np.arange(bounds[g], bounds[g + 1]) for g in range(len(group_sizes))]
    group_of = np.repeat(np.arange(len(group_sizes)), group_sizes)
    min_set_size = max(1, round(min_fraction * set_size))
    sampler = GroupSetSampler(
        cells, set_size, groups_per_batch, n_batches=3, seed=seed, min_set_size=min_set_size
    )
    for indices, set_ids in sampler:
        assert np.array_equal(np.unique(set_ids), np.arange(groups_per_batch))
        assert np.all(np.diff(set_ids) >= 0)  # sets are stored one after the other
        groups = []
        for s in range(groups_per_batch):
            members = indices[set_ids == s]
            group = group_of[members[0]]
            groups.append(group)
            assert np.all(group_of[members] == group)
            assert len(np.unique(members)) == len(members)
            assert min(min_set_size, group_sizes[group]) <= len(members)
            assert len(members) <= min(set_size, group_sizes[group])
        if len(group_sizes) >= groups_per_batch:
            assert len(set(groups)) == groups_per_batch


_VALUES = st.sampled_from(["a", "b", "c d", "1", "x|y"])


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(_VALUES, st.integers(0, 3)), min_size=1, max_size=40))
def test_group_labels_of_combined_keys_name_each_combination(rows):
    obs = pd.DataFrame(rows, columns=["donor", "time"])
    labels = group_labels(obs, ["donor", "time"])
    expected = [f"{d} | {t}" for d, t in rows]
    assert list(np.asarray(labels).astype(str)) == expected
    assert len(labels.categories) == len(set(rows))


@settings(max_examples=30, deadline=None)
@given(
    set_sizes=st.lists(st.integers(1, 25), min_size=1, max_size=5),
    chunk=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_chunked_encoding_equals_encoding_at_once(set_sizes, chunk, seed):
    from scgde.nn import DeepSetEncoder

    torch.manual_seed(seed)
    encoder = DeepSetEncoder(6, 4, n_hidden=8, n_layers=2).eval()
    set_ids = torch.as_tensor(np.random.default_rng(seed).permutation(
        np.repeat(np.arange(len(set_sizes)), set_sizes)
    ))  # fmt: skip
    x = torch.randn(len(set_ids), 6)

    def chunks():
        return ((x[i : i + chunk], set_ids[i : i + chunk]) for i in range(0, len(x), chunk))

    with torch.no_grad():
        whole = encoder(x, set_ids, len(set_sizes))
    torch.testing.assert_close(encoder.encode_streaming(chunks, len(set_sizes)), whole)


def test_perturbation_models_refuse_a_group_label_key():
    adata = few_sets()
    with pytest.raises(TypeError, match="no group classifier"):
        PerturbationGDE.setup_anndata(
            adata, perturbation_key="perturbation", control="control", group_label_key="context"
        )
    assert not any(k.startswith("_scvi") for k in adata.uns)
