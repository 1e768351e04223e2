"""Atomic checkpoint files: a file is either absent, its old content, or complete.

mmengine's ``LocalBackend.put`` and ``CheckpointHook`` write with a plain
``open(path, 'wb')``: a process killed while writing (Slurm's SIGKILL after the
grace period, a node failure) leaves a truncated checkpoint, or a truncated
``last_checkpoint`` that ``--resume`` then follows.
"""
import glob
import os
import os.path as osp
import uuid
from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend, register_backend

# The name selected with a CheckpointHook's ``backend_args=dict(backend=...)``.
ATOMIC_BACKEND = 'mmrednet_atomic_local'
# Marks the temporary files of unfinished writes (swept by :func:`remove_temporaries`).
TEMP_SUFFIX = '.mmrednet-tmp'


def atomic_write(path: Union[str, Path], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory.

    The temporary file is flushed and fsynced, then renamed over ``path``
    (atomic on POSIX file systems), and the directory is fsynced so that the
    rename survives a power cut. The new file has the mode of a normal new
    file, ``0o666 & ~umask`` (``tempfile.mkstemp`` would give 0600).

    Args:
        path (str | Path): The file to create or replace (its directory is created).
        data (bytes): The whole content.
    """
    path = osp.abspath(os.fspath(path))
    directory = osp.dirname(path)
    os.makedirs(directory, exist_ok=True)
    temporary = osp.join(directory, f'.{osp.basename(path)}.{uuid.uuid4().hex}{TEMP_SUFFIX}')
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if osp.exists(temporary):
            os.remove(temporary)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_temporaries(directory: str) -> None:
    """Remove what writes killed in :func:`atomic_write` left in ``directory``.

    Only for a directory that this process alone writes to (a run's
    checkpoint directory): another writer's temporary file would go too.
    """
    for temporary in glob.glob(osp.join(glob.escape(directory), f'.*{TEMP_SUFFIX}')):
        os.remove(temporary)


def publish_checkpoint(work_dir: str, checkpoint: str) -> None:
    """Point ``work_dir/last_checkpoint`` (read by ``--resume``) at ``checkpoint`` atomically."""
    atomic_write(osp.join(work_dir, 'last_checkpoint'), checkpoint.encode('utf-8'))


@register_backend(ATOMIC_BACKEND)
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose ``put`` and ``put_text`` write atomically.

    Select it for checkpoints with ``backend_args=dict(backend='mmrednet_atomic_local')``;
    :class:`mmrednet.engine.CheckpointHook` does so for a local ``out_dir``.
    """

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write(filepath, obj)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        atomic_write(filepath, obj.encode(encoding))
