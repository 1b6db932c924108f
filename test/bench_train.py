"""bench_train.py: the same LoRA training step as test/bench_train.c, in PyTorch.

A Llama-3.2-1B-shaped stack with random weights (hidden 2048, MLP 8192, 32/8 heads of 64,
vocab 128256, tied embeddings), LoRA rank 8 alpha 16 dropout 0.05 on all seven linear
modules, frozen base weights, cross-entropy, backward, AdamW on the adapters — written the
way a PyTorch user would (nn.Linear, Hugging Face's eager attention: Debian's PyTorch has
no scaled_dot_product_attention), fp32, on the CPU.

Its fp32 matmuls run in the BLAS PyTorch is linked to (Debian's: OpenBLAS), whose kernel for
this CPU is picked when it loads unless OPENBLAS_CORETYPE forces one; test/bench_train.sh runs
this without it, and the first line printed names the kernel that ran.

With `bf16` the frozen base (every linear weight and the embeddings) is held in bf16 and its
matmuls run in bf16 (Debian's PyTorch sends them to oneDNN's AVX-512 BF16 kernels), as
train.c's --base_dtype bf16 does; LoRA, norms, the loss and AdamW stay fp32.

usage: /usr/bin/python3 test/bench_train.py [layers] [B] [T] [steps] [threads] [fp32|bf16]
"""
import ctypes
import math
import resource
import sys
import time

import torch
import torch.nn.functional as F

C, I, NH, NKV, HS, V = 2048, 8192, 32, 8, 64, 128256
RANK, ALPHA, DROPOUT = 8, 16.0, 0.05
BASE = torch.float32  # the frozen base's dtype: main() sets it


class LoraLinear(torch.nn.Module):
    """y = x W^T + (alpha/r) * dropout(x) A^T B^T with W frozen."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.base = torch.nn.Linear(n_in, n_out, bias=False).requires_grad_(False)
        self.lora_A = torch.nn.Parameter(torch.empty(RANK, n_in).uniform_(-1 / math.sqrt(n_in), 1 / math.sqrt(n_in)))
        self.lora_B = torch.nn.Parameter(torch.full((n_out, RANK), 1e-3))
        self.dropout = torch.nn.Dropout(DROPOUT)

    def forward(self, x):
        y = self.base(x.to(BASE)).float()
        return y + (ALPHA / RANK) * F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B)


def rmsnorm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, cos, sin):  # x (B, heads, T, HS), rotate-half
    x1, x2 = x[..., : HS // 2], x[..., HS // 2 :]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class Layer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = torch.nn.Parameter(torch.ones(C), requires_grad=False)
        self.ln2 = torch.nn.Parameter(torch.ones(C), requires_grad=False)
        self.q, self.k, self.v = LoraLinear(C, NH * HS), LoraLinear(C, NKV * HS), LoraLinear(C, NKV * HS)
        self.o = LoraLinear(NH * HS, C)
        self.gate, self.up, self.down = LoraLinear(C, I), LoraLinear(C, I), LoraLinear(I, C)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        h = rmsnorm(x, self.ln1)
        q = self.q(h).view(B, T, NH, HS).transpose(1, 2)
        k = self.k(h).view(B, T, NKV, HS).transpose(1, 2)
        v = self.v(h).view(B, T, NKV, HS).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        k = k.repeat_interleave(NH // NKV, dim=1)
        v = v.repeat_interleave(NH // NKV, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(HS)
        causal = torch.ones(T, T, dtype=torch.bool).triu(1)
        att = scores.masked_fill(causal, float("-inf")).softmax(-1) @ v
        x = x + self.o(att.transpose(1, 2).reshape(B, T, NH * HS))
        h = rmsnorm(x, self.ln2)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


# OpenBLAS kernels by core name: the instruction set of their sgemm
OPENBLAS_ISA = {"Haswell": "AVX2", "Zen": "AVX2", "SkylakeX": "AVX-512", "Cooperlake": "AVX-512 (+BF16)",
                "SapphireRapids": "AVX-512 (+BF16, FP16)"}


def blas_description():
    """Which BLAS this process loaded and, for OpenBLAS, which core's kernels it picked."""
    torch.mm(torch.ones(8, 8), torch.ones(8, 8))  # makes sure the BLAS is loaded
    with open("/proc/self/maps") as maps:
        libraries = sorted({line.split()[-1] for line in maps if "blas" in line.lower() and ".so" in line})
    for path in libraries:
        library = ctypes.CDLL(path)  # already loaded: the same handle, the same state
        if hasattr(library, "openblas_get_corename"):
            library.openblas_get_corename.restype = library.openblas_get_config.restype = ctypes.c_char_p
            core = library.openblas_get_corename().decode()
            version = library.openblas_get_config().decode().split()[1]
            return f"OpenBLAS {version} core {core} ({OPENBLAS_ISA.get(core, 'unknown ISA')} sgemm)"
    return "BLAS: " + (", ".join(libraries) or "none found") + " (not OpenBLAS: kernel unknown)"


def main():
    layers, B, T, steps = (int(a) for a in (sys.argv[1:5] + ["4", "1", "512", "3"][len(sys.argv[1:5]):]))
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else torch.get_num_threads()
    global BASE
    BASE = torch.bfloat16 if len(sys.argv) > 6 and sys.argv[6] == "bf16" else torch.float32
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    embed = torch.nn.Parameter(torch.randn(V, C) * 0.02, requires_grad=False)
    lnf = torch.nn.Parameter(torch.ones(C), requires_grad=False)
    model = torch.nn.ModuleList(Layer() for _ in range(layers))
    for p in model.parameters():
        if not p.requires_grad and p.dim() == 2:
            p.data = p.data.normal_(0, 0.02).to(BASE)
    embed.data = embed.data.to(BASE)
    inv_freq = 1.0 / (500000.0 ** (torch.arange(0, HS, 2).float() / HS))
    angles = torch.arange(T).float()[:, None] * inv_freq[None, :]
    cos, sin = angles.cos(), angles.sin()
    tokens = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B, T))
    lora = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(lora, lr=1e-4, weight_decay=0.0)
    print(f"pytorch {torch.__version__}: {blas_description()}", flush=True)
    times = []
    for step in range(steps + 1):  # step 0 warms up
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        x = embed[tokens].float()
        for layer in model:
            x = layer(x, cos, sin)
        logits = F.linear(rmsnorm(x, lnf).to(BASE), embed).float()
        loss = F.cross_entropy(logits.view(-1, V), targets.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lora, 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        print(f"pytorch step {step}: {dt:.3f} s, loss {loss.item():.4f}", file=sys.stderr)
        if step > 0:
            times.append(dt)
    linear = layers * (2 * C * NH * HS + 2 * C * NKV * HS + 3 * C * I) + V * C  # as test/bench_train.c
    # one line for test/bench_train.sh, in bench_train.c's form
    print(f"pytorch {torch.__version__} (base {str(BASE).replace('torch.', '')}): layers {layers} B {B} T {T} threads {threads}: steps "
          f"{' '.join(f'{t:.3f}' for t in times)} s; GFLOP {4 * linear * B * T / 1e9:.1f} (4 x weights x tokens); "
          f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1048576:.2f} GiB")


if __name__ == "__main__":
    main()
