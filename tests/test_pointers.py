"""Messages, config headers, Makefile targets and pages point at what exists, and pages
speak to users."""
import builtins
import glob
import importlib
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from mmrednet.apis import MissingPretrainedError, check_pretrained_files
from mmrednet.converters.paddleclas_scheme import _how_to_fetch, parse_paddleclas_path

from .seg_helpers import ROOT

# The pages a user reads (others add theirs as they speak to users only).
USER_PAGES = ('README.md', 'configs/rednet/README.md', 'docs/index.md', 'docs/get_started.md',
              'docs/model_zoo.md', 'docs/user_guides/python_api.md',
              'docs/user_guides/imagenet.md', 'docs/user_guides/detection.md',
              'docs/user_guides/segmentation.md', 'docs/user_guides/cuda.md',
              'docs/user_guides/operator_design.md', 'docs/user_guides/performance.md',
              'docs/user_guides/deployment.md',
              *sorted(osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'docs/notes/*.md'))))
# Words of how the project is run, which mean nothing to a user.
PROCESS_WORDS = re.compile(r'\bSPEC\b|§|this README|\btarget (?:<|>|of)|\|\s*targets?\s*\||'
                           r'\bmissed\b|\bissue \d|#\d+\b|the issue|asked for|\bthis project\b|'
                           r'\bsessions?\b', re.I)
# A path of this repository (not the original's `det/configs/...`).
REPO_PATH = re.compile(r'(?<![\w/])(?:docs|configs|tools)/[\w./-]*\w')
# A call in inline code, `name(...)` or `package.module.name(...)`; not a formula `g(c) = ...`.
INLINE_CALL = re.compile(r'`([A-Za-z_][\w.]*)\([^`=]*\)`')


def _read(path: str) -> str:
    with open(osp.join(ROOT, path)) as f:
        return f.read()


def _missing(paths):
    return [p for p in paths if not osp.exists(osp.join(ROOT, p))]


def test_missing_weights_message_points_at_the_imagenet_guide():
    model = dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='no/such.pth')))
    with pytest.raises(MissingPretrainedError) as err:
        check_pretrained_files(model)
    message = str(err.value)
    assert 'docs/user_guides/imagenet.md' in message
    assert _missing(REPO_PATH.findall(message)) == []
    # and the guide says how to convert the file, as the message promises
    assert 'tools/convert_official_checkpoint.py' in _read('docs/user_guides/imagenet.md')


def test_a_failed_classifier_download_does_not_suggest_training():
    """tools/test.py evaluates a whole classifier: training from scratch is no alternative;
    a backbone for training can start from scratch instead."""
    url = 'https://example.com/RedNet50_pretrained.pdparams'
    classifier = _how_to_fetch(parse_paddleclas_path('paddleclas://RedNet50?with_head=1'),
                               url, 'refused')
    backbone = _how_to_fetch(parse_paddleclas_path('paddleclas://RedNet50?stem_kernel=7'),
                             url, 'refused')
    assert 'from scratch' not in classifier and classifier.endswith('address).')
    assert 'from scratch: --cfg-options model.backbone.init_cfg=None' in backbone


CONFIGS = sorted(osp.relpath(p, ROOT)
                 for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True))


@pytest.mark.parametrize('config', CONFIGS)
def test_config_headers_point_at_what_exists(config):
    comments = '\n'.join(line for line in _read(config).splitlines()
                         if line.lstrip().startswith('#'))
    assert not re.search(r'\bSPEC\b', comments)
    assert _missing(REPO_PATH.findall(comments)) == []


SOURCES = sorted(osp.relpath(p, ROOT)
                 for pattern in ('mmrednet/**/*.py', 'tools/**/*.py', 'kernels/**/*.[ch]*')
                 for p in glob.glob(osp.join(ROOT, pattern), recursive=True))


def test_source_text_cites_what_readers_can_follow():
    """Docstrings (the API reference renders them) and comments cite the paper, the original
    repository or our docs, not a reference document that is not in the repository."""
    citing = [path for path in SOURCES if re.search(r'\bSPEC\b|§', _read(path))]
    assert citing == []


@pytest.mark.parametrize('page', USER_PAGES)
def test_user_pages_speak_to_users(page):
    text = _read(page)
    assert PROCESS_WORDS.findall(text) == []
    # mmrednet is installed from its checkout: extras as `pip install -e ".[...]"`
    assert 'pip install "mmrednet[' not in text


def _resolves(dotted: str) -> bool:
    """``a.b.c`` is a module, or an attribute of the longest importable prefix."""
    parts = dotted.split('.')
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def _defined_in_mmrednet() -> set:
    names = set()
    for path in glob.glob(osp.join(ROOT, 'mmrednet', '**', '*.py'), recursive=True):
        with open(path) as f:
            names.update(re.findall(r'^\s*(?:def|class) (\w+)', f.read(), flags=re.M))
    return names


@pytest.mark.parametrize('page', USER_PAGES)
def test_user_pages_call_what_exists(page):
    """A function a page tells users to call exists: `mmrednet.x.f(...)` and `torch.x.f(...)`
    import; a bare `f(...)` is defined in mmrednet, or is a builtin, a torch.nn module or
    an inference API of mmdet, mmseg or mmpretrain."""
    known = _defined_in_mmrednet()
    namespaces = (builtins, torch.nn, *(importlib.import_module(f'{pkg}.apis')
                                       for pkg in ('mmdet', 'mmseg', 'mmpretrain')))
    missing = [name for name in INLINE_CALL.findall(_read(page))
               if not (_resolves(name) if '.' in name else
                       name in known or any(hasattr(ns, name) for ns in namespaces))]
    assert missing == []


def _make_n(target: str) -> str:
    return subprocess.run(['make', '-n', target, f'PY={sys.executable}'], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout


def test_every_demo_target_uses_the_work_dirs_the_others_read():
    """make cls-demo writes where make demo writes the classification demo, and where
    make onnx-demo / deploy-demo (compare_demos.sh) read it; the same for seg-demo."""
    assert 'tools/run_demo.sh work_dirs/demo' in _make_n('demo')
    assert 'tools/run_cls_demo.sh work_dirs/demo/classification' in _make_n('cls-demo')
    assert 'WORK_DIR=work_dirs/seg_demo bash tools/run_seg_demo.sh' in _make_n('seg-demo')
    for target in ('onnx-demo', 'deploy-demo'):
        assert 'compare_demos.sh work_dirs/demo work_dirs/seg_demo' in _make_n(target)
    # the scripts: run_demo.sh puts the classification demo in WORK/classification, which
    # is run_cls_demo.sh's own default, and compare_demos.sh reads DEMO/classification.
    assert 'run_cls_demo.sh "$WORK/classification"' in _read('tools/run_demo.sh')
    assert 'WORK=${1:-work_dirs/demo/classification}' in _read('tools/run_cls_demo.sh')
    assert '"$DEMO/classification/last_checkpoint"' in _read('tools/deployment/compare_demos.sh')
    assert 'work_dirs/demo/classification' in _read('docs/get_started.md')
