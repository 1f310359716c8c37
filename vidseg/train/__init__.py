"""One SimVP trial: ``fit(config, shards, report)``, and ``python -m vidseg.train`` for single runs."""

from vidseg.train.config import TrainConfig
from vidseg.train.loop import FitResult, TrialDiverged, build_model, fit

__all__ = ["TrainConfig", "FitResult", "TrialDiverged", "build_model", "fit"]
