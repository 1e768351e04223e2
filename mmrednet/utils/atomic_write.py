"""Write a file so that readers see the old file or the whole new one, never a part."""
import errno
import os
import os.path as osp
import stat
import uuid
from typing import BinaryIO, Callable


def _create_temporary(folder: str, name: str) -> tuple:
    """A new file next to the destination, opened for writing: ``(fd, path)``.

    Created with mode 0o666, as ``open(path, 'w')`` creates files: the kernel
    applies the process's umask (and a default ACL of the folder), so the
    file gets the permissions a normal new file gets. (``tempfile.mkstemp``
    creates 0o600 files: others could not read the result.)
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_CLOEXEC', 0)
    while True:
        path = osp.join(folder, f'.{name}.{uuid.uuid4().hex}.tmp')
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:  # a 128-bit name taken: try another
            continue


def _sync_folder(folder: str) -> None:
    """Make the rename durable; some file systems cannot sync a folder, which is harmless."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through ``write(file)``: whole or not at all, even if the process dies.

    The content goes to a temporary file in the same folder, is flushed and
    synced to disk, and then renamed over ``path``. If ``write`` raises, the
    temporary file is removed and ``path`` is untouched.

    Permissions are those that ``open(path, 'wb')`` (what ``torch.save`` and
    mmengine use) would leave: a new file gets ``0o666 & ~umask``, and a file
    that is replaced keeps its permission bits (the owner is the writer's).

    Args:
        path (str): The file to write; its folder is created if needed.
        write (Callable[[BinaryIO], None]): Writes the content to the open
            binary file it is given.
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = _create_temporary(folder, osp.basename(path))
    try:
        with os.fdopen(fd, 'wb') as f:
            try:
                os.fchmod(f.fileno(), stat.S_IMODE(os.stat(path).st_mode))
            except FileNotFoundError:
                pass  # a new file: the mode it was created with
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    _sync_folder(folder)
