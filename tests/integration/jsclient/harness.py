"""The official OpenWhisk JavaScript client (`openwhisk` on npm) driven from pytest.

`install_client` installs the pinned package with the machine's npm into a cache folder
outside the repository, keyed by version, and reuses it without the network once there.
`JsClient.run` runs a small script against a platform: an async function body that gets
`ow` (the client, for the platform's host and key), `args` (JSON from the test) and
`helpers` (run.js: `record(ow, id)` waits for an activation's record, `invoke(ow, options)`
is a blocking invoke's record, `attempt(promise)` is `{value}` or the refusal's
`{statusCode, body}`, `fetch(path, init)` is a plain HTTP request), and whose return value
comes back as JSON; a client error comes back as `JsError`, with the status and body the
client saw. One script makes many calls: each node start costs about a second.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OPENWHISK_VERSION = "3.21.9"  # the 3.21 line the issue was measured with
CACHE = Path(os.path.expanduser("~/.cache/lorafaas-npm"))
RUNNER = Path(__file__).with_name("run.js")
INSTALL_TIMEOUT_S = 600  # a bound for a hung npm, not a measure


# A python:3 action that answers its arguments (and logs their names): what each module's
# parameter merges are read from.
ECHO = """import json

def main(args):
    print("echo " + json.dumps(sorted(args)))
    return args
"""


class NpmMissing(Exception):
    """No node or npm on this machine: the JS client tests cannot run."""


class JsError(Exception):
    """The client rejected a call: its HTTP status and the body it got."""

    def __init__(self, status: int | None, body: Any, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.body = body
        self.message = message


def install_client(version: str = OPENWHISK_VERSION, cache: Path = CACHE) -> Path:
    """The `node_modules` folder holding `openwhisk@version`, installed once per version."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise NpmMissing("node and npm are needed for the OpenWhisk JS client tests")
    folder = cache / f"openwhisk-{version}"
    modules = folder / "node_modules"
    if _installed_version(modules) == version:
        return modules  # cached: no network needed
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([npm, "install", "--prefix", str(folder), f"openwhisk@{version}",
                    "--no-audit", "--no-fund", "--no-save", "--loglevel=error"],
                   check=True, capture_output=True, timeout=INSTALL_TIMEOUT_S)
    if _installed_version(modules) != version:
        raise RuntimeError(f"npm did not install openwhisk@{version} into {folder}")
    return modules


def _installed_version(modules: Path) -> str | None:
    try:
        manifest = json.loads((modules / "openwhisk" / "package.json").read_text())
    except (OSError, ValueError):
        return None
    return str(manifest.get("version"))


@dataclass(frozen=True)
class JsClient:
    """The JS client configured for one platform (apihost, `uuid:key`, ignore_certs)."""

    modules: Path
    apihost: str
    api_key: str
    timeout_s: float = 900.0  # a bound for a hung script (cold starts included)

    def run(self, body: str, **args: Any) -> Any:
        """Run `body` as `async (ow, args, helpers) => { body }` (helpers: run.js); its
        JSON result, or JsError."""
        with tempfile.TemporaryDirectory(prefix="owjs-") as folder:
            script = Path(folder) / "script.js"
            script.write_text(f"module.exports = async (ow, args, helpers) => {{\n{body}\n}}\n")
            request = {"script": str(script), "apihost": self.apihost,
                       "api_key": self.api_key, "args": args}
            done = subprocess.run(["node", str(RUNNER)], input=json.dumps(request), text=True,
                                  check=False, capture_output=True, timeout=self.timeout_s,
                                  env={**os.environ, "NODE_PATH": str(self.modules)})
        if done.returncode != 0:
            raise RuntimeError(f"node failed ({done.returncode}): {done.stderr[-2000:]}")
        answer = json.loads(done.stdout)
        if "error" in answer:
            error = answer["error"]
            raise JsError(error.get("statusCode"), error.get("body"), error.get("message", ""))
        return answer.get("value")
