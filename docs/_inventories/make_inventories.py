"""Write the Sphinx inventories (``<name>.inv``) that intersphinx reads in ``docs/conf.py``.

The documentation links to anndata, scanpy, scvi-tools, numpy, pandas, torch, matplotlib,
mudata, POT, SciPy and the Python standard library. Their own ``objects.inv`` files would have
to be downloaded on every build; instead these small inventories are committed next to this
script and the build reads them from disk, offline.

Each inventory lists objects that exist in the *installed* packages (found by walking the
public names of a few modules: the ones scgde uses and the main public API of each project),
with the URL each project's documentation gives them. A class also gets an entry under its
defining path (``anndata._core.anndata.AnnData``, ``pandas.core.frame.DataFrame``) pointing at
the same page: autodoc writes type hints with that path, and Sphinx's own inventories list
such ``:canonical:`` names the same way.

Regenerate after upgrading one of the packages (in the docs environment)::

    python docs/_inventories/make_inventories.py            # all projects
    python docs/_inventories/make_inventories.py numpy ot   # some of them

The file format is Sphinx's "version 2": four header lines, then zlib-compressed lines
``name domain:role priority uri dispname`` (see ``sphinx.util.inventory``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import inspect
import sys
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Entry:
    name: str  # the name users write, e.g. "numpy.random.Generator"
    role: str  # "py:class", "py:function", ...
    uri: str  # relative to the project's base URL (in docs/conf.py's intersphinx_mapping)
    priority: int = 1  # -1: an alias (defining path of a class), as Sphinx writes them


@dataclass
class Project:
    """One external project: which names to list and where its documentation puts them."""

    distribution: str  # for the version in the header
    modules: list[str]  # walk the public names of these
    uri: Callable[[str, str, str], str]  # (name, role, canonical name) -> page#anchor
    member_classes: list[str] = field(default_factory=list)  # also list their members
    member_uri: Callable[[str, str], str] | None = None  # (class name, member) -> page#anchor
    extra: list[str] = field(default_factory=list)  # single names outside the walked modules
    # the project name in the header (default: the key in PROJECTS)
    project: str | None = None


# -- URL schemes ---------------------------------------------------------------------------
# Each function returns a path relative to the project's base URL, the way the project's
# documentation lays its pages out (the intersphinx links go there: keep them in sync).


def _one_page_each(prefix: str) -> Callable[[str, str, str], str]:
    """One page per object: ``{prefix}{name}.html#{name}`` (autosummary's layout)."""
    return lambda name, role, canonical: f"{prefix}{name}.html#{name}"


def _member_page_each(prefix: str) -> Callable[[str, str], str]:
    """Members on pages of their own: ``{prefix}{cls}.{member}.html#{cls}.{member}``."""
    return lambda cls, member: f"{prefix}{cls}.{member}.html#{cls}.{member}"


def _member_on_class_page(prefix: str) -> Callable[[str, str], str]:
    """Members documented on their class's page: ``{prefix}{cls}.html#{cls}.{member}``."""
    return lambda cls, member: f"{prefix}{cls}.html#{cls}.{member}"


def _python_uri(name: str, role: str, canonical: str) -> str:
    if role == "py:module":
        return f"library/{name}.html#module-{name}"
    module = name.rpartition(".")[0]
    return f"library/{module}.html#{name}"


_NUMPY_SCALARS = "reference/arrays.scalars.html#"


def _numpy_uri(name: str, role: str, canonical: str) -> str:
    import numpy as np

    short = name.rpartition(".")[2]
    if name in ("numpy.random.Generator", "numpy.random.default_rng"):
        return f"reference/random/generator.html#{name}"
    if name == "numpy.random.RandomState":
        return f"reference/random/legacy.html#{name}"
    if name in ("numpy.random.SeedSequence", "numpy.random.BitGenerator"):
        return f"reference/random/bit_generators/generated/{name}.html#{name}"
    if name.startswith("numpy.random.") and role == "py:class":  # PCG64, MT19937, ...
        return f"reference/random/bit_generators/{short.lower()}.html#{name}"
    if name.startswith("numpy.random."):  # legacy functions
        return f"reference/random/generated/{name}.html#{name}"
    if name.startswith("numpy.typing."):
        return f"reference/typing.html#{name}"
    obj = getattr(np, short, None) if name.count(".") == 1 else None
    if inspect.isclass(obj) and issubclass(obj, np.generic):
        return f"{_NUMPY_SCALARS}{name}"
    if role == "py:data" and not isinstance(obj, np.ufunc):
        return f"reference/constants.html#{name}"
    return f"reference/generated/{name}.html#{name}"


def _numpy_member_uri(cls: str, member: str) -> str:
    if cls == "numpy.random.Generator":
        return f"reference/random/generated/{cls}.{member}.html#{cls}.{member}"
    return f"reference/generated/{cls}.{member}.html#{cls}.{member}"


