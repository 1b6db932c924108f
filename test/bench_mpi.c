/*
bench_mpi.c: the bytes train_mpi's ranks exchange per optimizer step for the Llama-3.2-1B and Llama-3.1-8B
shapes, with LoRA r=16 (q,v and all linear modules) and with full fine-tuning, and the network time they
imply at 10 and 100 Gbit/s. Each rank sends (and receives) 2(R-1)/R of the fp32 gradients
(llmc/distributed.h's dist_sum_floats, like a ring all-reduce): for 2 ranks, the gradients once.

usage: ./bench_mpi [ranks]   (default 2)
*/
#define TRAIN_NO_MAIN  // use train.c as a library: everything but its main
#include "../train.c"

int main(int argc, char** argv) {
    int R = argc > 1 ? atoi(argv[1]) : 2;
    if (R < 2) fail("usage: ./bench_mpi [ranks >= 2]");
    // SPEC §1's shapes; rope settings do not change the sizes
    LlamaConfig shapes[2] = {{.C = 2048, .I = 8192, .L = 16, .NH = 32, .NKV = 8, .hs = 64, .V = 128256, .tied = 1},
                             {.C = 4096, .I = 14336, .L = 32, .NH = 32, .NKV = 8, .hs = 128, .V = 128256, .tied = 0}};
    const char* names[2] = {"Llama-3.2-1B", "Llama-3.1-8B"};
    printf("%-13s %-26s %14s %16s %12s %12s\n", "shape", "trained", "gradients", "sent per rank", "10 Gbit/s",
           "100 Gbit/s");
    for (int s = 0; s < 2; s++) {
        for (int kind = 0; kind < 3; kind++) {  // LoRA q,v; LoRA all; full
            LoraConfig lc = {.rank = 16, .alpha = 32.0f};
            for (int mod = 0; mod < NUM_LORA_MODULES; mod++) {
                lc.target[mod] = kind == 1 || mod == LORA_Q || mod == LORA_V;
            }
            MemoryEstimate e = memory_estimate(&shapes[s], kind < 2 ? &lc : NULL, 1, 1, kind == 2, WEIGHT_F32, 0);
            double sent = 2.0 * (R - 1) / R * e.gradients;
            const char* what = kind == 0 ? "LoRA r=16 q,v" : kind == 1 ? "LoRA r=16 all linear" : "full fine-tuning";
            printf("%-13s %-26s %11.1f MB %13.1f MB %10.3f s %10.4f s\n", names[s], what, e.gradients / 1e6,
                   sent / 1e6, sent * 8 / 10e9, sent * 8 / 100e9);
        }
    }
    printf("(%d ranks; fp32 gradients; network time = bytes sent per rank at the line rate, latency not counted)\n", R);
    return 0;
}
