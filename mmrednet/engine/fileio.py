"""Atomic checkpoint files: a file is either absent, its old content, or complete.

mmengine's ``LocalBackend.put`` and ``CheckpointHook`` write with a plain
``open(path, 'wb')``: a process killed while writing (Slurm's SIGKILL after the
grace period, a node failure) leaves a truncated checkpoint, or a truncated
``last_checkpoint`` that ``--resume`` then follows.
"""
import os
import os.path as osp
import re
from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend, register_backend

from ..utils.atomic_write import atomic_write

# The name selected with a CheckpointHook's ``backend_args=dict(backend=...)``.
ATOMIC_BACKEND = 'mmrednet_atomic_local'
# The temporary files of atomic_write: ``.<name>.<32 hex digits>.tmp``.
_TEMPORARY = re.compile(r'\..+\.[0-9a-f]{32}\.tmp')


def is_temporary(path: str) -> bool:
    """Whether ``path`` names a temporary file of an unfinished :func:`atomic_write`."""
    return _TEMPORARY.fullmatch(osp.basename(path)) is not None


def remove_temporaries(directory: str) -> None:
    """Remove what writes killed in :func:`atomic_write` left in ``directory``.

    Only for a directory that this process alone writes to (a run's
    checkpoint directory): another writer's temporary file would go too.
    """
    for name in os.listdir(directory):
        if is_temporary(name):
            os.remove(osp.join(directory, name))


def write_atomically(path: Union[str, Path], data: bytes) -> None:
    """:func:`~mmrednet.utils.atomic_write.atomic_write` of ``data``: whole or not at all."""
    atomic_write(os.fspath(path), lambda f: f.write(data))


def publish_checkpoint(work_dir: str, checkpoint: str) -> None:
    """Point ``work_dir/last_checkpoint`` (read by ``--resume``) at ``checkpoint`` atomically."""
    write_atomically(osp.join(work_dir, 'last_checkpoint'), checkpoint.encode('utf-8'))


@register_backend(ATOMIC_BACKEND)
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose ``put`` and ``put_text`` write atomically.

    Through a temporary file in the same directory, flushed, fsynced and
    renamed (:func:`~mmrednet.utils.atomic_write.atomic_write`; a new file gets
    the permissions of any new file). Select it with
    ``backend_args=dict(backend='mmrednet_atomic_local')``;
    :class:`mmrednet.engine.CheckpointHook` does so for a local ``out_dir``.
    """

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        write_atomically(filepath, obj)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        write_atomically(filepath, obj.encode(encoding))
