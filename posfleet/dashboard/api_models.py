"""Pydantic models of the ``/api/v1`` parameters and answers that had none of their own.

The handlers parse their query strings with :mod:`posfleet.dashboard.query_params`;
the query models here state the same names and limits for the OpenAPI document, and
the answer models the JSON the handlers already returned, unchanged. That they agree
is checked by ``tests/component/test_openapi_schemathesis.py``, which validates every
answer against its schema (the rollout models mirror ``RolloutRecord.to_json``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import pydantic

from posfleet.contract import TERMINAL_ID_PATTERN, MaintenanceWindow, Severity
from posfleet.dashboard.paging_cursor import Cursor
from posfleet.dashboard.query_params import MAX_ROW_ID, MAX_TEXT_CHARS, Flag
from posfleet.dashboard.rollout_service import COMMANDS
from posfleet.diagnostics.analytics import Bucket
from posfleet.diagnostics.rule_model import Escalation
from posfleet.firmware.action_records import ActionEvent, ActionRecord
from posfleet.firmware.artifacts import ArtifactRecord
from posfleet.firmware.rollout_model import RolloutState, WaveState
from posfleet.store.incidents import (
    IncidentKind,
    IncidentNote,
    IncidentRecord,
    PlaybookRun,
)
from posfleet.store.terminal_filters import TerminalSort

TerminalId = Annotated[str, pydantic.Field(pattern=TERMINAL_ID_PATTERN)]
"""1 to 64 letters, digits, ``_`` or ``-``."""
RowId = Annotated[int, pydantic.Field(ge=1, le=MAX_ROW_ID)]
Text = Annotated[str, pydantic.Field(max_length=MAX_TEXT_CHARS)]
Limit500 = Annotated[int, pydantic.Field(ge=1, le=500)]


class _Query(pydantic.BaseModel):
    """Query parameters: each one optional, unknown ones refused with a 400."""

    model_config = pydantic.ConfigDict(extra="forbid")


# ---- terminals ----------------------------------------------------------------------


class TerminalIdPath(pydantic.BaseModel):
    """``{terminal_id}`` in a path."""

    terminal_id: TerminalId


class TerminalListQuery(_Query):
    """``GET /api/v1/terminals``: filters named after the JSON fields they match."""

    online: bool | None = None
    faulty: bool | None = pydantic.Field(
        None, description="true: only terminals with an unresolved incident; false: without."
    )
    model: Annotated[str, pydantic.Field(min_length=1, max_length=64)] | None = None
    firmware_version: Annotated[str, pydantic.Field(min_length=1, max_length=64)] | None = None
    merchant_id: Annotated[str, pydantic.Field(min_length=1, max_length=64)] | None = None
    site_id: Annotated[str, pydantic.Field(min_length=1, max_length=64)] | None = None
    q: Annotated[str, pydantic.Field(max_length=64)] | None = pydantic.Field(
        None, description="Free text: a substring of id, serial, model, merchant or site."
    )
    sort: TerminalSort | None = None
    limit: Limit500 | None = pydantic.Field(None, description="Page size.")
    after: Cursor | None = None


class NoQuery(_Query):
    """An operation that takes no query parameters (any one sent is refused)."""


# ---- incidents ----------------------------------------------------------------------


class IncidentIdPath(pydantic.BaseModel):
    """``{incident_id}`` in a path."""

    incident_id: RowId


class IncidentListQuery(_Query):
    """``GET /api/v1/incidents``: newest first; ``before`` is the previous page's ``next``."""

    state: (
        Annotated[
            str,
            pydantic.Field(
                pattern=r"^(open|acknowledged|resolved|all)(,(open|acknowledged|resolved|all))*$",
                description="Comma-separated states, or `all`.",
            ),
        ]
        | None
    ) = None
    kind: IncidentKind | None = None
    terminal_id: TerminalId | None = None
    rule_id: Text | None = None
    severity: Severity | None = None
    merchant_id: Text | None = None
    site_id: Text | None = None
    parent_id: RowId | None = pydantic.Field(None, description="A fleet incident's children.")
    top_level: Flag | None = pydantic.Field(None, description="Leave fleet children out.")
    limit: Limit500 | None = pydantic.Field(None, description="Page size.")
    before: Cursor | None = None


class AnalyticsQuery(_Query):
    """``GET /api/v1/incidents/analytics``: the last 30 days unless told otherwise."""

    since: datetime | None = None
    until: datetime | None = None
    bucket: Bucket | None = None
    top: Annotated[int, pydantic.Field(ge=1, le=100)] | None = None


class IncidentPage(pydantic.BaseModel):
    """One page of incidents; ``next`` is the ``before`` of the next page (null: the last)."""

    items: list[IncidentRecord]
    next: str | None


