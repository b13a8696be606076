"""The diagnostics service's side of its rule worker process.

:class:`RuleProcess` starts ``python -m posfleet.diagnostics.rule_worker`` and sends it
requests (see that module for the protocol), several at a time if callers overlap; the
worker answers them in the order it judges them (urgent ones first). If the worker
dies, what was pending fails with :class:`RuleWorkerError` and the next request starts
a new one, which first gets the rules and the open incidents again from the
``on_restart`` callback: the rules' state of each terminal (metrics, windows, ``for``
timers) starts afresh, as after a restart of the whole service.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from posfleet import child_process
from posfleet.diagnostics.errors import DiagnosticsError
from posfleet.diagnostics.rule_model import Rule
from posfleet.diagnostics.rule_wire import EngineAnswer, WireItem, WorkerConfig
from posfleet.pipe_frames import FrameError, encode_frame, read_frame

log = logging.getLogger(__name__)

WORKER_START_TIMEOUT_S = 60.0
"""How long the worker may take to import and compile the rules."""

WORKER_STOP_TIMEOUT_S = 10.0
"""How long the worker may take to finish at shutdown before it is killed."""


WRITE_BUFFER_BYTES = 64 * 2**20
"""Requests buffered for the worker before a sender waits: far above the window of
answers (a hundred health reports are some 75 KB)."""


class RuleWorkerError(DiagnosticsError):
    """The rule worker failed a request, or died with it."""


class RuleProcess:
    """A running rule worker; an async context manager."""

    def __init__(
        self,
        rules: tuple[Rule, ...],
        *,
        on_restart: Callable[[], Awaitable[None]] | None = None,
        log_level: int | None = None,
    ) -> None:
        self.rules = rules
        """The rules the worker holds (sent again to a restarted one)."""
        self.restarts = 0
        self._on_restart = on_restart
        self._log_level = log_level if log_level is not None else logging.getLogger().level
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[EngineAnswer]] = {}
        self._ids = itertools.count(1)
        self._start_lock = asyncio.Lock()
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The worker's process id while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def __aenter__(self) -> RuleProcess:
        await self._ensure_started()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- requests ------------------------------------------------------------------------

    async def observe(
        self, now: datetime, items: list[WireItem], *, urgent: bool = False
    ) -> asyncio.Future[EngineAnswer]:
        """Send stored messages that arrived at ``now`` to be judged; returns once they are
        on their way, with the future of the answer. ``urgent`` ones (fault events,
        state) are judged before the bulk requests still waiting."""
        return await self._send("observe", now, items, urgent=urgent)

    async def tick(self, now: datetime) -> asyncio.Future[EngineAnswer]:
        """Let time pass to ``now`` (the future of the answer, as :meth:`observe`)."""
        return await self._send("tick", now)

    async def replace_rules(self, rules: tuple[Rule, ...]) -> asyncio.Future[EngineAnswer]:
        """Put ``rules`` in force; the answer clears the removed rules' incidents."""
        self.rules = rules
        return await self._send("rules", rules)

    async def assume_firing(self, rows: list[tuple[str, str, datetime]]) -> None:
        """Start from these open incidents: (terminal, rule id, opened at)."""
        if rows:
            await (await self._send("assume", rows))

    async def set_intended_firmware(
        self, terminal_id: str, version: str | None, now: datetime
    ) -> asyncio.Future[EngineAnswer]:
        """The firmware a rollout wants ``terminal_id`` on (None: no intent)."""
        return await self._send("intend", terminal_id, version, now)

    async def _send(
        self, op: str, *args: Any, urgent: bool = False
    ) -> asyncio.Future[EngineAnswer]:
        proc = await self._ensure_started()
        assert proc.stdin is not None
        request_id = next(self._ids)
        answer: asyncio.Future[EngineAnswer] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = answer
        try:
            proc.stdin.write(encode_frame((op, request_id, args, urgent)))
            await proc.stdin.drain()
        except (ConnectionError, RuntimeError) as exc:
            self._pending.pop(request_id, None)
            raise RuleWorkerError(f"the rule worker is gone: {exc}") from exc
        return answer

    # -- the process ---------------------------------------------------------------------

    async def _ensure_started(self) -> asyncio.subprocess.Process:
        if self._proc is not None and self.pid is not None:
            return self._proc
        async with self._start_lock:
            if self._closed:
                raise RuleWorkerError("the rule worker is closed")
            if self._proc is not None and self.pid is not None:
                return self._proc
            restarting = self._proc is not None
            if restarting:
                self.restarts += 1
                log.warning("starting the rule worker again (restart %d)", self.restarts)
            proc = await self._spawn()
        if restarting and self._on_restart is not None:
            await self._on_restart()
        return proc

    async def _spawn(self) -> asyncio.subprocess.Process:
        hello = ("hello", WorkerConfig(log_level=self._log_level, rules=self.rules))
        try:
            proc = await child_process.spawn(
                "posfleet.diagnostics.rule_worker", hello, ready_within_s=WORKER_START_TIMEOUT_S
            )
        except child_process.ChildStartError as exc:
            raise RuleWorkerError(f"the rule worker did not start: {exc}") from exc
        assert proc.stdin is not None
        # The window of answers is the backpressure, not the pipe: with asyncio's
        # default limit the hook waited for the worker to read each request, which it
        # does only after judging the one before.
        transport = proc.stdin.transport
        assert isinstance(transport, asyncio.WriteTransport)
        transport.set_write_buffer_limits(high=WRITE_BUFFER_BYTES)
        self._proc = proc
        self._reader = asyncio.create_task(self._read_answers(proc), name="rule-worker-answers")
        log.info("rule worker process %d ready", proc.pid)
        return proc

    async def _read_answers(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        reason = "closed its output"
        try:
            while (frame := await read_frame(proc.stdout)) is not None:
                kind, request_id, detail = frame
                answer = self._pending.pop(request_id, None)
                if answer is None or answer.done():
                    continue
                if kind == "ok":
                    answer.set_result(detail)
                else:
                    answer.set_exception(RuleWorkerError(f"the rule worker failed: {detail}"))
        except FrameError as exc:
            reason = str(exc)
            await child_process.kill(proc)
        code = await proc.wait()
        if not self._closed:
            log.error("the rule worker process %d stopped (%s, exit %s)", proc.pid, reason, code)
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(RuleWorkerError(f"the rule worker exited with code {code}"))
        self._pending.clear()

    async def close(self) -> None:
        """Let the worker answer what it has, then stop it (killed after a timeout)."""
        self._closed = True
        proc = self._proc
        if proc is None:
            return
        await child_process.stop(proc, within_s=WORKER_STOP_TIMEOUT_S, name="rule worker")
        if self._reader is not None:
            await self._reader


AnswerStep = Callable[[EngineAnswer], Awaitable[None]]


class AnswersAsJudged:
    """Takes the worker's answers in the order it judged them, a bounded number ahead.

    :meth:`enqueue` hands over the future of an answer and returns at once; the sender
    first waits in :meth:`reserve` while ``window`` answers are still to be taken
    (backpressure). A task of :meth:`run` gives each answer, as it arrives, to its step
    (record the incidents): the worker answers in the order it judges, so a finding is
    recorded after every finding the engine made before it. A failed request is logged
    and counted; its ``done`` future carries the error to anyone waiting for it.
    """

    def __init__(
        self, step: AnswerStep, *, window: int, on_failure: Callable[[], None] | None = None
    ) -> None:
        self.failures = 0
        self._on_failure = on_failure
        self._step = step
        self._room = asyncio.Semaphore(window)
        self._arrived: asyncio.Queue[
            tuple[asyncio.Future[EngineAnswer], AnswerStep | None, asyncio.Future[None], bool]
        ] = asyncio.Queue()
        self._outstanding = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def reserve(self) -> None:
        """Wait for room for one more answer (call before sending its request)."""
        await self._room.acquire()

    def enqueue(
        self,
        answer: asyncio.Future[EngineAnswer],
        step: AnswerStep | None = None,
        *,
        reserved: bool = True,
    ) -> asyncio.Future[None]:
        """Take ``answer`` when it comes, with ``step`` instead of the usual one if given;
        the future returned is done once it has been taken. ``reserved``: room was taken
        for it with :meth:`reserve` (given back once it is taken)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieve)
        self._outstanding += 1
        self._idle.clear()
        # Done callbacks run in the order the futures complete: the worker's order.
        answer.add_done_callback(lambda _: self._arrived.put_nowait((answer, step, done, reserved)))
        return done

    def release(self) -> None:
        """Give back a reservation whose request could not be sent."""
        self._room.release()

    async def settled(self) -> None:
        """Return once every answer enqueued so far has been taken."""
        await self._idle.wait()

    async def run(self) -> None:
        """Take answers until cancelled."""
        while True:
            answer, step, done, reserved = await self._arrived.get()
            try:
                await (step or self._step)(answer.result())
            except asyncio.CancelledError:
                done.cancel()
                raise
            # A lost answer must not stop the next ones: the worker and the store carry on.
            except Exception as exc:
                self.failures += 1
                if self._on_failure is not None:
                    self._on_failure()
                log.error("diagnostics: a request to the rule engine failed: %s", exc)
                done.set_exception(exc)
            else:
                done.set_result(None)
            finally:
                if reserved:
                    self._room.release()
                self._outstanding -= 1
                if not self._outstanding:
                    self._idle.set()


def _retrieve(done: asyncio.Future[None]) -> None:
    # The ingest hook does not wait for its answers: their errors are logged in run().
    if not done.cancelled():
        done.exception()
