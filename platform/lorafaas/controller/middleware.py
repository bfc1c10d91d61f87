"""Request ids and error rendering: every error under /api is JSON `{"error", "code"}`."""

from __future__ import annotations

import logging
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from lorafaas.errors import LoraFaasError

logger = logging.getLogger(__name__)

request_id_key = web.RequestKey("request_id", str)

# Messages for the errors aiohttp raises itself, in OpenWhisk's words where it has them.
_HTTP_MESSAGES = {
    404: "The requested resource does not exist.",
    405: "Method not allowed.",
    413: "The request content was malformed: the request entity is too large.",
}


def error_response(status: int, message: str, request_id: str) -> web.Response:
    """The JSON body every failed request gets."""
    return web.json_response({"error": message, "code": request_id}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request an id; turn every exception into a JSON error, never a trace."""
    request_id = uuid.uuid4().hex
    request[request_id_key] = request_id
    try:
        return await handler(request)
    except LoraFaasError as error:
        return error_response(error.status, error.message, request_id)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        message = _HTTP_MESSAGES.get(error.status, error.reason)
        return error_response(error.status, message, request_id)
    except Exception:
        logger.exception("request %s %s failed (%s)", request.method, request.path, request_id)
        return error_response(500, "Internal server error.", request_id)
