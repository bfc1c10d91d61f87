"""Domain exceptions that carry their HTTP status; one middleware renders them."""

from __future__ import annotations


class LoraFaasError(Exception):
    """Base of every error a client can see; `status` is the HTTP status it maps to."""

    status = 500

    def __init__(self, message: str, *, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param  # the request parameter at fault, when one is (OpenAI's `param`)
        self.headers = headers or {}  # sent with the error (Retry-After, say)


class BadRequest(LoraFaasError):
    """The request is malformed or names something impossible."""

    status = 400


class Unauthorized(LoraFaasError):
    """No credentials, or wrong ones."""

    status = 401


class Forbidden(LoraFaasError):
    """The subject may not touch this namespace."""

    status = 403


class NotFound(LoraFaasError):
    """The resource does not exist."""

    status = 404


class Conflict(LoraFaasError):
    """The resource exists already."""

    status = 409


class PayloadTooLarge(LoraFaasError):
    """The upload is over the configured limit."""

    status = 413


class TooManyRequests(LoraFaasError):
    """Over a throttle: invocations of a namespace, or failed sign-ins."""

    status = 429


class AdapterRejected(BadRequest):
    """The uploaded adapter cannot be served on its backbone."""
