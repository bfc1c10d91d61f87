"""Where things are on the broker: the subjects, the work stream and its consumers, and the
heartbeat bucket; created idempotently by whichever side connects first.

- `lorafaas.invoker.<id>.<verb>` (core NATS, request-reply): `run` (a blocking or streamed
  activation; its replies, on the caller's inbox, are `accepted` or `refused`, then `delta`
  and `alive` messages, then one end marker, `result` or `error`), `cancel`, `retire`,
  `prepare`, `describe`, `snapshot`, `metrics`.
- `lorafaas.async.<id>`: the non-blocking activations placed on invoker `<id>`, in the
  work-queue stream `LORAFAAS_ACTIVATIONS`; the durable pull consumer `async-<id>` holds
  them with explicit acks, so one an invoker took and did not finish is delivered again
  after `ack_wait`, to it or to a live invoker that adopts a dead one's consumer.
- `lorafaas.result.<controller>.<activation>`: a non-blocking activation's result, sent
  by request so that the invoker acks only once the controller stored the record.
- the key-value bucket `lorafaas_invokers`: one heartbeat per invoker, gone after its TTL.
"""

from __future__ import annotations

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue

STREAM = "LORAFAAS_ACTIVATIONS"
ASYNC_PREFIX = "lorafaas.async"
BUCKET = "lorafaas_invokers"
ACK_WAIT_S = 10.0  # an activation running is kept in progress well within this
MAX_DELIVER = 5  # an activation that kills its invoker each time is not tried forever
HEARTBEAT_S = 1.0
HEARTBEAT_TTL_S = 4.0  # an invoker unheard for this long is out of placement


def invoker_subject(invoker_id: str, verb: str) -> str:
    """The core subject of one of an invoker's verbs."""
    return f"lorafaas.invoker.{invoker_id}.{verb}"


def async_subject(invoker_id: str) -> str:
    """The stream subject of the non-blocking activations placed on the invoker."""
    return f"{ASYNC_PREFIX}.{invoker_id}"


def consumer_name(invoker_id: str) -> str:
    """The durable consumer holding the invoker's non-blocking activations."""
    return f"async-{invoker_id}"


def consumer_owner(name: str) -> str | None:
    """The invoker whose consumer this is (None: not one of ours)."""
    return name.removeprefix("async-") if name.startswith("async-") else None


def result_subject(controller_id: str, activation_id: str) -> str:
    """Where a non-blocking activation's result goes: the controller that placed it."""
    return f"lorafaas.result.{controller_id}.{activation_id}"


async def ensure_stream(js: JetStreamContext) -> None:
    """The work-queue stream of non-blocking activations, kept on disk."""
    config = StreamConfig(name=STREAM, subjects=[f"{ASYNC_PREFIX}.>"],
                          retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE)
    try:
        await js.add_stream(config)
    except BadRequestError:  # created by another process with the same name: ours
        await js.stream_info(STREAM)


def consumer_config(invoker_id: str) -> ConsumerConfig:
    """The invoker's durable pull consumer: explicit acks, redelivered after `ack_wait`."""
    return ConsumerConfig(durable_name=consumer_name(invoker_id),
                          filter_subject=async_subject(invoker_id),
                          ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S,
                          max_deliver=MAX_DELIVER, max_ack_pending=1024)


async def ensure_consumer(js: JetStreamContext, invoker_id: str) -> None:
    """Create the invoker's consumer if it does not exist yet."""
    try:
        await js.consumer_info(STREAM, consumer_name(invoker_id))
    except nats.js.errors.NotFoundError:
        await js.add_consumer(STREAM, consumer_config(invoker_id))


async def heartbeat_bucket(js: JetStreamContext) -> KeyValue:
    """The heartbeat bucket, created with its TTL when missing."""
    try:
        return await js.key_value(BUCKET)
    except (nats.js.errors.BucketNotFoundError, nats.errors.Error):
        return await js.create_key_value(bucket=BUCKET, history=1, ttl=HEARTBEAT_TTL_S)
