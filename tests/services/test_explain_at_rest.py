"""No image, heatmap or raw map readable on disk (they are patient data): the explain service seals what it keeps in
Redis (services.explain.sealing), and Redis's files hold no PNG, JPEG or NumPy data after real jobs, while a finished
and a queued job both survive a Redis restart."""
from __future__ import annotations

import base64
import os
import stat
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from redis import Redis
from rq.job import Job

from services.explain.redis_store import ExplainStore
from services.explain.sealing import (
    PAYLOAD,
    Sealer,
    SealError,
    StoreKeyError,
    load_or_create_key_file,
    parse_key,
    result_context,
)
from tests.services.conftest import fixture_bytes
from tests.services.explain_stack import FAST_ENV, ExplainStack, wait_for_job
from tests.services.redis_server import RedisServer

# Long enough not to turn up by chance in sealed (random-looking) bytes: a 3-byte JPEG start did, about once in
# twenty runs, in the megabyte of ciphertext Redis holds. JPEG uploads are looked for by their own bytes below.
SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\x93NUMPY": "NumPy", b"\xff\xd8\xff\xe0\x00\x10JFIF": "JPEG (JFIF)",
              b"\xff\xd8\xff\xe1": "JPEG (Exif)"}
KEY = parse_key(FAST_ENV["DISEASEID_STORE_KEY"])


# ---- the seal ------------------------------------------------------------------------------------------------


def test_a_sealed_value_opens_only_with_its_key_and_its_place():
    sealer = Sealer(KEY)
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    blob = sealer.seal(data, result_context("job1", "lrp.png"))
    assert blob.startswith(b"dzs1") and data[:4] not in blob and len(blob) == 4 + 12 + len(data) + 16
    assert sealer.open(blob, result_context("job1", "lrp.png")) == data
    assert sealer.seal(data, PAYLOAD) != sealer.seal(data, PAYLOAD)  # a fresh nonce each time
    with pytest.raises(SealError):
        sealer.open(blob, result_context("job2", "lrp.png"))  # another job's file
    with pytest.raises(SealError):
        Sealer(bytes(32)).open(blob, result_context("job1", "lrp.png"))  # another key
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(SealError):
        sealer.open(bytes(tampered), result_context("job1", "lrp.png"))
    with pytest.raises(SealError, match="not a sealed value"):
        sealer.open(data, PAYLOAD)


def test_keys_are_32_bytes_of_base64_and_a_bad_one_is_not_echoed():
    good = base64.urlsafe_b64encode(bytes(range(32))).decode()
    assert parse_key(good) == bytes(range(32)) and parse_key(good.rstrip("=") + "\n") == bytes(range(32))
    for bad in ("c2hvcnQ=", "not base64 at all!!", ""):
        with pytest.raises(StoreKeyError) as refused:
            parse_key(bad)
        assert bad not in str(refused.value) or not bad


