"""The VGG16 model: torchvision's structure, freezing, features/head split, weight loading."""
import pytest
import torch

from trainables.config import ModelConfig
from trainables.model import VGGBinary, WeightsError, reference_vgg16_features


def test_width1_is_torchvision_vgg16_features():
    ours = VGGBinary(ModelConfig(width=1, frozen_convs=0)).trunk.state_dict()
    ref = reference_vgg16_features().state_dict()
    assert set(ours) == set(ref), "width=1 must have exactly torchvision vgg16 feature keys"
    for k in ref:
        assert ours[k].shape == ref[k].shape, f"{k}: {tuple(ours[k].shape)} != torchvision {tuple(ref[k].shape)}"


def test_features_before_last_pool_and_logit_shape():
    m = VGGBinary(ModelConfig(width=32, frozen_convs=0))
    f = m.features(torch.randn(2, 3, 224, 224))
    assert f.shape == (2, 512 // 32, 14, 14), f"last conv block map must be 14x14 at 224 px, got {tuple(f.shape)}"
    assert (f >= 0).all(), "features are post-ReLU"
    assert m.head(f).shape == (2,), "head returns one logit per image"
    assert sum(isinstance(x, torch.nn.Conv2d) for x in m.trunk) == 13, "VGG16 has 13 convs at every width"


def test_first_n_convs_frozen():
    m = VGGBinary(ModelConfig(width=16, frozen_convs=7))
    flags = [c.weight.requires_grad for c in m.convs]
    assert flags == [False] * 7 + [True] * 6, f"first 7 convs must be frozen, got {flags}"
    assert all(p.requires_grad for p in m.fc.parameters()), "the head is always trained"


def test_state_dict_path_loads_torchvision_weights(tmp_path):
    ref = reference_vgg16_features()
    path = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in ref.state_dict().items()}, path)
    m = VGGBinary(ModelConfig(width=1, weights=str(path)))
    for k, v in ref.state_dict().items():
        assert torch.equal(m.trunk.state_dict()[k], v), f"{k} not loaded from the state dict"


def test_own_state_dict_round_trip(tmp_path):
    a = VGGBinary(ModelConfig(width=16))
    path = tmp_path / "own.pth"
    torch.save(a.state_dict(), path)
    b = VGGBinary(ModelConfig(width=16, weights=str(path)))
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items()), "own state dict must load exactly"


def test_imagenet_weights_from_local_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsError, match="not found.*IMAGENET1K_V1"):
        VGGBinary(ModelConfig(width=1, weights="imagenet"))
    # A file with torchvision's name in the hub cache is loaded (weights the test creates).
    ref = reference_vgg16_features()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save({f"features.{k}": v for k, v in ref.state_dict().items()},
               tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth")
    m = VGGBinary(ModelConfig(width=1, weights="imagenet"))
    assert torch.equal(m.convs[0].weight, ref[0].weight), "imagenet weights must come from the hub cache file"


def test_bad_weights_give_clear_errors(tmp_path):
    with pytest.raises(WeightsError, match="not 'none', 'imagenet' or an existing"):
        VGGBinary(ModelConfig(width=16, weights=str(tmp_path / "missing.pth")))
    with pytest.raises(WeightsError, match="model.width"):
        VGGBinary(ModelConfig(width=16, weights="imagenet"))
    path = tmp_path / "wide.pth"
    torch.save({f"features.{k}": v for k, v in reference_vgg16_features().state_dict().items()}, path)
    with pytest.raises(WeightsError, match="check model.width"):
        VGGBinary(ModelConfig(width=16, weights=str(path)))


def test_batch_norm_variant_is_torchvision_vgg16_bn():
    ours = VGGBinary(ModelConfig(width=1, frozen_convs=0, batch_norm=True)).trunk.state_dict()
    ref = reference_vgg16_features(batch_norm=True).state_dict()
    assert set(ours) == set(ref), "batch_norm=True at width 1 must have exactly torchvision vgg16_bn feature keys"


def test_frozen_convs_keep_their_batch_norm_statistics():
    m = VGGBinary(ModelConfig(width=16, frozen_convs=2, batch_norm=True)).train()
    bns = [x for x in m.trunk if isinstance(x, torch.nn.BatchNorm2d)]
    before = [bn.running_mean.clone() for bn in bns]
    m(torch.randn(4, 3, 64, 64))
    assert all(torch.equal(b, bn.running_mean) for b, bn in zip(before[:2], bns[:2])), "frozen blocks keep their statistics"
    assert not torch.equal(before[2], bns[2].running_mean), "trainable blocks update their statistics"


def test_cam_block_moves_the_attention_map_not_the_network():
    torch.manual_seed(0)
    m5 = VGGBinary(ModelConfig(width=16, frozen_convs=0, batch_norm=True)).eval()
    m4 = VGGBinary(ModelConfig(width=16, frozen_convs=0, batch_norm=True, cam_block=4)).eval()
    m4.load_state_dict(m5.state_dict())
    x = torch.randn(2, 3, 64, 64)
    assert m5.features(x).shape[-2:] == (4, 4) and m4.features(x).shape[-2:] == (8, 8), \
        "at 64 px the last block's map is 4x4, block 4's (before its pool) 8x8"
    assert torch.equal(m4(x), m5(x)), "cam_block must only choose where features() ends, not change the logit"
    assert m4.state_dict().keys() == m5.state_dict().keys(), "weights must load whatever the attention layer"
