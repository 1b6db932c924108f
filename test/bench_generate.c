/*
bench_generate.c: prefill and decode speed of generate.c on a Llama-3.2-1B-shaped model
with random weights (built in memory), with fp32 and with BF16 decode weights, against
the machine's limits: the fp32 FMA peak (SPEC §7) for the prefill, and for decode the
memory-bandwidth limit = measured read bandwidth / weight bytes read per token.

Read bandwidth is measured the way decode uses memory: all threads stream through a
buffer much larger than the caches, each summing its contiguous share. The machine is
shared, so every figure is the median over rounds, and bandwidth samples are taken
between the decode runs they are compared with.

usage: ./bench_generate [layers] [prefill_tokens] [decode_tokens] [rounds]   (default 16 64 16 5)
*/
#define GENERATE_NO_MAIN  // generate.c (and train.c) as a library
#include "../generate.c"

#define FMA_PEAK_GFLOPS 166.0  // SPEC §7: 2 cores x 32 FLOP/cycle x ~2.6 GHz

static int compare_doubles(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

static double median(double* v, int n) {
    qsort(v, n, sizeof(double), compare_doubles);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// GB/s of all threads summing a buffer of n floats, each thread its contiguous share.
static double read_bandwidth(const float* buffer, size_t n) {
    double t0 = wall_seconds(), total = 0.0;
    #pragma omp parallel for schedule(static) reduction(+:total)
    for (size_t block = 0; block < n / 65536; block++) {
        float partial[64] = {0};
        const float* p = buffer + block * 65536;
        for (size_t i = 0; i < 65536; i += 64) for (int j = 0; j < 64; j++) partial[j] += p[i + j];
        for (int j = 0; j < 64; j++) total += partial[j];
    }
    double seconds = wall_seconds() - t0;
    if (total == 12345.0) printf("%g", total);  // keeps the sum alive
    return n * sizeof(float) / seconds / 1e9;
}

// seconds per token of `tokens` decode steps after the prompt already in the cache
static double decode_seconds(Generator* g, int prompt_len, int tokens) {
    g->pos = prompt_len;
    int id = 1;
    double t0 = wall_seconds();
    for (int i = 0; i < tokens; i++) {
        generator_forward(g, &id, 1);
        id = (int)(mix32((uint32_t)i) % (uint32_t)g->model->config.V);
    }
    return (wall_seconds() - t0) / tokens;
}

int main(int argc, char** argv) {
    int layers = argc > 1 ? atoi(argv[1]) : 16;
    int T = argc > 2 ? atoi(argv[2]) : 64;
    int decode_tokens = argc > 3 ? atoi(argv[3]) : 16;
    int rounds = argc > 4 ? atoi(argv[4]) : 5;
    if (layers < 1 || T < 1 || decode_tokens < 1 || rounds < 1) fail("usage: ./bench_generate [layers] [prefill_tokens] [decode_tokens] [rounds]");
    // Llama-3.2-1B: hidden 2048, MLP 8192, 32 heads / 8 kv heads of 64, vocab 128256, tied
    LlamaConfig c = {.C = 2048, .I = 8192, .L = layers, .NH = 32, .NKV = 8, .hs = 64, .V = 128256,
                     .max_seq_len = 131072, .norm_eps = 1e-5f, .rope_theta = 500000.0, .rope_llama3 = 1,
                     .rope_factor = 32.0, .rope_low_freq_factor = 1.0, .rope_high_freq_factor = 4.0,
                     .rope_original_max_pos = 8192.0, .tied = 1};
    Model m;
    model_create(&m, &c);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < m.num_parameters; i++) m.params_memory[i] = hash_uniform(1, 0, (uint32_t)i, 0.02f);
    for (size_t i = 0; i < (size_t)layers * c.C; i++) m.params.ln1[i] = m.params.ln2[i] = 1.0f;
    for (int i = 0; i < c.C; i++) m.params.lnf[i] = 1.0f;
    Generator g;
    generator_create(&g, &m, T + decode_tokens, DTYPE_F32);
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    int* prompt = malloc_check(T * sizeof(int), "prompt");
    for (int t = 0; t < T; t++) prompt[t] = (int)(mix32((uint32_t)t + 99) % (uint32_t)c.V);
    printf("Llama-3.2-1B shape, %d layers, %.2fB parameters, %d threads; prefill %d tokens, decode %d tokens x %d rounds\n",
           layers, m.num_parameters / 1e9, threads, T, decode_tokens, rounds);

    // prefill: train.c's model_forward on the prompt, then the cache fill
    double linear_params = (double)layers * ((double)c.C * c.NH * c.hs * 2 + (double)c.C * c.NKV * c.hs * 2 + 3.0 * c.C * c.I) + (double)c.V * c.C;
    double attention_flops = (double)layers * c.NH * c.hs * 2.0 * 2.0 * T * (T + 1) / 2;  // QK^T and PV, causal
    double prefill[8];
    int prefill_rounds = rounds < 3 ? rounds : 3;
    for (int r = 0; r < prefill_rounds; r++) {
        g.pos = 0;
        double t0 = wall_seconds();
        generator_extend(&g, prompt, T);
        prefill[r] = wall_seconds() - t0;
    }
    double prefill_s = median(prefill, prefill_rounds);
    double gflops = (2.0 * linear_params * T + attention_flops) / prefill_s / 1e9;
    printf("prefill:      %8.1f tok/s  %.3f s for %d tokens, %.1f GFLOP/s = %.0f%% of the %.0f GFLOP/s fp32 FMA peak (median of %d)\n",
           T / prefill_s, prefill_s, T, gflops, 100.0 * gflops / FMA_PEAK_GFLOPS, FMA_PEAK_GFLOPS, prefill_rounds);

    // decode, fp32 then BF16 weights, with bandwidth samples in between
    size_t buffer_floats = (size_t)1 << 28;  // 1 GiB, far beyond any cache
    float* buffer = malloc_check(buffer_floats * sizeof(float), "bandwidth buffer");
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < buffer_floats; i++) buffer[i] = (float)(i & 1023);
    DecodeWeights f32 = g.weights, bf16;
    double* bw = malloc_check(3 * rounds * sizeof(double), "bench");
    double* f32_s = malloc_check(rounds * sizeof(double), "bench");
    double* bf16_s = malloc_check(rounds * sizeof(double), "bench");
    int nbw = 0;
    read_bandwidth(buffer, buffer_floats);  // warm-up: page faults
    decode_seconds(&g, T, 2);
    for (int r = 0; r < rounds; r++) {
        bw[nbw++] = read_bandwidth(buffer, buffer_floats);
        g.weights = f32;
        f32_s[r] = decode_seconds(&g, T, decode_tokens);
        bw[nbw++] = read_bandwidth(buffer, buffer_floats);
        if (r == 0) decode_weights_init(&bf16, &m, DTYPE_BF16);  // also rounds the fp32 weights: same bytes, same speed
        g.weights = bf16;
        bf16_s[r] = decode_seconds(&g, T, decode_tokens);
        bw[nbw++] = read_bandwidth(buffer, buffer_floats);
    }
    double bandwidth = median(bw, nbw);
    double t_f32 = median(f32_s, rounds), t_bf16 = median(bf16_s, rounds);
    printf("read bandwidth: %.1f GB/s (all threads streaming a 1 GiB buffer; median of %d)\n", bandwidth, nbw);
    double gb_f32 = f32.bytes_per_token / 1e9, gb_bf16 = bf16.bytes_per_token / 1e9;
    printf("decode F32:   %8.2f tok/s  %.1f ms/token, %.2f GB of weights/token -> %.1f GB/s = %.0f%% of the bandwidth limit (%.2f tok/s)\n",
           1.0 / t_f32, 1e3 * t_f32, gb_f32, gb_f32 / t_f32, 100.0 * gb_f32 / t_f32 / bandwidth, bandwidth / gb_f32);
    printf("decode BF16:  %8.2f tok/s  %.1f ms/token, %.2f GB of weights/token -> %.1f GB/s = %.0f%% of the bandwidth limit (%.2f tok/s)\n",
           1.0 / t_bf16, 1e3 * t_bf16, gb_bf16, gb_bf16 / t_bf16, 100.0 * gb_bf16 / t_bf16 / bandwidth, bandwidth / gb_bf16);
    printf("BF16 decode is %.2fx as fast as F32\n", t_f32 / t_bf16);
    return 0;
}
