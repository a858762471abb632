"""The OTP key file: a secret kept beside the config, never in the database.

When neither ``otp.secret`` nor ``$OTPAGENT_OTP_SECRET`` is set, the master OTP secret lives in a
file (``otp.key_file``, default ``otpagent.key`` beside the config file). It is created on
first run (32 random bytes, base64url, mode 0600): written and synced under a temporary name,
then hard-linked into place, which fails when the name exists. So two processes starting at
once cannot both create one, and no reader (nor a crash) ever sees the file empty or half
written. It is refused, with the command that fixes it, when anyone but its owner may read or
write it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import stat
import tempfile
import time
from pathlib import Path

from otpagent.errors import ConfigError

__all__ = ["KEY_FILE_PATH", "MIN_SECRET_CHARS", "create_key_file", "new_secret", "read_key_file"]

#: The config key errors about the key file name.
KEY_FILE_PATH = "otp.key_file"
#: The shortest master secret accepted, wherever it comes from.
MIN_SECRET_CHARS = 16
#: How long a reader waits for a key file being written in place (file systems without hard links).
_CREATION_GRACE_SECONDS = 2.0


def new_secret() -> str:
    """32 random bytes, base64url without padding (43 characters)."""
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode("ascii")


def read_key_file(path: Path) -> str | None:
    """The secret in ``path``, or None when there is no such file.

    Raises :class:`ConfigError` at ``otp.key_file`` when the file cannot be read, is not a
    regular file, is open to anyone but its owner (any group or other permission bit: ``chmod
    600`` fixes it), or holds fewer than 16 characters.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(KEY_FILE_PATH, f"cannot read the OTP key file {str(path)!r}: {exc.strerror} "
                                         "(it must be readable by the user running otpagent, mode 0600)") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(KEY_FILE_PATH, f"the OTP key file {str(path)!r} is not a regular file")
        loose = stat.S_IMODE(info.st_mode) & 0o077
        if loose and os.name == "posix":
            raise ConfigError(KEY_FILE_PATH, f"the OTP key file {str(path)!r} is open to other users "
                                             f"(mode {stat.S_IMODE(info.st_mode):04o}); it holds the key that "
                                             f"protects every code: run chmod 600 {path}")
        data = os.read(fd, 4096)
    except OSError as exc:
        raise ConfigError(KEY_FILE_PATH, f"cannot read the OTP key file {str(path)!r}: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        secret = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(KEY_FILE_PATH, f"the OTP key file {str(path)!r} is not text") from None
    if len(secret) < MIN_SECRET_CHARS:
        raise ConfigError(KEY_FILE_PATH, f"the OTP key file {str(path)!r} is empty or too short (it must hold at "
                                         f"least {MIN_SECRET_CHARS} characters)")
    return secret


def create_key_file(path: Path, secret: str | None = None) -> str:
    """Create ``path`` holding ``secret`` (a new random one by default) with mode 0600 and
    return the secret the file holds.

    Exclusive creation: when another process created the file first, its secret is read and
    returned instead. The file and its directory are synced before returning, so a key that
    codes were made with survives a power cut.
    """
    value = secret or new_secret()
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigError(KEY_FILE_PATH, f"cannot create the OTP key file {str(path)!r}: {exc.strerror} (choose "
                                         "another otp.key_file, or give the key in otp.secret or "
                                         "$OTPAGENT_OTP_SECRET)") from None
    try:
        _write_and_close(fd, value)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return _read_existing_key_file(path)
        except OSError:  # a file system without hard links: exclusive create, written in place
            return _create_in_place(path, value)
    finally:
        with contextlib.suppress(OSError):
            Path(temporary).unlink()
    _sync_directory(path.parent)
    return value


def _read_existing_key_file(path: Path) -> str:
    """The key another process created first (it may still be writing it in place)."""
    deadline = time.monotonic() + _CREATION_GRACE_SECONDS
    while True:
        try:
            secret = read_key_file(path)
        except ConfigError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.02)
            continue
        if secret is None:  # deleted again in between: nothing sensible to wait for
            raise ConfigError(KEY_FILE_PATH, f"the OTP key file {str(path)!r} disappeared while it was being read")
        return secret


def _create_in_place(path: Path, value: str) -> str:
    """Exclusive creation where hard links are refused; a reader may see the file briefly empty."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return _read_existing_key_file(path)
    except OSError as exc:
        raise ConfigError(KEY_FILE_PATH, f"cannot create the OTP key file {str(path)!r}: {exc.strerror}") from None
    _write_and_close(fd, value)
    _sync_directory(path.parent)
    return value


def _write_and_close(fd: int, value: str) -> None:
    """Write the secret and a newline to the new file ``fd``, sync it to disk, close it."""
    try:
        os.write(fd, (value + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_directory(directory: Path) -> None:
    """Make the new file's directory entry durable (POSIX; a no-op where unsupported)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
