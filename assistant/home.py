"""The data home: where memex keeps everything it knows about you.

Resolution order: the global ``--home`` option, then ``MEMEX_HOME``, then
``$XDG_DATA_HOME/memex`` (``~/.local/share/memex``). The folder is private:
created with mode 0700, and files written by memex are 0600 (see ``private_umask``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_current_home: Path | None = None


def default_home() -> Path:
    env = os.environ.get("MEMEX_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(xdg).expanduser() / "memex"


def ensure_home(path: Path | str | None = None) -> Path:
    """Create the data home (0700) if needed and return its absolute path."""
    home = Path(path).expanduser() if path else default_home()
    home = home.absolute()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    # mkdir's mode is filtered by the umask and ignored for existing folders.
    if (home.stat().st_mode & 0o777) != 0o700:
        home.chmod(0o700)
    # Everything memex creates from here on is private to the user.
    os.umask(0o077)
    return home


def set_home(path: Path | str | None) -> Path:
    global _current_home
    _current_home = ensure_home(path)
    return _current_home


def get_home() -> Path:
    """The data home chosen for this process (resolved and created on first use)."""
    global _current_home
    if _current_home is None:
        _current_home = ensure_home(None)
    return _current_home


def model_cache_dir(home: Path | None = None) -> Path:
    """Where converted model weights are cached (``MEMEX_MODEL_CACHE`` overrides)."""
    env = os.environ.get("MEMEX_MODEL_CACHE")
    if env:
        path = Path(env).expanduser()
    else:
        path = (home or get_home()) / "models"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@contextlib.contextmanager
def private_umask():
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)
