"""The inference service: ``uvicorn services.inference.main:app`` (see ``main.create_app``)."""
