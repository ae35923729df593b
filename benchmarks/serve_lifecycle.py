"""Stop and restart under a supervisor: SIGTERM to the server process or to its whole process group.

    python benchmarks/serve_lifecycle.py [--home .tagops] [--cycles 20] [--engines uvicorn ray]
                                         [--output benchmarks/results/serve_lifecycle.json]

Serves the champion in ``--home`` (``make run``'s) with `tagops serve` on one fixed loopback port,
``--cycles`` times per engine, alternating how it is stopped: SIGTERM to the process (a supervisor that
signals its child) and SIGTERM to the process group (``kill -TERM -PGID``; systemd's default also
signals every process of the service). Each cycle: start, wait for ``/readyz``, keep 4 clients
predicting, signal, then measure the exit code and time, the server's processes still alive 2 s later,
and whether anything still listens on the port; the next cycle restarts on the same port at once.
Requests sent before the signal that did not get an answer are counted as dropped in flight; at the
end, the rows in each engine's prediction log (after `tagops log-replay`, which writes what a stop left
in the journal) are compared with the predictions answered: every answered prediction must be there.

Bars: every stop exits 0 within 10 s, leaves no process and no listening port, and every restart is
ready.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from serving_common import RESULTS, environment, machine, print_table, write_json
from stamp import stamp

EXIT_BAR_S = 10.0
CLIENTS = 4
BODY = {"items": [{"title": "Object detection on edge devices", "description": "YOLO on a phone"}]}


class Load:
    """``CLIENTS`` threads predicting until stopped; records what was sent before the stop signal."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.signalled_at: float | None = None
        self.answered = 0
        self.dropped_in_flight = 0
        #: What each dropped request got instead of an answer (status or exception), counted.
        self.dropped_how: dict[str, int] = {}
        self.refused_after = 0
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]

    def _client(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self.stop.is_set():
                sent = time.perf_counter()
                try:
                    status = http.post(self.url, json=BODY).status_code
                    ok, why = status == 200, str(status)
                except httpx.HTTPError as error:
                    ok, why = False, type(error).__name__
                with self._lock:
                    if ok:
                        self.answered += 1
                    elif self.signalled_at is not None and sent < self.signalled_at:
                        self.dropped_in_flight += 1
                        self.dropped_how[why] = self.dropped_how.get(why, 0) + 1
                    else:
                        self.refused_after += 1
                if not ok:
                    time.sleep(0.05)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(35)


def listening(port: int) -> bool:
    """Whether anything on this machine listens on ``port``."""
    return any(
        c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
        for c in psutil.net_connections("tcp")
    )


def cycle(engine: str, target: str, port: int, env: dict[str, str], log: Path) -> dict[str, Any]:
    """One start, load, stop: what the supervisor sees."""
    command = [sys.executable, "-m", "tagops.cli", "serve", "--port", str(port)]
    command += ["--engine", "uvicorn"] if engine == "uvicorn" else []
    started = time.perf_counter()
    with log.open("a") as errors:
        proc = subprocess.Popen(command, env=env, stdout=errors, stderr=errors, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    ready_s = None
    with httpx.Client(timeout=2) as http:
        while time.perf_counter() - started < 120 and proc.poll() is None:
            try:
                if http.get(f"{url}/readyz").status_code == 200:
                    ready_s = time.perf_counter() - started
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    row: dict[str, Any] = {"engine": engine, "signal_to": target, "ready": ready_s is not None}
    row["ready_s"] = ready_s
    if ready_s is None:
        proc.kill()
        proc.wait(30)
        return row
    processes = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    with Load(f"{url}/v1/predict") as load:
        time.sleep(1.0)
        load.signalled_at = time.perf_counter()
        if target == "group":
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = proc.wait(60)
        except subprocess.TimeoutExpired:
            code = None
        exit_s = time.perf_counter() - load.signalled_at
    time.sleep(2.0)
    left = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    row.update(
        exit_code=code,
        exit_s=round(exit_s, 2),
        processes_left=[f"{p.pid}:{p.name()}" for p in left],
        port_left=listening(port),
        answered=load.answered,
        dropped_in_flight=load.dropped_in_flight,
        dropped_how=load.dropped_how,
    )
    for p in left:  # clean up for the next cycle, after recording them
        with contextlib.suppress(psutil.Error):
            p.kill()
    if code is None:
        proc.kill()
        proc.wait(30)
    return row


def logged_rows(database: Path) -> int:
    with sqlite3.connect(database) as db:
        return int(db.execute("SELECT count(*) FROM predictions").fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("TAGOPS_HOME", ".tagops")))
    parser.add_argument("--cycles", type=int, default=20, help="Stops per engine (half of each kind).")
    parser.add_argument("--engines", nargs="+", default=["uvicorn", "ray"], choices=["uvicorn", "ray"])
    parser.add_argument("--output", type=Path, default=RESULTS / "serve_lifecycle.json")
    args = parser.parse_args()
    home = args.home.resolve()

    from tagops.serving.server import free_port

    workdir = Path(tempfile.mkdtemp(prefix="serve-lifecycle-"))
    before = machine()
    rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for engine in args.engines:
        port = free_port()
        database = workdir / f"{engine}.db"
        env = environment(home, TAGOPS_SERVE_DATABASE_URL=f"sqlite:///{database}")
        for index in range(args.cycles):
            target = "process" if index % 2 == 0 else "group"
            rows.append(cycle(engine, target, port, env, workdir / f"{engine}.log"))
            print({k: v for k, v in rows[-1].items() if k != "processes_left"}, flush=True)
        answered = sum(r.get("answered", 0) for r in rows if r["engine"] == engine)
        before_replay = logged_rows(database)
        # Rows a stopped replica left in its journal are written by the next start or by log-replay.
        subprocess.run(
            [sys.executable, "-m", "tagops.cli", "log-replay"], env=env, capture_output=True, check=True
        )
        logged = logged_rows(database)
        for target in ("process", "group"):
            mine = [r for r in rows if r["engine"] == engine and r["signal_to"] == target]
            stopped = [r for r in mine if r["ready"]]
            exits = [r["exit_s"] for r in stopped if r.get("exit_code") is not None]
            summary.append(
                {
                    "engine": engine,
                    "signal_to": target,
                    "cycles": len(mine),
                    "ready": sum(r["ready"] for r in mine),
                    "exit_0": sum(r.get("exit_code") == 0 for r in stopped),
                    "exit_s_median": round(statistics.median(exits), 2) if exits else None,
                    "exit_s_max": round(max(exits), 2) if exits else None,
                    "with_processes_left": sum(bool(r.get("processes_left")) for r in stopped),
                    "with_port_left": sum(bool(r.get("port_left")) for r in stopped),
                    "dropped_in_flight": sum(r.get("dropped_in_flight", 0) for r in stopped),
                    "answered": sum(r.get("answered", 0) for r in stopped),
                    "pass": len(mine) == len(stopped)
                    and not sum(r.get("dropped_in_flight", 0) for r in stopped)
                    and all(
                        r.get("exit_code") == 0
                        and r["exit_s"] <= EXIT_BAR_S
                        and not r["processes_left"]
                        and not r["port_left"]
                        for r in stopped
                    ),
                }
            )
        summary[-1]["log_rows"] = summary[-2]["log_rows"] = logged
        summary[-1]["log_rows_before_replay"] = summary[-2]["log_rows_before_replay"] = before_replay
        for row in summary[-2:]:
            row["pass"] = row["pass"] and logged >= answered
        summary[-1]["log_rows_of_answered"] = summary[-2]["log_rows_of_answered"] = f"{logged}/{answered}"

    print()
    print_table(
        summary,
        [
            "engine",
            "signal_to",
            "cycles",
            "ready",
            "exit_0",
            "exit_s_median",
            "exit_s_max",
            "with_processes_left",
            "with_port_left",
            "dropped_in_flight",
            "log_rows_of_answered",
            "pass",
        ],
    )
    write_json(
        args.output,
        {
            "benchmark": "serve_lifecycle",
            "cycles_per_engine": args.cycles,
            "clients": CLIENTS,
            "exit_bar_s": EXIT_BAR_S,
            "machine_before": before,
            "machine_after": machine(),
            "summary": summary,
            "cycles": rows,
            "logs": str(workdir),
            **stamp(),
        },
    )
    print(f"\n{args.output}")


if __name__ == "__main__":
    main()
