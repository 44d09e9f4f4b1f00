"""One router per resource: predictions, models, health (with metrics)."""
