"""Threads: eight threads on one chest whose budget is smaller than one
value — every insert spills, every read loads — with the GIL passed between
the callers, the background writers pickling, and the serializer's own
Python code; under faulthandler's timeout (pyproject.toml) a deadlock fails
the test with every thread's stack."""

import threading

import numpy as np

from chest import Chest


def test_eight_threads_with_a_budget_smaller_than_a_value(tmp_path):
    errors = []
    with Chest(tmp_path / "t", memory_budget=16 << 10) as c:

        def work(t):
            try:
                for i in range(150):
                    k = (t, i % 20)
                    c[k] = np.full(4096, t * 1000 + i)  # 32 KiB each
                    got = c[(t, (i * 7) % 20)] if (t, (i * 7) % 20) in c else None
                    if got is not None:
                        assert got[0] // 1000 == t
                    if i % 50 == 49:
                        c.flush()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        assert len(c) == 160
        for t in range(8):
            for j in range(20):
                last = max(i for i in range(150) if i % 20 == j)
                assert c[(t, j)][0] == t * 1000 + last
        assert c.stats()["spills"] > 0


def test_closing_while_writers_pickle_does_not_deadlock(tmp_path):
    for round in range(5):
        c = Chest(tmp_path / f"r{round}", memory_budget=8 << 10, writer_threads=2)
        for i in range(200):
            c[i] = {"payload": list(range(200)), "i": i}
        c.close()
        with Chest(tmp_path / f"r{round}") as c:
            assert c[199]["i"] == 199
