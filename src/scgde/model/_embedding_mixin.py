"""Distribution embeddings of groups, streamed over all their cells."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import psutil
import torch
from anndata import AnnData

from .._constants import DEFAULT_KEY_ADDED, UNS_SETTINGS_KEY, X_KEY
from .._utils import check_int, check_key_added, in_memory
from ..data import RegisteredData, cells_of_groups
from ..data._groups import as_key_list
from ..nn._set_encoders import STREAMING_CACHE_BYTES
from ..tl._distances import recorded_settings


class EmbeddedGroups(NamedTuple):
    """Groups embedded from all their cells (:meth:`EmbeddingMixin._embed`)."""

    #: Names of the embedded groups, in the order of the rows of ``z``.
    names: list[str]
    #: ``(n_groups, n_latent)`` embeddings.
    z: np.ndarray
    #: Group of every cell of the AnnData.
    labels: pd.Categorical
    #: Rows of the AnnData of the cells of the embedded groups.
    cell_indices: np.ndarray
    #: Row of ``z`` of each of those cells.
    cell_group_ids: np.ndarray


class GroupChunks(NamedTuple):
    """The cells of selected groups, as the streaming encoder reads them
    (:meth:`EmbeddingMixin._encoder_chunks`)."""

    #: Group of every cell of the AnnData.
    labels: pd.Categorical
    #: Names of the selected groups.
    names: list[str]
    #: Rows of the AnnData of the cells of those groups.
    cell_indices: np.ndarray
    #: Position in ``names`` of each of those cells' group.
    cell_group_ids: np.ndarray
    #: Callable returning a fresh iterable of ``(encoder input, group position)`` chunks.
    chunks: object


#: Most chunks of sparse counts read at once from a backed or lazy matrix, and the bytes
#: (values and column indices) such a read aims at.
READ_CHUNKS, READ_BYTES = 16, 2**25


def default_cache_bytes(data_in_memory: bool, device: torch.device | str = "cpu") -> int:
    """The streaming encoder's default cache on ``device``: for data held in memory, a
    quarter of the memory available now (at least
    :data:`~scgde.nn._set_encoders.STREAMING_CACHE_BYTES`), since whoever loaded the matrix
    whole has memory for its projections; the free memory of a CUDA device bounds it too, as
    the cache lives there. For backed or lazy data,
    :data:`~scgde.nn._set_encoders.STREAMING_CACHE_BYTES`, so that out-of-core embedding stays
    bounded in memory."""
    if not data_in_memory:
        return STREAMING_CACHE_BYTES
    available = psutil.virtual_memory().available
    device = torch.device(device)
    if device.type == "cuda":
        available = min(available, torch.cuda.mem_get_info(device)[0])
    return max(STREAMING_CACHE_BYTES, available // 4)


def spill_folder(disk_cache, data_in_memory: bool) -> str | None:
    """The folder of the streaming encoder's temporary file of projections, from the
    ``disk_cache`` argument of :meth:`EmbeddingMixin.get_distribution_embedding`: ``None``
    (default) means the system's temporary folder for backed or lazy data and no file for
    data in memory; ``True`` / ``False`` force the temporary folder / no file; a path names
    the folder."""
    if disk_cache is None:
        disk_cache = not data_in_memory
    if isinstance(disk_cache, bool):
        return tempfile.gettempdir() if disk_cache else None
    if not isinstance(disk_cache, str | os.PathLike):
        raise TypeError(
            "`disk_cache` must be True, False, None or the path of a folder, not "
            f"{type(disk_cache).__name__}."
        )
    folder = os.fspath(disk_cache)
    if not os.path.isdir(folder):
        raise NotADirectoryError(f"`disk_cache` folder {folder!r} does not exist.")
    return folder


def embedding_columns(n_latent: int) -> list[str]:
    """Names of the embedding's coordinates: ``gde_0``, ``gde_1``, ..."""
    return [f"gde_{i}" for i in range(n_latent)]


