/*
bench_generate.c: prefill and decode speed of generate.c on a Llama-3.2-1B-shaped model
with random weights (built in memory), its base in fp32, BF16, int8 and NF4 (as
--weights loads it), against the machine's limits, measured in the same run: the fp32 FMA
and bf16 dot-product roofs (test/roofline.h, register-only loops on all threads) for the
F32 and BF16 prefill, and for decode the memory-bandwidth limit = measured read bandwidth
/ weight bytes read per token.

Read bandwidth is measured the way decode uses memory, on the memory decode uses: all
threads stream through the decode weights themselves (4.9 GB fp32, 2.5 GB BF16), each
summing its contiguous share, right before each decoded token. This machine's bandwidth
moves by tens of percent from second to second and from one buffer to another (a 1 GiB
buffer read at 17 to 68 GB/s here), so a separate buffer read at another moment is no
fair limit; every figure is the median over rounds.

usage: ./bench_generate [layers] [prefill_tokens] [decode_tokens] [rounds]   (default 16 64 16 7)
*/
#define TRAIN_NO_MAIN  // generate.c and train.c as libraries: this file has its own main
#include "../generate.c"
#include "roofline.h"  // defines: roof_fp32_gflops, roof_bf16_gflops

static int compare_doubles(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

static double median(double* v, int n) {
    qsort(v, n, sizeof(double), compare_doubles);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Seconds for all threads to read n bytes at p (a multiple of 64), each thread its
// contiguous share, summing them as 32-bit integers: a pure stream, nothing else.
static double read_seconds(const void* p, size_t bytes) {
    const uint32_t* words = p;
    size_t n = bytes / 64;  // 64-byte lines of 16 words
    uint32_t total = 0;
    double t0 = wall_seconds();
    #pragma omp parallel reduction(+:total)
    {
        uint32_t lanes[16] = {0};
        #pragma omp for schedule(static)
        for (size_t line = 0; line < n; line++) for (int j = 0; j < 16; j++) lanes[j] += words[line * 16 + j];
        for (int j = 0; j < 16; j++) total += lanes[j];
    }
    double seconds = wall_seconds() - t0;
    if (total == 12345) printf(" ");  // keeps the sum alive
    return seconds;
}

// Seconds to read a matrix of n elements of `bits` bits, and its scales (int8, NF4)
static double read_weight_seconds(Weight w, size_t n, size_t bits) {
    double seconds = read_seconds(w.data, n * bits / 8);
    return w.scales ? seconds + read_seconds(w.scales, n / w.block * sizeof(float)) : seconds;
}

// Seconds to read every decode weight once: the bandwidth limit of one decode step,
// measured on the very bytes decode reads.
static double weights_read_seconds(const Generator* g) {
    const LlamaConfig* c = &g->model->config;
    const DecodeWeights* d = &g->weights;
    size_t bits = WEIGHT_FORMAT_BITS[d->format];
    double seconds = read_weight_seconds(d->lm_head, (size_t)c->V * c->C, bits);
    for (int mod = 0; mod < NUM_LORA_MODULES; mod++) {
        int in, out;
        lora_module_dims(c, mod, &in, &out);
        seconds += read_weight_seconds(d->linear[mod], (size_t)c->L * in * out, bits);
    }
    return seconds;
}

// Decodes `tokens` tokens after the prompt already in the cache, each one next to a read
// of all its weights, so that both see the same memory at nearly the same moment (this
// machine's bandwidth moves by tens of percent from second to second and between
// buffers). Adds the seconds of each to *decode and *read.
static void decode_and_read(Generator* g, int prompt_len, int tokens, double* decode, double* read) {
    g->pos = prompt_len;
    int id = 1;
    for (int i = 0; i < tokens; i++) {
        *read += weights_read_seconds(g);
        double t0 = wall_seconds();
        generator_forward(g, &id, 1);
        *decode += wall_seconds() - t0;
        id = (int)(mix32((uint32_t)i) % (uint32_t)g->model->config.V);
    }
}

int main(int argc, char** argv) {
    threads_init(argv);  // as ./generate: a short spin for waiting threads (llmc/threads.h)
    int layers = argc > 1 ? atoi(argv[1]) : 16;
    int T = argc > 2 ? atoi(argv[2]) : 64;
    int decode_tokens = argc > 3 ? atoi(argv[3]) : 16;
    int rounds = argc > 4 ? atoi(argv[4]) : 7;
    if (layers < 1 || T < 1 || decode_tokens < 1 || rounds < 1) fail("usage: ./bench_generate [layers] "
                                                                      "[prefill_tokens] [decode_tokens] [rounds]");
    // Llama-3.2-1B: hidden 2048, MLP 8192, 32 heads / 8 kv heads of 64, vocab 128256, tied
    LlamaConfig c = {.C = 2048, .I = 8192, .L = layers, .NH = 32, .NKV = 8, .hs = 64, .V = 128256,
                     .max_seq_len = 131072, .norm_eps = 1e-5f, .rope_theta = 500000.0, .rope_llama3 = 1,
                     .rope_factor = 32.0, .rope_low_freq_factor = 1.0, .rope_high_freq_factor = 4.0,
                     .rope_original_max_pos = 8192.0, .tied = 1};
    // one model and generator per base format: the base built in that format (its own
    // random values; the speed does not depend on them), as --weights loads it
    enum { FORMATS = 4 };
    const WeightFormat formats[FORMATS] = {WEIGHT_F32, WEIGHT_BF16, WEIGHT_INT8, WEIGHT_NF4};
    const char* names[FORMATS] = {"F32", "BF16", "int8", "NF4"};
    Model models[FORMATS];
    Generator gens[FORMATS];
    for (int w = 0; w < FORMATS; w++) {
        model_create_as(&models[w], &c, formats[w]);
        model_init_random(&models[w], 1, 0.02f);
        generator_create(&gens[w], &models[w], T + decode_tokens, T + decode_tokens);
    }
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    int* prompt = malloc_check(T * sizeof(int), "prompt");
    for (int t = 0; t < T; t++) prompt[t] = (int)(mix32((uint32_t)t + 99) % (uint32_t)c.V);
    printf("Llama-3.2-1B shape, %d layers, %.2fB parameters, %d threads; "
           "prefill %d tokens, decode %d tokens x %d rounds\n",
           layers, models[0].num_parameters / 1e9, threads, T, decode_tokens, rounds);

    // prefill: train.c's model_forward on the prompt (its fp32 or bf16 kernel), then the cache fill
    double linear_params = (double)layers * ((double)c.C * c.NH * c.hs * 2 + (double)c.C * c.NKV * c.hs * 2 +
                                             3.0 * c.C * c.I) +
                           (double)c.V * c.C;
    double attention_flops = (double)layers * c.NH * c.hs * 2.0 * 2.0 * T * (T + 1) / 2;  // QK^T and PV, causal
    double roofs[2] = {roof_fp32_gflops(), roof_bf16_gflops()}, prefill_s[2];
    printf("roofs, measured now on all %d threads: fp32 FMA %.0f GFLOP/s, bf16 dot product %.0f GFLOP/s "
           "(test/roofline.h)\n", threads, roofs[0], roofs[1]);
    int prefill_rounds = rounds < 3 ? rounds : 3;
    for (int w = 0; w < 2; w++) {  // F32 and BF16
        double prefill[8];
        for (int r = 0; r < prefill_rounds; r++) {
            gens[w].pos = 0;
            double t0 = wall_seconds();
            generator_extend(&gens[w], prompt, T);
            prefill[r] = wall_seconds() - t0;
        }
        prefill_s[w] = median(prefill, prefill_rounds);
        double gflops = (2.0 * linear_params * T + attention_flops) / prefill_s[w] / 1e9;
        printf("prefill %-4s: %8.1f tok/s  %.3f s for %d tokens, %.1f GFLOP/s = %.0f%% of the %s roof "
               "(median of %d)\n", names[w], T / prefill_s[w], prefill_s[w], T, gflops, 100.0 * gflops / roofs[w],
               w ? "bf16" : "fp32", prefill_rounds);
    }
    printf("BF16 prefill is %.2fx as fast as F32\n", prefill_s[0] / prefill_s[1]);

    // decode, each token next to a read of its weights
    double* decode_s[FORMATS], *read_s[FORMATS], *fraction[FORMATS];
    for (int w = 0; w < FORMATS; w++) {
        decode_s[w] = malloc_check(rounds * sizeof(double), "bench");
        read_s[w] = malloc_check(rounds * sizeof(double), "bench");
        fraction[w] = malloc_check(rounds * sizeof(double), "bench");
        gens[w].pos = 0;
        generator_extend(&gens[w], prompt, T);
        double d = 0, r = 0;
        decode_and_read(&gens[w], T, 1, &d, &r);  // warm-up
    }
    for (int r = 0; r < rounds; r++) {
        for (int w = 0; w < FORMATS; w++) {
            double d = 0, rd = 0;
            decode_and_read(&gens[w], T, decode_tokens, &d, &rd);
            decode_s[w][r] = d / decode_tokens;
            read_s[w][r] = rd / decode_tokens;
            fraction[w][r] = rd / d;
        }
    }
    printf("decode against the bandwidth limit: each token next to a pure read of the same weights by all threads "
           "(median of %d rounds)\n", rounds);
    double t[FORMATS];
    for (int w = 0; w < FORMATS; w++) {
        double gb = gens[w].weights.bytes_per_token / 1e9;
        t[w] = median(decode_s[w], rounds);
        double read = median(read_s[w], rounds), f = median(fraction[w], rounds);
        printf("decode %-4s:  %8.2f tok/s  %.1f ms/token, %.2f GB of weights/token; "
               "reading them takes %.1f ms (%.1f GB/s) -> decode at %.0f%% of the bandwidth limit\n",
               names[w], 1.0 / t[w], 1e3 * t[w], gb, 1e3 * read, gb / read, 100.0 * f);
    }
    printf("BF16 decode is %.2fx as fast as F32; int8 %.2fx BF16, NF4 %.2fx BF16 (target >= 2.5x), NF4 %.2fx F32\n",
           t[0] / t[1], t[1] / t[2], t[1] / t[3], t[0] / t[3]);
    return 0;
}
