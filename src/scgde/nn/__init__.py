"""Torch building blocks: set encoders, conditional generators, batch penalties and set
pooling."""

from ._batch_penalty import (
    BATCH_CORRECTIONS,
    DEFAULT_BATCH_CORRECTION_WEIGHTS,
    BatchHSIC,
    make_batch_penalty,
    normalized_hsic,
)
from ._diffusion import DiffusionGenerator
from ._flow import FlowGenerator
from ._generator import Generator
from ._generators import GENERATORS, CVAEGenerator, make_generator
from ._segment import segment_mean, segment_sum
from ._set_encoders import (
    ENCODERS,
    DeepSetEncoder,
    KMEEncoder,
    MeanEncoder,
    SetEncoder,
    make_encoder,
)
from ._shift_predictor import ShiftPredictor

__all__ = [
    "BATCH_CORRECTIONS",
    "DEFAULT_BATCH_CORRECTION_WEIGHTS",
    "ENCODERS",
    "GENERATORS",
    "BatchHSIC",
    "CVAEGenerator",
    "DeepSetEncoder",
    "DiffusionGenerator",
    "FlowGenerator",
    "Generator",
    "KMEEncoder",
    "MeanEncoder",
    "SetEncoder",
    "ShiftPredictor",
    "make_batch_penalty",
    "make_encoder",
    "make_generator",
    "normalized_hsic",
    "segment_mean",
    "segment_sum",
]
