"""Export one JSON Schema per payload model, for third-party agent authors."""

from __future__ import annotations

import json
from pathlib import Path

from posfleet.contract.registry import MODEL_FOR_CHANNEL
from posfleet.contract.topics import PREFIX

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schemas() -> dict[str, dict[str, object]]:
    """The JSON Schema of every channel's model, keyed by file name."""
    out: dict[str, dict[str, object]] = {}
    for channel, model in MODEL_FOR_CHANNEL.items():
        schema = model.model_json_schema(mode="validation")
        schema = {
            "$schema": SCHEMA_DIALECT,
            "$id": f"posfleet:{PREFIX}/{channel.value}",
            "x-topic": f"{PREFIX}/{{terminal_id}}/{channel.value}",
            "x-retained": channel.retained,
            **schema,
        }
        out[f"{channel.value.replace('/', '-')}.schema.json"] = schema
    return out


def export(directory: Path) -> list[Path]:
    """Write every schema into ``directory``; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = directory / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written
