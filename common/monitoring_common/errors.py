"""The root of every error monitoring_common raises on purpose."""

from __future__ import annotations


class CommonError(Exception):
    """Root error of the shared plumbing (configuration loading is the only source today)."""

    retriable: bool = False
