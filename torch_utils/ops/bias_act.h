// Fused bias + activation + gain + clamp: parameters shared by the binding and the kernel.
#pragma once
#include <cstdint>

struct BiasActParams {
    const void* x;        // input, walked in memory order
    const void* b;        // bias (nullptr: none), indexed by the coordinate along `dim`
    const void* g;        // incoming gradient for order 1/2 (same strides as x), else nullptr
    void* y;              // output, same strides as x
    int64_t numel;
    int64_t bias_size;    // x.size(dim)
    int64_t bias_stride;  // x.stride(dim): memory index -> bias index is (i / stride) % size
    int act;              // activation code, see bias_act.py ACTIVATIONS[...].cuda_id
    int order;            // 0: value, 1: g * first derivative, 2: g * second derivative
    float alpha;
    float gain;
    float clamp;          // < 0: no clamping
};

// Launches the kernel for the given dtype on the current CUDA stream.
void bias_act_launch(const BiasActParams& p, int dtype_code);
