"""The Python benchmark (WORKLOADS.md P1-P4): the `chest` package against
Python's spill-to-disk mappings, each side in a process of its own, sides
alternating, the median of the repetitions, peak RSS per side.

    python python/bench/pybench.py                 # every workload, scale 1, 3 reps
    python python/bench/pybench.py p1 p3 --scale 0.1 --reps 1

Run it with the tests' venv (scripts/python.sh makes it; zict, diskcache and
distributed come from the package index). The seed's `chest` (PyPI `chest`
0.2.3) clashes with this package's import name: it runs from a venv of its
own (target/python-seed-venv, made on first use with `chest==0.2.3`,
`heapdict` and `numpy` from the package index), with one shim (it imports
`collections.MutableMapping`, gone since Python 3.10).

Workloads (the sizes at scale 1; keys are `str`, the same for every side):

- P1: 1 MiB `bytes` values, 4x a 256 MiB budget (1024 values): insert all,
  flush/close; reopen, read every key in a shuffled order.
- P2: P1 with 8 MiB float64 numpy arrays (128 arrays; pickle protocol 5).
- P3: 1,000,000 values of 100 B, a 16 MiB budget: insert, flush; reopen,
  1,000,000 random reads.
- P4: dask-shaped: 256 arrays of 4 MiB, target 256 MiB, read back
  shuffled: chest.dask.ChestBuffer against distributed's SpillBuffer. The
  values are copied as they go in (each owned by the buffer alone, as a
  task's result is), in every side's write time.
- P4C: P4 computed by dask: a LocalCluster (one worker, two threads, in
  this process, `data=` each buffer) persists an array of 256 chunks of
  4 MiB with a 256 MiB target ("write"), then sums it, twice over
  ("read"); the sum is checked.

The Rust side ("rust") is the same workload through the Rust API
(`chest-bench __py-mirror`), to show the binding's cost; "nosync" is the
chest without its fsyncs (`?fsync=never`), to show what its durability
costs (the peers fsync nothing: after their "flush" a crash can lose data).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MiB = 1 << 20

# workload -> (value kind, value bytes, count at scale 1, budget)
WORKLOADS = {
    "p1": ("bytes", MiB, 1024, 256 * MiB),
    "p2": ("f64", 8 * MiB, 128, 256 * MiB),
    "p3": ("bytes", 100, 1_000_000, 16 * MiB),
    "p4": ("f64", 4 * MiB, 256, 256 * MiB),
    # The same shape computed by dask: a LocalCluster (one worker, two
    # threads, in this process) persists an array four times its target and
    # sums it.
    "p4c": ("f64", 4 * MiB, 256, 256 * MiB),
}

SIDES = {
    "p1": ["chest", "nosync", "rust", "zict", "spillbuffer", "diskcache", "seed", "shelve"],
    "p2": ["chest", "nosync", "rust", "zict", "spillbuffer", "diskcache", "seed", "shelve"],
    "p3": ["chest", "nosync", "rust", "zict", "spillbuffer", "diskcache", "seed", "shelve"],
    "p4": ["chestbuffer", "spillbuffer"],
    "p4c": ["chestbuffer", "spillbuffer"],
}


# --------------------------------------------------------------------- sides
# Each side: open(dir, budget, create) -> a mapping; finish(m) makes every
# value durable (or at least out of memory) and releases it.


def side_chest(dir, budget, create):
    from chest import Chest

    return Chest(dir, memory_budget=budget)


def side_nosync(dir, budget, create):
    """The chest without its fsyncs (`?fsync=never`): what its durability costs."""
    from chest import Chest

    return Chest(f"file://{dir}?fsync=never", memory_budget=budget)


def side_chestbuffer(dir, budget, create):
    from chest.dask import ChestBuffer

    return ChestBuffer(dir, target=budget) if create else _reopened(dir)


def _reopened(dir):
    raise SystemExit("not reopened")


def side_zict(dir, budget, create):
    import pickle

    import zict

    from distributed.sizeof import safe_sizeof

    return zict.Buffer(
        fast={},
        slow=zict.Func(pickle.dumps, pickle.loads, zict.File(dir)),
        n=budget,
        weight=lambda k, v: safe_sizeof(v),
    )


def side_spillbuffer(dir, budget, create):
    from distributed.spill import SpillBuffer

    return SpillBuffer(dir, target=budget)


def side_diskcache(dir, budget, create):
    import diskcache

    return diskcache.Cache(dir, size_limit=1 << 50, cull_limit=0)


def side_seed(dir, budget, create):
    import collections
    import collections.abc

    collections.MutableMapping = collections.abc.MutableMapping  # the seed predates 3.10
    from chest import Chest

    return Chest(path=dir, available_memory=budget)


def side_shelve(dir, budget, create):
    import shelve

    os.makedirs(dir, exist_ok=True)
    return shelve.open(os.path.join(dir, "shelf"), protocol=5)


# Sides that cannot reopen a folder they wrote (SpillBuffer names its files
# after the keys but does not read them back in): they read in place.
SAME_PROCESS = {"spillbuffer"}


def finish_in_place(side, m):
    """Every value moved to disk, the mapping kept open."""
    m.fast.evict_until_below_target(0)


def finish(side, m):
    """Everything written out (durable where the side can), then released."""
    if side in ("chest", "nosync"):
        m.flush()
        m.close()
    elif side in ("zict", "spillbuffer"):
        # No flush: move every value to disk (what reopening can read).
        m.fast.evict_until_below_target(0)
        m.close()
    elif side == "diskcache":
        m.close()
    elif side == "seed":
        m.flush()
    elif side == "shelve":
        m.close()
    elif side == "chestbuffer":
        pass


# --------------------------------------------------------------------- values


def make_value(kind, size, i):
    if kind == "bytes":
        # Incompressible bytes, distinct per key (a seeded PRNG).
        return random.Random(i).randbytes(size)
    import numpy as np

    return np.random.default_rng(i).random(size // 8)


def check_value(kind, v, size, i):
    if kind == "bytes":
        assert len(v) == size, (i, len(v))
    else:
        assert v.nbytes == size and v.dtype.kind == "f", i


# --------------------------------------------------------------------- the run of one side


def run_cluster(side, scale, dir):
    """P4 computed by dask: `write` persists an array of `count` chunks (4x
    the worker's target), `read` sums it twice over (every chunk read back);
    the sum is checked."""
    import resource

    import dask.array as da
    from distributed import Client, LocalCluster, wait

    _, size, count, budget = WORKLOADS["p4c"]
    count = max(4, int(count * scale))
    target = max(1 << 20, int(budget * scale))
    if side == "chestbuffer":
        from chest.dask import ChestBuffer

        data = (ChestBuffer, {"target": target})
    else:
        from distributed.spill import SpillBuffer

        data = (SpillBuffer, {"spill_directory": os.path.join(dir, "spill"), "target": target})
    per_chunk = size // 8
    n = per_chunk * count
    os.makedirs(dir, exist_ok=True)
    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        memory_limit=0,
        dashboard_address=":0",
        local_directory=dir,
        data=data,
    ) as cluster, Client(cluster) as client:
        start = time.perf_counter()
        x = da.arange(n, chunks=per_chunk, dtype="f8").persist()
        wait(x)
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        total = (x * 2).sum().compute()
        read_s = time.perf_counter() - start
        assert total == n * (n - 1), (total, n)
        kind = client.run(lambda dask_worker: type(dask_worker.data).__name__)
        assert set(kind.values()) == {data[0].__name__}, kind
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"write_s": write_s, "read_s": read_s, "peak_rss": rss, "count": count, "budget": target}))


def run_side(workload, side, scale, dir):
    """In the child: the workload on one side; prints its figures as JSON."""
    import resource

    if workload == "p4c":
        return run_cluster(side, scale, dir)
    kind, size, count, budget = WORKLOADS[workload]
    count = max(1, int(count * scale))
    budget = max(1 << 16, int(budget * scale)) if workload != "p3" else max(1 << 16, int(budget * scale))
    keys = [f"k{i}" for i in range(count)]
    # Values made before the clock starts; small ones all at once, large ones
    # from a pool (re-used: the data is incompressible either way).
    if size <= 64 << 10:
        values = [make_value(kind, size, i) for i in range(count)]
    else:
        pool = [make_value(kind, size, i) for i in range(8)]
        values = [pool[i % 8] for i in range(count)]
    opener = globals()[f"side_{side}"]
    read_order = list(range(count))
    random.Random(42).shuffle(read_order)
    if workload == "p3":
        rng = random.Random(7)
        read_order = [rng.randrange(count) for _ in range(count)]

    # A numpy value is copied as it goes in, so that the mapping holds the
    # only reference, as it holds a task's result: dask's SpillBuffer hands
    # back a spilled value that is still referenced elsewhere without reading
    # it (a weak-reference cache), which would turn reads of values drawn
    # from the pool into no reads at all. Every side pays the copy.
    own = (lambda v: v.copy()) if kind == "f64" else (lambda v: v)
    start = time.perf_counter()
    m = opener(dir, budget, True)
    for k, v in zip(keys, values):
        m[k] = own(v)
    if workload == "p4" or side in SAME_PROCESS:
        # A worker's buffer (P4), or a side that cannot reopen what it
        # wrote: everything moved to disk, then read back by the same object.
        if workload != "p4":
            finish_in_place(side, m)
        write_s = time.perf_counter() - start
        del values
        start = time.perf_counter()
        for i in read_order:
            check_value(kind, m[keys[i]], size, i)
        read_s = time.perf_counter() - start
        if hasattr(m, "close"):
            m.close()
    else:
        finish(side, m)
        write_s = time.perf_counter() - start
        del m, values
        start = time.perf_counter()
        m = opener(dir, budget, False)
        for i in read_order:
            check_value(kind, m[keys[i]], size, i)
        read_s = time.perf_counter() - start
        if hasattr(m, "close"):
            m.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"write_s": write_s, "read_s": read_s, "peak_rss": rss, "count": count, "budget": budget}))


def run_rust(workload, scale, dir):
    """The same workload through the Rust API (chest-bench __py-mirror)."""
    kind, size, count, budget = WORKLOADS[workload]
    count = max(1, int(count * scale))
    budget = max(1 << 16, int(budget * scale))
    exe = os.environ.get("CHEST_BENCH", os.path.join(ROOT, "target", "release", "chest-bench"))
    out = subprocess.run(
        [exe, "__py-mirror", kind, str(size), str(count), str(budget), dir],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------- the orchestrator


SEED_VENV = os.path.join(ROOT, "target", "python-seed-venv")


def interpreter(side):
    if side == "seed":
        python = os.path.join(SEED_VENV, "bin", "python")
        if not os.path.exists(python):
            print(f"pybench: making {SEED_VENV} (the seed's chest 0.2.3)", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "venv", SEED_VENV], check=True)
            subprocess.run(
                [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 "chest==0.2.3", "heapdict", "numpy"],
                check=True,
            )
        return python
    return sys.executable


def measure(workload, side, scale, timeout):
    dir = tempfile.mkdtemp(prefix=f"pybench-{workload}-{side}-")
    shutil.rmtree(dir)
    try:
        if side == "rust":
            return run_rust(workload, scale, dir)
        env = dict(os.environ)
        if side == "seed":
            env.pop("PYTHONPATH", None)
        out = subprocess.run(
            [interpreter(side), __file__, "__run", workload, side, str(scale), dir],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        if out.returncode != 0:
            return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
        return json.loads(out.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    finally:
        shutil.rmtree(dir, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workloads", nargs="*", default=list(WORKLOADS))
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--sides", default=None, help="comma-separated sides (default: all of each workload)")
    p.add_argument("--timeout", type=float, default=300, help="seconds one side may take")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    results = {}
    for w in args.workloads:
        sides = SIDES[w] if args.sides is None else [s for s in args.sides.split(",") if s in SIDES[w]]
        runs = {s: [] for s in sides}
        for rep in range(args.reps):
            order = sides if rep % 2 == 0 else list(reversed(sides))
            for s in order:
                r = measure(w, s, args.scale, args.timeout)
                runs[s].append(r)
                print(f"{w} rep {rep + 1} {s}: {r}", file=sys.stderr, flush=True)
        results[w] = summarize(w, runs)
        report(w, results[w], args.scale)
    if args.json:
        print(json.dumps(results, indent=1))


def summarize(w, runs):
    out = {}
    for s, rs in runs.items():
        ok = [r for r in rs if "error" not in r]
        if not ok:
            out[s] = {"error": rs[0].get("error", "failed")}
            continue
        out[s] = {
            "write_s": statistics.median(r["write_s"] for r in ok),
            "read_s": statistics.median(r["read_s"] for r in ok),
            "peak_rss": max(r["peak_rss"] for r in ok),
            "runs": len(ok),
        }
    return out


def report(w, res, scale):
    kind, size, count, budget = WORKLOADS[w]
    count = max(1, int(count * scale))
    total = count * size
    ours = "chestbuffer" if w.startswith("p4") else "chest"
    peers = [s for s in res if s not in (ours, "rust", "nosync") and "error" not in res[s]]
    best_w = min((res[s]["write_s"] for s in peers), default=None)
    best_r = min((res[s]["read_s"] for s in peers), default=None)
    print(f"\n{w.upper()}: {count} x {size} B ({total / MiB:.0f} MiB), scale {scale}")
    print(f"{'side':<12} {'write s':>9} {'MB/s':>8} {'read s':>9} {'MB/s':>8} {'peak RSS MiB':>13}")
    for s, r in res.items():
        if "error" in r:
            print(f"{s:<12} {r['error']}")
            continue
        name = s + ("*" if s in SAME_PROCESS and not w.startswith("p4") else "")
        print(
            f"{name:<12} {r['write_s']:>9.3f} {total / r['write_s'] / 1e6:>8.0f} {r['read_s']:>9.3f}"
            f" {total / r['read_s'] / 1e6:>8.0f} {r['peak_rss'] / MiB:>13.0f}"
        )
    if any(s in SAME_PROCESS for s in res) and not w.startswith("p4"):
        print("* read back by the object that wrote it (it cannot reopen its folder)")
    if ours in res and "error" not in res[ours] and best_w:
        o = res[ours]
        print(
            f"{ours} vs the fastest Python peer: write {best_w / o['write_s']:.2f}x, read {best_r / o['read_s']:.2f}x"
        )
        if "rust" in res and "error" not in res["rust"]:
            rr = res["rust"]
            print(
                f"{ours} vs the Rust API: write {rr['write_s'] / o['write_s']:.2f}x, read {rr['read_s'] / o['read_s']:.2f}x"
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "__run":
        run_side(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5])
    else:
        main()
