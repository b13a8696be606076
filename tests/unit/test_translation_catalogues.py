"""Every marked text (templates, Python ``_()``, the rule pack's and knowledge base's YAML)
has a Simplified Chinese translation in the catalogues the runtime merges: not missing, not
empty, not fuzzy, with the same placeholders. Extracted in-process with Babel from the
source tree, as ``python -m posfleet.i18n.catalogues check`` does."""

from __future__ import annotations

from collections import Counter

import pytest

from posfleet.i18n import SIMPLIFIED_CHINESE, load_translations
from posfleet.i18n.catalogue_loading import MAIN_DOMAIN
from posfleet.i18n.catalogues import Found, Problem, check_catalogues, domain_of, extract_sources


@pytest.fixture(scope="module")
def found() -> list[Found]:
    return extract_sources()


@pytest.fixture(scope="module")
def problems(found: list[Found]) -> list[Problem]:
    return check_catalogues(found, "zh_CN")


def _report(problems: list[Problem]) -> str:
    per_file = Counter(problem.path for problem in problems)
    listed = "\n".join(str(problem) for problem in problems[:40])
    files = ", ".join(f"{path} ({n})" for path, n in sorted(per_file.items()))
    return f"{len(problems)} texts without a Chinese translation in {files}:\n{listed}"


def test_the_extraction_sees_templates_python_and_the_knowledge_yaml(found: list[Found]) -> None:
    paths = {item.path for item in found}
    assert "posfleet/dashboard/templates/base.html" in paths
    assert "posfleet/dashboard/case_views.py" in paths
    assert any(path.endswith(".yaml") for path in paths)
    assert {item.key[1] for item in found} >= {"Log out", "Waiting for the merchant"}


def test_every_text_of_the_dashboard_frame_and_pages_is_translated(
    problems: list[Problem],
) -> None:
    """The ``messages`` domain's own files (the other domains are checked just below)."""
    own = [problem for problem in problems if domain_of(problem.path) == MAIN_DOMAIN]
    assert own == [], _report(own)


def test_every_marked_text_is_translated_in_the_merged_catalogues(
    problems: list[Problem],
) -> None:
    assert problems == [], _report(problems)


def test_the_runtime_lookup_finds_what_the_check_counts_as_translated(
    found: list[Found], problems: list[Problem]
) -> None:
    """The merged lookup of every domain translates each text the check accepts."""
    translations = load_translations(SIMPLIFIED_CHINESE)
    refused = {problem.message for problem in problems}
    untranslated = [
        item.key[1]
        for item in found
        if item.context is None
        and not isinstance(item.message, tuple)
        and item.key[1] not in refused
        and translations.gettext(item.key[1]) == item.key[1]
    ]
    same_as_english = {"SHA-256"}
    """Texts whose Chinese is written the same (a hash's name)."""
    assert [text for text in untranslated if text not in same_as_english] == []
