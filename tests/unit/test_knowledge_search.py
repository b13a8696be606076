"""The knowledge base's built-in entries, their search in both languages and the extractor."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from posfleet.diagnostics.rule_files import load_builtin_rules
from posfleet.knowledge.builtin_entries import builtin_entries
from posfleet.knowledge.entries import builtin_knowledge
from posfleet.knowledge.extraction import extract_knowledge
from posfleet.knowledge.search import KnowledgeIndex, rank_ids

RULES = Path(__file__).resolve().parents[2] / "posfleet" / "diagnostics" / "rules"


@pytest.fixture(scope="module")
def index() -> KnowledgeIndex:
    return KnowledgeIndex(builtin_knowledge())


@pytest.mark.parametrize(
    ("query", "entry"),
    [
        ("打印机不出纸", "printer.not_ready"),
        ("不出纸", "printer.not_ready"),
        ("card declined", "card_reader.errors"),
        ("Card Declined", "card_reader.errors"),
        ("刷卡被拒", "card_reader.errors"),
        ("更新卡住了", "firmware.mismatch"),
        ("terminal is offline", "terminal.offline"),
    ],
)
def test_a_symptom_in_either_language_finds_its_entry_first(
    index: KnowledgeIndex, query: str, entry: str
) -> None:
    assert rank_ids(index.search(query))[0] == entry


def test_a_query_without_words_finds_nothing(index: KnowledgeIndex) -> None:
    assert index.search("  ,. ") == []
    assert index.search("zzzqqq") == []


def test_every_builtin_rule_takes_its_cause_and_remedy_from_its_entry() -> None:
    entries = builtin_entries()
    for rule in load_builtin_rules():
        assert rule.kb is not None and rule.kb in entries, rule.id
        assert (rule.cause, rule.remedy) == (entries[rule.kb].cause, entries[rule.kb].remedy)


def test_every_builtin_entry_is_translated_into_chinese() -> None:
    for entry in builtin_knowledge():
        assert entry.zh.title and entry.zh.cause and entry.zh.steps and entry.zh.symptoms, entry.id


def test_the_extractor_yields_the_rule_titles_with_their_lines() -> None:
    text = (RULES / "printer.yaml").read_bytes()
    found = list(extract_knowledge(io.BytesIO(text), {}, [], {}))
    titles = [m for _, _, m, c in found if c[0].endswith(": title")]
    assert titles == ["Printer cannot print", "Paper roll running out"]
    lines = text.decode().splitlines()
    for line, _, message, _ in found:
        assert message.split()[0] in lines[line - 1]


def test_the_extractor_yields_entry_texts_and_skips_what_is_not_yaml() -> None:
    entry = (
        b"entries:\n  - id: x.y\n    title: T\n    symptoms: [s1, s2]\n"
        b"    cause: >-\n      a\n      b\n    remedy: [r]\n"
    )
    assert [m for _, _, m, _ in extract_knowledge(io.BytesIO(entry), {}, [], {})] == [
        "T", "s1", "s2", "a b", "r",
    ]  # fmt: skip
    assert list(extract_knowledge(io.BytesIO(b"rules: [\n"), {}, [], {})) == []
