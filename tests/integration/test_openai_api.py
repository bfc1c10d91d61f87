"""The `openai` package as the client: completions and chat, streamed and not, identical to invoke."""

from __future__ import annotations

import base64

import openai
import pytest

pytestmark = pytest.mark.docker
PROMPT = "Can you explain how a rainbow forms?"
MESSAGES = [{"role": "user", "content": "Tell me a story about a brave dragon"}]


@pytest.fixture
async def client(platform, demo_models, make_zip):  # type: ignore[no-untyped-def]
    """An AsyncOpenAI client on the platform, with the pirate adapter deployed."""
    code = base64.b64encode(make_zip(demo_models.adapters["pirate"])).decode()
    response = await platform.request("PUT", "/api/v1/namespaces/_/actions/pirate",
                                      json={"exec": {"kind": "lora", "binary": True,
                                                     "code": code}})
    assert response.status == 200
    base_url = str(platform.client.make_url("/v1/"))
    async with openai.AsyncOpenAI(base_url=base_url, api_key=platform.credential,
                                  max_retries=0) as client:
        yield client


async def invoke_text(platform, **params) -> str:  # type: ignore[no-untyped-def]
    """The text of a blocking invoke of the pirate action."""
    response = await platform.request("POST", "/api/v1/namespaces/_/actions/pirate",
                                      params={"blocking": "true", "result": "true"}, json=params)
    result = await response.json()
    assert response.status == 200, result
    return str(result["text"])


async def test_completions_match_invoke_streamed_or_not(platform, client):  # type: ignore[no-untyped-def]
    expected = await invoke_text(platform, prompt=PROMPT, max_tokens=20, temperature=0)
    completion = await client.completions.create(model="pirate", prompt=PROMPT, max_tokens=20,
                                                 temperature=0)
    assert completion.choices[0].text == expected
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert completion.model == "pirate" and completion.object == "text_completion"

    pieces, usage = [], None
    stream = await client.completions.create(model="guest/pirate", prompt=PROMPT, max_tokens=20,
                                             temperature=0, stream=True)
    async for chunk in stream:
        pieces += [choice.text for choice in chunk.choices]
        usage = chunk.usage or usage
    assert "".join(pieces) == expected
    assert usage is not None and usage.total_tokens == completion.usage.total_tokens
    assert len([p for p in pieces if p]) > 1, "the text came in one piece, not streamed"


async def test_chat_matches_invoke_streamed_or_not(platform, client):  # type: ignore[no-untyped-def]
    expected = await invoke_text(platform, messages=MESSAGES, max_tokens=24, temperature=0)
    chat = await client.chat.completions.create(model="pirate", messages=MESSAGES,
                                                max_tokens=24, temperature=0)
    assert chat.choices[0].message.content == expected
    assert chat.choices[0].message.role == "assistant"
    assert chat.usage is not None and chat.usage.prompt_tokens > 0

    pieces = []
    stream = await client.chat.completions.create(model="pirate", messages=MESSAGES,
                                                  max_tokens=24, temperature=0, stream=True)
    async for chunk in stream:
        pieces += [choice.delta.content or "" for choice in chunk.choices]
    assert "".join(pieces) == expected


async def test_models_and_errors(platform, client):  # type: ignore[no-untyped-def]
    models = await client.models.list()
    assert [m.id for m in models.data] == ["guest/pirate"]
    with pytest.raises(openai.NotFoundError):
        await client.completions.create(model="absent", prompt="hi")
    with pytest.raises(openai.BadRequestError):
        await client.completions.create(model="pirate", prompt="hi", max_tokens=-1)
    base_url = str(platform.client.make_url("/v1/"))
    async with openai.AsyncOpenAI(base_url=base_url, api_key="nobody:nothing",
                                  max_retries=0) as stranger:
        with pytest.raises(openai.AuthenticationError):
            await stranger.models.list()
