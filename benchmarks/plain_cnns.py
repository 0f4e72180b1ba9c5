"""Two plain small CNNs, the yardstick of issue 15's "the defaults must match a plain small CNN".

Not part of the model zoo: ``benchmarks/recipe_spread.py --models plain_cnn plain_cnn_bn``
registers them (:func:`register`) in its training subprocesses, so they train through
exactly the recipe, data pipeline and evaluation the zoo models get.

* ``plain_cnn``: the Keras MNIST example network (conv 32 - conv 64 - max-pool - dropout
  0.25 - dense 128 - dropout 0.5 - dense), no BatchNorm, so the recipe gives it AdamW;
  1.2M parameters at 28 px.
* ``plain_cnn_bn``: three conv-BN-ReLU-max-pool blocks (32, 64, 128 channels), global
  average pool and a linear classifier, so the recipe gives it SGD; 94k parameters.
"""

from __future__ import annotations

from torch import nn

from squeezelab.models.registry import list_models, register_model


class _PlainCNN(nn.Sequential):
    """``nn.Sequential`` plus the one attribute squeezelab's input-size check reads."""

    def __init__(self, layers: list[nn.Module], min_input_size: int) -> None:
        super().__init__(*layers)
        self.min_input_size = min_input_size


#: The Keras convnet's dense layer is sized for MNIST-sized inputs (two unpadded 3x3 convs and a 2x2 pool: 12x12).
KERAS_INPUT_SIZE = 28


def plain_cnn(num_classes: int = 10, in_chans: int = 1) -> nn.Module:
    """Keras' MNIST convnet example, for :data:`KERAS_INPUT_SIZE` px inputs."""
    pooled = (KERAS_INPUT_SIZE - 4) // 2
    return _PlainCNN([
        nn.Conv2d(in_chans, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Flatten(), nn.Linear(64 * pooled * pooled, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, num_classes),
    ], min_input_size=KERAS_INPUT_SIZE)


def plain_cnn_bn(num_classes: int = 10, in_chans: int = 1) -> nn.Module:
    """Three conv-BN-ReLU-pool blocks, global average pool, linear classifier."""
    layers: list[nn.Module] = []
    for cin, cout in ((in_chans, 32), (32, 64), (64, 128)):
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
    return _PlainCNN([*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes)], min_input_size=8)


def register() -> None:
    """Add both networks to squeezelab's model registry (once per process)."""
    if "plain_cnn" in list_models():
        return
    for builder, description in ((plain_cnn, "Keras MNIST convnet, no BatchNorm"),
                                 (plain_cnn_bn, "3 conv-BN-ReLU-pool blocks")):
        register_model(description=description, paper="baseline", table="-",
                       default_cfg={"input_size": 28})(builder)
