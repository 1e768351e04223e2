"""What a deployed graph records about the model it came from, and the check of a config
against it (no export needed)."""
import pytest

from mmrednet.deployment import GraphMetadata
from mmrednet.deployment.metadata import num_classes_of
from mmrednet.deployment.runtime import check_fits

MASK_RCNN = dict(type='MaskRCNN', rpn_head=dict(num_classes=1), roi_head=dict(
    bbox_head=dict(num_classes=5), mask_head=dict(num_classes=5)))
SEGMENTOR = dict(type='EncoderDecoder', decode_head=dict(num_classes=19),
                 auxiliary_head=[dict(num_classes=19), dict(num_classes=19)])


def test_num_classes_of_finds_every_setting():
    assert num_classes_of(MASK_RCNN) == {'rpn_head.num_classes': 1,
                                         'roi_head.bbox_head.num_classes': 5,
                                         'roi_head.mask_head.num_classes': 5}
    assert num_classes_of(SEGMENTOR) == {'decode_head.num_classes': 19,
                                         'auxiliary_head.0.num_classes': 19,
                                         'auxiliary_head.1.num_classes': 19}


def test_metadata_round_trips_through_json():
    meta = GraphMetadata('two_stage_detector', 'MaskRCNN', 'main', [('feats', 5)], 32,
                         dict(bbox_head='model.bbox_head.onnx'), num_classes_of(MASK_RCNN))
    assert GraphMetadata.from_json(meta.to_json(), 'model.onnx') == meta


def test_a_config_with_other_num_classes_is_refused():
    meta = GraphMetadata('segmentor', 'EncoderDecoder', 'main', [('seg_logits', 1)], 32,
                         num_classes=num_classes_of(SEGMENTOR))
    check_fits(SEGMENTOR, meta, 'model.onnx')
    other = dict(SEGMENTOR, auxiliary_head=[dict(num_classes=19), dict(num_classes=8)])
    with pytest.raises(ValueError, match=r'model\.onnx was exported with .*'
                       r'auxiliary_head\.1\.num_classes=19.*but the config has .*'
                       r'auxiliary_head\.1\.num_classes=8'):
        check_fits(other, meta, 'model.onnx')
    with pytest.raises(ValueError, match='exported from a EncoderDecoder model'):
        check_fits(dict(MASK_RCNN), meta, 'model.onnx')


def test_files_of_earlier_exports_record_no_num_classes_and_are_accepted():
    meta = GraphMetadata.from_json('{"kind": "segmentor", "model_type": "EncoderDecoder", '
                                   '"graph": "main", "groups": [["seg_logits", 1]], '
                                   '"size_divisor": 32, "companions": {}}', 'model.onnx')
    assert meta.num_classes == {}
    check_fits(dict(SEGMENTOR, decode_head=dict(num_classes=3)), meta, 'model.onnx')
