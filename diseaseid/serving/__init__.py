"""What services need from the ML core: loaded predictors with calibrated, OOD-checked outputs."""
from diseaseid.serving.predictor import ROLES, Prediction, Predictor, shipped_weights

__all__ = ["ROLES", "Prediction", "Predictor", "shipped_weights"]
