"""What creating or steering a rollout takes, from the API, the page's form or the CLI.

One schema for all three: the API's JSON body is the rollout model's own JSON
(:meth:`TargetFilter.to_json`, :meth:`RolloutPolicy.to_json`), the same shape ``GET``
returns, validated by :mod:`posfleet.firmware.rollout_model`. The form and the command
line are typed by people, so they take short texts (``1%,10%,50%,100%``, ``22:00-06:00``,
``mon-fri``, ``72h``, ``95%``) which :func:`policy_json` turns into that JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import pydantic

from posfleet.dashboard.errors import InvalidParameterError
from posfleet.firmware.push_checks import parse_duration, parse_window
from posfleet.firmware.rollout_model import (
    ReasonCode,
    RolloutPolicy,
    RolloutPolicyError,
    TargetFilter,
)
from posfleet.firmware.rollout_transitions import MAX_REASON_TEXT

MAX_REASON = MAX_REASON_TEXT
MAX_NAME = 128
REASON_CODES = tuple(code.value for code in ReasonCode)


class BodyInvalidError(InvalidParameterError):
    """A request body (or form) whose fields fail validation; every field is named."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__(problems[0][0], "; ".join(f"{name}: {why}" for name, why in problems))
        self.problems = problems

    @property
    def invalid_params(self) -> list[tuple[str, str]]:
        """Each refused field with its reason."""
        return self.problems


def _problems(exc: pydantic.ValidationError) -> BodyInvalidError:
    return BodyInvalidError(
        [(".".join(str(p) for p in error["loc"]) or "body", error["msg"]) for error in exc.errors()]
    )


Reason = Annotated[str, pydantic.Field(max_length=MAX_REASON)]
ArtifactRef = Annotated[str, pydantic.Field(min_length=1, max_length=200)] | int
"""An artifact's id, ``name@version`` or SHA-256 prefix."""


def _check_reason(code: ReasonCode, text: str) -> None:
    if code is ReasonCode.OTHER and not text.strip():
        raise BodyInvalidError([("reason", "reason code 'other' needs a reason text")])


def _where(part: str, exc: ValueError) -> str:
    """The body field a model error is about: ``policy.waves[1]``, ``target.tags``."""
    found = exc.field if isinstance(exc, RolloutPolicyError) else ""
    if not found or found == part:
        return part
    return f"{part}.{found}"


class CommandBody(pydantic.BaseModel):
    """The body of approve, start, pause, resume, abort and rollback: why."""

    model_config = pydantic.ConfigDict(extra="forbid")

    reason_code: ReasonCode
    reason: Reason = ""
    rollback_artifact: ArtifactRef | None = None
    """A rollback only: the image to offer (default: the one named at creation, else the
    newest older version of the line signed with ``allow_downgrade``)."""

    @classmethod
    def parse(cls, data: Any) -> CommandBody:
        """Validate ``data``; :class:`BodyInvalidError` naming each field that is off."""
        try:
            body = cls.model_validate(data)
        except pydantic.ValidationError as exc:
            raise _problems(exc) from None
        _check_reason(body.reason_code, body.reason)
        return body


@dataclass(frozen=True)
class RolloutDraft:
    """A validated create request in the rollout model's terms."""

    name: str
    artifact: str
    rollback_artifact: str | None
    target: TargetFilter
    policy: RolloutPolicy
    reason_code: ReasonCode
    reason: str


class CreateBody(pydantic.BaseModel):
    """The body of ``POST /api/v1/rollouts``.

    ``target`` and ``policy`` are the JSON that ``GET /api/v1/rollouts/{id}`` shows;
    missing keys take the defaults (the whole fleet; 1 % / 10 % / 50 % / 100 %).
    """

    model_config = pydantic.ConfigDict(extra="forbid")

    name: Annotated[str, pydantic.Field(min_length=1, max_length=MAX_NAME)]
    artifact: ArtifactRef
    rollback_artifact: ArtifactRef | None = None
    target: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None
    reason_code: ReasonCode
    reason: Reason = ""

    @classmethod
    def parse(cls, data: Any) -> RolloutDraft:
        """Validate ``data`` into a draft; :class:`BodyInvalidError` naming what is off."""
        try:
            body = cls.model_validate(data)
        except pydantic.ValidationError as exc:
            raise _problems(exc) from None
        if not body.name.strip():
            raise BodyInvalidError([("name", "a rollout needs a name")])
        _check_reason(body.reason_code, body.reason)
        try:
            target = TargetFilter.from_json(body.target)
        except ValueError as exc:
            raise BodyInvalidError([(_where("target", exc), str(exc))]) from None
        try:
            policy = RolloutPolicy.from_json(body.policy)
        except ValueError as exc:
            raise BodyInvalidError([(_where("policy", exc), str(exc))]) from None
        return RolloutDraft(
            name=body.name.strip(),
            artifact=str(body.artifact),
            rollback_artifact=None
            if body.rollback_artifact is None
            else str(body.rollback_artifact),
            target=target,
            policy=policy,
            reason_code=body.reason_code,
            reason=body.reason,
        )


