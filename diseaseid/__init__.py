"""diseaseid: brain-MRI diagnosis support - data, models, training and explainers."""

__version__ = "0.1.0"
