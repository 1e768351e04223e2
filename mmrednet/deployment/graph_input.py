"""The input checks every deployed graph makes before its backend runs (onnxruntime, AOTInductor).

Both backends take float32, the exporter's input: float16 and bfloat16 are cast
up (exactly), float64 is rounded with a warning, and anything else (a uint8
image that skipped the data preprocessor) is refused.
"""
import warnings
from typing import Sequence, Union

import torch
from torch import Tensor

from .metadata import GraphMetadata


class GraphInputError(ValueError):
    """The input does not fit the graph (dtype, shape, size divisor); the message says
    what to do."""


def graph_input(input: Tensor, shape: Sequence[Union[int, str, None]], metadata: GraphMetadata,
                name: str, input_name: str = 'input') -> Tensor:
    """``input`` checked, as the contiguous float32 CPU tensor a graph runs on.

    Args:
        input (Tensor): What the model passes, e.g. ``(N, 3, H, W)`` images.
        shape (Sequence): The graph's input shape: ints where static, a name or
            None where dynamic.
        metadata (GraphMetadata): The graph's metadata (its ``size_divisor``).
        name (str): How errors name the graph.
        input_name (str): How errors name its input.

    Raises:
        GraphInputError: A dtype that is not floating point, another shape than a
            static graph's, or (the ``main`` graph) a height or width that is
            not a multiple of ``metadata.size_divisor``.
    """
    if not input.is_floating_point():
        raise GraphInputError(f'{name} takes {input_name} as float32 (the data preprocessor\'s '
                         f'output), got {input.dtype}')
    if input.dtype == torch.float64:
        warnings.warn(f'{name}: the float64 {input_name} is rounded to float32, the dtype the '
                      'graph computes in', stacklevel=3)
    if input.dim() != len(shape) or any(
            isinstance(d, int) and d != s for d, s in zip(shape, input.shape, strict=True)):
        static = all(isinstance(d, int) for d in shape)
        shown = tuple(d if isinstance(d, int) else d or '?' for d in shape)
        raise GraphInputError(f'{name} takes {input_name} of shape {shown}, got '
                         f'{tuple(input.shape)}'
                         + ('; export with --dynamic for other batch and image sizes'
                            if static else ''))
    divisor = metadata.size_divisor
    if metadata.graph == 'main' and any(s % divisor for s in input.shape[2:]):
        raise GraphInputError(f'{name}: input height and width must be multiples of {divisor}, got '
                         f'{tuple(input.shape[2:])}; pad the images (e.g. the data '
                         f'preprocessor\'s pad_size_divisor={divisor})')
    return input.detach().to('cpu', torch.float32).contiguous()
