"""The one error type users see: what went wrong, where, and what to do about it."""

import contextlib
import sys


class InputError(ValueError):
    """Bad input from the user: a file, a setting, a model or a store.

    The message names the place (``file`` or ``file:line``), the problem and the fix, so the
    command line can print it on one line without a traceback.
    """

    def __init__(self, where, problem, fix=None, line=None):
        place = f"{where}:{line}" if line is not None else str(where)
        message = f"{place}: {problem}"
        if fix:
            message += f"; {fix}"
        super().__init__(message)
        self.where, self.line, self.problem, self.fix = str(where), line, problem, fix

    def __reduce__(self):  # so an error raised in a worker process reaches the parent whole
        return type(self), (self.where, self.problem, self.fix, self.line)


class MemoryBudgetError(InputError):
    """A request that would build an array larger than the configured budget."""


@contextlib.contextmanager
def reported():
    """Print an InputError on one line to stderr and exit with status 2, instead of a traceback."""
    try:
        yield
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
