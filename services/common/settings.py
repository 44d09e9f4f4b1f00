"""Settings shared by every HTTP service, read from ``DISEASEID_*`` environment variables.

Services subclass :class:`ServiceSettings` to add their own fields; the shared ones are

- ``DISEASEID_API_KEYS``: comma-separated keys for ``X-API-Key``; empty means development mode (no auth);
- ``DISEASEID_MAX_UPLOAD_BYTES``: the largest accepted image file (default 20 MB);
- ``DISEASEID_MAX_PIXELS``: the pixel cap checked before decoding (default 4096 x 4096: an MRI slice is at
  most a few thousand pixels a side; anything larger is refused from its header, undecoded);
- ``DISEASEID_HEAVY_DECODE_PIXELS``, ``DISEASEID_MAX_HEAVY_DECODES``, ``DISEASEID_DECODE_WAIT_S``: images
  over that many pixels are decoded at most that many at a time per process; one that waits longer than
  ``DECODE_WAIT_S`` for its turn gets a 503 with ``Retry-After`` (see services.common.uploads);
- ``DISEASEID_MIN_IMAGE_SIDE``: smaller images are degenerate (a 1x1 PNG is not an MRI slice);
- ``DISEASEID_TORCH_THREADS`` and ``DISEASEID_DEVICE`` (cpu | cuda | auto);
- ``DISEASEID_NICE`` (how far the process lowers its priority at start: 0 for the APIs, 10 for explain workers
  unless set) and ``DISEASEID_CPUS`` (the CPUs it may use, e.g. ``0`` or ``1-3``; empty: all):
  services.common.process;
- ``DISEASEID_RUNTIME``: what runs predictions (auto | torch | onnxruntime | openvino; auto: ONNX Runtime on a
  CPU, PyTorch on a GPU; see diseaseid.serving.runtime); explanations always use PyTorch;
- ``DISEASEID_LOG_LEVEL``.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MB = 1024 * 1024
# Far above any MRI slice, far below what a small file can make a decoder allocate (diseaseid.limits.MAX_PIXELS,
# the training-time cap, is 64 MP).
SERVICE_MAX_PIXELS = 4096 * 4096


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DISEASEID_", extra="ignore")

    # SecretStr keeps keys out of reprs, tracebacks and logs.
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    max_upload_bytes: int = Field(20 * MB, ge=1)
    max_pixels: int = Field(SERVICE_MAX_PIXELS, ge=1)
    # About 1400 x 1400 and up: what a typical slice (<= 512 a side) is not.
    heavy_decode_pixels: int = Field(2_000_000, ge=1)
    max_heavy_decodes: int = Field(1, ge=1)
    decode_wait_s: float = Field(2.0, ge=0)
    min_image_side: int = Field(16, ge=1)
    torch_threads: int = Field(1, ge=1)
    device: str = "auto"  # cpu | cuda | auto (CUDA when available)
    runtime: Literal["auto", "torch", "onnxruntime", "openvino"] = "auto"  # diseaseid.serving.runtime
    nice: int | None = Field(None, ge=0, le=19)  # None: the process's default (services.common.process)
    cpus: str = ""  # CPU affinity list; empty: every CPU
    log_level: str = "INFO"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    def torch_device(self) -> str:
        """``auto`` picks CUDA when it is there: asked of ONNX Runtime where it serves (so that a process serving
        exported graphs never imports torch), else of torch (the CPU where torch is not installed)."""
        if self.device != "auto":
            return self.device
        import importlib.util

        if self.runtime in ("onnxruntime", "openvino") or importlib.util.find_spec("torch") is None:
            if self.runtime != "onnxruntime" or importlib.util.find_spec("onnxruntime") is None:
                return "cpu"  # OpenVINO serves on the CPU only
            import onnxruntime

            return "cuda" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
