"""The checker's environment: nothing it reads comes from where a student's kernel can write.

The kernel and the checker run as the same user in the sandbox, so any folder the checker could
write (`/tmp`, `/dev/shm`, `/submission`, their HOME) the kernel can write too, before or after the
checker made it. A module imported late reads its settings from HOME and the like (dask's config
can name a callable for its logging, keras' its backend and float type, matplotlib's its rc), and
keras' downloader reads its cache there. So:

- `seal` (once, when the zygote forks the checker, before any kernel exists): the environment is
  cleared but for the few values the runner was given (threads, locale, the data folder), and
  HOME, the XDG folders and every tool's config variable point at `NOWHERE`, a path under /proc
  that does not exist: nobody (root included, sandbox or not) can make a folder there, so nothing
  can be found there.
  `sys.path` keeps no entry in a folder the kernel can write.
- `fresh_home` (in each check request's child, once every student process is killed): a new empty
  folder for what must be writable (keras' cache, which falls back to `/tmp/.keras` when its home
  is read-only), made when no student process exists and removed before one can.
"""
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from graders import data

NOWHERE = "/proc/nonexistent/onions-checker"  # nobody can create a folder in /proc
KEPT = ("PATH", "LANG", "LC_ALL", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS",
        "NBGRADER_EXECUTION", data.CACHE_DIR_ENV)  # the grader's values, needed by the checks
HOMES = ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR",
         "MPLCONFIGDIR", "IPYTHONDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "DASK_CONFIG",
         "KERAS_HOME", "TFHUB_CACHE_DIR", "HF_HOME", "TORCH_HOME", "PYTHONUSERBASE")  # config, cache, startup folders


def seal(writable: list) -> None:
    """Before any kernel exists: the checker's environment is its own (`KEPT`, and `HOMES` at NOWHERE),
    and `sys.path` has no entry in or under `writable` (the kernels' folders) or that does not exist."""
    kept = {key: os.environ[key] for key in KEPT if key in os.environ}
    kept.setdefault(data.CACHE_DIR_ENV, str(data.cache_dir()))  # as resolved now, with the runner's HOME
    os.environ.clear()
    os.environ.update(kept, **{key: NOWHERE for key in HOMES})
    roots = [os.path.realpath(folder) for folder in writable]
    sys.path[:] = [entry for entry in sys.path if entry not in ("", ".") and os.path.exists(entry)
                   and not any(_under(os.path.realpath(entry), root) and not _out_of_reach(os.path.realpath(entry), root)
                               for root in roots)]
    sys.path_importer_cache.clear()
    _point_keras_at(NOWHERE)


def fresh_home() -> str:
    """A new, empty, private home for one check request (the caller removes it with `remove`)."""
    home = tempfile.mkdtemp(prefix="graders-checker-", dir=tempfile.gettempdir())
    os.environ.update({key: home for key in HOMES})
    _point_keras_at(home)  # a folder keras can write: else its downloader falls back to /tmp/.keras
    return home


def remove(home: str) -> None:
    shutil.rmtree(home, ignore_errors=True)


def _point_keras_at(folder: str) -> None:
    """keras keeps the home it found at import (the zygote's, in /tmp): its downloader's cache is there."""
    config = sys.modules.get("keras.src.backend.config")
    if config is not None and hasattr(config, "_KERAS_DIR"):
        config._KERAS_DIR = folder


def _out_of_reach(path: str, root: str) -> bool:
    """Whether `path`, under a folder the kernel can write (a virtualenv in /tmp, shown read-only
    there by the sandbox), is still beyond the kernel's reach: on a read-only mount, and no folder
    between `root` and it on a writable one is ours or open to us, in a sticky `root` (so none can
    be renamed away and replaced). Otherwise the entry is dropped and the checker fails closed."""
    if not os.statvfs(path).f_flag & os.ST_RDONLY:
        return False
    root_status = os.stat(root)
    if os.access(root, os.W_OK) and not root_status.st_mode & stat.S_ISVTX:
        return False
    current = os.path.dirname(path)
    while _under(current, root) and current != root:
        status = os.stat(current)
        if not os.statvfs(current).f_flag & os.ST_RDONLY and (status.st_uid == os.getuid() or os.access(current, os.W_OK)):
            return False
        current = os.path.dirname(current)
    return True


def _under(path: str, root: str) -> bool:
    return Path(path) == Path(root) or Path(root) in Path(path).parents
