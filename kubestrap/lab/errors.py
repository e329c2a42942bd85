"""The one exception type of the lab: a user-facing, actionable message."""


class LabError(Exception):
    """An error the user can act on; the CLI prints it as one line and exits non-zero."""