# -- the texts people type -----------------------------------------------------------------


def names(text: str | None) -> list[str]:
    """``V400m, P630`` as ``["V400m", "P630"]``; blank parts are dropped."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def share(text: str, where: str) -> float:
    """``95%`` or ``0.95`` as 0.95; ValueError naming ``where``."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ValueError(f"{where} {text!r} must read like 95% or 0.95") from None
    if not 0 <= value <= 1:
        raise ValueError(f"{where} {text!r} must be from 0% to 100%")
    return value


def waves_json(
    text: str,
    *,
    success_threshold: float = 0.95,
    error_threshold: float = 0.10,
    soak_s: float = 1800.0,
    on_error: str = "pause",
) -> list[dict[str, Any]]:
    """``1%,10%,50%,100%`` (a share of the fleet updated so far) or ``5,50%,100%`` (a
    count of terminals first) as the policy's wave list, each with the thresholds given."""
    waves: list[dict[str, Any]] = []
    for part in names(text):
        wave: dict[str, Any] = {
            "success_threshold": success_threshold,
            "error_threshold": error_threshold,
            "soak_s": soak_s,
            "on_error": on_error,
        }
        try:
            if part.endswith("%"):
                wave["percent"] = float(part[:-1])
            else:
                wave["count"] = int(part)
        except ValueError:
            raise ValueError(
                f"wave {part!r} must be a percentage such as 10% or a count such as 25"
            ) from None
        waves.append(wave)
    if not waves:
        raise ValueError("waves must list at least one wave, e.g. 1%,10%,50%,100%")
    return waves


@dataclass(frozen=True)
class PolicyTexts:
    """A policy as the form and the command line take it; None leaves the default."""

    waves: str | None = None
    success_threshold: str | None = None
    error_threshold: str | None = None
    soak: str | None = None
    abort_on_error: bool = False
    offers_per_minute: str | None = None
    jitter: str | None = None
    window: str | None = None
    weekdays: str | None = None
    action_deadline: str | None = None
    max_offline: str | None = None
    require_second_approver: bool = False
    gate: dict[str, str] = field(default_factory=dict)
    """``reader_error_rate_points``, ``decline_rate_points``, ``reboots_per_terminal``,
    ``min_terminals`` as typed."""


def _seconds(text: str, where: str) -> float:
    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _number(text: str, where: str, kind: type[int] | type[float]) -> float | int:
    try:
        return kind(text.strip())
    except ValueError:
        whole = "a whole number" if kind is int else "a number"
        raise ValueError(f"{where} {text!r} must be {whole}") from None


def policy_json(texts: PolicyTexts) -> dict[str, Any]:
    """The policy JSON of what was typed (validated later, by the model); ValueError
    naming the setting whose text cannot be read."""
    defaults = RolloutPolicy()
    result: dict[str, Any] = {}
    threshold_given = any(
        t is not None for t in (texts.success_threshold, texts.error_threshold, texts.soak)
    )
    if texts.waves is not None or threshold_given or texts.abort_on_error:
        first = defaults.waves[0]
        result["waves"] = waves_json(
            texts.waves or ",".join(w.describe().replace(" ", "") for w in defaults.waves),
            success_threshold=share(texts.success_threshold, "success threshold")
            if texts.success_threshold
            else first.success_threshold,
            error_threshold=share(texts.error_threshold, "error threshold")
            if texts.error_threshold
            else first.error_threshold,
            soak_s=_seconds(texts.soak, "soak") if texts.soak else first.soak.total_seconds(),
            on_error="abort" if texts.abort_on_error else "pause",
        )
    if texts.offers_per_minute:
        result["offers_per_minute"] = _number(texts.offers_per_minute, "offers per minute", int)
    if texts.jitter:
        result["jitter_s"] = _seconds(texts.jitter, "jitter")
    if texts.window or texts.weekdays:
        window = parse_window(texts.window or "22:00-06:00", texts.weekdays or None)
        result["window"] = window.model_dump(mode="json")
    if texts.action_deadline:
        result["action_deadline_s"] = _seconds(texts.action_deadline, "action deadline")
    if texts.max_offline:
        result["max_offline_s"] = _seconds(texts.max_offline, "max offline")
    if texts.require_second_approver:
        result["require_second_approver"] = True
    gate: dict[str, Any] = {}
    for name, raw in texts.gate.items():
        if raw is not None and raw.strip():
            kind: type[int] | type[float] = int if name == "min_terminals" else float
            gate[name] = _number(raw, name.replace("_", " "), kind)
    if gate:
        result["gate"] = gate
    return result
