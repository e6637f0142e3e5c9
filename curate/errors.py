"""Error types that decide how a run ends.

``InputError`` is the user's fault (a file, row, column or option is wrong): the CLI prints its
one-line message and exits 2. Anything else that escapes is an internal error: exit 1.
"""


class InputError(Exception):
    """Bad input, option or environment. The message is one line that names what and where."""

    def __init__(self, message: str):
        # One line, always: a multi-line message would read like a traceback. Control
        # characters copied from a library's message (or a file) are shown escaped.
        text = " ".join(str(message).splitlines()).strip()
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in text))


class RowError(Exception):
    """A fault in one row: the row is dropped with ``reason`` and the run goes on."""

    def __init__(self, reason: str, value: str = ""):
        super().__init__(f"{reason}: {value}" if value else reason)
        self.reason = reason
        self.value = value
