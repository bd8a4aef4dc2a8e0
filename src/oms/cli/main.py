"""The ``oms`` command: it calls the same services as the API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.table import Table

from oms import __version__
from oms.bootstrap import Services, build_services, prepare_schema
from oms.config import Settings
from oms.domain.access import Role
from oms.domain.errors import DomainError

app = typer.Typer(
    name="oms",
    help="Omni-channel order management system.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(apikey_app, name="apikey")
sourcing_app = typer.Typer(help="Sourcing profiles and rules.", no_args_is_help=True)
app.add_typer(sourcing_app, name="sourcing")

console = Console()


class CliError(Exception):
    """A refusal the CLI reports as one line on stderr, exiting 1."""


def _version(value: bool) -> None:
    if value:
        console.print(f"oms {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Omni-channel order management system."""


def services_from_env() -> Services:
    return build_services(Settings())


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision")] = "head") -> None:
    """Apply database migrations (creates the SQLite file on first use)."""
    from oms.adapters.db import migrate

    services = services_from_env()
    try:
        migrate.upgrade(services.engine, revision)
        console.print(f"database at revision {migrate.current_revision(services.engine)}")
    finally:
        services.close()


@db_app.command("current")
def db_current() -> None:
    """Show the database's schema revision and the one this version needs."""
    from oms.adapters.db import migrate

    services = services_from_env()
    try:
        current = migrate.current_revision(services.engine)
        head = migrate.head_revision(services.engine)
        state = "current" if current == head else "out of date: run 'oms db upgrade'"
        console.print(f"database: {current or 'empty'}; code needs: {head} ({state})")
    finally:
        services.close()


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key")],
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(r.value for r in Role)}")],
    location: Annotated[
        list[str] | None,
        typer.Option(help="Location code a store_associate key is bound to (repeat)"),
    ] = None,
) -> None:
    """Create an API key and print its secret (shown this once)."""
    services = services_from_env()
    try:
        prepare_schema(services.engine)
        created = services.access.create_key(name=name, role=role, location_codes=location or [])
    finally:
        services.close()
    console.print(f"key id: {created.key.key_id}  role: {created.key.role}", highlight=False)
    print(created.secret)


@apikey_app.command("list")
def apikey_list() -> None:
    """List API keys (never their secrets)."""
    services = services_from_env()
    try:
        keys = services.access.list_keys()
    finally:
        services.close()
    table = Table("key id", "name", "role", "locations", "created", "revoked")
    for key in keys:
        table.add_row(
            key.key_id,
            key.name,
            key.role.value,
            ", ".join(sorted(key.location_codes)),
            key.created_at.isoformat(timespec="seconds"),
            key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "",
        )
    console.print(table)


@apikey_app.command("revoke")
def apikey_revoke(key_id: str) -> None:
    """Revoke an API key."""
    services = services_from_env()
    try:
        services.access.revoke_key(key_id)
    finally:
        services.close()
    console.print(f"revoked {key_id}")


@sourcing_app.command("list")
def sourcing_list() -> None:
    """List the sourcing profiles (current versions) and the rules in force."""
    services = services_from_env()
    try:
        prepare_schema(services.engine)
        profiles = services.sourcing.list_profiles()
        rules = services.sourcing.rules()
    finally:
        services.close()
    table = Table("profile", "version", "split", "mode", "changed by", "changed at")
    for stored in profiles:
        table.add_row(
            stored.name,
            str(stored.version),
            str(stored.document.get("split_policy", "")),
            str(stored.document.get("mode", "")),
            stored.changed_by,
            stored.created_at.isoformat(timespec="seconds"),
        )
    console.print(table)
    if not profiles:
        console.print("no profiles stored: the built-in 'default' profile applies")
    console.print(
        f"rules version {rules.version}: {len(rules.rules)} rule(s), "
        f"default profile '{rules.default_profile}'",
        highlight=False,
    )


