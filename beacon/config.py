"""The command line's side of the settings (``common.settings.Settings``): one click
option per setting, with its environment variable, and the ``--config`` TOML file."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import click

from common.settings import MAX_RETENTION_DAYS, Settings  # noqa: F401  (the CLI's names for them)

_FIELDS = {f.name: f for f in fields(Settings)}
# What sending a mail needs (beacon serve, beacon reports send).
MAIL_OPTIONS = ("smtp_host", "smtp_port", "smtp_security", "smtp_user", "smtp_password", "mail_from", "public_url")


def _click_type(name: str):
    default = _FIELDS[name].default
    if name in ("data_dir", "geoip", "spool_dir", "backup_dir"):
        return click.Path(path_type=Path)
    if name == "raw_retention_days":  # None by default: the same as retention_days
        return int
    return {int: int, float: float}.get(type(default), str)


def options(*names: str) -> Callable:
    """Add the named settings as options to a click command, plus ``--config``."""

    def decorate(command: Callable) -> Callable:
        for name in reversed(names):
            spec = _FIELDS[name]
            multiple = spec.metadata.get("multiple", False)
            command = click.option(
                "--" + name.replace("_", "-"),
                name,
                type=_click_type(name),
                default=None if multiple else spec.default,
                multiple=multiple,
                envvar=f"BEACON_{name.upper()}",
                show_envvar=True,
                show_default=not multiple and spec.default is not None,
                help=spec.metadata["help"],
            )(command)
        return click.option(
            "--config",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            envvar="BEACON_CONFIG",
            show_envvar=True,
            is_eager=True,
            expose_value=False,
            callback=_load_config_file,
            help="TOML file with any of these settings (keys as option names, '-' or '_').",
        )(command)

    return decorate


def _load_config_file(ctx: click.Context, _param: click.Parameter, path: Path | None) -> None:
    if path is None:
        return
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    unknown = sorted(k for k in data if k.replace("-", "_") not in _FIELDS)
    if unknown:
        raise click.BadParameter(f"unknown settings: {', '.join(unknown)}", param_hint="--config")
    ctx.default_map = {**(ctx.default_map or {}), **{k.replace("-", "_"): v for k, v in data.items()}}
