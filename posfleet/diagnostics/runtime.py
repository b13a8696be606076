"""The diagnostics service: the engine fed by ingest, a clock tick, rule reloads, webhooks.

The central service starts it next to the ingest bridge::

    async with Diagnostics(engine, settings) as diagnostics:
        async with Ingest(connection, engine, on_stored=diagnostics.on_stored):
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Self

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.async_tasks import cancel_and_wait, run_every
from posfleet.contract import Message, utcnow
from posfleet.diagnostics.errors import RuleFileError
from posfleet.diagnostics.findings import Finding
from posfleet.diagnostics.incident_recorder import IncidentRecorder, Notifier, RecorderSettings
from posfleet.diagnostics.rule_engine import RuleEngine
from posfleet.diagnostics.rule_files import load_builtin_rules, load_rule_paths, merge_rule_sets
from posfleet.diagnostics.rule_model import Rule
from posfleet.diagnostics.webhooks import WebhookNotifier, WebhookSettings
from posfleet.store.engine import write_transaction
from posfleet.store.incidents import IncidentKind, IncidentState, expire_playbook_runs
from posfleet.store.schema import incidents

log = logging.getLogger(__name__)


YIELD_EVERY = 100
"""Messages the hook judges before it lets other tasks of the event loop run."""


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
    """CPU time the rule engine spent on messages, for cost per message."""


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
        self.rule_engine = RuleEngine()
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
        self._lock = asyncio.Lock()
        self._mtimes: dict[Path, float] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.rule_engine.replace_rules(self._load_rules())
        self.stats.rules = len(self.rule_engine.rules)
        self._mtimes = self._rule_file_mtimes()
        await self._resume_open_incidents()
        if self._own_notifier is not None:
            await self._own_notifier.__aenter__()
        self._tasks = [
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
        await cancel_and_wait(*self._tasks)
        if self._own_notifier is not None:
            await self._own_notifier.__aexit__(exc_type, exc, tb)

    # -- the hook and the clock ----------------------------------------------------------

    async def on_stored(self, messages: Sequence[Message]) -> None:
        """The ingest hook: evaluate newly stored messages and record what they show."""
        now = self._clock()
        # CPU time of this thread: what the engine costs, not how long paho's thread
        # held the interpreter meanwhile.
        started = time.thread_time()
        findings: list[Finding] = []
        for index, message in enumerate(messages, 1):
            findings += self.rule_engine.observe(message, now)
            if index % YIELD_EVERY == 0 and index < len(messages):
                # A batch of a thousand health reports is 100-150 ms of rules: let the
                # dashboard's requests and the other lane's batches in between.
                self.stats.engine_seconds += time.thread_time() - started
                await asyncio.sleep(0)
                started = time.thread_time()
        self.stats.engine_seconds += time.thread_time() - started
        if findings:
            async with self._lock:
                await self.recorder.apply(findings)

    async def tick(self, now: datetime | None = None) -> None:
        """Let time pass: absences, ``for`` durations, windows; expire stuck playbook runs."""
        now = now or self._clock()
        findings = self.rule_engine.tick(now)
        if findings:
            async with self._lock:
                await self.recorder.apply(findings)
        async with write_transaction(self._db) as conn:
            await expire_playbook_runs(conn, now=now)

    # -- rules ---------------------------------------------------------------------------

    def reload(self) -> list[Rule]:
        """Read every rule file again and put the result in force.

        A bad file raises :class:`RuleFileError` (file, line, reason) and changes nothing:
        the rules already running keep running.
        """
        try:
            rules = self._load_rules()
        except RuleFileError as exc:
            self.stats.reload_failures += 1
            self.stats.last_reload_error = str(exc)
            raise
        removed = self.rule_engine.replace_rules(rules)
        self.stats.reloads += 1
        self.stats.rules = len(rules)
        self.stats.last_reload_error = None
        if removed:
            # Incidents of a rule that no longer exists cannot clear by themselves.
            task = asyncio.get_running_loop().create_task(self._apply_locked(removed))
            self._tasks.append(task)
        log.info("diagnostics: %d rules in force", len(rules))
        return rules

    async def _apply_locked(self, findings: list[Finding]) -> None:
        async with self._lock:
            await self.recorder.apply(findings)

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
            self.reload()
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
        for row in rows:
            if row.terminal_id is not None and self._owns(row.terminal_id):
                self.rule_engine.assume_firing(row.terminal_id, row.rule_id, row.opened_at)

    def _recently_updated(self, terminal_id: str) -> bool:
        changed = self.rule_engine.firmware_changed_at(terminal_id)
        if changed is None:
            return False
        return self._clock() - changed <= timedelta(seconds=self.settings.firmware_recent_s)

    async def _every(self, period: float, step: Callable[[], object]) -> None:
        def failed(exc: Exception) -> None:
            # A periodic step failing (database briefly away) must not end the loop.
            log.error("diagnostics: periodic step failed", exc_info=exc)

        await run_every(period, step, on_error=failed, first_delay_s=period)
