"""Qualified names as OpenWhisk writes them: parsing, checks of each part, canonical form."""

from __future__ import annotations

import pytest

from lorafaas.names import InvalidName, QualifiedName


@pytest.mark.parametrize(("text", "expected"), [
    ("echo", QualifiedName("guest", None, "echo")),
    ("utils/echo", QualifiedName("guest", "utils", "echo")),
    ("/whisk.system/echo", QualifiedName("whisk.system", None, "echo")),
    ("/whisk.system/utils/echo", QualifiedName("whisk.system", "utils", "echo")),
    ("/_/echo", QualifiedName("guest", None, "echo")),
    ("/_/utils/echo", QualifiedName("guest", "utils", "echo")),
    ("my action@2.x", QualifiedName("guest", None, "my action@2.x")),
])
def test_openwhisk_forms_parse(text: str, expected: QualifiedName) -> None:
    assert QualifiedName.parse(text, "guest") == expected


def test_str_is_the_canonical_form_and_inverts() -> None:
    name = QualifiedName.parse("/ns/pkg/act", "guest")
    assert str(name) == "ns/pkg/act"
    assert name.absolute == "/ns/pkg/act"
    assert name.relative == "pkg/act"
    assert name.path == "ns/pkg"
    assert QualifiedName.from_path(str(name)) == name
    plain = QualifiedName.parse("act", "ns")
    assert (str(plain), plain.relative, plain.path) == ("ns/act", "act", "ns")
    assert QualifiedName.from_path("ns/act") == plain
    assert plain.in_namespace("other") == QualifiedName("other", None, "act")


@pytest.mark.parametrize(("text", "names"), [
    ("", "name ''"),
    ("a/b/c", "not a valid qualified name"),
    ("/ns", "not a valid qualified name"),
    ("/ns/a/b/c", "not a valid qualified name"),
    ("pkg/", "name ''"),
    ("/ns//act", "package ''"),
    ("bad!/act", "package 'bad!'"),
    ("/bad ns /act", "namespace 'bad ns '"),
    (" lead", "name ' lead'"),
    ("trail ", "name 'trail '"),
    ("café", "name 'café'"),  # OpenWhisk's rule is Java's \\w: ASCII only
    ("x" * 257, "at most 256 characters"),
])
def test_bad_names_are_refused_naming_the_part(text: str, names: str) -> None:
    with pytest.raises(InvalidName, match=names.replace("(", r"\(")) as error:
        QualifiedName.parse(text, "guest")
    assert error.value.status == 400


def test_from_path_takes_two_or_three_parts_only() -> None:
    for text in ("act", "a/b/c/d", "/ns/act"):
        with pytest.raises(InvalidName):
            QualifiedName.from_path(text)


def test_names_order_and_hash_by_their_parts() -> None:
    names = {QualifiedName("b", None, "x"), QualifiedName("a", "p", "x"),
             QualifiedName("a", "p", "x")}
    assert sorted(names) == [QualifiedName("a", "p", "x"), QualifiedName("b", None, "x")]
