"""chest.dask.ChestBuffer: a dask worker's spill buffer — the mapping, the
fast/slow views, evict(), spilled_total, max_spill, and the error contract
of distributed's own spill tests (re-written for this buffer) — and dask
clusters computing on arrays four times their workers' memory target."""

import logging
import os
import pickle

import numpy as np
import pytest

from chest.dask import ChestBuffer

KiB = 1 << 10


class Bad:
    """A value that refuses to be pickled, of a given weight."""

    def __init__(self, size):
        self.size = size

    @property
    def nbytes(self):
        return self.size

    def __reduce__(self):
        raise RuntimeError("this value cannot be pickled")


def blob(n, fill=0):
    return np.full(n, fill, dtype="u1")


@pytest.fixture
def buf(tmp_path):
    b = ChestBuffer(str(tmp_path), target=300 * KiB, shards=1, writer_threads=0)
    yield b
    b.close()


def test_the_mapping_and_the_views(buf):
    buf["a"] = blob(100 * KiB, 1)
    buf["b"] = blob(100 * KiB, 2)
    assert set(buf.fast) == {"a", "b"} and len(buf.slow) == 0
    assert buf.memory is not None and buf.disk is not None
    buf["c"] = blob(150 * KiB, 3)  # over the target: the coldest goes
    assert "a" in buf.slow and "a" not in buf.fast
    assert set(buf) == {"a", "b", "c"} and len(buf) == 3
    assert buf.spilled_total.disk >= 100 * KiB
    # Reading a spilled value brings it back into memory (as zict.Buffer).
    np.testing.assert_array_equal(buf["a"], blob(100 * KiB, 1))
    assert "a" in buf.fast
    del buf["a"]
    del buf["c"]
    assert set(buf) == {"b"}
    with pytest.raises(KeyError):
        buf["a"]


def test_contains_never_touches_the_store(buf):
    buf["a"] = blob(400 * KiB)  # heavier than the target: spilled at once
    assert "a" in buf.slow
    loads = buf._chest.stats()["loads"]
    assert "a" in buf and "zzz" not in buf and [1] not in buf
    assert buf._chest.stats()["loads"] == loads


def test_a_heavy_value_goes_straight_to_disk(buf):
    buf["heavy"] = blob(500 * KiB, 7)
    assert "heavy" in buf.slow and len(buf.fast) == 0
    np.testing.assert_array_equal(buf["heavy"], blob(500 * KiB, 7))


def test_a_spilled_value_still_referenced_comes_back_as_itself_without_a_read(buf):
    held = blob(200 * KiB, 5)
    buf["held"] = held
    buf["other"] = blob(200 * KiB, 6)  # over the target: "held" is spilled
    assert "held" in buf.slow
    loads = buf._chest.stats()["loads"]
    assert buf["held"] is held
    assert buf._chest.stats()["loads"] == loads
    # Once nothing else holds it, it is read from the store: equal, not the same.
    del held
    value = buf["held"]
    assert buf._chest.stats()["loads"] == loads + 1
    np.testing.assert_array_equal(value, blob(200 * KiB, 5))


def test_a_value_replaced_or_deleted_is_never_handed_back(buf):
    old = blob(200 * KiB, 1)
    buf["k"] = old
    buf["k"] = blob(200 * KiB, 2)  # the old one is still alive here
    buf["x"] = blob(200 * KiB, 3)  # spills "k"
    assert "k" in buf.slow
    np.testing.assert_array_equal(buf["k"], blob(200 * KiB, 2))
    del buf["k"]
    with pytest.raises(KeyError):
        buf["k"]
    buf["k"] = b"no weak reference to bytes"
    buf._chest.spill("k")
    assert "k" in buf.slow
    assert buf["k"] == b"no weak reference to bytes"
    buf.clear()
    with pytest.raises(KeyError):
        buf["x"]


def test_evict_returns_the_weight_freed_or_minus_one(buf, caplog):
    assert buf.evict() == -1, "nothing in memory"
    buf["a"] = blob(100 * KiB)
    freed = buf.evict()
    assert 100 * KiB <= freed < 101 * KiB
    assert "a" in buf.slow
    buf["bad"] = Bad(10 * KiB)
    with caplog.at_level(logging.ERROR, logger="chest.dask"):
        assert buf.evict() == -1
    assert "Failed to pickle" in caplog.text
    assert "bad" in buf.fast


