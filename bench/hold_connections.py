#!/usr/bin/env python3
"""Open N keep-alive HTTP/1.1 connections to HOST:PORT and hold them open.

Each connection sends one `GET PATH HTTP/1.1` (keep-alive), reads the whole
response, and then stays open, idle, so that the server holds N idle
keep-alive connections. Used by bench/web.sh to measure a server's RSS while
it holds 10,000 connections.

Output (stdout, one line each, flushed):
  progress K/N                     every 1,000 connections established
  ALL_ESTABLISHED N                once all N answered (or)
  ESTABLISHED K OF N FAILED F      if some could not be opened (first error follows)
  OPEN K                           whenever the server closes held connections
  CLOSING OPEN K                   on exit: how many were still open

It holds until SIGTERM/SIGINT, until --hold seconds have passed, or (with
--until-stdin-closes) until its standard input reaches EOF.

Usage: hold_connections.py HOST PORT N [--path /health] [--hold 300]
                           [--connect-concurrency 200] [--connect-timeout 30]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal
import sys


def log(line: str) -> None:
    print(line, flush=True)


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (Content-Length or chunked); return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)  # chunk + CRLF
            if size == 0:
                break
    if headers.get("connection", "").lower() == "close":
        raise ConnectionError(f"server answered Connection: close (status {status})")
    return status


class Holder:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.established = 0
        self.failed = 0
        self.first_error: str | None = None
        self.open = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.all_done = asyncio.Event()
        self.stop = asyncio.Event()

    async def one(self, sem: asyncio.Semaphore) -> None:
        a = self.args
        request = (
            f"GET {a.path} HTTP/1.1\r\nHost: {a.host}:{a.port}\r\n"
            "Connection: keep-alive\r\nUser-Agent: surge-bench-hold\r\n\r\n"
        ).encode()
        async with sem:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(a.host, a.port), a.connect_timeout
                )
                writer.write(request)
                await writer.drain()
                status = await asyncio.wait_for(read_response(reader), a.connect_timeout)
                if not 200 <= status < 300:
                    raise ConnectionError(f"status {status}")
            except Exception as e:  # noqa: BLE001 - every failure is counted the same
                self.failed += 1
                if self.first_error is None:
                    self.first_error = f"{type(e).__name__}: {e}"
                return
        self.writers.append(writer)
        self.established += 1
        self.open += 1
        if self.established % 1000 == 0:
            log(f"progress {self.established}/{a.n}")
        # Hold: wait for the server to close (EOF) or for us to stop.
        eof = asyncio.ensure_future(reader.read(1))
        stop = asyncio.ensure_future(self.stop.wait())
        done, _ = await asyncio.wait({eof, stop}, return_when=asyncio.FIRST_COMPLETED)
        if eof in done:
            self.open -= 1
            if self.all_done.is_set():
                log(f"OPEN {self.open}")
        eof.cancel()
        stop.cancel()

    async def run(self) -> int:
        a = self.args
        sem = asyncio.Semaphore(a.connect_concurrency)
        tasks = [asyncio.ensure_future(self.one(sem)) for _ in range(a.n)]

        async def report_when_connected() -> None:
            while self.established + self.failed < a.n:
                await asyncio.sleep(0.05)
            if self.failed == 0:
                log(f"ALL_ESTABLISHED {self.established}")
            else:
                log(f"ESTABLISHED {self.established} OF {a.n} FAILED {self.failed}")
                log(f"first error: {self.first_error}")
            self.all_done.set()

        reporter = asyncio.ensure_future(report_when_connected())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        if a.until_stdin_closes:
            async def stdin_eof() -> None:
                await loop.run_in_executor(None, sys.stdin.read)
                self.stop.set()
            asyncio.ensure_future(stdin_eof())
        try:
            await asyncio.wait_for(self.stop.wait(), a.hold)
        except asyncio.TimeoutError:
            pass
        self.stop.set()
        reporter.cancel()
        log(f"CLOSING OPEN {self.open}")
        for w in self.writers:
            w.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return 0 if self.failed == 0 else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("n", type=int)
    p.add_argument("--path", default="/health")
    p.add_argument("--hold", type=float, default=300.0, help="seconds to hold at most")
    p.add_argument("--connect-concurrency", type=int, default=200,
                   help="connections being opened at once (keeps the listen backlog from overflowing)")
    p.add_argument("--connect-timeout", type=float, default=30.0)
    p.add_argument("--until-stdin-closes", action="store_true")
    args = p.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.n + 100
    if soft < want:
        new_soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        if new_soft < want:
            log(f"warning: open-file limit {new_soft} < {want}; some connections will fail")
    return asyncio.run(Holder(args).run())


if __name__ == "__main__":
    sys.exit(main())
