"""``otpagent otp reset-key``: make this worker's OTP key the one the store expects, on purpose.

A worker whose key is not the one the store's codes are made with refuses to start (see
:mod:`otpagent.otp_keys`). When the key really is meant to change (it leaked, the key file was
lost), this command records the fingerprint of the key this configuration finds (creating the
key file when there is none). Codes issued under the old key stop verifying and queued codes
sealed under it fail, so it asks first unless given ``--yes``. It opens only the storage
backend, never the whole agent (which would refuse to start for the very mismatch being fixed).
"""

from __future__ import annotations

import click

__all__ = ["add_otp_key_commands", "reset_key"]


@click.command("reset-key")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def reset_key(ctx: click.Context, yes: bool) -> None:
    """Make this worker's OTP key the store's key (codes issued under the old key stop verifying)."""
    from otpagent.cli import friendly_errors

    friendly_errors(_reset_key)(ctx, yes)


def _reset_key(ctx: click.Context, yes: bool) -> None:
    from otpagent.config import load_config
    from otpagent.otp_keys import reset_otp_key
    from otpagent.plugin_checks import call_storage_factory
    from otpagent.plugins import build_registry
    from otpagent.protocols import Capability, PluginContext
    from otpagent.storage.capabilities import require

    config = load_config((ctx.find_root().obj or {}).get("config"))
    if not yes:
        click.confirm("Codes issued under the store's current OTP key will stop verifying, and queued codes "
                      "sealed under it will fail. Continue?", abort=True, err=True)
    registry = build_registry()
    backend = registry.lookup("storage_backends", config.storage_backend, "storage.backend")
    context = PluginContext(config_dir=config.base_dir, public_url=config.public_url)
    storage = call_storage_factory(backend, "storage.backend", config.storage, context)
    try:
        state = require(storage, Capability.SHARED_STATE, config_path="circuit", needed_by="the OTP key fingerprint")
        keys, previous = reset_otp_key(config.otp, config.base_dir, state)
    finally:
        storage.close()
    if previous == keys.fingerprint:
        click.echo(f"The store already expects this key ({keys.fingerprint}, from {keys.source.description}).")
        return
    click.echo(f"The store now expects the OTP key {keys.fingerprint} (from {keys.source.description}); "
               f"it expected {previous or 'none'}.")
    click.echo("Give every worker sharing the store this key: copy the key file, or set the same otp.secret.")


def add_otp_key_commands(cli: click.Group) -> None:
    """Add ``reset-key`` to the ``otp`` command group."""
    group = cli.commands.get("otp")
    if isinstance(group, click.Group):
        group.add_command(reset_key)
