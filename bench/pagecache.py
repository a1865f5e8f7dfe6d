"""One page cache state for every round: the functions' files dropped from it, then read back by a process.

A process's peak RSS counts the file pages it maps, and the kernel (6.x, large folios) maps a cached
file in pieces as large as those it holds in its page cache, which depend on how the file got there:
written by pip, read by ``cat``, or faulted in through mmap. TensorFlow's handler measured 643, 666,
677 and 754 MiB here over such states, on the same files. So each round of the benchmark drops every
file its functions load from the page cache (``posix_fadvise(DONTNEED)``, which needs no privilege
and leaves pages a running process maps), and an uncounted cold start of each variant reads them back
as a new Lambda process would, through its own imports and mmaps. What is left varies with how large
the folios come out (the kernel takes large ones where free memory allows: 643 to 658 MiB for the
TensorFlow handler over installs and drops), and since every round starts anew, the spread shows it.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterable
from pathlib import Path

from bench.common import Runtime


def roots(runtime: Runtime) -> list[Path]:
    """What a function's process loads: its Python installation, its package and the paths beside it."""
    interpreter = Path(runtime.python[0])
    if interpreter.resolve() == Path(sys.executable).resolve():  # the project's virtualenv (the TensorFlow handler)
        found = {Path(sys.prefix), Path(sys.base_prefix)}
    else:
        found = {interpreter.resolve().parents[1]}  # <prefix>/bin/python3.12 -> <prefix>
    if runtime.package:
        found.add(runtime.package)
    found.update(runtime.extra_paths)
    return sorted(p for p in found if p.is_dir())


def drop(folders: Iterable[Path]) -> dict[str, int]:
    """Drop every regular file under ``folders`` from the page cache; returns how many files and bytes."""
    os.sync()  # dirty pages (a fresh clone's new virtualenv) cannot be dropped until written back
    files = size = 0
    for folder in folders:
        for dirpath, _dirs, names in os.walk(folder):
            for name in names:
                path = os.path.join(dirpath, name)
                try:
                    if not stat.S_ISREG(os.lstat(path).st_mode):
                        continue  # links are dropped through their targets; fifos and sockets hold no pages
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                except OSError:
                    continue  # unreadable or gone: nothing of ours
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    files += 1
                    size += os.fstat(fd).st_size
                finally:
                    os.close(fd)
    return {"files": files, "bytes": size}
