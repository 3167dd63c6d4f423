"""The settings error as the program raises it: a `pulumi.RunError`, which Pulumi prints as its message alone.

`components.settings` stays importable without Pulumi; this module adds Pulumi's side. The Python language host
(`pulumi-language-python-exec`) logs a `RunError`'s message and exits; any other exception is printed with its
traceback and the program's text, which would bury the list of problems.
"""

from __future__ import annotations

import pulumi

from components.settings import SettingsError


class StackSettingsError(SettingsError, pulumi.RunError):
    """Settings, or a CA read at preview, that the stack cannot deploy with; raised before any resource."""
