"""CPU stand-ins for the compiled plugins, with the exact kernel contracts of bias_act.cu and
upfirdn2d.cu. They run under no_grad like a real kernel, so gradient tests through them check
the CUDA path's autograd wiring (adjoint padding, second-order terms), not PyTorch's autograd."""

from __future__ import annotations

import torch

from torch_utils.ops import bias_act as bias_act_module
from torch_utils.ops.upfirdn2d import _upfirdn2d_ref

_ACT_BY_ID = {spec.cuda_id: spec for spec in bias_act_module.ACTIVATIONS.values()}


class FakeBiasActPlugin:
    @staticmethod
    def bias_act(x, b, g, dim, act_id, order, alpha, gain, clamp):
        spec = _ACT_BY_ID[act_id]
        with torch.enable_grad():
            z = x.detach().clone()
            if b.numel():
                z = z + b.detach().reshape([-1 if i == dim else 1 for i in range(x.ndim)])
            z.requires_grad_(True)
            y = spec.func(z, alpha) * gain
            d1 = torch.autograd.grad(y.sum(), z, create_graph=True)[0]
            d2 = torch.autograd.grad(d1.sum(), z, allow_unused=True)[0] if d1.requires_grad else None
        with torch.no_grad():
            inside = torch.ones_like(y) if clamp < 0 else (y.abs() <= clamp).to(y.dtype)
            if order == 0:
                return y.clamp(-clamp, clamp).detach() if clamp >= 0 else y.detach()
            if order == 1:
                return g * d1.detach() * inside
            return g * (torch.zeros_like(y) if d2 is None else d2) * inside


class FakeUpFirDn2dPlugin:
    @staticmethod
    def upfirdn2d(x, f, upx, upy, downx, downy, x0, x1, y0, y1, flip_filter, gain):
        assert f.ndim == 2
        with torch.no_grad():
            return _upfirdn2d_ref(x, f, (upx, upy), (downx, downy), [x0, x1, y0, y1], flip_filter, gain)
