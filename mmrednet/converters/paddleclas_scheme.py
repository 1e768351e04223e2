"""``paddleclas://RedNet50``: PaddleClas's ImageNet RedNets by name, as mmdet's ``torchvision://``.

mmengine's :class:`~mmengine.runner.CheckpointLoader` hands every checkpoint
path that starts with ``paddleclas://`` to :func:`load_from_paddleclas`, which

1. finds ``RedNet<depth>_pretrained.pdparams`` in torch's hub cache
   (``torch.hub.get_dir()/checkpoints``), or downloads it there on first use
   (progress bar; rank 0 first in a distributed run; a stalled server times out
   and a file over :data:`MAX_DOWNLOAD_BYTES` is refused). The download is
   checked by reading it whole before it takes the cached name: a truncated or
   foreign file never stays in the cache;
2. reads it with the converter's numpy-arrays-only reader and maps its keys as
   ``tools/convert_official_checkpoint.py`` does
   (:func:`~mmrednet.converters.load_source`,
   :func:`~mmrednet.converters.convert_state_dict`), checking that it is a
   RedNet of the named depth;
3. returns the bare backbone state dict (with ``with_head=1``: the whole
   mmpretrain classifier, ``backbone.*`` and ``head.fc.*``).

Query options: ``stem_kernel=7`` embeds the 3x3 stem involution of the ImageNet
weights in the 7x7 one of the detection/segmentation RedNets (exactly: zero
outer taps), ``with_head=1`` keeps the classifier. Examples::

    init_cfg=dict(type='Pretrained', checkpoint='paddleclas://RedNet50?stem_kernel=7')
    python tools/test.py configs/rednet/rednet50_64xb32-warmup-coslr-130e_imagenet.py \\
        'paddleclas://RedNet50?with_head=1'

``MMREDNET_PADDLECLAS_URL`` replaces the base address: a mirror's ``http(s)://``
address (downloads go to the cache as above) or a local directory holding the
``.pdparams`` files (read in place, nothing is copied).
"""
import os
import os.path as osp
import pickle
import re
import urllib.error
import urllib.request
import uuid
from http.client import HTTPException
from typing import Dict, List, NamedTuple, Optional
from urllib.parse import parse_qsl

import torch
from mmengine.dist import broadcast_object_list, get_dist_info
from mmengine.logging import print_log
from mmengine.runner import CheckpointLoader
from torch import Tensor
from tqdm import tqdm

PREFIX = 'paddleclas://'
BASE_URL = 'https://paddle-imagenet-models-name.bj.bcebos.com/dygraph'
URL_ENV = 'MMREDNET_PADDLECLAS_URL'
DEPTHS = (26, 38, 50, 101, 152)  # PaddleClas publishes ImageNet weights for these
_NAME = re.compile(r'^RedNet(?P<depth>\d+)$')
_TRUE, _FALSE = ('1', 'true', 'yes'), ('0', 'false', 'no')
# What the converter's reader and key mapping raise for a file that is not a RedNet .pdparams.
_READ_ERRORS = (ValueError, RuntimeError, pickle.UnpicklingError)
# torch.hub.download_url_to_file has neither: a stalled server would hang a job for good, and
# a stranger's server could fill the disk.
DOWNLOAD_TIMEOUT_S = 60.0  # without a byte from the server
MAX_DOWNLOAD_BYTES = 1 << 30  # the largest, RedNet152_pretrained.pdparams, is about 130 MB


class PaddleClasCheckpointError(RuntimeError):
    """A ``paddleclas://`` checkpoint could not be named, fetched or converted."""


class PaddleClasName(NamedTuple):
    """What a ``paddleclas://`` path asks for."""
    depth: int
    stem_kernel: int
    with_head: bool

    @property
    def filename(self) -> str:
        """PaddleClas's file name, e.g. ``RedNet50_pretrained.pdparams``."""
        return f'RedNet{self.depth}_pretrained.pdparams'


def parse_paddleclas_path(path: str) -> PaddleClasName:
    """``paddleclas://RedNet50?stem_kernel=7&with_head=0`` -> its parts, checked.

    Raises:
        PaddleClasCheckpointError: Another prefix, an unknown model name, or an
            unknown or invalid option.
    """
    usage = (f'expected {PREFIX}RedNet<depth>[?stem_kernel=3|5|7][&with_head=0|1] with depth '
             f'one of {", ".join(map(str, DEPTHS))}, e.g. {PREFIX}RedNet50?stem_kernel=7')
    if not path.startswith(PREFIX):
        raise PaddleClasCheckpointError(f'{path!r}: not a {PREFIX} path; {usage}')
    name, _, query = path[len(PREFIX):].partition('?')
    match = _NAME.match(name)
    if match is None or int(match['depth']) not in DEPTHS:
        raise PaddleClasCheckpointError(f'{path!r}: unknown model {name!r}; {usage}')
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:  # a field without '='
        options = {'': query}
    unknown = sorted(set(options) - {'stem_kernel', 'with_head'})
    stem, head = options.get('stem_kernel', '3'), options.get('with_head', '0').lower()
    if unknown or stem not in ('3', '5', '7') or head not in _TRUE + _FALSE:
        raise PaddleClasCheckpointError(f'{path!r}: bad options {query!r}; {usage}')
    return PaddleClasName(int(match['depth']), int(stem), head in _TRUE)


