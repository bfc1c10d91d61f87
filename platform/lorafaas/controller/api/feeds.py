"""The alarms package's feed actions, `/whisk.system/alarms/alarm` and `.../interval`, as
`wsk trigger create --feed` and the JS client's `feeds` invoke them: a blocking invoke whose
parameters are `lifecycleEvent`, `triggerName` and the feed's own. The record is stored in
the caller's namespace and answered as a blocking invoke's (502 when the feed refused)."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from lorafaas.controller.alarm_feed import CRON_FEED, INTERVAL_FEED
from lorafaas.controller.api.params import flag, json_object, read_json
from lorafaas.controller.appkeys import sessions_key, triggers_key
from lorafaas.controller.auth import identify
from lorafaas.errors import BadRequest, NotFound
from lorafaas.registry.activations import activation_json
from lorafaas.registry.clock import now_ms
from lorafaas.registry.models import Activation

FEEDS = {"alarm": CRON_FEED, "interval": INTERVAL_FEED}
ACTIVATION_HEADER = "x-openwhisk-activation-id"


async def invoke_feed(request: web.Request) -> web.Response:
    """Run one lifecycle event of an alarm feed; its activation record (or ?result=true
    its result)."""
    identity = await identify(request)
    feed = FEEDS.get(request.match_info["feed"])
    if feed is None:
        raise NotFound("The requested resource does not exist.")
    flag(request, "blocking")  # accepted: the feed always answers when done
    result_only = flag(request, "result")
    params = json_object(await read_json(request), "the parameters")
    start = now_ms()
    try:
        result: dict[str, Any] = await request.app[triggers_key].feed_lifecycle(
            identity, feed, params)
        response = {"status": "success", "statusCode": 0, "success": True, "result": result}
    except BadRequest as error:
        response = {"status": "application error", "statusCode": 1, "success": False,
                    "result": {"error": error.message}}
    row = Activation(activation_id=uuid.uuid4().hex, namespace=identity.namespace,
                     name=request.match_info["feed"], version="0.0.1",
                     subject=identity.subject, start_ms=start, end_ms=now_ms(),
                     status_code=response["statusCode"], response=response, logs=[],
                     annotations=[{"key": "path", "value": feed},
                                  {"key": "kind", "value": "feed"}])
    async with request.app[sessions_key]() as session, session.begin():
        session.add(row)
    body = response["result"] if result_only else activation_json(row)
    return web.json_response(body, status=200 if response["success"] else 502,
                             headers={ACTIVATION_HEADER: row.activation_id})
