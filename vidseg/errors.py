"""The one base class of the project's own input-validation errors.

Every check that rejects something a user gave (a file, a folder, a flag, a config value) raises
an ``InputError`` whose message names that thing and says what is wrong. The CLIs print exactly
these as one line and exit 2; any other exception is a bug and keeps its traceback (exit 1).
"""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad input, named in the message: printed as one line, exit code 2."""
