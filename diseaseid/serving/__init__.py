"""What services need from the ML core: loaded predictors with calibrated, OOD-checked outputs."""
from diseaseid.serving.default import DefaultModel, choose_default, default_model
from diseaseid.serving.predictor import ROLES, Prediction, Predictor, shipped_weights
from diseaseid.serving.study import BackboneMismatch, StudyModel, StudyResult, shipped_mil

__all__ = ["ROLES", "BackboneMismatch", "DefaultModel", "Prediction", "Predictor", "StudyModel", "StudyResult",
           "choose_default", "default_model", "shipped_mil", "shipped_weights"]
