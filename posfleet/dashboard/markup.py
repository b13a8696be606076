"""HTML built from small functions that escape every value they are given.

Text is escaped unless it is already :class:`Markup`, and the only way to get Markup is to
build it here, so a terminal id, merchant name or username can never become HTML.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

_TAG_RE = re.compile(r"^[a-z][a-z0-9]*$")
_VOID_TAGS = frozenset({"br", "hr", "img", "input", "link", "meta"})

AttributeValue = str | int | bool | None


class Markup(str):
    """A string that is already safe HTML and is inserted as is."""

    __slots__ = ()


def escape(value: object) -> Markup:
    """``value`` as HTML text: Markup unchanged, anything else escaped (quotes included)."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def concat(parts: Iterable[object]) -> Markup:
    """The parts one after the other, each escaped unless it is Markup; None is left out."""
    return Markup("".join(escape(part) for part in parts if part is not None))


def _attribute_name(name: str) -> str:
    # Python keywords and hyphens cannot be keyword arguments: class_ -> class, data_x -> data-x.
    return name.rstrip("_").replace("_", "-")


def _attributes(attrs: dict[str, AttributeValue]) -> str:
    rendered = []
    for name, value in attrs.items():
        if value is None or value is False:
            continue
        attr = _attribute_name(name)
        if not _TAG_RE.match(attr.replace("-", "")):
            raise ValueError(f"invalid attribute name {attr!r}")
        rendered.append(f" {attr}" if value is True else f' {attr}="{escape(value)}"')
    return "".join(rendered)


def element(tag: str, *children: object, **attrs: AttributeValue) -> Markup:
    """``<tag attrs>children</tag>`` with every child and attribute value escaped.

    An attribute set to ``True`` is written bare (``disabled``); ``None`` or ``False`` is left out.
    """
    if not _TAG_RE.match(tag):
        raise ValueError(f"invalid tag name {tag!r}")
    opening = f"<{tag}{_attributes(attrs)}>"
    if tag in _VOID_TAGS:
        if children:
            raise ValueError(f"<{tag}> cannot have children")
        return Markup(opening)
    return Markup(f"{opening}{concat(children)}</{tag}>")
