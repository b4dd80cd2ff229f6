"""One error type for bad input: its message is a single actionable line."""


class CifarLightningError(ValueError):
    """Raised for bad input (arguments, data, environment) that the user can fix.

    The command line prints its message as one line and exits with status 2.
    """

    last_message = ""  # jsonargparse wraps errors raised while it builds nested classes; main() finds ours by this

    def __init__(self, message: str):
        super().__init__(message)
        CifarLightningError.last_message = message


def check(condition: bool, message: str) -> None:
    """Raise :class:`CifarLightningError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CifarLightningError(message)


def check_choice(name: str, value, choices) -> None:
    """Reject ``value`` unless it is one of ``choices``, naming the valid ones."""
    check(value in choices, f"unknown {name} {value!r}: choose one of {', '.join(map(str, choices))}")
