"""``GET /terminals/{id}/live``: the terminal page's panels as they change (Server-Sent Events).

Every :data:`LIVE_INTERVAL_S` the stream draws every panel again over one connection
(each panel costs one or two queries) and sends ``event: panel`` with
``{"name", "html", "digest"}`` for each panel whose HTML differs from what it sent last.
The first round sends them all: the page compares digests and leaves a panel alone when
it already shows that HTML, so reconnecting never disturbs a form being filled in.

The stream ends when the browser goes (a write fails or the connection is closing), when
the dashboard shuts down, and when the session ends (``event: ended``; the page reloads
and meets the login). A comment line every :data:`KEEPALIVE_S` keeps proxies from
closing a quiet stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

from aiohttp import web

from posfleet.dashboard.access import session_principal
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.errors import RequestRejectedError
from posfleet.dashboard.terminal_panel_rendering import RenderedPanel, render_panels

log = logging.getLogger(__name__)

LIVE_INTERVAL_S = 1.5
KEEPALIVE_S = 15.0
SESSION_CHECK_S = 30.0
"""How often a long-lived stream checks that its session is still live."""
RETRY_MS = 3000
"""How long the browser waits before reconnecting a dropped stream."""


@dataclass(slots=True)
class LiveStreams:
    """The app's open terminal streams and the signal that ends them at shutdown."""

    interval_s: float = LIVE_INTERVAL_S
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    open: int = 0
    """How many streams are being served right now."""


LIVE_KEY = web.AppKey("terminal_live_streams", LiveStreams)


def panel_event(panel: RenderedPanel) -> bytes:
    """One ``panel`` event: the JSON stays on one line, as an SSE ``data`` field must."""
    data = json.dumps({"name": panel.name, "html": str(panel.html), "digest": panel.digest})
    return f"event: panel\ndata: {data}\n\n".encode()


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _pause(streams: LiveStreams) -> bool:
    """Wait one interval; False once the dashboard is shutting down."""
    try:
        await asyncio.wait_for(streams.stop.wait(), streams.interval_s)
    except TimeoutError:
        return True
    return False


async def stream_panels(request: web.Request, terminal_id: str) -> web.StreamResponse:
    """Serve the live stream of ``terminal_id``'s page until the browser, session or app ends."""
    streams = request.app[LIVE_KEY]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            # nginx would otherwise hold the events back in its buffer.
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    engine = request.app[ENGINE_KEY]
    sent: dict[str, str] = {}
    last_write = last_session_check = time.monotonic()
    streams.open += 1
    try:
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        while not _client_gone(request):
            try:
                async with engine.connect() as conn:
                    panels = await render_panels(conn, terminal_id, request)
            except RequestRejectedError as exc:
                # The terminal is gone from the registry, say: tell the page, then stop.
                await response.write(f"event: ended\ndata: {json.dumps(exc.message)}\n\n".encode())
                break
            changed = [p for p in panels if sent.get(p.name) != p.digest]
            now = time.monotonic()
            if changed:
                await response.write(b"".join(panel_event(p) for p in changed))
                sent.update((p.name, p.digest) for p in changed)
                last_write = now
            elif now - last_write >= KEEPALIVE_S:
                await response.write(b": keepalive\n\n")
                last_write = now
            if now - last_session_check >= SESSION_CHECK_S:
                last_session_check = now
                if await session_principal(request) is None:
                    await response.write(b"event: ended\ndata: {}\n\n")
                    break
            if not await _pause(streams):
                break
    except ConnectionResetError:
        # The browser went away between the check and the write: nothing more to send.
        log.debug("live stream of %s ended by the client", terminal_id)
    finally:
        streams.open -= 1
    return response


async def _stop_streams(app: web.Application) -> None:
    app[LIVE_KEY].stop.set()


def install_live_streams(app: web.Application, *, interval_s: float = LIVE_INTERVAL_S) -> None:
    """Keep the stream registry on ``app`` and end every stream when the app shuts down."""
    app[LIVE_KEY] = LiveStreams(interval_s=interval_s)
    app.on_shutdown.append(_stop_streams)
