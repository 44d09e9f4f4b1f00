"""Training, distillation, hyper-parameter search, calibration and evaluation."""
