"""A real path for each dashboard route, for the tests that walk the whole route table."""

from __future__ import annotations

import itertools
import string

from aiohttp import web

PATH_VALUES = ("1", "T-0001", "a" * 64, "start")
"""Values tried for each path parameter, until the route's pattern takes one."""


def concrete_path(resource: web.AbstractResource) -> str | None:
    """A path ``resource`` matches, its parameters filled from :data:`PATH_VALUES`;
    None when no combination fits its pattern."""
    info = resource.get_info()
    if "path" in info:
        return str(info["path"])
    formatter, pattern = str(info["formatter"]), info["pattern"]
    names = [name for _, name, _, _ in string.Formatter().parse(formatter) if name]
    for values in itertools.product(PATH_VALUES, repeat=len(names)):
        path = formatter.format(**dict(zip(names, values, strict=True)))
        if pattern.fullmatch(path):
            return path
    return None
