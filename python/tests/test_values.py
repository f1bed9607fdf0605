"""Values: numpy arrays and pandas frames through pickle protocol 5, the
raw serializer's zero-copy buffers, custom serializers, and weights."""

import json
import sys

import numpy as np
import pandas as pd
import pytest

from chest import Chest, ChestError, StoredBuffer

MiB = 1 << 20


def spilled(c):
    return c.stats()["spills"] > 0


@pytest.mark.parametrize(
    "dtype", ["f8", "f4", "i8", "u1", "c16", "bool", "M8[ns]", "<U5", ">i4"]
)
def test_numpy_dtypes_round_trip_through_the_store(dtype):
    rng = np.random.default_rng(1)
    arrays = [
        (rng.random((64, 32)) * 100).astype(dtype) for _ in range(8)
    ]
    with Chest(memory_budget=8 << 10) as c:
        for i, a in enumerate(arrays):
            c[i] = a
        assert spilled(c)
        for i, a in enumerate(arrays):
            got = c[i]
            assert got.dtype == a.dtype and got.shape == a.shape
            np.testing.assert_array_equal(got, a)


def test_numpy_shapes_orders_and_non_contiguous_input():
    base = np.arange(24 * 10, dtype="f8").reshape(24, 10)
    values = {
        "scalar": np.float64(3.5),
        "zero-d": np.array(7),
        "empty": np.empty((0, 3)),
        "fortran": np.asfortranarray(base),
        "strided": base[::3, ::2],
        "transposed": base.T,
        "structured": np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
        "object": np.array([1, "two", None], dtype=object),
    }
    with Chest(memory_budget=1 << 10) as c:  # every value spills
        for k, v in values.items():
            c[k] = v
        for k, v in values.items():
            got = c[k]
            np.testing.assert_array_equal(got, v)
            assert got.dtype == v.dtype and got.shape == v.shape, k


def test_loaded_arrays_are_writeable_and_independent():
    with Chest(memory_budget=4096) as c:
        a = np.arange(10_000, dtype="i8")
        c["a"] = a
        c["b"] = np.zeros(10_000)  # pushes "a" out
        got = c["a"]
        assert got is not a
        assert got.flags.writeable
        got[0] = -1
        assert c["a"][0] == 0, "changing a loaded copy changes the chest"