def test_max_spill_keeps_data_in_memory_and_logs(tmp_path, caplog):
    b = ChestBuffer(str(tmp_path), target=200 * KiB, max_spill=600 * KiB, shards=1, writer_threads=0)
    try:
        with caplog.at_level(logging.WARNING, logger="chest.dask"):
            for i in range(12):
                b[f"k{i}"] = blob(150 * KiB, i)  # 1.8 MiB through a 600 KiB cap
        assert "Spill file on disk reached capacity" in caplog.text
        assert caplog.text.count("reached capacity") == 1, "rate-limited"
        assert b.spilled_total.disk <= 600 * KiB
        assert len(b.fast) > 1, "memory grew past the target instead"
        for i in range(12):
            np.testing.assert_array_equal(b[f"k{i}"], blob(150 * KiB, i))
    finally:
        b.close()


def test_a_heavy_value_that_fails_to_pickle_is_removed_and_raises(buf, caplog):
    with caplog.at_level(logging.ERROR, logger="chest.dask"):
        with pytest.raises(TypeError, match="Failed to pickle 'a'") as e:
            buf["a"] = Bad(400 * KiB)
    assert "a" not in buf and len(buf) == 0
    assert e.value.__cause__ is not None
    assert "Failed to pickle" not in caplog.text, "raised, not logged"


def test_a_light_value_that_fails_to_pickle_stays_and_is_logged_once(buf, caplog):
    buf["b"] = Bad(100 * KiB)
    assert "b" in buf.fast
    with caplog.at_level(logging.ERROR, logger="chest.dask"):
        for i in range(6):
            buf[f"c{i}"] = blob(100 * KiB, i)  # each insert tries to evict "b" first
    assert "b" in buf.fast
    assert "Failed to pickle 'b'" in caplog.text
    assert caplog.text.count("Failed to pickle") == 1, "once per key"
    assert all(f"c{i}" in buf for i in range(6))


def test_keys_of_different_types_do_not_collide(buf):
    buf[1] = 10
    buf["1"] = 20
    buf.evict()
    buf.evict()
    assert dict(buf.items()) == {1: 10, "1": 20}


def test_the_folder_is_the_buffers_own_and_goes_on_close(tmp_path):
    b1 = ChestBuffer(str(tmp_path), target=1 << 20)
    b2 = ChestBuffer(str(tmp_path), target=1 << 20)
    b1["x"], b2["x"] = 1, 2
    assert (b1["x"], b2["x"]) == (1, 2), "two buffers of one directory are apart"
    assert len(os.listdir(tmp_path)) == 2
    b1.close()
    b2.close()
    assert os.listdir(tmp_path) == []


def test_a_compressed_location_of_its_own(tmp_path):
    base = "zstd+" + (tmp_path / "spill").as_uri()
    b = ChestBuffer(str(tmp_path / "worker"), target=64 * KiB, location=base, writer_threads=0)
    try:
        for i in range(20):
            b[f"k{i}"] = np.zeros(16 * KiB)  # compresses well
        assert len(b.slow) > 0
        on_disk = sum(
            os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(tmp_path / "spill") for f in fs
        )
        # spilled_total counts the bytes handed to the store; the zstd layer
        # compresses them on their way to disk.
        assert 0 < on_disk < b.spilled_total.disk / 10, (on_disk, b.spilled_total)
        np.testing.assert_array_equal(b["k3"], np.zeros(16 * KiB))
        assert b._chest.location.startswith(base), "a prefix of its own under the location"
    finally:
        b.close()


def test_pop_and_clear(buf):
    buf["a"] = 1
    buf["b"] = blob(400 * KiB)
    assert buf.pop("a") == 1
    buf.clear()
    assert len(buf) == 0 and len(buf.slow) == 0


def _spill_computation(processes):
    import dask.array as da
    from distributed import Client, LocalCluster

    target = 32 << 20
    n = (128 << 20) // 8  # an array of 128 MiB: four times the target
    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=processes,
        memory_limit=0,
        dashboard_address=":0",
        data=(ChestBuffer, {"target": target, "shards": 1}),
    ) as cluster, Client(cluster) as client:
        x = da.arange(n, chunks=n // 64, dtype="f8").persist()
        total = x.sum().compute()
        assert total == n * (n - 1) / 2
        doubled = (x * 2).sum().compute()
        assert doubled == n * (n - 1)
        spilled = client.run(lambda dask_worker: tuple(dask_worker.data.spilled_total))
        kinds = client.run(lambda dask_worker: type(dask_worker.data).__name__)
        slow = client.run(lambda dask_worker: len(dask_worker.data.slow))
        assert set(kinds.values()) == {"ChestBuffer"}
        assert all(s[1] > 64 << 20 for s in spilled.values()), spilled
        assert all(n_slow > 0 for n_slow in slow.values()), slow


def test_a_local_cluster_in_this_process_spills_to_the_buffer():
    _spill_computation(processes=False)


def test_a_local_cluster_of_worker_processes_spills_to_the_buffer():
    _spill_computation(processes=True)
