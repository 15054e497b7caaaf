"""One exception type for bad input: the CLI prints it as a single line and exits non-zero."""


class SasiError(Exception):
    """A user-facing error: what is wrong and where, in one line."""

    def __init__(self, message: str, path: object | None = None):
        self.path = path
        super().__init__(f"{path}: {message}" if path is not None else message)
