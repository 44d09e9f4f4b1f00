"""The model zoo: ``create_model(name, **kwargs)`` over a registry of builders."""
from diseaseid.models import convnet, lite0, mil, pooled  # noqa: F401  (registers the builders)
from diseaseid.models._registry import create_model, list_models, register_model
from diseaseid.models.checkpoint import count_parameters, load_model, read_card, save_model
from diseaseid.models.convnet import ConvNet, feature_sizes
from diseaseid.models.ensemble import LogitEnsemble, load_ensemble

__all__ = ["ConvNet", "LogitEnsemble", "count_parameters", "create_model", "feature_sizes", "list_models",
           "load_ensemble", "load_model", "read_card", "register_model", "save_model"]
