"""The two kinds of failure a user meets, told apart so the CLI can treat each as it deserves.

:class:`SpadeInputError`: bad input (a config value, a data file, a checkpoint); the message names the value
and what is allowed, and is all the user needs: one line, exit code 2, no traceback.
:class:`RunFailure`: the run itself failed on valid input (training diverged, a solver blew up, a compiled
runtime changed the output, a measured target was out of reach); one line on screen, exit code 1, and the
traceback in the run's log file, where a user looking into it needs it.
"""

from __future__ import annotations

import importlib.util
import sys


class SpadeInputError(ValueError):
    """Bad user input (config value, data file, checkpoint): the message names the value and what is allowed."""


class RunFailure(RuntimeError):
    """The run failed on valid input; the message says what happened and what to try."""


def message_of(err: BaseException) -> str:
    """The one-line message, also when a data-loader worker raised it (PyTorch re-raises the error in the main
    process with the worker's whole traceback as its message; the original message is its last line)."""
    text = str(err).strip()
    if "Original Traceback" not in text:
        return text
    last = text.splitlines()[-1]
    for kind in (SpadeInputError, RunFailure):
        last = last.split(f"{kind.__name__}: ", 1)[-1]
    return last


def require_int(key: str, value: object, minimum: int) -> None:
    """``value`` is an integer (not a bool, not a string) >= ``minimum``; else one line naming ``key``."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    require(ok, f"{key}={value!r} is invalid; allowed: integers >= {minimum}")


def require(condition: bool, message: str) -> None:
    """Raise :class:`SpadeInputError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise SpadeInputError(message)


def require_installed(what: str, modules: tuple[str, ...], extra: str) -> None:
    """Each of ``modules`` is importable; else one line saying that ``what`` needs them and the extra that
    installs them."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    require(not missing, f"{what} needs {', '.join(missing)} (not installed): pip install 'spade-pl[{extra}]'")


def print_error(message: str) -> None:
    """``error: message`` on stderr on a line of its own, also while a progress bar is drawn there (Lightning's
    tqdm bars end their line only when they close): an open bar's line is ended first."""
    from tqdm import tqdm

    bar_open = any(not bar.disable for bar in getattr(tqdm, "_instances", ()))
    sys.stderr.write(("\n" if bar_open else "") + f"error: {message}\n")
    sys.stderr.flush()
