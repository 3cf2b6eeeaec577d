"""Fixtures of the pipeline tests: tiny random-weight models in the official formats."""

from tests.tiny_models import tiny_models  # noqa: F401  (a session fixture, shared by these tests)
