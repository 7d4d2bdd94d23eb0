"""The saved-model folder: what ``save`` writes beside scvi-tools' files, and the checks that
give ``load`` a clear error for a folder it cannot read."""

from __future__ import annotations

import json
from pathlib import Path

from anndata import AnnData
from scvi.model.base import BaseModelClass

from .._constants import SETUP_ARGS_KEY
from .._io import write_dir_atomic
from ._checks import check_feature_names, registered_feature_names

#: Sidecar file with the scgde version, the model class and the folder format.
INFO_FILE = "scgde.json"
#: Version of the folder layout; ``load`` refuses folders written with a newer one.
FORMAT_VERSION = 1
#: The data files scvi-tools saves with ``save_anndata=True`` (each after ``prefix``).
_DATA_FILES = ("adata.h5ad", "mdata.h5mu")
#: Files a saved model folder may hold (``prefix`` + these, and the sidecar).
_MODEL_FILES = ("model.pt", *_DATA_FILES)


def write_model_info(folder: Path, model_class: str) -> None:
    """Write the sidecar that ``check_model_folder`` reads."""
    from .. import __version__

    info = {"scgde_version": __version__, "model_class": model_class, "format": FORMAT_VERSION}
    (Path(folder) / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")


def is_model_folder(folder: Path) -> bool:
    """Whether ``folder`` holds only what a saved model holds (so replacing it loses nothing)."""
    names = [p.name for p in Path(folder).iterdir()]
    return bool(names) and all(name == INFO_FILE or name.endswith(_MODEL_FILES) for name in names)


def check_model_folder(folder, prefix: str | None, model_class: str) -> Path:
    """The path of the weights file of a saved model, after checks with clear errors.

    Raises
    ------
    FileNotFoundError
        If ``folder`` does not exist or holds no weights file.
    ValueError
        If the folder was saved by another model class or by a newer scgde whose format this
        version cannot read.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(f"Cannot load a model from {folder}: it {what}.")
    weights = folder / f"{prefix or ''}model.pt"
    if not weights.is_file():
        raise FileNotFoundError(
            f"{folder} holds no {weights.name}: it is not a folder written by `model.save()`"
            + (" (or a different `prefix` was used)." if any(folder.glob("*model.pt")) else ".")
        )
    info_path = folder / INFO_FILE
    if info_path.is_file():  # folders saved before the sidecar existed have none
        try:
            info = json.loads(info_path.read_text())
        except ValueError as err:
            raise ValueError(f"{info_path} is damaged: {err}.") from None
        if info.get("format", 0) > FORMAT_VERSION:
            raise ValueError(
                f"{folder} was saved by scgde {info.get('scgde_version')} in a newer format "
                f"({info['format']}) than this version reads ({FORMAT_VERSION}): upgrade scgde."
            )
        saved_class = info.get("model_class")
        if saved_class is not None and saved_class != model_class:
            raise ValueError(
                f"{folder} holds a {saved_class} model; load it with {saved_class}.load, "
                f"not {model_class}.load."
            )
    return weights


class SaveLoadMixin:
    """``save`` and ``load`` of :class:`~scgde.model.GDE`."""

    def save(self, dir_path: str, overwrite: bool = False, **kwargs) -> None:
        """Save the model (scvi-tools format, plus ``scgde.json``: version and class) atomically.

        The files are written to a temporary folder beside ``dir_path`` that replaces it only
        once complete, so a failed save leaves any previous model in ``dir_path`` intact.
        ``overwrite=True`` replaces a previously saved model, never a file or a folder with
        other files. Other keyword arguments (``prefix``, ``save_anndata``, ...) go to
        :meth:`scvi.model.base.BaseModelClass.save`.
        """
        path = Path(dir_path)
        if overwrite and path.is_dir() and any(path.iterdir()) and not is_model_folder(path):
            raise ValueError(
                f"{path} holds files that are not a saved model; `overwrite=True` would delete "
                "them. Save to a new folder."
            )

        def write(tmp: Path) -> None:
            BaseModelClass.save(self, str(tmp), overwrite=True, **kwargs)
            write_model_info(tmp, type(self).__name__)

        write_dir_atomic(path, write, overwrite=overwrite)

    @classmethod
    def load(cls, dir_path: str, adata: AnnData | None = None, prefix: str | None = None, **kwargs):
        """Load a saved model; ``adata`` must have the same features in the same order.

        A missing, empty or damaged folder, one saved by another model class or by a newer
        scgde, or ``adata`` with other var names (scvi-tools only warns) raises a clear error.
        """
        weights = check_model_folder(dir_path, prefix, cls.__name__)
        saved_data = [weights.with_name(f"{prefix or ''}{name}") for name in _DATA_FILES]
        if adata is None and not any(path.is_file() for path in saved_data):
            raise ValueError(
                f"{dir_path} holds no data (the model was saved without `save_anndata=True`): "
                f"pass the data it was trained on, `{cls.__name__}.load(dir_path, adata)`."
            )
        try:
            registry = cls.load_registry(dir_path, prefix)
        except Exception as err:  # torch/pickle/zip errors of a damaged file
            raise ValueError(
                f"{weights} is damaged or not a saved model ({type(err).__name__}: {err})."
            ) from err
        if adata is not None:
            args = registry[SETUP_ARGS_KEY]
            if not args.get("obsm_key"):
                genes, proteins = registered_feature_names(registry)
                check_feature_names(
                    adata,
                    dict(args.get("modalities") or {}),
                    genes,
                    proteins,
                    whose="saved model",
                )
        try:
            return super().load(dir_path, adata=adata, prefix=prefix, **kwargs)
        except RuntimeError as err:
            if "state_dict" not in str(err):
                raise
            raise ValueError(
                f"The weights in {weights} do not fit the model that its saved settings describe "
                "(were files of different models mixed?): " + str(err).split("\n", 2)[1].strip()
            ) from err
