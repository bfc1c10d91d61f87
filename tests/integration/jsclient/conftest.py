"""Fixtures of the JS-client tests: the installed client, and one platform per module
served on a real port (tests.integration.served) that the client drives.

A new resource's tests go in a module here and ask for `ow` (see harness.JsClient).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.jsclient.harness import JsClient, NpmMissing, install_client
from tests.integration.served import ServedPlatform, served_platform


@pytest.fixture(scope="session")
def js_modules() -> Path:
    """`node_modules` with the pinned `openwhisk` package (installed once, then cached)."""
    try:
        return install_client()
    except NpmMissing as missing:
        pytest.skip(str(missing))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, demo_models: Any,
           runtime_image: str) -> Iterator[ServedPlatform]:
    """The platform on 127.0.0.1 for the whole module."""
    with served_platform(tmp_path_factory.mktemp("home"), demo_models,
                         runtime_image) as platform:
        yield platform


@pytest.fixture(scope="module")
def ow(js_modules: Path, served: ServedPlatform) -> JsClient:
    """The JS client for the module's platform, with the guest's `uuid:key`."""
    return JsClient(js_modules, served.url, served.credential)
