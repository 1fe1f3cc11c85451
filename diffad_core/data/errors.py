"""Errors and warnings raised by the dataset readers.

Every problem with a dataset folder surfaces as ONE :class:`DatasetError` whose message names the
offending path or value and says what to do about it. It subclasses ``ValueError`` so generic
``except ValueError`` handlers keep working.
"""

from __future__ import annotations

__all__ = ["DatasetError", "EmptyMaskWarning"]


class DatasetError(ValueError):
    """A dataset folder, file or option is unusable; the message says which and how to fix it."""


class EmptyMaskWarning(UserWarning):
    """Some defect images have an all-zero ground-truth mask (kept, with label 1)."""
