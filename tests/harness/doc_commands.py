"""The ``posfleet`` and ``posfleet-agent`` commands the README and ``docs/*.md`` show.

What counts as a documented command, so that every one of them is run by a test:

- a line of a fenced code block whose info string is ``sh``, ``shell``, ``bash`` or
  ``console``, that starts with ``posfleet `` or ``posfleet-agent `` (after an optional
  ``$ `` prompt and optional ``NAME=value`` environment assignments);
- ``# ...`` ends the command (a comment); a trailing ``\\`` continues it on the next line;
- ``a | b ARG | c`` lists alternatives, as a usage synopsis does: the first part's last
  word and each later part are the choices (``posfleet incidents list | show ID`` is
  ``posfleet incidents list`` and ``posfleet incidents show ID``); a real shell pipe is
  not used in command blocks;
- ``[--option VALUE]`` is optional; the command is run with it;
- ``> FILE`` sends the command's output to ``FILE``.

A block that only illustrates (a sketch with made-up values, a command for a machine the
tests cannot be) is marked with ``<!-- not-run: the reason -->`` on the line before its
fence. Its commands are listed with that reason instead of being run.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

PROGRAMS = ("posfleet", "posfleet-agent")
COMMAND_BLOCK_LANGUAGES = frozenset({"sh", "shell", "bash", "console"})
_FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")
_NOT_RUN = re.compile(r"^<!--\s*not-run\s*:?(.*?)-->\s*$")
_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


@dataclass(frozen=True)
class DocumentedCommand:
    """One command as the documentation shows it, ready to be run."""

    text: str
    """The command in one line, alternatives expanded: ``posfleet incidents show ID``."""
    source: str
    """Where it is documented: ``README.md:97``."""
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    stdout_to: str | None = None
    not_run_reason: str | None = None
    """Set when the block is marked ``<!-- not-run: reason -->``."""

    @property
    def program(self) -> str:
        """``posfleet`` or ``posfleet-agent``."""
        return self.argv[0]


@dataclass(frozen=True)
class _Line:
    number: int
    text: str
    not_run_reason: str | None


def _command_lines(markdown: str) -> list[_Line]:
    """Lines of command blocks (continuations joined), with their block's not-run reason."""
    found: list[_Line] = []
    fence: str | None = None
    in_commands = False
    reason: str | None = None
    previous = ""
    pending: _Line | None = None
    for number, raw in enumerate(markdown.splitlines(), start=1):
        stripped = raw.strip()
        if fence is None:
            opened = _FENCE.match(stripped)
            if opened:
                fence, language = opened.group(1), opened.group(2).lower()
                in_commands = language in COMMAND_BLOCK_LANGUAGES
                marker = _NOT_RUN.match(previous)
                reason = marker.group(1).strip() if marker else None
            elif stripped:
                previous = stripped
            continue
        if stripped.startswith(fence) and stripped.strip("`~") == "":
            fence, in_commands, previous = None, False, ""
            continue
        if not in_commands:
            continue
        if pending is not None:
            pending = _Line(pending.number, pending.text + " " + stripped, reason)
        else:
            pending = _Line(number, stripped, reason)
        if pending.text.endswith("\\"):
            pending = _Line(pending.number, pending.text[:-1].rstrip(), reason)
            continue
        found.append(pending)
        pending = None
    return found


def _alternatives(words: list[str]) -> list[list[str]]:
    if "|" not in words:
        return [words]
    parts: list[list[str]] = [[]]
    for word in words:
        if word == "|":
            parts.append([])
        else:
            parts[-1].append(word)
    first = parts[0]
    if len(first) < 2 or any(not part for part in parts):
        raise ValueError(f"cannot read the alternatives in {' '.join(words)!r}")
    stem = first[:-1]
    return [first, *([*stem, *part] for part in parts[1:])]


def parse_command(
    line: str, source: str, not_run_reason: str | None = None
) -> list[DocumentedCommand]:
    """The documented commands on one block line (none when it runs something else)."""
    text = line.removeprefix("$ ").strip()
    words = shlex.split(text, comments=True)
    env: dict[str, str] = {}
    while words and _ASSIGNMENT.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    if not words or words[0] not in PROGRAMS:
        return []
    found: list[DocumentedCommand] = []
    for choice in _alternatives(words):
        argv: list[str] = []
        stdout_to: str | None = None
        tokens = iter(choice)
        for word in tokens:
            if word == ">":
                stdout_to = next(tokens, None)
                if stdout_to is None:
                    raise ValueError(f"{source}: '>' without a file in {text!r}")
                continue
            argv.extend(part for part in word.removeprefix("[").removesuffix("]").split() if part)
        shown = " ".join([*(f"{k}={v}" for k, v in env.items()), *argv])
        if stdout_to is not None:
            shown += f" > {stdout_to}"
        found.append(
            DocumentedCommand(
                text=shown,
                source=source,
                argv=tuple(argv),
                env=env,
                stdout_to=stdout_to,
                not_run_reason=not_run_reason,
            )
        )
    return found


def commands_in(markdown: str, name: str) -> list[DocumentedCommand]:
    """Every documented command in one Markdown text called ``name``."""
    commands: list[DocumentedCommand] = []
    for line in _command_lines(markdown):
        commands += parse_command(line.text, f"{name}:{line.number}", line.not_run_reason)
    return commands


def documented_commands(repo: Path) -> list[DocumentedCommand]:
    """The commands of ``README.md`` and ``docs/*.md``, in reading order, each once."""
    files = [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]
    seen: set[str] = set()
    commands: list[DocumentedCommand] = []
    for path in files:
        for command in commands_in(path.read_text(encoding="utf-8"), str(path.relative_to(repo))):
            if command.text not in seen:
                seen.add(command.text)
                commands.append(command)
    return commands
