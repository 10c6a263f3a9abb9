#!/usr/bin/python3
"""Turns bench/run.sh's raw results into the table (stdout, docs/benchmarks.md) and the JSON.

Each results line is "ID CONFIG key=value ...", one per run. Every figure is reported as the
median of the runs with min and max, beside its target from issue 4 and the same-run baseline.
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys

BEGIN = "<!-- latest-results:begin (written by bench/report.py) -->"
END = "<!-- latest-results:end -->"


def load(path):
    data = {}
    skipped = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2:
                continue
            bench, config = parts[0], parts[1]
            values = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
            if config == "skipped":
                skipped[bench] = values.get("reason", "skipped")
                continue
            runs = data.setdefault(bench, {}).setdefault(config, {})
            for key, value in values.items():
                try:
                    number = float(value)
                except ValueError:
                    continue  # a label such as path=direct
                runs.setdefault(key, []).append(number)
    return data, skipped


def stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": values}


def figure(data, bench, config, key):
    values = data.get(bench, {}).get(config, {}).get(key)
    return stats(values) if values else None


def fmt(x):
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def machine(cores):
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cores": cores, "cpu": cpu, "kernel": platform.release()}


def git_commit(root):
    try:
        return subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def build_figures(data, skipped, params):
    """The headline rows: (id, name, unit, stats, target text, met?, baseline name, baseline
    stats, ratio)."""
    rows = []

    def add(bench, name, unit, st, target=None, check=None, baseline=None, base_st=None,
            ratio=None):
        met = None
        if st is not None and check is not None:
            met = bool(check(st["median"]))
        rows.append({"id": bench, "figure": name, "unit": unit, "stats": st, "target": target,
                     "met": met, "baseline": baseline, "baseline_stats": base_st,
                     "ratio": ratio})

    def ratio_of(a, b):
        if a is None or b is None or b["median"] == 0:
            return None
        return a["median"] / b["median"]

    raw_p50 = figure(data, "raw", "pingpong", "p50_us")
    raw_p99 = figure(data, "raw", "pingpong", "p99_us")
    raw_bulk = figure(data, "raw", "bulk", "mb_per_s")
    # The same bytes relayed over a task's hops and processes (client -> master -> server ->
    # worker and back), so "overhead over the transport" compares like with like.
    relay_p50 = figure(data, "raw", "pingpong-relay", "p50_us")
    relay_bulk = figure(data, "raw", "bulk-relay", "mb_per_s")

    t1 = figure(data, "1", "throughput", "tasks_per_s")
    if t1:
        add("1", f"no-op throughput, {params.get('tasks')} tasks, 1 server x 2 slots", "tasks/s",
            t1, ">= 200,000", lambda m: m >= 200_000)
    p50 = figure(data, "2", "roundtrip", "p50_us")
    p99 = figure(data, "2", "roundtrip", "p99_us")
    if p50:
        add("2", f"sequential round trip p50 ({params.get('round_trips')} trips)", "us", p50,
            "<= 100", lambda m: m <= 100, "raw TCP 64 B ping-pong p50", raw_p50,
            ratio_of(p50, raw_p50))
        add("2", "sequential round trip p99", "us", p99, "<= 500", lambda m: m <= 500,
            "raw TCP 64 B ping-pong p99", raw_p99, ratio_of(p99, raw_p99))
        if relay_p50:
            add("2", "sequential round trip p50, against a task's hops relayed", "us", p50, None,
                None, "64 B relayed over 3 processes and 3 hops, p50", relay_p50,
                ratio_of(p50, relay_p50))
    # Where a task's CPU goes, process by process (user + system time over the run / tasks).
    for bench, config in (("1", "throughput"), ("2", "roundtrip")):
        for who in ("client", "master", "server", "workers"):
            st = figure(data, bench, config, f"{who}_us_per_task")
            if st:
                add(bench, f"CPU per task in the {who}", "us", st)
    sp = figure(data, "3", "primes", "speedup")
    if sp:
        add("3", f"primes over [{params.get('primes')}), 2 slots vs in process", "x", sp,
            ">= 1.9", lambda m: m >= 1.9, "sequential in process (s)",
            figure(data, "3", "primes", "sequential_s"))
    cold = figure(data, "4", "cold", "cold_start_ms")
    if cold:
        add("4", "cold start: launch master + server to first result", "ms", cold, "<= 300",
            lambda m: m <= 300)
    mem = figure(data, "5", "memory", "master_bytes_per_task")
    if mem:
        # The budget is 200 bytes beyond the call's own bytes (the closure and its arguments),
        # which task_bench reports; older builds did not (about 230 for a no-op here).
        call = figure(data, "5", "memory", "call_bytes")
        if call:
            # The target is a budget beyond the call's own bytes (the closure and its
            # arguments, which any design must keep): reported as that, and checked as that.
            call_bytes = call["median"]
            beyond = stats([v - call_bytes for v in mem["runs"]])
            add("5", f"master RSS per queued task beyond the call's {call_bytes:.0f} bytes "
                f"({params.get('queued')} queued)", "bytes", beyond, "<= 200",
                lambda m: m <= 200)
        add("5", "master RSS per queued task, the call's bytes included", "bytes", mem)
        add("5", "client memory per outstanding future", "bytes",
            figure(data, "5", "memory", "client_bytes_per_future"))
    one = figure(data, "6", "servers=1", "tasks_per_s")
    for n in (1, 2, 4, 8):
        st = figure(data, "6", f"servers={n}", "tasks_per_s")
        if st:
            if n == 8:
                add("6", f"throughput, {n} servers x 2 slots ({params.get('scale_tasks')} tasks)",
                    "tasks/s", st, ">= 80% of 1 server",
                    lambda m: one is not None and m >= 0.8 * one["median"], "1 server", one,
                    ratio_of(st, one))
            else:
                add("6", f"throughput, {n} server(s) x 2 slots ({params.get('scale_tasks')} tasks)",
                    "tasks/s", st, None, None, "1 server" if n > 1 else None,
                    one if n > 1 else None, ratio_of(st, one) if n > 1 else None)
    hb = figure(data, "6", "heartbeats", "master_cpu_percent")
    if hb:
        add("6", f"master CPU with {params.get('sim_servers')} servers heartbeating each second",
            "% of a core", hb, "< 2", lambda m: m < 2, "idle master",
            figure(data, "6", "heartbeats", "master_idle_cpu_percent"))
    mb = figure(data, "7", "payload", "mb_per_s")
    if mb:
        add("7", f"{params.get('payloads')} tasks of 1 MiB in and out", "MB/s", mb,
            ">= 50% of raw", lambda m: raw_bulk is not None and m >= 0.5 * raw_bulk["median"],
            "raw TCP echo of 1 MiB blocks", raw_bulk, ratio_of(mb, raw_bulk))
        if relay_bulk:
            add("7", "1 MiB tasks against a task's hops relayed", "MB/s", mb, None, None,
                "1 MiB blocks relayed over 3 processes and 3 hops", relay_bulk,
                ratio_of(mb, relay_bulk))
        via_master = figure(data, "7", "payload-via-master", "mb_per_s")
        if via_master:
            add("7", "1 MiB tasks, calls pushed and results held on their server / every call "
                "and result through the master", "MB/s", mb, None, None,
                "push_threshold and result_threshold: 0", via_master,
                ratio_of(mb, via_master))
    chain_futures = figure(data, "9", "chain", "futures_stage_us")
    if chain_futures:
        chain_program = figure(data, "9", "chain", "program_stage_us")
        add("9", "chain stage through futures as arguments / through the program "
            "(value fetched and resubmitted)", "us per stage", chain_futures, None, None,
            "through the program", chain_program, ratio_of(chain_futures, chain_program))
        chain_via_master = figure(data, "9", "chain-via-master", "futures_stage_us")
        if chain_via_master:
            add("9", "chain stage through futures as arguments, held on their server / every "
                "value through the master", "us per stage", chain_futures, None, None,
                "push_threshold and result_threshold: 0", chain_via_master,
                ratio_of(chain_futures, chain_via_master))
    tree = figure(data, "10", "tree", "seconds")
    if tree:
        leaves, leaf_bytes = (int(x) for x in params.get("tree", "256 4194304").split())
        dask_tree = figure(data, "10", "dask-tree", "seconds")
        add("10", f"tree reduction of {leaves} values of {leaf_bytes >> 20} MiB: CluPy / Dask",
            "s", tree, "faster than Dask",
            lambda m: dask_tree is not None and m < dask_tree["median"], "Dask", dask_tree,
            ratio_of(tree, dask_tree))
        add("10", "call and result bytes through the master during the tree reduction", "bytes",
            figure(data, "10", "tree", "master_payload_bytes"), "< 1% of the leaves' bytes",
            lambda m: m < 0.01 * leaves * leaf_bytes)
    network_rows(data, skipped, params, add, ratio_of, t1,
                 figure(data, "6", "servers=8", "tasks_per_s"), mb)
    if "8" in skipped:
        rows.append({"id": "8", "figure": "Dask distributed: " + skipped["8"], "unit": "",
                     "stats": None, "target": None, "met": None, "baseline": None,
                     "baseline_stats": None, "ratio": None})
    dt = figure(data, "8", "dask-throughput", "tasks_per_s")
    if dt:
        add("8", f"CluPy throughput / Dask ({params.get('dask_tasks')} tasks, 2 workers)",
            "tasks/s", t1, None, None, "Dask", dt, ratio_of(t1, dt))
        for q in ("p50", "p99"):
            add("8", f"CluPy round trip {q} / Dask ({params.get('dask_round_trips')} trips)",
                "us", figure(data, "2", "roundtrip", f"{q}_us"), None, None, "Dask",
                figure(data, "8", "dask-roundtrip", f"{q}_us"),
                ratio_of(figure(data, "2", "roundtrip", f"{q}_us"),
                         figure(data, "8", "dask-roundtrip", f"{q}_us")))
    return rows


def network_rows(data, skipped, params, add, ratio_of, loopback_tps, loopback_8, loopback_mb):
    """The network section (bench/network.sh): the same measures between bed hosts, each beside
    its loopback figure or the bed's own figure without delay from the same run."""
    if "net" in skipped:
        add("net", "network section: " + skipped["net"], "", None)
        return
    tasks = params.get("net_tasks")
    direct = figure(data, "net", "rtt=0", "tasks_per_s")
    if direct is None:
        return
    add("net", f"no-op throughput between hosts ({tasks} tasks, 1 server host x 2 slots)",
        "tasks/s", direct, None, None, "loopback (1)", loopback_tps,
        ratio_of(direct, loopback_tps))
    relay = figure(data, "net", "rtt=0-relay", "tasks_per_s")
    add("net", "no-op throughput through the delaying relay, no delay", "tasks/s", relay, None,
        None, "between hosts, direct", direct, ratio_of(relay, direct))
    for rtt in ("0.5", "2"):
        st = figure(data, "net", f"rtt={rtt}", "tasks_per_s")
        add("net", f"no-op throughput with {rtt} ms more RTT on the master's links", "tasks/s",
            st, ">= 85% of no delay",
            lambda m: relay is not None and m >= 0.85 * relay["median"],
            "relay, no delay", relay, ratio_of(st, relay))
    seq_direct = figure(data, "net", "rtt=0", "p50_us")
    add("net", "sequential round trip p50 between hosts", "us", seq_direct, None, None,
        "loopback (2)", figure(data, "2", "roundtrip", "p50_us"),
        ratio_of(seq_direct, figure(data, "2", "roundtrip", "p50_us")))
    seq_relay = figure(data, "net", "rtt=0-relay", "p50_us")
    add("net", "sequential round trip p50 through the relay, no delay", "us", seq_relay, None,
        None, "between hosts, direct", seq_direct, ratio_of(seq_relay, seq_direct))
    raw_relay = figure(data, "net", "raw-rtt=0-relay", "p50_us")
    for rtt in ("0.5", "2"):
        st = figure(data, "net", f"rtt={rtt}", "p50_us")
        raw = figure(data, "net", f"raw-rtt={rtt}", "p50_us")
        if st is None or seq_relay is None or raw is None or raw_relay is None:
            continue
        # A call crosses both delayed links (client-master, master-server): what the delay adds
        # to a raw ping-pong over the same relays is the network's share; the rest is CluPy's.
        network = raw["median"] - raw_relay["median"]
        beyond = stats([v - seq_relay["median"] - network for v in st["runs"]])
        add("net", f"sequential round trip p50 with {rtt} ms more RTT, beyond what the delay "
            f"adds to a raw ping-pong over the same relays ({network:,.0f} us)", "us", beyond,
            "<= 150", lambda m: m <= 150, "raw ping-pong over the relays", raw)
    eight = figure(data, "net", "servers=8", "tasks_per_s")
    add("net", f"no-op throughput over 8 server hosts x 2 slots ({tasks} tasks)", "tasks/s",
        eight, None, None, "loopback, 8 servers (6)", loopback_8, ratio_of(eight, loopback_8))
    cpu8 = figure(data, "net", "servers=8", "master_us_per_task")
    cpu1 = figure(data, "net", "rtt=0", "master_us_per_task")
    add("net", "master CPU per task, 8 server hosts", "us", cpu8, None, None,
        "1 server host", cpu1, ratio_of(cpu8, cpu1))
    mb = figure(data, "net", "payload", "mb_per_s")
    add("net", f"{params.get('net_payloads')} tasks of 1 MiB in and out between hosts", "MB/s",
        mb, None, None, "loopback (7)", loopback_mb, ratio_of(mb, loopback_mb))


