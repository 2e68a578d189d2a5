"""One error type for bad user input, so the CLI can print it as a single line instead of a traceback."""

from __future__ import annotations


class SpadeInputError(ValueError):
    """Bad user input (config value, data file, checkpoint): the message names the value and what is allowed."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`SpadeInputError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise SpadeInputError(message)
