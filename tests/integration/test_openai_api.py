"""OpenAI clients against the running platform: the `openai` package (sync and async),
LangChain's ChatOpenAI and LiteLLM; answers identical to a plain invoke, OpenAI's stream
and error shapes, and the parameters the platform refuses named in the client's exception.

One platform serves the whole module (tests.integration.served).
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.integration.served import ServedPlatform, served_platform

pytestmark = pytest.mark.docker
PROMPT = "Can you explain how a rainbow forms?"
MESSAGES = [{"role": "user", "content": "Tell me a story about a brave dragon"}]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, demo_models: Any,
           runtime_image: str, make_zip_module: Any) -> Iterator[ServedPlatform]:
    """The platform, with the pirate adapter deployed as `pirate`: its max_tokens limit,
    32, is under the runtime's own default of 64."""
    with served_platform(tmp_path_factory.mktemp("home"), demo_models,
                         runtime_image) as platform:
        code = base64.b64encode(make_zip_module(demo_models.adapters["pirate"])).decode()
        status, body = platform.request("PUT", "/api/v1/namespaces/_/actions/pirate", {
            "exec": {"kind": "lora", "binary": True, "code": code},
            "limits": {"max_tokens": 32}})
        assert status == 200, body
        yield platform


@pytest.fixture(scope="module")
def make_zip_module() -> Any:
    """`make_zip` for module-scoped fixtures."""
    import io
    import zipfile

    def make(folder: Path) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for path in sorted(p for p in folder.iterdir() if p.is_file()):
                archive.writestr(path.name, path.read_bytes())
        return buffer.getvalue()
    return make


@pytest.fixture(scope="module")
def expected(served: ServedPlatform) -> dict[str, Any]:
    """What a plain blocking invoke answers, greedy: the reference of every client's text."""
    def invoke(**params: Any) -> Any:
        status, result = served.request(
            "POST", "/api/v1/namespaces/_/actions/pirate?blocking=true&result=true", params)
        if status == 202:  # a cold start on a busy machine outlasted the blocking wait
            status, result = wait_for_result(served, result["activationId"])
        assert status == 200, result
        return result
    return {"completion": invoke(prompt=PROMPT, max_tokens=20, temperature=0),
            "chat": invoke(messages=MESSAGES, max_tokens=24, temperature=0)}


def wait_for_result(served: ServedPlatform, activation_id: str) -> tuple[int, Any]:
    """The activation's result once its record is written (polled, for at most 10 minutes)."""
    for _ in range(600):
        status, record = served.request("GET", f"/api/v1/namespaces/_/activations/"
                                               f"{activation_id}")
        if status == 200:
            return 200, record["response"]["result"]
        time.sleep(1)
    raise AssertionError(f"activation {activation_id} never ended")


@pytest.fixture
def client(served: ServedPlatform) -> Iterator[openai.OpenAI]:
    """The `openai` package's sync client on the platform (no retries: errors show at once)."""
    with openai.OpenAI(base_url=served.url + "/v1", api_key=served.credential,
                       max_retries=0) as client:
        yield client


def test_completions_and_chat_match_invoke(client: openai.OpenAI,
                                           expected: dict[str, Any]) -> None:
    completion = client.completions.create(model="pirate", prompt=PROMPT, max_tokens=20,
                                           temperature=0)
    assert completion.object == "text_completion" and completion.model == "pirate"
    assert completion.choices[0].text == expected["completion"]["text"]
    assert completion.choices[0].finish_reason == expected["completion"]["finish_reason"]
    assert completion.usage is not None
    assert completion.usage.completion_tokens == \
        expected["completion"]["usage"]["completion_tokens"]

    chat = client.chat.completions.create(model="guest/pirate", messages=MESSAGES,
                                          max_completion_tokens=24, temperature=0, n=1,
                                          seed=7, user="someone")
    assert chat.object == "chat.completion"
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].message.content == expected["chat"]["text"]
    assert chat.usage is not None and chat.usage.prompt_tokens > 0


def test_documented_stream_loop_has_one_choice_per_chunk(client: openai.OpenAI,
                                                         expected: dict[str, Any]) -> None:
    stream = client.chat.completions.create(model="pirate", messages=MESSAGES, max_tokens=24,
                                            temperature=0, stream=True)
    chunks = list(stream)
    # OpenAI's documented loop: it would raise IndexError on a chunk without choices.
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == expected["chat"]["text"]
    assert all(len(chunk.choices) == 1 for chunk in chunks)
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks][-1] == expected["chat"]["finish_reason"]
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert len([c for c in chunks if c.choices[0].delta.content]) > 1, "not streamed"


