"""One exception type per failure. The service maps each to one HTTP status, once."""


class BarkError(Exception):
    """Base of every error bark_core raises on purpose."""

    #: the request field the error is about, when there is one
    param: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        if param is not None:
            self.param = param


class ModelNotFoundError(BarkError):
    """The checkpoint could not be found locally nor downloaded."""


class CheckpointError(BarkError):
    """The checkpoint exists but is malformed (missing/extra weights, bad config)."""


class UnknownVoiceError(BarkError):
    """A preset id that the voice library does not hold."""

    param = "voice"


class InvalidVoiceError(BarkError):
    """A preset whose arrays fail validation (dims, dtype, range, length)."""

    param = "voice"


class InvalidTextError(BarkError):
    """Text that is empty or too long."""

    param = "text"


class InvalidParameterError(BarkError):
    """A generation parameter out of range."""


class GenerationCancelled(BarkError):
    """The caller's cancel flag was seen between decode steps."""
