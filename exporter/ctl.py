"""`orchestrator-exporter ctl`: commands and the audit trail from a shell, like amtool.

Each subcommand is one API call; the answer is printed as JSON (one object per line for lists),
and an error answer as `error: CODE: message`, with exit code 1. Which exporter and which token
(`add_connection_flags`, `api_client`) is shared with the other commands that call the API
(`tail`, `top` in exporter/terminal.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Final
from urllib.parse import quote

import httpx
import orjson

SCOPE_FLAGS = ("role", "model", "task_type", "workflow", "source")
DEFAULT_URL: Final = "http://127.0.0.1:8088"


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """`--url` and `--token`: which exporter to call, and as whom."""
    parser.add_argument("--url", default=None,
                        help=f"the exporter (EXPORTER_URL, default {DEFAULT_URL})")
    parser.add_argument("--token", default=None, help="bearer token (EXPORTER_TOKEN, else "
                        "EXPORTER_ADMIN_TOKEN)")


def exporter_url(arguments: argparse.Namespace) -> str:
    """The `--url` given, else EXPORTER_URL, else the default."""
    url: str = arguments.url or os.environ.get("EXPORTER_URL") or DEFAULT_URL
    return url.rstrip("/")


def api_client(arguments: argparse.Namespace,
               timeout: float | httpx.Timeout = 30.0) -> httpx.Client:
    """A client of the exporter that `add_connection_flags` named, with its bearer token."""
    token = arguments.token or os.environ.get("EXPORTER_TOKEN") \
        or os.environ.get("EXPORTER_ADMIN_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=exporter_url(arguments), headers=headers, timeout=timeout,
                        trust_env=False)


def error_text(response: httpx.Response) -> str:
    """An error answer as `CODE: message` (the API's error shape), else status and body."""
    body = _json_or_none(response)
    if isinstance(body, dict):
        return f"{body.get('code', response.status_code)}: {body.get('message', response.text)}"
    return f"{response.status_code}: {response.text}"


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def add_parser(commands: Any) -> None:
    """The `ctl` subcommand and its own subcommands."""
    ctl = commands.add_parser("ctl", help="issue and inspect commands, read the audit trail")
    add_connection_flags(ctl)
    verbs = ctl.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("commands", help="list commands, oldest first")
    listing.add_argument("--status")
    listing.add_argument("--kind")
    listing.add_argument("--limit", type=int, default=100)
    verbs.add_parser("command", help="show one command").add_argument("id")
    issue = verbs.add_parser("issue", help="issue a command of any kind")
    issue.add_argument("kind")
    issue.add_argument("--target", action="append", default=[], metavar="KEY=VALUE")
    issue.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE")
    _common(issue)
    cancel = verbs.add_parser("cancel-task", help="cancel a task")
    cancel.add_argument("task_id")
    _common(cancel)
    for verb in ("pause", "resume"):
        scoped = verbs.add_parser(verb, help=f"fleet.{verb}, scoped like a budget")
        for flag in SCOPE_FLAGS:
            scoped.add_argument(f"--{flag.replace('_', '-')}", dest=flag)
        _common(scoped)
    audit = verbs.add_parser("audit", help="the audit trail (admin)")
    audit.add_argument("--action")
    audit.add_argument("--token-name", dest="token_name")
    audit.add_argument("--since", type=float)
    audit.add_argument("--limit", type=int, default=100)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ttl", type=float, default=None, help="seconds (default 300)")
    parser.add_argument("--key", default=None, help="idempotency key")


def run(arguments: argparse.Namespace) -> int:
    with api_client(arguments) as client:
        try:
            response = _call(client, arguments)
        except httpx.HTTPError as error:
            print(f"error: cannot reach {exporter_url(arguments)}: {error}", file=sys.stderr)
            return 1
    return _show(response)


def _call(client: httpx.Client, arguments: argparse.Namespace) -> httpx.Response:
    verb = arguments.verb
    if verb == "commands":
        return client.get("/api/v1/commands", params=_present(
            status=arguments.status, kind=arguments.kind, limit=arguments.limit))
    if verb == "command":
        return client.get(f"/api/v1/commands/{quote(arguments.id, safe='')}")
    if verb == "audit":
        return client.get("/api/v1/audit", params=_present(
            action=arguments.action, token=arguments.token_name, since=arguments.since,
            limit=arguments.limit))
    if verb == "cancel-task":
        return client.post(f"/api/v1/tasks/{quote(arguments.task_id, safe='')}/cancel",
                           json=_present(ttl_seconds=arguments.ttl,
                                         idempotency_key=arguments.key))
    if verb in ("pause", "resume"):
        target = _present(**{flag: getattr(arguments, flag) for flag in SCOPE_FLAGS})
        body: dict[str, Any] = {"kind": f"fleet.{verb}", "target": target}
    else:
        body = {"kind": arguments.kind, "target": _pairs(arguments.target),
                "args": _pairs(arguments.arg)}
    body.update(_present(ttl_seconds=arguments.ttl, idempotency_key=arguments.key))
    return client.post("/api/v1/commands", json=body)


def _show(response: httpx.Response) -> int:
    if not response.is_success:
        print(f"error: {error_text(response)}", file=sys.stderr)
        return 1
    body = _json_or_none(response)
    items = body.get("items") if isinstance(body, dict) and "items" in body else None
    for item in items if items is not None else [body]:
        sys.stdout.write(orjson.dumps(item).decode() + "\n")
    return 0


def _present(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _pairs(pairs: list[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator:
            raise SystemExit(f"error: {pair!r} is not KEY=VALUE")
        parsed[key] = value
    return parsed
