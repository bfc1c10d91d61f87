"""Creating or updating a function by uploading an adapter folder (its files) or a zip.

The browser posts multipart form data; a folder's files are zipped here and stored through
`ActionService.put`, so the console validates exactly as the API does. Errors are shown next
to the field they concern, in words for a person.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from aiohttp import web
from multidict import MultiMapping

from lorafaas.console.keys import console_identity_key
from lorafaas.console.middleware import wants_json
from lorafaas.console.pages import UploadPage
from lorafaas.console.render import render_page
from lorafaas.controller.appkeys import actions_key, invocations_key, settings_key
from lorafaas.controller.protocol import ActionBody, limit_ranges, parse_limits
from lorafaas.controller.uploads import UploadsBusy, busy_response
from lorafaas.errors import AdapterRejected, Conflict, LoraFaasError, PayloadTooLarge
from lorafaas.names import QualifiedName
from lorafaas.registry.artifacts import UPLOAD_NAME

NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}$")
FileFields = list[web.FileField]
_COPY_CHUNK = 1 << 20


class FieldError(Exception):
    """A form field's value cannot be used; `message` is shown next to it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


async def upload_form(request: web.Request) -> web.Response:
    """The empty form: a new function, or `?name=` to update one."""
    name = request.query.get("name", "")
    return await render_page(request, _page(request, name, bool(name), {}))


async def upload_submit(request: web.Request) -> web.Response:
    """Store the adapter; the script gets JSON, a plain form post a redirect or the form."""
    service = request.app[actions_key]
    try:
        with service.uploads.slot():
            # aiohttp spools each file field to a temporary file, within client_max_size.
            form = await request.post()
            name = str(form.get("name", "")).strip()
            updating = form.get("overwrite") == "on"
            with service.store.staging() as folder:
                await _store(request, form, name, updating, folder / UPLOAD_NAME)
    except UploadsBusy as error:
        if wants_json(request):
            return busy_response(request, error)
        raise web.HTTPTooManyRequests(text=error.message,
                                      headers={"Retry-After": str(error.retry_after_s)}) \
            from error
    except FieldError as error:
        errors = {error.field: error.message}
        if wants_json(request):
            return web.json_response({"errors": errors}, status=400)
        return await render_page(request, _page(request, name, updating, errors), status=400)
    target = f"/console/functions/{name}"
    if wants_json(request):
        return web.json_response({"location": target})
    raise web.HTTPSeeOther(target)


def _page(request: web.Request, name: str, updating: bool, errors: dict[str, str]) -> UploadPage:
    return UploadPage(name, updating, errors, request.app[settings_key].max_adapter_bytes)


async def _store(request: web.Request, form: MultiMapping[str | bytes | bytearray | web.FileField],
                 name: str, overwrite: bool, zip_path: Path) -> None:
    if not NAME.match(name):
        raise FieldError("name", "Use letters, digits, '_', '-', '.' or '@' (up to 128), "
                                 "starting with a letter, digit or '_'.")
    files = [f for f in form.getall("adapter", []) if isinstance(f, web.FileField) and f.filename]
    await asyncio.to_thread(write_adapter_zip, files, zip_path)
    settings = request.app[settings_key]
    ranges = limit_ranges(settings.action_timeout_ms, settings.container_memory_mb,
                          settings.slo_ttft_ms)
    body = ActionBody(code=zip_path, parameters=[], annotations=[], limits=parse_limits({}, ranges),
                      publish=False)
    identity = request[console_identity_key]
    try:
        await request.app[actions_key].put(identity, QualifiedName(identity.namespace, None, name),
                                           body, overwrite)
    except Conflict as error:
        raise FieldError("name", f"A function called {name!r} exists already. Tick "
                                 "“Replace the existing function” to update it.") from error
    except PayloadTooLarge as error:
        raise FieldError("adapter", f"The adapter is too large: {error.message}.") from error
    except AdapterRejected as error:
        raise FieldError("adapter", friendly(error.message)) from error
    except LoraFaasError as error:
        if error.status != 400:
            raise
        raise FieldError("adapter", friendly(error.message)) from error
    await request.app[invocations_key].invoker.retire(QualifiedName(identity.namespace, None,
                                                                    name))


def write_adapter_zip(files: FileFields, path: Path) -> None:
    """One uploaded .zip copied as it is, else the folder's files zipped at the top level;
    file by file in chunks, never whole in memory."""
    if not files:
        raise FieldError("adapter", "Choose an adapter folder or a .zip of one.")
    if len(files) == 1 and files[0].filename.lower().endswith(".zip"):
        with open(path, "wb") as sink:
            shutil.copyfileobj(files[0].file, sink, _COPY_CHUNK)
        return
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for upload in files:
            with archive.open(_inner_path(upload.filename), "w", force_zip64=True) as sink:
                shutil.copyfileobj(upload.file, sink, _COPY_CHUNK)


def _inner_path(filename: str) -> str:
    # A folder upload names files "folder/sub/file": drop the chosen folder's own name.
    parts = PurePosixPath(filename.replace("\\", "/")).parts
    return "/".join(parts[1:]) if len(parts) > 1 else parts[-1]


def friendly(message: str) -> str:
    """An adapter refusal in a user's words (the API's talk of exec.code left out)."""
    if "not a zip archive" in message:
        return ("This file is not a zip archive. Choose the adapter's folder, or a .zip made "
                "from it.")
    if "no adapter_config.json" in message:
        return ("No adapter_config.json was found at the top of the upload: choose the folder "
                "that holds adapter_config.json and adapter_model.safetensors.")
    return f"This adapter cannot be used: {message}."
