"""Small files that are large images: refused from the header, decoded small, rationed, memory given back.

Before: a 182 KB black 7,900 x 7,900 PNG (under the old 64 MP cap) cost ~0.9 s of CPU, eight at once held
4 GB, and a flood of them held a normal request for 20 s.
"""
from __future__ import annotations

import asyncio
import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from diseaseid.data.preprocess import decode_image
from services.common.errors import Busy, ImageTooLarge
from services.common.images import decode_image_bytes, probe_image
from services.common.settings import ServiceSettings
from services.common.uploads import DecodeGate, _decode_heavy
from tests.helpers import bomb_png
from tests.services.conftest import fixture_bytes

SETTINGS = ServiceSettings(api_keys="")


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def gradient(side: int) -> Image.Image:
    """A smooth image with structure at every scale, so that resampling differences show."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    arr = 127 + 60 * np.sin(6 * x) * np.cos(4 * y) + 60 * (x - y)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")


def test_the_7900_png_is_refused_from_its_header():
    data = bomb_png(7900)
    assert len(data) < 200_000
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge, match="7900x7900"):
        decode_image_bytes(data, SETTINGS)
    with pytest.raises(ImageTooLarge):
        probe_image(data, SETTINGS)
    assert time.perf_counter() - started < 0.1  # nothing was decoded
    assert decode_image_bytes(bomb_png(4096), SETTINGS).array.shape == (224, 224, 3)  # the cap is 4096^2


def test_slices_of_ordinary_size_decode_exactly_as_in_training():
    for data in (fixture_bytes("tumor", "glioma"), fixture_bytes("dementia", "NonDemented"),
                 encode(gradient(448), "PNG"), encode(gradient(448), "JPEG", quality=90)):
        assert np.array_equal(decode_image_bytes(data, SETTINGS).array, decode_image(data))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_large_images_are_decoded_small_and_still_look_the_same(fmt):
    data = encode(gradient(3600), fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    fast = decode_image_bytes(data, SETTINGS).array.astype(np.int16)
    full = decode_image(data).astype(np.int16)  # the training path: full decode, then resize
    assert np.abs(fast - full).mean() < 2.0
    probe = probe_image(data, SETTINGS)
    assert (probe.format, probe.width, probe.height) == (fmt.lower(), 3600, 3600)


def heavy_settings(**kw) -> ServiceSettings:
    return ServiceSettings(api_keys="", heavy_decode_pixels=10_000, max_heavy_decodes=1, **kw)


def test_the_gate_rations_large_decodes_and_never_holds_small_ones():
    large = encode(gradient(200), "PNG")  # 40,000 pixels: "heavy" for these settings
    small = encode(gradient(64), "PNG")

    async def scenario():
        gate = DecodeGate(heavy_settings(decode_wait_s=0.2))

        async def slow_run(fn, *args, **kwargs):
            if fn is _decode_heavy:
                await asyncio.sleep(0.6)  # hold the only slot longer than anyone waits
            return await asyncio.to_thread(fn, *args, **kwargs)

        heavy = [asyncio.create_task(gate.decode(large, run=slow_run)) for _ in range(3)]
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        light = await gate.decode(small, run=slow_run)
        light_s = time.perf_counter() - started
        results = await asyncio.gather(*heavy, return_exceptions=True)
        return gate, light, light_s, results

    gate, light, light_s, results = asyncio.run(scenario())
    assert light.array.shape == (224, 224, 3) and light_s < 0.3
    done = [r for r in results if not isinstance(r, Exception)]
    busy = [r for r in results if isinstance(r, Busy)]
    assert len(done) == 1 and len(busy) == 2 and gate.refused == 2
    assert busy[0].status == 503 and busy[0].retry_after == 1


def test_waiting_briefly_is_enough_when_the_slot_frees_up():
    large = encode(gradient(200), "PNG")

    async def scenario():
        gate = DecodeGate(heavy_settings(decode_wait_s=5))
        return await asyncio.gather(*(gate.decode(large) for _ in range(4)))

    assert all(r.array.shape == (224, 224, 3) for r in asyncio.run(scenario()))


def test_decode_then_runs_the_pass_in_the_decodes_trip_and_large_images_through_the_gate():
    small = encode(gradient(64), "PNG")
    large = encode(gradient(200), "PNG")  # heavy for these settings

    async def scenario(data: bytes):
        gate, trips, seen = DecodeGate(heavy_settings(decode_wait_s=5)), [], []

        async def counting_run(fn, *args, **kwargs):
            trips.append(fn.__name__)
            return await asyncio.to_thread(fn, *args, **kwargs)

        def then(image):
            seen.append(image)
            return int(image.array.sum())

        image, decode_s, result = await gate.decode_then(data, then, run=counting_run)
        return image, decode_s, result, trips, seen

    for data, trips_expected in ((small, ["_decode_then"]), (large, ["_decode_then", "_decode_heavy", "then"])):
        image, decode_s, result, trips, seen = asyncio.run(scenario(data))
        assert trips == trips_expected
        assert seen == [image] and result == int(decode_image_bytes(data, SETTINGS).array.sum())
        assert np.array_equal(image.array, decode_image_bytes(data, SETTINGS).array) and 0 < decode_s < 5

    def refuse(image):
        raise Busy("no")

    async def refused():
        return await DecodeGate(SETTINGS).decode_then(small, refuse)

    with pytest.raises(Busy):
        asyncio.run(refused())


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_a_flood_of_large_images_leaves_normal_requests_and_memory_alone(inference_server):
    big = encode(Image.new("RGB", (4096, 4096)), "PNG")  # 49 KB, 16.7 MP of RGB
    normal = fixture_bytes("tumor", "glioma")
    url = inference_server.url + "/predict"

    def post(data: bytes) -> httpx.Response:
        return httpx.post(url, data={"task": "tumor"}, files={"file": ("x", data, "application/octet-stream")},
                          timeout=60)

    post(normal)
    before = rss_mb(inference_server.proc.pid)
    with ThreadPoolExecutor(12) as pool:
        flood = [pool.submit(post, big) for _ in range(12)]
        time.sleep(0.3)
        started = time.perf_counter()
        ordinary = post(normal)
        ordinary_s = time.perf_counter() - started
        answers = [f.result() for f in flood]
    assert ordinary.status_code == 200 and ordinary_s < 3.0, ordinary_s
    for r in answers:
        assert r.status_code in (200, 503), r.text
        if r.status_code == 503:
            assert r.json()["error"]["code"] == "busy" and r.headers["retry-after"] == "1"
    assert any(r.status_code == 200 for r in answers)
    time.sleep(0.5)
    grown = rss_mb(inference_server.proc.pid) - before
    assert grown < 150, f"the process kept {grown:.0f} MB after the burst"


def test_a_small_image_takes_one_trip_to_the_pool_and_a_large_one_two():
    small = encode(gradient(64), "PNG")
    large = encode(gradient(200), "PNG")

    async def scenario(data):
        calls = []

        async def counting_run(fn, *args, **kwargs):
            calls.append(fn.__name__)
            return await asyncio.to_thread(fn, *args, **kwargs)

        decoded = await DecodeGate(heavy_settings(decode_wait_s=1)).decode(data, run=counting_run)
        return decoded, calls

    decoded, calls = asyncio.run(scenario(small))
    assert calls == ["_decode_unless_large"]
    assert np.array_equal(decoded.array, decode_image_bytes(small, heavy_settings()).array)
    decoded, calls = asyncio.run(scenario(large))
    assert calls == ["_decode_unless_large", "_decode_heavy"]
    assert np.array_equal(decoded.array, decode_image_bytes(large, heavy_settings()).array)
