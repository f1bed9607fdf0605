"""Memory on demand: what is in memory, one value out now, the coldest
out until N bytes are freed, where a stored copy lives, and the budget's
options (weights only, every load kept, small eviction batches, shards)."""

import os

import numpy as np
import pytest

from chest import Chest, ChestError

KiB = 1 << 10


def test_in_memory_spill_and_keys_in_memory(tmp_path):
    with Chest(tmp_path / "c", memory_budget=1 << 20, shards=1) as c:
        for i in range(8):
            c[i] = np.full(1000, i)
        assert sorted(c.keys_in_memory()) == list(range(8))
        assert c.spill(3) is True
        assert not c.in_memory(3) and 3 in c
        assert c.spill(3) is False, "already out of memory"
        assert c.spill("absent") is False
        assert sorted(c.keys_in_memory()) == [0, 1, 2, 4, 5, 6, 7]
        # get_in_memory never reads: a spilled or absent key gives the default.
        loads = c.stats()["loads"]
        assert c.get_in_memory(3) is None and c.get_in_memory("absent", 7) == 7
        assert c.get_in_memory(4) is c[4]
        assert c.stats()["loads"] == loads
        np.testing.assert_array_equal(c[3], np.full(1000, 3))


def test_evict_frees_the_coldest_first():
    with Chest(memory_budget=1 << 20, shards=1, count_overhead=False, weigher=lambda v: 10_000) as c:
        for i in range(10):
            c[i] = i
        freed = c.evict(25_000)
        assert 25_000 <= freed < 40_000
        assert sorted(c.keys_in_memory()) == [3, 4, 5, 6, 7, 8, 9]
        assert c.evict(1 << 40) == 70_000
        assert c.keys_in_memory() == [] and c.memory_usage == 0
        assert [c[i] for i in range(10)] == list(range(10))


def test_stored_object_is_a_file_of_the_chest(tmp_path):
    with Chest(tmp_path / "c", serializer="raw") as c:
        c["k"] = b"v" * 300_000
        assert c.stored_object("k") is None
        c.flush()
        name = c.stored_object("k")
        assert name.startswith("data/")
        assert os.path.getsize(tmp_path / "c" / name) >= 300_000


def test_weights_only_budget():
    with Chest(count_overhead=False, weigher=len) as c:
        c["a"] = b"x" * 1000
        c["b"] = b"y" * 24
        assert c.memory_usage == 1024
    with Chest(weigher=len) as c:
        c["a"] = b"x" * 1000
        assert c.memory_usage > 1000


def test_keep_loaded_keeps_every_value_read_back():
    for options, expect_kept in (
        (dict(keep_loaded=True), True),
        (dict(admission="second_read"), False),
    ):
        with Chest(memory_budget=64 * KiB, shards=1, **options) as c:
            c["cold"] = np.zeros(2000)
            c.spill("cold")
            for i in range(200):  # memory full of small values
                c[i] = bytes(1000)
            c["cold"]  # read once
            assert c.in_memory("cold") is expect_kept


def test_admission_picks_which_reads_stay_in_memory():
    def loads_for_three_reads(**options):
        with Chest(memory_budget=64 * KiB, shards=1, **options) as c:
            c["v"] = np.zeros(2000)
            c.spill("v")
            for i in range(200):  # memory full of small values
                c[i] = bytes(1000)
            loads = c.stats()["loads"]
            for _ in range(3):
                c["v"]
            return c.stats()["loads"] - loads

    assert loads_for_three_reads(admission="every_read") == 1
    assert loads_for_three_reads(keep_loaded=True) == 1
    assert loads_for_three_reads(admission="second_read") == 2
    # Read once, it waits on probation: read again soon, it is there.
    assert loads_for_three_reads(admission="frequency") == 1
    with pytest.raises(ValueError, match="admission must be"):
        Chest(admission="sometimes")
    with pytest.raises(ValueError, match="keep_loaded=True"):
        Chest(keep_loaded=True, admission="frequency")


def test_a_value_read_again_is_kept_by_default():
    with Chest(memory_budget=64 * KiB, shards=1) as c:
        c["warm"] = np.zeros(2000)
        c.spill("warm")
        for i in range(200):
            c[i] = bytes(1000)
        loads = c.stats()["loads"]
        for _ in range(3):
            assert c["warm"].shape == (2000,)
        assert c.stats()["loads"] == loads + 1, "on probation after its first read"
        for i in range(1000, 1010):  # other reads push it out of the window...
            c[i] = bytes(1000)
            c.spill(i)
            c[i]
        assert c.in_memory("warm"), "... into memory: it was used there"



def test_a_failed_flush_names_each_kind(tmp_path):
    class Bad:
        def __reduce__(self):
            raise TypeError("refused")

    with Chest(tmp_path / "c", writer_threads=0) as c:
        c["bad"] = Bad()
        c["good"] = 1
        with pytest.raises(ChestError) as e:
            c.flush()
        assert "serialize" in e.value.kinds
        assert "'bad'" in e.value.keys
        del c["bad"]


def test_live_views_of_the_keys_by_where_their_values_are():
    with Chest(memory_budget=1 << 20, shards=1) as c:
        memory, spilled = c.memory, c.spilled
        assert len(memory) == 0 and not spilled
        for i in range(5):
            c[i] = i
        c.spill(1)
        c.spill(3)
        assert sorted(memory) == [0, 2, 4] and sorted(spilled) == [1, 3]
        assert len(memory) == 3 and len(spilled) == 2
        assert 1 in spilled and 1 not in memory and 9 not in memory and [1] not in memory
        loads = c.stats()["loads"]
        assert bool(spilled) and 3 in spilled
        assert c.stats()["loads"] == loads, "len, in and truth load nothing"
        assert memory[2] == 2
        with pytest.raises(KeyError):
            memory[1]
        c[9] = 9  # the views follow the chest
        assert 9 in memory and len(memory) == 4
