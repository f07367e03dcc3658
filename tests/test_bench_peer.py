"""The benchmark's hooked peer GAIN step (bench/peer_gain.py) computes exactly what ours computes."""
import copy
import importlib.util
from pathlib import Path

import pytest
import torch

from trainables.config import preset
from trainables.gain import Batch, gain_step
from trainables.model import VGGBinary

_PATH = Path(__file__).resolve().parents[1] / "bench" / "peer_gain.py"  # bench/ is scripts, not a package
_spec = importlib.util.spec_from_file_location("peer_gain", _PATH)
peer_gain = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peer_gain)


def _setup(masked_bn, am_samples, ext_weight, n=6, size=32):
    cfg = preset("cpu", **{"model.hidden": 16, "gain.masked_bn": masked_bn, "gain.am_samples": am_samples,
                           "gain.ext_weight": ext_weight})
    torch.manual_seed(0)
    model = VGGBinary(cfg.model).double().train()
    g = torch.Generator().manual_seed(1)
    y = torch.tensor([1.0, 0.0] * (n // 2), dtype=torch.float64)
    batch = Batch(x=torch.randn(n, 3, size, size, generator=g, dtype=torch.float64), y=y,
                  mask=(torch.rand(n, size, size, generator=g) > 0.7).double(), mask_known=y > 0)
    return cfg, model, batch


def _run(step, model, batch):
    model.zero_grad(set_to_none=True)
    out = step(model, batch, 10**6)  # past any warm-up
    out["loss"].backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return out, grads


@pytest.mark.parametrize("masked_bn,am_samples,ext_weight",
                         [("batch", "positives", 0.0), ("running", "positives", 0.0), ("batch", "all", 0.5)])
def test_peer_step_equals_ours(masked_bn, am_samples, ext_weight):
    cfg, model, batch = _setup(masked_bn, am_samples, ext_weight)
    peer_model = copy.deepcopy(model)
    ours, ours_grads = _run(lambda m, b, e: gain_step(m, b, e, cfg=cfg.gain), model, batch)
    peer, peer_grads = _run(peer_gain.make_peer_step(cfg), peer_model, batch)

    assert ours["am"].item() > 0, "the test must exercise L_am"
    for k in ("loss", "cl", "am", "e"):
        torch.testing.assert_close(peer[k], ours[k], rtol=1e-12, atol=1e-12,
                                   msg=lambda m: f"peer {k} differs from ours: {m}")
    assert peer_grads.keys() == ours_grads.keys(), "peer and ours must give gradients to the same parameters"
    for k, g in ours_grads.items():
        assert g.abs().max() > 0 or k.endswith("bias"), f"{k}: zero gradient, the comparison would be vacuous"
        torch.testing.assert_close(peer_grads[k], g, rtol=1e-10, atol=1e-12,
                                   msg=lambda m: f"parameter {k}: peer gradient differs from ours: {m}")
    for (k, a), b in zip(model.state_dict().items(), peer_model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=lambda m: f"buffer {k} differs after the step: {m}")


def test_peer_step_leaves_no_hooks():
    cfg, model, batch = _setup("batch", "positives", 0.0)
    peer_gain.make_peer_step(cfg)(model, batch, 10**6)
    layer = model._to_cam[-1]
    assert not layer._forward_hooks, "the peer must remove its forward hook after the first stream"
