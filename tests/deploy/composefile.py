"""Read docker-compose.yaml the way ``docker compose`` does, so a native run uses its own commands and environment.

Rules this module enforces:
- interpolation follows the compose specification: ``$$`` is a literal ``$``;
  ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``,
  ``${VAR?error}``, ``${VAR:+alt}`` and ``${VAR+alt}``, defaults interpolated in
  turn; a required variable that is missing is an error naming it;
- a service's command runs as the official image would: a string or list after
  the image's ``airflow`` entrypoint, or the list after an ``entrypoint`` override;
- the only changes for a native run are the ones the caller names: service
  hostnames (and ports) rewritten to loopback, and container paths
  (``/opt/airflow/...``) rewritten to host directories.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
_VAR = re.compile(
    r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}|([A-Za-z_][A-Za-z0-9_]*))"
)


class ComposeError(ValueError):
    pass


def load(path: Path = COMPOSE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as compose reads an .env file (comments, blank lines, single or double quotes)."""
    env: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ComposeError(f"{path}:{n}: expected KEY=VALUE, found {line[:40]!r}")
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def interpolate(value: str, env: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, arg = m.group(3), m.group(4) or ""
        current = env.get(name)
        if op is None:
            return current or ""
        unset_or_empty = current is None or (op.startswith(":") and current == "")
        if op.endswith("-"):
            return interpolate(arg, env) if unset_or_empty else str(current)
        if op.endswith("?"):
            if unset_or_empty:
                raise ComposeError(f"required variable {name} is missing a value: {arg}")
            return str(current)
        return "" if unset_or_empty else interpolate(arg, env)  # "+"

    return _VAR.sub(sub, value)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    return node


def required_variables(text: str) -> set[str]:
    """Names used as ``${NAME:?...}`` / ``${NAME?...}``: the ones .env must define."""
    return {m.group(2) for m in _VAR.finditer(text) if m.group(3) in (":?", "?")}


def variables(text: str) -> set[str]:
    return {m.group(2) or m.group(5) for m in _VAR.finditer(text) if not m.group(1)}


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def argv(service: Mapping[str, Any]) -> list[str]:
    """The process a service runs: ``airflow <command>`` (the image's entrypoint) unless the entrypoint is overridden."""
    command = service.get("command") or []
    args = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
    entrypoint = service.get("entrypoint")
    if entrypoint:
        head = shlex.split(entrypoint) if isinstance(entrypoint, str) else list(entrypoint)
        return [Path(head[0]).name, *head[1:], *args]
    return ["airflow", *args]


def rewrite(value: str, replacements: Mapping[str, str]) -> str:
    """Apply ``replacements`` (longest key first) to one value: ``@host/``, ``host:port``, container paths.

    Keys carry their delimiters (``@postgres/``, not ``postgres``), so a database
    named ``postgres`` or a ``postgresql://`` scheme is never rewritten.
    """
    for old in sorted(replacements, key=len, reverse=True):
        value = value.replace(old, replacements[old])
    return value
