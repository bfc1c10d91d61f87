"""The `trigger` and `rule` sub-commands of `lorafaas`, as wsk spells them."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorafaas.client import event_commands as verbs

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
Leaf = Callable[..., argparse.ArgumentParser]


def add_event_commands(subcommands: Subparsers, leaf: Leaf, common: argparse.ArgumentParser,
                       params: Callable[[argparse.ArgumentParser], None],
                       paging: Callable[[argparse.ArgumentParser, str], None]) -> None:
    """Add `trigger` and `rule` (the leaf, parameter and paging helpers are the parser's)."""
    _add_trigger(subcommands.add_parser("trigger", help="work with triggers"), leaf, common,
                 params, paging)
    _add_rule(subcommands.add_parser("rule", help="work with rules"), leaf, common, paging)


def _add_trigger(parser: argparse.ArgumentParser, leaf: Leaf, common: Any,
                 params: Callable[[argparse.ArgumentParser], None],
                 paging: Callable[[argparse.ArgumentParser, str], None]) -> None:
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, verb, text in (("create", verbs.trigger_create, "create new trigger"),
                             ("update", verbs.trigger_update,
                              "update an existing trigger, or create it")):
        command = leaf(sub, name, verb, text, common)
        command.add_argument("name", metavar="TRIGGER_NAME")
        params(command)
        command.add_argument("-a", "--annotation", nargs=2, action="append",
                             metavar=("KEY", "VALUE"), help="an annotation (repeatable)")
        command.add_argument("-A", "--annotation-file", type=Path, metavar="FILE",
                             help="a JSON object of annotations")
        command.add_argument("-f", "--feed", metavar="ACTION_NAME",
                             help="the trigger's feed: /whisk.system/alarms/alarm (-p cron "
                                  "...) or /whisk.system/alarms/interval (-p minutes N)")
    fire = leaf(sub, "fire", verbs.trigger_fire, "fire trigger event", common)
    fire.add_argument("name", metavar="TRIGGER_NAME")
    params(fire)
    for name, verb, text in (("get", verbs.trigger_get, "get trigger"),
                             ("delete", verbs.trigger_delete, "delete trigger")):
        leaf(sub, name, verb, text, common).add_argument("name", metavar="TRIGGER_NAME")
    listing = leaf(sub, "list", verbs.trigger_list, "list all triggers", common)
    listing.add_argument("namespace", metavar="NAMESPACE", nargs="?")
    paging(listing, "triggers")


def _add_rule(parser: argparse.ArgumentParser, leaf: Leaf, common: Any,
              paging: Callable[[argparse.ArgumentParser, str], None]) -> None:
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, verb, text in (("create", verbs.rule_create, "create new rule"),
                             ("update", verbs.rule_update, "update an existing rule")):
        command = leaf(sub, name, verb, text, common)
        command.add_argument("name", metavar="RULE_NAME")
        command.add_argument("trigger", metavar="TRIGGER_NAME")
        command.add_argument("action", metavar="ACTION_NAME")
    for name, verb, text in (("enable", verbs.rule_enable, "enable rule"),
                             ("disable", verbs.rule_disable, "disable rule"),
                             ("get", verbs.rule_get, "get rule"),
                             ("delete", verbs.rule_delete, "delete rule")):
        leaf(sub, name, verb, text, common).add_argument("name", metavar="RULE_NAME")
    listing = leaf(sub, "list", verbs.rule_list, "list all rules", common)
    listing.add_argument("namespace", metavar="NAMESPACE", nargs="?")
    paging(listing, "rules")
