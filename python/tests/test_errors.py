"""Bad input gets a clear error and loses nothing: values that cannot be
pickled, damaged stored objects, a full disk, a second writer."""

import os
import pathlib

import pytest

from chest import Chest, ChestError


class Unpicklable:
    def __init__(self, payload):
        self.payload = payload

    def __reduce__(self):
        raise TypeError("this value refuses to be pickled")


def test_an_unpicklable_value_stays_in_memory_and_the_spill_names_it():
    with Chest(memory_budget=16 << 10, writer_threads=0) as c:
        bad = Unpicklable(b"x" * 3000)
        c["bad"] = bad
        errors = []
        for i in range(40):
            try:
                c[i] = b"y" * 2000
            except ChestError as e:
                errors.append(e)
        assert errors, "the failed spill was not reported"
        assert errors[0].kind in ("serialize", "many")
        assert "'bad'" in errors[0].keys
        assert "refuses to be pickled" in str(errors[0])
        # Nothing lost: the value is still there, and so is everything else.
        assert c["bad"] is bad
        assert all(c[i] == b"y" * 2000 for i in range(40))


def test_a_flipped_byte_is_an_error_naming_the_key(tmp_path):
    path = tmp_path / "damaged"
    with Chest(path, serializer="raw", memory_budget=4096) as c:
        c["victim"] = b"v" * 200_000  # heavier than the budget: an object of its own
    objects = [p for p in pathlib.Path(path).rglob("*") if p.is_file() and p.stat().st_size >= 200_000]
    assert len(objects) == 1, objects
    data = bytearray(objects[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    objects[0].write_bytes(bytes(data))
    with Chest(path, serializer="raw") as c:
        with pytest.raises(ChestError) as e:
            c["victim"]
        assert e.value.kind == "corrupt"
        assert e.value.keys == ["'victim'"]
        assert "'victim'" in str(e.value)


def test_not_a_chest_is_refused_and_left_alone(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"jpeg")
    with pytest.raises(ChestError) as e:
        Chest(folder)
    assert e.value.kind == "not_a_chest"
    assert "photos" in e.value.location
    assert os.listdir(folder) == ["holiday.jpg"]


def test_a_full_disk_keeps_the_values_in_memory():
    full = os.environ.get("CHEST_FS_FULL_DIR")
    if not full:
        pytest.skip("needs CHEST_FS_FULL_DIR: a small tmpfs (scripts/test.sh mounts one)")
    path = os.path.join(full, "python-full")
    with Chest(path, serializer="raw", memory_budget=1 << 20) as c:
        errors = []
        for i in range(64):  # 8 MiB into a 4 MiB disk
            try:
                c[i] = bytes([i]) * (128 << 10)
            except ChestError as e:
                errors.append(e)
        with pytest.raises(ChestError) as flushed:
            c.flush()
        assert "No space left" in str(flushed.value) or any("No space left" in str(e) for e in errors)
        assert "full" in flushed.value.kinds, flushed.value.kinds
        assert all(bytes(c[i]) == bytes([i]) * (128 << 10) for i in range(64))
        c.clear()
        c.flush()


def test_an_error_in_user_code_is_a_python_exception_not_a_crash():
    def loads(b):
        raise RuntimeError("loads failed")

    with Chest(serializer=("broken", bytes, loads), memory_budget=1024) as c:
        c["k"] = b"x" * 5000
        with pytest.raises(ChestError, match="loads failed") as e:
            c["k"]
        assert e.value.keys == ["'k'"]
