#!/usr/bin/python3
"""Benchmarks 1, 2 and 10 on Dask distributed, for the side-by-side ratios (benchmarks 8, 10).

bench/run.sh starts the scheduler and two single-thread workers as processes on loopback and
runs this client against them; it prints one "RESULT key=value ..." line like task_bench.

  dask_bench.py SCHEDULER_FILE throughput N
  dask_bench.py SCHEDULER_FILE roundtrip N
  dask_bench.py SCHEDULER_FILE tree LEAVES BYTES
"""
import statistics
import sys
import time

from distributed import Client, wait


def noop(x):
    return x


# The tree reduction of task_bench's tree mode: values of BYTES bytes whose first 8 hold a
# number; a combination copies its first input, as task_bench's does.
def tree_leaf(i, size):
    return i.to_bytes(8, "little") + bytes(size - 8)


def tree_combine(a, b):
    total = int.from_bytes(a[:8], "little") + int.from_bytes(b[:8], "little")
    return total.to_bytes(8, "little") + a[8:]


def tree(client, leaves, size):
    start = time.perf_counter()
    level = [client.submit(tree_leaf, i, size, pure=False) for i in range(leaves)]
    while len(level) > 1:
        following = [client.submit(tree_combine, level[i], level[i + 1], pure=False)
                     for i in range(0, len(level) - 1, 2)]
        if len(level) % 2 == 1:
            following.append(level[-1])
        level = following
    value = level[0].result()
    took = time.perf_counter() - start
    expected = leaves * (leaves - 1) // 2
    if len(value) != size or int.from_bytes(value[:8], "little") != expected:
        print("dask tree: wrong result", file=sys.stderr)
        return 1
    print(f"RESULT leaves={leaves} bytes={size} seconds={took:.3f}", flush=True)
    return 0


def main():
    arity = {"throughput": 4, "roundtrip": 4, "tree": 5}
    if len(sys.argv) < 3 or arity.get(sys.argv[2]) != len(sys.argv):
        print(__doc__, file=sys.stderr)
        return 2
    scheduler_file, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with Client(scheduler_file=scheduler_file, timeout=60) as client:
        client.wait_for_workers(2, timeout=60)
        # Same warm-up as task_bench: the first tasks pay for connections and imports.
        wait(client.map(noop, range(100), pure=False))
        if mode == "tree":
            return tree(client, n, int(sys.argv[4]))
        if mode == "throughput":
            start = time.perf_counter()
            futures = client.map(noop, range(n), pure=False)
            results = client.gather(futures)
            took = time.perf_counter() - start
            if results != list(range(n)):
                print("dask throughput: wrong results", file=sys.stderr)
                return 1
            print(f"RESULT tasks={n} seconds={took:.4f} tasks_per_s={n / took:.1f}", flush=True)
        else:
            us = []
            for i in range(n):
                start = time.perf_counter()
                value = client.submit(noop, i, pure=False).result()
                us.append((time.perf_counter() - start) * 1e6)
                if value != i:
                    print(f"dask roundtrip: task {i} returned {value}", file=sys.stderr)
                    return 1
            us.sort()
            p50 = us[min(len(us) - 1, int(0.5 * len(us)))]
            p99 = us[min(len(us) - 1, int(0.99 * len(us)))]
            print(f"RESULT round_trips={n} p50_us={p50:.1f} p99_us={p99:.1f} "
                  f"mean_us={statistics.fmean(us):.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
