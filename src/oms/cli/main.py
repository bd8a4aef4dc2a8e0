"""The ``oms`` command: it calls the same services as the API."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from oms import __version__
from oms.bootstrap import Services, build_services, freeze_startup_heap, prepare_schema
from oms.config import Settings
from oms.domain.access import Role
from oms.domain.errors import DomainError
from oms.services.order_sourcing import BID_PRICE_HISTORY_ORDERS

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
inventory_app = typer.Typer(help="Locations, items and stock.", no_args_is_help=True)
app.add_typer(inventory_app, name="inventory")
order_app = typer.Typer(help="Orders: find, show, cancel, hold, backorders.", no_args_is_help=True)
app.add_typer(order_app, name="order")
notify_app = typer.Typer(help="Customer notifications (email).", no_args_is_help=True)
payments_app = typer.Typer(help="Payments and invoices.", no_args_is_help=True)
app.add_typer(notify_app, name="notifications")
app.add_typer(payments_app, name="payments")
process_app = typer.Typer(help="BPMN processes.", no_args_is_help=True)
care_app = typer.Typer(
    help="Customer care: customers, returns, appeasements.", no_args_is_help=True
)
app.add_typer(care_app, name="care")
app.add_typer(process_app, name="process")
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


def services_from_env(*, prepare: bool = True) -> Services:
    """Services from the environment, with the schema made current (SQLite) or checked."""
    services = build_services(Settings())
    if prepare:
        try:
            prepare_schema(services.engine)
        except BaseException:
            services.close()
            raise
    freeze_startup_heap()
    return services


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision")] = "head") -> None:
    """Apply database migrations (creates the SQLite file on first use)."""
    from oms.adapters.db import migrate

    services = services_from_env(prepare=False)
    try:
        migrate.upgrade(services.engine, revision)
        console.print(f"database at revision {migrate.current_revision(services.engine)}")
    finally:
        services.close()


@db_app.command("current")
def db_current() -> None:
    """Show the database's schema revision and the one this version needs."""
    from oms.adapters.db import migrate

    services = services_from_env(prepare=False)
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


