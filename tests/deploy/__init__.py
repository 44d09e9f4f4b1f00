"""Deployment: `make up` (Procfile, scripts/up.sh, the local Redis), docker compose and the Dockerfile."""