class IncidentDetail(pydantic.BaseModel):
    """An incident with its timeline, playbook runs and (a fleet incident's) children."""

    incident: IncidentRecord
    notes: list[IncidentNote]
    playbook_runs: list[PlaybookRun]
    children: list[IncidentRecord]


class PlaybookRuns(pydantic.BaseModel):
    """The runs a playbook start made, each finished."""

    runs: list[PlaybookRun]


class ResolveBody(pydantic.BaseModel):
    """How the incident was resolved."""

    resolution: Annotated[str, pydantic.Field(max_length=4000)] = ""


class AssignBody(pydantic.BaseModel):
    """Who takes the incident; null for nobody."""

    assignee: Annotated[str, pydantic.Field(min_length=1, max_length=128)] | None


class NoteBody(pydantic.BaseModel):
    """A staff note on the incident's timeline."""

    text: Annotated[str, pydantic.Field(min_length=1, max_length=4000, pattern=r"\S")]


class EscalateBody(pydantic.BaseModel):
    """Where the incident goes next, and why."""

    to: Escalation
    reason: Annotated[str, pydantic.Field(max_length=4000)] = ""


class PlaybookBody(pydantic.BaseModel):
    """Which playbook to run; on a fleet incident optionally one terminal (``*``: all)."""

    playbook: Annotated[str, pydantic.Field(min_length=1, max_length=64, pattern=r"\S")]
    terminal: Annotated[str, pydantic.Field(min_length=1, max_length=64)] | None = None


# ---- firmware artifacts -------------------------------------------------------------


class ArtifactRefPath(pydantic.BaseModel):
    """``{ref}``: an artifact id, ``name@version`` or a SHA-256 prefix."""

    ref: Annotated[str, pydantic.Field(min_length=1, max_length=200)]


class ArtifactListQuery(_Query):
    """``GET /api/v1/firmware/artifacts``: newest upload first."""

    name: Annotated[str, pydantic.Field(max_length=64)] | None = None
    limit: Limit500 | None = pydantic.Field(None, description="Page size.")
    before: Cursor | None = None


class UploadQuery(_Query):
    """Why the image is uploaded (in the audit log)."""

    reason: Annotated[str, pydantic.Field(max_length=500)] | None = None


class UploadParts(pydantic.BaseModel):
    """The multipart upload, in this order: the signed manifest JSON, then the image."""

    manifest: Annotated[str, pydantic.Field(description="`posfleet firmware sign`'s JSON.")]
    image: bytes


class ArtifactShown(pydantic.BaseModel):
    """One artifact."""

    artifact: ArtifactRecord


class ArtifactUploaded(ArtifactShown):
    """An upload's artifact; ``created`` is false when the image was already stored."""

    created: bool


class ArtifactPage(pydantic.BaseModel):
    """One page of artifacts; ``next`` is the ``before`` of the next page (null: the last)."""

    items: list[ArtifactRecord]
    next: str | None


# ---- firmware Actions ---------------------------------------------------------------


class ActionIdPath(pydantic.BaseModel):
    """``{action_id}`` in a path."""

    action_id: RowId


class ActionListQuery(_Query):
    """``GET /api/v1/firmware/actions``: newest first."""

    state: Annotated[str, pydantic.Field(description="Comma-separated states.")] | None = None
    terminal_id: Annotated[str, pydantic.Field(max_length=64)] | None = None
    artifact_id: RowId | None = None
    limit: Limit500 | None = pydantic.Field(None, description="Page size.")
    before: Cursor | None = None


class ActionSummaryQuery(_Query):
    """Counts for one terminal or one artifact."""

    terminal_id: Annotated[str, pydantic.Field(max_length=64)] | None = None
    artifact_id: RowId | None = None


class ActionCounts(pydantic.BaseModel):
    """Actions per state, how many are still open, and all of them."""

    by_state: dict[str, int]
    open: int
    total: int


class ActionPage(pydantic.BaseModel):
    """One page of Actions, with the counts of the terminal and artifact filters."""

    items: list[ActionRecord]
    next: str | None
    """The ``before`` of the next page; null on the last."""
    counts: ActionCounts


class ActionDetail(pydantic.BaseModel):
    """An Action and its history, oldest first."""

    action: ActionRecord
    events: list[ActionEvent]


class CancelBody(pydantic.BaseModel):
    """Why the Action is cancelled."""

    reason: Annotated[str, pydantic.Field(max_length=4000)] = ""


class TerminalNotice(pydantic.BaseModel):
    """Whether the terminal was told of the cancel (``firmware_cancel``), in words."""

    sent: bool
    text: str


class CancelledAction(ActionRecord):
    """The cancelled Action and whether its terminal was told."""

    terminal_notice: TerminalNotice


class PushedArtifact(pydantic.BaseModel):
    """The image a push offers."""

    id: int
    name: str
    version: str
    sha256: str


class PushRefused(pydantic.BaseModel):
    """A terminal the push left out: a stable reason word and a sentence."""

    terminal_id: str
    reason: str
    message: str


