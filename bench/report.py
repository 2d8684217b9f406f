#!/usr/bin/env python3
"""Turns the raw output of bench/run.sh into bench/results/latest.md.

    report.py WORK_DIR                       markdown report on stdout
    report.py --update-readme README LATEST  replace README's <!-- results --> section with LATEST

Every figure comes from the files run.sh wrote into WORK_DIR; nothing here is typed in.
"""

import json
import os
import re
import statistics
import sys

METHODS = [
    ("trackevent_ingest", "`trackevent ingest FILE` (defaults)"),
    ("trackevent_ingest_c1", "`trackevent ingest --connections 1 FILE`"),
    ("trackevent_ingest_catalog", "`trackevent --catalog bench/catalog50.json ingest FILE` (50 schemas)"),
    ("psql_copy", "`psql \\copy … from FILE.csv (format csv)` (anchor)"),
    ("jq_psql_copy", "`jq -r '[…] \\| @csv' FILE \\| psql \\copy … from stdin`"),
    ("psql_insert", "one `INSERT … ON CONFLICT DO NOTHING` per row, `psql -f` (sample)"),
]

TARGET_INGEST_RATIO = 1.5
TARGET_RSS_MIB = 64.0
# Events a Tracker holds without its queue's ring overflowing: the ring (BoundedQueue::kMaxRing,
# lib/src/runtime/queue.hpp) plus the batch the dispatcher is filling and the one it is writing
# (TrackerOptions::batch_size, 5000). More than this, and pushes went to the overflow list.
HELD_WITHOUT_SPILL = 4096 + 2 * 5000
TARGET_P50_NS = 100.0
TARGET_P99_NS = 1000.0


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def read_env(path):
    env = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, _, value = line.rstrip("\n").partition("=")
                env[key] = value
    return env


def read_json(path):
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fmt_int(x):
    return f"{x:,.0f}"


def mib(kb):
    return kb / 1024.0


def verdict(ok):
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**missed**"


def summarise_methods(rows):
    """method -> dict(events, seconds (median of ok runs), rss_kb (max), runs, failures)."""
    out = {}
    for method, n, run, secs, rss, status, *rest in rows:
        m = out.setdefault(
            method,
            {"events": int(n), "secs": [], "by_run": {}, "rss": [], "cpu": [], "server": [], "fail": []},
        )
        if status == "ok":
            m["secs"].append(float(secs))
            m["by_run"][run] = float(secs)
            m["rss"].append(int(rss or 0))
            if len(rest) > 0 and rest[0]:
                m["cpu"].append(float(rest[0]))
            if len(rest) > 1 and rest[1]:
                m["server"].append(float(rest[1]))
        else:
            m["fail"].append(status)
    return out


def gbench_rows(doc):
    rows = []
    for b in (doc or {}).get("benchmarks", []):
        if b.get("run_type", "iteration") != "iteration":
            continue
        rows.append(b)
    return rows


def to_ns(b, key="real_time"):
    scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[b.get("time_unit", "ns")]
    return float(b[key]) * scale


