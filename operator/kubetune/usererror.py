"""An error the user can fix: the CLI prints its message on one line, without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or environment. The message names the input (file, flag, variable, port) and the fix."""

    exit_code = 2  # as for bad manifests: retrying the same command cannot help
