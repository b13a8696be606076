"""Run one harness under atheris (coverage-guided, libFuzzer engine).

``python -m fuzz.run <harness> [libFuzzer options] [corpus folders]``, from the project
root; ``make fuzz`` runs every harness this way (see ``fuzz/README.md``). The posfleet
modules a harness exercises are imported with atheris' instrumentation, so the fuzzer
learns which inputs reach new branches of the decoders.
"""

from __future__ import annotations

import importlib
import sys

import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

HARNESSES = {
    "frames": ("fuzz.frame_properties", "check_frame_stream", ()),
    "tlv_apdu": ("fuzz.tlv_properties", "check_tlv_apdu", ()),
    "zvt": ("fuzz.zvt_properties", "check_zvt", ()),
    "payloads": ("fuzz.payload_properties", "check_payload", ()),
    "rule_files": ("fuzz.rule_file_properties", "check_rule_file", ("yaml",)),
}
NOT_INSTRUMENTED = ["yaml.reader", "yaml.scanner", "yaml.emitter", "yaml.serializer"]
"""PyYAML's per-character loops: instrumented, they cut the rate six-fold for little
guidance (the parser, composer, resolver and constructor above them keep theirs)."""
"""Harness name -> the module and function that check one input, and the libraries whose
branches guide it too (PyYAML's, so the fuzzer learns YAML's structure; pydantic-core and
the CEL parser are compiled and give no feedback)."""


def main() -> None:
    """Instrument the harness's modules, then hand the rest of argv to libFuzzer."""
    if len(sys.argv) < 2 or sys.argv[1] not in HARNESSES:
        sys.exit(f"usage: python -m fuzz.run {{{','.join(HARNESSES)}}} [libFuzzer options]")
    module_name, function, libraries = HARNESSES[sys.argv[1]]
    with atheris.instrument_imports(
        include=["posfleet", "fuzz", *libraries], exclude=NOT_INSTRUMENTED
    ):
        module = importlib.import_module(module_name)
    check = getattr(module, function)
    atheris.Setup([sys.argv[0], *sys.argv[2:]], check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