@inventory_app.command("import")
def inventory_import(
    file: Annotated[Path, typer.Argument(help="CSV (header line) or JSON file", exists=False)],
    kind: Annotated[
        str, typer.Option(help="stock (sku, location, on_hand[, blocked, as_of]), locations, items")
    ] = "stock",
    source: Annotated[str, typer.Option(help="Feed source recorded with the counts")] = "import",
    as_of: Annotated[
        str | None, typer.Option(help="When the stock was counted (ISO 8601; default now)")
    ] = None,
) -> None:
    """Import a file whole: any invalid row rejects it, with a report of every bad row."""
    from datetime import datetime

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from oms.services.inventory import ImportRejected

    if not file.is_file():
        raise CliError(f"no such file: {file}")
    counted_at = None
    if as_of:
        try:
            counted_at = datetime.fromisoformat(as_of.replace("Z", "+00:00"))
        except ValueError:
            raise CliError(f"--as-of '{as_of}' is not an ISO 8601 time") from None
        if counted_at.tzinfo is None:
            raise CliError("--as-of needs a time zone offset, e.g. 2026-01-05T09:00:00Z")
    services = services_from_env()
    try:
        prepare_schema(services.engine)
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        ) as progress:
            task = progress.add_task(f"importing {kind} from {file.name}", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            try:
                summary = services.inventory.import_file(
                    file, kind=kind, source=source, as_of=counted_at, progress=advance
                )
            except ImportRejected as rejected:
                progress.stop()
                report = Table("row", "field", "why", title="rows rejected", title_justify="left")
                for bad in rejected.extensions["rows"]:
                    for error in bad["errors"]:
                        report.add_row(str(bad["row"]), error["pointer"], error["detail"])
                Console(stderr=True).print(report)
                raise
    finally:
        services.close()
    console.print(
        f"{summary.kind}: {summary.rows} rows; created {summary.created}, updated "
        f"{summary.updated}, applied {summary.applied}, unchanged {summary.unchanged}, "
        f"stale {len(summary.stale)}",
        highlight=False,
    )
    for stale in summary.stale[:20]:
        console.print(f"stale (ignored): {stale}", highlight=False)


@inventory_app.command("atp")
def inventory_atp(
    sku: str,
    channel: Annotated[str | None, typer.Option(help="Apply this channel's buffer")] = None,
) -> None:
    """Show an item's positions and ATP per location."""
    services = services_from_env()
    try:
        found = services.inventory.item_availability(sku, channel=channel)
    finally:
        services.close()
    table = Table("location", "on hand", "allocated", "reserved", "blocked", "safety", "ATP")
    for p in found.positions:
        table.add_row(
            p.location_code,
            *(str(v) for v in (p.on_hand, p.allocated, p.reserved, p.blocked, p.safety_stock)),
            str(found.atp.get(p.location_code, 0)),
        )
    console.print(table)
    console.print(f"network ATP{f' for {channel}' if channel else ''}: {found.total_atp}")


@inventory_app.command("release-expired")
def inventory_release_expired() -> None:
    """Free holds past their expiry now (the worker does this periodically)."""
    services = services_from_env()
    try:
        freed = services.inventory.release_expired_reservations()
    finally:
        services.close()
    console.print(f"released {freed} expired reservation(s)")


@order_app.command("show")
def order_show(order: Annotated[str, typer.Argument(help="Order id or number")]) -> None:
    """Show an order: lines with their quantities, holds and the timeline."""
    services = services_from_env()
    try:
        found = services.orders.get(order)
        timeline, _events = services.order_queries.history(found.order_id)
    finally:
        services.close()
    hold = " (on hold)" if found.on_hold else ""
    console.print(
        f"{found.order_number}  {found.channel}:{found.channel_reference}  {found.status}{hold}  "
        f"{found.total} {found.currency}",
        highlight=False,
    )
    table = Table("line", "sku", "qty", "delivery", "status", "quantities", "promised")
    for line in found.lines:
        table.add_row(
            str(line.line_no),
            line.sku,
            str(line.quantity),
            line.delivery.method.value,
            line.status,
            ", ".join(
                f"{quantity} {state.value}" + (f"@{location}" if location else "")
                for (state, location), quantity in sorted(line.buckets.items(), key=str)
            ),
            line.promised_on.isoformat() if line.promised_on else "",
        )
    console.print(table)
    for entry in timeline:
        reason = f" ({entry.reason})" if entry.reason else ""
        line_part = f" line {entry.line_no}" if entry.line_no else ""
        console.print(
            f"{entry.at.isoformat(timespec='seconds')}  {entry.action}{line_part}{reason}  "
            f"by {entry.actor}",
            highlight=False,
        )


@order_app.command("search")
def order_search(
    email: Annotated[str | None, typer.Option(help="Customer email")] = None,
    phone: Annotated[str | None, typer.Option(help="Customer phone")] = None,
    reference: Annotated[str | None, typer.Option(help="The channel's reference")] = None,
    status: Annotated[str | None, typer.Option(help="Derived status, e.g. backordered")] = None,
    channel: Annotated[str | None, typer.Option(help="web, app, store, ...")] = None,
    location: Annotated[str | None, typer.Option(help="Held or fulfilled at")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
) -> None:
    """Find orders, newest first."""
    from oms.queries.orders import OrderSearch

    services = services_from_env()
    try:
        page = services.order_queries.search(
            OrderSearch(
                email=email,
                phone=phone,
                channel_reference=reference,
                status=status,
                channel=channel,
                location_code=location,
            ),
            limit=limit,
        )
    finally:
        services.close()
    table = Table("order", "channel", "reference", "customer", "status", "total", "created")
    for item in page.items:
        table.add_row(
            item.order_number,
            item.channel,
            item.channel_reference,
            item.customer_email or item.customer_phone or "",
            item.status + (" (hold)" if item.on_hold else ""),
            f"{item.total} {item.currency}",
            item.created_at.isoformat(timespec="seconds"),
        )
    console.print(table)


@order_app.command("cancel")
def order_cancel(
    order: Annotated[str, typer.Argument(help="Order id or number")],
    reason: Annotated[str, typer.Option(help="Why (kept in the timeline)")],
    line: Annotated[int | None, typer.Option(help="Only this line")] = None,
    quantity: Annotated[int | None, typer.Option(help="Only this many units of the line")] = None,
) -> None:
    """Cancel an order, a line or part of one (released units become cancel requests)."""
    services = services_from_env()
    try:
        result = services.orders.cancel(order, reason=reason, line_no=line, quantity=quantity)
    finally:
        services.close()
    console.print(f"cancelled {result.cancelled} unit(s)", highlight=False)
    for request in result.requests:
        console.print(
            f"cancel request {request.request_id}: {request.quantity} unit(s) of line "
            f"{request.line_no} at {request.location_code} await the location",
            highlight=False,
        )


@order_app.command("hold")
def order_hold(
    order: Annotated[str, typer.Argument(help="Order id or number")],
    hold_type: Annotated[str, typer.Argument(help="fraud, payment or manual")],
    reason: Annotated[str, typer.Option(help="Why")],
    release: Annotated[bool, typer.Option("--release", help="Release the hold instead")] = False,
) -> None:
    """Place (or release) a hold on an order."""
    services = services_from_env()
    try:
        if release:
            services.orders.release_hold(order, hold_type, reason=reason)
        else:
            services.orders.place_hold(order, hold_type, reason=reason)
    finally:
        services.close()
    console.print(f"{hold_type} hold {'released' if release else 'placed'}", highlight=False)


@order_app.command("allocate-backorders")
def order_allocate_backorders(sku: str) -> None:
    """Allocate the waiting lines of a SKU, oldest order first (after supply arrived)."""
    services = services_from_env()
    try:
        allocated = services.orders.allocate_backorders(sku)
    finally:
        services.close()
    for item in allocated:
        console.print(
            f"{item['order_number']} line {item['line_no']}: {item['quantity']} at "
            f"{item['location_code']}",
            highlight=False,
        )
    console.print(f"{len(allocated)} allocation(s)")


@notify_app.command("dispatch")
def notifications_dispatch(
    loop: Annotated[bool, typer.Option(help="Keep polling (Ctrl+C to stop)")] = False,
) -> None:
    """Turn new events into emails and send what is due (once, or in a loop)."""
    import time

    services = services_from_env()
    try:
        while True:
            report = services.notifications.dispatch()
            if report.sent or report.retrying or report.failed or not loop:
                console.print(
                    f"sent {report.sent}, to retry {report.retrying}, given up {report.failed}"
                )
            if not loop:
                break
            time.sleep(services.settings.worker_poll_seconds)
    except KeyboardInterrupt:
        pass
    finally:
        services.close()


@payments_app.command("show")
def payments_show(order_ref: str) -> None:
    """An order's payments per tender and its ledger."""
    services = services_from_env()
    try:
        summary = services.payments.summary(order_ref)
    finally:
        services.close()
    table = Table("tender", "kind", "authorised open", "captured", "refunded")
    for t in summary.tenders:
        table.add_row(
            t.tender.tender_id,
            t.tender.kind.value,
            str(t.authorised_open.amount),
            str(t.captured.amount),
            str(t.refunded.amount),
        )
    console.print(table)
    console.print(
        f"{summary.currency}: captured {summary.captured.amount}, refunded "
        f"{summary.refunded.amount}, net {summary.net_captured.amount}",
        highlight=False,
    )


@care_app.command("customers")
def care_customers(query: str) -> None:
    """Find customers by email, phone, name or order number."""
    services = services_from_env()
    try:
        found = services.care_queries.find_customers(query)
    finally:
        services.close()
    table = Table("customer", "name", "email", "phone", "orders", "channels")
    for c in found:
        table.add_row(
            c["customer_key"],
            c["name"] or "",
            c["email"] or "",
            c["phone"] or "",
            str(c["orders"]),
            ", ".join(c["channels"]),
        )
    console.print(table)


@care_app.command("return")
def care_return(return_id: str) -> None:
    """A return by id or RMA number: status, lines, dispositions, refund."""
    services = services_from_env()
    try:
        found = services.returns.get(return_id)
    finally:
        services.close()
    console.print(
        f"{found.rma_number} order {found.order_number} {found.method.value} "
        f"{found.location_code or '-'}: {found.status.value} ({found.resolution.value}), "
        f"refunded {found.refunded_amount} {found.currency}",
        highlight=False,
    )
    table = Table("line", "sku", "quantity", "reason", "received", "dispositions")
    for line in found.lines:
        table.add_row(
            str(line.line_no),
            line.sku,
            str(line.quantity),
            line.reason.value,
            str(line.received),
            ", ".join(f"{d.value} {n}" for d, n in line.dispositions.items()),
        )
    console.print(table)


@care_app.command("approve")
def care_approve(
    appeasement_id: str,
    reason: Annotated[str | None, typer.Option(help="Why it is approved")] = None,
) -> None:
    """Approve an appeasement waiting for a supervisor (the CLI acts as admin)."""
    services = services_from_env()
    try:
        result = services.care.approve(appeasement_id, reason=reason)
    finally:
        services.close()
    item = result.appeasement
    console.print(
        f"appeasement {item.appeasement_id}: {item.status.value} {item.amount} {item.currency}",
        highlight=False,
    )


@payments_app.command("invoice")
def payments_invoice(
    invoice_id: str,
    html: Annotated[bool, typer.Option(help="Print the printable HTML document")] = False,
) -> None:
    """Print an invoice as JSON (or HTML)."""
    import json

    services = services_from_env()
    try:
        if html:
            print(services.invoices.html(invoice_id))
        else:
            print(json.dumps(services.invoices.get(invoice_id).document, indent=2))
    finally:
        services.close()


@process_app.command("deploy")
def process_deploy(
    file: Annotated[Path, typer.Argument(help="A BPMN 2.0 file (.bpmn) with one process")],
) -> None:
    """Validate a BPMN file and deploy it as the newest version of its process."""
    bpmn_xml = file.read_text(encoding="utf-8")
    services = services_from_env()
    try:
        deployment = services.processes.deploy(bpmn_xml, deployed_by=f"cli:{file.name}")
    finally:
        services.close()
    definition = deployment.definition
    if deployment.created:
        console.print(
            f"deployed {definition.key} version {definition.version} ({definition.name})",
            highlight=False,
        )
    else:
        console.print(
            f"unchanged: {definition.key} version {definition.version} has this content already",
            highlight=False,
        )


@process_app.command("deploy-defaults")
def process_deploy_defaults() -> None:
    """Deploy the default process of every delivery method (unchanged ones stay as they are);
    new orders then run through them."""
    services = services_from_env()
    try:
        deployments = services.fulfillment_processes.deploy_defaults(deployed_by="cli:defaults")
    finally:
        services.close()
    for deployment in deployments:
        definition = deployment.definition
        state = "deployed" if deployment.created else "unchanged"
        console.print(f"{state}: {definition.key} version {definition.version}", highlight=False)


@process_app.command("list")
def process_list(
    key: Annotated[str | None, typer.Option(help="Only this process")] = None,
) -> None:
    """List deployed process definitions and their versions."""
    services = services_from_env()
    try:
        definitions = services.processes.definitions(key)
    finally:
        services.close()
    table = Table("key", "version", "name", "deployed", "by", "checksum")
    for definition in definitions:
        table.add_row(
            definition.key,
            str(definition.version),
            definition.name,
            definition.deployed_at.isoformat(timespec="seconds"),
            definition.deployed_by,
            definition.checksum[:12],
        )
    console.print(table)


@sourcing_app.command("list")
def sourcing_list() -> None:
    """List the sourcing profiles (current versions) and the rules in force."""
    services = services_from_env()
    try:
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
        stored = services.sourcing.get_profile(name, version)
    finally:
        services.close()
    print(json.dumps(stored.document, indent=2))
    print(
        f"# version {stored.version}, by {stored.changed_by} at {stored.created_at.isoformat()}",
        file=sys.stderr,
    )


@sourcing_app.command("explain")
def sourcing_explain(order: Annotated[str, typer.Argument(help="Order id or number")]) -> None:
    """Why each line of an order comes from where it comes from (every stored decision)."""
    services = services_from_env()
    try:
        view = services.order_sourcing.explain(order)
    finally:
        services.close()
    console.print(f"{view.order_number}  {len(view.decisions)} decision(s)", highlight=False)
    for decision in view.decisions:
        console.print(
            f"#{decision.decision_id} {decision.decided_at.isoformat()} {decision.trigger} "
            f"({decision.planner}) cost {decision.cost}, {decision.backordered_units} waiting",
            highlight=False,
        )
        for explained in decision.plan.get("explanation", []):
            console.print(f"  line {explained['line_id']}: {explained['summary']}", highlight=False)
    for refusal in view.refusals:
        console.print(
            f"refused: line {refusal.line_no} by {refusal.location_code} "
            f"({refusal.trigger}, {refusal.quantity} unit(s)): {refusal.reason}",
            highlight=False,
        )


@sourcing_app.command("replan-location")
def sourcing_replan_location(code: str) -> None:
    """Re-source what an offline, dark or closed location holds allocated (normally automatic
    when its status changes)."""
    services = services_from_env()
    try:
        outcome = services.order_sourcing.replan_location(code)
    finally:
        services.close()
    console.print(
        f"{code} is {outcome.status}: {outcome.affected_orders} order(s), "
        f"{outcome.affected_units} unit(s): {outcome.re_sourced_units} re-sourced, "
        f"{outcome.backordered_units} backordered",
        highlight=False,
    )


@sourcing_app.command("bid-prices")
def sourcing_bid_prices(
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Compute them now from the latest orders first")
    ] = False,
    orders: Annotated[
        int, typer.Option(help="With --refresh: how many of the latest orders", min=1)
    ] = BID_PRICE_HISTORY_ORDERS,
    scale: Annotated[
        float, typer.Option(help="With --refresh: demand until replenishment", min=0.01)
    ] = 1.0,
    sku: Annotated[list[str] | None, typer.Option(help="Show these items' prices")] = None,
) -> None:
    """The stock opportunity costs (bid prices) decisions weigh; --refresh computes them now
    (the worker does it every hour)."""
    services = services_from_env()
    try:
        if refresh:
            outcome = services.order_sourcing.refresh_bid_prices(orders=orders, scale=scale)
            console.print(
                f"refresh: {outcome.status}, {outcome.history_orders} order(s), "
                f"{outcome.lanes} lane(s), {outcome.priced_skus} SKU(s) priced",
                highlight=False,
            )
            if outcome.status == "off":
                return
        table = services.order_sourcing.bid_price_table(sku or ())
    finally:
        services.close()
    console.print(
        f"table {table.table_id} computed {table.computed_at.isoformat(timespec='seconds')} "
        f"from {table.history_orders} order(s) x {table.scale:g}: {table.priced_skus} SKU(s) "
        f"priced, {len(table.capacity)} location(s) with a capacity price",
        highlight=False,
    )
    if sku:
        prices = Table("sku", "location", "per unit")
        for item, by_code in table.stock.items():
            for code, price in sorted(by_code.items(), key=lambda kv: -kv[1]):
                prices.add_row(item, code, f"{price:.2f}")
        console.print(prices)


@sourcing_app.command("simulate-recent")
def sourcing_simulate_recent(
    orders: Annotated[int, typer.Option(help="How many of the latest orders", min=1)] = 100,
    outage: Annotated[
        list[str] | None, typer.Option(help="CODE=status (offline, dark, closed); repeatable")
    ] = None,
    profile: Annotated[Path | None, typer.Option(help="JSON file: a changed profile")] = None,
) -> None:
    """What if: how the latest orders would be sourced with an outage or a profile change
    (on today's stock; nothing is stored)."""
    statuses: dict[str, str] = {}
    for entry in outage or []:
        code, _, status = entry.partition("=")
        if not code or not status:
            raise CliError(f"--outage '{entry}': expected CODE=status")
        statuses[code] = status
    document = None
    if profile is not None:
        try:
            document = json.loads(profile.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CliError(f"{profile}: {error}") from None
    services = services_from_env()
    try:
        outcome = services.order_sourcing.simulate_last(
            orders, profile=document, outage=statuses or None
        )
    finally:
        services.close()
    table = Table("", "total cost", "fulfillment", "backordered units", "packages", "split orders")
    for name, totals in (("current", outcome.current), ("simulated", outcome.simulated)):
        table.add_row(
            name,
            str(totals.total_cost),
            str(totals.fulfillment_cost),
            str(totals.backordered_units),
            str(totals.packages),
            str(totals.split_orders),
        )
    console.print(table)
    console.print(
        f"{outcome.orders} order(s), {len(outcome.changed_orders)} would change", highlight=False
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


def _serve(settings: Settings, host: str | None, port: int | None, workers: int = 1) -> None:
    import uvicorn

    from oms.api.app import create_app
    from oms.observability import configure_logging

    services = build_services(settings)
    prepare_schema(services.engine)
    configure_logging(settings.log_level)
    if workers > 1:
        # Each worker process builds its own services (engine, pool) from the same environment
        # settings; the schema was checked (SQLite: upgraded) once, here.
        services.close()
        uvicorn.run(
            "oms.api.app:create_app_from_environment",
            factory=True,
            workers=workers,
            host=host or settings.host,
            port=port or settings.port,
            log_config=None,
            access_log=False,
        )
        return
    application = create_app(services)
    freeze_startup_heap()
    uvicorn.run(
        application,
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
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes (uvicorn workers); production runs about one per CPU core",
            min=1,
            max=64,
        ),
    ] = 1,
) -> None:
    """Serve the HTTP API. SQLite upgrades itself; PostgreSQL must be current."""
    _serve(Settings(), host, port, workers)


demo_app = typer.Typer(
    help="The demo retailer: seed it and serve (no sub-command), or generate it as files.",
    invoke_without_command=True,
)
app.add_typer(demo_app, name="demo")


@demo_app.callback()
def demo(
    context: typer.Context,
    host: Annotated[str | None, typer.Option(help="Interface to bind")] = None,
    port: Annotated[int | None, typer.Option(help="Port", min=1, max=65535)] = None,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve after seeding")
    ] = True,
    size: Annotated[str, typer.Option(help="Demo retailer size: small, medium or large")] = (
        "small"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the generated retailer", min=0)] = 2026,
    simulate: Annotated[
        bool, typer.Option("--simulate", help="Play a day of business through the HTTP API")
    ] = False,
    hours: Annotated[int, typer.Option(help="Simulated hours", min=1, max=24)] = 24,
    speed: Annotated[str, typer.Option(help="max, or N simulated seconds per real second")] = "max",
    orders: Annotated[int, typer.Option(help="At most this many orders", min=1)] = 300,
) -> None:
    """Seed the demo retailer (idempotently), print an admin key, then serve; with --simulate,
    first play a day of business through a served API and print its summary."""
    if context.invoked_subcommand is not None:
        return
    from oms.demo import seed_demo
    from oms.demo.generator import UnknownSize, shape_named

    try:
        shape_named(size)
    except UnknownSize as error:
        raise CliError(str(error)) from None
    factor = _speed_factor(speed) if simulate else None
    settings = Settings()
    services = build_services(settings)
    try:
        prepare_schema(services.engine)
        with console.status(f"seeding the demo retailer ({size})...") as status:
            report = seed_demo(
                services, settings, size=size, seed=seed, progress=lambda m: status.update(m)
            )
    finally:
        services.close()
    for line in report:
        console.print(line, highlight=False, soft_wrap=True)
    if simulate:
        _simulate(settings, size=size, seed=seed, hours=hours, factor=factor, orders=orders)
    if serve_after:
        _serve(settings, host, port)


def _speed_factor(speed: str) -> float | None:
    """``max``: as fast as possible (None); N: N simulated seconds per real second."""
    if speed == "max":
        return None
    try:
        factor = float(speed)
    except ValueError:
        raise CliError(f"speed {speed!r}: use max or a number") from None
    if factor <= 0:
        raise CliError(f"speed {speed!r}: use max or a positive number")
    return factor


def _simulate(
    settings: Settings, *, size: str, seed: int, hours: int, factor: float | None, orders: int
) -> None:
    import os

    from oms.demo.generator import generate_retailer
    from oms.demo.simulation import SimulationFailed, served, simulate

    admin_key = (settings.data_dir / "demo-admin.key").read_text().strip()
    env = {**os.environ, "OMS_DATA_DIR": str(settings.data_dir)}
    retailer = generate_retailer(seed, size)
    try:
        with served(env) as url, console.status("simulating...") as status:

            def say(message: str) -> None:
                status.update(message)
                console.print(message, highlight=False)

            summary = simulate(
                url,
                admin_key,
                retailer,
                hours=hours,
                speed=factor,
                orders=orders,
                say=say,
            )
    except SimulationFailed as error:
        raise CliError(f"simulation failed: {error}") from None
    for event in summary.events:
        console.print(event, highlight=False)
    table = Table(title=f"simulated {hours} h")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in summary.rows():
        table.add_row(name, value)
    console.print(table)
    for number, why in sorted(summary.waiting.items()):
        console.print(f"waiting: {number}: {why}", highlight=False, soft_wrap=True)
    for number, why in sorted(summary.blocked.items()):
        console.print(f"blocked: {number}: {why}", highlight=False, soft_wrap=True)
    for number, why in sorted(summary.stuck.items()):
        console.print(f"STUCK: {number}: {why}", highlight=False, soft_wrap=True)
    if summary.stuck:
        raise CliError(f"{len(summary.stuck)} orders stuck without a reason")


@app.command()
def worker(
    once: Annotated[
        bool, typer.Option("--once", help="One pass (relay until empty, each job once), then exit")
    ] = False,
) -> None:
    """Relay committed events (NATS JetStream when OMS_NATS_URL is set; webhooks always) and run
    the periodic jobs, until SIGTERM or SIGINT."""
    import asyncio

    from oms.observability import configure_logging
    from oms.worker import Worker

    services = services_from_env()
    configure_logging(services.settings.log_level)
    runner = Worker(services)
    try:
        asyncio.run(runner.run(once=once))
    finally:
        services.close()
    if once and runner.relay_error:
        raise CliError(f"events were not relayed: {runner.relay_error}")


@demo_app.command("generate")
def demo_generate(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the files into")],
    seed: Annotated[
        int, typer.Option(help="Random seed: the same seed, the same bytes", min=0)
    ] = 1,
    size: Annotated[str, typer.Option(help="small, medium or large")] = "small",
) -> None:
    """Generate the demo retailer as CSV/JSON files, with a manifest of their SHA-256.

    Files: locations, items, positions, customers, orders and order lines.
    """
    from oms.demo.generator import UnknownSize, generate_retailer, shape_named, write_dataset

    try:
        shape = shape_named(size)
    except UnknownSize as error:
        raise CliError(str(error)) from None
    if out.exists() and not out.is_dir():
        raise CliError(f"{out} exists and is not a directory")
    started = time.perf_counter()
    with console.status(f"generating the {size} retailer (seed {seed})..."):
        counts = write_dataset(generate_retailer(seed, shape), out)
    elapsed = time.perf_counter() - started
    table = Table("file", "rows", title=f"{size} retailer, seed {seed}, in {out}")
    for name, rows in counts.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    console.print(f"written in {elapsed:.1f} s (manifest: {out / 'manifest.json'})")


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
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        print(f"oms: database error: {reason}", file=sys.stderr)
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
