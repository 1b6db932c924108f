#!/usr/bin/env python3
"""NumPy reference of the int8 and NF4 weight codes (llmc/quant.h), written from the
definitions, not from the C: whole arrays at once, NF4's nearest level found with
np.searchsorted on the decision points.

  int8: per block of `block` values, absmax; scale = absmax / 127;
        q = clip(rint(w * (127 / absmax)), -127, 127), 0 for a block of zeros
  NF4:  per block of 64 values, absmax; x = w * (1 / absmax) (0 for a block of zeros);
        q = the number of decision points (midpoints of neighbouring levels) below x;
        two codes a byte, the first of a pair in the high nibble, an odd last one padded with 0

Every operation is in float32, as in C. Usage: quant_reference.py DIR writes, for each
case NAME (listed in DIR/cases.txt as "NAME n int8_block"): NAME.f32 (the input),
NAME.int8, NAME.int8_scales, NAME.int8_values (dequantised), NAME.nf4, NAME.nf4_absmax,
NAME.nf4_values; test/test_quant.c quantises the inputs and compares bit for bit.
"""
import os
import sys

import numpy as np

f32 = np.float32
# QLoRA's NormalFloat4 levels (bitsandbytes' table)
NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=f32)


def blocks_of(w, block):
    """w padded with zeros to whole blocks, as rows (padding changes no absmax)."""
    nb = -(-len(w) // block)
    padded = np.zeros(nb * block, dtype=f32)
    padded[:len(w)] = w
    return padded.reshape(nb, block)


def safe_inverse(numerator, absmax):
    out = np.zeros_like(absmax)
    nz = absmax > 0
    out[nz] = f32(numerator) / absmax[nz]
    return out


def int8_quantize(w, block):
    b = blocks_of(w, block)
    absmax = np.abs(b).max(axis=1)
    q = np.clip(np.rint(b * safe_inverse(127, absmax)[:, None]), -127, 127).astype(np.int8).reshape(-1)[:len(w)]
    scales = absmax / f32(127)
    values = (q.astype(f32).reshape(-1) * np.repeat(scales, block)[:len(w)]).astype(f32)
    return q, scales.astype(f32), values


def nf4_quantize(w):
    b = blocks_of(w, 64)
    absmax = np.abs(b).max(axis=1)
    x = (b * safe_inverse(1, absmax)[:, None]).reshape(-1)[:len(w)]
    middle = ((NF4[:-1] + NF4[1:]) * f32(0.5)).astype(f32)
    index = np.searchsorted(middle, x, side="left").astype(np.uint8)  # how many decision points lie below x
    pairs = np.zeros(2 * ((len(w) + 1) // 2), dtype=np.uint8)
    pairs[:len(w)] = index
    packed = (pairs[0::2] << 4) | pairs[1::2]
    values = (NF4[index] * np.repeat(absmax, 64)[:len(w)]).astype(f32)
    return packed.astype(np.uint8), absmax.astype(f32), values


def cases():
    rng = np.random.default_rng(16)
    yield "gaussian", (rng.standard_normal(64 * 8) * 0.02).astype(f32), 128
    heavy = (rng.standard_t(3, 64 * 3 + 37) * 0.01).astype(f32)  # heavy tails, ragged (and odd) last block
    heavy[5] = 0.9
    yield "ragged_odd", heavy, 100
    zeros = rng.standard_normal(300).astype(f32)
    zeros[50:150] = 0.0  # int8 blocks 1 and 2 (of 50), NF4 block 1 (64..127): all zero
    yield "zero_blocks", zeros, 50
    absmax = f32(0.75)  # levels, decision points and their float neighbours, times an absmax
    middle = (NF4[:-1] + NF4[1:]) * f32(0.5)
    special = np.concatenate([NF4, middle, np.nextafter(middle, f32(2)), np.nextafter(middle, f32(-2))]) * absmax
    special = np.concatenate([special, [absmax]]).astype(f32)
    yield "levels_and_midpoints", special, len(special)
    yield "int8_halves", np.array([127, 0.5, 1.5, 2.5, -2.5, -0.5, 126.5, -127, 3.5, 0], dtype=f32), 10
    matrix = (rng.standard_normal((16, 96)) * np.linspace(0.01, 1, 16)[:, None]).astype(f32).reshape(-1)
    yield "matrix_rows", matrix, 96  # a row per int8 scale, as the trainer uses it
    yield "one_value", np.array([-0.3], dtype=f32), 1
    yield "all_zero", np.zeros(130, dtype=f32), 64


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    lines = []
    for name, w, block in cases():
        q8, s8, v8 = int8_quantize(w, block)
        q4, a4, v4 = nf4_quantize(w)
        for suffix, array in [("f32", w), ("int8", q8), ("int8_scales", s8), ("int8_values", v8), ("nf4", q4),
                              ("nf4_absmax", a4), ("nf4_values", v4)]:
            array.tofile(os.path.join(out, f"{name}.{suffix}"))
        lines.append(f"{name} {len(w)} {block}\n")
    with open(os.path.join(out, "cases.txt"), "w") as f:
        f.writelines(lines)
    print(f"wrote {len(lines)} cases to {out}")


if __name__ == "__main__":
    main()
