"""The explain service: ``POST /explain`` queues a Grad-CAM/LRP job on Redis (RQ); workers compute it.

Run the API with ``uvicorn services.explain.main:app`` and one or more workers with
``python -m services.explain.worker`` (both read ``REDIS_URL``).
"""
