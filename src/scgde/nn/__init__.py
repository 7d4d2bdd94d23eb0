"""Torch building blocks: set encoders, conditional generators and set pooling."""

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
    "ENCODERS",
    "GENERATORS",
    "CVAEGenerator",
    "DeepSetEncoder",
    "DiffusionGenerator",
    "FlowGenerator",
    "Generator",
    "KMEEncoder",
    "MeanEncoder",
    "SetEncoder",
    "ShiftPredictor",
    "make_encoder",
    "make_generator",
    "segment_mean",
    "segment_sum",
]
