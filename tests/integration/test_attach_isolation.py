"""From inside a function container, its attach channel is its own: it cannot list or
detach another container, cannot reach the control socket or another channel, and an
oversized line or a flood of connections is refused without growing the backbone server;
the other container keeps working. Real Docker engine, real backbone server."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import docker
import pytest

from lorafaas.backbone.supervisor import BackboneEndpoint, BackboneServerProcess
from lorafaas.invoker.pool import BackboneMounts
from lorafaas.wire.attach import exchange
from tests.integration.test_pool import function, make_pool

pytestmark = pytest.mark.docker
PAYLOAD = {"value": {"prompt": "Tell me about the sea", "max_tokens": 6, "ignore_eos": True,
                     "return_token_ids": True}, "max_tokens_limit": 64}
OVERSIZED = 60 * 1024 * 1024
# What the attacker runs in its container, as its own user (stdlib only: the image's python3).
ATTACK = r'''
import json, os, socket, sys
OWN = "/lorafaas/attach/attach.sock"
control, other, other_name, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def ask(message):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(OWN)
        s.sendall(json.dumps(message).encode() + b"\n")
        return json.loads(s.makefile("rb").readline() or b"null")

def reachable(path):
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
        return True
    except OSError:
        return False

def push(total):
    sent, chunk = 0, b"x" * (1 << 20)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(OWN)
        try:
            while sent < total:
                sent += s.send(chunk)
        except OSError:
            pass
        try:
            answer = s.recv(64)
        except OSError:
            answer = b""
    return sent, answer.decode(errors="replace")

def flood(n):
    held, answers = [], []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(30)
        s.connect(OWN)
        held.append(s)
    for s in held:
        try:
            s.sendall(b'{"op":"bogus"}\n')
        except OSError:
            pass  # a refused one is closed already; its refusal is still there to read
        try:
            answers.append(json.loads(s.makefile("rb").readline() or b"null"))
        except OSError:
            answers.append(None)
    for s in held:
        s.close()
    return answers

result = {"mounted": sorted(os.listdir("/lorafaas/attach")),
          "control": reachable(control), "other": reachable(other),
          "stats": ask({"op": "stats"}), "channels": ask({"op": "channels"}),
          "close_other": ask({"op": "close", "channel": other_name}),
          "detach_other": ask({"op": "detach", "client": other_name}),
          "pushes": [push(size) for _ in range(3)], "flood": flood(20),
          "attach_again": ask({"op": "attach"}).get("ok")}
print(json.dumps(result))
'''


def rss_kb(pid: int) -> int:
    """Resident memory of a process, kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


async def control(mounts: BackboneMounts, message: dict[str, Any]) -> dict[str, Any]:
    """One request on the backbone server's control socket, its answer."""
    return await exchange(mounts.control_socket, message)


@pytest.fixture
async def served(demo_models, short_dir: Path  # type: ignore[no-untyped-def]
                 ) -> AsyncIterator[tuple[BackboneMounts, int]]:
    """A backbone server, its mounts and its pid."""
    endpoint = BackboneEndpoint("demo", short_dir / "bb" / "attach.sock",
                                Path("/dev/shm") / f"lorafaas-iso-{uuid.uuid4().hex[:8]}")
    server = BackboneServerProcess(endpoint, demo_models.backbone_dir)
    await server.start()
    assert server.pid is not None
    yield BackboneMounts(endpoint.socket_path, endpoint.publish_dir), server.pid
    await server.stop()


async def test_a_container_reaches_only_its_own_channel_and_cannot_grow_the_server(  # type: ignore[no-untyped-def]
        served, runtime_image, short_dir: Path, demo_models) -> None:
    mounts, server_pid = served
    pool = make_pool(mounts, runtime_image, short_dir, f"iso{uuid.uuid4().hex[:8]}")
    try:
        attacker = (await pool.acquire(function(demo_models, "pirate"))).container
        victim = (await pool.acquire(function(demo_models, "shout"))).container
        before_tokens = (await victim.client.run(PAYLOAD)).result["token_ids"]
        channels = (await control(mounts, {"op": "channels"}))["channels"]
        assert sorted(channels) == sorted([attacker.folders.channel, victim.folders.channel])
        assert (await control(mounts, {"op": "stats"}))["attached"] == sorted(channels)
        rss_before = rss_kb(server_pid)

        exec_result = await asyncio.to_thread(
            docker.from_env().containers.get(attacker.info.id).exec_run,
            ["python3", "-c", ATTACK, str(mounts.control_socket),
             str(victim.folders.attach_socket), victim.folders.channel, str(OVERSIZED)])
        assert exec_result.exit_code == 0, exec_result.output.decode(errors="replace")
        seen = json.loads(exec_result.output.decode().strip().splitlines()[-1])
        rss_after = rss_kb(server_pid)
        stats = await control(mounts, {"op": "stats"})
        after_tokens = (await victim.client.run(PAYLOAD)).result["token_ids"]
        await pool.discard(attacker, "test done")
        left = (await control(mounts, {"op": "channels"}))["channels"]
    finally:
        await pool.shutdown()
    print({k: v for k, v in seen.items() if k != "flood"}, f"server RSS {rss_before} kB -> "
          f"{rss_after} kB", f"flood answers {[a and a.get('error') for a in seen['flood']]}")

    # It sees its own socket only, and neither the control socket nor the other channel.
    assert seen["mounted"] == ["attach.sock"]
    assert seen["control"] is False and seen["other"] is False
    # No op lists or names anything, nor reaches another container.
    for key in ("stats", "channels", "close_other"):
        assert seen[key]["ok"] is False and victim.folders.channel not in json.dumps(seen[key])
    assert seen["detach_other"] == {"ok": True}  # it detached itself, not the victim
    assert victim.folders.channel in stats["attached"]
    # 60 MB lines were cut while sent (a few hundred kB got into the socket buffers), three
    # times, and the server did not grow (the shared socket grew by 500 MB).
    for sent, answer in seen["pushes"]:
        assert sent < 8 * 1024 * 1024 and answer == ""
    assert rss_after - rss_before < 32 * 1024, (rss_before, rss_after)
    # Of 20 connections at once, only the channel's few were served; the rest were refused.
    served_ones = [a for a in seen["flood"] if a and "unknown op" in a.get("error", "")]
    refused = [a for a in seen["flood"] if a and a.get("error") == "too many connections"]
    assert 1 <= len(served_ones) <= 4 and len(served_ones) + len(refused) == 20
    assert seen["attach_again"] is True
    # The victim kept working, token for token; the attacker's channel went with it.
    assert after_tokens == before_tokens and len(after_tokens) == 6
    assert left == [victim.folders.channel]
