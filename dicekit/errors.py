"""User-facing errors.

A :class:`UserError` is a mistake in what the user gave us (a config key, a file, a flag). The CLI
prints its message on one line and exits with status 2; nothing else in dicekit catches it. Internal
failures are left as ordinary exceptions (non-zero exit, traceback) so bugs stay visible.
"""


class UserError(Exception):
    """Bad input: printed as one line, exit code 2."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class JudgeCallsFailed(Exception):
    """Some judge calls failed after their retries; the judgements that succeeded are kept (cached or
    written), so running the same evaluation again retries only the failed ones. The CLI prints the
    message on one line and exits with status 1."""


def where(path, line: int | None = None, field: str | None = None) -> str:
    """`file:line: field` prefix for error messages."""
    out = str(path)
    if line is not None:
        out += f":{line}"
    if field is not None:
        out += f": field '{field}'"
    return out
