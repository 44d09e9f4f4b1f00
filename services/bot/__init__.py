"""Telegram bot: a clinician sends an MRI slice, gets a conclusion and the heatmaps behind it.

Talks to the inference and explain services over HTTP only (see `client.py`); never imports the models.
Run with `python -m services.bot`.
"""