_TORCH_TENSOR_ATTRIBUTES = {"torch.dtype", "torch.device", "torch.layout", "torch.memory_format"}


def _torch_uri(name: str, role: str, canonical: str) -> str:
    if name == "torch.Tensor":
        return "tensors.html#torch.Tensor"
    if name in _TORCH_TENSOR_ATTRIBUTES:
        return f"tensor_attributes.html#{name}"
    if name.startswith("torch.distributions."):  # one page, classes under their module path
        return f"distributions.html#{canonical}"
    if name.startswith("torch.utils.data."):
        return f"data.html#{name}"
    return f"generated/{name}.html#{name}"


def _ot_uri(name: str, role: str, canonical: str) -> str:
    """POT: one page per module (``gen_modules/ot.bregman.html``)."""
    if role == "py:module":
        return f"gen_modules/{name}.html#module-{name}"
    return f"gen_modules/{name.rpartition('.')[0]}.html#{name}"


# -- Projects ------------------------------------------------------------------------------

PROJECTS: dict[str, Project] = {
    "python": Project(
        distribution="",
        project="Python",
        modules=["collections.abc", "typing"],
        extra=["os", "os.PathLike", "os.fspath", "pathlib", "pathlib.Path", "pathlib.PurePath"]
        + ["urllib", "urllib.request", "functools", "functools.partial", "itertools"],
        uri=_python_uri,
    ),
    "numpy": Project(
        distribution="numpy",
        modules=["numpy", "numpy.random", "numpy.linalg", "numpy.typing"],
        member_classes=["numpy.ndarray", "numpy.random.Generator"],
        member_uri=_numpy_member_uri,
        uri=_numpy_uri,
    ),
    "scipy": Project(
        distribution="scipy",
        project="SciPy",
        modules=["scipy.sparse", "scipy.linalg", "scipy.stats", "scipy.cluster.hierarchy"]
        + ["scipy.spatial.distance"],
        uri=_one_page_each("reference/generated/"),
    ),
    "pandas": Project(
        distribution="pandas",
        modules=["pandas"],
        member_classes=["pandas.DataFrame", "pandas.Series", "pandas.Categorical"],
        member_uri=_member_page_each("reference/api/"),
        uri=_one_page_each("reference/api/"),
    ),
    "anndata": Project(
        distribution="anndata",
        modules=["anndata", "anndata.io"],
        member_classes=["anndata.AnnData"],
        member_uri=_member_page_each("generated/"),
        uri=_one_page_each("generated/"),
    ),
    "mudata": Project(
        distribution="mudata",
        modules=["mudata"],
        member_classes=["mudata.MuData"],
        member_uri=_member_page_each("generated/"),
        uri=_one_page_each("generated/"),
    ),
    "scanpy": Project(
        distribution="scanpy",
        modules=["scanpy", "scanpy.pp", "scanpy.tl", "scanpy.pl", "scanpy.get"],
        uri=_one_page_each("generated/"),
    ),
    "scvi": Project(
        distribution="scvi-tools",
        project="scvi-tools",
        modules=["scvi.model", "scvi.model.base", "scvi.module", "scvi.module.base"]
        + ["scvi.train", "scvi.data", "scvi.dataloaders", "scvi.nn", "scvi.distributions"],
        member_classes=["scvi.model.base.BaseModelClass", "scvi.module.base.BaseModuleClass"]
        + ["scvi.train.TrainingPlan", "scvi.train.Trainer", "scvi.data.AnnDataManager"],
        member_uri=_member_on_class_page("api/reference/"),
        uri=_one_page_each("api/reference/"),
    ),
    "torch": Project(
        distribution="torch",
        project="PyTorch",
        modules=["torch", "torch.nn", "torch.nn.functional", "torch.optim"]
        + ["torch.utils.data", "torch.distributions"],
        member_classes=["torch.nn.Module"],
        member_uri=_member_on_class_page("generated/"),
        uri=_torch_uri,
    ),
    "matplotlib": Project(
        distribution="matplotlib",
        modules=["matplotlib.pyplot", "matplotlib.colors"],
        extra=["matplotlib.axes.Axes", "matplotlib.figure.Figure", "matplotlib.figure.SubFigure"],
        member_classes=["matplotlib.axes.Axes", "matplotlib.figure.Figure"],
        member_uri=_member_page_each("api/_as_gen/"),
        uri=_one_page_each("api/_as_gen/"),
    ),
    "ot": Project(
        distribution="pot",
        project="POT Python Optimal Transport",
        modules=["ot", "ot.bregman", "ot.lp", "ot.gmm", "ot.sliced", "ot.unbalanced"]
        + ["ot.gromov", "ot.utils"],
        uri=_ot_uri,
    ),
}


