"""Fuzzing of posfleet's decoders: the properties they must hold, and atheris harnesses.

The ``*_properties`` modules say what each decoder promises (typed rejections only, and
re-encoding what decodes); ``run.py`` feeds them coverage-guided input through atheris, and
``tests/unit/test_fuzz_regressions.py`` feeds them hypothesis input and every crash found.
"""
