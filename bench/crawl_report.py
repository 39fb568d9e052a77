#!/usr/bin/env python3
"""Markdown report for bench/crawl.sh.

  crawl_report.py WORKDIR   report from WORKDIR/{meta.json,results.jsonl,<tool>-<round>.jsonl,site/}

The ground truth is computed here from the generated site itself: every
`href="/..."` of every page, walked breadth-first from `/` to the depth
limit (start page depth 0), as a correct crawler with robots obeyed sees it
(gen_site.py's robots.txt disallows /private/, which no page links to).
Each tool's URL set is compared with it and with the other tool's; the
differences are printed (at most 20 of each).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import deque
from pathlib import Path

HREF = re.compile(r'<a href="([^"]*)"')


def expected_urls(site: Path, start: str, depth: int) -> set[str]:
    """BFS over the generated files (depth <= 0 means no limit)."""
    base = start.rstrip("/")

    def links(path: str) -> list[str]:
        f = site / ("index.html" if path == "/" else path.lstrip("/"))
        if not f.is_file():
            return []
        return [h for h in HREF.findall(f.read_text()) if h.startswith("/") and not h.startswith("/private/")]

    seen = {"/": 0}
    queue = deque(["/"])
    while queue:
        p = queue.popleft()
        d = seen[p]
        if depth > 0 and d >= depth:
            continue
        for h in links(p):
            if h not in seen:
                seen[h] = d + 1
                queue.append(h)
    return {base + p for p in seen}


def urls_of(path: Path) -> list[str]:
    out = []
    if path.exists():
        for line in path.open():
            line = line.strip()
            if line.startswith("{"):
                out.append(json.loads(line)["url"])
    return out


FIELDS = (("title", "title"), ("description", "description"), ("links", "links_count"),
          ("images", "images_count"), ("content_length", "content_length"))


def records_of(path: Path) -> dict[str, dict]:
    out = {}
    if path.exists():
        for line in path.open():
            if line.startswith("{"):
                rec = json.loads(line)
                out[rec["url"]] = rec
    return out


def field_lines(surge: dict[str, dict], scrapy: dict[str, dict]) -> list[str]:
    """Per field: how many common URLs disagree (missing = empty string), with examples."""
    lines = []
    common = sorted(set(surge) & set(scrapy))
    for ours, theirs in FIELDS:
        bad = [u for u in common if (surge[u].get(ours) or "") != (scrapy[u].get(theirs) or "")]
        if bad:
            ex = "; ".join(f"{u}: surge {surge[u].get(ours)!r}, Scrapy {scrapy[u].get(theirs)!r}" for u in bad[:3])
            lines.append(f"- field {ours}: {len(bad):,} of {len(common):,} pages differ, e.g. {ex}")
        else:
            lines.append(f"- field {ours}: equal on all {len(common):,} pages")
    return lines


def diff_lines(name_a: str, a: set[str], name_b: str, b: set[str]) -> list[str]:
    lines = []
    for label, only in ((f"only in {name_a}", a - b), (f"only in {name_b}", b - a)):
        if only:
            shown = sorted(only)[:20]
            more = f" (+{len(only) - 20} more)" if len(only) > 20 else ""
            lines.append(f"- {label}: {len(only)}: {', '.join(shown)}{more}")
    return lines


def main() -> None:
    work = Path(sys.argv[1])
    meta = json.loads((work / "meta.json").read_text())
    results = [json.loads(l) for l in (work / "results.jsonl").open() if l.strip()]
    expected = expected_urls(work / "site", meta["start"], int(meta["depth"]))
    tools = [t for t in ("surge", "scrapy") if any(r["tool"] == t for r in results)]

    med = {}
    for t in tools:
        rs = [r for r in results if r["tool"] == t]
        med[t] = {
            "pages_per_s": statistics.median(r["pages"] / r["seconds"] for r in rs),
            "seconds": statistics.median(r["seconds"] for r in rs),
            "rss_mib": statistics.median(r["rss_kib"] / 1024 for r in rs),
            "max_rss_mib": max(r["rss_kib"] / 1024 for r in rs),
            "rounds": rs,
        }

    depth = "unlimited" if int(meta["depth"]) <= 0 else meta["depth"]
    print(f"## surge crawl vs Scrapy: a {meta['pages']:,}-page generated site on a local nginx\n")
    print(f"Command: `{meta['command']}`  ")
    print(f"Site: `gen_site.py DIR {meta['pages']}` ({len(expected):,} pages reachable from `/` within depth {depth}, "
          f"robots.txt obeyed), served by nginx {meta['nginx']} (1 worker, open-file cache). "
          f"Both crawlers: start `/`, depth limit {depth}, same-site links only, robots.txt obeyed, "
          f"concurrency {meta['concurrency']}, JSONL out with url, title, description, content length, "
          f"link and image counts. {meta['cpus']} CPUs shared by nginx and the crawler. "
          f"Medians of {len(med[tools[0]]['rounds']) if tools else 0} rounds, tools alternating. "
          f"Load average at the start {meta['load_start']}, at the end {meta['load_end']}"
          f"{'; other builds were running on the machine' if meta.get('busy') else ''}.\n")
    print("pages/s = records written / wall-clock seconds of the process (surge: `/usr/bin/time`, process start to exit; "
          "Scrapy: its own timer, started after its imports, which favours Scrapy slightly). "
          "Peak RSS = `/usr/bin/time` maximum resident set size.\n")
    print("| crawler | pages/s (median) | seconds | peak RSS MiB (median / max) | rounds (pages/s, pages, RSS MiB) |")
    print("|---|---:|---:|---:|---|")
    for t in tools:
        m = med[t]
        rounds = "; ".join(f"{r['pages'] / r['seconds']:,.0f}, {r['pages']:,}, {r['rss_kib'] / 1024:.0f}" for r in m["rounds"])
        label = {"surge": f"surge crawl {meta.get('surge_version', '')}".strip(), "scrapy": f"Scrapy {meta.get('scrapy_version', '')}".strip()}[t]
        print(f"| {label} | {m['pages_per_s']:,.0f} | {m['seconds']:.2f} | {m['rss_mib']:.0f} / {m['max_rss_mib']:.0f} | {rounds} |")
    print()

    same = True
    print("Page sets (every round, compared with the ground truth and with each other):\n")
    sets = {}
    for r in results:
        urls = urls_of(work / f"{r['tool']}-{r['round']}.jsonl")
        s = set(urls)
        sets[(r["tool"], r["round"])] = s
        dups = len(urls) - len(s)
        status = "same as expected" if s == expected else "DIFFERENT"
        same &= s == expected
        print(f"- {r['tool']} round {r['round']}: {len(s):,} distinct URLs"
              f"{f', {dups} duplicate records' if dups else ''}: {status}")
        for line in diff_lines(r["tool"], s, "expected", expected):
            print("  " + line)
    if "surge" in tools and "scrapy" in tools:
        su = set().union(*(v for (t, _), v in sets.items() if t == "surge"))
        sc = set().union(*(v for (t, _), v in sets.items() if t == "scrapy"))
        print(f"- surge vs Scrapy (all rounds): {'same URL set' if su == sc else 'DIFFERENT'}")
        for line in diff_lines("surge", su, "scrapy", sc):
            print("  " + line)
        same &= su == sc
        print("\nFields, surge round 1 against Scrapy round 1:\n")
        for line in field_lines(records_of(work / "surge-1.jsonl"), records_of(work / "scrapy-1.jsonl")):
            print(line)
    print()

    if "surge" in med and "scrapy" in med:
        ratio = med["surge"]["pages_per_s"] / med["scrapy"]["pages_per_s"]
        rss = med["scrapy"]["rss_mib"] / med["surge"]["rss_mib"]
        print("| goal | measured | |")
        print("|---|---:|---|")
        print(f"| ≥ 30× Scrapy's pages/s, same page set | {ratio:.1f}× | "
              f"{'met' if ratio >= 30 and same else 'missed' + ('' if same else ' (page sets differ)')} |")
        print(f"| peak RSS | surge {med['surge']['rss_mib']:.0f} MiB, Scrapy {med['scrapy']['rss_mib']:.0f} MiB "
              f"(Scrapy {rss:.1f}× surge) | |")


if __name__ == "__main__":
    main()