def test_stream_sends_usage_only_when_asked(client: openai.OpenAI,
                                            expected: dict[str, Any]) -> None:
    stream = client.completions.create(model="pirate", prompt=PROMPT, max_tokens=20,
                                       temperature=0, stream=True,
                                       stream_options={"include_usage": True})
    chunks = list(stream)
    *content, last = chunks
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == expected["completion"]["usage"]["completion_tokens"]
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(len(c.choices) == 1 and c.usage is None for c in content)
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in content) == expected["completion"]["text"]
    assert content[-1].choices[0].finish_reason == expected["completion"]["finish_reason"]

    plain = list(client.completions.create(model="pirate", prompt=PROMPT, max_tokens=20,
                                           temperature=0, stream=True))
    assert all(len(c.choices) == 1 and c.usage is None for c in plain)


async def test_async_client_streams_and_completes(served: ServedPlatform,
                                                  expected: dict[str, Any]) -> None:
    async with openai.AsyncOpenAI(base_url=served.url + "/v1", api_key=served.credential,
                                  max_retries=0) as client:
        chat = await client.chat.completions.create(model="pirate", messages=MESSAGES,
                                                    max_tokens=24, temperature=0)
        assert chat.choices[0].message.content == expected["chat"]["text"]
        pieces, usage = [], None
        stream = await client.chat.completions.create(
            model="pirate", messages=MESSAGES, max_tokens=24, temperature=0, stream=True,
            stream_options={"include_usage": True})
        async for chunk in stream:
            pieces += [choice.delta.content or "" for choice in chunk.choices]
            usage = chunk.usage or usage
        assert "".join(pieces) == expected["chat"]["text"]
        assert usage is not None and chat.usage is not None
        assert usage.total_tokens == chat.usage.total_tokens
        with pytest.raises(openai.NotFoundError, match="'nobody-here'"):
            await client.completions.create(model="nobody-here", prompt="hi")


def test_models_lists_the_callers_functions(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == ["guest/pirate"]


def test_chat_without_max_tokens_runs_to_the_function_s_limit(client: openai.OpenAI) -> None:
    chat = client.chat.completions.create(model="pirate", messages=MESSAGES, temperature=0,
                                          stop=["\n\n"])
    # Refused by the runtime if its own default (64) applied.
    assert chat.usage is not None and 0 < chat.usage.completion_tokens <= 32
    assert chat.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize(("extra", "param"), [
    ({"n": 2}, "n"),
    ({"logprobs": True, "top_logprobs": 2}, "logprobs"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
    ({"logit_bias": {"42": 5}}, "logit_bias"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"frequency_penalty": 1}, "frequency_penalty"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),  # without stream
    ({"max_tokens": 33}, "max_tokens"),  # over the function's limit of 32
    ({"temperature": 3}, "temperature"),
])
def test_unsupported_chat_parameters_are_refused_by_name(client: openai.OpenAI,
                                                         extra: dict[str, Any],
                                                         param: str) -> None:
    with pytest.raises(openai.BadRequestError, match=f"'{param}'") as refused:
        client.chat.completions.create(model="pirate", messages=MESSAGES,
                                       extra_body=extra)
    assert refused.value.param == param  # type: ignore[attr-defined]
    assert refused.value.type == "invalid_request_error"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("extra", "param"), [
    ({"best_of": 2}, "best_of"), ({"echo": True}, "echo"), ({"suffix": " end"}, "suffix"),
    ({"logprobs": 0}, "logprobs"), ({"top_k": 5}, "top_k"),
])
def test_unsupported_completions_parameters_are_refused_by_name(client: openai.OpenAI,
                                                                extra: dict[str, Any],
                                                                param: str) -> None:
    with pytest.raises(openai.BadRequestError, match=f"'{param}'"):
        client.completions.create(model="pirate", prompt="hi", extra_body=extra)


