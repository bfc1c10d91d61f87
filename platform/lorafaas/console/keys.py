"""Typed state keys of the console."""

from __future__ import annotations

from aiohttp import web

from lorafaas.registry.namespaces import Identity

console_identity_key = web.RequestKey("console_identity", Identity)
csrf_key = web.RequestKey("console_csrf", str)
