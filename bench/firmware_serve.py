"""Firmware download benchmark: the central download route against nginx, one 32 MB image.

200 terminals download the same image at once over loopback, each with its own Action
and download token, from (a) a private nginx (Debian package ``nginx``, started here on
a free port with a generated config) serving the very file from the artifact folder and
(b) the central dashboard app in a process of its own, through
``GET /firmware/download/{sha256}`` with token checks and the Action lookup. Same client
for both, in rounds that alternate which server goes first (the machine's speed drifts);
the headline is the median round's throughput ratio (b)/(a). Also: the central process's
peak RSS during its downloads, against its RSS just before them.

    .venv/bin/python -m bench.firmware_serve             # 32 MB x 200, 5 rounds
    .venv/bin/python -m bench.firmware_serve --quick     # 8 MB x 50, 1 round

Goals: ratio >= 0.8, RSS growth < 50 MB. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import secrets
import statistics
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.firmware_serve_parts import (
    CentralServer,
    Download,
    Nginx,
    RssSampler,
    cpu_seconds,
    rss_bytes,
    run_clients,
    serve,
)

RATIO_GOAL = 0.8
RSS_GROWTH_GOAL_MB = 50.0
MB = 1024 * 1024


def _say(text: str) -> None:
    print(text, flush=True)


async def _prepare(work: Path, size: int, terminals: int) -> dict[str, Any]:
    """Image, release key, signed artifact, one Action and token per terminal."""
    from posfleet.contract import FirmwareManifest, MaintenanceWindow, utcnow
    from posfleet.firmware.actions import create_action
    from posfleet.firmware.artifact_store import ArtifactStore
    from posfleet.firmware.artifacts import Artifacts
    from posfleet.firmware.download_tokens import TERMINAL_HEADER, DownloadTokens, download_path
    from posfleet.firmware.settings import FirmwareSettings
    from posfleet.firmware.signing import generate_private_key, public_key_pem, sign_manifest
    from posfleet.store.engine import create_engine
    from posfleet.store.migrate import upgrade_engine

    image = work / "image.bin"
    with image.open("wb") as out:
        for _ in range(size // MB):
            out.write(os.urandom(MB))
    sha256 = hashlib.sha256(image.read_bytes()).hexdigest()
    key = generate_private_key()
    (work / "release.pub").write_bytes(public_key_pem(key.public_key()))
    manifest = FirmwareManifest(
        name="pos-os", version="5.3.0", sha256=sha256, size=size, models=["V400m"]
    )
    signed = sign_manifest(manifest, key, "bench")
    url = f"sqlite+aiosqlite:///{work / 'posfleet.db'}"
    secret = secrets.token_bytes(32)
    tokens = DownloadTokens(secret)
    firmware = {"trusted_keys": {"bench": str(work / "release.pub")}}
    engine = create_engine(url)
    try:
        await upgrade_engine(engine)
        artifacts = Artifacts(
            engine,
            ArtifactStore(work / "artifacts"),
            FirmwareSettings.model_validate(firmware).trusted(),
        )

        async def chunks() -> Any:
            with image.open("rb") as source:
                while chunk := source.read(MB):
                    yield chunk

        artifact = (await artifacts.upload(signed, chunks(), uploaded_by="bench")).artifact
        now = utcnow()
        downloads = []
        async with engine.begin() as conn:
            for n in range(terminals):
                terminal = f"T-{n:04d}"
                action = await create_action(
                    conn,
                    artifact_id=artifact.id,
                    terminal_id=terminal,
                    window=MaintenanceWindow(),
                    deadline=now + timedelta(days=1),
                    created_by="bench",
                    now=now,
                )
                token = tokens.issue(terminal, str(action.id), sha256, now + timedelta(hours=2))
                headers = {"Authorization": f"Bearer {token}", TERMINAL_HEADER: terminal}
                downloads.append(Download(download_path(sha256), headers))
    finally:
        await engine.dispose()
    image.unlink()  # nginx serves the blob itself, the file the central service serves
    (work / "server.json").write_text(
        json.dumps(
            {
                "database_url": url,
                "artifacts_dir": str(work / "artifacts"),
                "token_secret": secret.hex(),
                "firmware": firmware,
            }
        )
    )
    return {"sha256": sha256, "downloads": downloads}


def _round(
    order: list[str], nginx: Nginx, central: CentralServer, plan: dict[str, Any], procs: int
) -> dict[str, Any]:
    sha256 = plan["sha256"]
    downloads: list[Download] = plan["downloads"]
    figures: dict[str, Any] = {}
    for server in order:
        if server == "nginx":
            plain = [Download(f"/{sha256}", {}) for _ in downloads]
            cpu = cpu_seconds(nginx.pid, with_children=True)
            figures["nginx"] = run_clients("127.0.0.1", nginx.port, plain, procs)
            cpu = cpu_seconds(nginx.pid, with_children=True) - cpu
            figures["nginx"]["cpu_s_per_gb"] = cpu / (figures["nginx"]["bytes"] / 1e9)
        else:
            before = rss_bytes(central.pid)
            cpu = cpu_seconds(central.pid)
            with RssSampler(central.pid) as sampler:
                figures["central"] = run_clients("127.0.0.1", central.port, downloads, procs)
            cpu = cpu_seconds(central.pid) - cpu
            figures["central"]["cpu_s_per_gb"] = cpu / (figures["central"]["bytes"] / 1e9)
            figures["central"]["rss_before_mb"] = before / MB
            figures["central"]["rss_peak_mb"] = sampler.peak / MB
    figures["ratio"] = figures["central"]["mb_per_s"] / figures["nginx"]["mb_per_s"]
    figures["order"] = order
    return figures


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Prepare, start both servers, run the rounds; every figure in one dict."""
    size = args.size_mb * MB
    _say(f"preparing a {args.size_mb} MB artifact and {args.terminals} Actions in {work}")
    plan = asyncio.run(_prepare(work, size, args.terminals))
    rounds = []
    with Nginx(work / "artifacts", work / "nginx") as nginx, CentralServer(work) as central:
        # One download from each first: both answer, the same bytes, and the page cache
        # holds the image before anything is timed.
        check = run_clients("127.0.0.1", central.port, plan["downloads"][:1], 1)
        assert check["bytes"] == size, check
        check = run_clients("127.0.0.1", nginx.port, [Download(f"/{plan['sha256']}", {})], 1)
        assert check["bytes"] == size, check
        rss_start = rss_bytes(central.pid)
        for n in range(args.rounds):
            order = ["nginx", "central"] if n % 2 == 0 else ["central", "nginx"]
            figures = _round(order, nginx, central, plan, args.client_procs)
            rounds.append(figures)
            c, g = figures["central"], figures["nginx"]
            _say(
                f"round {n + 1}: nginx {g['mb_per_s']:.0f} MB/s, central {c['mb_per_s']:.0f} "
                f"MB/s, ratio {figures['ratio']:.3f}; central RSS {c['rss_before_mb']:.1f} -> "
                f"peak {c['rss_peak_mb']:.1f} MB; CPU s/GB nginx {g['cpu_s_per_gb']:.2f}, "
                f"central {c['cpu_s_per_gb']:.2f}"
            )
        workers = nginx.workers()
        version = nginx.version()
    median_round = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
    ratio = statistics.median(r["ratio"] for r in rounds)
    peak = max(r["central"]["rss_peak_mb"] for r in rounds)
    growth = peak - rss_start / MB
    return {
        "bench": "firmware_serve",
        "image_mb": args.size_mb,
        "downloaders": args.terminals,
        "client_processes": args.client_procs,
        "rounds": args.rounds,
        "ratio_median": round(ratio, 3),
        "ratio_goal": RATIO_GOAL,
        "ratio_goal_met": ratio >= RATIO_GOAL,
        "nginx_mb_per_s": round(median_round["nginx"]["mb_per_s"], 1),
        "central_mb_per_s": round(median_round["central"]["mb_per_s"], 1),
        "nginx_cpu_s_per_gb": round(
            statistics.median(r["nginx"]["cpu_s_per_gb"] for r in rounds), 3
        ),
        "central_cpu_s_per_gb": round(
            statistics.median(r["central"]["cpu_s_per_gb"] for r in rounds), 3
        ),
        "central_rss_start_mb": round(rss_start / MB, 1),
        "central_rss_peak_mb": round(peak, 1),
        "central_rss_growth_mb": round(growth, 1),
        "rss_growth_goal_mb": RSS_GROWTH_GOAL_MB,
        "rss_goal_met": growth < RSS_GROWTH_GOAL_MB,
        "nginx": version,
        "nginx_workers": workers,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "every_round": [
            {
                "order": r["order"],
                "ratio": round(r["ratio"], 3),
                "nginx_mb_per_s": round(r["nginx"]["mb_per_s"], 1),
                "central_mb_per_s": round(r["central"]["mb_per_s"], 1),
                "central_rss_peak_mb": round(r["central"]["rss_peak_mb"], 1),
                "nginx_cpu_s_per_gb": round(r["nginx"]["cpu_s_per_gb"], 3),
                "central_cpu_s_per_gb": round(r["central"]["cpu_s_per_gb"], 3),
            }
            for r in rounds
        ],
    }


def main() -> None:
    """Command line: run the benchmark, or (``--serve``) be its central server process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 MB x 50 downloaders, 1 round")
    parser.add_argument("--size-mb", type=int, default=32)
    parser.add_argument("--terminals", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--client-procs", type=int, default=2, help="client processes (2)")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.port)
        return
    if args.quick:
        args.size_mb, args.terminals, args.rounds = 8, 50, 1
    with tempfile.TemporaryDirectory(prefix="posfleet-fw-bench-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # nginx's workers run as the invoking user, which reads it
        result = run(args, work)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
