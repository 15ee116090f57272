"""The errors a user can act on, as opposed to bugs.

Every room raises a subclass of `DomainError` where the input is at fault: a
file (a zoo, a split file, a submission, a leaderboard database, a dataset), a
config, an option, a zoo a task cannot use, or a failed peer of a distributed
build. Its message says what was wrong, where (the file) and what was expected.
The ``zoobench`` command prints it as one line, ``zoobench: error: MESSAGE``, and
exits 1; any other exception is a bug in zoobench and shows its traceback.
Types that were ValueErrors before subclass ValueError too, so callers that
catch ValueError still catch them.
"""

from __future__ import annotations


class DomainError(Exception):
    """A mistake in what the user gave or runs on, not in zoobench; the message names the file."""


class UsageError(DomainError, ValueError):
    """An argument or option that does not exist, or does not apply with the others given."""


class Unavailable(DomainError, ValueError):
    """Something (a split, a task) cannot be made on this zoo; the message names the zoo when known.

    Attributes:
      reason: the why alone, for a listing that names the zoo once above it.
      zoo: the zoo's directory, or None.
    """

    def __init__(self, reason: str, zoo=None):
        self.reason = reason
        self.zoo = None if zoo is None else str(zoo)
        super().__init__(reason if zoo is None else f"{zoo}: {reason}")
