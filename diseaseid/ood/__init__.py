"""Out-of-distribution checks: is an upload a brain MRI slice of the kind a task reads?

- ``detector``: the decision at serving time: image checks, image statistics, the feature-distance detector
  (``FeatureDetector``, loaded from ``weights/<task>/ood.*``), which shipped model's features decide
  (``detector_of``) and the energy score used where no statistics fit.
- ``features``: what the detector reads from its model (pooled features and logits of one forward pass), and
  their disk cache for fitting.
- ``fit``: fitting the statistics and threshold (``diseaseid ood-fit``), the energy threshold of every model card,
  and the tables of docs/ood.md.
- ``images``: the one generator of non-MRI images (two disjoint seeded sets, and two single examples), for
  fitting, measuring, the robustness benchmark and tests.

``diseaseid.serving`` uses ``detector`` and ``features``; the rest runs only when fitting or measuring.
Method and figures: docs/ood.md.
"""
