"""How to call a function, as the function page shows it: curl, OpenAI's Python client, the CLI."""

from __future__ import annotations

import json
import shlex

from lorafaas.console.pages import Snippet

KEY_PLACEHOLDER = "$LORAFAAS_KEY"  # the namespace's `uuid:key`; the page never shows the key
EXAMPLE_PROMPT = "Tell me about the weather today."


def call_snippets(base_url: str, namespace: str, name: str, max_tokens: int) -> list[Snippet]:
    """curl against `/v1/completions`, the OpenAI Python client, and `lorafaas action invoke`."""
    model = f"{namespace}/{name}"
    body = json.dumps({"model": model, "prompt": EXAMPLE_PROMPT,
                       "max_tokens": min(64, max_tokens)})
    curl = (f"curl {base_url}/v1/completions \\\n"
            f"  -H \"Authorization: Bearer {KEY_PLACEHOLDER}\" \\\n"
            f"  -H \"Content-Type: application/json\" \\\n"
            f"  -d {shlex.quote(body)}")
    python = ("import os\nfrom openai import OpenAI\n\n"
              f"client = OpenAI(base_url=\"{base_url}/v1\", api_key=os.environ[\"LORAFAAS_KEY\"])\n"
              "response = client.chat.completions.create(\n"
              f"    model=\"{model}\",\n"
              f"    messages=[{{\"role\": \"user\", \"content\": \"{EXAMPLE_PROMPT}\"}}],\n"
              f"    max_tokens={min(64, max_tokens)},\n)\n"
              "print(response.choices[0].message.content)")
    cli = (f"lorafaas property set --apihost {base_url} --auth {KEY_PLACEHOLDER}\n"
           f"lorafaas action invoke {shlex.quote(name)} --result "
           f"-p prompt {shlex.quote(EXAMPLE_PROMPT)} -p max_tokens {min(64, max_tokens)}")
    return [Snippet("curl", "curl", curl), Snippet("python", "OpenAI Python", python),
            Snippet("cli", "CLI", cli)]


def code_snippets(base_url: str, name: str) -> list[Snippet]:
    """A code action's or sequence's: curl against the REST API, and `lorafaas action invoke`."""
    curl = (f"curl -u {KEY_PLACEHOLDER} -X POST \\\n"
            f"  '{base_url}/api/v1/namespaces/_/actions/{name}?blocking=true&result=true' \\\n"
            f"  -H \"Content-Type: application/json\" -d '{{\"name\": \"world\"}}'")
    cli = (f"lorafaas property set --apihost {base_url} --auth {KEY_PLACEHOLDER}\n"
           f"lorafaas action invoke {shlex.quote(name)} --result -p name world")
    return [Snippet("curl", "curl", curl), Snippet("cli", "CLI", cli)]
