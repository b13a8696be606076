"""The API reference page's content, read from the OpenAPI document.

The page shows what the document says and nothing else, so the two cannot disagree:
each operation with its role, parameters, body and answers, then every schema with its
fields. Types are written out for people (``list of TerminalRecord``, ``integer 1..500``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from posfleet.dashboard.templating import _

METHOD_ORDER = {"get": 0, "post": 1, "put": 2, "patch": 3, "delete": 4}


@dataclass(frozen=True, slots=True)
class FieldView:
    """A parameter or a schema property."""

    name: str
    where: str
    type_text: str
    required: bool
    description: str


@dataclass(frozen=True, slots=True)
class AnswerView:
    """One documented status: what it means and the schema of its body."""

    status: str
    description: str
    media_type: str
    type_text: str


@dataclass(frozen=True, slots=True)
class OperationView:
    """One operation as the reference lists it."""

    anchor: str
    method: str
    path: str
    summary: str
    description: str
    role: str | None
    parameters: list[FieldView]
    body_media_type: str
    body_type: str
    answers: list[AnswerView]


@dataclass(frozen=True, slots=True)
class TagView:
    """The operations of one tag (terminals, incidents, ...)."""

    name: str
    operations: list[OperationView]


@dataclass(frozen=True, slots=True)
class SchemaView:
    """One component schema and its fields."""

    name: str
    description: str
    type_text: str
    fields: list[FieldView]


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _bounds(schema: dict[str, Any]) -> str:
    low = schema.get("minimum", schema.get("minLength"))
    high = schema.get("maximum", schema.get("maxLength"))
    if low is None and high is None:
        return ""
    unit = " chars" if "minLength" in schema or "maxLength" in schema else ""
    return f" {'' if low is None else low}..{'' if high is None else high}{unit}"


def type_text(schema: dict[str, Any]) -> str:
    """A schema as a short phrase: ``TerminalRecord``, ``list of string``, ``a or null``."""
    if "$ref" in schema:
        return _ref_name(schema["$ref"])
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    if "const" in schema:
        return repr(schema["const"])
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return " or ".join(type_text(part) for part in schema[key])
    kind = schema.get("type")
    if kind == "array":
        return "list of " + type_text(schema.get("items", {}))
    if kind == "object" and "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        return "map of " + (type_text(extra) if isinstance(extra, dict) else "any")
    if kind is None:
        return "any"
    text = str(kind)
    if "format" in schema:
        text += f" ({schema['format']})"
    if "pattern" in schema:
        text += f" matching {schema['pattern']}"
    return text + _bounds(schema)


def _fields(schema: dict[str, Any]) -> list[FieldView]:
    required = set(schema.get("required", ()))
    return [
        FieldView(
            name,
            "body",
            type_text(prop),
            name in required,
            str(prop.get("description", "")),
        )
        for name, prop in schema.get("properties", {}).items()
    ]


def _parameters(operation: dict[str, Any]) -> list[FieldView]:
    return [
        FieldView(
            p["name"],
            p["in"],
            type_text(p.get("schema", {})),
            bool(p.get("required")),
            str(p.get("description", "")),
        )
        for p in operation.get("parameters", [])
    ]


def _first_content(content: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The first media type of a ``content`` map and its entry; ``("", {})`` for none."""
    for media_type, entry in content.items():
        return str(media_type), dict(entry)
    return "", {}


def _answers(operation: dict[str, Any]) -> list[AnswerView]:
    answers = []
    for status, answer in operation.get("responses", {}).items():
        content = answer.get("content", {})
        media_type, body = _first_content(content)
        shown = type_text(body.get("schema", {})) if media_type else ""
        answers.append(AnswerView(status, answer.get("description", ""), media_type, shown))
    return answers


def _operation(path: str, method: str, operation: dict[str, Any]) -> OperationView:
    body: dict[str, Any] = operation.get("requestBody", {}).get("content", {})
    media_type, body_schema = _first_content(body)
    return OperationView(
        anchor=str(operation.get("operationId", f"{method}-{path}")).replace(".", "-"),
        method=method.upper(),
        path=path,
        summary=str(operation.get("summary", "")),
        description=str(operation.get("description", "")),
        role=operation.get("x-posfleet-role"),
        parameters=_parameters(operation),
        body_media_type=media_type,
        body_type=type_text(body_schema.get("schema", {})) if media_type else "",
        answers=_answers(operation),
    )


def reference_tags(document: dict[str, Any]) -> list[TagView]:
    """The document's operations grouped by tag, each group in path order."""
    groups: dict[str, list[OperationView]] = {}
    for path, operations in document.get("paths", {}).items():
        for method, operation in sorted(
            operations.items(), key=lambda item: METHOD_ORDER.get(item[0], 9)
        ):
            tag = (operation.get("tags") or [_("other")])[0]
            groups.setdefault(tag, []).append(_operation(path, method, operation))
    return [TagView(name, ops) for name, ops in sorted(groups.items())]


def reference_schemas(document: dict[str, Any]) -> list[SchemaView]:
    """Every component schema, by name."""
    schemas = document.get("components", {}).get("schemas", {})
    return [
        SchemaView(
            name,
            str(schema.get("description", "")),
            type_text({k: v for k, v in schema.items() if k != "properties"})
            if "properties" not in schema
            else "object",
            _fields(schema),
        )
        for name, schema in sorted(schemas.items())
    ]