def cache_path(name: PaddleClasName) -> str:
    """Where the downloaded ``.pdparams`` lives: torch's hub cache, as ``torchvision://``'s."""
    return osp.join(torch.hub.get_dir(), 'checkpoints', name.filename)


def _how_to_fetch(name: PaddleClasName, url: str, why: str) -> str:
    return (f'could not download {url}: {why}\n'
            f'Without network, download that file elsewhere, then either\n'
            f'  * put it at {cache_path(name)} (torch.hub.get_dir()/checkpoints), or\n'
            f'  * put it in a directory DIR and set {URL_ENV}=DIR ({URL_ENV} also takes a '
            f"mirror's http(s):// address)"
            # A whole classifier is what tools/test.py evaluates: training is no alternative.
            + ('.' if name.with_head else
               ';\nor train the backbone from scratch: --cfg-options model.backbone.init_cfg=None'))


def _convert(local: str, name: PaddleClasName) -> Dict[str, Tensor]:
    """Read ``local`` as the converter does and check that it is the named RedNet.

    Raises:
        ValueError, RuntimeError, pickle.UnpicklingError: Not a readable
            ``.pdparams`` (or PyTorch checkpoint) of a RedNet of that depth.
    """
    # Imported here: mmrednet.models imports this module to register the scheme,
    # and .official imports mmrednet.models.
    from .official import convert_state_dict, load_source, rednet_depth
    state_dict, _ = load_source(local)
    converted, report = convert_state_dict(state_dict, 'imagenet', with_head=name.with_head)
    if report.unmapped:
        raise ValueError(f'not a RedNet: {len(report.unmapped)} keys are not RedNet\'s, '
                         f'e.g. {report.unmapped[:3]}')
    depth = rednet_depth(converted, 'backbone.' if name.with_head else '')
    if depth != name.depth:
        raise ValueError(f'it holds a RedNet-{depth}, not a RedNet-{name.depth}')
    # Now that it is known to be a RedNet: the stem embedding (keys map to themselves).
    return convert_state_dict(converted, 'imagenet', name.stem_kernel, name.with_head)[0]


def _announced_length(url: str, values: Optional[List[str]]) -> Optional[int]:
    """The body's length that the server announced, or None if it announced none.

    Raises:
        PaddleClasCheckpointError: A ``Content-Length`` that is not one
            decimal number of bytes: the response's framing is then unknown,
            and HTTP/1.1 (RFC 9112, section 6.3) has a client discard it.
    """
    if not values:
        return None
    # Repeated headers (or one list, "5, 5") must agree (RFC 9110, section 8.6).
    lengths = {v.strip() for value in values for v in value.split(',')}
    if len(lengths) != 1 or not all(v.isascii() and v.isdigit() for v in lengths):
        raise PaddleClasCheckpointError(
            f'{url}: the server sent an invalid Content-Length '
            f'{", ".join(map(repr, values))} (expected one number of bytes); '
            'not a usable download, nothing was kept')
    return int(lengths.pop())


def _download_file(url: str, dst: str) -> None:
    """Write ``url``'s body to ``dst``, with a progress bar, a timeout and a size bound.

    Raises:
        OSError, urllib.error.URLError, http.client.HTTPException: No
            connection, an HTTP error status or no data for
            :data:`DOWNLOAD_TIMEOUT_S` (``TimeoutError``).
        PaddleClasCheckpointError: More than :data:`MAX_DOWNLOAD_BYTES`,
            fewer bytes than the server announced, or an invalid
            ``Content-Length``.
    """
    request = urllib.request.Request(url, headers={'User-Agent': 'mmrednet'})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, \
            open(dst, 'wb') as out:
        # A chunked body's length is in its chunks; a Content-Length beside it is ignored.
        announced = None if response.chunked else _announced_length(
            url, response.headers.get_all('Content-Length'))
        too_large = (f'{url} is larger than MAX_DOWNLOAD_BYTES={MAX_DOWNLOAD_BYTES}: not a RedNet '
                     f'.pdparams; nothing was kept in {osp.dirname(dst)}')
        if announced is not None and announced > MAX_DOWNLOAD_BYTES:
            raise PaddleClasCheckpointError(too_large)
        written = 0
        with tqdm(total=announced, unit='B', unit_scale=True, unit_divisor=1024) as bar:
            while chunk := response.read(1 << 20):
                written += len(chunk)
                if written > MAX_DOWNLOAD_BYTES:  # a server that announced less, or nothing
                    raise PaddleClasCheckpointError(too_large)
                out.write(chunk)
                bar.update(len(chunk))
    # http.client ends a body cut short by a closed connection without an error.
    if announced is not None and written != announced:
        raise PaddleClasCheckpointError(
            f'{url}: the download was truncated ({written} of {announced} bytes); '
            f'nothing was kept in {osp.dirname(dst)}')


