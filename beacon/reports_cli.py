"""``beacon reports add | list | remove | send`` and ``beacon spikes set | list | remove``:
who gets a site's e-mailed reports and traffic-spike notices (``storage.reports``),
and a report sent at once (``reports/``)."""

from __future__ import annotations

from datetime import datetime, timezone

import click

from beacon.config import MAIL_OPTIONS, Settings, options
from beacon.store_access import open_store
from storage.clickhouse import Store


def _settings(values: dict) -> Settings:
    try:
        return Settings.from_options(values)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _store(settings: Settings, must_exist: bool = False):
    return open_store(settings, must_exist=must_exist, migrated=True)


def _site(store: Store, site: str) -> str:
    """The registered site's domain; a usage error for any other."""
    from storage.sites import find_site

    try:
        found = find_site(store, site)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="SITE") from exc
    if found is None:
        raise click.BadParameter(f"{site} is not a registered site (beacon sites add {site})", param_hint="SITE")
    return found.domain


def _periods(weekly: bool, monthly: bool, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    chosen = (("week",) if weekly else ()) + (("month",) if monthly else ())
    return chosen or default


def _period_flags(command):
    command = click.option("--monthly", is_flag=True, help="The monthly report (the last calendar month).")(command)
    return click.option("--weekly", is_flag=True, help="The weekly report (the last week, Monday to Sunday).")(command)


@click.group()
def reports() -> None:
    """E-mailed reports of a site: visitors, pageviews, bounce rate and visit duration
    with their change, top sources, pages and goals (aggregates only). beacon serve
    sends each once its week or month has closed in the site's time zone (--smtp-host)."""


@reports.command("add")
@options("data_dir", "clickhouse")
@_period_flags
@click.argument("site")
@click.argument("email")
def reports_add(site: str, email: str, weekly: bool, monthly: bool, **values) -> None:
    """Send SITE's weekly and/or monthly report to EMAIL."""
    from storage.reports import add_subscription

    periods = _periods(weekly, monthly)
    if not periods:
        raise click.UsageError("choose --weekly, --monthly or both")
    with _store(_settings(values)) as store:
        domain = _site(store, site)
        try:
            added = [add_subscription(store, domain, email, period) for period in periods]
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="EMAIL") from exc
    for subscription in added:
        click.echo(f"{subscription.site}\t{subscription.email}\t{subscription.period}")


@reports.command("list")
@options("data_dir", "clickhouse")
@click.argument("site", required=False)
def reports_list(site: str | None, **values) -> None:
    """The recipients of SITE's reports, or of every site's: site, address, week or month."""
    from storage.reports import list_subscriptions

    with _store(_settings(values), must_exist=True) as store:
        listed = list_subscriptions(store, _site(store, site) if site else None)
    if not listed:
        click.echo("no report recipients")
    for subscription in listed:
        click.echo(f"{subscription.site}\t{subscription.email}\t{subscription.period}")


@reports.command("remove")
@options("data_dir", "clickhouse")
@_period_flags
@click.argument("site")
@click.argument("email")
def reports_remove(site: str, email: str, weekly: bool, monthly: bool, **values) -> None:
    """Stop sending SITE's reports to EMAIL (both unless --weekly or --monthly)."""
    from storage.reports import remove_subscription

    with _store(_settings(values), must_exist=True) as store:
        domain = _site(store, site)
        try:
            removed = [
                p for p in _periods(weekly, monthly, ("week", "month")) if remove_subscription(store, domain, email, p)
            ]
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="EMAIL") from exc
    if not removed:
        raise click.ClickException(f"{email} gets no such report of {site}")
    click.echo(f"removed {' and '.join(removed)} report(s) of {site} for {email}")


@reports.command("send")
@options("data_dir", "clickhouse", *MAIL_OPTIONS)
@click.option("--period", "kind", type=click.Choice(["week", "month"]), required=True, help="Which report.")
@click.option(
    "--date",
    "day",
    type=click.DateTime(["%Y-%m-%d"]),
    help="A day of the week or month to report on (YYYY-MM-DD, in the site's time zone). "
    "Default: the last one that has closed.",
)
@click.argument("site")
@click.argument("email")
def reports_send(site: str, email: str, kind: str, day: datetime | None, **values) -> None:
    """Send SITE's report to EMAIL now, through the --smtp-host server. It does not count
    as the scheduled one: beacon serve still sends that."""
    from common import clock
    from reports.periods import containing, last_closed
    from reports.sending import send_report
    from reports.smtp import Mailer
    from storage.reports import normalise_email
    from storage.sites import find_site

    settings = _settings(values)
    if not settings.smtp_host:
        raise click.UsageError("--smtp-host (or BEACON_SMTP_HOST) is required to send")
    try:
        recipient = normalise_email(email)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="EMAIL") from exc
    now = datetime.fromtimestamp(clock.now(), timezone.utc)
    with _store(settings, must_exist=True) as store:
        domain = _site(store, site)
        zone = find_site(store, domain).timezone
        period = containing(kind, day.date(), zone) if day else last_closed(kind, now, zone)
        try:
            send_report(store, Mailer(settings), settings.link_base, domain, recipient, period, now)
        except OSError as exc:  # smtplib's errors too
            raise click.ClickException(f"not sent: {exc}") from exc
    click.echo(f"sent the {kind} report of {site} for {period.first} to {period.last} to {recipient}")


@click.group()
def spikes() -> None:
    """Traffic-spike notices: an e-mail when a site's visitors of the last hour pass a
    threshold, at most once an hour per recipient (sent by beacon serve, --smtp-host)."""


@spikes.command("set")
@options("data_dir", "clickhouse")
@click.option(
    "--threshold", type=click.IntRange(min=1), required=True, help="Visitors in the last hour above which to tell."
)
@click.option("--email", "emails", multiple=True, required=True, help="A recipient. Repeatable.")
@click.argument("site")
def spikes_set(site: str, threshold: int, emails: tuple[str, ...], **values) -> None:
    """Set SITE's spike threshold and its recipients (replacing those it had)."""
    from storage.reports import set_spike_alert

    with _store(_settings(values)) as store:
        try:
            alert = set_spike_alert(store, _site(store, site), threshold, list(emails))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--email") from exc
    click.echo(_alert_line(alert))


@spikes.command("list")
@options("data_dir", "clickhouse")
def spikes_list(**values) -> None:
    """Each site's spike threshold and recipients."""
    from storage.reports import list_spike_alerts

    with _store(_settings(values), must_exist=True) as store:
        alerts = list_spike_alerts(store)
    if not alerts:
        click.echo("no spike thresholds")
    for alert in alerts:
        click.echo(_alert_line(alert))


@spikes.command("remove")
@options("data_dir", "clickhouse")
@click.argument("site")
def spikes_remove(site: str, **values) -> None:
    """Send no more spike notices for SITE."""
    from storage.reports import remove_spike_alert

    with _store(_settings(values), must_exist=True) as store:
        if not remove_spike_alert(store, _site(store, site)):
            raise click.ClickException(f"{site} has no spike threshold")
    click.echo(f"removed the spike threshold of {site}")


def _alert_line(alert) -> str:
    return f"{alert.site}\t{alert.threshold}\t{' '.join(alert.recipients)}"