def test_a_published_package_s_function_serves_another_namespace_billed_to_it(
        served: ServedPlatform, demo_models: Any, make_zip_module: Any,
        expected: dict[str, Any]) -> None:
    from lorafaas.admin import create_namespace_command

    assert served.request("PUT", "/api/v1/namespaces/_/packages/shop",
                          {"publish": True})[0] == 200
    code = base64.b64encode(make_zip_module(demo_models.adapters["pirate"])).decode()
    status, body = served.request("PUT", "/api/v1/namespaces/_/actions/shop/pirate", {
        "exec": {"kind": "lora", "binary": True, "code": code}, "limits": {"max_tokens": 32}})
    assert status == 200, body
    carol = create_namespace_command(served.settings, "carol")
    with openai.OpenAI(base_url=served.url + "/v1", api_key=carol, max_retries=0) as client:
        completion = client.completions.create(model="/guest/shop/pirate", prompt=PROMPT,
                                               max_tokens=20, temperature=0)
        assert completion.choices[0].text == expected["completion"]["text"]
        # Guest's default package is guest's alone, as the REST invoke has it.
        with pytest.raises(openai.NotFoundError, match="do not have access"):
            client.completions.create(model="/guest/pirate", prompt="hi")
    # The caller's activation, in the caller's namespace: what its usage is billed by.
    status, listed = served.request("GET", "/api/v1/namespaces/_/activations", credential=carol)
    assert status == 200 and [(a["namespace"], a["name"]) for a in listed] == [
        ("carol", "pirate")], listed


def test_errors_have_openai_shape_under_v1_only(served: ServedPlatform,
                                                client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="The model 'absent' does not exist") as lost:
        client.chat.completions.create(model="absent", messages=MESSAGES)
    assert lost.value.code == "model_not_found"  # type: ignore[attr-defined]
    with pytest.raises(openai.NotFoundError, match="'bob/pirate'"):
        client.completions.create(model="bob/pirate", prompt="hi")
    with openai.OpenAI(base_url=served.url + "/v1", api_key="nobody:nothing",
                       max_retries=0) as stranger, \
            pytest.raises(openai.AuthenticationError, match="authentication is invalid"):
        stranger.models.list()

    status, body = served.request("POST", "/v1/chat/completions",
                                  {"model": "pirate", "messages": MESSAGES, "n": 3})
    assert status == 400
    assert body == {"error": {"message": body["error"]["message"],
                              "type": "invalid_request_error", "param": "n",
                              "code": "unsupported_parameter"}}
    status, body = served.request("GET", "/v1/nothing-here")
    assert status == 404 and body["error"]["message"] == "Invalid URL (GET /v1/nothing-here)"
    status, body = served.request("GET", "/v1/models", credential="nobody:nothing")
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    # /api keeps OpenWhisk's shape.
    status, body = served.request("GET", "/api/v1/namespaces/_/actions/absent")
    assert status == 404 and isinstance(body["error"], str) and "code" in body


def test_langchain_chat_openai_invokes_and_streams(served: ServedPlatform,
                                                   expected: dict[str, Any]) -> None:
    from langchain_openai import ChatOpenAI

    # Our own HTTP client, closed at the end (LangChain's default one is cached for good).
    with openai.DefaultHttpxClient() as http_client:
        llm = ChatOpenAI(model="pirate", base_url=served.url + "/v1",
                         api_key=served.credential, max_tokens=24, temperature=0,
                         max_retries=0, http_client=http_client)
        message = llm.invoke(MESSAGES[0]["content"])
        assert message.content == expected["chat"]["text"]
        assert message.usage_metadata is not None
        assert message.usage_metadata["output_tokens"] == \
            expected["chat"]["usage"]["completion_tokens"]
        pieces = [chunk.content for chunk in llm.stream(MESSAGES[0]["content"])]
    assert "".join(str(p) for p in pieces) == expected["chat"]["text"]
    assert len([p for p in pieces if p]) > 1


def test_litellm_completion_and_stream(served: ServedPlatform,
                                       expected: dict[str, Any]) -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import
    import litellm

    common = {"model": "openai/pirate", "api_base": served.url + "/v1",
              "api_key": served.credential, "messages": MESSAGES, "max_tokens": 24,
              "temperature": 0}
    # Our own client, closed at the end (LiteLLM caches the ones it makes).
    with openai.OpenAI(base_url=served.url + "/v1", api_key=served.credential,
                       max_retries=0) as client:
        response = litellm.completion(**common, client=client)
        assert response.choices[0].message.content == expected["chat"]["text"]
        assert response.usage.completion_tokens == \
            expected["chat"]["usage"]["completion_tokens"]
        stream = litellm.completion(**common, stream=True, client=client)
        assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == \
            expected["chat"]["text"]
        with pytest.raises(litellm.BadRequestError, match="n=1"):
            litellm.completion(**common, n=2, client=client)
