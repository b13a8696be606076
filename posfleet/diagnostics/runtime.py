"""The diagnostics service: the engine fed by ingest, a clock tick, rule reloads, webhooks.

The rule engine runs in a worker process of its own
(:class:`~posfleet.diagnostics.rule_process.RuleProcess`), on the second core; this
side sends it the stored messages and the clock, and records the incidents its findings
open and clear.

The central service starts it next to the ingest bridge::

    async with Diagnostics(engine, settings) as diagnostics:
        async with Ingest(connection, engine, on_stored=diagnostics.on_stored):
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Self

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.async_tasks import cancel_and_wait, run_every
from posfleet.contract import Channel, HealthReport, Message, utcnow
from posfleet.diagnostics.errors import RuleFileError
from posfleet.diagnostics.incident_recorder import IncidentRecorder, Notifier, RecorderSettings
from posfleet.diagnostics.rule_evaluation import EngineStats
from posfleet.diagnostics.rule_files import load_builtin_rules, load_rule_paths, merge_rule_sets
from posfleet.diagnostics.rule_model import Rule
from posfleet.diagnostics.rule_process import AnswersAsJudged, AnswerStep, RuleProcess
from posfleet.diagnostics.rule_wire import EngineAnswer, WireItem, from_wire
from posfleet.diagnostics.webhooks import WebhookNotifier, WebhookSettings
from posfleet.store.engine import write_transaction
from posfleet.store.incidents import IncidentKind, IncidentState, expire_playbook_runs
from posfleet.store.report_batch import Sample, SampledMessages
from posfleet.store.schema import incidents

log = logging.getLogger(__name__)

SETTLE_TIMEOUT_S = 30.0
"""How long stopping waits for the rule engine's outstanding answers."""

ANSWERS_AHEAD = 16
"""Requests to the rule engine sent but not yet recorded before the hook waits: some
1,600 health reports, a batch and a half, so that ingest and the engine work side by
side; a fault's answer waits behind at most that much judging (some 80 ms)."""