# -- Introspection -------------------------------------------------------------------------


def _role(obj: object) -> str:
    if inspect.ismodule(obj):
        return "py:module"
    if inspect.isclass(obj):
        return "py:exception" if issubclass(obj, BaseException) else "py:class"
    if inspect.isroutine(obj):
        return "py:function"
    return "py:data"  # instances: numpy ufuncs, scipy.stats distributions, constants


def _defined_in(obj: object, root: str) -> bool:
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str):
        return True  # some builtins (torch's) have none: trust the module they are found in
    return module == root or module.startswith(root + ".")


def _public_names(module_name: str) -> Iterator[tuple[str, object]]:
    """``(name, object)`` of a module's public API: ``__all__``, else names defined in it."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    explicit = names is not None
    if names is None:
        names = [n for n in dir(module) if not n.startswith("_")]
    root = module_name.split(".")[0]
    for name in sorted(set(names)):
        obj = getattr(module, name, None)
        if obj is None or inspect.ismodule(obj) or name.startswith("_"):
            continue
        # without __all__, only what the module (or its package) defines; with it, what the
        # project defines (re-exports from other projects are documented there)
        if not _defined_in(obj, root if explicit else module_name):
            continue
        if _role(obj) == "py:data" and not (callable(obj) or explicit):
            continue  # plain values without __all__ are usually imports or internals
        yield f"{module_name}.{name}", obj


def _canonical(name: str, obj: object) -> str:
    """The defining path of a class (``pandas.core.frame.DataFrame``), else ``name``."""
    if inspect.isclass(obj) and isinstance(getattr(obj, "__module__", None), str):
        return f"{obj.__module__}.{obj.__qualname__}"
    return name


def _locate(name: str) -> object:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(name)


def _members(cls: type, root: str) -> Iterator[tuple[str, str]]:
    """``(member, role)`` of a class's public members defined in the project (not ``object``'s)."""
    for member in sorted(dir(cls)):
        if member.startswith("_"):
            continue
        owner = next((c for c in cls.__mro__ if member in vars(c)), None)
        if owner is None or not _defined_in(owner, root):
            continue
        raw = inspect.getattr_static(owner, member)
        if isinstance(raw, property) or type(raw).__name__ == "cached_property":
            role = "py:property"
        elif isinstance(raw, (staticmethod, classmethod)) or inspect.isroutine(raw):
            role = "py:method"
        else:
            role = "py:attribute"
        yield member, role


def entries(key: str, project: Project) -> list[Entry]:
    found: dict[tuple[str, str], Entry] = {}

    def add(name: str, obj: object) -> None:
        role = _role(obj)
        canonical = _canonical(name, obj)
        uri = project.uri(name, role, canonical)
        found.setdefault((name, role), Entry(name, role, uri))
        if canonical != name and _defined_in(obj, name.split(".")[0]):
            found.setdefault((canonical, role), Entry(canonical, role, uri, priority=-1))

    for module_name in project.modules:
        for name, obj in _public_names(module_name):
            add(name, obj)
    for name in project.extra:
        add(name, _locate(name))
    for cls_name in project.member_classes:
        cls = _locate(cls_name)
        assert project.member_uri is not None, key
        add(cls_name, cls)
        for member, role in _members(cls, cls_name.split(".")[0]):
            name = f"{cls_name}.{member}"
            found.setdefault((name, role), Entry(name, role, project.member_uri(cls_name, member)))
    return sorted(found.values(), key=lambda e: (e.role, e.name))


def _version(project: Project) -> str:
    if not project.distribution:
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    return importlib.metadata.version(project.distribution)


def write(key: str, project: Project, folder: Path = HERE) -> Path:
    """Write ``folder/<key>.inv``; return its path."""
    lines = "".join(f"{e.name} {e.role} {e.priority} {e.uri} -\n" for e in entries(key, project))
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project.project or key}\n"
        f"# Version: {_version(project)}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    path = folder / f"{key}.inv"
    path.write_bytes(header.encode() + zlib.compress(lines.encode(), 9))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("projects", nargs="*", help=f"some of {', '.join(PROJECTS)} (default: all)")
    parser.add_argument("--out", type=Path, default=HERE, help="folder (default: this one)")
    args = parser.parse_args(argv)
    if unknown := set(args.projects) - set(PROJECTS):
        parser.error(f"unknown projects {sorted(unknown)}; known: {', '.join(PROJECTS)}")
    warnings.simplefilter("ignore")  # deprecation noise of the imported packages
    for key in args.projects or PROJECTS:
        path = write(key, PROJECTS[key], args.out)
        n = len(zlib.decompress(path.read_bytes().split(b"\n", 4)[4]).splitlines())
        print(f"{path.name}: {n} objects, {path.stat().st_size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