def _download(name: PaddleClasName, url: str) -> Dict[str, Tensor]:
    """Download ``url`` into the cache; the file gets its cached name only once it converts."""
    dst = cache_path(name)
    os.makedirs(osp.dirname(dst), exist_ok=True)
    part = f'{dst}.{uuid.uuid4().hex}.download'  # jobs sharing the cache never collide
    print_log(f'Downloading {url} to {dst}', logger='current')
    try:
        try:
            _download_file(url, part)
        except (urllib.error.URLError, HTTPException, OSError) as err:
            why = err if isinstance(err, urllib.error.HTTPError) else getattr(err, 'reason', err)
            raise PaddleClasCheckpointError(_how_to_fetch(name, url, str(why))) from None
        try:
            converted = _convert(part, name)
        except _READ_ERRORS as err:
            raise PaddleClasCheckpointError(
                f'{url} did not give a readable .pdparams of a RedNet-{name.depth} ({err}); '
                f'nothing was kept in {osp.dirname(dst)}') from None
        os.replace(part, dst)
    finally:
        if osp.exists(part):
            os.remove(part)
    return converted


def _fetch(name: PaddleClasName) -> Dict[str, Tensor]:
    """The converted weights: from ``$MMREDNET_PADDLECLAS_URL``'s folder, cache or download."""
    base = os.environ.get(URL_ENV) or BASE_URL
    if base.startswith(('http://', 'https://')):
        local = cache_path(name)
        if not osp.isfile(local):
            return _download(name, f'{base.rstrip("/")}/{name.filename}')
        hint = ' (delete it to download it again)'
    elif osp.isdir(base):
        local, hint = osp.join(base, name.filename), ''
        if not osp.isfile(local):
            raise PaddleClasCheckpointError(
                f'{local} does not exist: {URL_ENV} names the directory {base}, which must hold '
                f'{name.filename} (from {BASE_URL}/{name.filename})')
    else:
        raise PaddleClasCheckpointError(
            f'{URL_ENV}={base!r} is neither an http(s):// address nor a directory')
    # Read whole to be checked: a file of any size (a sparse one costs no disk) would be.
    size = os.stat(local).st_size
    if size > MAX_DOWNLOAD_BYTES:
        raise PaddleClasCheckpointError(
            f'{local}{hint}: {size} bytes, larger than MAX_DOWNLOAD_BYTES={MAX_DOWNLOAD_BYTES}: '
            'not a RedNet .pdparams')
    try:
        return _convert(local, name)
    except _READ_ERRORS as err:
        raise PaddleClasCheckpointError(f'{local}{hint}: {err}') from None


def _fetch_rank0_first(name: PaddleClasName) -> Dict[str, Tensor]:
    """:func:`_fetch`; in a distributed run rank 0 downloads and the others follow.

    Rank 0 tells the others whether it succeeded (rather than meeting them at
    a barrier), so a failed download stops every rank with rank 0's message
    instead of leaving them waiting.
    """
    rank, world_size = get_dist_info()
    if world_size == 1:
        return _fetch(name)
    if rank == 0:
        try:
            converted = _fetch(name)
        except Exception as err:
            broadcast_object_list([str(err)], src=0)
            raise
        broadcast_object_list([None], src=0)
        return converted
    error = [None]
    broadcast_object_list(error, src=0)
    if error[0] is not None:
        raise PaddleClasCheckpointError(error[0])
    return _fetch(name)  # from the cache (on another node: fetched into that node's)


def paddleclas_state_dict(path: str) -> Dict[str, Tensor]:
    """The state dict a ``paddleclas://`` path names (see the module docstring).

    Args:
        path (str): E.g. ``paddleclas://RedNet50?stem_kernel=7``.

    Returns:
        dict[str, Tensor]: A bare RedNet backbone state dict, or with
        ``with_head=1`` an mmpretrain ``ImageClassifier``'s.

    Raises:
        PaddleClasCheckpointError: A bad name, a failed download, or a file
            that is not the named RedNet.
    """
    return _fetch_rank0_first(parse_paddleclas_path(path))


@CheckpointLoader.register_scheme(prefixes=PREFIX)
def load_from_paddleclas(filename: str, map_location=None) -> Dict[str, Tensor]:
    """mmengine's loader for ``paddleclas://`` paths; ``map_location`` is unused (CPU tensors)."""
    return paddleclas_state_dict(filename)
