"""Reading a settings file: TOML, with one clear line for whatever is wrong with it.

Shared by the central service's settings loader and the agent's, and free of pydantic
so that the agent can use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_toml(config_file: Path, error: type[Exception]) -> dict[str, Any]:
    """The table in ``config_file``; raises ``error`` saying why it cannot be read."""
    import tomllib  # only when there is a file (the environment alone needs no parser)

    try:
        return tomllib.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"config file {config_file} does not exist") from None
    except OSError as exc:
        raise error(f"cannot read {config_file}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{config_file} is not valid TOML: {exc}") from None
