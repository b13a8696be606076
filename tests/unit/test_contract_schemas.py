"""The committed JSON Schemas are what the code exports, and they accept what the models emit."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from posfleet.central.cli import main
from posfleet.contract import HealthMetrics, HealthReport, PrinterStatus, encode
from posfleet.contract.health import Printer
from posfleet.contract.schema_export import schemas

DOCS_SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def test_committed_schemas_match_the_models() -> None:
    for name, schema in schemas().items():
        committed = json.loads((DOCS_SCHEMAS / name).read_text(encoding="utf-8"))
        assert committed == json.loads(json.dumps(schema)), (
            f"docs/schemas/{name} is stale: run `posfleet contract export docs/schemas`"
        )


def test_cli_exports_one_schema_per_channel(tmp_path: Path, capsys) -> None:
    assert main(["contract", "export", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(schemas())
    assert "health.schema.json" in capsys.readouterr().out


def test_schema_rejects_what_the_model_rejects() -> None:
    schema = json.loads((DOCS_SCHEMAS / "health.schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    good = json.loads(
        encode(
            HealthReport(
                seq=1,
                ts="2026-11-23T12:00:00Z",
                interval_s=60,
                metrics=HealthMetrics(printer=Printer(status=PrinterStatus.JAM)),
            )
        )
    )
    assert list(validator.iter_errors(good)) == []
    bad = dict(good, card_number="4111111111111111")
    assert any("card_number" in e.message for e in validator.iter_errors(bad))
