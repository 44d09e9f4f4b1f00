"""Explanations of a model's decision as heatmaps: our own LRP and Grad-CAM, their rendering, their
evaluation.

``explain_maps(model, x, methods, target)`` is the entry point; ``render`` turns maps into PNG overlays.
"""
from diseaseid.explain.maps import MAP_METHODS, explain_maps

__all__ = ["MAP_METHODS", "explain_maps"]
