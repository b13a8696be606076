"""Worker processes of the central service: started, greeted, stopped, in one way.

The store writer (:mod:`~posfleet.broker_bridge.store_worker`) and the rule worker
(:mod:`~posfleet.diagnostics.rule_worker`) are ``python -m`` children that speak
:mod:`~posfleet.pipe_frames` on their stdin and stdout. The parent's side
(:func:`spawn`, :func:`stop`, :func:`kill`) and the child's (:func:`child_stdio`,
:func:`child_logging`) live here, so that both behave alike: a hello frame answered
``("ready",)`` or ``("failed", reason)``, an exit when stdin closes, SIGINT and SIGTERM
ignored (Ctrl-C and ``systemctl stop`` reach the whole process group; the parent decides
when its child has finished).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

from posfleet.pipe_frames import FrameError, encode_frame, read_frame

log = logging.getLogger(__name__)

READ_LIMIT = 2**20
"""The parent's stream buffer for the child's answers."""


class ChildStartError(Exception):
    """The child did not answer its hello with ``("ready",)``; the reason says why."""


async def spawn(module: str, hello: object, *, ready_within_s: float) -> asyncio.subprocess.Process:
    """Start ``python -m module``, send ``hello`` and wait up to ``ready_within_s`` for
    ``("ready",)``; the child is killed and :class:`ChildStartError` raised otherwise."""
    try:
        frame = encode_frame(hello)
    except Exception as exc:
        raise ChildStartError(f"its settings cannot be sent to it: {exc}") from exc
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=READ_LIMIT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(frame)
        await proc.stdin.drain()
        async with asyncio.timeout(ready_within_s):
            answer = await read_frame(proc.stdout)
    except (TimeoutError, FrameError, ConnectionError) as exc:
        await kill(proc)
        raise ChildStartError(repr(exc)) from exc
    if answer != ("ready",):
        await kill(proc)
        reason = answer[1] if isinstance(answer, tuple) and len(answer) > 1 else answer
        raise ChildStartError(str(reason))
    return proc


async def stop(proc: asyncio.subprocess.Process, *, within_s: float, name: str) -> None:
    """Close the child's stdin and wait up to ``within_s`` for it to finish; kill it then."""
    if proc.stdin is not None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            proc.stdin.close()
            await proc.stdin.wait_closed()
    try:
        async with asyncio.timeout(within_s):
            await proc.wait()
    except TimeoutError:
        log.error("the %s did not stop within %.0f s: killing it", name, within_s)
        await kill(proc)


async def kill(proc: asyncio.subprocess.Process) -> None:
    """Kill the child (if it still runs) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()


def child_stdio() -> int:
    """In the child: keep stdout for frames and return its descriptor; anything printed
    goes to stderr; SIGINT and SIGTERM are ignored."""
    frames_fd = os.dup(1)
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return frames_fd


def child_logging(level: int, label: str) -> None:
    """In the child: log to stderr at ``level``, each line marked ``[label pid]``."""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s [{label} %(process)d] %(name)s: %(message)s",
    )
