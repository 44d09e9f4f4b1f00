"""Our own layer-wise relevance propagation: rules, composites, canonizers and the propagation itself."""
from diseaseid.explain.lrp.composites import (
    COMPOSITES,
    DEPTH_GAMMA_EPSILON,
    EPSILON,
    EPSILON_ALPHA2_BETA1,
    EPSILON_GAMMA_BOX,
    EPSILON_PLUS_FLAT,
    Composite,
    epsilon_composite,
    get_composite,
)
from diseaseid.explain.lrp.propagate import LRP, Relevance
from diseaseid.explain.lrp.rules import AlphaBeta, Epsilon, Flat, Gamma, Rule, WSquare, ZBox, ZPlus

__all__ = ["COMPOSITES", "DEPTH_GAMMA_EPSILON", "EPSILON", "EPSILON_ALPHA2_BETA1", "EPSILON_GAMMA_BOX",
           "EPSILON_PLUS_FLAT", "LRP", "AlphaBeta", "Composite", "Epsilon", "Flat", "Gamma", "Relevance",
           "Rule", "WSquare", "ZBox", "ZPlus", "epsilon_composite", "get_composite"]
