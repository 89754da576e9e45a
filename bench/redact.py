"""Passwords out of URLs and messages (logs, MLflow params and tags, error lines, reports)."""

from __future__ import annotations

import re

__all__ = ["redact_url"]

# user:password@ after a scheme; the password runs to the last '@' before the host (it may hold '@' itself)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):(?P<pw>[^\s/]+)@")
_QUERY_PASSWORD = re.compile(r"(?i)(?P<key>\b(?:password|passwd|pwd|token|secret)=)[^&\s;]+")


def redact_url(text: object) -> str:
    """``text`` with every password hidden: ``postgresql://user:pass@host`` -> ``postgresql://user:***@host``.

    Works on free text as well as a single URL (error messages embed URLs), and also hides
    ``password=...``/``token=...`` query values. Imports nothing (no SQLAlchemy).
    """
    s = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:***@", str(text))
    return _QUERY_PASSWORD.sub(lambda m: f"{m.group('key')}***", s)
