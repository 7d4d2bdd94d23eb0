"""Execute the tutorial notebooks so they cannot rot."""

import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

TUTORIALS = Path(__file__).parents[1] / "tutorials"


def test_notebooks_hold_their_sources():
    """Every tutorial notebook has exactly the cells of its jupytext source (edit the ``.py``,
    then run ``python tutorials/_build_notebooks.py``)."""
    import jupytext

    sources = sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))
    notebooks = sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb"))
    assert [s.stem for s in sources] == [n.stem for n in notebooks] and len(sources) == 5
    for source, notebook in zip(sources, notebooks, strict=True):
        expected = [(c.cell_type, c.source) for c in jupytext.read(source).cells]
        found = [(c.cell_type, c.source) for c in nbformat.read(notebook, as_version=4).cells]
        assert found == expected, f"{notebook.name} differs from {source.name}: rebuild it"


def _outputs(nb) -> str:
    """The printed text of every code cell. A cell's stream outputs are joined as they were
    printed: the kernel may send one line in several pieces (e.g. around a message another
    thread writes), so joining them with newlines would break a printed line in two."""
    return "\n".join(
        "".join(out.get("text", "") for out in cell.outputs)
        for cell in nb.cells
        if cell.cell_type == "code"
    )


@pytest.mark.parametrize("name", ["01_patients.ipynb", "02_clones.ipynb", "05_labels.ipynb"])
def test_tutorial_runs(name, tmp_path):
    nb = nbformat.read(TUTORIALS / name, as_version=4)
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    text = _outputs(nb)
    if name == "01_patients.ipynb":
        _check_patients(text, _n_images(nb))
    elif name == "05_labels.ipynb":
        _check_labels(text, _n_images(nb))
    else:
        _check_clones(text)


def _n_images(nb) -> int:
    return sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"not printed: {pattern!r}"
    return float(match.group(1))


def _check_patients(text: str, n_images: int) -> None:
    # demo data: 63 samples (13 HC, 50 Severe) of 43 donors (13 HC, 30 Severe)
    n_samples, n_hc = 63, 13
    assert "identical after reload: True" in text
    assert "nearest half B is its own sample's" in text
    auc_cv = _number(r"ROC AUC, 5-fold by donor: ([\d.]+) ±", text)
    assert 0 <= auc_cv <= 1

    # the batch penalty: fewer same-batch neighbours and a lower batch silhouette
    nearest, silhouette = (
        r"same batch among the 5 nearest samples ([\d.]+)",
        r"batch silhouette (-?[\d.]+)",
    )
    plain, fixed = "no batch correction: ", "batch_correction='hsic': "
    assert _number(fixed + nearest, text) < _number(plain + nearest, text)
    assert _number(fixed + r".*?" + silhouette, text) < _number(plain + r".*?" + silhouette, text)

    # standard errors shrink with the number of cells (theory: slope -0.5; samples differ in
    # their distributions too, so only the sign and a broad range are checked)
    se_slope = _number(r"standard error on the number of cells: (-?[\d.]+)", text)
    assert -1.0 < se_slope < -0.2
    assert _number(r"median distance between samples / its standard error: ([\d.]+)", text) > 2

    # few labels: a quarter of the donors of each condition labelled, all their samples
    labelled = re.search(
        r"labelled: (\d+) of 43 donors, (\d+) samples \((\d+) HC, (\d+) Severe\)", text
    )
    unlabelled = re.search(r"unlabelled: (\d+) samples \((\d+) HC, (\d+) Severe\)", text)
    assert labelled and unlabelled, "labelled / unlabelled counts not printed"
    donors, n_lab, lab_hc, lab_severe = map(int, labelled.groups())
    n_unl, unl_hc, unl_severe = map(int, unlabelled.groups())
    assert donors == round(13 / 4) + round(30 / 4)
    assert lab_hc == round(13 / 4)  # HC donors have one sample each
    assert lab_severe >= round(30 / 4)  # a Severe donor has one or more samples
    assert n_lab == lab_hc + lab_severe and n_unl == unl_hc + unl_severe
    assert n_lab + n_unl == n_samples and lab_hc + unl_hc == n_hc

    # predict_group_labels covers every sample; scored on exactly the unlabelled ones
    tested = re.search(r"predicted (\d+) samples; tested on the (\d+) unlabelled ones", text)
    assert tested, "number of tested samples not printed"
    assert int(tested.group(1)) == n_samples
    assert int(tested.group(2)) == n_unl
    majority = _number(r"always Severe \(majority class\)\s+accuracy ([\d.]+)", text)
    assert majority == pytest.approx(unl_severe / n_unl, abs=1e-3)
    auc = {}
    for method in (
        "GDE semi-supervised",
        "pseudobulk + logistic regression",
        "GDE without labels + logistic regression",
    ):
        pattern = rf"{re.escape(method)}\s+accuracy ([\d.]+)\s+ROC AUC ([\d.]+)"
        match = re.search(pattern, text)
        assert match, f"not printed: {method}"
        accuracy, auc[method] = map(float, match.groups())
        assert 0 <= accuracy <= 1 and 0 <= auc[method] <= 1
    # with ~10 HC vs ~38 Severe test samples, a classifier without signal has ROC AUC
    # 0.5 ± 0.1 (Mann-Whitney); the benchmark's few-label rounds average ~0.9 for both
    assert auc["GDE semi-supervised"] > 0.7
    assert auc["pseudobulk + logistic regression"] > 0.7

    # generated vs real: per-gene means agree, and the HC - Severe differences point the same
    # way (a generator ignoring z gives r = 0 ± 0.05 for 500 genes)
    per_sample = re.findall(r"Pearson r of per-gene log means, generated vs real: (-?[\d.]+)", text)
    assert len(per_sample) == 2
    assert all(float(r) > 0.7 for r in per_sample)
    r_diff = _number(
        r"HC - Severe difference per gene, generated vs real: Pearson r = (-?[\d.]+)", text
    )
    slope = _number(r"generated vs real: Pearson r = [-\d.]+, slope (-?[\d.]+)", text)
    assert r_diff > 0.15 and slope > 0
    # figures: training histories (2), UMAPs (3), error ellipses, halves, generated vs real
    # (2), differences
    assert n_images >= 10


