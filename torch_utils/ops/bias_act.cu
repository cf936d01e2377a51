// Elementwise kernel for bias_act: value, first-derivative and second-derivative passes.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/util/Half.h>
#include <c10/util/BFloat16.h>
#include <cuda_runtime.h>
#include "bias_act.h"

namespace {

// SELU constants (Klambauer et al.), identical to torch.nn.functional.selu.
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
// torch.nn.functional.softplus returns x itself above this threshold.
constexpr double kSoftplusThreshold = 20.0;

template <typename T> __device__ T sigmoid_of(T z) { return T(1) / (T(1) + exp(-z)); }

// act^(order)(z): order 0 the activation, 1 and 2 its derivatives.
template <typename T>
__device__ T activation(int act, int order, T z, T alpha) {
    switch (act) {
        case 0:  // linear
            return order == 0 ? z : (order == 1 ? T(1) : T(0));
        case 1:  // relu
            return order == 0 ? (z > T(0) ? z : T(0)) : (order == 1 ? (z > T(0) ? T(1) : T(0)) : T(0));
        case 2:  // lrelu
            return order == 0 ? (z > T(0) ? z : z * alpha) : (order == 1 ? (z > T(0) ? T(1) : alpha) : T(0));
        case 3: {  // tanh
            T t = tanh(z);
            return order == 0 ? t : (order == 1 ? T(1) - t * t : T(-2) * t * (T(1) - t * t));
        }
        case 4: {  // sigmoid
            T s = sigmoid_of(z);
            return order == 0 ? s : (order == 1 ? s * (T(1) - s) : s * (T(1) - s) * (T(1) - T(2) * s));
        }
        case 5:  // elu
            if (z > T(0)) return order == 0 ? z : (order == 1 ? T(1) : T(0));
            return order == 0 ? expm1(z) : exp(z);
        case 6:  // selu
            if (z > T(0)) return order == 0 ? T(kSeluScale) * z : (order == 1 ? T(kSeluScale) : T(0));
            return order == 0 ? T(kSeluScale * kSeluAlpha) * expm1(z) : T(kSeluScale * kSeluAlpha) * exp(z);
        case 7: {  // softplus
            if (z > T(kSoftplusThreshold)) return order == 0 ? z : (order == 1 ? T(1) : T(0));
            T s = sigmoid_of(z);
            return order == 0 ? log1p(exp(z)) : (order == 1 ? s : s * (T(1) - s));
        }
        case 8: {  // swish
            T s = sigmoid_of(z);
            if (order == 0) return z * s;
            if (order == 1) return s + z * s * (T(1) - s);
            return s * (T(1) - s) * (T(2) + z * (T(1) - T(2) * s));
        }
    }
    return T(0);
}

template <typename scalar_t, typename acc_t>
__global__ void bias_act_kernel(BiasActParams p) {
    const scalar_t* x = static_cast<const scalar_t*>(p.x);
    const scalar_t* b = static_cast<const scalar_t*>(p.b);
    const scalar_t* g = static_cast<const scalar_t*>(p.g);
    scalar_t* y = static_cast<scalar_t*>(p.y);
    const acc_t alpha = acc_t(p.alpha), gain = acc_t(p.gain), clamp = acc_t(p.clamp);
    const int64_t step = int64_t(blockDim.x) * gridDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.numel; i += step) {
        acc_t z = acc_t(x[i]);
        if (b != nullptr) z += acc_t(b[(i / p.bias_stride) % p.bias_size]);
        const acc_t value = gain * activation<acc_t>(p.act, 0, z, alpha);
        acc_t out;
        if (p.order == 0) {
            out = p.clamp >= 0.0f ? fmin(fmax(value, -clamp), clamp) : value;
        } else {
            // Saturated outputs pass no gradient (same convention as torch.clamp: the bounds are inside).
            const bool inside = p.clamp < 0.0f || fabs(value) <= clamp;
            out = inside ? acc_t(g[i]) * gain * activation<acc_t>(p.act, p.order, z, alpha) : acc_t(0);
        }
        y[i] = scalar_t(out);
    }
}

template <typename scalar_t, typename acc_t>
void launch_typed(const BiasActParams& p) {
    const int threads = 256;
    const int64_t wanted = (p.numel + threads - 1) / threads;
    const int blocks = static_cast<int>(wanted < 65535 * 16 ? wanted : 65535 * 16);
    bias_act_kernel<scalar_t, acc_t><<<blocks, threads, 0, at::cuda::getCurrentCUDAStream()>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

void bias_act_launch(const BiasActParams& p, int dtype_code) {
    switch (dtype_code) {
        case 0: launch_typed<double, double>(p); break;
        case 1: launch_typed<float, float>(p); break;
        case 2: launch_typed<c10::Half, float>(p); break;
        case 3: launch_typed<c10::BFloat16, float>(p); break;
    }
}
