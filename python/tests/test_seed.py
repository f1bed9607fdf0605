"""chest.core.Chest: the seed's API (blaze/chest 0.2.3) over this chest.
Each test is the intent of one of the seed's own tests (named after it),
with the differences the module documents (stored files are not one pickle
per key; ``with`` flushes a chest at a given path)."""

import gc
import json
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from chest.core import Chest, key_to_filename, nbytes


@pytest.fixture
def tmp_chest(tmp_path):
    made = []

    def make(*args, **kwargs):
        c = Chest(*args, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        if os.path.exists(c.path):
            c.drop()


def test_basic(tmp_chest):
    c = tmp_chest()
    c[1] = "one"
    c["two"] = 2
    assert c[1] == "one" and c["two"] == 2
    assert c.path and os.path.isdir(c.path)
    assert len(c) == 2 and set(c) == {1, "two"}


def test_paths_move_to_disk_writes_a_file(tmp_chest):
    c = tmp_chest()
    c[1] = "one"
    assert c.key_to_filename(1) is None, "only in memory: no file yet"
    c.move_to_disk(1)
    assert 1 not in c.inmem
    fn = c.key_to_filename(1)
    assert fn.startswith(c.path) and os.path.exists(fn)
    assert c[1] == "one"


def test_limited_storage(tmp_chest):
    c = tmp_chest(available_memory=5000)
    x, y = np.ones(1000, dtype="i4"), np.ones(1000, dtype="i4") * 2
    c["x"] = x
    c["y"] = y
    assert c.memory_usage < c.available_memory
    assert "x" in c and "y" in c
    assert list(c.inmem) == ["y"], "the older value went to disk, the newer stayed"
    np.testing.assert_array_equal(c["x"], x)
    np.testing.assert_array_equal(c["y"], y)


def test_limited_shrink_called_normally(tmp_chest):
    c = tmp_chest(available_memory=0)
    c["x"] = np.arange(100)
    assert not c.inmem
    c["y"] = np.arange(200)
    assert not c.inmem
    np.testing.assert_array_equal(c["x"], np.arange(100))
    assert not c.inmem, "a value read back is pushed out at once"


def test_shrink_evicts_least_recently_used(tmp_chest):
    c = tmp_chest(available_memory=10_000)
    c["one"] = np.zeros(600)  # 4800 bytes
    c["two"] = np.zeros(400)  # 3200
    c["three"] = np.zeros(400)  # 3200: "one" (the oldest) goes
    assert set(c.inmem) == {"two", "three"}


def test_drop(tmp_chest):
    c = tmp_chest()
    c["x"] = 1
    c.flush()
    assert os.path.exists(c.path)
    c.drop()
    assert not os.path.exists(c.path)


def test_flush_writes_everything_and_empties_memory(tmp_chest):
    c = tmp_chest()
    c[1] = 1
    c[2] = 2
    c.flush()
    assert c.inmem == {} and c.memory_usage == 0
    assert all(os.path.exists(c.key_to_filename(k)) for k in (1, 2))
    c[1], c[2] = 2, 1
    c.flush()
    assert c[1] == 2 and c[2] == 1


def test_keys_values_items(tmp_chest):
    c = tmp_chest()
    c[1], c[2] = "one", "two"
    assert set(c.keys()) == {1, 2}
    assert set(c.values()) == {"one", "two"}
    assert set(c.items()) == {(1, "one"), (2, "two")}


def test_recreate_chest(tmp_path):
    c = Chest(path=tmp_path / "c")
    c[1], c[2] = "one", "two"
    c.flush()
    items = dict(c.items())
    del c
    gc.collect()
    assert dict(Chest(path=tmp_path / "c").items()) == items


def test_delitem(tmp_chest):
    c = tmp_chest()
    c[1], c[2] = "one", "two"
    del c[1]
    assert 1 not in c
    c.flush()
    assert 2 in c
    del c[2]
    assert 2 not in c and len(c) == 0


def test_str(tmp_chest):
    c = tmp_chest()
    assert c.path in str(c)


def test_get_from_disk(tmp_chest):
    c = tmp_chest()
    c[1] = "one"
    c.get_from_disk(1)
    assert 1 in c.inmem
    c.flush()
    assert 1 not in c.inmem
    c.get_from_disk(1)
    assert c.inmem == {1: "one"}


def test_errors(tmp_chest):
    c = tmp_chest()
    with pytest.raises(KeyError):
        c[1]
    with pytest.raises(KeyError):
        c[(1, 2)]


def test_reset_item_is_consistent(tmp_chest):
    c = tmp_chest()
    c[1] = "one"
    c.flush()
    c[1] = "uno"
    assert c[1] == "uno"
    c.flush()
    assert c[1] == "uno"


def test_nbytes():
    assert isinstance(nbytes("x"), int) and nbytes("x") < 100
    assert nbytes(np.ones(1000, dtype="i4")) >= 4000


def test_dataframe_nbytes():
    pd = pytest.importorskip("pandas")
    assert nbytes(pd.DataFrame({"a": [1] * 10000})) > 10000


def test_del_on_temp_path():
    c = Chest()
    c[1] = "one"
    c.flush()
    path = c.path
    assert os.path.exists(path)
    del c
    gc.collect()
    assert not os.path.exists(path)


def test_del_on_normal_path(tmp_path):
    path = tmp_path / "normal"
    c = Chest(path=path)
    c[1] = "one"
    del c  # no flush: collection flushes a chest at a given path
    gc.collect()
    assert os.path.exists(path)
    c = Chest(path=path)
    assert c[1] == "one"
    c.drop()


def test_basic_json(tmp_path):
    c = Chest(path=tmp_path / "j", load=json.load, dump=json.dump, mode="t")
    c[1] = [1, 2, 3]
    c[2] = "two"
    c[("a", 3)] = {"tuple": "key"}
    c.flush()
    c2 = Chest(path=tmp_path / "j", load=json.load, dump=json.dump, mode="t")
    assert c2[1] == [1, 2, 3] and c2[2] == "two" and c2[("a", 3)] == {"tuple": "key"}


def test_key_to_filename_helper():
    assert key_to_filename("x") == "x"
    assert isinstance(key_to_filename((1, (3, 4))), str)
    assert os.path.dirname(key_to_filename(("one", "two"))) == os.path.dirname(
        key_to_filename(("one", "three"))
    )


def test_context_manager(tmp_path):
    with Chest() as c:
        c[1] = 1
        c.flush()
        path = c.path
    assert not os.path.exists(path), "a temporary chest goes at the end of the block"
    with pytest.raises(ZeroDivisionError):
        with Chest() as c:
            1 / 0
    with Chest(path=tmp_path / "kept") as c:
        c["x"] = "kept"
    assert Chest(path=tmp_path / "kept")["x"] == "kept", "flushed at the end of the block"


def test_threadsafe(tmp_chest):
    c = tmp_chest(available_memory=48)
    for i in range(10):
        c[i] = i

    def swap(_):
        c[random.randint(0, 9)] = c[random.randint(0, 9)]

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(swap, range(100)))
    assert set(c) <= set(range(10))
    assert set(c.values()) <= set(range(10))


