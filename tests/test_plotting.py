"""Tests of scgde.pl (Agg backend) on one briefly trained model of a small real subset."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import scvi  # noqa: E402
from _helpers import small_demo  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from scipy.cluster import hierarchy  # noqa: E402
from scipy.spatial.distance import squareform  # noqa: E402

from scgde import pl, tl  # noqa: E402
from scgde.model import GDE  # noqa: E402
from scgde.pl import _figure  # noqa: E402

N_GROUPS = 8


@pytest.fixture(scope="module")
def trained():
    """(model, adata with uns/obsm["X_gde"], group AnnData) after 3 tiny epochs."""
    scvi.settings.seed = 0
    adata = small_demo(N_GROUPS, 30, 100)
    GDE.setup_anndata(adata, group_key="sample", batch_key="batch")
    model = GDE(
        adata, n_latent=4, encoder_kwargs={"n_hidden": 16}, generator_kwargs={"n_hidden": 16}
    )
    model.train(
        max_epochs=3, set_size=16, groups_per_batch=4, train_size=0.75, enable_progress_bar=False
    )
    model.get_distribution_embedding()
    return model, adata, model.get_group_adata()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _assert_unchanged(before, after):
    """``after`` equals the copy ``before`` taken before plotting."""
    assert before.obs.equals(after.obs)
    assert before.var.equals(after.var)
    assert abs(before.X - after.X).sum() == 0
    assert set(before.obsm) == set(after.obsm)
    for key in before.obsm:
        np.testing.assert_array_equal(before.obsm[key], after.obsm[key])
    assert set(before.uns) == set(after.uns)
    for key, value in before.uns.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(value, after.uns[key])


def _n_points(ax: Axes) -> int:
    return sum(len(c.get_offsets()) for c in ax.collections)


def _offsets(ax: Axes) -> np.ndarray:
    return np.concatenate([c.get_offsets() for c in ax.collections])


# --------------------------------------------------------------------- group_embedding
def test_group_embedding_categorical_one_dot_per_group_with_legend(trained):
    _, _, groups = trained
    before = groups.copy()
    ax = pl.group_embedding(groups, color="condition", basis="pca", show=False)
    assert isinstance(ax, Axes)
    assert _n_points(ax) == groups.n_obs == N_GROUPS
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == list(groups.obs["condition"].cat.categories)
    assert ax.get_title() == "condition"
    _assert_unchanged(before, groups)


def test_group_embedding_uses_stored_colors(trained):
    _, _, groups = trained
    groups = groups.copy()
    groups.uns["condition_colors"] = ["#000000", "#ff0000"]
    ax = pl.group_embedding(groups, color="condition", basis="pca", show=False)
    point_colors = {to_hex(c) for c in ax.collections[0].get_facecolors()}
    assert point_colors == {"#000000", "#ff0000"}
    ax = pl.group_embedding(
        groups, color="condition", basis="pca", palette={"HC": "blue", "Severe": "green"}
    )
    assert {to_hex(c) for c in ax.collections[0].get_facecolors()} == {"#0000ff", "#008000"}


def test_group_embedding_numeric_gets_colorbar_and_list_gives_dict(trained):
    _, _, groups = trained
    axes = pl.group_embedding(groups, color=["n_cells", "condition"], basis="pca", show=False)
    assert set(axes) == {"n_cells", "condition"}
    assert axes["n_cells"].collections[0].colorbar is not None
    assert axes["condition"].collections[0].colorbar is None
    assert _n_points(axes["n_cells"]) == N_GROUPS


def test_group_embedding_pca_of_cell_level_input_matches_group_adata(trained):
    _, adata, groups = trained
    before = adata.copy()
    from_cells = pl.group_embedding(adata, basis="pca", show=False)
    from_groups = pl.group_embedding(groups, basis="pca", show=False)
    np.testing.assert_allclose(_offsets(from_cells), _offsets(from_groups), atol=1e-5)
    _assert_unchanged(before, adata)


def test_group_embedding_cell_level_colors_aggregate_per_group(trained):
    _, adata, _ = trained
    adata = adata.copy()
    adata.obs["score"] = np.arange(adata.n_obs, dtype=float)
    ax = pl.group_embedding(adata, color="score", basis="pca", show=False)
    means = adata.obs.groupby("sample", observed=True)["score"].mean().to_numpy()
    np.testing.assert_allclose(np.sort(ax.collections[0].get_array()), np.sort(means))
    ax = pl.group_embedding(adata, color="condition", basis="pca", show=False)
    assert _n_points(ax) == N_GROUPS
    with pytest.raises(ValueError, match="not constant within groups"):
        pl.group_embedding(adata, color="cell_type", basis="pca", show=False)


def test_group_embedding_cell_level_uses_stored_colors_and_leaves_adata_unchanged(trained):
    _, adata, _ = trained
    adata = adata.copy()
    categories = list(adata.obs["condition"].cat.categories)
    stored = ["#000000", "#ff0000", "#00ff00", "#0000ff"][: len(categories)]
    adata.uns["condition_colors"] = np.array(stored, dtype=object)
    before = adata.copy()
    ax = pl.group_embedding(adata, color="condition", basis="pca", show=False)
    per_group = adata.obs.groupby("sample", observed=True)["condition"].first()
    expected = {stored[categories.index(c)] for c in per_group}
    assert {to_hex(c) for c in ax.collections[0].get_facecolors()} == expected
    _assert_unchanged(before, adata)
    assert list(adata.uns["condition_colors"]) == stored
    del adata.uns["condition_colors"]
    pl.group_embedding(adata, color="condition", basis="pca", show=False)
    assert "condition_colors" not in adata.uns  # scanpy's palette goes to the private copy


def test_group_embedding_missing_values_and_given_axes(trained):
    _, _, groups = trained
    groups = groups.copy()
    groups.obs["label"] = pd.Categorical(["a", "b"] * (N_GROUPS // 2 - 1) + [None, None])
    fig, panels = plt.subplots(1, 2)
    axes = pl.group_embedding(
        groups, color=["label", "n_cells"], basis="pca", ax=panels, na_color="#123456"
    )
    assert axes["label"] is panels[0] and axes["n_cells"] is panels[1]
    assert [t.get_text() for t in panels[0].get_legend().get_texts()] == ["a", "b", "NA"]
    point_colors = [to_hex(c) for c in panels[0].collections[0].get_facecolors()]
    assert len(point_colors) == N_GROUPS and point_colors.count("#123456") == 2
    assert panels[1].collections[0].colorbar is not None
    assert [a.get_title() for a in panels] == ["label", "n_cells"]


def test_group_embedding_umap_computed_on_a_copy_or_taken_from_obsm(trained):
    _, _, groups = trained
    before = groups.copy()
    ax = pl.group_embedding(groups, color="condition", show=False)
    assert _n_points(ax) == N_GROUPS
    assert ax.get_xlabel() == "UMAP1"
    _assert_unchanged(before, groups)  # no obsm["X_umap"], no neighbors written
    given = groups.copy()
    given.obsm["X_umap"] = np.arange(2 * N_GROUPS, dtype=float).reshape(-1, 2)
    ax = pl.group_embedding(given, basis="umap", show=False)
    np.testing.assert_array_equal(_offsets(ax), given.obsm["X_umap"])


def test_group_embedding_errors(trained):
    _, adata, groups = trained
    with pytest.raises(KeyError, match="not_a_column"):
        pl.group_embedding(groups, color="not_a_column", basis="pca")
    with pytest.raises(KeyError, match="basis"):
        pl.group_embedding(groups, basis="tsne")
    with pytest.raises(KeyError, match="get_distribution_embedding"):
        pl.group_embedding(adata, key="X_missing", basis="pca")
    with pytest.raises(ValueError, match="2 matplotlib Axes"):
        _, ax = plt.subplots()
        pl.group_embedding(groups, color=["condition", "n_cells"], basis="pca", ax=ax)
    with pytest.raises(ValueError, match="no colour for categories"):
        pl.group_embedding(groups, color="condition", basis="pca", palette={"HC": "red"})
    with pytest.raises(ValueError, match="2 titles for 1 panels"):
        pl.group_embedding(groups, color="condition", basis="pca", title=["a", "b"])


# ------------------------------------------------------------------ show / save / ax
def test_show_follows_scanpy_and_ax_is_returned(trained, monkeypatch):
    _, _, groups = trained
    calls = []
    monkeypatch.setattr(_figure, "interactive_backend", lambda: True)
    monkeypatch.setattr(plt, "show", lambda *a, **k: calls.append(1))
    pl.group_embedding(groups, basis="pca")
    assert len(calls) == 1  # show=None and no ax: shown
    _, ax = plt.subplots()
    assert pl.group_embedding(groups, basis="pca", ax=ax) is ax
    assert len(calls) == 1  # ax given: not shown
    pl.group_embedding(groups, basis="pca", show=False)
    assert len(calls) == 1
    monkeypatch.setattr(_figure, "interactive_backend", lambda: False)
    pl.group_embedding(groups, basis="pca", show=True)
    assert len(calls) == 1  # never with a non-interactive backend


def _all_plots(trained, save):
    model, adata, groups = trained
    d = tl.group_distances(adata.copy())
    real = adata[adata.obs["sample"] == groups.obs_names[0]]
    generated = model.sample(groups=[groups.obs_names[0]], n_cells=20, seed=0)
    a, b = groups.obs_names[:2]
    return {
        "group_embedding": lambda: pl.group_embedding(groups, basis="pca", save=save),
        "group_distance_heatmap": lambda: pl.group_distance_heatmap(d, save=save),
        "generated_vs_real": lambda: pl.generated_vs_real(real, generated, save=save),
        "interpolation_path": lambda: pl.interpolation_path(
            model, a, b, n_steps=3, n_cells=10, save=save
        ),
        "training_history": lambda: pl.training_history(model, save=save),
    }


def test_save_writes_png_atomically(trained, tmp_path):
    target = tmp_path / "out" / "plot.png"
    for name, plot in _all_plots(trained, target).items():
        target.unlink(missing_ok=True)
        plot()
        data = target.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000, name
        assert sorted(p.name for p in target.parent.iterdir()) == ["plot.png"], name
        plt.close("all")


def test_save_with_unknown_extension_fails_before_drawing(trained, tmp_path):
    _, _, groups = trained
    n_figures = len(plt.get_fignums())
    with pytest.raises(ValueError, match="image format"):
        pl.group_embedding(groups, basis="pca", save=tmp_path / "plot.nope")
    assert len(plt.get_fignums()) == n_figures
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------- group_distance_heatmap
def test_heatmap_rows_follow_dendrogram_leaves(trained):
    _, adata, groups = trained
    d = tl.group_distances(adata.copy())
    before = d.copy()
    axes = pl.group_distance_heatmap(d, method="average", show=False)
    linkage = hierarchy.linkage(squareform(d.to_numpy(), checks=False), method="average")
    leaves = hierarchy.dendrogram(linkage, no_plot=True)["leaves"]
    image = axes["heatmap"].images[0].get_array()
    np.testing.assert_allclose(image, d.to_numpy()[np.ix_(leaves, leaves)])
    names = [t.get_text() for t in axes["heatmap"].get_xticklabels()]
    assert names == [str(d.index[i]) for i in leaves]
    assert axes["dendrogram"] is not None and len(axes["dendrogram"].collections) > 0
    assert axes["labels"] is None
    pd.testing.assert_frame_equal(d, before)


def test_heatmap_without_clustering_keeps_order(trained):
    _, adata, _ = trained
    d = tl.group_distances(adata.copy())
    axes = pl.group_distance_heatmap(d, cluster=False, show=False)
    np.testing.assert_allclose(axes["heatmap"].images[0].get_array(), d.to_numpy())
    assert axes["dendrogram"] is None


def test_heatmap_label_strip_colors_names(trained):
    _, adata, groups = trained
    d = tl.group_distances(adata.copy())
    labels = groups.obs["condition"]
    axes = pl.group_distance_heatmap(
        d, labels=labels, palette={"HC": "#0000ff", "Severe": "#ff0000"}, show=False
    )
    strip = axes["labels"]
    names = [t.get_text() for t in strip.get_yticklabels()]
    expected = {"HC": "#0000ff", "Severe": "#ff0000"}
    for tick, name in zip(strip.get_yticklabels(), names, strict=True):
        assert to_hex(tick.get_color()) == expected[labels[name]]
    assert len(names) == N_GROUPS
    legend_texts = {
        t.get_text()
        for ax in axes["heatmap"].figure.axes
        if ax.get_legend()
        for t in ax.get_legend().get_texts()
    }
    assert legend_texts == {"HC", "Severe"}


def test_heatmap_errors(trained):
    _, adata, _ = trained
    d = tl.group_distances(adata.copy())
    with pytest.raises(ValueError, match="square"):
        pl.group_distance_heatmap(d.iloc[:, :3])
    bad = d.copy()
    bad.iloc[0, 1] += 1
    with pytest.raises(ValueError, match="symmetric"):
        pl.group_distance_heatmap(bad)
    with pytest.raises(ValueError, match="same group names"):
        pl.group_distance_heatmap(d.set_axis(list("abcdefgh"), axis=0))
    with pytest.raises(ValueError, match="NaN"):
        pl.group_distance_heatmap(d.where(d > 0))
    with pytest.raises(ValueError, match="values for"):
        pl.group_distance_heatmap(d, labels=["a", "b"])
    with pytest.raises(ValueError, match="linkage"):
        pl.group_distance_heatmap(d, method="nope")
    with pytest.raises(TypeError):
        pl.group_distance_heatmap(d.to_numpy())


# ------------------------------------------------------------------- generated_vs_real
def test_generated_vs_real_panels(trained):
    model, adata, groups = trained
    real = adata[adata.obs["sample"] == groups.obs_names[0]].copy()
    generated = model.sample(groups=[groups.obs_names[0]], n_cells=50, seed=0)
    before_real, before_gen = real.copy(), generated.copy()
    axes = pl.generated_vs_real(real, generated, show=False)
    assert set(axes) == {"embedding", "mean", "variance"}
    assert _n_points(axes["embedding"]) == real.n_obs + 50
    # Pearson r of log10 per-gene means of counts per 1e4, genes with zeros left out
    x_real = real.X.toarray() / real.X.toarray().sum(1, keepdims=True) * 1e4
    x_gen = generated.X.toarray() / generated.X.toarray().sum(1, keepdims=True) * 1e4
    m_real, m_gen = x_real.mean(0), x_gen.mean(0)
    keep = (m_real > 0) & (m_gen > 0)
    r = np.corrcoef(np.log10(m_real[keep]), np.log10(m_gen[keep]))[0, 1]
    assert f"Pearson r = {r:.3f}" in axes["mean"].get_title()
    assert _n_points(axes["mean"]) == keep.sum()
    assert axes["mean"].get_xscale() == "log"
    _assert_unchanged(before_real, real)
    _assert_unchanged(before_gen, generated)


def test_generated_vs_real_subsamples_and_errors(trained):
    model, adata, groups = trained
    generated = model.sample(groups=[groups.obs_names[0]], n_cells=50, seed=0)
    axes = pl.generated_vs_real(adata, generated, max_cells=20, show=False)
    assert _n_points(axes["embedding"]) == 40
    with pytest.raises(KeyError, match="counts"):
        pl.generated_vs_real(adata, generated, layer="counts")
    other = generated.copy()
    other.var_names = [f"x{i}" for i in range(other.n_vars)]
    with pytest.raises(ValueError, match="share 0 gene"):
        pl.generated_vs_real(adata, other)


# ------------------------------------------------------------------ interpolation_path
def test_interpolation_path_with_model(trained):
    model, adata, groups = trained
    before = adata.copy()
    a, b = groups.obs_names[0], groups.obs_names[3]
    axes = pl.interpolation_path(model, a, b, n_steps=5, n_cells=20, n_genes=3, show=False)
    path_ax, expression = axes["path"], axes["expression"]
    groups_points, path_points = (c.get_offsets() for c in path_ax.collections)
    assert len(groups_points) == N_GROUPS and len(path_points) == 5
    names = list(adata.uns["X_gde"].index)
    np.testing.assert_allclose(path_points[0], groups_points[names.index(a)], atol=1e-6)
    np.testing.assert_allclose(path_points[-1], groups_points[names.index(b)], atol=1e-6)
    lines = expression.get_lines()
    assert len(lines) == 3 and all(len(line.get_xdata()) == 5 for line in lines)
    assert len(expression.collections) == 3 + 1  # real-cell markers per gene + legend proxy
    _assert_unchanged(before, adata)


def test_interpolation_path_chosen_genes_table_input_and_errors(trained):
    model, adata, groups = trained
    a, b = groups.obs_names[:2]
    genes = list(adata.var_names[:2])
    axes = pl.interpolation_path(model, a, b, n_steps=3, n_cells=10, genes=genes, show=False)
    assert [line.get_label() for line in axes["expression"].get_lines()] == genes
    axes = pl.interpolation_path(adata.uns["X_gde"], a, b, n_steps=4, show=False)
    assert axes["expression"] is None and len(axes["path"].collections[1].get_offsets()) == 4
    with pytest.raises(KeyError, match="not_a_group"):
        pl.interpolation_path(model, a, "not_a_group")
    with pytest.raises(KeyError, match="not_a_gene"):
        pl.interpolation_path(model, a, b, n_steps=2, n_cells=5, genes=["not_a_gene"])
    with pytest.raises(ValueError, match="n_steps"):
        pl.interpolation_path(model, a, b, n_steps=1)


# -------------------------------------------------------------------- training_history
def test_training_history_default_panels(trained):
    model, _, _ = trained
    axes = pl.training_history(model, show=False)
    assert list(axes) == ["elbo", "reconstruction_loss", "kl_local"]
    lines = axes["elbo"].get_lines()
    assert [line.get_label() for line in lines] == ["training", "validation"]
    np.testing.assert_allclose(
        lines[0].get_ydata(), model.history["elbo_train"]["elbo_train"].to_numpy(float)
    )
    assert all(len(line.get_xdata()) == 3 for line in lines)
    _, grid = plt.subplots(1, 3)  # an array of Axes from plt.subplots is accepted
    axes = pl.training_history(model, ax=grid)
    assert list(axes.values()) == list(grid)


def test_training_history_keys_and_errors(trained):
    model, _, _ = trained
    ax = pl.training_history(model.history, "elbo_validation", show=False)
    assert isinstance(ax, Axes) and len(ax.get_lines()) == 1
    axes = pl.training_history(model, ["loss", "kl_weight"], show=False)
    assert len(axes["loss"].get_lines()) == 2 and len(axes["kl_weight"].get_lines()) == 1
    with pytest.raises(KeyError, match="nope"):
        pl.training_history(model, "nope")
    with pytest.raises(ValueError, match="train it first"):
        pl.training_history({})