def table(rows):
    lines = ["| # | figure | median | min | max | target | met | same-run baseline (median) | ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        st = r["stats"] or {}
        unit = f" {r['unit']}" if r["unit"] else ""
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        base = ""
        if r["baseline"]:
            b = r["baseline_stats"]
            base = f"{r['baseline']}: {fmt(b['median'])}" if b else r["baseline"]
        ratio = f"{r['ratio']:.3g}" if r["ratio"] is not None else ""
        lines.append(f"| {r['id']} | {r['figure']} ({unit.strip()}) | {fmt(st.get('median'))} | "
                     f"{fmt(st.get('min'))} | {fmt(st.get('max'))} | {r['target'] or ''} | {met} | "
                     f"{base} | {ratio} |")
    return "\n".join(lines)


def summary(rows):
    """One generated sentence on the targets, so no prose has to restate the table."""
    judged = [r for r in rows if r["met"] is not None]
    missed = [r for r in judged if not r["met"]]
    text = f"Targets: {len(judged) - len(missed)} of {len(judged)} met"
    if missed:
        text += "; not met: " + "; ".join(
            f"{r['id']} ({r['figure']}: {fmt(r['stats']['median'])} {r['unit']}, target "
            f"{r['target']}" + (f", {r['ratio']:.3g} of the baseline" if r["ratio"] else "") + ")"
            for r in missed)
    return text + "."


def header_line(facts):
    return (f"{facts['generated']}, commit {facts['commit'] or '?'}, {facts['machine']['cores']} "
            f"cores ({facts['machine']['cpu']}), Linux {facts['machine']['kernel']}, 1-min load "
            f"average {facts['machine']['load_average_start']} at start, "
            f"{facts['machine']['load_average_end']} at end (other work shares the cores); "
            f"median of {facts['runs']} run(s) with min and max; command: `bench/run.sh`.")


def doc_section(facts, rows):
    return f"{BEGIN}\n{header_line(facts)}\n\n{table(rows)}\n\n{summary(rows)}\n{END}"


def with_section(doc, section):
    if BEGIN in doc and END in doc:
        return re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, doc,
                      flags=re.S)
    return doc.rstrip("\n") + "\n\n## Latest results\n\n" + section + "\n"