class Undumpable:
    def __getstate__(self):
        raise TypeError("no pickling")


def test_undumpable_values_stay_in_memory(tmp_chest):
    c = tmp_chest(available_memory=100)
    a = Undumpable()
    c["a"] = a
    for i in range(20):
        c[i] = i
    assert "a" in c.inmem and c["a"] is a
    assert c.key_to_filename("a") is None
    with pytest.raises(TypeError):
        c.move_to_disk("a")


def test_update_overwrites_or_keeps(tmp_chest):
    c1, c2 = tmp_chest(), tmp_chest()
    c1["foo"], c1["bar"], c1["spam"] = "bar", "bbq", "eggs"
    c2["bar"], c2[("spam", "spam")] = "foo", "eggs"
    c1.update(c2, overwrite=False)
    assert c1["bar"] == "bbq" and c1[("spam", "spam")] == "eggs"
    c1.update(c2)
    assert c1["bar"] == "foo" and c1["foo"] == "bar"
    assert dict(c2.items()) == {"bar": "foo", ("spam", "spam"): "eggs"}, "the other is unchanged"
    c1.update({"plain": 1}, more=2)
    assert c1["plain"] == 1 and c1["more"] == 2


def test_nested_tuple_keys(tmp_chest):
    c = tmp_chest()
    c["one"] = 1
    c[("one", "two")] = 2
    c[("one", "three", ("a", 5), None, 2.5)] = 3
    c.flush()
    assert c[("one", "three", ("a", 5), None, 2.5)] == 3 and c["one"] == 1


def test_memory_usage(tmp_chest):
    c = tmp_chest()
    assert c.memory_usage == 0
    c[1] = 1
    first = c.memory_usage
    assert first > 0
    c[2] = 2
    assert c.memory_usage > first
    c.flush()
    assert c.memory_usage == 0


def test_prefetch_and_on_miss(tmp_chest):
    misses = []

    def on_miss(key):
        misses.append(key)
        raise KeyError(f"not allowed to read {key} from disk")

    c = tmp_chest(on_miss=on_miss)
    c[1], c[2] = 1, 2
    assert c[1] == 1, "in memory: no miss"
    c.flush()
    with pytest.raises(KeyError):
        c[1]
    c.prefetch(1)
    assert c[1] == 1
    c.prefetch([1, 2])
    assert c[2] == 2
    assert misses == [1]


def test_on_overflow_sees_the_keys_written_out(tmp_chest):
    out = []
    c = tmp_chest(on_overflow=out.append)
    c["a"], c["b"] = 1, 2
    c.move_to_disk("a")
    c.flush()
    assert out == ["a", "b"]


def test_the_same_path_twice_in_one_process(tmp_path):
    a = Chest(path=tmp_path / "shared")
    b = Chest(path=tmp_path / "shared")
    a["x"] = 1
    assert b["x"] == 1
    b["y"] = 2
    assert a["y"] == 2
    del a, b
    gc.collect()
    assert set(Chest(path=tmp_path / "shared")) == {"x", "y"}


def test_data_argument(tmp_chest):
    c = tmp_chest({"tofu": "scramble"})
    c["banana"] = "split"
    assert "tofu" in c and "banana" in c and len(c) == 2
    assert c["tofu"] == "scramble"
