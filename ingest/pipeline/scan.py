"""Walking source folders and reading files safely.

Rules: hidden files and folders (``.obsidian/``, ``.git/``…) and editor temp or
swap files are ignored; files in formats memex does not read are ignored;
symbolic links are never followed (each one with a readable extension is
recorded as skipped, with why); only regular files are read. A file that
changes while being read is read again; one that keeps changing is skipped for
this run and retried on the next.
"""

from __future__ import annotations

import errno
import os
import re
import stat as stat_mod
import time
from dataclasses import dataclass
from pathlib import Path

from ingest.readers import reader_for
from ingest.readers.base import SkipFile

# Editor and OS leftovers: vim swap/backup (and its 4913 write test), emacs
# autosave/lock files, Office lock files, partial downloads.
_TEMP_FILE = re.compile(
    r"(~$|^#.*#$|^\.#|\.sw[a-p]$|\.tmp$|\.temp$|\.bak$|\.part$|\.crdownload$|^~\$|^4913$|"
    r"^\.~lock\..*#$)", re.IGNORECASE)


def is_ignored_name(name: str) -> bool:
    return name.startswith(".") or bool(_TEMP_FILE.search(name))


class TransientSkip(SkipFile):
    """A skip worth retrying on the next scan even if the file looks unchanged."""


@dataclass
class FileInfo:
    relpath: str
    size: int | None = None
    mtime_ns: int | None = None
    format: str | None = None
    skip_reason: str | None = None


@dataclass
class WalkResult:
    files: list[FileInfo]
    unreadable_dirs: list[str]  # relative folders we could not list (their files are not "gone")
    ignored: int = 0


def _symlink_reason(path: str, root: str) -> str:
    try:
        target = os.path.realpath(path, strict=True)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (not followed)"
        return "broken symbolic link (not followed)"
    except RuntimeError:
        return "symbolic link loop (not followed)"
    inside = target == root or target.startswith(root.rstrip(os.sep) + os.sep)
    if not inside:
        return "symbolic link leading out of the source root (not followed)"
    return "symbolic link (not followed; its target inside the source is read directly)"


def walk(root: Path, start_rel: str = "", skip_dirs: tuple[str, ...] = (),
         excluded: set[str] | None = None) -> WalkResult:
    """Every candidate file under ``root/start_rel`` (never following links)."""
    root_str = os.path.realpath(root)
    excluded = excluded or set()
    files: list[FileInfo] = []
    unreadable: list[str] = []
    ignored = 0
    stack = [start_rel]
    while stack:
        rel_dir = stack.pop()
        abs_dir = os.path.join(root_str, rel_dir) if rel_dir else root_str
        try:
            with os.scandir(abs_dir) as iterator:
                items = list(iterator)
        except FileNotFoundError:
            continue
        except NotADirectoryError:
            continue
        except OSError as exc:
            unreadable.append(rel_dir)
            files.append(FileInfo(rel_dir or ".", skip_reason=f"unreadable folder ({exc.strerror})"))
            continue
        for item in items:
            name = item.name
            if is_ignored_name(name):
                ignored += 1
                continue
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if rel in excluded:
                continue
            try:
                if item.is_symlink():
                    if reader_for(name) or _link_is_dir(item.path):
                        files.append(FileInfo(rel, skip_reason=_symlink_reason(item.path, root_str)))
                    else:
                        ignored += 1
                    continue
                if item.is_dir(follow_symlinks=False):
                    if os.path.realpath(item.path) in skip_dirs:
                        continue
                    stack.append(rel)
                    continue
                reader = reader_for(name)
                if reader is None:
                    ignored += 1
                    continue
                if not item.is_file(follow_symlinks=False):
                    files.append(FileInfo(rel, format=reader.FORMAT,
                                          skip_reason="not a regular file"))
                    continue
                st = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # vanished while we looked
            except OSError as exc:
                files.append(FileInfo(rel, skip_reason=f"cannot stat ({exc.strerror})"))
                continue
            files.append(FileInfo(rel, st.st_size, st.st_mtime_ns, reader.FORMAT))
    files.sort(key=lambda f: f.relpath)
    return WalkResult(files, unreadable, ignored)


def _link_is_dir(path: str) -> bool:
    try:
        return os.path.isdir(path)
    except OSError:
        return False


def stat_one(root: Path, relpath: str) -> FileInfo | None:
    """FileInfo for a single file (a one-file source, or a path the watcher saw)."""
    path = os.path.join(os.path.realpath(root), relpath)
    name = os.path.basename(relpath)
    if is_ignored_name(name):
        return None
    reader = reader_for(name)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return FileInfo(relpath, skip_reason=f"cannot stat ({exc.strerror})")
    if stat_mod.S_ISLNK(st.st_mode):
        return FileInfo(relpath, skip_reason=_symlink_reason(path, os.path.realpath(root))) \
            if reader else None
    if reader is None:
        return None
    if not stat_mod.S_ISREG(st.st_mode):
        return FileInfo(relpath, format=reader.FORMAT, skip_reason="not a regular file")
    return FileInfo(relpath, st.st_size, st.st_mtime_ns, reader.FORMAT)


def read_stable(path: Path, max_bytes: int, attempts: int = 4) -> tuple[bytes, os.stat_result]:
    """The file's bytes, read when it is not changing, with its stat.

    Raises FileNotFoundError if it vanished, SkipFile/TransientSkip otherwise.
    """
    for attempt in range(attempts):
        try:
            before = os.lstat(path)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise TransientSkip(f"unreadable ({exc.strerror})") from None
        if stat_mod.S_ISLNK(before.st_mode):
            raise SkipFile("symbolic link (not followed)")
        if not stat_mod.S_ISREG(before.st_mode):
            raise SkipFile("not a regular file")
        if before.st_size > max_bytes:
            raise SkipFile(f"larger than the {_mb(max_bytes)} cap ({_mb(before.st_size)}); "
                           f"raise it with --max-file-mb")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise SkipFile("symbolic link (not followed)") from None
            raise TransientSkip(f"unreadable ({exc.strerror})") from None
        try:
            with os.fdopen(fd, "rb") as handle:
                data = handle.read(max_bytes + 1)
                after = os.fstat(handle.fileno())
        except OSError as exc:
            raise TransientSkip(f"unreadable ({exc.strerror})") from None
        if len(data) > max_bytes:
            raise SkipFile(f"larger than the {_mb(max_bytes)} cap; raise it with --max-file-mb")
        if (len(data) == after.st_size == before.st_size
                and after.st_mtime_ns == before.st_mtime_ns):
            return data, after
        time.sleep(0.05 * (attempt + 1))
    raise TransientSkip("file kept changing while being read (will retry)")


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB" if size % (1024 * 1024) else f"{size // (1024 * 1024)} MB"
