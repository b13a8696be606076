"""Rollouts as text for ``posfleet rollout ...``: the preview, the list, one rollout's
waves and gate figures (rich renderables), from the API's JSON shapes.

The same JSON comes from this installation or through ``--server``, so one renderer
serves both. rich is imported by the functions that draw, so building the parser stays
quick.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import RenderableType

STATE_STYLE = {
    "running": "yellow",
    "paused": "red",
    "finished": "green",
    "aborted": "red",
    "rolled_back": "red",
    "passed": "green",
    "failed": "red",
    "soaking": "cyan",
    "pending": "dim",
}


def spec_text(spec: dict[str, Any]) -> str:
    """A wave's size as people say it: ``10 %`` or ``25 terminals``."""
    if spec.get("percent") is not None:
        return f"{spec['percent']:g} %"
    count = spec["count"]
    return f"{count} terminal{'s' if count != 1 else ''}"


def preview_text(preview: dict[str, Any], limit: int) -> RenderableType:
    """The dry run: each wave's size and times, its first ``limit`` terminals, who is
    excluded and why, warnings, and what to type next."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    rollout = preview["rollout"]
    specs = rollout["policy"]["waves"]
    parts: list[RenderableType] = [
        Text(
            f"rollout #{rollout['id']} {rollout['name']!r} ({rollout['state']}): "
            f"{rollout['artifact']} to {rollout['target_text']}: {preview['terminals']} "
            f"terminal(s) in {len(preview['waves'])} wave(s), "
            f"{preview['excluded_total']} excluded"
        )
    ]
    for wave in preview["waves"]:
        index = wave["wave"]
        spec = spec_text(specs[min(index, len(specs) - 1)])
        timing = (
            f"offers from {when(wave['first_offer'])} to {when(wave['last_offer'])}, "
            f"installed by {when(wave['last_install'])}"
            if wave["first_offer"]
            else "no terminal"
        )
        parts.append(
            Text(
                f"wave {index + 1} ({spec}): {wave['terminals']} terminal(s) at "
                f"{wave['sites']} site(s), {timing}"
            )
        )
        if wave.get("late"):
            parts.append(
                Text(
                    f"  {wave['late']} terminal(s) would time out: their window opens "
                    "only after the deadline",
                    style="yellow",
                )
            )
        rows = [r for r in preview["rows"] if r["wave"] == index][:limit]
        if rows:
            table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 1))
            for column in ("  TERMINAL", "SITE", "OFFER FROM", "INSTALL FROM"):
                table.add_column(column, no_wrap=True)
            for row in rows:
                table.add_row(
                    f"  {row['terminal_id']}",
                    row["site_id"] or "-",
                    when(row["earliest_offer"]),
                    when(row["earliest_install"]),
                )
            parts.append(table)
        more = wave["terminals"] - len(rows)
        if rows and more > 0:
            parts.append(Text(f"  ... and {more} more"))
    if preview["excluded_total"]:
        counts = ", ".join(f"{n} {reason}" for reason, n in preview["excluded_counts"].items())
        parts.append(Text(f"excluded: {counts}"))
        for item in preview["excluded"][:limit]:
            parts.append(Text(f"  {item['terminal_id']}: {item['reason']}"))
        more = preview["excluded_total"] - min(limit, len(preview["excluded"]))
        if more > 0:
            parts.append(Text(f"  ... and {more} more"))
    for warning in preview["warnings"]:
        parts.append(Text(f"check: {warning}", style="yellow"))
    allowed = rollout["allowed_commands"]
    if rollout["policy"]["require_second_approver"] and not rollout["approved_by"]:
        parts.append(
            Text(
                f"next: someone other than {rollout['created_by']} approves it: posfleet "
                f"rollout approve {rollout['id']} --reason-code CODE --reason TEXT"
            )
        )
    elif "start" in allowed:
        parts.append(
            Text(f"next: posfleet rollout start {rollout['id']} --reason-code CODE --reason TEXT")
        )
    return Group(*parts)


def list_table(items: list[dict[str, Any]]) -> RenderableType:
    """Rollouts, one line each: firmware, state, wave, how many updated and failed."""
    from rich.table import Table
    from rich.text import Text

    if not items:
        return Text("no rollouts yet; create one with posfleet rollout create")
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ID", "NAME", "FIRMWARE", "STATE", "WAVE", "UPDATED", "FAILED", "CREATED"):
        table.add_column(column, no_wrap=column != "NAME")
    for r in items:
        totals = r["totals"]
        waves = len(r["policy"]["waves"])
        table.add_row(
            f"#{r['id']}",
            r["name"],
            r["artifact"],
            Text(r["state"], style=STATE_STYLE.get(r["state"], "")),
            f"{r['current_wave'] + 1}/{waves}" if r["started_at"] else f"-/{waves}",
            f"{totals['succeeded']}/{totals['terminals']}",
            str(totals["failed"]),
            f"{when(r['created_at'])} {r['created_by']}",
        )
    return table


def detail(rollout: dict[str, Any], *, history: bool = False) -> RenderableType:
    """One rollout: its totals, each wave's progress bar, counts and gate figures, and
    with ``history`` every transition with who and why."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    totals = rollout["totals"]
    excluded = sum(rollout["excluded"].values())
    head = Text.assemble(
        f"rollout #{rollout['id']} {rollout['name']!r}: {rollout['artifact']} ",
        (rollout["state"], STATE_STYLE.get(rollout["state"], "bold")),
        f"  {totals['succeeded']}/{totals['terminals']} updated, {totals['failed']} failed, "
        f"{totals['in_progress']} in progress, {excluded} excluded",
    )
    parts: list[RenderableType] = [head, Text(f"target: {rollout['target_text']}")]
    if rollout["rollback_artifact"]:
        parts.append(Text(f"rollback to: {rollout['rollback_artifact']}"))
    if rollout["state"] == "paused" and rollout["paused_reason"]:
        parts.append(Text(f"paused: {rollout['paused_reason']}", style="red"))
    if rollout["incident_id"]:
        parts.append(Text(f"regression incident: #{rollout['incident_id']}", style="red"))
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("WAVE", "SIZE", "STATE", "PROGRESS", "OK", "FAILED", "OPEN", "GATE"):
        table.add_column(column, no_wrap=column != "GATE", overflow="fold")
    waves = {w["wave"]: w for w in rollout["waves"]}
    for index, spec in enumerate(rollout["policy"]["waves"]):
        wave = waves.get(index)
        if wave is None:
            table.add_row(str(index + 1), spec_text(spec), Text("pending", style="dim"))
            continue
        counts = wave["counts"]
        done = counts["succeeded"] + counts["failed"]
        table.add_row(
            str(index + 1),
            f"{spec_text(spec)} ({counts['terminals']})",
            Text(wave["state"], style=STATE_STYLE.get(wave["state"], "")),
            ProgressBar(total=max(counts["terminals"], 1), completed=done, width=20),
            str(counts["succeeded"]),
            str(counts["failed"]),
            str(counts["in_progress"]),
            gate_text(wave),
        )
    parts.append(table)
    if history:
        parts.append(Text("history:"))
        for t in rollout["transitions"]:
            why = f" {t['reason_code']}" + (f": {t['reason_text']}" if t["reason_text"] else "")
            parts.append(
                Text(
                    f"  {when(t['ts'])} {t['command']} {t['from_state'] or '-'} -> "
                    f"{t['to_state']} by {t['actor']}{why}"
                )
            )
    return Group(*parts)