def report(work):
    env = read_env(os.path.join(work, "machine.env"))
    methods = summarise_methods(read_tsv(os.path.join(work, "methods.tsv")))
    send = read_tsv(os.path.join(work, "send.tsv"))
    track = read_json(os.path.join(work, "bench_track.json"))
    parse = read_json(os.path.join(work, "bench_parse.json"))
    notes = []
    if os.path.exists(os.path.join(work, "notes.txt")):
        with open(os.path.join(work, "notes.txt"), encoding="utf-8") as f:
            notes = [n.strip() for n in f if n.strip()]

    out = []
    w = out.append
    w("# trackevent benchmark results")
    w("")
    w("Written by `bench/run.sh` from its own measurements; do not edit by hand.")
    w("")
    w("| | |")
    w("|---|---|")
    for key, label in [
        ("date", "date (UTC)"),
        ("cpu", "CPU"),
        ("nproc", "cores (nproc)"),
        ("mem", "memory"),
        ("kernel", "kernel"),
        ("load", "load average at start"),
        ("postgres", "PostgreSQL"),
        ("server_settings", "server settings"),
        ("transport", "client connection"),
        ("commit", "trackevent commit"),
    ]:
        if key in env:
            w(f"| {label} | {env[key]} |")
    w("")

    # --- bulk load --------------------------------------------------------------------------
    runs = env.get("runs", "?")
    runs_text = "1 run" if runs == "1" else f"median of {runs} runs"
    w(f"## Bulk load: {fmt_int(int(env.get('events', '0')))} events, {runs_text}")
    w("")
    w("TRUNCATE + CHECKPOINT + `sync` before every run; `count(*)` checked after every run. Peak RSS is")
    w("the largest of the runs, of the trackevent or psql process (for the jq pipeline: psql);")
    w("client CPU is that process's user + system time; server CPU is what every PostgreSQL")
    w("process used during the run (backends, WAL writer, checkpointer), from /proc. On a shared")
    w("VM, CPU time moves with the host's load too (the same load can cost 40% more in one run")
    w("than in the next). Runs go in rounds, one run of every method per round; `per round` is")
    w("each round's own ratio to that round's psql \\copy, which shows how far the machine moved.")
    w("")
    w("| method | events | seconds (median) | events/s | vs psql \\copy | per round | peak RSS MiB | client CPU s | server CPU s | client + server CPU µs/event |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    anchor = methods.get("psql_copy")
    anchor_eps = None
    if anchor and anchor["secs"] and not anchor["fail"]:
        anchor_eps = anchor["events"] / statistics.median(anchor["secs"])
    eps_of = {}
    for key, label in METHODS:
        m = methods.get(key)
        if m is None:
            continue
        if m["fail"] or not m["secs"]:
            reason = m["fail"][0] if m["fail"] else "no run"
            w(f"| {label} | {fmt_int(m['events'])} | FAILED | — | — | — | — | — | — | — |")
            notes.append(f"{key}: {len(m['fail'])} failed run(s): {reason}")
            continue
        secs = statistics.median(m["secs"])
        eps = m["events"] / secs
        eps_of[key] = eps
        ratio = f"{eps / anchor_eps:.2f}×" if anchor_eps else "—"
        per_round = "—"
        if anchor_eps and m["events"] == anchor["events"]:
            rounds = [
                anchor["by_run"][r] / m["by_run"][r] for r in sorted(m["by_run"], key=int)
                if r in anchor["by_run"]
            ]
            per_round = " / ".join(f"{x:.2f}" for x in rounds) or "—"
        cpu = f"{statistics.median(m['cpu']):.2f}" if m["cpu"] else "—"
        server = f"{statistics.median(m['server']):.2f}" if m["server"] else "—"
        per_event = "—"
        if m["cpu"] and m["server"]:
            total = statistics.median(m["cpu"]) + statistics.median(m["server"])
            per_event = f"{total / m['events'] * 1e6:.1f}"
        w(
            f"| {label} | {fmt_int(m['events'])} | {secs:.2f} | {fmt_int(eps)} | {ratio} |"
            f" {per_round} | {mib(max(m['rss'])):.1f} | {cpu} | {server} | {per_event} |"
        )
    w("")
    if "psql_insert" in eps_of:
        w("The per-row INSERT figure is from the sample size shown, extrapolated as events/s.")
        w("")

    # --- RSS vs size --------------------------------------------------------------------------
    rss_rows = read_tsv(os.path.join(work, "methods.tsv"))
    sizes = {}
    for method, n, _run, secs, rss, status, *_ in rss_rows:
        if method not in ("rss_trackevent_ingest", "trackevent_ingest"):
            continue
        s = sizes.setdefault(int(n), {"rss": [], "secs": [], "fail": []})
        if status == "ok":
            s["rss"].append(int(rss or 0))
            s["secs"].append(float(secs))
        else:
            s["fail"].append(status)
    w("## Peak RSS of `trackevent ingest` (default options) as the input grows")
    w("")
    w("| events | peak RSS MiB | seconds | events/s |")
    w("|---:|---:|---:|---:|")
    rss_ok = {}
    for n in sorted(sizes):
        s = sizes[n]
        if s["fail"] or not s["rss"]:
            w(f"| {fmt_int(n)} | FAILED | — | — |")
            continue
        secs = statistics.median(s["secs"])
        rss_ok[n] = mib(max(s["rss"]))
        w(f"| {fmt_int(n)} | {rss_ok[n]:.1f} | {secs:.2f} | {fmt_int(n / secs)} |")
    w("")

    # --- one event ----------------------------------------------------------------------------
    send_med = {}
    if send:
        w("## One event: `trackevent send` vs `psql -c \"INSERT …\"`")
        w("")
        w("Wall time of a whole invocation (process start, connect, insert, exit), after 2 warm-ups,")
        w("invocations 0.3 s apart (untimed), as cron jobs are. `send --background` returns once the")
        w("event is committed to the local spool and a detached `flush --exclusive` delivers it; the")
        w("harness waits for every row to arrive before it counts the run as successful.")
        w("")
        w("Client CPU is the user + system time of the trackevent or psql process (median). The")
        w("last rows take an invocation apart: starting the process (loading its shared libraries;")
        w("`psql` is Debian's Perl wrapper, which then starts the psql binary) and, for psql,")
        w("starting plus connecting (a new server backend) without the INSERT.")
        w("")
        w("| command | invocations | median ms | min ms | max ms | ratio to psql | client CPU ms |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        for name, times, status, *_ in send:
            vals = [float(t) for t in times.split()]
            if status == "ok" and vals:
                send_med[name] = statistics.median(vals)
        for name, times, status, *rest in send:
            cpu_vals = [float(t) for t in rest[0].split()] if rest and rest[0].strip() else []
            cpu = f"{statistics.median(cpu_vals):.0f}" if cpu_vals else "—"
            vals = [float(t) for t in times.split()]
            label = {
                "trackevent_send": "`trackevent send '{…}'`",
                "trackevent_send_background": "`trackevent send --background '{…}'`",
                "psql_insert_one": "`psql -c \"INSERT … gen_random_uuid() …\"`",
                "trackevent_version": "`trackevent --version` (process start only)",
                "psql_version": "`psql --version` (process start only)",
                "psql_select_one": "`psql -c \"SELECT 1\"` (start + connect, no insert)",
            }.get(name, name)
            if status != "ok" or not vals:
                w(f"| {label} | {len(vals)} | FAILED ({status}) | — | — | — | — |")
                notes.append(f"{name}: {status}")
                continue
            ratio = ""
            if "psql_insert_one" in send_med:
                ratio = f"{send_med[name] / send_med['psql_insert_one']:.2f}×"
            w(
                f"| {label} | {len(vals)} | {statistics.median(vals):.2f} | {min(vals):.2f} |"
                f" {max(vals):.2f} | {ratio} | {cpu} |"
            )
        w("")

    # --- Tracker::track -----------------------------------------------------------------------
    latency = {}
    if track is not None:
        w("## `Tracker::track()` (bench_track, discarding sink, queue never full)")
        w("")
        w("Throughput of a tight loop of calls (Google Benchmark, wall clock, all threads together),")
        w("the CPU time per call (which leaves out time a thread waited for a core on this shared")
        w("machine), and the per-call latency distribution of 1M calls each timed alone with rdtsc")
        w("(timer overhead subtracted; with 2 threads, the per-thread percentiles are averaged).")
        w("")
        w("`peak queued` is the most events the Tracker held at once (accepted, not yet settled;")
        w("sampled every 256 calls of thread 0). Above the queue's lock-free ring plus two batches")
        w(f"({fmt_int(HELD_WITHOUT_SPILL)}) the dispatcher had fallen behind, pushes went to the queue's")
        w("mutex-guarded overflow list, and the target's condition (queue not full) did not hold.")
        w("")
        w("| benchmark | threads | calls/s (all threads) | CPU ns/call | p50 ns | p90 ns | p99 ns | p99.9 ns | peak queued | dropped |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for b in gbench_rows(track):
            name = b["name"]
            if name.startswith("BM_zz"):
                continue
            threads = b.get("threads", 1)
            base = re.sub(r"/(real_time|threads:\d+|iterations:\d+)", "", name)
            if b.get("error_occurred"):
                w(f"| {base} | {threads} | ERROR: {b.get('error_message', '')} | | | | | | |")
                continue

            def c(key):
                return f"{b[key]:.0f}" if key in b else ""

            w(
                f"| {base} | {threads} | {fmt_int(b.get('items_per_second', 0))} |"
                f" {to_ns(b, 'cpu_time'):.0f} |"
                f" {c('p50_ns')} | {c('p90_ns')} | {c('p99_ns')} | {c('p999_ns')} |"
                f" {fmt_int(b['peak_queued']) if 'peak_queued' in b else ''} | {c('dropped')} |"
            )
            if "p50_ns" in b:
                latency[(base, threads)] = (b["p50_ns"], b["p99_ns"], b.get("peak_queued"))
        w("")

    # --- parser -------------------------------------------------------------------------------
    if parse is not None:
        w("## Parsing one JSONL line (bench_parse, 20k generated lines)")
        w("")
        w("`parse_event_line` validates every field and builds the Event; nlohmann only builds a DOM.")
        w("With the catalog, every line is also checked against bench/catalog50.json (reject mode);")
        w("the schema check alone runs over the same events, already parsed.")
        w("")
        w("| parser | MB/s | lines/s | vs nlohmann |")
        w("|---|---:|---:|---:|")
        bps = {}
        for b in gbench_rows(parse):
            if not b.get("error_occurred"):
                bps[b["name"]] = b.get("bytes_per_second", 0.0)
        for b in gbench_rows(parse):
            label = {
                "BM_parse_event_line": "`trackevent::parse_event_line`",
                "BM_parse_event_line_catalog": "`parse_event_line` with the 50-event catalog",
                "BM_schema_check": "the schema check alone (`Catalog::check`)",
                "BM_nlohmann_parse": "`nlohmann::json::parse` (anchor)",
            }.get(b["name"], b["name"])
            if b.get("error_occurred"):
                w(f"| {label} | ERROR: {b.get('error_message', '')} | | |")
                continue
            anchor_bps = bps.get("BM_nlohmann_parse")
            ratio = f"{b['bytes_per_second'] / anchor_bps:.2f}×" if anchor_bps else ""
            w(
                f"| {label} | {b['bytes_per_second'] / 1e6:.0f} |"
                f" {fmt_int(b.get('items_per_second', 0))} | {ratio} |"
            )
        w("")

    # --- targets ------------------------------------------------------------------------------
    w("## Targets")
    w("")
    w("| target | measured | verdict |")
    w("|---|---|---|")
    if anchor_eps:
        for key in ("trackevent_ingest", "trackevent_ingest_c1", "trackevent_ingest_catalog"):
            if key in methods:
                if key in eps_of:
                    r = eps_of[key] / anchor_eps
                    w(f"| {key}: ≥ {TARGET_INGEST_RATIO}× psql \\copy events/s | {r:.2f}× |"
                      f" {verdict(r >= TARGET_INGEST_RATIO)} |")
                else:
                    w(f"| {key}: ≥ {TARGET_INGEST_RATIO}× psql \\copy events/s | failed | **missed** |")
    else:
        w("| ingest ≥ 1.5× psql \\copy | psql \\copy did not run | not measured |")
    for n in (1_000_000, 10_000_000):
        if n in rss_ok:
            w(f"| peak RSS ≤ {TARGET_RSS_MIB:.0f} MiB at {fmt_int(n)} events | {rss_ok[n]:.1f} MiB |"
              f" {verdict(rss_ok[n] <= TARGET_RSS_MIB)} |")
        else:
            why = "not run (use --rss-10m)" if n == 10_000_000 and n not in sizes else "failed or not run"
            w(f"| peak RSS ≤ {TARGET_RSS_MIB:.0f} MiB at {fmt_int(n)} events | {why} | not measured |")
    if len(rss_ok) >= 2:
        lo, hi = min(rss_ok), max(rss_ok)
        growth = rss_ok[hi] / rss_ok[lo] if rss_ok[lo] else float("inf")
        w(f"| RSS flat as input grows ({fmt_int(lo)} → {fmt_int(hi)} events, ≤ 1.25×) |"
          f" {growth:.2f}× | {verdict(growth <= 1.25)} |")
    for (base, threads), (p50, p99, queued) in sorted(latency.items()):
        full = queued is not None and queued > HELD_WITHOUT_SPILL
        note = f" (queue filling: {fmt_int(queued)} events held)" if full else ""
        w(f"| `track()` p50 ≤ {TARGET_P50_NS:.0f} ns, p99 ≤ {TARGET_P99_NS:.0f} ns ({base}, {threads} thread(s)) |"
          f" p50 {p50:.0f} ns, p99 {p99:.0f} ns{note} | {verdict(p50 <= TARGET_P50_NS and p99 <= TARGET_P99_NS)} |")
    if not latency:
        w("| `track()` p50 ≤ 100 ns, p99 ≤ 1 µs | bench_track did not run | not measured |")
    # The `send` ≤ 0.3× psql target was retired (bench/README.md, "One event"): the ratio is
    # still reported, without a verdict.
    for name, what in (("trackevent_send", "`send`"),
                       ("trackevent_send_background", "`send --background`")):
        if name in send_med and "psql_insert_one" in send_med:
            r = send_med[name] / send_med["psql_insert_one"]
            w(f"| {what} wall time / `psql -c INSERT` (target retired) | {r:.2f}× | retired |")
        else:
            w(f"| {what} wall time / `psql -c INSERT` (target retired) | a side failed | retired |")
    w("")

    if notes:
        w("## Notes from this run")
        w("")
        for n in notes:
            w(f"- {n}")
        w("")
    return "\n".join(out)


def update_readme(readme, latest):
    with open(latest, encoding="utf-8") as f:
        body = f.read().strip()
    # One heading level down, so the results nest under the README's own section.
    body = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", body, flags=re.M)
    body = body.replace("# trackevent benchmark results\n", "# Latest results (bench/results/latest.md)\n", 1)
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    start, end = "<!-- results -->", "<!-- /results -->"
    if start not in text or end not in text:
        text = text.rstrip("\n") + f"\n\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    with open(readme, "w", encoding="utf-8") as f:
        f.write(f"{head}{start}\n{body}\n{end}{tail}")


def main(argv):
    if len(argv) == 4 and argv[1] == "--update-readme":
        update_readme(argv[2], argv[3])
        return 0
    if len(argv) == 2:
        print(report(argv[1]))
        return 0
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv))
