"""Draw the per-pixel involution kernels a model generates for an image, and its predictions.

For each chosen involution layer it writes one figure (as in the paper's
kernel visualisation): the input with the probed pixels marked, a heat map of
a per-pixel statistic of the generated kernel (its L2 norm over the K*K taps,
averaged over groups: where the layer aggregates strongly), the map of the
kernel's centre-tap share (how much it just passes the pixel through), and
the K x K kernels (mean over groups) at the probed pixels. It also writes the
prediction image drawn by the config's visualizer (mmdet's DetLocalVisualizer,
mmseg's SegLocalVisualizer).

Example:
    python tools/visualize_kernels.py \\
        configs/demo/retinanet_rednet26-tiny_involution-fpn_shapes.py \\
        work_dirs/demo/retinanet/epoch_12.pth data/shapes_coco/val/000001.png --out-dir vis/
"""
import argparse
import os
import os.path as osp
from typing import Dict, List, Tuple

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import mmcv  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from torch import Tensor  # noqa: E402

from mmrednet.models import Involution  # noqa: E402


def _apis(scope: str):
    """``(init, inference)`` of the config's task library."""
    if scope == 'mmseg':
        from mmseg.apis import inference_model, init_model
        return init_model, inference_model
    from mmdet.apis import inference_detector, init_detector
    return init_detector, inference_detector


def default_layers(model: torch.nn.Module) -> List[str]:
    """The stem involution and the last involution of every backbone stage."""
    names = [n for n, m in model.named_modules() if isinstance(m, Involution)]
    picked = [n for n in names if '.stem.' in f'.{n}.']
    for stage in range(1, 5):
        in_stage = [n for n in names if f'.layer{stage}.' in f'.{n}.']
        picked += in_stage[-1:]
    return picked or names[:4]


def capture_kernels(model: torch.nn.Module, layers: List[str]) -> Tuple[Dict[str, Tensor], list]:
    """Forward hooks storing each layer's kernel ``(G, K, K, Ho, Wo)`` of image 0."""
    kernels, handles = {}, []
    modules = dict(model.named_modules())
    for name in layers:
        inv = modules[name]
        if not isinstance(inv, Involution):
            raise ValueError(f'{name} is {type(inv).__name__}, not an Involution')

        def hook(_module, inputs, _output, name=name, inv=inv):
            # The layer never writes its kernel (the fused op generates it in
            # cache): generate it once more here, from the layer's input.
            with torch.no_grad():
                kernels[name] = inv.generate_kernel(inputs[0])[0].float().cpu()

        handles.append(inv.register_forward_hook(hook))
    return kernels, handles


def _probe_pixels(height: int, width: int, count: int) -> List[Tuple[int, int]]:
    side = int(np.ceil(np.sqrt(count)))
    ys = np.linspace(0.2, 0.8, side) * height
    xs = np.linspace(0.2, 0.8, side) * width
    return [(int(y), int(x)) for y in ys for x in xs][:count]


def draw_layer(name: str, kernel: Tensor, image: np.ndarray, img_shape: Tuple[int, int],
               pixels: List[Tuple[int, int]], out_file: str) -> None:
    """One figure of a layer's kernels; ``image`` is the network input (RGB, img_shape)."""
    groups, k, _, h, w = kernel.shape
    stride = img_shape[0] / h if h else 1
    # Drop the rows/cols that only cover the batch padding.
    h_used, w_used = int(np.ceil(img_shape[0] / stride)), int(np.ceil(img_shape[1] / stride))
    kernel = kernel[..., :h_used, :w_used]
    norm = kernel.pow(2).sum(dim=(1, 2)).sqrt().mean(0).numpy()
    centre = kernel[:, k // 2, k // 2].abs().mean(0) / kernel.abs().mean(dim=(0, 1, 2)).mul(
        k * k).clamp_min(1e-12)
    extent = (0, img_shape[1], img_shape[0], 0)
    fig, axes = plt.subplots(2, max(3, len(pixels)), figsize=(3 * max(3, len(pixels)), 6.4))
    for ax in axes.ravel():
        ax.axis('off')
    axes[0, 0].imshow(image)
    for i, (y, x) in enumerate(pixels):
        axes[0, 0].plot(x, y, 'w+', ms=10, mew=2)
        axes[0, 0].text(x + 3, y - 3, str(i), color='w', fontsize=9)
    axes[0, 0].set_title('input, probed pixels')
    for ax, data, title in ((axes[0, 1], norm, 'kernel L2 norm'),
                            (axes[0, 2], centre.numpy(), 'centre-tap share')):
        ax.imshow(image, extent=extent)
        im = ax.imshow(data, cmap='inferno', alpha=0.75, extent=extent, interpolation='nearest')
        fig.colorbar(im, ax=ax, fraction=0.046)
        ax.set_title(title)
    for i, (y, x) in enumerate(pixels):
        yi, xi = min(int(y / stride), h_used - 1), min(int(x / stride), w_used - 1)
        tap = kernel[:, :, :, yi, xi].mean(0).numpy()
        lim = np.abs(tap).max() or 1
        axes[1, i].imshow(tap, cmap='coolwarm', vmin=-lim, vmax=lim)
        axes[1, i].set_title(f'pixel {i}: {k}x{k} kernel')
    fig.suptitle(f'{name}  (G={groups}, K={k}, grid {h}x{w}, stride {stride:g})')
    fig.tight_layout()
    fig.savefig(out_file, dpi=80)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('config')
    parser.add_argument('checkpoint', help='checkpoint, or "none" for the initial weights')
    parser.add_argument('image')
    parser.add_argument('--out-dir', default='work_dirs/kernels')
    parser.add_argument('--layers', nargs='+', help='Involution module names (default: the '
                        'stem and the last involution of each stage)')
    parser.add_argument('--pixels', type=int, default=4, help='probed pixels per layer')
    parser.add_argument('--score-thr', type=float, default=0.3, help='detection score to draw')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if 'init_cfg' in cfg.model.get('backbone', {}):
        cfg.model.backbone.init_cfg = None  # weights come from the checkpoint
    init, inference = _apis(cfg.get('default_scope', 'mmdet'))
    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    model = init(cfg, checkpoint, device='cpu')
    layers = args.layers or default_layers(model)
    kernels, handles = capture_kernels(model, layers)
    with torch.no_grad():
        result = inference(model, args.image)
    for handle in handles:
        handle.remove()

    os.makedirs(args.out_dir, exist_ok=True)
    image = mmcv.imread(args.image, channel_order='rgb')
    img_shape = tuple(result.metainfo.get('img_shape', image.shape[:2]))
    net_image = mmcv.imresize(image, (img_shape[1], img_shape[0]))
    pixels = _probe_pixels(*img_shape, args.pixels)
    for name in layers:
        out_file = osp.join(args.out_dir, f'kernels_{name.replace(".", "_")}.png')
        draw_layer(name, kernels[name], net_image, img_shape, pixels, out_file)
        print(f'wrote {out_file}')

    from mmengine.registry import VISUALIZERS
    visualizer = VISUALIZERS.build(model.cfg.visualizer)
    visualizer.dataset_meta = model.dataset_meta
    out_file = osp.join(args.out_dir, 'prediction.png')
    extra = dict(pred_score_thr=args.score_thr) if hasattr(result, 'pred_instances') else {}
    visualizer.add_datasample('prediction', image, data_sample=result, draw_gt=False,
                              show=False, out_file=out_file, **extra)
    print(f'wrote {out_file}')


if __name__ == '__main__':
    main()
