"""chest.Chest is a MutableMapping: every method behaves as a dict's, in
memory and for values spilled to the store."""

from collections.abc import MutableMapping

import pytest

from chest import Chest

# Values of 2 KiB in a 16 KiB budget: most of them spill.
BUDGET = 16 << 10


def value(i):
    return bytes([i % 251]) * 2048


@pytest.fixture
def c():
    with Chest(memory_budget=BUDGET) as c:
        yield c


def fill(c, n=40):
    expected = {}
    for i in range(n):
        c[i] = value(i)
        expected[i] = value(i)
    return expected


def test_is_a_mutable_mapping(c):
    assert isinstance(c, MutableMapping)


def test_set_get_across_the_budget(c):
    expected = fill(c)
    assert c.stats()["spills"] > 0, "the values did not spill: the test tests nothing"
    assert c.memory_usage <= BUDGET
    for k, v in expected.items():
        assert c[k] == v


def test_missing_key_raises_key_error_with_the_key(c):
    with pytest.raises(KeyError) as e:
        c["nope"]
    assert e.value.args == ("nope",)
    with pytest.raises(KeyError):
        del c["nope"]


def test_len_contains_iter_keys_values_items(c):
    expected = fill(c)
    assert len(c) == len(expected)
    assert all(k in c for k in expected)
    assert "other" not in c and 10_000 not in c
    assert sorted(c) == sorted(expected)
    assert sorted(c.keys()) == sorted(expected)
    assert sorted(c.values()) == sorted(expected.values())
    assert dict(c.items()) == expected
    assert c == expected


def test_overwrite_spilled_and_resident_values(c):
    fill(c)
    for i in range(40):
        c[i] = value(i + 1)
    assert len(c) == 40
    assert all(c[i] == value(i + 1) for i in range(40))


def test_delete_spilled_and_resident(c):
    expected = fill(c)
    for k in list(expected)[::2]:
        del c[k]
        del expected[k]
    assert dict(c.items()) == expected
    assert len(c) == len(expected)


def test_get_with_default(c):
    c["a"] = 1
    assert c.get("a") == 1
    assert c.get("b") is None
    assert c.get("b", 7) == 7


def test_pop_and_popitem_and_setdefault(c):
    expected = fill(c, 10)
    assert c.pop(3) == expected.pop(3)
    assert 3 not in c
    assert c.pop(3, "gone") == "gone"
    with pytest.raises(KeyError):
        c.pop(3)
    k, v = c.popitem()
    assert expected.pop(k) == v and k not in c
    present = next(iter(expected))
    assert c.setdefault(present, "other") == expected[present]
    assert c.setdefault("new", "made") == "made" and c["new"] == "made"


def test_update_and_clear(c):
    c.update({i: value(i) for i in range(30)}, extra=1)
    assert len(c) == 31 and c["extra"] == 1
    c.clear()
    assert len(c) == 0 and list(c) == []
    c["after"] = 2
    assert dict(c.items()) == {"after": 2}


def test_a_memory_hit_is_the_same_object(c):
    v = {"big": list(range(10))}
    c["k"] = v
    assert c["k"] is v


def test_get_many_prefetch_read_ahead(c):
    expected = fill(c)
    keys = list(expected)[:20] + ["missing"]
    assert c.get_many(keys, default=0) == [expected.get(k, 0) for k in keys]
    loaded = c.prefetch(list(expected)[:4])
    assert 0 <= loaded <= 4
    started = c.read_ahead(list(expected)[-4:])
    assert started >= 0
    assert [c[k] for k in list(expected)[-4:]] == [expected[k] for k in list(expected)[-4:]]


def test_stats_count_what_happened(c):
    fill(c)
    for i in range(40):
        c[i]
    s = c.stats()
    assert s["len"] == 40
    assert s["spills"] > 0 and s["loads"] > 0 and s["bytes_written"] > 0
    assert s["memory_budget"] == BUDGET


def test_iteration_is_a_snapshot(c):
    fill(c, 5)
    seen = []
    for k in c:
        seen.append(k)
        c[("added", k)] = 1
    assert sorted(seen) == list(range(5))
    assert len(c) == 10


def test_closed_chest_refuses_calls():
    c = Chest()
    c["a"] = 1
    c.close()
    assert c.closed
    from chest import ChestError

    with pytest.raises(ChestError) as e:
        c["a"]
    assert e.value.kind == "closed"
    c.close()  # again: nothing to do
