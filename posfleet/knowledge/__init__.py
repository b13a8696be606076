"""The fault knowledge base: built-in entries for the rule pack, and staff-written articles.

Public surface: :mod:`posfleet.knowledge.extraction` (Babel extractor for the YAML texts).
"""
