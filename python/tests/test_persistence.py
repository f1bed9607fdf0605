"""A chest at a location survives its process: reopened in the same
process, in another one, and read by the Rust `chest` command."""

import json
import os

import numpy as np
import pytest

from chest import Chest, ChestError


def test_flush_close_and_reopen(tmp_path):
    path = tmp_path / "c"
    with Chest(path, memory_budget=8 << 10) as c:
        for i in range(100):
            c[("k", i)] = np.full(500, i)
        del c[("k", 0)]
    with Chest(path) as c:
        assert len(c) == 99 and ("k", 0) not in c
        np.testing.assert_array_equal(c[("k", 42)], np.full(500, 42))


def test_location_forms(tmp_path):
    for loc in (str(tmp_path / "a"), tmp_path / "b", (tmp_path / "c").as_uri()):
        with Chest(loc) as c:
            c["x"] = 1
        with Chest(loc) as c:
            assert c["x"] == 1
            assert c.location.startswith("file://")


def test_zstd_and_memory_locations(tmp_path):
    url = "zstd+" + (tmp_path / "z").as_uri()
    with Chest(url, memory_budget=4096) as c:
        for i in range(20):
            c[i] = b"compressible " * 1000
    with Chest(url) as c:
        assert c[7] == b"compressible " * 1000
    with Chest("memory://python-test", memory_budget=4096) as c:
        c["k"] = list(range(2000))
        c["other"] = list(range(2000))
        assert c["k"] == list(range(2000))


def test_a_temporary_chest_is_removed_on_close():
    c = Chest()
    assert c.temporary
    c["x"] = b"y" * 100_000
    c.flush()
    path = c.location.removeprefix("file://")
    assert os.path.isdir(path)
    c.close()
    assert not os.path.exists(path)


def test_a_given_location_is_kept_on_close(tmp_path):
    c = Chest(tmp_path / "kept")
    assert not c.temporary
    c["x"] = 1
    c.close()
    assert os.path.isdir(tmp_path / "kept")


def test_garbage_collection_flushes_a_given_location(tmp_path):
    c = Chest(tmp_path / "gc")
    c["x"] = "kept"
    del c
    import gc

    gc.collect()
    with Chest(tmp_path / "gc") as c:
        assert c["x"] == "kept"


def test_exit_flushes_a_chest_left_open(tmp_path, python_process):
    path = tmp_path / "exit"
    python_process(
        f"""
from chest import Chest
c = Chest({str(path)!r}, memory_budget=4096)
for i in range(50):
    c[i] = bytes(1000)
c["last"] = "written at exit"
# no close, no flush: the interpreter exits with the chest open
"""
    )
    with Chest(path) as c:
        assert len(c) == 51 and c["last"] == "written at exit"


def test_another_process_reads_what_this_one_wrote(tmp_path, python_process):
    path = tmp_path / "shared"
    with Chest(path, memory_budget=4096) as c:
        for i in range(30):
            c[i] = np.arange(i * 10)
    out = python_process(
        f"""
from chest import Chest
with Chest({str(path)!r}, read_only=True) as c:
    print(sum(int(c[i].sum()) for i in range(30)))
"""
    ).stdout
    assert int(out) == sum(int(np.arange(i * 10).sum()) for i in range(30))


def test_a_second_writer_is_refused_while_the_first_holds_the_chest(tmp_path, python_process):
    path = tmp_path / "one-writer"
    probe = f"""
from chest import Chest, ChestError
for read_only in (False, True):
    try:
        with Chest({str(path)!r}, read_only=read_only) as c:
            print(c["x"])
    except ChestError as e:
        print(e.kind)
"""
    with Chest(path) as c:
        c["x"] = 1
        c.flush()
        # A local directory has one writer, or readers: both are refused.
        assert python_process(probe).stdout.split() == ["locked", "locked"]
    assert python_process(probe).stdout.split() == ["1", "1"]


def test_modes(tmp_path):
    with pytest.raises(ChestError) as e:
        Chest(tmp_path / "none", mode="open")
    assert e.value.kind == "no_chest"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ChestError) as e:
        Chest(tmp_path / "empty", mode="open")
    assert e.value.kind == "no_chest"
    assert list((tmp_path / "empty").iterdir()) == []
    Chest(tmp_path / "new", mode="create").close()
    with pytest.raises(ChestError) as e:
        Chest(tmp_path / "new", mode="create")
    assert e.value.kind == "already_exists"
    with pytest.raises(ValueError):
        Chest(tmp_path / "x", mode="sometimes")


def test_the_rust_command_reads_a_chest_written_from_python(tmp_path, cli):
    path = tmp_path / "for-rust"
    with Chest(path, serializer="raw", memory_budget=4096) as c:
        c["text"] = b"hello from python"
        c[("tuple", 7)] = b"\x00\x01" * 3000
        c[12] = b"twelve"
    listed = json.loads(cli("ls", str(path), "--json").stdout)
    keys = sorted(json.dumps(entry["key"]) for entry in listed)
    assert keys == sorted(['"text"', '["tuple", 7]', "12"])
    assert cli("get", str(path), '"text"').stdout == b"hello from python"
    assert cli("get", str(path), '["tuple",7]').stdout == b"\x00\x01" * 3000
    assert cli("get", str(path), "12").stdout == b"twelve"
    cli("verify", str(path))


def test_drop_deletes_the_chest_and_what_it_stored(tmp_path):
    path = tmp_path / "dropped"
    with Chest(path, memory_budget=4096) as c:
        for i in range(20):
            c[i] = bytes(1000)
    c = Chest(path)
    c.drop()
    assert c.closed and not path.exists()
    # Elsewhere than a directory: every object goes, and no chest is left.
    c = Chest("memory://python-drop", memory_budget=4096)
    for i in range(20):
        c[i] = bytes(1000)
    c.flush()
    c.drop()
    with pytest.raises(ChestError) as e:
        Chest("memory://python-drop", mode="open")
    assert e.value.kind == "no_chest"
    # A temporary chest, and a closed one.
    t = Chest()
    t["x"] = 1
    folder = t.location.removeprefix("file://")
    t.drop()
    assert not os.path.exists(folder)
    closed = Chest(tmp_path / "closed")
    closed["x"] = 1
    closed.close()
    closed.drop()
    assert not (tmp_path / "closed").exists()
