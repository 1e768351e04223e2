"""What an AOTInductor package (``.pt2``) says about itself, and whether this process can run it.

One ``.pt2`` holds every graph of a deployment (``graphs.py``) as its own
AOTInductor model: the ``main`` graph as ``model`` (the name
``torch._inductor.aoti_load_package`` loads by default), and
``bbox_head``/``mask_head`` for two-stage detectors under their own names;
and a JSON file ``extra/mmrednet.json`` (``PackageInfo``) with: each graph's
``GraphMetadata`` and input shape, the torch version and CPU instruction set it
was compiled for, and the mmrednet ops it calls with the op library's version.

A package's graphs are shared libraries compiled for one torch and one CPU
instruction set, calling our ops by name: ``check_compatible`` reads the JSON
with ``zipfile`` (bounded size, every key and type checked) before any of that
code is loaded and names what does not fit, instead of letting the loader
crash (an illegal instruction) or fail deep in C++.
"""
import json
import os.path as osp
import platform
import re
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

import torch

from ... import ops
from ...version import __version__
from ..metadata import (
    GraphMetadata,
    check,
    check_graph_name,
    check_int,
    check_items,
    check_keys,
    check_text,
    parse_json,
)

INFO_FILE = 'mmrednet.json'
_INFO_MEMBER = f'extra/{INFO_FILE}'  # torch.export.pt2_archive's EXTRA_DIR
_MAX_INFO_BYTES = 1 << 20
# 2: the main graph is the AOTInductor model ``model``; 1 (read too): it was ``main``.
FORMAT = 2
_FORMATS = (1, 2)
_LEGACY_KEYS = ['threads']  # written by format 1, not read
_OP = re.compile(r'[A-Za-z_][A-Za-z0-9_]*::[A-Za-z_][A-Za-z0-9_]*')


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


def op_library_info() -> Dict[str, str]:
    """The op library the graphs call into: its name and version (``mmrednet/_C.so``'s,
    else, with the ops defined from Python, mmrednet's)."""
    try:
        return dict(name='mmrednet', version=ops.library_version())
    except RuntimeError:  # MMREDNET_WITH_EXT=0 or not built: the schemas are Python's
        return dict(name='mmrednet (Python-defined ops)', version=__version__)


def model_name(graph: str, format: int = FORMAT) -> str:
    """The AOTInductor model that holds ``graph`` in a package of ``format``."""
    return 'model' if graph == 'main' and format >= 2 else graph


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
        format (int): the package layout (``FORMAT``; 1: the main graph's model is ``main``).
    """
    graphs: Dict[str, dict]
    inputs: Dict[str, List[Optional[int]]]
    torch: str = field(default_factory=torch_release)
    machine: str = field(default_factory=platform.machine)
    cpu_isa: str = field(default_factory=cpu_isa)
    ops: List[str] = field(default_factory=list)
    op_library: Dict[str, str] = field(default_factory=op_library_info)
    format: int = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    def metadata(self, graph: str) -> GraphMetadata:
        return GraphMetadata.from_dict(self.graphs[graph], f'graph {graph!r}')

    def model_name(self, graph: str) -> str:
        """The AOTInductor model of ``graph`` in this package."""
        return model_name(graph, self.format)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> 'PackageInfo':
        """From ``data`` (parsed JSON), every key, type and size checked.

        Raises:
            ValueError: ``data`` is not a package's ``mmrednet.json``.
        """
        check_keys(data, ['graphs', 'inputs', 'torch', 'machine', 'cpu_isa', 'ops',
                          'op_library', 'format'], _LEGACY_KEYS, where)
        fmt = data['format']
        check(fmt in _FORMATS and type(fmt) is int, where,
              f'format {fmt!r}, this mmrednet reads {", ".join(map(str, _FORMATS))}')
        graphs = check_items(data['graphs'], dict, f'{where} graphs')
        inputs = check_items(data['inputs'], dict, f'{where} inputs')
        check(len(graphs) > 0 and sorted(graphs) == sorted(inputs), where,
              f'graphs {sorted(graphs)} and inputs {sorted(inputs)} must name the same graphs')
        for name, meta in graphs.items():
            check_graph_name(name, f'{where} graphs')
            at = f'{where} graphs[{name!r}]'
            check(GraphMetadata.from_dict(meta, at).graph == name, at, 'names another graph')
            shape = check_items(inputs[name], list, f'{where} inputs[{name!r}]')
            for size in shape:
                if size is not None:
                    check_int(size, f'{where} inputs[{name!r}]', 1)
        for op in check_items(data['ops'], list, f'{where} ops'):
            check(isinstance(op, str) and len(op) <= 256 and _OP.fullmatch(op), f'{where} ops',
                  f'expected namespace::name, got {op!r:.60}')
        library = data['op_library']
        check_keys(library, ['name', 'version'], [], f'{where} op_library')
        for key in ('name', 'version'):
            check_text(library[key], f'{where} op_library {key}')
        for key in ('torch', 'machine', 'cpu_isa'):
            check_text(data[key], f'{where} {key}')
        return cls(**{key: value for key, value in data.items() if key not in _LEGACY_KEYS})

    @classmethod
    def read(cls, path: str) -> 'PackageInfo':
        """From ``path``'s ``extra/mmrednet.json`` (at most 1 MiB read); a ``ValueError``
        that names the file for anything that is not one of our packages."""
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
                with archive.open(member) as f:  # at most one byte past the bound
                    text = f.read(_MAX_INFO_BYTES + 1)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, NotImplementedError,
                EOFError, RuntimeError) as error:  # not a zip, corrupt, unsupported, encrypted
            raise ValueError(f'{path} is not an AOTInductor package (.pt2, a zip archive): '
                             f'{error}') from error
        if len(text) > _MAX_INFO_BYTES:
            raise ValueError(f'{path}: {_INFO_MEMBER} is larger than {_MAX_INFO_BYTES} bytes')
        try:
            return cls.from_dict(parse_json(text, INFO_FILE), INFO_FILE)
        except ValueError as error:
            raise ValueError(f'{path}: unreadable {_INFO_MEMBER} ({error}); export it again '
                             'with this mmrednet') from None


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
