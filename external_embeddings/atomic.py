"""Build a directory in a temporary sibling and rename it into place, so a reader never sees half of it."""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_dir(target, replace=False):
    """Yield a temporary folder beside ``target``; on success it becomes ``target``.

    On any error (or Ctrl-C) the temporary folder is removed and ``target`` is untouched. With
    ``replace``, an existing ``target`` is swapped out; without it, renaming onto a non-empty
    folder fails (``OSError``), which is how a lost race with another process shows.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; stores and runs are shared with other users
        yield tmp
        if replace and target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if target.is_dir() and not any(target.iterdir()):
                target.rmdir()
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
