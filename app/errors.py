"""One exception type per failure, each with its HTTP status, mapped once.

Pure Python (no FastAPI, no torch): the worker raises and serialises these too, and the API
turns a worker's error event back into the same type by its `type` name.
"""

from __future__ import annotations

from typing import Any, ClassVar

from bark_core import errors as core


class ApiError(Exception):
    """Base: rendered as {"error": {"message", "type", "param", "code"}} with `status`."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "internal_error"
    default_param: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param if param is not None else self.default_param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.status,
            }
        }


class InvalidRequest(ApiError):
    status, type = 422, "invalid_request_error"


class BadRequest(ApiError):
    status, type = 400, "bad_request"


class Unauthorized(ApiError):
    status, type = 401, "authentication_error"


class Forbidden(ApiError):
    status, type = 403, "permission_error"


class NotFound(ApiError):
    status, type = 404, "not_found_error"


class UnknownVoice(ApiError):
    status, type, default_param = 404, "unknown_voice", "voice"


class ModelNotFound(ApiError):
    status, type, default_param = 404, "model_not_found", "model"


class MethodNotAllowed(ApiError):
    status, type = 405, "method_not_allowed"


class Conflict(ApiError):
    status, type = 409, "conflict"


class PayloadTooLarge(ApiError):
    status, type = 413, "payload_too_large"


class QueueFull(ApiError):
    status, type = 429, "queue_full"


class Cancelled(ApiError):
    # 499: nginx's "client closed request"; only ever seen in logs and websocket events.
    status, type = 499, "cancelled"


class GenerationFailed(ApiError):
    status, type = 500, "generation_failed"


class InternalError(ApiError):
    status, type = 500, "internal_error"


class Unavailable(ApiError):
    status, type = 503, "service_unavailable"


class DeadlineExceeded(ApiError):
    status, type = 504, "deadline_exceeded"


def _all_subclasses(cls: type[ApiError]) -> list[type[ApiError]]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


BY_TYPE: dict[str, type[ApiError]] = {c.type: c for c in _all_subclasses(ApiError)}
BY_TYPE[ApiError.type] = InternalError


def from_type(type_name: str, message: str, param: str | None = None) -> ApiError:
    """Rebuild the error a worker reported (unknown names become a 500)."""
    return BY_TYPE.get(type_name, GenerationFailed)(message, param=param)


def from_core(exc: core.BarkError) -> ApiError:
    """bark_core's typed errors -> ours. The one place this mapping lives."""
    message = str(exc)
    if isinstance(exc, core.UnknownVoiceError):
        return UnknownVoice(message, param=exc.param)
    if isinstance(exc, core.InvalidVoiceError | core.InvalidTextError | core.InvalidParameterError):
        return InvalidRequest(message, param=exc.param)
    if isinstance(exc, core.GenerationCancelled):
        return Cancelled(message)
    return GenerationFailed(message, param=exc.param)