class EmbeddingMixin:
    """Embedding methods of :class:`~scgde.model.GDE`."""

    def _model_settings(self) -> dict:
        """The model's settings recorded beside every embedding it writes."""
        return {
            "n_latent": int(self.module.n_latent),
            "encoder": self.encoder_name_,
            "generator": self.generator_name_,
            "likelihood": self.module.likelihood,
        }

    @staticmethod
    def _write_embedding(target: AnnData, key_added: str, table, settings: dict) -> None:
        """Write an embedding table to ``target.uns[key_added]`` and its settings beside
        those of the other keys in ``target.uns["gde"]`` (also scgde 0.1's flat dict)."""
        recorded = recorded_settings(target)
        recorded[key_added] = settings
        target.uns[key_added] = table
        target.uns[UNS_SETTINGS_KEY] = recorded

    def _registered(self, adata) -> RegisteredData:
        return RegisteredData(self.get_anndata_manager(adata, required=True))

    def _chunks(
        self,
        data: RegisteredData,
        cell_indices: np.ndarray,
        cell_group_ids: np.ndarray,
        batch_size: int,
    ) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        device = self.device
        for start in range(0, len(cell_indices), batch_size):
            tensors = data.rows(cell_indices[start : start + batch_size])
            ids = torch.as_tensor(cell_group_ids[start : start + batch_size], device=device)
            yield {k: v.to(device) for k, v in tensors.items()}, ids

    def _encoder_input_rows(self, data: RegisteredData, rows: np.ndarray) -> torch.Tensor:
        """What the set encoder reads of the cells at ``rows`` (increasing): sparse counts stay
        sparse (a sparse CSR tensor); other data are read dense."""
        return self._encoder_input(data, rows, self._sparse_counts(data, rows))

    def _sparse_counts(self, data: RegisteredData, rows: np.ndarray):
        """The counts of the cells at ``rows`` as CSR where the encoder reads them sparse,
        else ``None``."""
        module = self.module
        return data.sparse_rows(rows) if module.count_data and not module.n_proteins else None

    def _encoder_input(self, data: RegisteredData, rows: np.ndarray, counts) -> torch.Tensor:
        """The encoder input of the cells at ``rows``, from their CSR ``counts`` if read."""
        module = self.module
        if counts is not None:
            return module.sparse_encoder_input(counts)
        tensors = {k: v.to(self.device) for k, v in data.rows(rows).items()}
        return module.encoder_input(module.modelled_data(tensors))

    def _encoder_inputs(
        self, data: RegisteredData, rows: np.ndarray, batch_size: int, from_memory: bool
    ) -> Iterator[torch.Tensor]:
        """The encoder input of the cells at ``rows`` (increasing), ``batch_size`` cells at a
        time. Sparse counts not ``from_memory`` are read several chunks at once (at most
        :data:`READ_CHUNKS` chunks and about :data:`READ_BYTES`): each read of a backed or
        lazy matrix has a fixed cost."""
        n_read, start = batch_size, 0
        while start < rows.size:
            block = rows[start : start + n_read]
            counts = self._sparse_counts(data, block)
            for s in range(0, block.size, batch_size):
                piece = counts
                if counts is not None and block.size > batch_size:
                    piece = counts[s : s + batch_size]
                yield self._encoder_input(data, block[s : s + batch_size], piece)
            start += block.size
            if counts is not None and not from_memory:  # the next read: about READ_BYTES
                row_bytes = (counts.data.nbytes + counts.indices.nbytes) / block.size
                fit = int(READ_BYTES // max(row_bytes * batch_size, 1.0))
                n_read = batch_size * min(max(fit, 1), READ_CHUNKS)

    def _encoder_chunks(self, adata, groups, batch_size: int) -> GroupChunks:
        """The selected groups' cells and a factory of their chunks for the streaming
        encoder."""
        labels = self._group_labels(adata)
        names, cell_indices, cell_group_ids = cells_of_groups(labels, groups)
        batch_size = check_int(batch_size, "batch_size")
        module = self.module
        module.eval()
        data = self._registered(adata)
        from_memory = in_memory(data.data[X_KEY])

        def chunks():
            inputs = self._encoder_inputs(data, cell_indices, batch_size, from_memory)
            for start, x in zip(range(0, len(cell_indices), batch_size), inputs, strict=True):
                ids = torch.as_tensor(cell_group_ids[start : start + batch_size])
                yield x, ids.to(self.device)

        return GroupChunks(labels, names, cell_indices, cell_group_ids, chunks)

    def _embed(
        self,
        adata,
        groups,
        batch_size: int,
        cache_bytes: int | None = None,
        disk_cache: bool | str | os.PathLike | None = None,
    ) -> EmbeddedGroups:
        """Embeddings of the selected groups from all their cells, streamed in chunks
        (``cache_bytes=None``: :func:`default_cache_bytes`; ``disk_cache``: as
        :func:`spill_folder` reads it)."""
        values = self.get_anndata_manager(adata, required=True).get_from_registry(X_KEY)
        data_in_memory = in_memory(values)
        folder = spill_folder(disk_cache, data_in_memory)
        cells = self._encoder_chunks(adata, groups, batch_size)
        if cache_bytes is None:
            cache_bytes = default_cache_bytes(data_in_memory, self.device)
        z = self.module.encoder.encode_streaming(
            cells.chunks, len(cells.names), cache_bytes, spill_dir=folder
        )
        z = z.cpu().numpy()
        return EmbeddedGroups(
            cells.names, z, cells.labels, cells.cell_indices, cells.cell_group_ids
        )

    def get_distribution_embedding(
        self,
        adata: AnnData | None = None,
        groups: Sequence[str] | None = None,
        key_added: str | None = DEFAULT_KEY_ADDED,
        batch_size: int = 4096,
        cache_bytes: int | None = None,
        disk_cache: bool | str | os.PathLike | None = None,
    ) -> pd.DataFrame:
        """Embed every group from **all** its cells, and write the result into ``adata``.

        As scanpy's tools do, the result goes into ``adata`` (``uns[key_added]``,
        ``obsm[key_added]``, ``uns["gde"][key_added]``; ``key_added=None`` only returns it).
        The encoder pools by means, so the cells are streamed in chunks of ``batch_size``
        (memory does not grow with group size) and the result equals encoding each group at
        once. Each cell is read once (sparse counts stay sparse), and its projections are
        kept between the encoder's passes within ``cache_bytes``; chunks beyond that budget
        go to a temporary file (``disk_cache``) or are read again. New groups (not seen in
        training) are embedded like any other.

        Parameters
        ----------
        adata
            AnnData with the model's features; default: the training data.
        groups
            Groups to embed; default: all groups with cells.
        key_added
            Where to write the result: ``adata.uns[key_added]`` (the table),
            ``adata.obsm[key_added]`` (each cell gets its group's embedding; NaN for cells of
            groups not embedded) and the settings (group key, encoder, generator, ...) in
            ``adata.uns["gde"][key_added]``, beside those of other keys. ``None`` writes
            nothing.
        batch_size
            Cells per chunk.
        cache_bytes
            Memory for the cells' projections and states between the encoder's passes; 0
            keeps nothing and reads the data once per pass. Default: for a matrix in memory,
            a quarter of the memory available (at least 512 MiB; on a GPU, of its free memory
            if less; a default deep set keeps about 2 kB per cell); for a backed or lazy one,
            512 MiB.
        disk_cache
            Where the projections that do not fit in ``cache_bytes`` go, so that the later
            passes read them back (1.6 kB a cell for a default deep set) instead of reading
            and projecting the data again: the path of a folder for a temporary file,
            ``True`` for the system's temporary folder, ``False`` for no file (those chunks
            are read again in each pass). The file takes at most half the folder's free
            space and half the memory available (the operating system's file cache keeps
            it there; chunks beyond that are read again) and is deleted when the call ends.
            Default: the temporary folder for a backed or lazy matrix, no file for one in
            memory.

        Returns
        -------
        DataFrame of groups × ``n_latent``.
        """
        self._check_if_trained(warn=True)
        if cache_bytes is not None:
            cache_bytes = check_int(cache_bytes, "cache_bytes", minimum=0)
        if key_added is not None:
            check_key_added(key_added, reserved=(UNS_SETTINGS_KEY,))
        target = self.adata if adata is None else adata
        data = self._validate_anndata(adata)
        names, z, _, cell_indices, cell_group_ids = self._embed(
            data, groups, batch_size, cache_bytes, disk_cache
        )
        columns = embedding_columns(z.shape[1])
        table = pd.DataFrame(z, index=pd.Index(names, name="group"), columns=columns)
        if key_added is not None:
            per_cell = np.full((data.n_obs, z.shape[1]), np.nan, dtype=np.float32)
            per_cell[cell_indices] = z[cell_group_ids]
            settings = {
                "group_key": self.group_key,
                "n_groups": len(names),
                **self._model_settings(),
            }
            # all results are computed: write them together so a failure writes nothing
            target.obsm[key_added] = per_cell
            self._write_embedding(target, key_added, table, settings)
        return table

    def get_group_adata(
        self,
        adata: AnnData | None = None,
        groups: Sequence[str] | None = None,
        batch_size: int = 4096,
    ) -> AnnData:
        """An AnnData with one observation per group and the embedding as ``X``.

        ``obs`` carries ``n_cells`` and every obs column of ``adata`` that is constant within
        every group (e.g. disease, donor), ready for ``sc.pp.neighbors(use_rep="X")``,
        ``sc.tl.umap`` and ``sc.pl.umap(color=...)``. ``adata`` is not modified.
        """
        self._check_if_trained(warn=True)
        adata = self._validate_anndata(adata)
        names, z, _, cell_indices, cell_group_ids = self._embed(adata, groups, batch_size)
        obs = adata.obs.iloc[cell_indices]
        grouped = obs.groupby(cell_group_ids, observed=True, sort=True)
        keys = set(as_key_list(self.group_key))
        constant = [
            c
            for c in obs.columns
            if not c.startswith("_scvi")
            and (c in keys or (grouped[c].nunique(dropna=False) <= 1).all())
        ]
        group_obs = grouped[constant].first() if constant else pd.DataFrame(index=range(len(names)))
        for column in constant:
            if isinstance(obs[column].dtype, pd.CategoricalDtype):
                group_obs[column] = pd.Categorical(
                    group_obs[column], categories=obs[column].cat.categories
                ).remove_unused_categories()
        group_obs["n_cells"] = np.bincount(cell_group_ids, minlength=len(names))
        group_obs.index = pd.Index(names, name=None)
        return AnnData(
            X=z.astype(np.float32),
            obs=group_obs,
            var=pd.DataFrame(index=embedding_columns(z.shape[1])),
            uns={UNS_SETTINGS_KEY: {"group_key": self.group_key}},
        )

    @torch.inference_mode()
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int = 4096,
    ) -> np.ndarray:
        """Per-cell latent ``u`` (posterior mean of the CVAE), scvi-tools style.

        Each cell's distribution embedding is computed from all cells of its group.

        Returns
        -------
        numpy.ndarray
            ``(n_cells, n_latent_cell)``, rows in the order of ``indices`` (default: all cells).
        """
        self._check_if_trained(warn=True)
        if not self.module.generator.has_cell_latent:
            raise NotImplementedError("This generator has no per-cell latent representation.")
        adata = self._validate_anndata(adata)
        wanted = np.arange(adata.n_obs) if indices is None else np.asarray(indices)
        if wanted.ndim != 1 or not np.issubdtype(wanted.dtype, np.integer):
            raise TypeError("`indices` must be a 1-d sequence of integer row positions.")
        if wanted.size and (wanted.min() < -adata.n_obs or wanted.max() >= adata.n_obs):
            raise IndexError(
                f"`indices` holds positions outside the {adata.n_obs} cells of the data "
                f"(from {wanted.min()} to {wanted.max()})."
            )
        wanted = wanted % adata.n_obs  # negative positions count from the end
        embedded = self._embed(adata, None, batch_size)
        group_of_cell = np.empty(adata.n_obs, dtype=np.int64)
        group_of_cell[embedded.cell_indices] = embedded.cell_group_ids
        z_t = torch.as_tensor(embedded.z, device=self.device)
        out = []
        data = self._registered(adata)
        for tensors, ids in self._chunks(data, wanted, group_of_cell[wanted], batch_size):
            out.append(self.module.cell_latent(tensors, z_t[ids]).cpu().numpy())
        return np.concatenate(out) if out else np.empty((0, self.module.generator.n_latent_cell))