class DiagnosticsSettings(BaseModel):
    """What the diagnostics service needs; nest it in the central settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    builtin_rules: bool = Field(default=True, description="load the shipped rule pack")
    rule_paths: tuple[Path, ...] = Field(
        default=(), description="extra rule files or folders of *.yaml; same id overrides"
    )
    tick_interval_s: float = Field(default=5.0, gt=0)
    reload_interval_s: float = Field(default=10.0, gt=0, description="rule file change poll")
    flap_window_s: float = Field(default=900.0, ge=0)
    correlation_window_s: float = Field(default=3600.0, gt=0)
    firmware_recent_s: float = Field(
        default=7 * 86400.0, gt=0, description="how long after an update firmware counts as new"
    )
    webhook_urls: tuple[str, ...] = ()
    webhook_rate_per_minute: float = Field(default=120.0, gt=0)


class DiagnosticsStats(BaseModel):
    """Counters for /metrics and the CLI."""

    rules: int = 0
    reloads: int = 0
    reload_failures: int = 0
    last_reload_error: str | None = None
    engine_seconds: float = 0.0
    """CPU time the rule engine spent on messages (in its worker), for cost per message."""
    worker_restarts: int = 0
    """Times the rule worker process was started again after it died."""
    failed_requests: int = 0
    """Requests to the rule engine that failed (the messages are stored; not judged)."""


class Diagnostics:
    """Rule engine + incident recorder + background ticks; an async context manager."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: DiagnosticsSettings | None = None,
        *,
        notifier: Notifier | None = None,
        clock: Callable[[], datetime] = utcnow,
        owns: Callable[[str], bool] = lambda _terminal_id: True,
    ) -> None:
        """``owns`` says which terminals this instance judges (partition mode: its share;
        the open incidents of the others are not taken up at start)."""
        self.settings = settings or DiagnosticsSettings()
        self._owns = owns
        self.stats = DiagnosticsStats()
        self.engine_stats = EngineStats()
        """The rule engine's counters, as of its latest answer."""
        self._rules: dict[str, Rule] = {}
        self._firmware_changed: dict[str, datetime] = {}
        self._engine: RuleProcess | None = None
        self._answers = AnswersAsJudged(
            self._apply, window=ANSWERS_AHEAD, on_failure=self._count_failure
        )
        self._db = engine
        self._clock = clock
        self._own_notifier: WebhookNotifier | None = None
        if notifier is None and self.settings.webhook_urls:
            self._own_notifier = WebhookNotifier(
                WebhookSettings(
                    urls=self.settings.webhook_urls,
                    rate_per_minute=self.settings.webhook_rate_per_minute,
                )
            )
            notifier = self._own_notifier
        self.recorder = IncidentRecorder(
            engine,
            settings=RecorderSettings(
                flap_window=timedelta(seconds=self.settings.flap_window_s),
                correlation_window=timedelta(seconds=self.settings.correlation_window_s),
            ),
            notifier=notifier,
            recently_updated=self._recently_updated,
        )
        self._reload_lock = asyncio.Lock()
        self._mtimes: dict[Path, float] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        rules = self._load_rules()
        self._rules = {rule.id: rule for rule in rules}
        self.stats.rules = len(rules)
        self._mtimes = self._rule_file_mtimes()
        self._engine = RuleProcess(tuple(rules), on_restart=self._restarted)
        await self._engine.__aenter__()
        try:
            await self._resume_open_incidents()
        except BaseException:
            await self._engine.close()
            raise
        if self._own_notifier is not None:
            await self._own_notifier.__aenter__()
        self._tasks = [
            asyncio.create_task(self._answers.run(), name="diagnostics-answers"),
            asyncio.create_task(
                self._every(self.settings.tick_interval_s, self.tick), name="diagnostics-tick"
            ),
            asyncio.create_task(
                self._every(self.settings.reload_interval_s, self._reload_if_changed),
                name="diagnostics-rule-reload",
            ),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            # What ingest handed over before it stopped is judged and recorded first.
            async with asyncio.timeout(SETTLE_TIMEOUT_S):
                await self._answers.settled()
        except TimeoutError:
            log.error("diagnostics: stopping with requests to the rule engine unanswered")
        await cancel_and_wait(*self._tasks)
        if self._engine is not None:
            await self._engine.close()
        if self._own_notifier is not None:
            await self._own_notifier.__aexit__(exc_type, exc, tb)

    def _count_failure(self) -> None:
        self.stats.failed_requests += 1

    async def _restarted(self) -> None:
        """A new rule worker: count it and tell it what is open."""
        self.stats.worker_restarts += 1
        await self._resume_open_incidents()

    @property
    def rules(self) -> list[Rule]:
        """The rules in force."""
        return list(self._rules.values())

    @property
    def engine_pid(self) -> int | None:
        """The rule worker's process id while it runs."""
        return None if self._engine is None else self._engine.pid

    # -- the hook and the clock ----------------------------------------------------------

    async def on_stored(self, messages: Sequence[Message]) -> None:
        """The ingest hook: send newly stored messages to be judged.

        Health returns once it is on its way, so that ingest goes on while the engine
        works; what it shows is recorded soon after, in order (:meth:`settled`). It waits
        only while :data:`ANSWERS_AHEAD` answers are still to be recorded. Faults and
        state (the fast lane's) return once their incidents are recorded: the fast lane
        keeps the event loop for itself until then (``lane_priority``).
        """
        if messages:
            send, urgent = _observe(self._clock(), messages)
            recorded = await self._ask(send, urgent)
            if urgent:
                await recorded

    async def judge(self, messages: Sequence[Message]) -> None:
        """:meth:`on_stored`, returning once the incidents they open or clear are recorded."""
        if messages:
            await (await self._ask(*_observe(self._clock(), messages)))

    async def settled(self) -> None:
        """Return once everything handed over so far is judged and recorded."""
        await self._answers.settled()

    async def tick(self, now: datetime | None = None) -> None:
        """Let time pass: absences, ``for`` durations, windows; expire stuck playbook runs."""
        when = now or self._clock()
        await (await self._ask(lambda worker: worker.tick(when)))
        async with write_transaction(self._db) as conn:
            await expire_playbook_runs(conn, now=when)

    async def set_intended_firmware(
        self, terminal_id: str, version: str | None, now: datetime | None = None
    ) -> None:
        """The firmware a rollout wants ``terminal_id`` on (None: no intent); a mismatch
        opens its incident, and the right version clears it."""
        when = now or self._clock()
        await (
            await self._ask(lambda worker: worker.set_intended_firmware(terminal_id, version, when))
        )

    def _worker(self) -> RuleProcess:
        if self._engine is None:
            raise RuntimeError("the diagnostics service is not running (use async with)")
        return self._engine

    async def _ask(
        self, send: _Send, urgent: bool = False, step: AnswerStep | None = None
    ) -> asyncio.Future[None]:
        """Send one request; the future is done once its answer is recorded. An urgent
        one (a fault, state) does not wait for room behind the health reports."""
        if not urgent:
            await self._answers.reserve()
        try:
            answer = await send(self._worker())
        except BaseException:
            if not urgent:
                self._answers.release()
            raise
        return self._answers.enqueue(answer, step, reserved=not urgent)

    async def _apply(self, answer: EngineAnswer, rules: dict[str, Rule] | None = None) -> None:
        """Take the engine's answer: its counters, firmware changes, then the incidents
        (its findings' rules looked up in ``rules``, by default those in force)."""
        self.stats.engine_seconds += answer.cpu_seconds
        self.engine_stats = answer.stats
        self._firmware_changed.update(answer.firmware_changes)
        known = self._rules if rules is None else rules
        findings = [f for w in answer.findings if (f := from_wire(w, known)) is not None]
        if findings:
            # Only the answers' task records, one answer at a time: no lock needed.
            await self.recorder.apply(findings)

    # -- rules ---------------------------------------------------------------------------

    async def reload(self) -> list[Rule]:
        """Read every rule file again and put the result in force.

        A bad file raises :class:`RuleFileError` (file, line, reason) and changes nothing:
        the rules already running keep running. The incidents of rules that are gone
        are cleared (they cannot clear by themselves).
        """
        async with self._reload_lock:
            try:
                rules = self._load_rules()
            except RuleFileError as exc:
                self.stats.reload_failures += 1
                self.stats.last_reload_error = str(exc)
                raise
            previous = self._rules

            async def in_force(answer: EngineAnswer) -> None:
                # In its turn: answers before it name the old rules, those after it the
                # new ones; its own (the removed rules' incidents clearing) the old.
                self._rules = {rule.id: rule for rule in rules}
                await self._apply(answer, previous)

            reload = self._ask(lambda worker: worker.replace_rules(tuple(rules)), step=in_force)
            await (await reload)
            self.stats.reloads += 1
            self.stats.rules = len(rules)
            self.stats.last_reload_error = None
            log.info("diagnostics: %d rules in force", len(rules))
            return rules

    def _load_rules(self) -> list[Rule]:
        sets: list[list[Rule]] = []
        if self.settings.builtin_rules:
            sets.append(load_builtin_rules())
        if self.settings.rule_paths:
            sets.append(load_rule_paths(self.settings.rule_paths))
        return merge_rule_sets(sets)

    def _rule_file_mtimes(self) -> dict[Path, float]:
        found: dict[Path, float] = {}
        for path in self.settings.rule_paths:
            files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
            for file in files:
                with contextlib.suppress(OSError):
                    found[file] = file.stat().st_mtime
        return found

    async def _reload_if_changed(self) -> None:
        mtimes = self._rule_file_mtimes()
        if mtimes == self._mtimes:
            return
        self._mtimes = mtimes
        try:
            await self.reload()
        except RuleFileError as exc:
            log.error("rule files not reloaded, the previous rules stay in force: %s", exc)

    # -- internals -----------------------------------------------------------------------

    async def _resume_open_incidents(self) -> None:
        i = incidents.c
        async with self._db.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(i.terminal_id, i.rule_id, i.opened_at).where(
                        i.kind == IncidentKind.TERMINAL.value,
                        i.state != IncidentState.RESOLVED.value,
                    )
                )
            ).all()
        await self._worker().assume_firing(
            [
                (row.terminal_id, row.rule_id, row.opened_at)
                for row in rows
                if row.terminal_id is not None and self._owns(row.terminal_id)
            ]
        )

    def _recently_updated(self, terminal_id: str) -> bool:
        changed = self._firmware_changed.get(terminal_id)
        if changed is None:
            return False
        return self._clock() - changed <= timedelta(seconds=self.settings.firmware_recent_s)

    async def _every(self, period: float, step: Callable[[], object]) -> None:
        def failed(exc: Exception) -> None:
            # A periodic step failing (database briefly away) must not end the loop.
            log.error("diagnostics: periodic step failed", exc_info=exc)

        await run_every(period, step, on_error=failed, first_delay_s=period)


def _wire_item(message: Message) -> WireItem:
    """A health report as its sample (a tenth of the model's pickling), the rest whole."""
    payload = message.payload
    if message.topic.channel is Channel.HEALTH and isinstance(payload, HealthReport):
        return Sample.of(message.topic.terminal_id, payload)
    return message


_Send = Callable[[RuleProcess], Awaitable["asyncio.Future[EngineAnswer]"]]


URGENT_CHANNELS = frozenset({Channel.EVENT, Channel.STATE})
"""What the rule worker judges ahead of health: faults reported and online/offline."""


def _observe(now: datetime, messages: Sequence[Message]) -> tuple[_Send, bool]:
    if isinstance(messages, SampledMessages):
        # The ingest's own: the samples the store was given, not made again.
        items = [
            sample or message for message, sample in zip(messages, messages.samples, strict=True)
        ]
    else:
        items = [_wire_item(message) for message in messages]
    urgent = all(message.topic.channel in URGENT_CHANNELS for message in messages)
    return (lambda worker: worker.observe(now, items, urgent=urgent)), urgent
