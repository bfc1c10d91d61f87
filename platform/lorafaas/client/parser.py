"""The wsk-style sub-commands of `lorafaas` (`action`, `activation`, `property`), `backbone
list`, and their run."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from lorafaas.client import commands, package_commands
from lorafaas.client.event_parser import add_event_commands
from lorafaas.client.http import ApiClient
from lorafaas.client.output import CommandError, Output
from lorafaas.client.props import load_config
from lorafaas.settings import SettingsError, load_settings

Verb = Callable[[commands.Context, argparse.Namespace], Output | Iterable[Output]]
if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
VERB_KEY = "client_verb"
CLIENT_COMMANDS = ("action", "activation", "package", "property", "backbone", "trigger",
                   "rule")


def add_global_options(parser: argparse.ArgumentParser, suppressed: bool = False) -> None:
    """wsk's global flags; a sub-command adds them again `suppressed` (absent unless given)."""
    flag_default: object = argparse.SUPPRESS if suppressed else False
    value_default: object = argparse.SUPPRESS if suppressed else None
    parser.add_argument("--json", action="store_true", default=flag_default,
                        help="print JSON instead of wsk's text")
    parser.add_argument("--apihost", metavar="HOST", default=value_default,
                        help="API host (overrides LORAFAAS_APIHOST and the props file)")
    parser.add_argument("-u", "--auth", metavar="KEY", default=value_default,
                        help="authorization uuid:key (overrides LORAFAAS_AUTH and the props file)")
    parser.add_argument("-i", "--insecure", action="store_true", default=flag_default,
                        help="accepted for wsk compatibility; ignored")


def _global_options() -> argparse.ArgumentParser:
    # A leaf's own copy of the global flags: SUPPRESS keeps a flag given before the
    # sub-command from being reset by the leaf's default.
    options = argparse.ArgumentParser(add_help=False)
    add_global_options(options, suppressed=True)
    return options


def add_client_commands(subcommands: Subparsers) -> None:
    """Add `action`, `activation` and `property` to the `lorafaas` parser."""
    common = _global_options()
    _add_action_commands(subcommands.add_parser("action", help="work with actions"), common)
    _add_package_commands(subcommands.add_parser("package", help="work with packages"), common)
    _add_activation_commands(subcommands.add_parser("activation",
                                                    help="work with activations"), common)
    _add_property_commands(subcommands.add_parser("property", help="work with properties"),
                           common)
    backbone = subcommands.add_parser("backbone", help="the backbones the platform serves")
    verbs = backbone.add_subparsers(dest="verb", required=True, metavar="VERB")
    _leaf(verbs, "list", commands.backbone_list,
          "list the backbones (an action's `backbone` annotation names one)", common)
    add_event_commands(subcommands, _leaf, common, _param_options, _paging_options)


