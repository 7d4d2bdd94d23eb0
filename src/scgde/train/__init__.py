"""Training: the GDE training plan."""

from ._training_plan import GDETrainingPlan

__all__ = ["GDETrainingPlan"]
