"""Qualified entity names, `namespace/package/action`, parsed and written as OpenWhisk does.

OpenWhisk's forms of an action's name (`wsk`, its JavaScript client, its controller):
`action` and `pkg/action` are in the caller's namespace, `/ns/action` and `/ns/pkg/action`
name the namespace, and `_` as the namespace is the caller's own. `str()` gives OpenWhisk's
`FullyQualifiedEntityName` string, `ns/pkg/action` without the leading slash: the form every
key, label and record of the platform is written in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lorafaas.errors import BadRequest

# OpenWhisk's EntityName: a word character, then word characters, spaces, '@', '.' or '-',
# not ending in a space (Java's \w: ASCII only); at most 256 characters.
ENTITY_NAME = re.compile(r"\A(?:\w|\w[\w@ .-]*[\w@.-])\Z", re.ASCII)
MAX_NAME_LENGTH = 256
DEFAULT_NAMESPACE = "_"  # the caller's own namespace, in a path or a name


class InvalidName(BadRequest):
    """A name, or one of its parts, that OpenWhisk would refuse."""


def check_entity_name(value: str, what: str) -> str:
    """The value when it is a valid entity name, else InvalidName naming `what` and the rule."""
    if len(value) > MAX_NAME_LENGTH or not ENTITY_NAME.match(value):
        raise InvalidName(f"{what} {value[:80]!r} is not a valid name: it must start with a "
                          "letter, digit or '_', continue with those, spaces, '@', '.' or '-', "
                          f"not end with a space, and be at most {MAX_NAME_LENGTH} characters",
                          param=what)
    return value


@dataclass(frozen=True, order=True)
class QualifiedName:
    """An entity's name: its namespace, its package (None: the default package), its name.

    The constructor does not check: build names from untrusted text with `of`, `parse` or
    `from_path`, which refuse parts OpenWhisk would refuse.
    """

    namespace: str
    package: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.relative}"

    @property
    def relative(self) -> str:
        """The name inside its namespace: `pkg/action`, or `action` in the default package."""
        return self.name if self.package is None else f"{self.package}/{self.name}"

    @property
    def absolute(self) -> str:
        """OpenWhisk's fully qualified form with its leading slash: `/ns/pkg/action`."""
        return f"/{self}"

    @property
    def path(self) -> str:
        """The entity's `namespace` field in OpenWhisk's JSON: `ns`, or `ns/pkg` in a package."""
        return self.namespace if self.package is None else f"{self.namespace}/{self.package}"

    def in_namespace(self, namespace: str) -> QualifiedName:
        """The same package and name in another namespace (a binding's caller, say)."""
        return QualifiedName(namespace, self.package, self.name)

    @classmethod
    def of(cls, namespace: str, package: str | None, name: str) -> QualifiedName:
        """A name from its parts, each checked."""
        check_entity_name(namespace, "namespace")
        if package is not None:
            check_entity_name(package, "package")
        return cls(namespace, package, check_entity_name(name, "name"))

    @classmethod
    def parse(cls, text: str, default_namespace: str) -> QualifiedName:
        """`action`, `pkg/action`, `/ns/action` or `/ns/pkg/action` (`_`: `default_namespace`)."""
        absolute = text.startswith("/")
        parts = text[1:].split("/") if absolute else text.split("/")
        if absolute and len(parts) in (2, 3):
            namespace, rest = parts[0], parts[1:]
        elif not absolute and len(parts) in (1, 2):
            namespace, rest = default_namespace, parts
        else:
            raise InvalidName(f"{text[:120]!r} is not a valid qualified name: 'action', "
                              "'package/action', '/namespace/action' or "
                              "'/namespace/package/action' expected", param="name")
        if namespace == DEFAULT_NAMESPACE:
            namespace = default_namespace
        package = rest[0] if len(rest) == 2 else None
        return cls.of(namespace, package, rest[-1])

    @classmethod
    def from_path(cls, text: str) -> QualifiedName:
        """The inverse of `str()`: `ns/action` or `ns/pkg/action`."""
        parts = text.split("/")
        if len(parts) not in (2, 3):
            raise InvalidName(f"{text[:120]!r} is not 'namespace/action' or "
                              "'namespace/package/action'", param="name")
        return cls.of(parts[0], parts[1] if len(parts) == 3 else None, parts[-1])
