"""Diagnostics: declarative fault rules (CEL), the rule engine, incidents and their
lifecycle, fleet correlation, playbooks, webhook notifications and fault analytics.

Public surface: :class:`Diagnostics` (the service the ingest hook feeds) and its
settings, the pure :class:`RuleEngine` and rule loading, staff actions, playbooks.
"""

from posfleet.diagnostics.errors import (
    CommandTimeoutError,
    ConditionError,
    DiagnosticsError,
    IncidentNotFoundError,
    IncidentTransitionError,
    PlaybookError,
    PlaybookTargetError,
    RuleFileError,
)
from posfleet.diagnostics.findings import Finding, FindingKind
from posfleet.diagnostics.incident_actions import IncidentActions
from posfleet.diagnostics.playbook_runner import PlaybookRunner
from posfleet.diagnostics.playbooks import BUILTIN_PLAYBOOKS, Playbook
from posfleet.diagnostics.rule_engine import RuleEngine
from posfleet.diagnostics.rule_files import (
    load_builtin_rules,
    load_rule_file,
    load_rule_paths,
    parse_rules,
)
from posfleet.diagnostics.rule_model import CorrelateBy, Escalation, Rule
from posfleet.diagnostics.runtime import Diagnostics, DiagnosticsSettings, DiagnosticsStats

__all__ = [
    "BUILTIN_PLAYBOOKS",
    "CommandTimeoutError",
    "ConditionError",
    "CorrelateBy",
    "Diagnostics",
    "DiagnosticsError",
    "DiagnosticsSettings",
    "DiagnosticsStats",
    "Escalation",
    "Finding",
    "FindingKind",
    "IncidentActions",
    "IncidentNotFoundError",
    "IncidentTransitionError",
    "Playbook",
    "PlaybookError",
    "PlaybookRunner",
    "PlaybookTargetError",
    "Rule",
    "RuleEngine",
    "RuleFileError",
    "load_builtin_rules",
    "load_rule_file",
    "load_rule_paths",
    "parse_rules",
]