class PushAnswer(pydantic.BaseModel):
    """The Actions a push created, the terminals refused, the offers sent at once."""

    artifact: PushedArtifact
    created: list[ActionRecord]
    refused: list[PushRefused]
    offered: int


# ---- rollouts -----------------------------------------------------------------------


class RolloutIdPath(pydantic.BaseModel):
    """``{rollout_id}`` in a path."""

    rollout_id: RowId


class RolloutCommandPath(RolloutIdPath):
    """``{rollout_id}/{command}``: the staff command."""

    command: Annotated[str, pydantic.Field(pattern=f"^({'|'.join(COMMANDS)})$")]


class RolloutListQuery(_Query):
    """``GET /api/v1/rollouts``: newest first."""

    state: Annotated[str, pydantic.Field(description="Comma-separated states.")] | None = None
    limit: Annotated[int, pydantic.Field(ge=1, le=200)] | None = None
    before: Cursor | None = None


class PreviewQuery(_Query):
    """How many planned terminals of each wave to list (the counts are always whole)."""

    per_wave: Annotated[int, pydantic.Field(ge=0, le=100_000)] | None = None


class WaveSpecShown(pydantic.BaseModel):
    """A wave's size (``percent`` of the fleet so far, or a ``count``) and thresholds."""

    percent: float | None
    count: int | None
    success_threshold: float
    error_threshold: float
    soak_s: float
    on_error: str


class WaveCountsShown(pydantic.BaseModel):
    """How a wave's terminals stand."""

    terminals: int
    succeeded: int
    failed: int
    in_progress: int
    not_offered: int
    joined_late: int


class WaveShown(pydantic.BaseModel):
    """One wave: spec, state, counts, times and the health gate's verdict."""

    wave: int
    state: WaveState
    spec: WaveSpecShown
    planned: int
    counts: WaveCountsShown
    started_at: datetime | None
    soak_until: datetime | None
    finished_at: datetime | None
    gate: dict[str, Any] | None
    reason: str
    accepted_by: str | None


class PolicyShown(pydantic.BaseModel):
    """The rollout's policy (durations in seconds), as a create body takes it back."""

    waves: list[WaveSpecShown]
    offers_per_minute: float
    jitter_s: float
    window: MaintenanceWindow
    action_deadline_s: float
    max_offline_s: float
    require_second_approver: bool
    gate: dict[str, Any]


class TargetShown(pydantic.BaseModel):
    """Which terminals the rollout targets (empty lists: no restriction)."""

    models: list[str]
    merchant_ids: list[str]
    site_ids: list[str]
    tags: list[str]
    firmware_versions: list[str]


class TransitionShown(pydantic.BaseModel):
    """Who moved the rollout from where to where, when and why."""

    id: int
    ts: datetime
    command: str
    from_state: RolloutState | None
    to_state: RolloutState
    actor: str
    reason_code: str
    reason_text: str


class RolloutShown(pydantic.BaseModel):
    """A rollout: image, target, policy, waves with counts, and (not in lists) history."""

    id: int
    name: str
    artifact_id: int
    artifact: str
    version: str
    rollback_artifact_id: int | None
    rollback_artifact: str | None
    state: RolloutState
    target: TargetShown
    target_text: str
    policy: PolicyShown
    current_wave: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    reason_code: str
    reason_text: str
    lease_owner: str | None
    lease_until: datetime | None
    paused_reason: str | None
    incident_id: int | None
    allowed_commands: list[str]
    waves: list[WaveShown]
    totals: WaveCountsShown
    excluded: dict[str, int]
    transitions: list[TransitionShown] | None = None
    """The history; left out of lists."""


class RolloutPage(pydantic.BaseModel):
    """One page of rollouts (without their histories); ``next`` is the next page's ``before``."""

    items: list[RolloutShown]
    next: str | None


class WaveEstimateShown(pydantic.BaseModel):
    """A wave of the dry run: its size, its shops and roughly when it runs."""

    wave: int
    terminals: int
    sites: int
    first_offer: datetime | None
    last_offer: datetime | None
    last_install: datetime | None
    late: int


class PreviewRowShown(pydantic.BaseModel):
    """One planned terminal: its wave and earliest offer and install."""

    terminal_id: str
    wave: int
    site_id: str | None
    earliest_offer: datetime
    earliest_install: datetime | None


class ExcludedShown(pydantic.BaseModel):
    """A terminal of the target set that gets no Action, and why."""

    terminal_id: str
    reason: str


class RolloutPreviewShown(pydantic.BaseModel):
    """The dry run: the rollout, counts per wave and the first terminals of each."""

    rollout: RolloutShown
    terminals: int
    waves: list[WaveEstimateShown]
    rows: list[PreviewRowShown]
    excluded: list[ExcludedShown]
    excluded_counts: dict[str, int]
    excluded_total: int
    warnings: list[str]