@sourcing_app.command("show")
def sourcing_show(
    name: str,
    version: Annotated[int | None, typer.Option(help="A past version", min=1)] = None,
) -> None:
    """Print a profile as JSON (the format 'oms sourcing set' reads)."""
    services = services_from_env()
    try:
        prepare_schema(services.engine)
        stored = services.sourcing.get_profile(name, version)
    finally:
        services.close()
    print(json.dumps(stored.document, indent=2))
    print(
        f"# version {stored.version}, by {stored.changed_by} at {stored.created_at.isoformat()}",
        file=sys.stderr,
    )


@sourcing_app.command("set")
def sourcing_set(
    file: Annotated[
        Path,
        typer.Argument(
            help="JSON: a profile, a list of profiles, or "
            '{"profiles": [...], "rules": {"default_profile": ..., "rules": [...]}}'
        ),
    ],
) -> None:
    """Create or change profiles (and rules) from a JSON file; each change is a new version."""
    try:
        content = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise CliError(f"{file}: not valid JSON ({error.msg} at line {error.lineno})") from None
    if isinstance(content, list):
        content = {"profiles": content}
    elif isinstance(content, dict) and "profiles" not in content and "rules" not in content:
        content = {"profiles": [content]}
    if not isinstance(content, dict) or not isinstance(content.get("profiles", []), list):
        raise CliError(f"{file}: expected a profile, a list of profiles or an object with them")
    services = services_from_env()
    try:
        prepare_schema(services.engine)
        for document in content.get("profiles", []):
            if not isinstance(document, dict):
                raise CliError(f"{file}: each profile must be a JSON object")
            stored = services.sourcing.set_profile(document, changed_by="cli")
            console.print(f"profile '{stored.name}' at version {stored.version}", highlight=False)
        if "rules" in content:
            rules = services.sourcing.set_rules(content["rules"], changed_by="cli")
            console.print(f"rules at version {rules.version}", highlight=False)
    finally:
        services.close()


def _serve(settings: Settings, host: str | None, port: int | None) -> None:
    import uvicorn

    from oms.api.app import create_app
    from oms.observability import configure_logging

    services = build_services(settings)
    prepare_schema(services.engine)
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(services),
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        access_log=False,
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default OMS_HOST)")] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default OMS_PORT)", min=1, max=65535)
    ] = None,
) -> None:
    """Serve the HTTP API. SQLite upgrades itself; PostgreSQL must be current."""
    _serve(Settings(), host, port)


@app.command()
def demo(
    host: Annotated[str | None, typer.Option(help="Interface to bind")] = None,
    port: Annotated[int | None, typer.Option(help="Port", min=1, max=65535)] = None,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve after seeding")
    ] = True,
) -> None:
    """Seed the demo retailer (idempotently), print an admin key, then serve."""
    from oms.demo import seed_demo

    settings = Settings()
    services = build_services(settings)
    try:
        prepare_schema(services.engine)
        report = seed_demo(services, settings)
    finally:
        services.close()
    for line in report:
        console.print(line, highlight=False)
    if serve_after:
        _serve(settings, host, port)


def _exit_code_of(error: BaseException) -> int | None:
    code = getattr(error, "exit_code", None)
    return code if isinstance(code, int) else None


def main() -> None:
    """Entry point: any refusal is one line on stderr and a non-zero exit."""
    try:
        app(standalone_mode=False)
    except (typer.Exit, click.exceptions.Exit) as done:
        sys.exit(_exit_code_of(done) or 0)
    except (typer.Abort, click.exceptions.Abort, KeyboardInterrupt):
        print("oms: aborted", file=sys.stderr)
        sys.exit(130)
    except DomainError as error:
        print(f"oms: {error.detail}", file=sys.stderr)
        sys.exit(1)
    except CliError as error:
        print(f"oms: {error}", file=sys.stderr)
        sys.exit(1)
    except OSError as error:
        where = f": {error.filename}" if error.filename else ""
        print(f"oms: {error.strerror or error}{where}", file=sys.stderr)
        sys.exit(1)
    except Exception as error:
        # Usage errors of click (or of the copy of click that typer vendors) carry these two.
        if hasattr(error, "format_message") and _exit_code_of(error) is not None:
            message = " ".join(str(error.format_message()).split())
            print(f"oms: {message} (try 'oms --help')", file=sys.stderr)
            sys.exit(_exit_code_of(error) or 2)
        raise
