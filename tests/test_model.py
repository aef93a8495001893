import pytest
import torch

from edge_xcnn.meta import ArchSpec, ModelMeta
from edge_xcnn.models import build_model, forward_logits_heatmap
from edge_xcnn.models.generator import Generator


def meta_for(arch: ArchSpec, size=(32, 32), classes=10):
    ch = arch.in_channels
    return ModelMeta(
        arch=arch,
        classes=tuple(str(i) for i in range(classes)),
        input_size=size,
        mean=(0.5,) * ch,
        std=(0.5,) * ch,
        color="rgb" if ch == 3 else "gray",
    )


def test_faithful_generator_is_the_authors_one_level_block():
    gen = Generator(3, width=128, levels=1)
    convs = [m for m in gen.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (3, 128, (3, 3)),
        (128, 1, (3, 3)),
    ]
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in gen.modules())


@pytest.mark.parametrize(
    ("arch", "size", "features"),
    [
        (ArchSpec("xcnn", "mnist_net", 1, 32, 1), (28, 28), 576),  # the paper's 576-10 head
        (ArchSpec("xcnn", "vgg16_bn", 3, 128, 1), (32, 32), 512),  # the paper's CIFAR-10 model
        (ArchSpec("xcnn", "vgg16_bn", 3, 128, 1), (64, 64), 2048),  # Tiny ImageNet
        (ArchSpec("xcnn", "mnist_net", 3, 16, 3), (45, 37), 576),  # odd size, 3 levels: pooled to 3x3
        (ArchSpec("plain", "mnist_net", 3), (64, 64), 576),  # the paper's head at any size
    ],
)
def test_shapes_heads_and_heatmap_range(arch, size, features):
    model = build_model(meta_for(arch, size)).eval()
    assert model.classifier.classifier.in_features == features
    x = torch.rand(3, arch.in_channels, *size)
    with torch.no_grad():
        logits, heatmap = forward_logits_heatmap(model, x)
    assert logits.shape == (3, 10)
    if arch.kind == "plain":
        assert heatmap is None
    else:
        assert heatmap.shape == (3, 1, *size)
        assert heatmap.min() >= -1 and heatmap.max() <= 1


def test_xcnn_classifier_sees_only_one_channel_and_fig7_adds_channels():
    plain_xcnn = build_model(meta_for(ArchSpec("xcnn", "vgg16_bn", 3, 8, 1)))
    assert plain_xcnn.classifier.features[0].in_channels == 1
    fig7 = build_model(meta_for(ArchSpec("xcnn", "vgg16_bn", 3, 8, 1, fig7_channels=2)))
    assert fig7.classifier.features[0].in_channels == 3
    with torch.no_grad():
        _logits, heatmap = fig7.eval()(torch.rand(1, 3, 32, 32))
    assert heatmap.shape == (1, 1, 32, 32)


def test_heatmap_follows_the_object():
    """The generator is fully convolutional: moving the input moves the map's response."""
    torch.manual_seed(0)
    model = build_model(meta_for(ArchSpec("xcnn", "mnist_net", 1, 8, 1), (28, 28))).eval()
    blank = torch.zeros(1, 1, 28, 28)
    with torch.no_grad():
        background = model(blank)[1]
        centres = []
        for y, x in ((4, 4), (16, 12)):
            image = blank.clone()
            image[..., y : y + 6, x : x + 6] = 1
            response = (model(image)[1] - background).abs()[0, 0]
            ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
            centres.append(((response * ys).sum() / response.sum(), (response * xs).sum() / response.sum()))
    assert abs(centres[1][0] - centres[0][0] - 12) < 1.0
    assert abs(centres[1][1] - centres[0][1] - 8) < 1.0