def test_a_large_array_through_a_small_budget():
    a = np.random.default_rng(2).random(32 * MiB // 8)  # 32 MiB
    with Chest(memory_budget=4 * MiB) as c:
        for i in range(4):
            c[i] = a + i
        assert c.memory_usage <= 4 * MiB
        for i in range(4):
            np.testing.assert_array_equal(c[i], a + i)


def test_a_1_gib_array_through_a_64_mib_budget(tmp_path):
    a = np.arange(1 << 27, dtype="f8")  # 1 GiB
    with Chest(tmp_path / "big", memory_budget=64 * MiB) as c:
        c["big"] = a  # heavier than the budget: written at once
        c["small"] = np.ones(10)
        assert not c.in_memory("big")
        assert c.memory_usage <= 64 * MiB
        c.flush()
    del a
    with Chest(tmp_path / "big", memory_budget=64 * MiB) as c:
        got = c["big"]
        assert got.shape == (1 << 27,) and got.flags.writeable
        assert got[0] == 0 and got[-1] == (1 << 27) - 1 and got[12345678] == 12345678
        assert not c.in_memory("big"), "heavier than the budget: not kept"
        del got


def test_pandas_frames_and_series_round_trip():
    df = pd.DataFrame(
        {
            "x": np.arange(1000),
            "y": np.linspace(0, 1, 1000),
            "s": [f"row {i}" for i in range(1000)],
            "c": pd.Categorical(["a", "b"] * 500),
        }
    )
    with Chest(memory_budget=16 << 10) as c:
        c["df"] = df
        c["s"] = df["y"]
        c["filler"] = np.zeros(100_000)
        pd.testing.assert_frame_equal(c["df"], df)
        pd.testing.assert_series_equal(c["s"], df["y"])


def test_weights_follow_nbytes_and_pandas_deep_usage():
    with Chest(memory_budget=64 * MiB) as c:
        before = c.memory_usage
        c["a"] = np.zeros(MiB // 8)  # 1 MiB of data
        grown = c.memory_usage - before
        assert MiB <= grown < MiB + 4096
        df = pd.DataFrame({"s": ["x" * 100] * 1000})
        before = c.memory_usage
        c["df"] = df
        grown = c.memory_usage - before
        assert grown >= int(df.memory_usage(deep=True).sum())


def test_a_custom_weigher_decides_what_fits():
    with Chest(memory_budget=10_000, weigher=lambda v: 4000) as c:
        for i in range(10):
            c[i] = i
        # Two values of "4000" (plus bookkeeping) fit; the rest spill.
        assert c.stats()["resident"] <= 2
        assert [c[i] for i in range(10)] == list(range(10))


def test_a_failing_weigher_raises_its_own_error_and_stores_nothing():
    def weigher(v):
        if v == "bad":
            raise ValueError("cannot weigh this")
        return 1

    with Chest(weigher=weigher) as c:
        c["k"] = "old"
        with pytest.raises(ValueError, match="cannot weigh this"):
            c["k"] = "bad"
        assert c["k"] == "old", "the old value stays"
        with pytest.raises(ValueError):
            c["new"] = "bad"
        assert "new" not in c


class Blob(bytes):
    """A bytes subclass: pickled as itself (class and attributes)."""


def test_bytes_of_every_size_round_trip_as_bytes(tmp_path):
    # A large bytes value is written as its own data (no pickle stream
    # holding a copy of it); small ones are pickled as they are.
    sizes = [0, 1, 100, (64 << 10) - 1, 64 << 10, MiB + 3]
    values = {n: bytes((i * 7 + n) % 256 for i in range(n)) for n in sizes}
    sub = Blob(b"s" * (100 << 10))
    sub.note = "kept"
    with Chest(tmp_path / "b", memory_budget=4096) as c:
        for n, v in values.items():
            c[n] = v
        c["sub"] = sub
        c.flush()
    with Chest(tmp_path / "b", memory_budget=4096) as c:
        for n, v in values.items():
            got = c[n]
            assert type(got) is bytes and got == v, n
        got = c["sub"]
        assert type(got) is Blob and got == sub and got.note == "kept"


def test_raw_values_come_back_as_zero_copy_buffers(tmp_path):
    with Chest(tmp_path / "raw", serializer="raw", memory_budget=4096) as c:
        c["bytes"] = b"abc" * 1000
        c["bytearray"] = bytearray(b"xyz" * 1000)
        c["array"] = np.arange(1000, dtype="f8")
        c["view"] = memoryview(b"0123456789" * 500)[10:]
        got = c["bytes"]
        assert isinstance(got, StoredBuffer)
        assert got == b"abc" * 1000 and bytes(got) == b"abc" * 1000
        assert len(got) == 3000
        assert memoryview(got).readonly
        assert bytes(c["bytearray"]) == b"xyz" * 1000
        np.testing.assert_array_equal(
            np.frombuffer(c["array"], dtype="f8"), np.arange(1000, dtype="f8")
        )
        assert bytes(c["view"]) == (b"0123456789" * 500)[10:]
        with pytest.raises(TypeError):
            memoryview(got)[0] = 1


def test_raw_refuses_what_is_not_bytes_like():
    with Chest(serializer="raw", memory_budget=1024, writer_threads=0) as c:
        with pytest.raises(ChestError) as e:
            c["s"] = "x" * 5000  # heavier than the budget: written at once
        assert e.value.kind == "serialize"
        assert c["s"] == "x" * 5000, "the value that cannot be written stays in memory"


def test_a_custom_serializer_and_its_name_is_kept(tmp_path):
    ser = ("json", lambda v: json.dumps(v).encode(), json.loads)
    with Chest(tmp_path / "j", serializer=ser, memory_budget=1024) as c:
        for i in range(50):
            c[i] = {"i": i, "list": list(range(i))}
    with Chest(tmp_path / "j", serializer=ser) as c:
        assert c[42] == {"i": 42, "list": list(range(42))}
    # The stored values are JSON: another serializer is refused.
    with pytest.raises(ChestError, match="json"):
        Chest(tmp_path / "j")


def test_serializer_arguments_are_checked():
    with pytest.raises(ValueError, match="unknown serializer"):
        Chest(serializer="marshal")
    with pytest.raises(TypeError):
        Chest(serializer=("x", 1, 2))
    with pytest.raises(ValueError, match="name of its own"):
        Chest(serializer=("pickle", repr, eval))


def test_refcounts_do_not_leak_through_spills():
    v = np.zeros(1000)
    before = sys.getrefcount(v)
    with Chest(memory_budget=4096) as c:
        for i in range(20):
            c[i] = v
        for i in range(20):
            c[i] = None
        c.flush()
    import gc

    gc.collect()
    # Replaced values are released by the next thread that takes the GIL.
    np.zeros(1)  # any call that takes the GIL back through PyO3
    with Chest() as c:
        c["x"] = 1
    assert sys.getrefcount(v) == before
