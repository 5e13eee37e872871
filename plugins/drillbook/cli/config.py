"""The CLI's settings: read once by ``drillbook.cli.main`` and carried on the parsed arguments.

A command function called on its own (a test, ``python -m drillbook.cli.ledger_cmds``) is its own entry
point: it reads the settings then, once, through the same ``load_settings``.
"""

from __future__ import annotations

import argparse
from typing import Any

from drillbook.settings import Settings, load_settings


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings the entry point read (``args.settings``), or read them now and keep them there."""
    settings = getattr(args, "settings", None)
    if settings is None:
        settings = load_settings()
        args.settings = settings
    return settings


def load_catalogue_for(args: argparse.Namespace, path: Any = None) -> Any:
    """The catalogue of ``path`` (else ``--catalogue``, else the setting), suites checked as the CLI does."""
    from drillbook.catalogue import load_catalogue, resolve_catalogue_path

    settings = settings_of(args)
    file = resolve_catalogue_path(path or getattr(args, "catalogue", None), configured=settings.catalogue)
    return load_catalogue(file, gx_suites=settings.suite_check_for("cli"))


def resolver_of(args: argparse.Namespace) -> Any:
    """The CLI's resolver: the environment backend (``AIRFLOW_CONN_*`` / ``DRILLBOOK_CONN_*``), the settings above."""
    resolver = getattr(args, "resolver", None)
    if resolver is None:
        from drillbook.resources.resolver import EnvConnections, Resolver

        resolver = Resolver(EnvConnections(), settings=settings_of(args))
        args.resolver = resolver
    return resolver
