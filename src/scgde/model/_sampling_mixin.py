"""Generation of cells from groups or embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from anndata.utils import make_index_unique
from scipy import sparse

from .._constants import BATCH_KEY
from .._utils import check_int
from ..nn._blocks import block_totals
from ._gene_space import representation_to_genes


class SamplingMixin:
    """``sample`` of :class:`~scgde.model.GDE`."""

    def sample(
        self,
        groups: Sequence[str] | None = None,
        embedding: pd.DataFrame | np.ndarray | None = None,
        n_cells: int = 100,
        adata: AnnData | None = None,
        batch: str | None = None,
        seed: int | None = 0,
        batch_size: int = 4096,
        sampler_kwargs: dict | None = None,
        loadings: str | None = None,
    ) -> AnnData:
        """Generate cells from groups or from arbitrary embeddings.

        Parameters
        ----------
        groups
            Groups of ``adata`` to generate from (their embeddings are computed from all their
            cells). Default when ``embedding`` is also ``None``: every group.
        embedding
            Embeddings to generate from instead, e.g. an interpolation between two groups:
            a groups × ``n_latent`` DataFrame (its index names the outputs) or array.
        n_cells
            Cells generated per group or embedding (every group by default, so fewer than
            the 500 per pair of :meth:`~scgde.model.PerturbationGDE.predict`, which are
            scored as pseudobulks).
        adata
            Reference AnnData; default: the training data.
        batch
            Batch category to generate in. Default: each generated cell copies the batch,
            covariates and library size of a random cell of its group (of ``adata`` when
            generating from ``embedding``).
        seed
            Seed of the generated cells (the same cells on every call by default, as in
            :meth:`~scgde.model.PerturbationGDE.predict`); ``None``: fresh cells on every
            call.
        sampler_kwargs
            Passed to the generator's ``sample``. For ``generator="flow"``: the ODE solver,
            e.g. ``{"method": "heun", "n_sampling_steps": 20}`` (default: Euler, 10 steps).
            For ``generator="diffusion"``: ``{"method": "ddim", "n_sampling_steps": 50}`` for a
            fast deterministic sampler (default: ancestral DDPM over all training steps).
        loadings
            For a model of a linear representation (``setup_anndata(obsm_key=...)``): key of
            ``adata.varm`` with its gene loadings (``"PCs"`` after ``sc.pp.pca``). The cells are
            then returned in gene space, ``X = rep @ varm[loadings].T + mean(adata.X)``, with
            the representation kept in ``obsm[obsm_key]``.

        Returns
        -------
        AnnData of generated cells (raw counts, CSR, for count likelihoods; the representation,
        or genes with ``loadings``) with the source group or embedding name in
        ``obs["group"]``. For a model of RNA and proteins (:meth:`setup_mudata` with a
        ``"protein_layer"``): a MuData with both modalities, named as in the training data.
        """
        args = (adata, batch, seed, batch_size, sampler_kwargs, loadings)
        return self._sample(groups, embedding, n_cells, *args)

    def counterfactual_cells(
        self,
        to: str | np.ndarray | pd.Series,
        groups: Sequence[str] | None = None,
        n_cells: int | None = None,
        adata: AnnData | None = None,
        seed: int | None = 0,
        batch_size: int = 4096,
        sampler_kwargs: dict | None = None,
        loadings: str | None = None,
    ) -> AnnData:
        """Real cells of ``groups`` as they would be in another distribution.

        Each cell is moved by the generator from its group's embedding to the embedding
        ``to`` (:meth:`scgde.nn.Generator.counterfactual`): the CVAE decodes the cell from
        its own latent under both embeddings and changes it by the difference of the decoded
        means (counts are thinned where a mean falls and gain Poisson counts where it rises);
        the flow integrates the cell back to its own noise and forward under both. Unlike
        :meth:`sample`, the cells keep the variation, sparsity and library sizes of real
        cells, each can be traced to the cell it comes from, and a cell moved to its own
        group's embedding does not change. The perturbation predictions of
        :class:`~scgde.model.PerturbationGDE` move control cells this way by default.

        Parameters
        ----------
        to
            Where to move the cells: the name of a group of ``adata`` (its embedding from all
            its cells), or an embedding (a vector of ``n_latent`` values, e.g. a row of
            :meth:`get_distribution_embedding` or a point between two groups).
        groups
            Groups of ``adata`` whose cells are moved (each from its own embedding); default:
            every group.
        n_cells
            Cells moved per group, drawn without replacement where the group has that many
            (else with replacement); default: every cell once, in the order of ``adata``.
        adata, seed, batch_size, sampler_kwargs, loadings
            As in :meth:`sample`.

        Returns
        -------
        AnnData of the moved cells (raw counts, CSR, for count likelihoods), named after the
        cells they come from (made unique where a cell is drawn twice), with their group in
        ``obs["group"]`` and the target in ``obs["moved_to"]`` (the group's name, or
        ``"embedding"``).
        """
        self._check_if_trained(warn=True)
        if n_cells is not None:
            n_cells = check_int(n_cells, "n_cells")
        self._check_sampling_args(sampler_kwargs, loadings)
        adata = self._validate_anndata(adata)
        target, z_to = self._target_embedding(adata, to, batch_size)
        embedded = self._embed(adata, groups, batch_size)
        donors = _cells_of_groups(embedded)
        z_to = np.repeat(z_to, len(donors), axis=0)
        x, _, cells = self._counterfactual(
            adata, embedded.z, z_to, donors, n_cells, seed, sampler_kwargs, batch_size
        )
        sizes = [len(d) if n_cells is None else n_cells for d in donors]
        group = pd.Categorical(np.repeat(embedded.names, sizes), categories=embedded.names)
        obs = pd.DataFrame(
            {"group": group, "moved_to": target},
            index=pd.Index(adata.obs_names[cells].astype(str)),
        )
        if not obs.index.is_unique:
            obs.index = make_index_unique(obs.index)
        return self._generated_data(x, obs, adata, loadings)

    def _target_embedding(self, adata, to, batch_size: int) -> tuple[str, np.ndarray]:
        """Name and ``(1, n_latent)`` embedding of the ``to`` of :meth:`counterfactual_cells`."""
        if isinstance(to, str):
            return to, self._embed(adata, [to], batch_size).z
        if isinstance(to, pd.DataFrame):
            raise ValueError("Pass one embedding as `to` (a vector or a Series), not a table.")
        _, z = self._embedding_input(np.asarray(to, dtype=np.float32).reshape(1, -1))
        named = isinstance(to, pd.Series) and to.name is not None
        return (str(to.name) if named else "embedding"), z

    #: Name of the argument of :meth:`sample` that selects what to generate from.
    _selection_name = "groups"

    def _sample(
        self,
        selection,
        embedding,
        n_cells,
        adata,
        batch,
        seed,
        batch_size,
        sampler_kwargs,
        loadings,
    ):
        """:meth:`sample`, from the sets named by ``selection`` (see :meth:`_sources`) or from
        ``embedding``."""
        self._check_if_trained(warn=True)
        n_cells = check_int(n_cells, "n_cells")
        if selection is not None and embedding is not None:
            raise ValueError(f"Pass either `{self._selection_name}` or `embedding`, not both.")
        self._check_sampling_args(sampler_kwargs, loadings)
        adata = self._validate_anndata(adata)
        columns = {}
        if embedding is None:
            names, z, donors, columns = self._sources(adata, selection, n_cells, batch_size, seed)
        else:
            names, z = self._embedding_input(embedding)
            donors = [np.arange(adata.n_obs)] * len(names)
        x = self._generate(
            adata, z, donors, n_cells, batch, seed, sampler_kwargs, embedding is None
        )
        obs = pd.DataFrame(
            {"group": pd.Categorical(np.repeat(names, n_cells), categories=names)},
            index=[f"gen_{i}" for i in range(x.shape[0])],
        )
        for column, values in columns.items():
            obs[column] = np.repeat(values, n_cells)
        return self._generated_data(x, obs, adata, loadings)

    def _sources(self, adata, groups, n_cells: int, batch_size: int, seed):
        """What to generate from: names, embeddings (rows of ``z``), the cells whose
        covariates each copies, and further per-source obs columns of the output."""
        embedded = self._embed(adata, groups, batch_size)
        return embedded.names, embedded.z, _cells_of_groups(embedded), {}

    def _check_sampling_args(self, sampler_kwargs, loadings) -> None:
        """Clear errors for ``sampler_kwargs`` that are not a dict and for ``loadings`` on a
        model of genes."""
        if sampler_kwargs is not None and not isinstance(sampler_kwargs, dict):
            raise ValueError(f"`sampler_kwargs` must be a dict, got {type(sampler_kwargs)}.")
        if loadings is not None and self._setup_args.get("obsm_key") is None:
            raise ValueError(
                "`loadings` maps a representation back to genes, but this model was set up on "
                "genes (no `obsm_key`): its samples are already in gene space."
            )

    def _generated_data(self, x: np.ndarray, obs: pd.DataFrame, adata, loadings: str | None):
        """Generated cells ``x`` as an AnnData (a MuData for RNA and proteins), with ``obs``."""
        if self.module.n_proteins:
            return self._generated_mudata(x, obs)
        if loadings is not None:
            genes = representation_to_genes(x, adata, loadings)
            obsm = {self._setup_args["obsm_key"]: x}
            return AnnData(X=genes, obs=obs, var=pd.DataFrame(index=adata.var_names), obsm=obsm)
        var = pd.DataFrame(index=self.var_names.astype(str))
        return AnnData(X=sparse.csr_matrix(x) if self.module.count_data else x, obs=obs, var=var)

    @torch.inference_mode()
    def _generate(
        self,
        adata,
        z: np.ndarray,
        donors: Sequence[np.ndarray],
        n_cells: int,
        batch: str | None,
        seed: int | None,
        sampler_kwargs: dict | None,
        copy_library: bool,
    ) -> np.ndarray:
        """``n_cells`` cells per row of ``z``; each copies the covariates of a random cell of
        ``donors[row]`` (and its library size if ``copy_library``, else a log-normal draw)."""
        self.module.eval()
        rng = np.random.default_rng(seed)
        if seed is not None:
            torch.manual_seed(seed)
        reference = self._registered(adata)
        if batch is not None:
            mapping = list(self.adata_manager.get_state_registry(BATCH_KEY).categorical_mapping)
            if str(batch) not in [str(m) for m in mapping]:
                raise ValueError(f"Unknown batch {batch!r}; known batches: {mapping}.")
            batch_code = [str(m) for m in mapping].index(str(batch))
        chunks = []
        for g in range(len(z)):
            cells = rng.choice(donors[g], n_cells, replace=True)
            tensors = {k: v.to(self.device) for k, v in reference.rows(cells).items()}
            if batch is not None:
                tensors[BATCH_KEY] = torch.full_like(tensors[BATCH_KEY], batch_code)
            library = self._library_for(tensors, copy_library) if self.module.count_data else None
            generated = self.module.sample(
                self._z_rows(z[g], n_cells), tensors, library, sampler_kwargs
            )
            chunks.append(generated.cpu().numpy())
        return np.concatenate(chunks).astype(np.float32)

    @torch.inference_mode()
    def _counterfactual(
        self,
        adata,
        z_from: np.ndarray,
        z_to: np.ndarray,
        donors: Sequence[np.ndarray],
        n_cells: int | None,
        seed: int | None,
        sampler_kwargs: dict | None,
        batch_size: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n_cells`` real cells per row: drawn from ``donors[row]`` (without replacement
        where there are enough; ``None``: every donor once, in order), and the same cells
        moved from ``z_from[row]`` to ``z_to[row]`` (see
        :meth:`scgde.module.GDEModule.counterfactual`). Returns ``(moved, real, cells)``,
        ``cells`` the rows of ``adata`` they come from."""
        self.module.eval()
        rng = np.random.default_rng(seed)
        if seed is not None:
            torch.manual_seed(seed)
        reference = self._registered(adata)
        moved, real, drawn = [], [], []
        for g in range(len(z_to)):
            cells = np.asarray(donors[g])
            if n_cells is not None:
                cells = rng.choice(cells, n_cells, replace=n_cells > len(cells))
            drawn.append(cells)
            for start in range(0, len(cells), batch_size):
                chunk = cells[start : start + batch_size]
                tensors = {k: v.to(self.device) for k, v in reference.rows(chunk).items()}
                rows = [self._z_rows(z[g], len(chunk)) for z in (z_from, z_to)]
                out, x = self.module.counterfactual(tensors, *rows, sampler_kwargs)
                moved.append(out.cpu().numpy())
                real.append(x.cpu().numpy())
        moved, real = (np.concatenate(a).astype(np.float32) for a in (moved, real))
        return moved, real, np.concatenate(drawn)

    def _z_rows(self, z: np.ndarray, n: int) -> torch.Tensor:
        """One embedding as ``n`` rows, a float32 tensor on the model's device."""
        return torch.as_tensor(z, device=self.device, dtype=torch.float32).expand(n, -1)

    def _generated_mudata(self, x: np.ndarray, obs: pd.DataFrame):
        """Generated RNA and protein counts as a MuData with the model's modality names."""
        from mudata import MuData

        n_genes = len(self.var_names)
        names = self._modalities
        mods = {
            names["rna_layer"]: AnnData(
                X=sparse.csr_matrix(x[:, :n_genes]),
                obs=obs.copy(),
                var=pd.DataFrame(index=self.var_names.astype(str)),
            ),
            names["protein_layer"]: AnnData(
                X=sparse.csr_matrix(x[:, n_genes:]),
                obs=obs.copy(),
                var=pd.DataFrame(index=self.protein_names.astype(str)),
            ),
        }
        mdata = MuData(mods)
        mdata.obs["group"] = obs["group"]
        return mdata

    def _library_for(self, tensors: dict[str, torch.Tensor], from_group: bool) -> torch.Tensor:
        """``(n_cells, n_blocks)`` library sizes per modality: the copied cells' own, or
        log-normal draws for their batch."""
        if from_group:
            data = self.module.modelled_data(tensors)
            return block_totals(data, self.module.block_sizes).clamp(min=1.0)
        batch = tensors[BATCH_KEY].long().view(-1)
        mean = self.module.library_log_mean[batch]
        std = self.module.library_log_std[batch]
        return torch.exp(mean + std * torch.randn_like(mean))

    def _embedding_input(self, embedding) -> tuple[list[str], np.ndarray]:
        if isinstance(embedding, pd.DataFrame):
            names, z = [str(i) for i in embedding.index], embedding.to_numpy(dtype=np.float32)
        else:
            z = np.atleast_2d(np.asarray(embedding, dtype=np.float32))
            names = [f"embedding_{i}" for i in range(z.shape[0])]
        if z.ndim != 2 or z.shape[1] != self.module.n_latent or not np.isfinite(z).all():
            raise ValueError(
                f"`embedding` must be finite with {self.module.n_latent} columns, "
                f"got shape {z.shape}."
            )
        if z.shape[0] == 0:
            raise ValueError("`embedding` has no rows: there is nothing to generate from.")
        if len(set(names)) != len(names):
            duplicated = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"`embedding` has duplicated row names {duplicated[:5]}.")
        return names, z


def _cells_of_groups(embedded) -> list[np.ndarray]:
    """The rows of each embedded group's cells (``embedded``: an ``EmbeddedGroups``)."""
    return [embedded.cell_indices[embedded.cell_group_ids == g] for g in range(len(embedded.names))]