def _leaf(verbs: Subparsers, name: str, verb: Verb, help_text: str,
          common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = verbs.add_parser(name, help=help_text, parents=[common])
    parser.set_defaults(**{VERB_KEY: verb})
    return parser


def _add_action_commands(parser: argparse.ArgumentParser,
                         common: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    create = _leaf(verbs, "create", commands.action_create, "create a new action", common)
    create.add_argument("name", metavar="ACTION_NAME")
    create.add_argument("artifact", metavar="ACTION", type=Path, nargs="?",
                        help="the code: a PEFT adapter folder or .zip (kind lora, optionally "
                             "with __main__.py's main(args, llm)), a .py file (python:3), or "
                             "a .zip with __main__.py and --kind python:3; none with "
                             "--sequence")
    create.add_argument("--overwrite", action="store_true",
                        help="replace the action when it exists (the API's ?overwrite=true)")
    update = _leaf(verbs, "update", commands.action_update,
                   "update an existing action, or create it when it does not exist", common)
    update.add_argument("name", metavar="ACTION_NAME")
    update.add_argument("artifact", metavar="ACTION", type=Path, nargs="?",
                        help="new code (as for create); none: the action's is kept")
    for action_parser in (create, update):
        _action_options(action_parser)
    invoke = _leaf(verbs, "invoke", commands.action_invoke, "invoke action", common)
    invoke.add_argument("name", metavar="ACTION_NAME")
    _param_options(invoke)
    invoke.add_argument("-b", "--blocking", action="store_true", help="blocking invoke")
    invoke.add_argument("-r", "--result", action="store_true",
                        help="blocking invoke; show only the activation result")
    get = _leaf(verbs, "get", commands.action_get, "get action", common)
    get.add_argument("name", metavar="ACTION_NAME")
    get.add_argument("-s", "--summary", action="store_true",
                     help="summarize the action: its kind, components and parameters")
    get.add_argument("-r", "--url", action="store_true", help="get the action's web URL")
    delete = _leaf(verbs, "delete", commands.action_delete, "delete action", common)
    delete.add_argument("name", metavar="ACTION_NAME")
    listing = _leaf(verbs, "list", commands.action_list, "list the actions of a namespace",
                    common)
    listing.add_argument("namespace", metavar="NAMESPACE", nargs="?")
    _paging_options(listing, "actions")
    listing.add_argument("-n", "--name-sort", action="store_true",
                         help="sort the list by name")


def _add_package_commands(parser: argparse.ArgumentParser,
                          common: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    create = _leaf(verbs, "create", package_commands.package_create, "create a new package",
                   common)
    update = _leaf(verbs, "update", package_commands.package_update,
                   "update a package, or create it when it does not exist", common)
    for leaf in (create, update):
        leaf.add_argument("name", metavar="PACKAGE_NAME")
        _package_options(leaf)
        leaf.add_argument("--shared", choices=("yes", "no"),
                          help="publish the package to other namespaces, or not")
    bind = _leaf(verbs, "bind", package_commands.package_bind,
                 "bind parameters to a package (of this namespace, or a shared one)", common)
    bind.add_argument("package", metavar="PACKAGE_NAME")
    bind.add_argument("binding", metavar="BINDING_NAME")
    _package_options(bind)
    get = _leaf(verbs, "get", package_commands.package_get, "get package", common)
    get.add_argument("name", metavar="PACKAGE_NAME")
    get.add_argument("-s", "--summary", action="store_true", help="summarize the package")
    delete = _leaf(verbs, "delete", package_commands.package_delete, "delete package", common)
    delete.add_argument("name", metavar="PACKAGE_NAME")
    listing = _leaf(verbs, "list", package_commands.package_list,
                    "list the packages of a namespace", common)
    listing.add_argument("namespace", metavar="NAMESPACE", nargs="?")
    _paging_options(listing, "packages")


def _package_options(parser: argparse.ArgumentParser) -> None:
    _param_options(parser)
    parser.add_argument("-a", "--annotation", nargs=2, action="append",
                        metavar=("KEY", "VALUE"), help="an annotation (repeatable)")
    parser.add_argument("-A", "--annotation-file", type=Path, metavar="FILE",
                        help="a JSON object of annotations")


def _action_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", help="the action kind: lora, python:3 (python:default); "
                                       "inferred from a .py file or an adapter")
    parser.add_argument("--main", metavar="MAIN",
                        help="the name of the action's entry function (default: main)")
    parser.add_argument("--sequence", metavar="ACTIONS",
                        help="a sequence of these actions (comma-separated names; a name "
                             "without /NAMESPACE/ is in the sequence's namespace)")
    parser.add_argument("--web", metavar="true|false|raw",
                        help="make the action a web action (or not; raw: it reads the raw "
                             "HTTP request); its parameters are made final")
    _param_options(parser)
    parser.add_argument("-a", "--annotation", nargs=2, action="append",
                        metavar=("KEY", "VALUE"), help="an annotation (repeatable)")
    parser.add_argument("-A", "--annotation-file", type=Path, metavar="FILE",
                        help="a JSON object of annotations")
    parser.add_argument("-t", "--timeout", type=int, metavar="LIMIT",
                        help="the timeout limit in milliseconds")
    parser.add_argument("-m", "--memory", type=int, metavar="LIMIT",
                        help="the memory limit in MB of a container")
    parser.add_argument("-c", "--concurrency", type=int, metavar="LIMIT",
                        help="the concurrent activations limit")
    parser.add_argument("-l", "--logsize", dest="logs", type=int, metavar="LIMIT",
                        help="the log size limit in MB")


def _param_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                        help="a parameter, its value JSON when it parses (repeatable)")
    parser.add_argument("-P", "--param-file", type=Path, metavar="FILE",
                        help="a JSON object of parameters")


def _paging_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("-l", "--limit", type=int, default=30,
                        help=f"how many {what} (at most 200)")
    parser.add_argument("-s", "--skip", type=int, default=0,
                        help=f"exclude the first SKIP {what}")


def _add_activation_commands(parser: argparse.ArgumentParser,
                             common: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    listing = _leaf(verbs, "list", commands.activation_list, "list activations", common)
    listing.add_argument("name", metavar="NAMESPACE_OR_NAME", nargs="?")
    _paging_options(listing, "activations")
    listing.add_argument("-f", "--full", action="store_true",
                         help="include full activation description")
    for name, verb, help_text in (
            ("get", commands.activation_get, "get activation"),
            ("logs", commands.activation_logs, "get the logs of an activation"),
            ("result", commands.activation_result, "get the result of an activation")):
        leaf = _leaf(verbs, name, verb, help_text, common)
        leaf.add_argument("activation_id", metavar="ACTIVATION_ID", nargs="?")
        leaf.add_argument("-l", "--last", action="store_true",
                          help="the last activation")
    poll = _leaf(verbs, "poll", commands.activation_poll,
                 "poll for the logs of new activations (or wait for one activation id)",
                 common)
    poll.add_argument("target", metavar="NAME_OR_ACTIVATION_ID", nargs="?")
    poll.add_argument("-e", "--exit", type=int, default=0, metavar="SECONDS",
                      help="stop polling after SECONDS seconds")
    for unit in ("seconds", "minutes", "hours", "days"):
        poll.add_argument(f"--since-{unit}", type=int, default=0, metavar=unit.upper(),
                          help=f"start polling for activations {unit.upper()} {unit} ago")


def _add_property_commands(parser: argparse.ArgumentParser,
                           common: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    _leaf(verbs, "set", commands.property_set,
          "set properties (--apihost HOST, --auth KEY) in the props file", common)
    shown = argparse.ArgumentParser(add_help=False)
    shown.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    get = _leaf(verbs, "get", commands.property_get, "get properties", shown)
    for key, help_text in (("auth", "authorization key"), ("apihost", "API host"),
                           ("apiversion", "API version"), ("namespace", "namespace"),
                           ("cliversion", "CLI version"), ("apibuild", "API build")):
        get.add_argument(f"--{key}", dest=f"show_{key}", action="store_true", help=help_text)


def is_client_command(args: argparse.Namespace) -> bool:
    """Whether the parsed command is one of the client verbs."""
    return hasattr(args, VERB_KEY)


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """Run the parsed verb; print its output (or `error: ...` on stderr); the exit code."""
    environ = os.environ if environ is None else environ
    try:
        props_file = load_settings(environ).props_file
        config = load_config(props_file, environ, args.apihost, args.auth)
        with ApiClient(config.apihost, config.auth) as api:
            return emit(getattr(args, VERB_KEY)(commands.Context(api, config), args), args.json)
    except (CommandError, SettingsError) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130


def emit(result: Output | Iterable[Output], as_json: bool) -> int:
    """Print outputs as they come; 1 when one of them is a failure, else 0."""
    streaming = not isinstance(result, Output)
    outputs: Iterable[Output] = result if isinstance(result, Iterable) else [result]
    failed = False
    for output in outputs:
        failed = failed or output.failed
        stream = sys.stderr if output.failed else sys.stdout
        if as_json and output.data is not None:
            indent = None if streaming else 2
            print(json.dumps(output.data, indent=indent, ensure_ascii=False), file=stream,
                  flush=True)
        elif not as_json and output.text:
            print(output.text, file=stream, flush=True)
    return 1 if failed else 0
