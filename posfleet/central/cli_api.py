"""``posfleet api export FILE``: write the OpenAPI 3.1 document of ``/api/v1``.

The document comes from the same code the server runs (the route table and the
handlers' pydantic models), built without a database or a broker: the app is created
over an engine that is never connected. ``-`` writes to standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    """Add ``posfleet api export``."""
    actions = sub.add_parser("api", help="the REST API's OpenAPI document").add_subparsers(
        metavar="ACTION"
    )
    p = actions.add_parser("export", help="write the OpenAPI 3.1 document of /api/v1")
    p.add_argument("file", help="where to write it (JSON); - for standard output")
    p.set_defaults(func=_cmd_export)


async def openapi_document_offline() -> dict[str, Any]:
    """The document the dashboard serves at ``/api/v1/openapi.json``, built here."""
    from posfleet.dashboard import create_app
    from posfleet.dashboard.openapi_page import openapi_document
    from posfleet.store import create_engine

    # An in-memory database that nothing ever opens: building the app needs an engine.
    engine = create_engine("sqlite+aiosqlite://")
    try:
        return openapi_document(create_app(engine, session_secret=bytes(32)))
    finally:
        await engine.dispose()


def _cmd_export(args: argparse.Namespace) -> int:
    text = json.dumps(asyncio.run(openapi_document_offline()), indent=2, ensure_ascii=False)
    if args.file == "-":
        sys.stdout.write(text + "\n")
        return 0
    path = Path(args.file)
    path.write_text(text + "\n", encoding="utf-8")
    operations = sum(len(ops) for ops in json.loads(text)["paths"].values())
    print(f"wrote {path}: OpenAPI 3.1, {operations} operations")
    return 0