def _check_clones(text: str) -> None:
    assert "SIMULATED data from scgde.datasets.lineage_sets" in text
    assert "240 sets embedded; early and late matrices: (80, 8), (80, 8)" in text
    true_mi = _number(r"True MI between day-2 and day-6 clone states: ([\d.]+) nats", text)
    assert true_mi > 3  # -5/2 log(1 - 0.9^2) = 4.15 nats
    # each clone's own late embedding is the nearest far more often than chance (1/80)
    rate = _number(r"Nearest day-6 embedding is the clone's own for ([\d.]+)% of clones", text)
    assert rate >= 5 * 100 / 80
    # fate memory shows as MI well above both controls (both have true MI 0)
    mi = _number(r"fate_strength=0\.9: (-?[\d.]+) nats", text)
    shuffled = _number(r"MI with shuffled clone pairing: (-?[\d.]+) ±", text)
    control = _number(r"fate_strength=0 control: (-?[\d.]+) nats", text)
    assert mi > 0.4
    assert mi > shuffled + 0.3 and mi > control + 0.3
    assert abs(shuffled) < 0.2 and abs(control) < 0.3
    # the embedding MI is a lower-bound estimate of the clone-state MI
    assert mi < true_mi


def test_tutorial_03_perturbations(tmp_path):
    nb = nbformat.read(TUTORIALS / "03_perturbations.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    _check_perturbations(_outputs(nb), _n_images(nb))


def _check_perturbations(text: str, n_images: int) -> None:
    # demo data: 11 cell types with >= 20 HC and >= 20 Severe cells, 7,076 cells; classical
    # monocytes have 205 HC and 1,055 Severe cells
    held = "Mono_Classical"
    n_hc, n_severe, n_kept = 205, 1055, 7076
    assert f"kept {n_kept} cells of 11 cell types" in text
    assert f"held out: {n_severe} Severe cells of {held}; its {n_hc} HC cells stay" in text
    # the held-out pair is absent from training: 11 HC sets + 10 Severe sets
    assert f"training data: {n_kept - n_severe} cells in 21 sets" in text
    assert f"Severe {held} cells in the training data: 0" in text
    # GDE needs enough optimisation steps; an epoch is only 3 steps here
    steps = _number(r"trained for (\d+) steps", text)
    assert steps >= 1500

    methods = (
        "GDE predictor",
        "GDE latent arithmetic",
        "GDE predictor, generated cells",
        "mean shift",
    )
    for method in methods[:3]:
        assert f"{method}: predicted 500 cells of Severe | {held}" in text

    # the score table: one row per method, every score finite and in range
    assert f"Scores on the held-out Severe {held} cells:" in text
    float_ = r"(-?\d+\.\d+|nan|inf|-inf)"
    for method in methods:
        pattern = rf"^{re.escape(method)}\s+" + r"\s+".join([float_] * 5) + r"\s+(\d+)\s+(\d+)$"
        match = re.search(pattern, text, flags=re.MULTILINE)
        assert match, f"score row not printed: {method}"
        r2, mse, r2_top, mse_top, energy = map(float, match.groups()[:5])
        n_predicted, n_observed = map(int, match.groups()[5:])
        assert all(np.isfinite([r2, mse, r2_top, mse_top, energy])), method
        assert 0 <= r2 <= 1 and 0 <= r2_top <= 1, method
        assert mse >= 0 and mse_top >= 0 and energy >= 0, method
        # GDE predicts 500 cells; the mean-shift baseline shifts every HC cell once
        assert n_predicted == (n_hc if method == "mean shift" else 500), method
        assert n_observed == n_severe, method
    # the winner of each metric is printed, not assumed
    for metric in ("r2", "mse", "r2_top_de", "mse_top_de", "energy_distance"):
        best = re.search(rf"best {metric} on this run: (.+)$", text, flags=re.MULTILINE)
        assert best and best.group(1).strip() in methods, metric
    # figures: training history, predicted vs true shift, UMAP of real and predicted cells
    assert n_images >= 3


def test_tutorial_04_knockdowns(tmp_path):
    nb = nbformat.read(TUTORIALS / "04_knockdowns.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    text = _outputs(nb)
    assert "SIMULATED data from scgde.datasets.grn_perturbations" in text
    factor = _number(r"training targets\): ([\d.]+); simulated", text)
    simulated = _number(r"; simulated: ([\d.]+)", text)
    assert simulated == pytest.approx(0.1)  # knockdown=0.9
    assert abs(np.log(factor / simulated)) < np.log(1.5)  # median of ~64 noisy targets
    # NaN: a prediction without any shift (a calibrated scale of 0) has no correlation
    r2 = {
        name: _number(rf"\n{re.escape(name)}\s+(-?[\d.]+|NaN|nan)\s", text)
        for name in ("GDE", "GDE without knock-down", "mean shift", "mean shift + knock-down")
    }
    # the target is the largest effect of a knock-down: the knock-down must raise GDE's r2
    # (the benchmark: 0.068 with; without, 0.0025 before the shift calibration, no shift after)
    assert r2["GDE"] > 0.02 + np.nan_to_num(r2["GDE without knock-down"])
    true = {
        name: _number(rf"  {re.escape(name)}: (-?[\d.]+|nan)", text)
        for name in ("GDE", "GDE without knock-down", "mean shift")
    }
    # against the noise-free truth the target dominates (70% of its sum of squares)
    assert true["GDE"] > 0.2 > np.nanmax([true["GDE without knock-down"], true["mean shift"]])
    assert _n_images(nb) == 2


def _check_labels(text: str, n_images: int) -> None:
    # fewer cells carry the set inside the held-out band: its embedding is less certain
    assert _number(r"standard error of z at dose 0.5 / at dose 0.2: ([\d.]+)", text) > 1
    # embedding distances rank dose pairs as the true W2 does (the paper: 0.96 on Gaussians)
    assert _number(r"with the true W2: ([\d.]+)", text) > 0.9
    # cells generated at the unobserved dose 0.5 are nearer the truth than either edge's cells
    generated = _number(r"at 0.5, generated at 0.5: ([\d.]+)", text)
    assert generated < _number(r"at 0.5, true cells at 0.4: ([\d.]+)", text)
    assert generated < _number(r"at 0.5, true cells at 0.6: ([\d.]+)", text)
    # generated monocytes follow the real markers along pseudotime (12 values: r > 0.8 is
    # significant at p < 0.002)
    for gene in ("CD14", "LYZ", "FCGR3A", "CDKN1C"):
        assert (
            _number(
                rf"{gene}: correlation of generated and real means along pseudotime "
                r"(-?[\d.]+)",
                text,
            )
            > 0.8
        )
    assert n_images == 3  # the PCA of z(dose), the W2 scatter, the marker curves
