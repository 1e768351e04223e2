"""The model benchmark: RedNet-50 against mmdet's ResNet-50 backbone, inference and training step.

Both with ``norm_eval=False`` and four stage outputs, at each input size, all
models timed once per round, interleaved, their order reversed every other
round; each ratio is the median of the per-round ratios. Shown for context:
ResNet-50 run channels-last (weights and image converted, as a user would do
it), and RedNet-50 returning channels-last maps (``channels_last_outputs``,
against RedNet-50's default NCHW maps).
"""
import functools
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import torch
from rich.progress import track

from mmrednet.models import RedNet
from mmrednet.utils import interleaved_times
from mmrednet.utils.profiling import median

# RedNet-50 / ResNet-50 time: the FLOPs ratio is 0.66.
TARGETS = {'inference': 0.8, 'train step': 0.9}
REDNET, RESNET = 'RedNet-50', 'ResNet-50'
REDNET_CL_OUT, RESNET_CL = 'RedNet-50 CL outputs', 'ResNet-50 CL'


@dataclass
class ModelRow:
    input: str
    mode: str
    rednet_ms: float
    resnet_ms: float
    ratio: float  # median of paired RedNet-50 / ResNet-50 ratios
    target: float
    resnet_cl_ms: float
    ratio_cl: float  # against ResNet-50 run channels-last
    rednet_cl_out_ms: float
    cl_out_vs_nchw_out: float  # RedNet-50 with channels-last outputs / with NCHW ones


def backbone_models() -> Dict[str, torch.nn.Module]:
    """RedNet-50 (NCHW and channels-last outputs) and mmdet's ResNet-50 (as is, and
    channels-last), all with BN in training mode, RedNet's weights shared."""
    from mmdet.models.backbones import ResNet  # the ``det`` extra
    rednet = RedNet(depth=50, norm_eval=False)
    rednet_cl_out = RedNet(depth=50, norm_eval=False, channels_last_outputs=True)
    rednet_cl_out.load_state_dict(rednet.state_dict())
    resnet_cl = ResNet(depth=50, norm_eval=False).to(memory_format=torch.channels_last)
    return {REDNET: rednet, RESNET: ResNet(depth=50, norm_eval=False),
            RESNET_CL: resnet_cl, REDNET_CL_OUT: rednet_cl_out}


def parse_input(text: str) -> Tuple[int, int, int]:
    """``'2x320x320'`` -> (batch, height, width)."""
    try:
        batch, height, width = (int(v) for v in text.split('x'))
    except ValueError:
        raise ValueError(f'input must be NxHxW (e.g. 2x320x320), got {text!r}') from None
    if min(batch, height, width) < 1:
        raise ValueError(f'input sizes must be positive, got {text!r}')
    return batch, height, width


def _train_step(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        model.train()
        optimizer.zero_grad()
        sum(o.float().mean() for o in model(x)).backward()
        optimizer.step()
    return step


def _inference(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run():
        model.eval()
        with torch.no_grad():
            model(x)
    return run


def _paired(times: Dict[str, List[float]], a: str, b: str) -> float:
    return median([p / q for p, q in zip(times[a], times[b], strict=True)])


def benchmark_models(inference_inputs: Sequence[str], train_inputs: Sequence[str],
                     models: Dict[str, torch.nn.Module], device: str,
                     repeat: int) -> List[ModelRow]:
    """Time every model at each inference input and a training step at each train input."""
    models = {name: m.to(device) for name, m in models.items()}
    jobs = [(text, 'inference', _inference) for text in inference_inputs]
    jobs += [(text, 'train step', _train_step) for text in train_inputs]
    rows = []
    for text, mode, make in jobs:
        batch, height, width = parse_input(text)
        x = torch.randn(batch, 3, height, width, device=device)
        steps = {}
        for name, model in models.items():
            image = x.contiguous(memory_format=torch.channels_last) if name == RESNET_CL else x
            steps[name] = make(model, image)
            steps[name]()  # warm-up
        times = interleaved_times(steps, repeat, device,
                                  functools.partial(track, description=f'{text} {mode}'))
        ms = {name: median(t) * 1e3 for name, t in times.items()}
        rows.append(ModelRow(f'{batch}x3x{height}x{width}', mode, ms[REDNET], ms[RESNET],
                             _paired(times, REDNET, RESNET), TARGETS[mode], ms[RESNET_CL],
                             _paired(times, REDNET, RESNET_CL), ms[REDNET_CL_OUT],
                             _paired(times, REDNET_CL_OUT, REDNET)))
    return rows
