"""`python -m workers.supervise --processes N --threads T`: the worker pool that a killed child does not stop.

`dramatiq workers.all --processes 2` stops the whole pool when one worker
process dies (dramatiq shuts the others down and exits), and nothing restarts
it but the service manager (issue 15 item 6). This supervisor runs N
independent `dramatiq workers.all --processes 1 --threads T` pools and
restarts any that exits, so a `kill -9` of one worker takes out one pool for
a second, not the desk's workers. Restarts back off (1 s, doubling to 30 s)
when a pool keeps dying at once (a broken deployment, the broker down at
start), and each restart is logged once. SIGTERM/SIGINT stop every pool
(dramatiq finishes the messages in hand) and then the supervisor.

Run it under systemd with `Restart=always` (docs/operations.md): systemd
restarts the supervisor, the supervisor restarts the pools.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger("workers.supervise")

MAX_BACKOFF = 30.0
# A pool that ran this long before dying was healthy: its next restart is immediate again.
HEALTHY_AFTER = 60.0
STOP_GRACE = 30.0


@dataclass
class Pool:
    """One `dramatiq` invocation and its restart state."""

    command: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff: float = 1.0
    restart_at: float = 0.0
    restarts: int = field(default=0)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.command)
        self.started = time.monotonic()


def pool_command(threads: int, modules: list[str]) -> list[str]:
    """The command of one pool: one dramatiq worker process with `threads` threads."""
    return [sys.executable, "-m", "dramatiq", *modules, "--processes", "1", "--threads", str(threads)]


def supervise(pools: list[Pool], stop: threading.Event, *, poll: float = 0.5) -> None:
    """Start every pool and restart those that exit until `stop` is set; then stop them all."""
    for pool in pools:
        pool.start()
    try:
        while not stop.is_set():
            now = time.monotonic()
            for index, pool in enumerate(pools):
                assert pool.proc is not None
                code = pool.proc.poll()
                if code is None:
                    continue
                if pool.restart_at == 0.0:
                    ran = now - pool.started
                    pool.backoff = 1.0 if ran >= HEALTHY_AFTER else min(pool.backoff * 2, MAX_BACKOFF)
                    pool.restart_at = now + (0.0 if ran >= HEALTHY_AFTER else pool.backoff)
                    log.warning("worker pool %d (pid %d) exited with %s after %.0f s; restarting", index, pool.proc.pid, code, ran)
                if now >= pool.restart_at:
                    pool.restart_at = 0.0
                    pool.restarts += 1
                    pool.start()
            stop.wait(poll)
    finally:
        _stop_all(pools)


def _stop_all(pools: list[Pool]) -> None:
    running = [p.proc for p in pools if p.proc is not None and p.proc.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for proc in running:
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    """Parse the options, supervise until SIGTERM/SIGINT; exit 0."""
    parser = argparse.ArgumentParser(prog="python -m workers.supervise", description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2, help="independent worker pools (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="threads per pool (default 2)")
    parser.add_argument("modules", nargs="*", default=["workers.all"], help="actor modules (default workers.all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    pools = [Pool(pool_command(args.threads, args.modules)) for _ in range(max(args.processes, 1))]
    log.info("supervising %d worker pool(s) of %d thread(s), pid %d", len(pools), args.threads, os.getpid())
    supervise(pools, stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
