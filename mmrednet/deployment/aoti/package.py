"""What an AOTInductor package (``.pt2``) says about itself, and whether this process can run it.

One ``.pt2`` holds every graph of a deployment (``graphs.py``) as its own
AOTInductor model (``main``, and ``bbox_head``/``mask_head`` for two-stage
detectors), and a JSON file ``extra/mmrednet.json`` (``PackageInfo``) with:
each graph's ``GraphMetadata`` and input shape, the torch version and CPU
instruction set it was compiled for, and the mmrednet ops it calls with the
op library's version.

A package's graphs are shared libraries compiled for one torch and one CPU
instruction set, calling our ops by name: ``check_compatible`` reads the JSON
with ``zipfile`` (bounded size) before any of that code is loaded and names
what does not fit, instead of letting the loader crash (an illegal
instruction) or fail deep in C++.
"""
import json
import os.path as osp
import platform
import zipfile
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import torch

from .metadata import GraphMetadata

INFO_FILE = 'mmrednet.json'
_INFO_MEMBER = f'extra/{INFO_FILE}'  # torch.export.pt2_archive's EXTRA_DIR
_MAX_INFO_BYTES = 1 << 20
FORMAT = 1


class IncompatiblePackageError(RuntimeError):
    """The package cannot run in this process (another torch, CPU or op library)."""


def torch_release(version: str = torch.__version__) -> str:
    """``2.14.1+cu130`` -> ``2.14.1``: the local build tag does not change the ABI."""
    return version.split('+', 1)[0]


def cpu_isa() -> str:
    """The vector instruction set AOTInductor compiles for on this machine (``avx512``...)."""
    from torch._inductor.cpu_vec_isa import pick_vec_isa
    return str(pick_vec_isa())


def supported_isas() -> List[str]:
    """Every vector instruction set this machine runs (AOTInductor's names)."""
    from torch._inductor.cpu_vec_isa import valid_vec_isa_list
    return [str(isa) for isa in valid_vec_isa_list()]


def op_library() -> Dict[str, str]:
    """The op library the graphs call into: its name and version (``mmrednet/_C.so``'s,
    else, with the ops defined from Python, mmrednet's)."""
    from .. import ops, version
    try:
        return dict(name='mmrednet', version=ops.library_version())
    except RuntimeError:  # MMREDNET_WITH_EXT=0 or not built: the schemas are Python's
        return dict(name='mmrednet (Python-defined ops)', version=version.__version__)


@dataclass
class PackageInfo:
    """``extra/mmrednet.json`` of a package.

    Args:
        graphs (dict): graph name -> ``GraphMetadata`` as a dict.
        inputs (dict): graph name -> input shape, ``None`` for dynamic axes.
        torch (str): torch release the graphs were compiled against.
        machine (str): ``platform.machine()`` of the build.
        cpu_isa (str): AOTInductor's vector ISA of the build (its ``AOTI_CPU_ISA``).
        ops (list): ``mmrednet::`` ops the graphs call (empty: no op library needed).
        op_library (dict): name and version of the op library they were built with.
        threads (int): the threads AOTInductor's own loops were compiled for.
    """
    graphs: Dict[str, dict]
    inputs: Dict[str, List[Optional[int]]]
    torch: str = field(default_factory=torch_release)
    machine: str = field(default_factory=platform.machine)
    cpu_isa: str = field(default_factory=cpu_isa)
    ops: List[str] = field(default_factory=list)
    op_library: Dict[str, str] = field(default_factory=op_library)
    threads: int = 1
    format: int = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    def metadata(self, graph: str) -> GraphMetadata:
        meta = GraphMetadata(**self.graphs[graph])
        meta.groups = [tuple(group) for group in meta.groups]
        return meta

    @classmethod
    def read(cls, path: str) -> 'PackageInfo':
        """From ``path``'s ``extra/mmrednet.json``; a clear error when it has none."""
        if not osp.isfile(path):
            raise FileNotFoundError(f'AOTInductor package not found: {path}')
        try:
            with zipfile.ZipFile(path) as archive:
                member = next((name for name in archive.namelist()
                               if name.split('/', 1)[-1] == _INFO_MEMBER), None)
                if member is None:
                    raise ValueError(f'{path} was not written by mmrednet\'s exporter '
                                     '(tools/deployment/export_aoti.py): it has no '
                                     f'{_INFO_MEMBER}')
                if archive.getinfo(member).file_size > _MAX_INFO_BYTES:
                    raise ValueError(f'{path}: {member} is larger than {_MAX_INFO_BYTES} bytes')
                text = archive.read(member)
        except zipfile.BadZipFile as error:
            raise ValueError(f'{path} is not an AOTInductor package (.pt2, a zip archive): '
                             f'{error}') from error
        try:
            info = json.loads(text)
            if info.get('format') != FORMAT:
                raise ValueError(f'format {info.get("format")!r}, this mmrednet reads {FORMAT}')
            return cls(**info)
        except (TypeError, ValueError) as error:
            raise ValueError(f'{path}: unreadable {_INFO_MEMBER} ({error}); export it again '
                             'with this mmrednet') from error


def missing_ops(ops: List[str]) -> List[str]:
    """The ops of ``ops`` (``mmrednet::name``) that no library in this process defines."""
    missing = []
    for qualified in ops:
        namespace, name = qualified.split('::', 1)
        try:
            getattr(getattr(torch.ops, namespace), name)
        except (AttributeError, RuntimeError):
            missing.append(qualified)
    return missing


def check_compatible(info: PackageInfo, path: str) -> None:
    """Raise ``IncompatiblePackageError`` naming what does not fit this process."""
    rebuild = 'export it again on this machine (tools/deployment/export_aoti.py)'
    if info.machine != platform.machine():
        raise IncompatiblePackageError(f'{path} was compiled for {info.machine} CPUs, this '
                                       f'machine is {platform.machine()}; {rebuild}')
    if info.torch != torch_release():
        raise IncompatiblePackageError(f'{path} was compiled against torch {info.torch}, this '
                                       f'process has torch {torch_release()}; {rebuild}')
    if info.cpu_isa not in supported_isas() and info.cpu_isa != 'INVALID_VEC_ISA':
        raise IncompatiblePackageError(
            f'{path} was compiled for the {info.cpu_isa} instruction set, which this CPU lacks '
            f'(it has {", ".join(supported_isas()) or "none of the vector sets"}); {rebuild}')
    missing = missing_ops(info.ops)
    if missing:
        library = info.op_library
        raise IncompatiblePackageError(
            f'{path} calls {", ".join(missing)}, which no library in this process defines: '
            f'load the {library["name"]} op library (version {library["version"]}) first')
