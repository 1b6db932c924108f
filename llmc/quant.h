// quant.h: the int8 and NF4 weight codes of QLoRA-style training: quantize_int8, quantize_nf4,
// dequantize_int8, dequantize_nf4, NF4_CODE, NF4_BLOCK
//
// int8: one scale per block of `block` values (the trainer's block is a matrix row, as in
// LLM.int8()'s vector-wise quantisation): scale = absmax / 127, q = rint(w * (127 / absmax)),
// w ~ q * scale.
// NF4 (QLoRA, Dettmers et al. 2023): blocks of NF4_BLOCK = 64 values with one absmax each;
// each value becomes the index of the nearest of the 16 NormalFloat levels to w / absmax
// (ties go down), w ~ NF4_CODE[q] * absmax; two indices a byte, the first value of a pair in
// the high half (bitsandbytes' order).
// A last block may be shorter (ragged); a block of zeros has absmax 0 (and decodes to zeros).
// Every step is one fp32 operation, so test/quant_reference.py (NumPy) gives the same bits.
#ifndef LLMC_QUANT_H
#define LLMC_QUANT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define NF4_BLOCK 64

// The 16 NormalFloat levels: quantiles of N(0,1) scaled to [-1, 1], 0 exact (QLoRA's
// appendix; the values bitsandbytes ships)
static const float NF4_CODE[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

// largest |w[i]|, i < n
static float absmax_of(const float* w, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) m = fabsf(w[i]) > m ? fabsf(w[i]) : m;
    return m;
}

// q (n), scales (ceil(n/block)) <- w (n)
static void quantize_int8(int8_t* q, float* scales, const float* w, size_t n, size_t block) {
    for (size_t b0 = 0; b0 < n; b0 += block) {
        size_t len = n - b0 < block ? n - b0 : block;
        float absmax = absmax_of(w + b0, len);
        float inverse = absmax > 0.0f ? 127.0f / absmax : 0.0f;
        scales[b0 / block] = absmax / 127.0f;
        for (size_t i = 0; i < len; i++) {
            float v = rintf(w[b0 + i] * inverse);  // ties to even (the default rounding mode)
            q[b0 + i] = (int8_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
        }
    }
}

// q (ceil(n/2) bytes), absmax (ceil(n/NF4_BLOCK)) <- w (n); n odd: the last low half is 0
static void quantize_nf4(uint8_t* q, float* absmax, const float* w, size_t n) {
    float middle[15];  // the decision points between neighbouring levels
    for (int j = 0; j < 15; j++) middle[j] = (NF4_CODE[j] + NF4_CODE[j + 1]) * 0.5f;
    for (size_t b0 = 0; b0 < n; b0 += NF4_BLOCK) {
        size_t len = n - b0 < NF4_BLOCK ? n - b0 : NF4_BLOCK;
        float m = absmax_of(w + b0, len), inverse = m > 0.0f ? 1.0f / m : 0.0f;
        absmax[b0 / NF4_BLOCK] = m;
        for (size_t i = 0; i < len; i++) {
            float x = w[b0 + i] * inverse;
            int index = 0;
            for (int j = 0; j < 15; j++) index += x > middle[j];
            size_t e = b0 + i;
            if (e % 2 == 0) q[e / 2] = (uint8_t)(index << 4);
            else q[e / 2] |= (uint8_t)index;
        }
    }
}

// out (n) <- values e .. e+n-1 of an int8 tensor quantised in blocks of `block`
static void dequantize_int8(float* out, const int8_t* q, const float* scales, size_t block, size_t e, size_t n) {
    while (n > 0) {
        size_t len = block - e % block < n ? block - e % block : n;  // the rest of e's block
        float scale = scales[e / block];
        for (size_t i = 0; i < len; i++) out[i] = (float)q[e + i] * scale;
        out += len, e += len, n -= len;
    }
}

// out (n) <- values e .. e+n-1 of an NF4 tensor
static void dequantize_nf4(float* out, const uint8_t* q, const float* absmax, size_t e, size_t n) {
    while (n > 0) {
        size_t len = NF4_BLOCK - e % NF4_BLOCK < n ? NF4_BLOCK - e % NF4_BLOCK : n;
        float m = absmax[e / NF4_BLOCK];
        size_t i = 0;
        if (e % 2) out[i++] = NF4_CODE[q[e / 2] & 15] * m;  // a run starting on a low half
        for (; i + 2 <= len; i += 2) {                     // whole bytes: e + i even
            uint8_t byte = q[(e + i) / 2];
            out[i] = NF4_CODE[byte >> 4] * m;
            out[i + 1] = NF4_CODE[byte & 15] * m;
        }
        if (i < len) out[i] = NF4_CODE[q[(e + i) / 2] >> 4] * m;
        out += len, e += len, n -= len;
    }
}

#endif  // LLMC_QUANT_H