def gate_text(wave: dict[str, Any]) -> str:
    """A wave's health-gate verdict with its before/after figures, or its soak or stop."""
    gate = wave["gate"]
    if not gate or "before" not in gate:
        if wave["state"] == "soaking" and wave["soak_until"]:
            return f"soaking until {when(wave['soak_until'])}"
        return wave["reason"] if wave["state"] == "failed" else ""
    before, after = gate["before"], gate["after"]
    figures = (
        f"reader errors {before['reader_error_rate']:.1%} -> {after['reader_error_rate']:.1%}, "
        f"declines {before['decline_rate']:.1%} -> {after['decline_rate']:.1%}, "
        f"reboots/terminal {before['reboots_per_terminal']:.2f} -> "
        f"{after['reboots_per_terminal']:.2f} ({after['terminals']} terminals)"
    )
    verdict = "passed" if gate["passed"] else "FAILED: " + "; ".join(gate["reasons"])
    return f"{verdict}; {figures}"


def when(text: str | None) -> str:
    """An ISO timestamp of the API as ``2026-12-02 21:00Z``; ``-`` for none."""
    if not text:
        return "-"
    return (
        datetime.fromisoformat(text.replace("Z", "+00:00"))
        .astimezone(UTC)
        .strftime("%Y-%m-%d %H:%MZ")
    )
