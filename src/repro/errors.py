"""The base of every error whose message is the whole story (what is wrong, which key or file,
and the fix): ``python -m repro`` prints such an error as one line instead of a traceback.

Torch-free, so the CLI names it without importing torch for ``--help`` or ``estimate``.
"""


class UserError(Exception):
    """A config, file or run that the user can fix as the message says; not a bug in repro."""
