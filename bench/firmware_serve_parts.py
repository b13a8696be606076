"""Pieces of the firmware download benchmark: the central server process, nginx, the client.

The client is the same for both servers: raw non-blocking sockets, one HTTP/1.1 GET per
connection, the body received into a reused buffer and counted, never kept. It runs in
a few processes so that it is not the one thing holding either server back.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import multiprocessing
import multiprocessing.synchronize
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECV_BUFFER = 1024 * 1024


@dataclass(frozen=True)
class Download:
    """One request the client makes: where, and with which headers."""

    path: str
    headers: dict[str, str]


async def _fetch(host: str, port: int, download: Download, buffer: memoryview) -> int:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (host, port))
        lines = "".join(f"{k}: {v}\r\n" for k, v in download.headers.items())
        request = (
            f"GET {download.path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{lines}\r\n"
        )
        await loop.sock_sendall(sock, request.encode("ascii"))
        head = bytearray()
        while b"\r\n\r\n" not in head:
            chunk = await loop.sock_recv(sock, 65536)
            if not chunk:
                raise ConnectionError("closed before the headers")
            head += chunk
        header_bytes, _, body = bytes(head).partition(b"\r\n\r\n")
        status_line, *header_lines = header_bytes.decode("latin-1").split("\r\n")
        if status_line.split(" ")[1] != "200":
            raise ConnectionError(f"{download.path}: {status_line}")
        fields = dict(line.split(": ", 1) for line in header_lines if ": " in line)
        length = int({k.lower(): v for k, v in fields.items()}["content-length"])
        received = len(body)
        while received < length:
            n = await loop.sock_recv_into(sock, buffer)
            if n == 0:
                raise ConnectionError(f"cut after {received} of {length} bytes")
            received += n
        return received
    finally:
        sock.close()


async def _client(host: str, port: int, downloads: list[Download]) -> tuple[float, float, int]:
    buffer = memoryview(bytearray(RECV_BUFFER))
    started = time.monotonic()
    sizes = await asyncio.gather(*(_fetch(host, port, d, buffer) for d in downloads))
    return started, time.monotonic(), sum(sizes)


def _client_process(
    host: str,
    port: int,
    downloads: list[Download],
    go: multiprocessing.synchronize.Event,
    results: Any,
) -> None:
    go.wait()
    results.put(asyncio.run(_client(host, port, downloads)))


def run_clients(
    host: str, port: int, downloads: list[Download], processes: int
) -> dict[str, float]:
    """Every download at once, spread over ``processes``; wall time and throughput."""
    context = multiprocessing.get_context("fork")
    go = context.Event()
    results = context.Queue()
    shares = [downloads[i::processes] for i in range(processes)]
    workers = [
        context.Process(target=_client_process, args=(host, port, share, go, results))
        for share in shares
    ]
    for worker in workers:
        worker.start()
    time.sleep(0.2)  # let every client process reach go.wait(); not a sync point for data
    go.set()
    outcomes = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        if worker.exitcode != 0:
            raise RuntimeError(f"a client process failed (exit {worker.exitcode})")
    start = min(o[0] for o in outcomes)
    end = max(o[1] for o in outcomes)
    total = sum(o[2] for o in outcomes)
    return {"seconds": end - start, "bytes": total, "mb_per_s": total / (end - start) / 1e6}


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int, *, with_children: bool = False) -> float:
    """User + system CPU time of a process (and of its live child processes)."""
    ticks = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    if with_children:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    total = 0.0
    for one in pids:
        fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


class RssSampler:
    """Samples a process's RSS every few milliseconds in a thread; keeps the peak."""

    def __init__(self, pid: int, interval_s: float = 0.01) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[Any], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within 30 s")


class Nginx:
    """A private nginx (Debian package ``nginx``) serving ``root`` on a free port."""

    def __init__(self, root: Path, work: Path) -> None:
        binary = shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
        )
        if binary is None:
            raise RuntimeError(
                "nginx is not installed: apt-get install nginx (Debian package nginx)"
            )
        self.binary = binary
        self.port = free_port()
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
        temp = " ".join(
            f"{kind}_temp_path {work / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (work / "nginx.conf").write_text(
            f"""{user}
worker_processes auto;
daemon off;
pid {work / "nginx.pid"};
error_log {work / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    default_type application/octet-stream;
    {temp}
    server {{
        listen 127.0.0.1:{self.port};
        root {root};
        location / {{ }}
    }}
}}
""",
            encoding="utf-8",
        )
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Nginx:
        self.process = subprocess.Popen(
            [
                self.binary,
                "-p",
                str(self.work),
                "-c",
                str(self.work / "nginx.conf"),
                "-e",
                str(self.work / "error.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _wait_for_port(self.port, self.process, "nginx")
        return self

    def version(self) -> str:
        """``nginx/1.22.1`` or so."""
        out = subprocess.run([self.binary, "-v"], capture_output=True, text=True, check=False)
        return out.stderr.strip().removeprefix("nginx version: ")

    @property
    def pid(self) -> int:
        """The master process's id."""
        assert self.process is not None
        return self.process.pid

    def workers(self) -> int:
        """How many worker processes nginx runs."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        return len(children.split())

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class CentralServer:
    """The central dashboard app (firmware routes included) in a process of its own."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> CentralServer:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.firmware_serve",
                "--serve",
                str(self.work),
                "--port",
                str(self.port),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, self.process, "the central server")
        return self

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.process is not None
        return self.process.pid

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def serve(work: Path, port: int) -> None:
    """Run the dashboard app over the bench's database and artifacts until SIGTERM."""
    from aiohttp import web

    from posfleet.broker_bridge import tune_gc
    from posfleet.dashboard import create_app
    from posfleet.dashboard.firmware_download import FirmwareDelivery
    from posfleet.firmware.settings import FirmwareSettings
    from posfleet.store.engine import create_engine

    config = json.loads((work / "server.json").read_text())
    settings = FirmwareSettings.model_validate(config["firmware"])

    async def run() -> None:
        tune_gc()
        engine = create_engine(config["database_url"])
        delivery = FirmwareDelivery.from_settings(
            settings,
            artifacts_dir=Path(config["artifacts_dir"]),
            token_secret=bytes.fromhex(config["token_secret"]),
        )
        app = create_app(engine, session_secret=bytes(32), firmware=delivery)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        try:
            await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
            await stop.wait()
        finally:
            await runner.cleanup()
            await engine.dispose()

    asyncio.run(run())
