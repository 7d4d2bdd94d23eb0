"""The module of perturbation models: GDE plus a predictor of embedding shifts."""

from __future__ import annotations

from ..nn import ShiftPredictor
from ._gde import GDEModule


class PerturbationGDEModule(GDEModule):
    """:class:`.GDEModule` with a :class:`~scgde.nn.ShiftPredictor` (``shift_predictor``).

    The predictor maps a context's control embedding and a perturbation's features to the
    shift of the perturbed cells' embedding; it is fitted after the embedding (see
    :class:`scgde.model.PerturbationGDE`), not by the module's loss.

    Parameters
    ----------
    n_perturbation_features
        Number of perturbation features.
    predictor_kwargs
        Passed to the shift predictor (``n_hidden``, ``n_layers``, ``dropout``).
    **kwargs
        Passed to :class:`GDEModule`.
    """

    def __init__(
        self, *, n_perturbation_features: int, predictor_kwargs: dict | None = None, **kwargs
    ):
        super().__init__(**kwargs)
        self.shift_predictor = ShiftPredictor(
            self.n_latent, n_perturbation_features, **(predictor_kwargs or {})
        )
