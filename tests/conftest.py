import os
from types import SimpleNamespace

import pytest
import torch

from .tools import run_tool

# Under pytest-xdist every worker is a process of its own: one intra-op thread
# each, or two workers x two OpenMP threads oversubscribe a 2-core machine and
# every parallel region waits on descheduled threads.
if os.environ.get('PYTEST_XDIST_WORKER'):
    torch.set_num_threads(1)


def pytest_configure(config):
    """In the main process, before any xdist worker starts: write yapf's grammar cache.

    mmengine's Config imports yapf, which regenerates its pickled grammar on
    first import after an install; two workers doing that at once can read a
    half-written file (EOFError at collection).
    """
    if not hasattr(config, 'workerinput'):
        from yapf.yapflib import yapf_api  # noqa: F401  (what mmengine.config imports)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def convert(capsys):
    """Run tools/convert_official_checkpoint.py in-process: ``(returncode, stdout, stderr)``."""

    def run(*args):
        code = run_tool('convert_official_checkpoint.py', *args)
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run


@pytest.fixture
def cpu_launcher(monkeypatch):
    """The CUDA backend (``mmrednet.ops.cuda``) taking CPU tensors, with a GPU and CuPy
    simulated and its per-process state fresh, whatever this machine has.

    Compiling and launching need a GPU: a test replaces ``launcher.load`` and
    ``launcher.launch`` (with the host emulation, say) or ``launcher.cupy``.
    """
    from mmrednet.ops import cuda
    from mmrednet.ops.cuda import backend, launcher, selfcheck

    monkeypatch.setattr(launcher, 'runs_on', lambda device: device.type == 'cpu')
    monkeypatch.setattr(launcher, 'AVAILABLE', True)
    monkeypatch.setattr(launcher, 'cupy', SimpleNamespace(__name__='cupy'))
    monkeypatch.setattr(launcher, 'sm_count', lambda device: 132)
    for module, state in ((backend, '_warned'), (backend, '_failures'),
                          (selfcheck, '_verdicts'), (launcher, '_functions'),
                          (launcher, '_modules')):
        monkeypatch.setattr(module, state, type(getattr(module, state))())
    monkeypatch.delenv('MMREDNET_CUDA_SELFCHECK', raising=False)
    return cuda


def pytest_collection_modifyitems(config, items):
    """Skip ``gpu``-marked tests without a CUDA device (and say why)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA device')
    for item in items:
        if 'gpu' in item.keywords:
            item.add_marker(skip)
