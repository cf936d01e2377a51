// Python binding and argument checks for the fused bias_act kernel.
#include <torch/extension.h>
#include <c10/cuda/CUDAGuard.h>
#include "bias_act.h"

namespace {

bool same_strides(const torch::Tensor& a, const torch::Tensor& b) {
    return a.sizes() == b.sizes() && a.strides() == b.strides();
}

int dtype_code(const torch::Tensor& x) {
    switch (x.scalar_type()) {
        case torch::kFloat64: return 0;
        case torch::kFloat32: return 1;
        case torch::kFloat16: return 2;
        case torch::kBFloat16: return 3;
        default: TORCH_CHECK(false, "bias_act: x must be float64, float32, float16 or bfloat16");
    }
    return -1;
}

// y = clamp(gain * act(x + b)) for order 0; g * gain * act^(order)(x + b) * in_range for 1 and 2.
torch::Tensor bias_act(torch::Tensor x, torch::Tensor b, torch::Tensor g, int64_t dim, int64_t act,
                       int64_t order, double alpha, double gain, double clamp) {
    TORCH_CHECK(x.is_cuda(), "bias_act: x must be a CUDA tensor");
    TORCH_CHECK(x.is_non_overlapping_and_dense(), "bias_act: x must be dense (contiguous or channels-last)");
    TORCH_CHECK(order >= 0 && order <= 2, "bias_act: order must be 0, 1 or 2");
    TORCH_CHECK(act >= 0 && act <= 8, "bias_act: unknown activation code");
    const bool has_bias = b.numel() > 0;
    if (has_bias) {
        TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act: dim out of range");
        TORCH_CHECK(b.is_cuda() && b.device() == x.device(), "bias_act: b must be on x's device");
        TORCH_CHECK(b.dim() == 1 && b.size(0) == x.size(dim), "bias_act: b must be 1-D with x.size(dim) elements");
        TORCH_CHECK(b.scalar_type() == x.scalar_type() && b.is_contiguous(), "bias_act: b must be contiguous, x's dtype");
    }
    if (order > 0) {
        TORCH_CHECK(g.device() == x.device() && g.scalar_type() == x.scalar_type(), "bias_act: g must match x");
        TORCH_CHECK(same_strides(g, x), "bias_act: g must have x's shape and strides");
    }
    TORCH_CHECK(x.numel() < (int64_t(1) << 40), "bias_act: input too large");

    const c10::cuda::CUDAGuard guard(x.device());
    torch::Tensor y = torch::empty_like(x);  // keeps x's (dense) strides
    if (x.numel() == 0) return y;
    BiasActParams p;
    p.x = x.data_ptr();
    p.b = has_bias ? b.data_ptr() : nullptr;
    p.g = order > 0 ? g.data_ptr() : nullptr;
    p.y = y.data_ptr();
    p.numel = x.numel();
    p.bias_size = has_bias ? x.size(dim) : 1;
    p.bias_stride = has_bias ? std::max<int64_t>(x.stride(dim), 1) : 1;
    p.act = static_cast<int>(act);
    p.order = static_cast<int>(order);
    p.alpha = static_cast<float>(alpha);
    p.gain = static_cast<float>(gain);
    p.clamp = static_cast<float>(clamp);
    bias_act_launch(p, dtype_code(x));
    return y;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("bias_act", &bias_act, "Fused bias + activation + gain + clamp (and its derivatives)");
}
