"""The failures logstack expects and explains in one line, without a traceback."""


class LogstackError(Exception):
    """A problem with the input, the settings or a service; the message says which."""
