"""Babel extractor for the translatable texts of the rule pack and the built-in knowledge base.

``babel.cfg`` maps the YAML files to :func:`extract_knowledge`:

    [posfleet.knowledge.extraction:extract_knowledge: posfleet/diagnostics/rules/**.yaml]
    [posfleet.knowledge.extraction:extract_knowledge: posfleet/knowledge/builtin/**.yaml]

A rule file (top-level ``rules:``) gives each rule's ``title`` (and ``cause`` / ``remedy``
steps where a rule still carries them itself); a knowledge file (top-level ``entries:``)
gives each entry's ``title``, ``symptoms``, ``cause`` and ``remedy`` steps. The texts are
yielded exactly as the loaders read them (folded scalars already joined, ``cause``
stripped), so the runtime lookup of the stored English finds the catalogue's msgid.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import IO, Any

import yaml

ExtractedMessage = tuple[int, str | None, str, list[str]]
"""Babel's extractor tuple: line number, function name, message, comments."""

_TEXT_KEYS = {
    "rules": ("title", "cause", "remedy"),
    "entries": ("title", "symptoms", "cause", "remedy"),
}
"""Per kind of file, which keys of each item hold translatable texts."""


def extract_knowledge(
    fileobj: IO[bytes],
    keywords: Mapping[str, Any] | Collection[str],
    comment_tags: Collection[str],
    options: Mapping[str, Any],
) -> Iterator[ExtractedMessage]:
    """Yield ``(lineno, funcname, message, comments)`` for every translatable YAML text.

    ``keywords``, ``comment_tags`` and ``options`` are part of Babel's extractor interface
    and not used: YAML has no calls to look for. A file that is not valid YAML, or has
    neither a ``rules:`` nor an ``entries:`` list, yields nothing (the rule loader reports
    such files; extraction should not fail a catalogue build on them).
    """
    del keywords, comment_tags
    encoding = str(options.get("encoding", "utf-8"))
    try:
        root = yaml.compose(fileobj.read().decode(encoding), Loader=yaml.SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError):
        return
    if not isinstance(root, yaml.MappingNode):
        return
    for key, value in root.value:
        kind = key.value if isinstance(key, yaml.ScalarNode) else None
        if kind in _TEXT_KEYS and isinstance(value, yaml.SequenceNode):
            yield from _items(value, _TEXT_KEYS[kind])


def _items(items: yaml.SequenceNode, text_keys: tuple[str, ...]) -> Iterator[ExtractedMessage]:
    for item in items.value:
        if not isinstance(item, yaml.MappingNode):
            continue
        fields = {k.value: v for k, v in item.value if isinstance(k, yaml.ScalarNode)}
        ident = fields.get("id")
        name = ident.value if isinstance(ident, yaml.ScalarNode) else "?"
        for key in text_keys:
            if key in fields:
                for line, text in _texts(fields[key], strip=key == "cause"):
                    yield line, None, text, [f"{name}: {key}"]


def _texts(node: yaml.Node, *, strip: bool) -> Iterator[tuple[int, str]]:
    nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
    for each in nodes:
        if isinstance(each, yaml.ScalarNode) and isinstance(each.value, str) and each.value:
            text = each.value.strip() if strip else each.value
            yield each.start_mark.line + 1, text
