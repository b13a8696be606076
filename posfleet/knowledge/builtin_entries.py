"""The built-in knowledge entries: per rule of the pack, what the merchant says, why, what to do.

They live in ``posfleet/knowledge/builtin/*.yaml`` (one file per rule file), a mapping with
one key, ``entries``, holding a list of entries. An entry's id is the id of the rule it
explains, or any dotted name a rule points at with ``kb:``. The rule loader reads a
rule's probable cause and remedy from here, so those texts are written once.

Pure and cached: the files ship with the package and never change while it runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

import yaml

from posfleet.knowledge.errors import KnowledgeFileError

BUILTIN_PACKAGE = "posfleet.knowledge.builtin"
ENTRY_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
_KEYS = {"id", "title", "component", "symptoms", "cause", "remedy", "models"}
_REQUIRED = ("id", "title", "symptoms", "cause", "remedy")


@dataclass(frozen=True)
class BuiltinEntry:
    """One built-in entry, in English (its Chinese comes from the ``knowledge`` catalogue)."""

    id: str
    title: str
    symptoms: tuple[str, ...]
    """What the merchant says on the phone, several phrasings; searched, not shown as steps."""
    cause: str
    remedy: tuple[str, ...]
    component: str = ""
    models: tuple[str, ...] = ()
    """Terminal models the entry applies to; empty for every model."""
    source: str = ""
    """``file:line`` the entry was read from, for messages."""

    @property
    def texts(self) -> tuple[str, ...]:
        """Every translatable English text of the entry, as the catalogue holds them."""
        return (self.title, *self.symptoms, self.cause, *self.remedy)


def _texts(path: str, node: yaml.Node, what: str) -> tuple[str, ...]:
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    out = []
    for item in items:
        if not isinstance(item, yaml.ScalarNode) or not str(item.value).strip():
            raise KnowledgeFileError(path, item.start_mark.line + 1, f"{what}: non-empty texts")
        out.append(str(item.value))
    return tuple(out)


def _entry(path: str, node: yaml.Node) -> BuiltinEntry:
    line = node.start_mark.line + 1
    if not isinstance(node, yaml.MappingNode):
        raise KnowledgeFileError(path, line, "each entry must be a mapping")
    fields: dict[str, yaml.Node] = {}
    for key, value in node.value:
        name = str(key.value)
        if name not in _KEYS:
            raise KnowledgeFileError(path, key.start_mark.line + 1, f"unknown key {name!r}")
        fields[name] = value
    missing = [key for key in _REQUIRED if key not in fields]
    if missing:
        raise KnowledgeFileError(path, line, f"entry is missing {missing[0]!r}")
    values: dict[str, Any] = {
        key: _texts(path, value, key) for key, value in fields.items() if key != "id"
    }
    (entry_id,) = _texts(path, fields["id"], "id")
    if not ENTRY_ID.match(entry_id):
        raise KnowledgeFileError(path, line, f"entry id {entry_id!r} must be dotted lower-case")
    return BuiltinEntry(
        id=entry_id,
        title=values["title"][0],
        symptoms=values["symptoms"],
        cause=values["cause"][0].strip(),
        remedy=values["remedy"],
        component=values.get("component", ("",))[0],
        models=values.get("models", ()),
        source=f"{path}:{line}",
    )


def parse_entries(text: str, path: str = "<knowledge>") -> list[BuiltinEntry]:
    """Every entry of one knowledge file; raises :class:`KnowledgeFileError` on a bad one."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise KnowledgeFileError(path, None, f"not valid YAML: {exc}") from exc
    if not isinstance(root, yaml.MappingNode) or [k.value for k, _ in root.value] != ["entries"]:
        raise KnowledgeFileError(path, 1, "expected one top-level key, 'entries:'")
    items = root.value[0][1]
    if not isinstance(items, yaml.SequenceNode):
        raise KnowledgeFileError(path, items.start_mark.line + 1, "'entries' must be a list")
    return [_entry(path, item) for item in items.value]


@cache
def builtin_entries() -> MappingProxyType[str, BuiltinEntry]:
    """Every built-in entry by id, in file order; an id defined twice is an error."""
    found: dict[str, BuiltinEntry] = {}
    files = sorted(resources.files(BUILTIN_PACKAGE).iterdir(), key=lambda f: f.name)
    for file in files:
        if not file.name.endswith(".yaml"):
            continue
        for entry in parse_entries(file.read_text(encoding="utf-8"), f"builtin:{file.name}"):
            if entry.id in found:
                raise KnowledgeFileError(
                    entry.source, None, f"entry {entry.id!r} is also in {found[entry.id].source}"
                )
            found[entry.id] = entry
    return MappingProxyType(found)
