#!/usr/bin/env python3
"""Markdown report for bench/web.sh.

  web_report.py WORKDIR     report from WORKDIR/{meta.json,results.jsonl,notes.txt,metrics-*.txt,stderr-*.txt}
  web_report.py --meta      machine/tool description as JSON (settings come from the environment)
  web_report.py --summary WRKJSON   one progress line for a wrk result

Only figures found in results.jsonl are written; a missing one is written as
"not measured".
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

NM = "not measured"


def run(*cmd: str, cwd: str | None = None) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=30).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


def meta() -> dict:
    e = os.environ
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem_kb = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)

    def ver(mod: str) -> str:
        try:
            import importlib.metadata as m

            return m.version(mod)
        except Exception:  # noqa: BLE001
            return "not installed"

    root = e.get("ROOT", ".")
    return {
        "date": e.get("STAMP", ""),
        "command": e.get("COMMAND", ""),
        "commit": run("git", "rev-parse", "HEAD", cwd=root) or "none (the repository has no commit yet)",
        "dirty": bool(run("git", "status", "--porcelain", cwd=root)),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "mem_gib": round(mem_kb / 1048576, 1),
        "wrk": run("sh", "-c", "wrk --version 2>&1 | head -1").split(" Copyright")[0].strip(),
        "rustc": run("rustc", "--version"),
        "python": platform.python_version(),
        **{m: ver(m) for m in ("aiohttp", "fastapi", "uvicorn", "uvloop", "httptools")},
        "postgres": e.get("PG_VERSION", ""),
        "duration": int(e.get("DURATION", "0")),
        "warmup": int(e.get("WARMUP", "0")),
        "threads": int(e.get("THREADS", "0")),
        "hold_n": int(e.get("HOLD_N", "0")),
        "nofile": e.get("NOFILE", ""),
        "loadavg": open("/proc/loadavg").read().split()[:3],
    }


def summary(d: dict) -> str:
    sock = d["err_connect"] + d["err_read"] + d["err_write"] + d["err_timeout"]
    return (f"{d['rps']:.0f} req/s, p50 {d['p50_us'] / 1000:.2f} ms, p99 {d['p99_us'] / 1000:.2f} ms, "
            f"non-2xx {d['non_2xx_3xx']}, socket errors {sock}")


def ms(us: float | None) -> str:
    return NM if us is None else f"{us / 1000:.2f}"


def rps(x: float | None) -> str:
    return NM if x is None else f"{x:,.0f}"


def mib(kb) -> str:
    return NM if kb is None else f"{kb / 1024:.1f}"


def sock_errors(d: dict) -> str:
    parts = [f"{k[4:]} {d[k]}" for k in ("err_connect", "err_read", "err_write", "err_timeout") if d[k]]
    return ", ".join(parts) if parts else "0"


def verdict(ok: bool | None) -> str:
    return NM if ok is None else ("**met**" if ok else "**missed**")


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def report(work: Path) -> str:
    m = json.loads((work / "meta.json").read_text())
    rows = [json.loads(l) for l in (work / "results.jsonl").read_text().splitlines() if l.strip()]
    notes = [l for l in (work / "notes.txt").read_text().splitlines() if l.strip()] if (work / "notes.txt").exists() else []
    runs: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        if "wrk" in r:
            runs[(r["scenario"], r["target"])].append(r)
    for v in runs.values():
        v.sort(key=lambda r: r.get("round", 1))
    mem = defaultdict(dict)
    for r in rows:
        if r["scenario"] == "memory":
            mem[r["target"]][r["kind"]] = r

    def med(s: str, t: str, key: str) -> float | None:
        rs = runs.get((s, t))
        return median([r["wrk"][key] for r in rs]) if rs else None

    def per_round(s: str, t: str) -> str:
        rs = runs.get((s, t), [])
        return " / ".join(f"{r['wrk']['rps']:,.0f}" for r in rs)

    def row(s: str, t: str, extra_cols: str = "") -> str:
        rs = runs.get((s, t))
        if not rs:
            return f"| {t} | {NM} |" + " |" * 12
        non2xx = sum(r["wrk"]["non_2xx_3xx"] for r in rs)
        errs = {k: sum(r["wrk"][k] for r in rs) for k in ("err_connect", "err_read", "err_write", "err_timeout")}
        lq = " / ".join(str(r.get("listen_overflows", NM)) for r in rs)
        worst_p99 = max(r["wrk"]["p99_us"] for r in rs)
        worst_max = max(r["wrk"]["lat_max_us"] for r in rs)
        return (f"| {t} | {rps(med(s, t, 'rps'))} | {per_round(s, t)} |{extra_cols} {ms(med(s, t, 'p50_us'))} "
                f"| {ms(med(s, t, 'p99_us'))} | {ms(worst_p99)} | {ms(worst_max)} | {cpu_cols(rs)} "
                f"| {non2xx} | {sock_errors(errs)} | {lq} |")

    def cpu_cols(rs: list[dict]) -> str:
        if any("server_cpu_s" not in r for r in rs):
            return f"{NM} | {NM} | {NM} | {NM}"
        srv = median([r["server_cpu_s"] / r["wrk"]["duration_s"] for r in rs])
        wk = median([r["wrk_cpu_s"] / r["wrk"]["duration_s"] for r in rs])
        per = median([1e6 * r["server_cpu_s"] / r["wrk"]["requests"] for r in rs if r["wrk"]["requests"]])
        busy = median([r.get("machine_busy", 0) for r in rs])
        return f"{srv:.2f} | {wk:.2f} | {100 * busy:.0f}% | {per:.1f}"

    def cpu_per_req(s: str, t: str) -> float | None:
        rs = runs.get((s, t))
        if not rs or any("server_cpu_s" not in r for r in rs):
            return None
        return median([1e6 * r["server_cpu_s"] / r["wrk"]["requests"] for r in rs if r["wrk"]["requests"]])

    def cpu_ratio_line(label: str, s: str, a: str, b: str) -> None:
        ca, cb = cpu_per_req(s, a), cpu_per_req(s, b)
        if ca and cb:
            p(f"| {label}, by server CPU per request | {cb / ca:.2f}× | | (information) | |")

    def ratios(s: str, a: str, b: str) -> tuple[float | None, list[float]]:
        ra, rb = runs.get((s, a)), runs.get((s, b))
        if not ra or not rb:
            return None, []
        by_round = {r.get("round", 1): r["wrk"]["rps"] for r in rb}
        each = [r["wrk"]["rps"] / by_round[r.get("round", 1)] for r in ra if by_round.get(r.get("round", 1))]
        return med(s, a, "rps") / med(s, b, "rps"), each

    n_rounds = max((len(v) for v in runs.values()), default=0)
    out: list[str] = []
    p = out.append
    dur, thr = m["duration"], m["threads"]
    p(f"# surge web-service benchmark, {m['date']}")
    p("")
    p(f"- command: `{m['command']}`")
    p(f"- commit: `{m['commit']}`" + (" (with uncommitted changes)" if m["dirty"] else ""))
    p(f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['mem_gib']} GiB, Linux {m['kernel']}; "
      f"load average at start {' '.join(m['loadavg'])}")
    p(f"- tools: {m['wrk']}; {m['rustc']}; Python {m['python']}, aiohttp {m['aiohttp']}, "
      f"fastapi {m['fastapi']}, uvicorn {m['uvicorn']} (uvloop {m['uvloop']}, httptools {m['httptools']})"
      + (f"; PostgreSQL {m['postgres']}" if m["postgres"] else ""))
    p(f"- method: wrk `-t{thr} --timeout 10s --latency`; per target a {m['warmup']} s warm-up run, then a {dur} s "
      f"measured run; {n_rounds} round(s), each running every target once, one after another. Figures are the "
      f"median over rounds (worst p99 and max over rounds also shown). wrk and the servers share the "
      f"{m['nproc']} CPUs. \"server CPUs used\" and \"wrk CPUs used\" are CPU-seconds (user + system, all threads) "
      f"per second of the measured run, from /proc/PID/stat and the shell's children times; \"server CPU µs / "
      f"request\" is the server's CPU time divided by the requests wrk completed, a figure less sensitive to "
      f"how the CPUs were shared (for surge-postgres it leaves out PostgreSQL's own CPU); \"machine CPU busy\" "
      f"is the share of all CPUs not idle during the run, from /proc/stat. Open-file limit {m['nofile']}.")
    p("- servers: surge `serve --log-level warn` (SQLite: fresh file; PostgreSQL: a schema of its own); "
      "aiohttp_server.py (access log off, as written); FastAPI under uvicorn, **one worker** "
      "(`--log-level warning --no-access-log`); bare axum = `crates/surge-server/examples/bare_axum.rs`.")
    for n in notes:
        p(f"- note: {n}")
    p("")

    head = ("| target | req/s (median) | req/s each round |{extra} p50 ms | p99 ms | worst p99 ms | max ms "
            "| server CPUs used | wrk CPUs used | machine CPU busy | server CPU µs / request "
            "| non-2xx | socket errors | listen-queue overflows each round |")
    sep = "|---|---:|---|{extra}---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    goals: list[tuple[str, str, str]] = []

    def ratio_line(label: str, s: str, a: str, b: str, goal: float, goal_text: str, suffix: str = "×") -> tuple[str, str]:
        r, each = ratios(s, a, b)
        if r is None:
            p(f"| {label} | {NM} | | {goal_text} | {NM} |")
            return NM, NM
        ok = r >= goal
        k = sum(1 for e in each if e >= goal)
        p(f"| {label} | {r:.2f}{suffix} | {' / '.join(f'{e:.2f}' for e in each)} | {goal_text} | "
          f"{verdict(ok)} ({k} of {len(each)} rounds) |")
        return f"{r:.2f}{suffix} (rounds: {' / '.join(f'{e:.2f}' for e in each)})", verdict(ok)

    # ---- health
    if any(k[0] == "health" for k in runs):
        p("## GET /health, 100 connections")
        p("")
        p(head.format(extra=""))
        p(sep.format(extra=""))
        for t in ("surge-sqlite", "aiohttp", "bare-axum"):
            if ("health", t) in runs:
                p(row("health", t))
        p("")
        p("| ratio of req/s | median | each round | goal | |")
        p("|---|---:|---|---|---|")
        v, ok = ratio_line("surge / aiohttp", "health", "surge-sqlite", "aiohttp", 6, "≥ 6×")
        goals.append(("/health ≥ 6× aiohttp", v, ok))
        v, ok = ratio_line("surge / bare axum", "health", "surge-sqlite", "bare-axum", 0.85, "≥ 0.85 (within 15%)", "")
        goals.append(("/health within 15% of bare axum", v, ok))
        r_ceiling, each_ceiling = ratios("health", "bare-axum", "aiohttp")
        if r_ceiling is not None:
            p(f"| bare axum / aiohttp (the ceiling on this machine) | {r_ceiling:.2f}× | "
              f"{' / '.join(f'{e:.2f}' for e in each_ceiling)} | (information) | |")
        cpu_ratio_line("surge / aiohttp", "health", "surge-sqlite", "aiohttp")
        cpu_ratio_line("surge / bare axum", "health", "surge-sqlite", "bare-axum")
        p("")

    # ---- users
    if any(k[0] == "users" for k in runs):
        p("## GET /users/1, 100 connections")
        p("")
        p(head.format(extra=""))
        p(sep.format(extra=""))
        for t in ("surge-sqlite", "surge-postgres", "fastapi"):
            p(row("users", t))
        p("")
        p("| ratio of req/s | median | each round | goal | |")
        p("|---|---:|---|---|---|")
        for t, label in (("surge-sqlite", "SQLite"), ("surge-postgres", "PostgreSQL")):
            v, ok = ratio_line(f"{t} / FastAPI", "users", t, "fastapi", 10, "≥ 10×")
            goals.append((f"/users/{{id}} ≥ 10× FastAPI on {label}", v, ok))
        for t in ("surge-sqlite", "surge-postgres"):
            cpu_ratio_line(f"{t} / FastAPI", "users", t, "fastapi")
        p("")

    # ---- data
    if any(k[0] == "data" for k in runs):
        conns = next(v[0]["connections"] for k, v in runs.items() if k[0] == "data")
        ideal = conns / 0.1
        p(f"## GET /api/data (100 ms sleep), {conns} connections; ideal {ideal:,.0f} req/s")
        p("")
        p(head.format(extra=" % of ideal |"))
        p(sep.format(extra="---:|"))
        for t in ("surge-sqlite", "aiohttp"):
            if ("data", t) in runs:
                pct = f" {100 * med('data', t, 'rps') / ideal:.1f}% |"
                p(row("data", t, pct))
        p("")
        p("Listen-queue overflows: the kernel's TcpExt ListenOverflows counter (this network namespace) "
          "during each measured run. wrk opens all its connections at once; when a server's accept queue "
          "(listen backlog) is full, the handshake's last ACK is dropped and the client retransmits after "
          "about 1 s or more, which shows as a p99 or max of a second or more in that round.")
        p("")
        r, each = ratios("data", "surge-sqlite", "aiohttp")
        if r is not None:
            p(f"surge / aiohttp: {r:.2f}× (rounds: {' / '.join(f'{e:.2f}' for e in each)})")
            p("")
        rs = runs.get(("data", "surge-sqlite"))
        if rs:
            rate = med("data", "surge-sqlite", "rps")
            p99 = med("data", "surge-sqlite", "p99_us")
            k_rate = sum(1 for x in rs if x["wrk"]["rps"] >= 0.9 * ideal)
            k_p99 = sum(1 for x in rs if x["wrk"]["p99_us"] < 150_000)
            goals.append((f"/api/data at {conns} conns ≥ 90% of ideal",
                          f"{100 * rate / ideal:.1f}% ({rps(rate)} req/s); rounds: "
                          + " / ".join(f"{100 * x['wrk']['rps'] / ideal:.1f}%" for x in rs),
                          f"{verdict(rate >= 0.9 * ideal)} ({k_rate} of {len(rs)} rounds)"))
            goals.append((f"/api/data at {conns} conns p99 < 150 ms",
                          f"{ms(p99)} ms; rounds: " + " / ".join(ms(x["wrk"]["p99_us"]) for x in rs),
                          f"{verdict(p99 < 150_000)} ({k_p99} of {len(rs)} rounds)"))
        else:
            goals.append((f"/api/data at {conns} conns ≥ 90% of ideal", NM, NM))
            goals.append((f"/api/data at {conns} conns p99 < 150 ms", NM, NM))

    # ---- memory
    if mem:
        n = m["hold_n"]
        p(f"## Memory (RSS from /proc/PID/status VmRSS)")
        p("")
        p(f"Idle = right after start (and seeding 5 users, for surge). Held = {n:,} idle keep-alive connections "
          f"opened by bench/hold_connections.py, each after one `GET /health`; measured 2 s after the last was "
          f"established. The memory-scenario servers are fresh processes, started after the load scenarios.")
        p("")
        p(f"| target | idle MiB | MiB holding {n:,} | held / asked | server sockets | KiB per connection | MiB 2 s after release |")
        p("|---|---:|---:|---:|---:|---:|---:|")
        for t in sorted(mem, key=lambda x: ("mem" not in x, x)):
            idle = mem[t].get("idle", {}).get("rss_kb")
            h = mem[t].get("hold")
            if h:
                per = (f"{(h['rss_kb'] - idle) / h['established']:.1f}"
                       if h["rss_kb"] is not None and idle is not None and h["established"] else NM)
                p(f"| {t} | {mib(idle)} | {mib(h['rss_kb'])} | {h['established']:,} / {h['n']:,} | "
                  f"{h['server_sockets'] if h['server_sockets'] is not None else NM} | {per} | {mib(h['rss_after_kb'])} |")
            else:
                p(f"| {t} (load-scenario instance) | {mib(idle)} | – | – | – | – | – |")
        p("")
        sm = mem.get("surge-mem", {})
        if sm:
            idle = sm.get("idle", {}).get("rss_kb")
            h = sm.get("hold")
            goals.append(("surge idle RSS", f"{mib(idle)} MiB", "reported"))
            if h and h["rss_kb"] is not None:
                goals.append((f"surge RSS at {n:,} connections",
                              f"{mib(h['rss_kb'])} MiB ({h['established']:,} held)", "reported"))
            else:
                goals.append((f"surge RSS at {n:,} connections", NM, NM))

    # ---- surge status codes from /metrics
    for f in sorted(work.glob("metrics-*.txt")):
        name = f.stem[len("metrics-"):]
        counts: dict[tuple[str, str, str], float] = defaultdict(float)
        shed = None
        for line in f.read_text().splitlines():
            if line.startswith("surge_http_requests_total{"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
                counts[(labels.get("method", "?"), labels.get("route", "?"), labels.get("status", "?"))] += float(line.rsplit(" ", 1)[1])
            elif line.startswith("surge_http_requests_shed_total"):
                shed = line.rsplit(" ", 1)[1]
        if not counts:
            p(f"## {name}: /metrics had no surge_http_requests_total lines")
            p("")
            continue
        p(f"## {name}: requests by status, from its /metrics after the load scenarios")
        p("")
        p("| method | route | status | count |")
        p("|---|---|---|---:|")
        for (meth, route, status), c in sorted(counts.items()):
            p(f"| {meth} | {route} | {status} | {c:,.0f} |")
        if shed is not None:
            p(f"\nsurge_http_requests_shed_total = {shed}")
        if any(k[2] == "499" for k in counts):
            p("\n499 is surge's count of requests whose client went away before the response. wrk closes "
              "its connections when each run (warm-up and measured) ends, cancelling what is in flight, so up to "
              "2 × connections per target are expected here; wrk itself saw no error unless its table says so.")
        p("")

    for f in sorted(work.glob("stderr-*.txt")):
        lines = re.sub(r"\x1b\[[0-9;]*m", "", f.read_text()).splitlines()
        name = f.stem[len("stderr-"):]
        p(f"## {name}: stderr (`--log-level warn`): {len(lines)} lines")
        if lines:
            p("")
            p("```")
            for l in lines[:20]:
                p(l[:300])
            if len(lines) > 20:
                p(f"... {len(lines) - 20} more")
            p("```")
        p("")

    if goals:
        p("## Issue goals")
        p("")
        p("| goal | measured | |")
        p("|---|---|---|")
        for g in goals:
            p(f"| {g[0]} | {g[1]} | {g[2]} |")
        p("")
    return "\n".join(out)


def main() -> int:
    if sys.argv[1:2] == ["--meta"]:
        json.dump(meta(), sys.stdout, indent=1)
        return 0
    if sys.argv[1:2] == ["--summary"]:
        print(summary(json.loads(sys.argv[2])))
        return 0
    print(report(Path(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
