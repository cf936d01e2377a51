// Python binding and argument checks for the fused upfirdn2d kernel.
#include <torch/extension.h>
#include <c10/cuda/CUDAGuard.h>
#include "upfirdn2d.h"

namespace {

int dtype_code(const torch::Tensor& x) {
    switch (x.scalar_type()) {
        case torch::kFloat64: return 0;
        case torch::kFloat32: return 1;
        case torch::kFloat16: return 2;
        case torch::kBFloat16: return 3;
        default: TORCH_CHECK(false, "upfirdn2d: x must be float64, float32, float16 or bfloat16");
    }
    return -1;
}

// One fused pass with a 2-D filter; the filter is multiplied by `gain` as a whole.
torch::Tensor upfirdn2d(torch::Tensor x, torch::Tensor f, int64_t up_x, int64_t up_y, int64_t down_x,
                        int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1,
                        bool flip_filter, double gain) {
    TORCH_CHECK(x.is_cuda() && x.dim() == 4, "upfirdn2d: x must be a 4-D CUDA tensor");
    TORCH_CHECK(f.device() == x.device() && f.dim() == 2 && f.scalar_type() == torch::kFloat32,
                "upfirdn2d: f must be a 2-D float32 tensor on x's device");
    TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "upfirdn2d: up/down must be >= 1");
    f = f.contiguous();
    const int64_t fh = f.size(0), fw = f.size(1);
    const int64_t out_h = (x.size(2) * up_y + pad_y0 + pad_y1 - fh) / down_y + 1;
    const int64_t out_w = (x.size(3) * up_x + pad_x0 + pad_x1 - fw) / down_x + 1;
    TORCH_CHECK(x.size(2) * up_y + pad_y0 + pad_y1 >= fh && x.size(3) * up_x + pad_x0 + pad_x1 >= fw,
                "upfirdn2d: the padded image is smaller than the filter");
    TORCH_CHECK(fh <= 1024 && fw <= 1024, "upfirdn2d: filter too large");

    const c10::cuda::CUDAGuard guard(x.device());
    torch::Tensor y = torch::empty({x.size(0), x.size(1), out_h, out_w},
                                   x.options().memory_format(x.suggest_memory_format()));
    if (y.numel() == 0) return y;
    UpFirDn2dParams p;
    p.x = x.data_ptr();
    p.f = f.data_ptr<float>();
    p.y = y.data_ptr();
    p.n = x.size(0); p.c = x.size(1); p.in_h = x.size(2); p.in_w = x.size(3);
    p.out_h = out_h; p.out_w = out_w;
    for (int i = 0; i < 4; ++i) {
        p.x_stride[i] = x.stride(i);
        p.y_stride[i] = y.stride(i);
    }
    p.fh = static_cast<int>(fh); p.fw = static_cast<int>(fw);
    p.up_x = static_cast<int>(up_x); p.up_y = static_cast<int>(up_y);
    p.down_x = static_cast<int>(down_x); p.down_y = static_cast<int>(down_y);
    p.pad_x0 = static_cast<int>(pad_x0); p.pad_y0 = static_cast<int>(pad_y0);
    p.flip_filter = flip_filter;
    p.gain = static_cast<float>(gain);
    upfirdn2d_launch(p, dtype_code(x));
    return y;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("upfirdn2d", &upfirdn2d, "Fused upsample / pad / FIR filter / downsample");
}
