#!/usr/bin/env python3
"""Markdown report for bench/queue.sh.

  queue_report.py WORKDIR                      report from WORKDIR/{meta.json,results.jsonl,notes.txt}
  queue_report.py --meta PG_URL REDIS_PORT     machine/tool description as JSON
  queue_report.py --summary REPORT_JSON        one progress line for a `surge bench queue --json` result

Only figures found in results.jsonl are written; a missing one is "not measured".
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

NM = "not measured"
BURN_GOALS = {"sqlite": 20_000, "postgres": 10_000, "redis": 30_000}
E2E_RATIO_GOAL = 20.0
P50_GOAL_MS = 5.0


def run(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


def meta(pg_url: str, redis_port: str) -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem_kb = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)

    def ver(mod: str) -> str:
        try:
            import importlib.metadata as m

            return m.version(mod)
        except Exception:  # noqa: BLE001
            return "?"

    root = Path(__file__).resolve().parent.parent
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "load": open("/proc/loadavg").read().split()[0],
        "commit": run("git", "-C", str(root), "rev-parse", "--short", "HEAD"),
        "dirty": bool(run("git", "-C", str(root), "status", "--porcelain", "--untracked-files=no")),
        "rustc": run("rustc", "--version"),
        "python": platform.python_version(),
        "celery": ver("celery"),
        "kombu": ver("kombu"),
        "redis_py": ver("redis"),
        "redis_server": run("redis-server", "--version").split(" v=")[-1].split()[0] if run("redis-server", "--version") else "?",
        "postgres": run("psql", "-Atq", pg_url, "-c", "show server_version") if pg_url else "",
        "pg_sync": run("psql", "-Atq", pg_url, "-c", "show synchronous_commit") if pg_url else "",
        "redis_port": redis_port,
    }


def fmt(x: float | None, digits: int = 0) -> str:
    if x is None:
        return NM
    return f"{x:,.{digits}f}"


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summary(report: dict) -> str:
    parts = []
    if b := report.get("burn_down"):
        parts.append(f"burn-down {b['tasks_per_sec']:,.0f}/s")
    if e := report.get("end_to_end"):
        lat = e.get("start_latency") or {}
        parts.append(
            f"end-to-end {e['tasks_per_sec']:,.0f}/s ({e['submitters']} submitter(s), p50 {lat.get('p50_ms', 0):.2f} ms)"
        )
    if l := report.get("latency"):
        lat = l.get("start_latency") or {}
        parts.append(f"latency p50 {lat.get('p50_ms', 0):.2f} ms, p99 {lat.get('p99_ms', 0):.2f} ms")
    return f"{report.get('backend', '?')}: " + "; ".join(parts)


def load(work: Path) -> tuple[dict, list[dict], list[str]]:
    m = json.loads((work / "meta.json").read_text())
    rows = [json.loads(l) for l in (work / "results.jsonl").read_text().splitlines() if l.strip()]
    notes = [l for l in (work / "notes.txt").read_text().splitlines() if l.strip()]
    return m, rows, notes


def report(work: Path) -> str:
    m, rows, notes = load(work)
    out: list[str] = []
    p = out.append
    env = os.environ
    surge = [r for r in rows if r["target"].startswith("surge-")]
    celery = sorted((r for r in rows if r["target"] == "celery"), key=lambda r: r["round"])
    backends = []
    for r in surge:
        b = r["target"].removeprefix("surge-")
        if b not in backends:
            backends.append(b)
    rounds = sorted({r["round"] for r in rows})

    p("# Task queue benchmark (issue 3)")
    p("")
    p(f"- command: `{env.get('BENCH_COMMAND', 'bench/queue.sh')}`")
    p(f"- commit: `{m['commit']}`{' (with uncommitted changes)' if m['dirty'] else ''}; run {env.get('BENCH_STAMP', '?')}")
    p(f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['mem_gib']} GiB, Linux {m['kernel']}, load average {m['load']} at start; shared")
    p(
        f"- tools: {m['rustc']}, Python {m['python']}, celery {m['celery']} (kombu {m['kombu']}, redis-py {m['redis_py']}), "
        f"redis-server {m['redis_server']}, PostgreSQL {m['postgres'] or NM} (synchronous_commit={m['pg_sync'] or '?'})"
    )
    p(
        f"- Redis: a private redis-server on port {m['redis_port']} started by the script (no persistence), used by "
        "Celery (broker db 0, results db 1) and by surge-redis (its own namespace), unless SURGE_BENCH_REDIS_URL says otherwise"
    )
    if surge:
        r0 = surge[0]["report"]
        e2e_tasks = next((r["report"]["end_to_end"]["tasks"] for r in surge if r["report"].get("end_to_end")), None)
        p(
            f"- surge: `surge bench queue --tasks {e2e_tasks} --concurrency {r0['concurrency']} --workers {r0['workers']}` "
            f"(claim batch {r0['claim_batch']}), in-process workers (the ones `surge serve` embeds), no-op tasks"
        )
    if celery:
        p(
            f"- Celery: shared/peers `celery_app.py` (Redis broker and result backend, acks_late, prefetch 1) with "
            f"`celery -A celery_app worker --concurrency {env.get('BENCH_CELERY_CONCURRENCY', '2')}`, then "
            f"`python3 celery_bench.py {celery[0]['tasks']}` (a `.delay()` loop, then `r.get()` for each)"
        )
    p(f"- {len(rounds)} round(s); each runs every target once, one after another; tables give the median and each round")
    p("")
    if notes:
        p("Notes from the run:")
        p("")
        for n in notes:
            p(f"- {n}")
        p("")

    def runs(backend: str, key: str, submitters: int | None = None) -> list[dict]:
        out = []
        for r in sorted(surge, key=lambda r: r["round"]):
            if r["target"] != f"surge-{backend}":
                continue
            phase = r["report"].get(key)
            if phase is None:
                continue
            if submitters is not None and phase.get("submitters") != submitters:
                continue
            out.append(phase)
        return out

    goals: list[tuple[str, str, str]] = []

    # Burn-down.
    p("## Burn-down (pre-inserted no-op tasks, claimed and acknowledged by the workers)")
    p("")
    p("| backend | tasks/s (median) | each round | goal | |")
    p("|---|---:|---|---:|---|")
    for b in backends:
        xs = [x["tasks_per_sec"] for x in runs(b, "burn_down")]
        goal = BURN_GOALS.get(b)
        v = med(xs)
        ok = v is not None and goal is not None and v >= goal
        hits = sum(1 for x in xs if goal and x >= goal)
        verdict = NM if v is None else f"**{'met' if ok else 'missed'}** ({hits} of {len(xs)} rounds)"
        p(f"| {b} | {fmt(v)} | {' / '.join(fmt(x) for x in xs)} | ≥ {fmt(goal)} | {verdict} |")
        goals.append((f"burn-down ≥ {fmt(goal)} tasks/s, {b}", f"{fmt(v)} tasks/s", verdict))
    p("")

    # End-to-end.
    cel = [c["tasks_per_sec"] for c in celery]
    cel_by_round = {c["round"]: c["tasks_per_sec"] for c in celery}
    cel_med = med(cel)
    p("## End-to-end (submit one task per call, until all succeeded) vs Celery")
    p("")
    p("| target | submitters | tasks/s (median) | each round | submits alone /s (median) | start p50 ms | start p99 ms | × Celery (median) | × Celery each round |")
    p("|---|---:|---:|---|---:|---:|---:|---:|---|")
    submitter_counts = sorted({r["report"]["end_to_end"]["submitters"] for r in surge if r["report"].get("end_to_end")})
    best: dict[str, tuple[int, float | None]] = {}
    for b in backends:
        for s in submitter_counts:
            xs = runs(b, "end_to_end", s)
            if not xs:
                continue
            tps = [x["tasks_per_sec"] for x in xs]
            v = med(tps)
            subs = med([x["submits_per_sec"] for x in runs(b, "submit", s)])
            p50 = med([x["start_latency"]["p50_ms"] for x in xs if x.get("start_latency")])
            p99 = med([x["start_latency"]["p99_ms"] for x in xs if x.get("start_latency")])
            ratio = v / cel_med if (v is not None and cel_med) else None
            per_round = []
            for r in sorted(surge, key=lambda r: r["round"]):
                e = r["report"].get("end_to_end")
                if r["target"] == f"surge-{b}" and e and e["submitters"] == s and r["round"] in cel_by_round:
                    per_round.append(e["tasks_per_sec"] / cel_by_round[r["round"]])
            p(
                f"| surge-{b} | {s} | {fmt(v)} | {' / '.join(fmt(x) for x in tps)} | {fmt(subs)} | {fmt(p50, 2)} | "
                f"{fmt(p99, 2)} | {fmt(ratio, 1)}× | {' / '.join(f'{x:.1f}' for x in per_round)} |"
            )
            if ratio is not None:
                ok = ratio >= E2E_RATIO_GOAL
                hits = sum(1 for x in per_round if x >= E2E_RATIO_GOAL)
                goals.append(
                    (
                        f"end-to-end ≥ {E2E_RATIO_GOAL:.0f}× Celery, {b}, {s} submitter(s)",
                        f"{fmt(ratio, 1)}× ({fmt(v)} vs {fmt(cel_med)} tasks/s)",
                        f"**{'met' if ok else 'missed'}** ({hits} of {len(per_round)} rounds)",
                    )
                )
    if celery:
        p(
            f"| Celery | 1 | {fmt(cel_med)} | {' / '.join(fmt(x) for x in cel)} | "
            f"{fmt(med([c['enqueue_per_sec'] for c in celery]))} (`.delay()` loop, worker running) | {NM} | {NM} | 1× | |"
        )
    p("")
    p(
        "surge's clock runs from the first submit to the broker counting every task succeeded; Celery's "
        "(celery_bench.py) from the first `.delay()` to the last `r.get()` returned. \"start\" is "
        "submit-to-start from each task's record (`started_at - created_at`, the broker's clock). "
        "1 submitter is the like-for-like loop (one call at a time, as Celery's `.delay()` loop); more "
        "submitters are concurrent `submit` calls in one process, as `surge serve` sees concurrent "
        "`POST /tasks`. \"Submits alone\": the same submissions to a queue no worker takes (the "
        "ceiling of end-to-end at that submitter count)."
    )
    p("")

    # Latency.
    p(f"## Submit-to-start with idle workers (one task every {runs(backends[0], 'latency')[0]['interval_ms'] if backends and runs(backends[0], 'latency') else '?'} ms)")
    p("")
    p("| backend | tasks | p50 ms (median) | p50 each round | p99 ms (median) | worst max ms | in-process p50 / p99 ms (median) | goal p50 | |")
    p("|---|---:|---:|---|---:|---:|---:|---:|---|")
    for b in backends:
        xs = [x for x in runs(b, "latency") if x.get("start_latency")]
        if not xs:
            continue
        p50s = [x["start_latency"]["p50_ms"] for x in xs]
        v = med(p50s)
        p99 = med([x["start_latency"]["p99_ms"] for x in xs])
        mx = max(x["start_latency"]["max_ms"] for x in xs)
        c50 = med([x["client_start_latency"]["p50_ms"] for x in xs if x.get("client_start_latency")])
        c99 = med([x["client_start_latency"]["p99_ms"] for x in xs if x.get("client_start_latency")])
        ok = v is not None and v < P50_GOAL_MS
        hits = sum(1 for x in p50s if x < P50_GOAL_MS)
        verdict = f"**{'met' if ok else 'missed'}** ({hits} of {len(p50s)} rounds)"
        p(
            f"| {b} | {xs[0]['tasks']} | {fmt(v, 2)} | {' / '.join(fmt(x, 2) for x in p50s)} | {fmt(p99, 2)} | "
            f"{fmt(mx, 2)} | {fmt(c50, 2)} / {fmt(c99, 2)} | < {P50_GOAL_MS:.0f} | {verdict} |"
        )
        goals.append((f"submit-to-start p50 < {P50_GOAL_MS:.0f} ms, {b}", f"{fmt(v, 2)} ms (p99 {fmt(p99, 2)} ms)", verdict))
    p("")
    p(
        "In-process: from building the task just before `submit` to its handler starting, both in the "
        "benchmark process (includes the submission's own round trip and commit)."
    )
    p("")

    p("## Goals")
    p("")
    p("| goal | measured (median) | |")
    p("|---|---|---|")
    for g in goals:
        p(f"| {g[0]} | {g[1]} | {g[2]} |")
    p("")

    busy = defaultdict(list)
    for r in rows:
        busy[r["target"]].append(r.get("machine_busy", 0))
    p(
        "Machine busy (share of both CPUs not idle over each command, median of its runs): "
        + "; ".join(f"{t} {med(xs):.0%}" for t, xs in busy.items())
    )
    return "\n".join(out) + "\n"


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "--meta":
        print(json.dumps(meta(sys.argv[2], sys.argv[3])))
    elif len(sys.argv) == 3 and sys.argv[1] == "--summary":
        print(summary(json.loads(sys.argv[2])))
    elif len(sys.argv) == 2:
        sys.stdout.write(report(Path(sys.argv[1])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
