// Upsample / pad / FIR filter / downsample: parameters shared by the binding and the kernel.
#pragma once
#include <cstdint>

struct UpFirDn2dParams {
    const void* x;     // input [N, C, H, W], arbitrary strides
    const float* f;    // filter [fh, fw], contiguous float32
    void* y;           // output [N, C, out_h, out_w], arbitrary strides
    int64_t n, c, in_h, in_w, out_h, out_w;
    int64_t x_stride[4];
    int64_t y_stride[4];
    int fh, fw;
    int up_x, up_y, down_x, down_y;
    int pad_x0, pad_y0;  // only the leading pads matter: the output size fixes the rest
    bool flip_filter;
    float gain;
};

// Launches the kernel for the given dtype on the current CUDA stream.
void upfirdn2d_launch(const UpFirDn2dParams& p, int dtype_code);
