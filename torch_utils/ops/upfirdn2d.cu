// upfirdn2d kernel: one thread per output sample, visiting only the filter taps that land on
// real (not inserted-zero) input samples, i.e. 1/(up_x*up_y) of the taps.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/util/Half.h>
#include <c10/util/BFloat16.h>
#include <cuda_runtime.h>
#include "upfirdn2d.h"

namespace {

__device__ __forceinline__ int64_t floor_div(int64_t a, int64_t b) {
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// First tap index t >= 0 with (base + t) divisible by `up`.
__device__ __forceinline__ int first_aligned_tap(int64_t base, int up) {
    int64_t r = base % up;
    return static_cast<int>(r == 0 ? 0 : (r < 0 ? -r : up - r));
}

template <typename scalar_t, typename acc_t>
__global__ void upfirdn2d_kernel(UpFirDn2dParams p) {
    const scalar_t* x = static_cast<const scalar_t*>(p.x);
    scalar_t* y = static_cast<scalar_t*>(p.y);
    const int64_t total = p.n * p.c * p.out_h * p.out_w;
    const int64_t step = int64_t(blockDim.x) * gridDim.x;
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += step) {
        const int64_t ox = idx % p.out_w;
        const int64_t oy = (idx / p.out_w) % p.out_h;
        const int64_t ch = (idx / (p.out_w * p.out_h)) % p.c;
        const int64_t nb = idx / (p.out_w * p.out_h * p.c);
        // Tap (i, j) reads the upsampled image at (base_y + i, base_x + j).
        const int64_t base_y = oy * p.down_y - p.pad_y0;
        const int64_t base_x = ox * p.down_x - p.pad_x0;
        const scalar_t* plane = x + nb * p.x_stride[0] + ch * p.x_stride[1];
        acc_t acc = acc_t(0);
        for (int i = first_aligned_tap(base_y, p.up_y); i < p.fh; i += p.up_y) {
            const int64_t sy = floor_div(base_y + i, p.up_y);
            if (sy < 0 || sy >= p.in_h) continue;
            const int fi = p.flip_filter ? i : p.fh - 1 - i;  // true convolution flips the filter
            for (int j = first_aligned_tap(base_x, p.up_x); j < p.fw; j += p.up_x) {
                const int64_t sx = floor_div(base_x + j, p.up_x);
                if (sx < 0 || sx >= p.in_w) continue;
                const int fj = p.flip_filter ? j : p.fw - 1 - j;
                acc += acc_t(plane[sy * p.x_stride[2] + sx * p.x_stride[3]]) * acc_t(__ldg(&p.f[fi * p.fw + fj]));
            }
        }
        y[nb * p.y_stride[0] + ch * p.y_stride[1] + oy * p.y_stride[2] + ox * p.y_stride[3]] =
            scalar_t(acc * acc_t(p.gain));
    }
}

template <typename scalar_t, typename acc_t>
void launch_typed(const UpFirDn2dParams& p) {
    const int threads = 256;
    const int64_t total = p.n * p.c * p.out_h * p.out_w;
    const int64_t wanted = (total + threads - 1) / threads;
    const int blocks = static_cast<int>(wanted < 65535 * 16 ? wanted : 65535 * 16);
    upfirdn2d_kernel<scalar_t, acc_t><<<blocks, threads, 0, at::cuda::getCurrentCUDAStream()>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

void upfirdn2d_launch(const UpFirDn2dParams& p, int dtype_code) {
    switch (dtype_code) {
        case 0: launch_typed<double, double>(p); break;
        case 1: launch_typed<float, float>(p); break;
        case 2: launch_typed<c10::Half, float>(p); break;
        case 3: launch_typed<c10::BFloat16, float>(p); break;
    }
}
