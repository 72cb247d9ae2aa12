"""The one exception type users see as a message rather than a traceback.

Raise `OpusLMError` for anything the user can fix (bad input, bad config, missing files); the message
must name the thing and the fix. The CLI prints it as one line; other exceptions are bugs and keep
their traceback under `--debug`.
"""


class OpusLMError(Exception):
    """A problem with the user's input or setup, explained in the message."""
