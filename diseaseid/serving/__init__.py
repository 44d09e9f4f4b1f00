"""What services need from the ML core: loaded predictors with calibrated, OOD-checked outputs."""
from diseaseid.outcomes import DIAGNOSIS, NOT_A_BRAIN_MRI, OUTCOMES, WRONG_TASK
from diseaseid.serving.default import DefaultModel, choose_default, default_model
from diseaseid.serving.pool import ModelPool, all_models, warm_up_predict
from diseaseid.serving.predictor import ROLES, Prediction, Predictor, shipped_weights
from diseaseid.serving.study import (
    BackboneMismatch,
    StudyAnswer,
    StudyModel,
    StudyResult,
    answer_study,
    shipped_mil,
)

__all__ = ["DIAGNOSIS", "NOT_A_BRAIN_MRI", "OUTCOMES", "ROLES", "WRONG_TASK", "BackboneMismatch", "DefaultModel",
           "ModelPool", "Prediction", "Predictor", "StudyAnswer", "StudyModel", "StudyResult", "all_models",
           "answer_study", "choose_default", "default_model", "shipped_mil", "shipped_weights", "warm_up_predict"]
