"""S3-compatible object storage, on the real servers scripts/test.sh starts:
Garage (which ignores conditional writes: `lock=none`, one writer per
prefix kept by the test) and Ceph RGW (which honours them: a writer lease).
Without a server's settings in the environment these tests skip, saying
so; with CHEST_REQUIRE_SERVERS=1 (scripts/test.sh) they fail instead."""

import os
import time
import urllib.parse

import numpy as np
import pytest

from chest import Chest, ChestError


def server(var):
    url = os.environ.get(var)
    if url:
        return url
    message = f"{var} is not set: no S3 server to test against (scripts/test.sh starts them)"
    if os.environ.get("CHEST_REQUIRE_SERVERS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def fresh(url, tag):
    """`url` with a prefix of its own: `<path>/tests/<tag>-<pid>-<ns>`."""
    parts = urllib.parse.urlsplit(url)
    path = f"{parts.path.rstrip('/')}/tests/py-{tag}-{os.getpid()}-{time.time_ns()}"
    return urllib.parse.urlunsplit(parts._replace(path=path))


@pytest.mark.parametrize("scheme", ["", "zstd+"])
def test_spill_flush_and_reopen_on_garage(scheme):
    url = scheme + fresh(server("CHEST_S3_URL"), "garage")
    arrays = {i: np.random.default_rng(i).random(20_000) for i in range(24)}
    with Chest(url, memory_budget=512 << 10) as c:
        for k, a in arrays.items():
            c[k] = a
        assert c.stats()["spills"] > 0
        np.testing.assert_array_equal(c[3], arrays[3])
    with Chest(url, memory_budget=512 << 10) as c:
        assert sorted(c) == sorted(arrays)
        for k, a in arrays.items():
            np.testing.assert_array_equal(c[k], a)
        assert "secret" not in repr(c).lower()


def test_one_writer_with_a_lease_on_ceph():
    url = fresh(server("CHEST_CEPH_URL"), "ceph")
    with Chest(url, memory_budget=256 << 10) as c:
        for i in range(40):
            c[i] = bytes([i]) * 20_000
        c.flush()
        with pytest.raises(ChestError) as e:
            Chest(url)
        assert e.value.kind == "locked"
        with Chest(url, read_only=True) as r:
            assert r[7] == bytes([7]) * 20_000
    with Chest(url) as c:
        assert len(c) == 40 and c[39] == bytes([39]) * 20_000


def test_a_dask_buffer_spills_to_a_prefix_of_its_own_on_garage():
    from chest.dask import ChestBuffer

    base = fresh(server("CHEST_S3_URL"), "dask")
    buffers = [ChestBuffer(target=256 << 10, location=base) for _ in range(2)]
    try:
        for n, b in enumerate(buffers):
            for i in range(8):
                b[f"k{i}"] = np.full(16_384, n * 100 + i)  # 128 KiB each: most spill
        for n, b in enumerate(buffers):
            assert len(b.slow) > 0, "nothing spilled"
            for i in range(8):
                assert b[f"k{i}"][0] == n * 100 + i, "two buffers of one location are apart"
    finally:
        for b in buffers:
            b.close()
