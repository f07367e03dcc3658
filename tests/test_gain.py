"""GAIN step: Grad-CAM against pytorch-grad-cam, ranges, gradient paths, alpha=0 equals baseline."""
import copy

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from trainables.config import GainConfig, ModelConfig
from trainables.gain import Batch, baseline_step, gain_step, grad_cam, normalise_cam
from trainables.model import VGGBinary


def _model(frozen=0, width=16, seed=0):
    torch.manual_seed(seed)
    return VGGBinary(ModelConfig(width=width, frozen_convs=frozen, hidden=32)).double()


def _batch(n=6, size=64, positives=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor([1.0] * positives + [0.0] * (n - positives), dtype=torch.float64)
    mask = (torch.rand(n, size, size, generator=g) > 0.7).double() * y[:, None, None]
    return Batch(x=torch.randn(n, 3, size, size, generator=g, dtype=torch.float64), y=y, mask=mask,
                 mask_known=y > 0)


class _Logits2D(torch.nn.Module):
    # pytorch-grad-cam expects (B, classes); our head gives (B,).
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(x)[:, None]


def test_grad_cam_matches_pytorch_grad_cam():
    model = _model().float().eval()
    x = torch.randn(4, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    f = model.features(x)
    ours_raw = grad_cam(f, model.head(f)).detach()
    ours = normalise_cam(ours_raw, size=(96, 96)).numpy()

    cam = GradCAM(model=_Logits2D(model), target_layers=[model.trunk[-1]])
    targets = [ClassifierOutputTarget(0)] * 4
    outputs = cam.activations_and_grads(x)
    model.zero_grad()
    sum(t(o) for t, o in zip(targets, outputs)).backward()
    acts = cam.activations_and_grads.activations[0].numpy()
    grads = cam.activations_and_grads.gradients[0].numpy()
    ref_raw = np.maximum(cam.get_cam_image(x, model.trunk[-1], targets, acts, grads, False), 0)
    cam.activations_and_grads.release()
    assert ours_raw.shape == ref_raw.shape == (4, 6, 6), "raw maps live at feature resolution (96/16)"
    np.testing.assert_allclose(ours_raw.numpy(), ref_raw, atol=1e-5, rtol=1e-4,
                               err_msg="raw Grad-CAM must equal pytorch-grad-cam's at feature resolution")
    # Normalised at input size: pytorch-grad-cam resizes with OpenCV (cv2.resize, INTER_LINEAR), we
    # with torch bilinear (align_corners=False); both use half-pixel centres, so only OpenCV's
    # fixed-point interpolation weights (1/2048 steps) separate them.
    ref = scale_cam_image(ref_raw, (96, 96))
    np.testing.assert_allclose(ours, ref, atol=2e-3, err_msg="normalised maps differ beyond interpolation rounding")


def test_cam_and_mask_ranges():
    model, b = _model(), _batch()
    f = model.features(b.x)
    cam = normalise_cam(grad_cam(f, model.head(f)), size=(64, 64))
    assert cam.shape == (6, 64, 64), "map upsampled to input size"
    assert cam.min() >= 0 and cam.max() <= 1 + 1e-9, "min-max normalised map lies in [0, 1]"
    small = normalise_cam(grad_cam(f, model.head(f))).flatten(1)
    assert torch.allclose(small.min(1).values, torch.zeros(6, dtype=cam.dtype)), "each map's minimum is 0"
    # max/(max + 1e-7): raw maps at initialisation are ~1e-5, so the maximum sits just below 1.
    assert torch.allclose(small.max(1).values, torch.ones(6, dtype=cam.dtype), atol=5e-3), "each map reaches ~1"
    t = torch.sigmoid(10 * (cam - 0.5))
    assert t.min() >= 0 and t.max() <= 1, "soft mask in [0, 1]"


def test_alpha_zero_equals_baseline_gradients():
    m1, b = _model(frozen=7), _batch()
    m2 = copy.deepcopy(m1)
    baseline_step(m1, b, epoch=1)["loss"].backward()
    gain_step(m2, b, epoch=1, cfg=GainConfig(alpha=0.0, ext_weight=0.0))["loss"].backward()
    for (name, p1), p2 in zip(m1.named_parameters(), m2.parameters()):
        if p1.requires_grad:
            assert torch.equal(p1.grad, p2.grad), f"alpha=0 gradient of {name} differs from the baseline's"


@pytest.mark.parametrize("cam_grad", [False, True])
def test_l_am_reaches_trainable_backbone_not_frozen(cam_grad):
    model, b = _model(frozen=7), _batch()
    losses = gain_step(model, b, epoch=1, cfg=GainConfig(alpha=1.0, cam_grad=cam_grad))
    losses["am"].backward()
    convs = model.convs
    assert all(c.weight.grad is None for c in convs[:7]), "L_am must not touch the 7 frozen convs"
    for i, c in enumerate(convs[7:], start=8):
        assert c.weight.grad is not None and c.weight.grad.abs().sum() > 0, f"L_am must reach trainable conv {i}"


def test_cam_grad_option_changes_gradients():
    m1, b = _model(), _batch()
    m2 = copy.deepcopy(m1)
    gain_step(m1, b, 1, cfg=GainConfig(cam_grad=False))["am"].backward()
    gain_step(m2, b, 1, cfg=GainConfig(cam_grad=True))["am"].backward()
    diff = sum((p1.grad - p2.grad).abs().sum() for p1, p2 in zip(m1.parameters(), m2.parameters()) if p1.grad is not None)
    assert diff > 0, "create_graph through the Grad-CAM weights must add a gradient path"


def test_l_am_zero_without_positives_and_warmup():
    model, b = _model(), _batch(positives=0)
    assert gain_step(model, b, 1, cfg=GainConfig())["am"].item() == 0.0, "no positives -> L_am = 0"
    model, b = _model(), _batch()
    out = gain_step(model, b, 1, cfg=GainConfig(warmup_epochs=2))
    assert out["am"].item() == 0.0 and torch.equal(out["loss"], out["cl"]), "warm-up epochs are classification-only"
    out = gain_step(model, b, 3, cfg=GainConfig(warmup_epochs=2))
    assert out["am"].item() > 0, "after warm-up L_am is on"


def test_l_am_is_mean_sigmoid_of_masked_positive_logits():
    model, b = _model(), _batch()
    cfg = GainConfig(sigma=0.4, omega=8.0)
    out = gain_step(model, b, 1, cfg=cfg)
    f = model.features(b.x)
    cam = normalise_cam(grad_cam(f, model.head(f)), size=(64, 64))
    masked = b.x - torch.sigmoid(cfg.omega * (cam - cfg.sigma))[:, None] * b.x
    expected = torch.sigmoid(model(masked)[:3]).mean()
    assert torch.allclose(out["am"], expected), "L_am must be mean sigmoid(logit(x - T(A) x)) over positives"
    all_out = gain_step(model, b, 1, cfg=GainConfig(am_samples="all"))
    assert all_out["am"].item() != out["am"].item(), "am_samples='all' scores every sample's true class"


def test_l_e_uses_only_exposed_masks():
    model, b = _model(), _batch()
    out = gain_step(model, b, 1, cfg=GainConfig(ext_weight=2.0))
    f = model.features(b.x)
    cam = normalise_cam(grad_cam(f, model.head(f)), size=(64, 64))
    expected = ((cam[b.mask_known] - b.mask[b.mask_known]) ** 2).mean()
    assert torch.allclose(out["e"], expected), "L_e = mean((A - mask)^2) over images with exposed masks"
    assert torch.allclose(out["loss"], out["cl"] + out["am"] + 2.0 * out["e"]), "L = L_cl + alpha L_am + w_e L_e"
    b.mask_known[:] = False
    assert gain_step(model, b, 1, cfg=GainConfig(ext_weight=2.0))["e"].item() == 0.0, "no exposed masks -> L_e = 0"


def test_masked_stream_leaves_batch_norm_running_statistics_alone():
    torch.manual_seed(0)
    m1 = VGGBinary(ModelConfig(width=16, frozen_convs=0, hidden=32, batch_norm=True)).double().train()
    m2 = copy.deepcopy(m1)
    b = _batch()
    baseline_step(m1, b, 1)
    gain_step(m2, b, 1, cfg=GainConfig())
    for (name, s1), s2 in zip(m1.state_dict().items(), m2.state_dict().values()):
        if "running" in name:
            assert torch.equal(s1, s2), f"{name}: GAIN's masked stream must not update running statistics"


def test_masked_stream_with_running_statistics_scores_positives_alone():
    # "running": the masked stream normalises with the running statistics (as at test time), so a
    # positive's masked score is a function of that image alone and only positives pass through it.
    torch.manual_seed(0)
    model = VGGBinary(ModelConfig(width=16, frozen_convs=0, hidden=32, batch_norm=True)).double().train()
    b = _batch()
    cfg = GainConfig(masked_bn="running", sigma=0.4, omega=8.0)
    ref = copy.deepcopy(model)
    seen = []
    hook = model.trunk[0].register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))
    out = gain_step(model, b, 1, cfg=cfg)
    hook.remove()
    assert seen == [6, 3], f"full batch, then only the 3 positives in the masked stream; got {seen}"
    f = ref.features(b.x)  # train mode, as in the step (this updates the running statistics the same way)
    cam = normalise_cam(grad_cam(f, ref.head(f)), size=(64, 64))
    masked = (b.x - torch.sigmoid(cfg.omega * (cam - cfg.sigma))[:, None] * b.x)[:3]
    expected = torch.sigmoid(ref.eval()(masked)).mean()
    assert torch.allclose(out["am"], expected), "L_am must be the eval-mode (running statistics) masked score"
    assert all(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) and m.weight.requires_grad), \
        "the step must leave batch norm in training mode"


def test_separable_upsampling_is_torch_bilinear():
    import torch.nn.functional as F

    cam = torch.rand(4, 8, 6, dtype=torch.float64)
    ours = normalise_cam(cam, size=(64, 48))
    lo = cam.flatten(1).min(1).values[:, None, None]
    scaled = (cam - lo) / ((cam - lo).flatten(1).max(1).values[:, None, None] + 1e-7)
    ref = F.interpolate(scaled[:, None], size=(64, 48), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(ours, ref, atol=1e-12), "the matrix form must be exactly bilinear (align_corners=False)"