def from_json(path):
    """The facts and raw data of an earlier run, as written by --json."""
    with open(path) as f:
        saved = json.load(f)
    data = {b: {c: {k: st["runs"] for k, st in kv.items()} for c, kv in cs.items()}
            for b, cs in saved["raw"].items()}
    facts = {k: saved[k] for k in ("generated", "commit", "machine", "runs", "params")}
    return facts, data, saved.get("skipped", {})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", help="run.sh's raw results (one line per run)")
    parser.add_argument("--from-json", help="regenerate from an earlier run's JSON instead")
    parser.add_argument("--cores", type=int)
    parser.add_argument("--runs", type=int)
    parser.add_argument("--param", action="append", default=[])
    parser.add_argument("--load-start", default="?")
    parser.add_argument("--json")
    parser.add_argument("--docs", help="write the table into this document's results section")
    parser.add_argument("--check", help="exit 1 unless this document's results section is "
                        "exactly what the results give")
    args = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    if args.from_json:
        facts, data, skipped = from_json(args.from_json)
    elif args.results:
        data, skipped = load(args.results)
        host = machine(args.cores)
        with open("/proc/loadavg") as f:
            host["load_average_start"] = args.load_start
            host["load_average_end"] = f.read().split()[0]
        facts = {"generated": datetime.datetime.now(datetime.timezone.utc)
                 .strftime("%Y-%m-%d %H:%M UTC"), "commit": git_commit(root), "machine": host,
                 "runs": args.runs, "params": dict(p.split("=", 1) for p in args.param)}
    else:
        parser.error("give --results or --from-json")
    rows = build_figures(data, skipped, facts["params"])
    section = doc_section(facts, rows)

    if args.check:
        with open(args.check) as f:
            doc = f.read()
        if with_section(doc, section) != doc:
            print(f"{args.check}: its results section is not what bench/report.py makes of the "
                  f"results; regenerate it: bench/report.py --from-json "
                  f"bench/results/latest.json --docs {args.check}", file=sys.stderr)
            return 1
        print(f"{args.check}: the results section matches the results")
        return 0

    print(header_line(facts))
    print()
    print(table(rows))
    print()
    print(summary(rows))

    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        out = dict(facts)
        out["skipped"] = skipped
        out["figures"] = [{
            "id": r["id"], "figure": r["figure"], "unit": r["unit"],
            "median": (r["stats"] or {}).get("median"), "min": (r["stats"] or {}).get("min"),
            "max": (r["stats"] or {}).get("max"), "values": (r["stats"] or {}).get("runs"),
            "target": r["target"], "met": r["met"], "baseline": r["baseline"],
            "baseline_median": (r["baseline_stats"] or {}).get("median"),
            "ratio": r["ratio"]} for r in rows]
        out["raw"] = {b: {c: {k: stats(v) for k, v in kv.items()} for c, kv in cs.items()}
                      for b, cs in data.items()}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
        print(f"\nJSON: {args.json}")

    if args.docs:
        with open(args.docs) as f:
            doc = f.read()
        with open(args.docs, "w") as f:
            f.write(with_section(doc, section))
        print(f"table written to {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