def test_the_key_file_is_created_once_private_and_shared_by_concurrent_starters(tmp_path):
    path = tmp_path / "data" / "keys" / "store.key"
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(load_or_create_key_file(path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["store.key"]  # no temporary file left behind
    assert load_or_create_key_file(path) == keys[0]  # read again, not replaced


# ---- the stack, with Redis persisting to disk ----------------------------------------------------------------


def files_under(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def wait_persisted(r: Redis, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        info = r.info("persistence")
        if not info["rdb_bgsave_in_progress"] and not info["aof_rewrite_in_progress"] \
                and not info.get("aof_rewrite_scheduled", 0):
            return
        assert time.monotonic() < deadline, info
        time.sleep(0.1)


def explain(client, image: bytes) -> str:
    r = client.post("/explain", data={"task": "tumor", "model": "student"},
                    files={"file": ("slice.jpg", image, "image/jpeg")})
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


@pytest.mark.slow
def test_redis_files_hold_no_image_and_jobs_survive_a_restart():
    stack = ExplainStack.start(redis=RedisServer(persist=True), DISEASEID_EXPLAIN_PRELOAD="tumor/student",
                               DISEASEID_EXPLAIN_WARMUP="false", DISEASEID_EXPLAIN_TTL_S="600")
    try:
        with stack.client() as client, stack.redis_client() as r:
            worker = stack.start_worker()
            image = fixture_bytes("tumor", "glioma")
            uploads = [image, fixture_bytes("tumor", "meningioma")]
            finished = explain(client, image)
            assert wait_for_job(client, finished)["status"] == "finished"
            files = {name: client.get(f"/explain/{finished}/{name}").content
                     for name in ("panel.png", "gradcam.png", "lrp.png", "gradcam.npy", "lrp.npy")}
            assert files["panel.png"].startswith(b"\x89PNG") and files["lrp.npy"].startswith(b"\x93NUMPY")
            worker.kill()
            queued = explain(client, fixture_bytes("tumor", "meningioma"))  # no worker: it waits in the queue
            job = Job.fetch(queued, connection=r)
            assert job.args[0] is None  # the image is in the job's hash, beside RQ's fields
            sealed = r.hget(job.key, ExplainStore.PAYLOAD_FIELD)
            assert Sealer.is_sealed(sealed) and len(Sealer(KEY).open(sealed, PAYLOAD)) == 224 * 224 * 3

            # Everything Redis keeps on disk, rewritten from what it holds now: the RDB snapshot and the AOF.
            r.bgsave()
            wait_persisted(r)
            r.bgrewriteaof()
            wait_persisted(r)
            on_disk = files_under(stack.redis.data_dir)
            assert any(name.endswith(".rdb") for name in on_disk) and any("aof" in name for name in on_disk), \
                list(on_disk)
            for name, data in on_disk.items():
                found = [kind for signature, kind in SIGNATURES.items() if signature in data]
                assert not found, f"{name} holds {found} data"
                for result, content in files.items():  # nor any stretch of a result file
                    assert content[200:264] not in data, (name, result)
                for upload in uploads:  # nor of an uploaded JPEG, from its first bytes on
                    assert upload[:64] not in data and upload[200:264] not in data, (name, "upload")
                # RQ stores a job's arguments compressed: the queued job's pixels must not be in there either.
                start = data.find(b"x\x9c")
                while start != -1:
                    try:
                        assert b"\x89PNG" not in zlib.decompressobj().decompress(data[start:])
                    except zlib.error:
                        pass
                    start = data.find(b"x\x9c", start + 1)
            pixels = np.frombuffer(Sealer(KEY).open(sealed, PAYLOAD), np.uint8)
            row = pixels[224 * 3 * 100:224 * 3 * 101].tobytes()  # one row of the slice, as queued
            assert all(row not in data for data in on_disk.values())

            # Redis restarts from those files: the finished job's files and the queued job are still there.
            stack.redis.restart()
            again = {name: client.get(f"/explain/{finished}/{name}") for name in files}
            assert {name: (resp.status_code, resp.content) for name, resp in again.items()} == \
                {name: (200, content) for name, content in files.items()}
            assert client.get(f"/explain/{queued}").json()["status"] == "queued"
            stack.start_worker()
            body = wait_for_job(client, queued)
            assert body["status"] == "finished", body
            assert client.get(f"/explain/{queued}/panel.png").content.startswith(b"\x89PNG")
            # What Redis holds for it is sealed too.
            raw = r.get(f"diseaseid:explain:result:{queued}:panel.png")
            assert raw is not None and Sealer.is_sealed(raw) and not raw.startswith(b"\x89PNG")
    finally:
        stack.close()


def test_results_under_another_key_are_not_served(redis):
    from services.explain.redis_store import ExplainStore

    redis.flushdb()
    ours, theirs = ExplainStore(redis, 60, Sealer(KEY)), ExplainStore(redis, 60, Sealer(os.urandom(32)))
    theirs.put_results("j1", {"lrp.png": b"\x89PNG..."})
    assert redis.get(ExplainStore.result_key("j1", "lrp.png")).startswith(b"dzs1")
    assert ours.get_result("j1", "lrp.png") is None and theirs.get_result("j1", "lrp.png") == b"\x89PNG..."
