"""mIoU as tools/test.py reports it (mmseg's IoUMetric) on a known prediction."""
import pytest
import torch
from mmseg.datasets import CityscapesDataset
from mmseg.evaluation import IoUMetric


def test_iou_metric_known_answer():
    road, sky, car, ignore = 0, 10, 13, 255
    gt = torch.full((4, 4), road)
    gt[:, 2:] = car
    gt[0, 0] = ignore
    pred = gt.clone()
    pred[0, 0] = sky  # under an ignored pixel: counts nowhere
    pred[3, 1] = car  # a road pixel called car
    pred[0, 3] = road  # a car pixel called road

    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = CityscapesDataset.METAINFO
    metric.process({}, [dict(pred_sem_seg=dict(data=pred[None]),
                             gt_sem_seg=dict(data=gt[None]))])
    result = metric.compute_metrics(metric.results)

    # road: 6 right of 7 labelled and 7 predicted -> 6 / 8; car: 7 / 9. Classes
    # absent from both (sky included: its only pixel is ignored) are NaN and
    # left out of the mean, as in Cityscapes' official evaluation.
    assert result['mIoU'] == pytest.approx(round((6 / 8 + 7 / 9) / 2 * 100, 2))
    assert result['aAcc'] == pytest.approx(round(13 / 15 * 100, 2))
