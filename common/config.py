"""Configuration files (TOML) merged under command-line options.

Precedence: command line > config file > built-in default.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

# Log levels both daemons accept; here, not in common.logsetup, so that reading the
# configuration imports no Twisted (the region begins its embedded cluster's initdb before that).
LEVELS = ("debug", "info", "warn", "error", "critical")


class ConfigError(ValueError):
    pass


def load_toml(path: str | Path | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path}: {e}") from None


def parse_endpoint(value: str, default_port: int) -> tuple[str, int]:
    """'127.0.0.1:5240', '[::1]:5240', ':5240' or 'host' -> (host, port)."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":")
    elif value.count(":") == 1:
        host, port = value.split(":")
    elif value.count(":") > 1:  # bare IPv6 address
        host, port = value, ""
    else:
        host, port = value, ""
    try:
        return host or "0.0.0.0", int(port) if port else default_port
    except ValueError:
        raise ConfigError(f"bad listen address {value!r}: port must be a number") from None
