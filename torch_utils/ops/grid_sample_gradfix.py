"""Bilinear grid_sample (zeros padding, align_corners=False) whose backward is differentiable.

R1 differentiates D(augment(x)) w.r.t. x and then differentiates that gradient again, so the
augmentation's grid_sample needs a second-order gradient. The forward and first backward use
PyTorch's native kernels. The backward's own backward has a fast exact path for the common case
(only the image gradient is differentiated, w.r.t. the incoming gradient: it is a grid_sample
again) and otherwise re-derives everything from `grid_sample_ref`, a gather-based sampler that
is differentiable to any order.
"""

from __future__ import annotations

import torch

_BILINEAR = 0
_ZEROS = 0
_ALIGN_CORNERS = False


def grid_sample(input: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """torch.nn.functional.grid_sample(input, grid, 'bilinear', 'zeros', align_corners=False)."""
    _check(input, grid)
    return _GridSample.apply(input, grid)


def grid_sample_ref(input: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """The same sampling written with gathers: slower, but differentiable to any order."""
    _check(input, grid)
    n, c, h, w = input.shape
    out_h, out_w = grid.shape[1], grid.shape[2]
    # align_corners=False: -1 and +1 are the outer edges of the border pixels.
    ix = ((grid[..., 0] + 1) * w - 1) / 2
    iy = ((grid[..., 1] + 1) * h - 1) / 2
    x0 = torch.floor(ix).detach()
    y0 = torch.floor(iy).detach()
    fx, fy = ix - x0, iy - y0
    flat = input.reshape(n, c, h * w)
    out = input.new_zeros(n, c, out_h * out_w)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xs, ys = (x0 + dx).long(), (y0 + dy).long()
            inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
            index = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).reshape(n, 1, -1).expand(n, c, -1)
            weight = (wx * wy * inside.to(input.dtype)).reshape(n, 1, -1)
            out = out + flat.gather(2, index) * weight
    return out.reshape(n, c, out_h, out_w)


def _check(input: torch.Tensor, grid: torch.Tensor) -> None:
    if input.ndim != 4 or grid.ndim != 4 or grid.shape[3] != 2 or grid.shape[0] != input.shape[0]:
        raise ValueError(f"grid_sample: expected input [N,C,H,W] and grid [N,H_out,W_out,2], "
                         f"got {tuple(input.shape)} and {tuple(grid.shape)}")
    if input.dtype != grid.dtype:
        raise ValueError(f"grid_sample: input ({input.dtype}) and grid ({grid.dtype}) must have the same dtype")


def _native(input: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.grid_sampler_2d(input, grid, _BILINEAR, _ZEROS, _ALIGN_CORNERS)


class _GridSample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, grid):
        ctx.save_for_backward(input, grid)
        return _native(input, grid)

    @staticmethod
    def backward(ctx, dy):
        input, grid = ctx.saved_tensors
        d_input, d_grid = _GridSampleBackward.apply(dy, input, grid, ctx.needs_input_grad[1])
        return d_input, (d_grid if ctx.needs_input_grad[1] else None)


class _GridSampleBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dy, input, grid, want_grid_grad):
        ctx.save_for_backward(dy, input, grid)
        ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None, not zeros
        mask = [True, bool(want_grid_grad)]
        d_input, d_grid = torch.ops.aten.grid_sampler_2d_backward(
            dy, input, grid, _BILINEAR, _ZEROS, _ALIGN_CORNERS, mask)
        if d_grid is None:
            d_grid = torch.zeros_like(grid)
        return d_input, d_grid

    @staticmethod
    def backward(ctx, dd_input, dd_grid):
        dy, input, grid = ctx.saved_tensors
        need_dy, need_input, need_grid = ctx.needs_input_grad[:3]
        if dd_input is None and dd_grid is None:
            return None, None, None, None
        if dd_grid is None and not (need_input or need_grid):
            # d_input = S(grid)^T dy is linear in dy, so its adjoint is sampling again.
            return grid_sample(dd_input, grid) if need_dy and dd_input is not None else None, None, None, None
        return (*_general_double_backward(dy, input, grid, dd_input, dd_grid, (need_dy, need_input, need_grid)),
                None)


def _general_double_backward(dy, input, grid, dd_input, dd_grid, needs):
    """Differentiate (d_input, d_grid) via the gather-based sampler, which autograd handles to any order."""
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(True) for t in (dy, input, grid)]
        dy_, input_, grid_ = leaves
        out = grid_sample_ref(input_, grid_)
        first = torch.autograd.grad(out, (input_, grid_), dy_, create_graph=True)
        # The leaves are detached copies, so this supports second order but not third.
        pairs = [(g, dd) for g, dd in zip(first, (dd_input, dd_grid)) if dd is not None]
        wanted = [leaf for leaf, need in zip(leaves, needs) if need]
        grads = torch.autograd.grad([g for g, _ in pairs], wanted, [dd for _, dd in pairs], allow_unused=True,
                                    create_graph=False)  # second order is all R1 needs
    result, it = [], iter(grads)
    for leaf, need in zip(leaves, needs):
        grad = next(it) if need else None
        result.append(torch.zeros_like(leaf) if need and grad is None else grad)
    return result
