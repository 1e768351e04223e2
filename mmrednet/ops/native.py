"""The compiled op library ``mmrednet/_C.so``: the ops defined in C++ and their CPU kernels.

As torchvision loads its ``_C_stable.so``: a plain shared library (no Python
module, no Python symbol), opened with ``torch.ops.load_library`` so that its
``STABLE_TORCH_LIBRARY`` registrations run. A C++ program (an AOTInductor runner)
dlopens the same file. It is absent when mmrednet was installed with
``MMREDNET_WITH_EXT=0``; setting that variable at run time skips loading it.
"""
import os
import warnings
from pathlib import Path

import torch

LIBRARY = Path(__file__).resolve().parents[1] / '_C.so'


def _load() -> bool:
    if os.environ.get('MMREDNET_WITH_EXT', '1') == '0' or not LIBRARY.is_file():
        return False
    try:
        torch.ops.load_library(str(LIBRARY))
    except OSError as exc:  # built for another torch: the portable path serves the CPU
        warnings.warn(f'mmrednet: could not load the op library {LIBRARY} ({exc}); the CPU '
                      'runs the slow portable path. Reinstall mmrednet for this torch.',
                      stacklevel=2)
        return False
    return True


LOADED = _load()


def op_library_path() -> str:
    """Absolute path of the loaded op library, for ``torch.ops.load_library`` or dlopen.

    Raises:
        RuntimeError: if the library was not built or not loaded.
    """
    if not LOADED:
        reason = ('MMREDNET_WITH_EXT=0 is set' if os.environ.get('MMREDNET_WITH_EXT') == '0'
                  else f'{LIBRARY} was not built or did not load')
        raise RuntimeError(f'mmrednet: no op library ({reason}); reinstall mmrednet with a C++ '
                           'compiler and without MMREDNET_WITH_EXT=0')
    return str(LIBRARY)


def library_version() -> str:
    """The mmrednet version the loaded op library was built from."""
    op_library_path()  # raises if there is none
    return torch.ops.mmrednet._library_version()
