"""Keys: the types a chest holds, in one canonical form (keys equal in
Python are one key), and a clear error for the others."""

import math

import pytest

from chest import Chest


@pytest.fixture
def c():
    with Chest(memory_budget=1 << 20) as c:
        yield c


KEYS = [
    None,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**63,
    2**64,
    -(2**64) - 1,
    10**40,
    -(10**40),
    1.5,
    -0.25,
    math.inf,
    -math.inf,
    "",
    "text",
    "ünïcode ✓",
    b"",
    b"\x00\xffbytes",
    (),
    ("a", 1),
    (("nested", (1, 2.5)), None, b"x"),
]


def test_every_key_type_round_trips(c):
    for i, k in enumerate(KEYS):
        c[k] = i
    assert len(c) == len(KEYS)
    for i, k in enumerate(KEYS):
        assert c[k] == i, k
    assert sorted(map(repr, c)) == sorted(map(repr, KEYS))


def test_keys_survive_a_reopen(tmp_path):
    with Chest(tmp_path / "c") as c:
        for i, k in enumerate(KEYS):
            c[k] = i
    with Chest(tmp_path / "c") as c:
        assert {k: c[k] for k in c} == {k: i for i, k in enumerate(KEYS)}


def test_keys_equal_in_python_are_one_key(c):
    c[1] = "int"
    c[True] = "bool"
    c[1.0] = "float"
    assert len(c) == 1
    assert c[1] == "float"
    assert list(c) == [1] and type(list(c)[0]) is int
    c[(1, "a")] = "tuple"
    assert c[(True, "a")] == "tuple" and c[(1.0, "a")] == "tuple"
    c[-0.0] = "zero"
    assert c[0] == "zero"
    c[2.0**70] = "big float"
    assert c[2**70] == "big float"


def test_unsupported_keys_raise_type_error_naming_the_types(c):
    for bad in ([1], {"a": 1}, {1}, frozenset(), object(), (1, [2])):
        with pytest.raises(TypeError, match="None, bool, int, float, str, bytes"):
            c[bad] = 1
        with pytest.raises(TypeError):
            bad in c  # noqa: B015 - the membership test is the call under test
    assert len(c) == 0


def test_nan_is_refused(c):
    with pytest.raises(ValueError, match="NaN"):
        c[math.nan] = 1


def test_errors_name_the_key_as_python_shows_it(c):
    class Unpicklable:
        def __reduce__(self):
            raise TypeError("no pickling here")

    with Chest(memory_budget=4096, writer_threads=0) as small:
        big = Unpicklable()
        from chest import ChestError

        # Heavier than the budget: written at once, and the error names the key.
        with pytest.raises(ChestError) as e:
            small[("k", 1, b"\x01")] = [big] * 1000
        assert "('k', 1, b'\\x01')" in str(e.value)
        assert e.value.keys == ["('k', 1, b'\\x01')"]
