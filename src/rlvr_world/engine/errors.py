"""The one error type for what a user can fix: a mistake in what was asked, or a problem of the machine it runs on.

Its message is one line that says what went wrong and, where it can, what to do; the command line prints it as
`rlvr-world: error: MESSAGE` and exits with status 2 (`cli.main`). Each layer's own errors subclass it where that
is what they are (a domain's `DataError`, `models.ModelError`, `checkpoint.CheckpointError`, the web domain's
`BrowserError`, `domains.MissingExtra`, ...), beside the built-in type each already was (ValueError, RuntimeError,
ImportError), so code that catches those still does.
"""


class UserError(Exception):
    """A one-line error a user can act on: bad input or options, missing data or packages, a machine that cannot do
    what was asked."""
