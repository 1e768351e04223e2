"""The model part of a config as mmengine's Runner builds it."""
import copy

from mmengine.config import Config, ConfigDict


def model_config(cfg: Config) -> ConfigDict:
    """``cfg.model`` with the config's top-level ``data_preprocessor`` merged in.

    mmpretrain's configs declare the data preprocessor (mean, std, channel
    order) at the top level and mmengine's Runner hands it to the model; a
    tool that builds ``cfg.model`` itself must do the same, or the model sees
    unnormalized images.
    """
    model = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model.setdefault('data_preprocessor', copy.deepcopy(cfg.data_preprocessor))
    return model
