"""The model benchmark: RedNet-50 against mmdet's ResNet-50 backbone, training step and inference.

Both with ``norm_eval=False``, at each input size, timed alternately; ResNet-50
run channels-last is shown for context.
"""
import functools
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import torch
from rich.progress import track

from mmrednet.models import RedNet
from mmrednet.utils import interleaved_times
from mmrednet.utils.profiling import median

from .op import TARGETS


@dataclass
class ModelRow:
    input: str
    mode: str
    rednet_ms: float
    resnet_ms: float
    ratio: float  # median of paired RedNet / ResNet-50 ratios
    resnet_cl_ms: float
    ratio_cl: float  # against ResNet-50 run channels-last
    target: float


def _backbones() -> Dict[str, torch.nn.Module]:
    """RedNet-50 and mmdet's ResNet-50 with the same options (BN in training mode)."""
    from mmdet.models.backbones import ResNet  # the ``det`` extra
    resnet_cl = ResNet(depth=50, norm_eval=False).to(memory_format=torch.channels_last)
    return {'RedNet-50': RedNet(depth=50, norm_eval=False),
            'ResNet-50': ResNet(depth=50, norm_eval=False), 'ResNet-50 CL': resnet_cl}


def parse_input(text: str) -> Tuple[int, int, int]:
    """``'2x320x320'`` -> (batch, height, width)."""
    batch, height, width = (int(v) for v in text.split('x'))
    return batch, height, width


def benchmark_models(inputs: Sequence[str], device: str, repeat: int) -> List[ModelRow]:
    models = {name: m.to(device) for name, m in _backbones().items()}

    def train_step(model, x) -> Callable[[], None]:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step():
            model.train()
            optimizer.zero_grad()
            sum(o.float().mean() for o in model(x)).backward()
            optimizer.step()
        return step

    def inference(model, x) -> Callable[[], None]:
        def run():
            model.eval()
            with torch.no_grad():
                model(x)
        return run

    rows = []
    for text in inputs:
        batch, height, width = parse_input(text)
        x = torch.randn(batch, 3, height, width, device=device)
        for mode, make, target in (('train step', train_step, TARGETS['train_ratio']),
                                   ('inference', inference, TARGETS['infer_ratio'])):
            steps = {}
            for name, model in models.items():
                image = x.contiguous(memory_format=torch.channels_last) if 'CL' in name else x
                steps[name] = make(model, image)
                steps[name]()  # warm-up
            times = interleaved_times(steps, repeat, device,
                                      functools.partial(track, description=f'{text} {mode}'))
            ratio, ratio_cl = (
                median([a / b for a, b in zip(times['RedNet-50'], times[base], strict=True)])
                for base in ('ResNet-50', 'ResNet-50 CL'))
            ms = {name: median(t) * 1e3 for name, t in times.items()}
            rows.append(ModelRow(f'{batch}x3x{height}x{width}', mode, ms['RedNet-50'],
                                 ms['ResNet-50'], ratio, ms['ResNet-50 CL'], ratio_cl, target))
    return rows
