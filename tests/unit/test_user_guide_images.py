"""The user guides show only pictures that exist and that the browser test takes.

The pictures under docs/images/user-guide are written by tests/e2e/test_languages_browser.py
(``POSFLEET_UPDATE_GUIDE_IMAGES=1``); a guide that names a picture the test no longer takes,
or a picture missing from the repository, would show a broken image to the reader.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from tests.e2e.test_languages_browser import GUIDE_SHOTS, LANGUAGES

DOCS = Path(__file__).resolve().parents[2] / "docs"
GUIDES = {"en": DOCS / "user-guide.md", "zh-CN": DOCS / "user-guide.zh-CN.md"}
IMAGE_REFERENCE = re.compile(r"!\[[^\]]*\]\((?P<path>[^)\s]+)\)")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WIDTH = 1100


def _references(guide: Path) -> list[str]:
    return [m["path"] for m in IMAGE_REFERENCE.finditer(guide.read_text(encoding="utf-8"))]


def _png_width(path: Path) -> int:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    width: int = struct.unpack(">I", head[16:20])[0]
    return width


def test_the_guides_cover_both_languages_the_test_takes() -> None:
    assert set(GUIDES) == set(LANGUAGES)


@pytest.mark.parametrize("language", sorted(GUIDES))
def test_every_picture_a_guide_shows_exists_is_1100_px_wide_and_is_in_its_language(
    language: str,
) -> None:
    references = _references(GUIDES[language])
    assert references, f"{GUIDES[language].name} shows no picture"
    for reference in references:
        path = GUIDES[language].parent / reference
        assert path.is_file(), f"{GUIDES[language].name} shows {reference}, which is missing"
        assert reference.endswith(f".{language}.png"), f"{reference} is not the {language} one"
        assert _png_width(path) == WIDTH, f"{reference} is not {WIDTH} px wide"


@pytest.mark.parametrize("language", sorted(GUIDES))
def test_each_guide_shows_every_picture_the_browser_test_takes_once(language: str) -> None:
    references = _references(GUIDES[language])
    taken = [f"images/user-guide/{name}.{language}.png" for name in GUIDE_SHOTS]
    assert sorted(references) == sorted(taken)


def test_no_picture_in_the_folder_is_left_unused() -> None:
    folder = DOCS / "images" / "user-guide"
    shown = {Path(r).name for guide in GUIDES.values() for r in _references(guide)}
    assert {p.name for p in folder.glob("*.png")} <= shown
