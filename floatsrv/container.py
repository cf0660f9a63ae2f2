"""How the container image starts (`floatsrv container-start`, its CMD): never with published passwords on
the network.

- A config mounted at `$FLOATSRV_CONFIG` (default /etc/floatsrv/config.yaml): `floatsrv serve` on it, on all
  interfaces, with the data in the volume; unless it declares a user with a published demo password (a copy
  of config.example.yaml, say): then one line saying so, exit 2.
- None, but `FLOATSRV_DEMO=1`: the demo (published passwords, demo license) on the container's loopback only,
  reachable with `docker exec` and nothing else: a deliberate trial.
- Neither: one line saying what to mount, exit 2 (a restart policy cannot fix it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import click

from floatsrv.config import EXIT_BAD_CONFIG, ConfigError, load_config

DEFAULT_CONFIG = "/etc/floatsrv/config.yaml"
DEMO_CONFIG = "/usr/share/floatsrv/demo/config.yaml"
DATA_DIR = "/var/lib/floatsrv"


def serve_command(environ: Mapping[str, str], demo_config: str = DEMO_CONFIG) -> list[str] | str:
    """The `floatsrv serve` arguments to run, or the one line explaining why nothing can start."""
    config = environ.get("FLOATSRV_CONFIG") or DEFAULT_CONFIG
    if Path(config).is_file():
        published = _published_passwords(Path(config))
        if published:
            return (
                f"the config at {config} gives {', '.join(published)} a published demo password, and the image "
                "serves on the network: set password_hash instead (make one with `floatsrv hash-password`)"
            )
        return ["serve", "--config", config, "--host", "0.0.0.0", "--data-dir", DATA_DIR]  # noqa: S104 -- the LAN
    if environ.get("FLOATSRV_DEMO") == "1":
        return ["serve", "--config", demo_config, "--host", "127.0.0.1", "--data-dir", DATA_DIR]
    return (
        f"no config at {config}: mount yours there (docker run -v /srv/floatsrv/config.yaml:{DEFAULT_CONFIG}:ro "
        "...), or set FLOATSRV_DEMO=1 to try the demo, which has published passwords and therefore listens on "
        "the container's loopback only"
    )


def _published_passwords(path: Path) -> list[str]:
    """The users `path` declares with a published demo password (none when it does not load: then `serve`
    reports what is wrong with it, as everywhere else)."""
    try:
        config = load_config(path)
    except ConfigError:
        return []
    return [repr(user.username) for user in config.auth.users if user.uses_demo_password]


def config_to_check(environ: Mapping[str, str], given: Path | None) -> Path | None:
    """The config `floatsrv healthcheck` reads in the image: the given (or mounted) one, else the demo's when
    the demo was asked for (the same choice as `serve_command`)."""
    if (given is None or not given.is_file()) and environ.get("FLOATSRV_DEMO") == "1":
        return Path(DEMO_CONFIG)
    return given


@click.command("container-start", hidden=True)
def container_start() -> None:
    """The container image's entry point (see floatsrv.container)."""
    command = serve_command(os.environ)
    if isinstance(command, str):
        click.echo(f"floatsrv: {command}", err=True)
        sys.exit(EXIT_BAD_CONFIG)
    os.execv(sys.executable, [sys.executable, "-m", "floatsrv", *command])  # noqa: S606 -- fixed arguments
