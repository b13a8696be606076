"""The rule worker process: the diagnostics engine, beside the service that feeds it.

Started by :class:`~posfleet.diagnostics.rule_process.RuleProcess` as
``python -m posfleet.diagnostics.rule_worker``. Judging health reports is the largest
share of the central service's CPU per message; in its own process it runs on the
second core while the service speaks MQTT and validates (one interpreter lock per
process). It holds every terminal's rule state and nothing else: no database, no
network. It reads requests on stdin (a thread of its own reads them as they come) and
answers each on stdout, ``(op, id, args, urgent)``:

- ``("hello", WorkerConfig)`` → ``("ready",)``, once;
- ``("observe", id, (now, [WireItem, ...]), urgent)``: stored messages;
- ``("tick", id, (now,), False)``: time passing;
- ``("rules", id, ((Rule, ...),), False)``: new rules (findings clear the removed rules'
  incidents);
- ``("assume", id, ([(terminal_id, rule_id, since), ...],), False)``: incidents open at
  start;
- ``("intend", id, (terminal_id, version, now), False)``: the firmware a rollout wants.

Urgent requests (the ingest's fast lane: fault events and state) are judged before the
bulk ones waiting, each kind in the order it came, so that a fault does not wait behind
a backlog of health reports here either; the engine takes an event ahead of older
health as it does when the fast lane overtakes the bulk lane. Each request is answered
``("ok", id, EngineAnswer)`` or ``("error", id, reason)``, in the order judged; a
failing request changes nothing else. Like the store writer it stops when stdin closes, and
ignores SIGINT and SIGTERM: the service decides when it stops.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, BinaryIO

from posfleet.child_process import child_logging, child_stdio
from posfleet.contract import Channel, Inventory
from posfleet.diagnostics.findings import Finding
from posfleet.diagnostics.rule_engine import RuleEngine
from posfleet.diagnostics.rule_wire import EngineAnswer, WireItem, WorkerConfig, to_wire
from posfleet.gc_tuning import tune_gc
from posfleet.pipe_frames import FrameError, read_frame_blocking, write_frame_fd
from posfleet.store.report_batch import Sample

log = logging.getLogger("posfleet.rule_worker")


class RuleHost:
    """One engine and the requests it serves (the worker's logic, without the pipe)."""

    def __init__(self, config: WorkerConfig) -> None:
        self.engine = RuleEngine(config.rules)
        self._known = frozenset(rule.id for rule in config.rules)
        self._ops: dict[str, Callable[..., list[Finding]]] = {
            "observe": self._observe,
            "tick": self.engine.tick,
            "rules": self._replace_rules,
            "assume": self._assume,
            "intend": self.engine.set_intended_firmware,
        }
        self._firmware: dict[str, datetime] = {}

    def answer(self, op: str, args: tuple[Any, ...]) -> EngineAnswer:
        """Run one request; raises whatever the engine raises."""
        self._firmware = {}
        started = time.thread_time()
        findings = self._ops[op](*args)
        wired = [to_wire(finding, self._known) for finding in findings]
        return EngineAnswer(
            wired,
            self._firmware,
            time.thread_time() - started,
            replace(self.engine.stats),
        )

    def _observe(self, now: datetime, items: list[WireItem]) -> list[Finding]:
        engine = self.engine
        findings: list[Finding] = []
        for item in items:
            if isinstance(item, Sample):
                metrics = json.loads(item.metrics_json)
                findings += engine.observe_metrics(
                    item.terminal_id, item.seq, item.interval_s, metrics, now
                )
                continue
            findings += engine.observe(item, now)
            if item.topic.channel is Channel.INVENTORY and isinstance(item.payload, Inventory):
                changed = engine.firmware_changed_at(item.topic.terminal_id)
                if changed is not None:
                    self._firmware[item.topic.terminal_id] = changed
        return findings

    def _replace_rules(self, rules: tuple[Any, ...]) -> list[Finding]:
        removed = self.engine.replace_rules(rules)
        self._known = frozenset(rule.id for rule in rules)
        return removed

    def _assume(self, rows: list[tuple[str, str, datetime]]) -> list[Finding]:
        for terminal_id, rule_id, since in rows:
            self.engine.assume_firing(terminal_id, rule_id, since)
        return []


class Arrivals:
    """Requests read by the reader thread, urgent ones first, each kind in arrival order."""

    def __init__(self) -> None:
        self._urgent: deque[tuple[Any, ...]] = deque()
        self._bulk: deque[tuple[Any, ...]] = deque()
        self._changed = threading.Condition()
        self._closed = False
        self.error: FrameError | None = None

    def read_all(self, stdin: BinaryIO) -> None:
        """Read frames until the stream ends (run on the reader thread)."""
        try:
            while (frame := read_frame_blocking(stdin)) is not None:
                with self._changed:
                    (self._urgent if frame[3] else self._bulk).append(frame)
                    self._changed.notify()
        except FrameError as exc:
            self.error = exc
        finally:
            with self._changed:
                self._closed = True
                self._changed.notify()

    def next(self) -> tuple[Any, ...] | None:
        """The next request to judge; None once the stream has ended and all are done."""
        with self._changed:
            while True:
                if self._urgent:
                    return self._urgent.popleft()
                if self._bulk:
                    return self._bulk.popleft()
                if self._closed:
                    return None
                self._changed.wait()


def serve(stdin: BinaryIO, frames_fd: int) -> None:
    """Answer the hello, then requests until stdin closes."""
    hello = read_frame_blocking(stdin)
    if hello is None:
        return
    if not (isinstance(hello, tuple) and hello[0] == "hello"):
        write_frame_fd(frames_fd, ("failed", "expected a hello frame"))
        return
    config: WorkerConfig = hello[1]
    child_logging(config.log_level, "rule-worker")
    host = RuleHost(config)
    write_frame_fd(frames_fd, ("ready",))
    arrivals = Arrivals()
    reader = threading.Thread(target=arrivals.read_all, args=(stdin,), daemon=True)
    reader.start()
    while (frame := arrivals.next()) is not None:
        op, request_id, args, _urgent = frame
        try:
            reply: tuple[object, ...] = ("ok", request_id, host.answer(op, tuple(args)))
        # The engine is rule authors' expressions and our code: a failure answers this
        # request and leaves the worker serving the next.
        except Exception as exc:
            log.exception("request %s (%s) failed", request_id, op)
            reply = ("error", request_id, "".join(traceback.format_exception_only(exc)).strip())
        write_frame_fd(frames_fd, reply)
    if arrivals.error is not None:
        raise arrivals.error


def main() -> None:
    """Entry point of ``python -m posfleet.diagnostics.rule_worker``."""
    frames_fd = child_stdio()
    tune_gc()
    try:
        serve(sys.stdin.buffer, frames_fd)
    except FrameError as exc:
        log.error("stopping: %s", exc)


if __name__ == "__main__":
    main()
