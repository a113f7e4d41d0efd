"""One exception type per failure of the service, and no HTTP in any of them.

The worker raises these and writes them into a job's output stream by `type` name; the API
rebuilds them from that name (`from_type`) and app/api/errors.py alone turns each into a status
code and headers. `type` is the public name of the failure, sent in every error body.
"""

from __future__ import annotations

from typing import ClassVar

from bark_core import errors as core


class ServiceError(Exception):
    """Base of every failure the service reports on purpose."""

    type: ClassVar[str] = "internal_error"
    default_param: ClassVar[str | None] = None

    def __init__(self, message: str, *, param: str | None = None, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param if param is not None else self.default_param
        #: when the client may try again (overload, outage); None when retrying cannot help
        self.retry_after_s = retry_after_s


class InvalidRequest(ServiceError):
    type = "invalid_request_error"


class BadRequest(ServiceError):
    type = "bad_request"


class Unauthorized(ServiceError):
    type = "authentication_error"


class Forbidden(ServiceError):
    type = "permission_error"


class NotFound(ServiceError):
    type = "not_found_error"


class UnknownVoice(ServiceError):
    type, default_param = "unknown_voice", "voice"


class ModelNotFound(ServiceError):
    type, default_param = "model_not_found", "model"


class MethodNotAllowed(ServiceError):
    type = "method_not_allowed"


class Conflict(ServiceError):
    type = "conflict"


class PayloadTooLarge(ServiceError):
    type = "payload_too_large"


class RequestTimeout(ServiceError):
    """A request body that did not arrive in time (the routes never see a slow body)."""

    type = "request_timeout"


class HeadersTooLarge(ServiceError):
    type = "request_header_fields_too_large"


class QueueFull(ServiceError):
    type = "queue_full"


class Cancelled(ServiceError):
    type = "cancelled"


class GenerationFailed(ServiceError):
    type = "generation_failed"


class InternalError(ServiceError):
    type = "internal_error"


class Unavailable(ServiceError):
    type = "service_unavailable"


class DeadlineExceeded(ServiceError):
    type = "deadline_exceeded"


def _all_subclasses(cls: type[ServiceError]) -> list[type[ServiceError]]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


BY_TYPE: dict[str, type[ServiceError]] = {c.type: c for c in _all_subclasses(ServiceError)}


def from_type(type_name: str, message: str, param: str | None = None) -> ServiceError:
    """Rebuild the error a worker reported (an unknown name is a generation failure)."""
    return BY_TYPE.get(type_name, GenerationFailed)(message, param=param)


def from_core(exc: core.BarkError) -> ServiceError:
    """bark_core's typed errors -> ours. The one place this mapping lives."""
    message = str(exc)
    if isinstance(exc, core.UnknownVoiceError):
        return UnknownVoice(message, param=exc.param)
    if isinstance(exc, core.InvalidVoiceError | core.InvalidTextError | core.InvalidParameterError):
        return InvalidRequest(message, param=exc.param)
    if isinstance(exc, core.GenerationCancelled):
        return Cancelled(message)
    return GenerationFailed(message, param=exc.param)
