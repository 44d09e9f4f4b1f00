"""Robustness to what a scanner's export changes: families of acquisition change applied to the raw slice
(:mod:`~diseaseid.robustness.perturbations`), every shipped model measured under them
(:mod:`~diseaseid.robustness.evaluate`), and where the explanations put their relevance
(:mod:`~diseaseid.robustness.relevance`). ``python -m diseaseid robustness`` runs it all."""
