"""What the rule-file loader promises for any text a site puts in its rule folder.

:func:`posfleet.diagnostics.rule_files.parse_rules` (what ``load_rule_file`` and a rule
reload call) either returns every rule of the file or raises :class:`RuleFileError`,
which names the file and says why: a reload then keeps the running rules. Any other
exception would stop the reload with a traceback. What loads is well formed: unique ids,
each rule's source line inside the file.
"""

from __future__ import annotations

from fuzz.typed_rejection import accepted
from posfleet.diagnostics.errors import RuleFileError
from posfleet.diagnostics.rule_files import parse_rules

PATH = "site-rules.yaml"


def check_rule_text(text: str) -> None:
    """Assert the loader's promises for one file's text."""
    rules = accepted(RuleFileError, lambda: parse_rules(text, PATH))
    if rules is None:
        return
    ids = [rule.id for rule in rules]
    assert len(set(ids)) == len(ids), f"duplicate rule ids loaded: {ids}"
    lines = text.count("\n") + 1
    for rule in rules:
        where, _, line = rule.source.rpartition(":")
        assert where == PATH, f"rule {rule.id} says it comes from {rule.source}"
        assert 1 <= int(line) <= lines, f"rule {rule.id} on line {line} of {lines}"


def check_rule_file(data: bytes) -> None:
    """The input as a file's bytes, read as ``load_rule_file`` reads them (UTF-8)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # load_rule_file rejects those before parsing, with a RuleFileError
    check_rule_text(text)
