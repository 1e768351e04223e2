"""The model zoo's metadata: model-index.yml, the metafiles and the pages generated from them."""
import glob
import os
import os.path as osp
import shutil

import pytest
import yaml

from mmrednet.analysis import model_zoo
from mmrednet.analysis.config_complexity import config_complexity

from .seg_helpers import ROOT
from .tools import run_tool

GENERATOR = 'misc/generate_model_zoo.py'
PAGES = ('configs/rednet/README.md', 'docs/model_zoo.md', 'README.md')


def _models():
    return model_zoo.load_models(ROOT)


def test_model_zoo_pages_match_the_metafiles(capsys):
    assert run_tool(GENERATOR, '--check') == 0, capsys.readouterr().err


def test_check_fails_on_a_stale_page_and_regenerating_fixes_it(tmp_path, capsys):
    for path in ('model-index.yml', *model_zoo.metafiles(ROOT), *PAGES):
        os.makedirs(tmp_path / osp.dirname(path), exist_ok=True)
        shutil.copy(osp.join(ROOT, path), tmp_path / path)
    metafile = tmp_path / 'configs/rednet/metafile.yml'
    text = metafile.read_text()
    assert 'Measured Parameters (M): 27.81,' in text
    metafile.write_text(text.replace('Measured Parameters (M): 27.81,',
                                     'Measured Parameters (M): 27.93,'))
    before = {path: (tmp_path / path).read_text() for path in PAGES}

    assert run_tool(GENERATOR, '--check', '--root', tmp_path) == 1
    err = capsys.readouterr().err
    assert 'configs/rednet/README.md' in err and 'generate_model_zoo.py' in err
    # --check writes nothing
    assert {path: (tmp_path / path).read_text() for path in PAGES} == before

    assert run_tool(GENERATOR, '--root', tmp_path) == 0
    for path in PAGES:
        assert '| 27.8 | 27.93 | 210.1 | 210.1 |' in (tmp_path / path).read_text() or \
            '27.93 / 27.8' in (tmp_path / path).read_text()
    assert run_tool(GENERATOR, '--check', '--root', tmp_path) == 0
    assert not list(tmp_path.rglob('*.tmp'))


def test_readme_without_the_summary_markers_is_refused(tmp_path):
    with pytest.raises(ValueError, match='model-zoo summary'):
        model_zoo.with_summary('# no markers\n', '| table |')


def test_model_index_imports_every_metafile_and_every_config_once():
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        imported = yaml.safe_load(f)['Import']
    on_disk = {osp.relpath(p, ROOT)
               for p in glob.glob(osp.join(ROOT, 'configs/rednet/metafile*.yml'))}
    assert sorted(imported) == sorted(on_disk)

    models = _models()
    names = [m['Name'] for m in models]
    assert len(names) == len(set(names)), 'a model is listed twice'
    configs = {osp.basename(p) for p in glob.glob(osp.join(ROOT, 'configs/rednet/*.py'))}
    assert sorted(osp.basename(m['Config']) for m in models) == sorted(configs)
    for model in models:
        assert osp.isfile(osp.join(ROOT, model['Config']))
        assert osp.basename(model['Config']) == model['Name'] + '.py'
        meta = model['Metadata']
        for key in ('Parameters (M)', 'FLOPs (G)', 'Measured Parameters (M)', 'Measured FLOPs (G)'):
            assert isinstance(meta[key], float), (model['Name'], key)


def test_pages_show_every_model_with_its_figures():
    page = open(osp.join(ROOT, 'configs/rednet/README.md')).read()
    docs_page = open(osp.join(ROOT, 'docs/model_zoo.md')).read()
    for model in _models():
        config = osp.basename(model['Config'])
        assert f'[config]({config})' in page
        assert f'[config](../configs/rednet/{config})' in docs_page
        published_params, params, published_flops, flops = model_zoo._figures(model)
        # Accuracy beside the published figures and the config ...
        row = next(line for line in page.splitlines() if f'[config]({config})' in line)
        assert f'| {published_params} | {published_flops} |' in row
        for value in model_zoo._metrics(model).values():
            assert f'{value:.1f}' in row or f'{value:.2f}' in row, (config, value)
        # ... and ours beside the published in the checks table.
        row = next(line for line in page.splitlines() if f'[{model["Name"]}]({config})' in line)
        assert f'| {params} / {published_params} | {flops} / {published_flops} |' in row
    for heading in ('## Abstract', '## How to use', '### ImageNet-1k classification',
                    '### COCO object detection and instance segmentation',
                    '### Cityscapes semantic segmentation',
                    '### Params and FLOPs of the configs', '## Citation'):
        assert heading in page


def test_weights_are_named_as_they_load():
    """ImageNet weights by their paddleclas:// name; COCO/Cityscapes say how to get them."""
    from mmrednet.converters.paddleclas_scheme import parse_paddleclas_path
    page = open(osp.join(ROOT, 'configs/rednet/README.md')).read()
    assert '.pdparams)' not in page  # no raw links that tools/test.py cannot read
    for model in _models():
        if model['Results'][0]['Dataset'] == 'ImageNet-1k':
            assert parse_paddleclas_path(model['Weights']).with_head
            assert f"`{model['Weights']}`" in page
            assert model['Converted From']['Weights'].endswith('_pretrained.pdparams')
        else:
            assert 'Weights' not in model
    for dataset in ('COCO', 'Cityscapes'):
        assert f'No trained {dataset} weights are published for these configs yet' in page
    assert 'tools/dist_train.sh CONFIG 8' in page


def test_collections_are_the_families_users_search_by():
    """One collection a detector/segmentor family and one for the classifiers (mim --model)."""
    collections, members = {}, {}
    for metafile in model_zoo.metafiles(ROOT):
        with open(osp.join(ROOT, metafile)) as f:
            data = yaml.safe_load(f)
        for collection in data['Collections']:
            assert collection['Name'] not in collections, 'a collection is defined twice'
            collections[collection['Name']] = collection
        for model in data['Models']:
            members.setdefault(model['In Collection'], []).append(model['Name'])
    assert set(collections) == set(members) == {
        'RedNet', 'RetinaNet', 'Faster R-CNN', 'Mask R-CNN', 'FPN', 'UPerNet'}
    prefixes = {'RedNet': 'rednet', 'RetinaNet': 'retinanet_', 'Faster R-CNN': 'faster-rcnn_',
                'Mask R-CNN': 'mask-rcnn_', 'FPN': 'fpn_', 'UPerNet': 'upernet_'}
    for name, models in members.items():
        assert all(m.startswith(prefixes[name]) for m in models), (name, models)
    for collection in collections.values():
        assert collection['Paper']['URL'] == 'https://arxiv.org/abs/2103.06255'
        assert collection['Code']['URL'] == 'https://github.com/d-li14/involution'
        assert 'RedNet' in collection['Metadata']['Architecture']


def test_measured_figures_are_what_get_flops_measures():
    """The metafiles' "ours" is get_flops.py's output (checked on the cheapest model)."""
    (model, ) = [m for m in _models() if m['Name'].startswith('rednet26_')]
    result = config_complexity(osp.join(ROOT, model['Config']), (224, 224))
    assert round(result['params'] / 1e6, 2) == model['Metadata']['Measured Parameters (M)']
    assert round(result['flops'] / 1e9, 2) == model['Metadata']['Measured FLOPs (G)']
