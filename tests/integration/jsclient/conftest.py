"""Fixtures of the JS-client tests: the installed client, and one platform for the whole
package (every module here), served on a real port (tests.integration.served) that the
client drives.

A new resource's tests go in a module here and ask for `ow` (see harness.JsClient); each
module names its entities with its own prefix, since they all share the platform.
"""

from __future__ import annotations

import zipfile
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


@pytest.fixture(scope="package")
def served(tmp_path_factory: pytest.TempPathFactory, demo_models: Any,
           runtime_image: str) -> Iterator[ServedPlatform]:
    """The platform on 127.0.0.1 for every module of the package (one start, one backbone);
    slow container starts allowed, as a machine shared by other test runs has them."""
    with served_platform(tmp_path_factory.mktemp("home"), demo_models, runtime_image,
                         container_start_timeout_s=300) as platform:
        yield platform


@pytest.fixture(scope="package")
def ow(js_modules: Path, served: ServedPlatform) -> JsClient:
    """The JS client for the package's platform, with the guest's `uuid:key`."""
    return JsClient(js_modules, served.url, served.credential)


@pytest.fixture(scope="package")
def adapter_zip(demo_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pirate adapter as a zip file."""
    path = tmp_path_factory.mktemp("zips") / "pirate.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(p for p in demo_models.adapters["pirate"].iterdir() if p.is_file()):
            archive.write(file, file.name)
    return path
