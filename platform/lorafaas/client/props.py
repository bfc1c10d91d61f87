"""Where the client finds its API host and key: flags, then environment, then the props file.

The props file is the one `lorafaas serve` writes (`$LORAFAAS_HOME/props`, APIHOST= and
AUTH= lines, as OpenWhisk's `.wskprops`); `lorafaas property set` writes it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lorafaas.props import read_props, write_props

# Environment variables that override the props file (the flags override both).
APIHOST_ENV = "LORAFAAS_APIHOST"
AUTH_ENV = "LORAFAAS_AUTH"
DEFAULT_NAMESPACE = "_"


@dataclass(frozen=True)
class ClientConfig:
    """The resolved client settings."""

    props_file: Path
    apihost: str
    auth: str
    namespace: str


def load_config(props_file: Path, environ: Mapping[str, str], apihost: str | None,
                auth: str | None) -> ClientConfig:
    """Resolve each value from the flag, the environment, or the props file, in that order."""
    props = read_props(props_file)
    return ClientConfig(
        props_file=props_file,
        apihost=apihost or environ.get(APIHOST_ENV) or props.get("APIHOST", ""),
        auth=auth or environ.get(AUTH_ENV) or props.get("AUTH", ""),
        namespace=props.get("NAMESPACE") or DEFAULT_NAMESPACE)


def save_props(props_file: Path, values: dict[str, str]) -> None:
    """Set some keys of the props file, keeping the others."""
    write_props(props_file, values)
