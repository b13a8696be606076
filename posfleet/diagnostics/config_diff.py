"""What a restore would change on a terminal: two parameter sets, side by side.

Pure: the restore page, the API's preview and the CLI show the same lines. The
terminal's current parameters come from its own newest backup; without one, every
parameter of the backup is shown as ``set`` (the terminal's values are not known).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum

import pydantic

READ_ONLY_PARAMETERS = frozenset({"terminal.serial"})
"""Parameters a terminal keeps whatever a restore says (its identity): shown, not counted."""


class ChangeKind(StrEnum):
    """How one parameter differs between the backup and the terminal."""

    CHANGED = "changed"
    """Both have it, with different values: the restore sets the backup's."""
    SET = "set"
    """The terminal does not have it (or its value is unknown): the restore sets it."""
    SAME = "same"
    KEPT = "kept"
    """Only the terminal has it: the restore leaves it alone."""
    READ_ONLY = "read_only"
    """The terminal refuses to take it (its serial number): it stays as it is."""
    WITHHELD = "withheld"
    """Secret: not in the backup; the replacement gets it by key injection."""


class ParameterChange(pydantic.BaseModel):
    """One parameter's line in the preview."""

    model_config = pydantic.ConfigDict(frozen=True)

    name: str
    kind: ChangeKind
    current: str | None
    """The terminal's value now; None when it has none or it is not known."""
    restored: str | None
    """The backup's value; None when the backup has none (kept, withheld)."""


class ConfigDiff(pydantic.BaseModel):
    """Every parameter of a restore preview, in name order, with counts per kind."""

    model_config = pydantic.ConfigDict(frozen=True)

    changes: list[ParameterChange]
    current_known: bool
    """False when the terminal has no backup of its own to compare with."""

    def count(self, kind: ChangeKind) -> int:
        """How many parameters are of ``kind``."""
        return sum(1 for change in self.changes if change.kind is kind)

    @property
    def to_apply(self) -> list[ParameterChange]:
        """The lines a restore changes on the terminal (changed and set)."""
        return [c for c in self.changes if c.kind in (ChangeKind.CHANGED, ChangeKind.SET)]


def _kind(name: str, current: str | None, restored: str, known: bool) -> ChangeKind:
    if name in READ_ONLY_PARAMETERS:
        return ChangeKind.READ_ONLY
    if not known or current is None:
        return ChangeKind.SET
    return ChangeKind.SAME if current == restored else ChangeKind.CHANGED


def diff_params(
    backup: Mapping[str, str],
    current: Mapping[str, str] | None,
    *,
    withheld: Collection[str] = (),
) -> ConfigDiff:
    """The preview of restoring ``backup`` onto a terminal whose parameters are ``current``.

    ``current`` is None when they are not known. ``withheld`` names the backup's
    secret parameters, which no restore carries.
    """
    known = current is not None
    now = dict(current or {})
    secret = set(withheld)
    changes: list[ParameterChange] = []
    for name in sorted(set(backup) | set(now) | secret):
        if name in secret and name not in backup:
            changes.append(
                ParameterChange(name=name, kind=ChangeKind.WITHHELD, current=None, restored=None)
            )
        elif name in backup:
            value = backup[name]
            changes.append(
                ParameterChange(
                    name=name,
                    kind=_kind(name, now.get(name), value, known),
                    current=now.get(name),
                    restored=value,
                )
            )
        else:
            changes.append(
                ParameterChange(name=name, kind=ChangeKind.KEPT, current=now[name], restored=None)
            )
    return ConfigDiff(changes=changes, current_known=known)


def restorable(backup: Mapping[str, str]) -> dict[str, str]:
    """The parameters a restore sends: the backup's, less the ones a terminal never takes."""
    return {k: v for k, v in backup.items() if k not in READ_ONLY_PARAMETERS}
