/*
test_generate.c: checks generate.c's KV-cached decode against train.c's model_forward.

On the tiny reference models in test/models it compares logits from the prefill, from
token-by-token decode, from cached chunks and from a cache reused for a longer prompt
with model_forward's logits for the same tokens (max abs error printed next to the
tolerance); a BF16 base (its decode rounds the input as the prefill's bf16 matmul does);
a merge into a BF16 base; an unmerged
adapter against model_forward with the adapter and against the merged model; greedy
output across runs and thread counts; the matvec kernels against the naive one; the
sampler. It also writes the fixtures test/test_generate.sh uses into test/tmp/generate.
Run from the repository root: ./test_generate
*/
#define TRAIN_NO_MAIN  // generate.c and train.c as libraries: this file has its own main
#include "../generate.c"

#define TOLERANCE 1e-5
#define FIXTURES "test/tmp/generate"

static int passed = 0, failed = 0;

static void check(int ok, const char* what) {
    printf("%-6s %s\n", ok ? "ok" : "FAIL", what);
    if (ok) passed++; else failed++;
}

static double max_abs_diff(const float* a, const float* b, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= worst)) worst = e;  // NaN makes it NaN, which fails every comparison
    }
    return worst;
}

static void check_close(const char* what, double err, double tol) {
    char line[256];
    snprintf(line, sizeof(line), "%-66s max abs err %.2e  tol %.1e", what, err, tol);
    check(err <= tol, line);
}

// A prompt of T token ids, the same every run.
static void test_tokens(int* tokens, int T, int V, uint32_t salt) {
    for (int t = 0; t < T; t++) tokens[t] = (int)(mix32((uint32_t)t * 7919u + salt) % (uint32_t)V);
}

// model_forward's logits (T, V) for tokens, copied out of the activations.
static float* forward_logits(Model* m, const int* tokens, int T) {
    float* logits = malloc_check((size_t)T * m->config.V * sizeof(float), "test");
    model_forward(m, tokens, NULL, NULL, 1, T, 0);
    memcpy(logits, m->acts.logits, (size_t)T * m->config.V * sizeof(float));
    return logits;
}

// Feeds tokens[0..T) to a fresh cache: `prefill` of them through generator_extend,
// then chunks of `chunk` tokens, then one at a time; returns the worst logit error
// against ref (T, V) over every position whose logits the generator produced, and in
// *over how many of those positions were off by more than tol.
static double decode_error(Generator* g, const int* tokens, int T, const float* ref, int prefill, int chunk,
                           double tol, int* over) {
    int V = g->model->config.V;
    g->pos = 0;
    double worst = 0.0;
    int t = 0;
    *over = 0;
    while (t < T) {
        int n = t == 0 && prefill > 0 ? prefill : chunk > 1 && T - t >= chunk ? chunk : 1;
        if (t == 0 && prefill > 0) generator_extend(g, tokens, n);
        else generator_forward(g, tokens + t, n);
        t += n;
        double e = max_abs_diff(g->logits, ref + (size_t)(t - 1) * V, V);
        *over += !(e <= tol);
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

// Every position within tol, or with a BF16 base, at most a tenth of them within
// flip_tol: decode's sums differ from the prefill's in the last fp32 bit, which now and
// then puts an input on the other side of its BF16 rounding (one element off by a BF16
// step, the position's logits by up to ~1/256 of their size); a wrong kernel or rounding
// would move every position.
static void check_positions(const char* what, double worst, int over, int positions, double tol, double flip_tol) {
    char line[300];
    int allowed = flip_tol > tol ? positions / 10 : 0;
    snprintf(line, sizeof(line), "%-66s max abs err %.2e  tol %.1e; %d of %d positions over %.1e (at most %d)", what,
             worst, flip_tol, over, positions, tol, allowed);
    check(worst <= flip_tol && over <= allowed, line);
}

static void load_model(Model* m, Generator* g, const char* dir, const char* adapter, WeightFormat dtype) {
    model_load_as(m, dir, dtype);  // as ./generate
    if (adapter) lora_load_adapter(m, adapter, 0);
    generator_create(g, m, m->config.max_seq_len, m->config.max_seq_len);
}

// Greedy ids after the prompt (max_new of them), from a fresh cache.
static int greedy(Generator* g, const int* prompt, int n, int* out, int max_new) {
    Sampler s = {.temperature = 0.0f, .top_p = 1.0f, .repetition_penalty = 1.0f};
    sampler_init(&s, g->model->config.V, 1);
    StopTokens none = {.n = 0};
    Timing t = {0};
    int n_out;
    g->pos = 0;
    generator_extend(g, prompt, n);
    generate_tokens(g, &s, &none, max_new, NULL, NULL, out, &n_out, &t);
    free(s.candidates);
    free(s.seen);
    return n_out;
}

// ----------------------------------------------------------------------------
// fixtures: an adapter for tiny (every module, random B so it changes the output), the
// merged model, an adapter for a differently shaped base, a model dir without weights

static void make_fixtures(void) {
    make_directory(FIXTURES);
    Model m;
    model_load(&m, "test/models/tiny");
    matmul_init();
    LoraConfig lc = {.rank = 4, .alpha = 8.0f, .dropout = 0.05f};
    for (int mod = 0; mod < NUM_LORA_MODULES; mod++) lc.target[mod] = 1;
    model_init_lora(&m, &lc, 7);
    for (int mod = 0; mod < NUM_LORA_MODULES; mod++) {
        int in, out;
        lora_module_dims(&m.config, mod, &in, &out);
        size_t n = (size_t)m.config.L * out * lc.rank;
        for (size_t e = 0; e < n; e++) m.lora.B[mod][e] = hash_uniform(11, mod, (uint32_t)e, 0.3f);
    }
    lora_save_adapter(&m, FIXTURES "/adapter", "test/models/tiny");
    model_save_merged(&m, "test/models/tiny", FIXTURES "/merged", "auto");

    Model q;  // the same adapter trained (so to speak) on tiny's int8 quantisation: it records the base's fingerprint
    model_load_as(&q, "test/models/tiny", WEIGHT_INT8);
    q.lora_config = m.lora_config, q.use_lora = 1, q.lora_scale = m.lora_scale, q.lora = m.lora;
    lora_save_adapter(&q, FIXTURES "/adapter_int8", "test/models/tiny");

    LlamaConfig other = m.config;  // hidden 32 instead of 48: every A and B has another shape
    other.C = 32;
    Model o;
    model_create(&o, &other);
    model_init_lora(&o, &lc, 7);
    lora_save_adapter(&o, FIXTURES "/adapter_other_base", "a model with hidden_size 32");

    char* config;
    char* at;
    make_directory(FIXTURES "/no_weights");
    copy_file("test/models/tiny/config.json", FIXTURES "/no_weights/config.json");

    // a tiny random model with a trained 556-token byte-level BPE tokenizer, for the chat test
    make_directory(FIXTURES "/chat_model");
    const char* sentences[] = {"Hello there, how are you today? ", "I am fine, thank you. ",
                               "The quick brown fox jumps over the lazy dog. ",
                               "What is the capital of France? Paris is. ", "Tell me a story about a cat.\n"};
    TextBuffer corpus = {0};
    for (int i = 0; i < 400; i++) text_append(&corpus, sentences[i % 5], strlen(sentences[i % 5]));
    tokenizer_train(corpus.data, corpus.len, 300, FIXTURES "/chat_model");
    text_free(&corpus);
    Tokenizer tok;
    tokenizer_load(&tok, FIXTURES "/chat_model");
    LlamaConfig cc = m.config;
    cc.V = tok.vocab_size;
    cc.num_eos = 0;
    Model chat;
    model_create(&chat, &cc);
    for (size_t i = 0; i < chat.num_parameters; i++) chat.params_memory[i] = hash_uniform(21, 0, (uint32_t)i, 0.3f);
    for (size_t i = 0; i < (size_t)cc.L * cc.C; i++) chat.params.ln1[i] = chat.params.ln2[i] = 1.0f;
    config = read_file("test/models/tiny/config.json", NULL, "");
    at = strstr(config, "\"vocab_size\": 301");
    if (at == NULL) fail("test/models/tiny/config.json: expected \"vocab_size\": 301");
    char vocab[32];
    snprintf(vocab, sizeof(vocab), "\"vocab_size\": %d", tok.vocab_size);
    if (strlen(vocab) != 17) fail("internal error: vocab size %d", tok.vocab_size);
    memcpy(at, vocab, 17);
    write_text_file(FIXTURES "/chat_model/config.json", config);
    free(config);
    model_save_merged(&chat, FIXTURES "/chat_model", FIXTURES "/chat_model", "auto");
    tokenizer_free(&tok);

    // "wide": tiny's config with hidden 64 and MLP 128 (NF4's rows are whole blocks of 64), random weights
    make_directory(FIXTURES "/wide");
    config = read_file("test/models/tiny/config.json", NULL, "");
    const char* edits[][2] = {{"\"hidden_size\": 48", "\"hidden_size\": 64"},
                              {"\"intermediate_size\": 136", "\"intermediate_size\": 128"}};
    for (int e = 0; e < 2; e++) {
        at = strstr(config, edits[e][0]);
        if (at == NULL) fail("test/models/tiny/config.json: expected %s", edits[e][0]);
        memcpy(at, edits[e][1], strlen(edits[e][1]));
    }
    write_text_file(FIXTURES "/wide/config.json", config);
    free(config);
    LlamaConfig wc = m.config;
    wc.C = 64, wc.I = 128;
    Model wide;
    model_create(&wide, &wc);
    model_init_random(&wide, 5, 0.1f);
    model_save_merged(&wide, FIXTURES "/wide", FIXTURES "/wide", "fp32");

    // tiny with end token 78, which greedy decoding after 1,5,7,9,11 reaches third
    make_directory(FIXTURES "/tiny_eos");
    config = read_file("test/models/tiny/config.json", NULL, "");
    at = strstr(config, "\"eos_token_id\": 2");
    if (at == NULL) fail("test/models/tiny/config.json: expected \"eos_token_id\": 2");
    memcpy(at, "\"eos_token_id\":78", 17);
    write_text_file(FIXTURES "/tiny_eos/config.json", config);
    free(config);
    if (symlink("../../../models/tiny/model.safetensors", FIXTURES "/tiny_eos/model.safetensors") != 0 &&
        errno != EEXIST) {
        fail("cannot link " FIXTURES "/tiny_eos/model.safetensors: %s", strerror(errno));
    }
}

// ----------------------------------------------------------------------------
// tests

static void test_matvec(void) {
    // out, in: row counts below, at and past groups of 8 rows, widths that are and are not
    // multiples of 16
    int sizes[][2] = {{37, 203}, {64, 2048}, {5, 16}, {301, 48}, {1, 40}, {6, 50}, {9, 5000}, {16, 7}};
    for (int k = 0; k < 8; k++) {
        int out = sizes[k][0], in = sizes[k][1];
        float* W = malloc_check((size_t)out * in * sizeof(float), "test");
        uint16_t* Wb = malloc_check((size_t)out * in * sizeof(uint16_t), "test");
        float* x = malloc_check(in * sizeof(float), "test");
        float *y1 = calloc_floats(out, "test"), *y2 = calloc_floats(out, "test");
        for (size_t e = 0; e < (size_t)out * in; e++) {
            W[e] = hash_uniform(3, k, (uint32_t)e, 1.0f);
            Wb[e] = float_to_bf16(W[e]);
        }
        for (int i = 0; i < in; i++) x[i] = hash_uniform(4, k, i, 1.0f);
        double worst = 0.0, scale = sqrt((double)in);  // sums of `in` terms of size ~1
        for (int bf16 = 0; bf16 < 2; bf16++) {
            Weight w = bf16 ? weight_bf16(Wb) : weight_f32(W);
            for (int acc = 0; acc < 2; acc++) {
                for (int o = 0; o < out; o++) y1[o] = y2[o] = hash_uniform(5, k, o, 1.0f);
                matvec(y1, x, w, in, out, acc);
                matvec_naive(y2, x, w, in, out, acc);
                double e = max_abs_diff(y1, y2, out) / scale;
                if (!(e <= worst)) worst = e;
            }
        }
        char what[160];
        snprintf(what, sizeof(what), "matvec vs matvec_naive, F32 and BF16, %dx%d (error / sqrt(in))", out, in);
        check_close(what, worst, 4e-6);  // a wrong index would give errors of order 1
        free(W); free(Wb); free(x); free(y1); free(y2);
    }
}

// The int8 and NF4 matvec (decoded in registers) against "dequantise, then the fp32
// matvec": within 1e-5 of the largest output (the same math in another rounding order;
// an output near zero after cancellation has a large error relative to itself).
static void test_matvec_quantized(void) {
    int sizes[][2] = {{37, 192}, {64, 2048}, {5, 64}, {301, 8192}, {3, 200}, {9, 50}};  // int8 only: in % 64 != 0
    for (int k = 0; k < 6; k++) {
        int out = sizes[k][0], in = sizes[k][1];
        size_t n = (size_t)out * in;
        float* W = malloc_check(n * sizeof(float), "test");
        float* dequantized = malloc_check(n * sizeof(float), "test");
        float* x = malloc_check(in * sizeof(float), "test");
        float *y1 = calloc_floats(out, "test"), *y2 = calloc_floats(out, "test");
        void* codes = malloc_check(n, "test");
        float* scales = malloc_check((n / 64 + out) * sizeof(float), "test");
        float* x_order = malloc_check(in * sizeof(float), "test");
        for (size_t e = 0; e < n; e++) W[e] = hash_uniform(13, k, (uint32_t)e, 1.0f);
        for (int i = 0; i < in; i++) x[i] = hash_uniform(14, k, i, 1.0f);
        for (WeightFormat f = WEIGHT_INT8; f <= WEIGHT_NF4; f++) {
            if (f == WEIGHT_NF4 && in % NF4_BLOCK) continue;
            Weight w = {codes, f, scales, f == WEIGHT_INT8 ? (size_t)in : NF4_BLOCK};
            weight_store(w, 0, W, n);
            weight_dequantize(dequantized, w, 0, n);
            double worst = 0.0, largest = 0.0;
            int identical = 1;
            for (int acc = 0; acc < 2; acc++) {
                for (int o = 0; o < out; o++) y1[o] = y2[o] = hash_uniform(15, k, o, 1.0f);
                matvec_quantized(y1, x, w, in, out, acc, x_order);
                matvec(y2, x, weight_f32(dequantized), in, out, acc);
                for (int o = 0; o < out; o++) {
                    worst = fmax(worst, fabs((double)y1[o] - y2[o]));
                    largest = fmax(largest, fabs(y2[o]));
                }
                identical &= memcmp(y1, y2, out * sizeof(float)) == 0;
            }
            char what[160];
            snprintf(what, sizeof(what), "%s matvec %dx%d vs dequantise-then-fp32 matvec: max error / max |y| %.2e "
                     "(tol 1e-5)%s", WEIGHT_FORMAT_NAMES[f], out, in, worst / largest,
                     identical ? ", bit-identical" : "");
            check(worst <= 1e-5 * largest, what);
        }
        free(W); free(dequantized); free(x); free(y1); free(y2); free(codes); free(scales); free(x_order);
    }
}

// The tolerance is 1e-5 absolute, or 1e-6 of the largest |logit| where that is more: the
// decode sums in another order than train.c's matmul, so the two differ by rounding, and
// at logits above 10 an fp32 ulp is 1e-6 already. A BF16 base: see check_positions.
static void test_decode_matches_forward(const char* dir, const char* adapter, WeightFormat dtype, const char* label) {
    Model m;
    Generator g;
    load_model(&m, &g, dir, adapter, dtype);
    int T = 40, V = m.config.V;
    int* tokens = malloc_check(T * sizeof(int), "test");
    test_tokens(tokens, T, V, 1);
    float* ref = forward_logits(&m, tokens, T);
    char what[200];
    double largest = 0.0;
    for (size_t i = 0; i < (size_t)T * V; i++) largest = fmax(largest, fabs(ref[i]));
    double tol = fmax(TOLERANCE, 1e-6 * largest);
    printf("       %s: logits up to %.2f in magnitude; tolerance %.1e\n", label, largest, tol);

    g.pos = 0;
    generator_extend(&g, tokens, T);
    double e = max_abs_diff(m.acts.logits, ref, (size_t)T * V);
    double e_last = max_abs_diff(g.logits, ref + (size_t)(T - 1) * V, V);
    snprintf(what, sizeof(what), "%s: prefill logits (all %d positions) = model_forward", label, T);
    check_close(what, e > e_last ? e : e_last, tol);
    // flip_tol: see check_positions
    double flip_tol = dtype == WEIGHT_BF16 ? fmax(tol, largest / 256) : tol;
    int prefills[3] = {0, 7, 5}, chunks[3] = {1, 1, 6}, over;
    const char* how[3] = {"decode token by token from position 0", "prefill 7, then decode token by token",
                          "prefill 5, then cached chunks of 6"};
    for (int k = 0; k < 3; k++) {
        snprintf(what, sizeof(what), "%s: %s", label, how[k]);
        double worst = decode_error(&g, tokens, T, ref, prefills[k], chunks[k], tol, &over);
        check_positions(what, worst, over, T - (prefills[k] ? prefills[k] - 1 : 0), tol, flip_tol);
    }

    // A longer prompt sharing the first 23 tokens reuses them from the cache.
    int T2 = 33;
    int* tokens2 = malloc_check(T2 * sizeof(int), "test");
    test_tokens(tokens2, T2, V, 2);
    memcpy(tokens2, tokens, 23 * sizeof(int));
    float* ref2 = forward_logits(&m, tokens2, T2);
    g.pos = 0;
    generator_extend(&g, tokens, T);
    int forwarded = generator_extend(&g, tokens2, T2);
    snprintf(what, sizeof(what), "%s: cache reused for a prompt sharing 23 tokens (forwarded %d)", label, forwarded);
    check_close(what, forwarded == T2 - 23 ? max_abs_diff(g.logits, ref2 + (size_t)(T2 - 1) * V, V) : INFINITY,
                flip_tol);
    free(tokens); free(tokens2); free(ref); free(ref2);
}

// A prompt longer than the generator's prefill_max: its first 8 tokens go through
// model_forward, the rest through cached chunks.
static void test_long_prompt(void) {
    Model full, small;
    Generator gf, gs;
    load_model(&full, &gf, "test/models/tiny", NULL, WEIGHT_F32);
    model_load(&small, "test/models/tiny");
    generator_create(&gs, &small, small.config.max_seq_len, 8);
    int T = 40, V = full.config.V;
    int* tokens = malloc_check(T * sizeof(int), "test");
    test_tokens(tokens, T, V, 4);
    float* ref = forward_logits(&full, tokens, T);
    int forwarded = generator_extend(&gs, tokens, T);
    char what[160];
    snprintf(what, sizeof(what), "a %d-token prompt, 8 tokens prefilled at once and chunks after (forwarded %d) = "
             "model_forward", T, forwarded);
    check_close(what, forwarded == T ? max_abs_diff(gs.logits, ref + (size_t)(T - 1) * V, V) : INFINITY, TOLERANCE);
    free(tokens); free(ref);
}

static void test_adapter_merged(void) {
    Model unmerged, in_memory, from_disk;
    Generator gu, gm, gd;
    load_model(&unmerged, &gu, "test/models/tiny", FIXTURES "/adapter", WEIGHT_F32);
    model_load(&in_memory, "test/models/tiny");
    lora_load_adapter(&in_memory, FIXTURES "/adapter", 0);
    matmul_init();
    model_merge_lora(&in_memory);
    generator_create(&gm, &in_memory, in_memory.config.max_seq_len, in_memory.config.max_seq_len);
    load_model(&from_disk, &gd, FIXTURES "/merged", NULL, WEIGHT_F32);

    Model base;
    Generator gb;
    load_model(&base, &gb, "test/models/tiny", NULL, WEIGHT_F32);
    int prompt[5] = {1, 5, 7, 9, 11}, n = 60;
    int ids_u[60], ids_m[60], ids_d[60], ids_b[60];
    int nu = greedy(&gu, prompt, 5, ids_u, n), nm = greedy(&gm, prompt, 5, ids_m, n);
    int nd = greedy(&gd, prompt, 5, ids_d, n), nb = greedy(&gb, prompt, 5, ids_b, n);
    int same_m = nu == nm && memcmp(ids_u, ids_m, nu * sizeof(int)) == 0;
    int same_d = nu == nd && memcmp(ids_u, ids_d, nu * sizeof(int)) == 0;
    int differs = nb != nu || memcmp(ids_u, ids_b, nu * sizeof(int)) != 0;
    check(differs, "the test adapter changes greedy output (so the next checks mean something)");
    check(same_m, "60 greedy tokens: unmerged adapter = adapter merged at load (--merge_adapter)");
    check(same_d, "60 greedy tokens: unmerged adapter = merged model directory (model_save_merged)");

    // and the logits along the way: the merge only changes rounding
    int T = 40, V = unmerged.config.V;
    int* tokens = malloc_check(T * sizeof(int), "test");
    test_tokens(tokens, T, V, 3);
    float* ref = forward_logits(&unmerged, tokens, T);
    int over;
    check_close("merged model directory: decode logits vs unmerged model_forward",
                decode_error(&gd, tokens, T, ref, 3, 1, 1e-4, &over), 1e-4);
    free(tokens); free(ref);
}

// The targeted modules' base weights of m, all layers, in order, as BF16 values (n of them)
static uint16_t* targeted_bf16(const Model* m, size_t* n) {
    *n = 0;
    uint16_t* values = NULL;
    for (int mod = 0; mod < NUM_LORA_MODULES; mod++) {
        if (!m->lora_config.target[mod]) continue;
        int in, out;
        lora_module_dims(&m->config, mod, &in, &out);
        for (int l = 0; l < m->config.L; l++) {
            size_t numel = (size_t)out * in;
            values = realloc_check(values, (*n + numel) * sizeof(uint16_t), "test");
            Weight w = module_base(m, l, mod);
            for (size_t e = 0; e < numel; e++) values[*n + e] = float_to_bf16(weight_get(w, e));
            *n += numel;
        }
    }
    return values;
}

// --merge_adapter on a BF16 base (--weights bf16): every merged weight is the fp32 merge
// of the same values rounded to BF16, and the merge changed the targeted weights.
static void test_merge_bf16(void) {
    Model m32, m16;
    const char* dir = "test/models/tiny_bf16";  // BF16 values: both loads start from the same weights
    model_load_as(&m32, dir, WEIGHT_F32);
    model_load_as(&m16, dir, WEIGHT_BF16);
    lora_load_adapter(&m32, FIXTURES "/adapter", 0);
    lora_load_adapter(&m16, FIXTURES "/adapter", 0);
    matmul_init();
    size_t n, n32, n16;
    uint16_t* before = targeted_bf16(&m16, &n);
    model_merge_lora(&m32);
    model_merge_lora(&m16);
    uint16_t* want = targeted_bf16(&m32, &n32);  // the fp32 merge, rounded
    uint16_t* got = targeted_bf16(&m16, &n16);
    size_t mismatched = 0, changed = 0;
    for (size_t e = 0; e < n; e++) {
        mismatched += got[e] != want[e];
        changed += got[e] != before[e];
    }
    char what[200];
    snprintf(what, sizeof(what), "merge into a BF16 base = the fp32 merge rounded to BF16: %zu of %zu weights differ "
             "(%zu changed by the merge)", mismatched, n, changed);
    check(n > 0 && n == n32 && n == n16 && mismatched == 0 && changed > n / 2, what);
    free(before); free(want); free(got);
}

static void test_greedy_deterministic(void) {
    Model m;
    Generator g;
    load_model(&m, &g, "test/models/tiny", NULL, WEIGHT_F32);
    int prompt[5] = {1, 5, 7, 9, 11}, a[80], b[80], c[80];
    int na = greedy(&g, prompt, 5, a, 80);
    float* logits_a = malloc_check(m.config.V * sizeof(float), "test");
    memcpy(logits_a, g.logits, m.config.V * sizeof(float));
    int nb = greedy(&g, prompt, 5, b, 80);
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
    omp_set_num_threads(threads > 1 ? 1 : 2);
#endif
    int nc = greedy(&g, prompt, 5, c, 80);
    int same_logits = memcmp(logits_a, g.logits, m.config.V * sizeof(float)) == 0;
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    check(na == nb && memcmp(a, b, na * sizeof(int)) == 0, "greedy output identical in two runs");
    check(na == nc && memcmp(a, c, na * sizeof(int)) == 0 && same_logits,
          "greedy output and last logits bit-identical with another thread count");
    free(logits_a);
}

static void test_sampler(void) {
    int V = 6;
    float base[6] = {1.0f, 2.5f, -1.0f, 2.0f, 0.5f, -3.0f};
    float logits[6];
    Sampler s = {.temperature = 0.0f, .top_p = 1.0f, .repetition_penalty = 1.0f};
    sampler_init(&s, V, 5);
    memcpy(logits, base, sizeof(base));
    check(sample_token(&s, logits, V, NULL, 0) == 1, "sampler: temperature 0 is argmax");

    int history[3] = {1, 2, 1};
    memcpy(logits, base, sizeof(base));
    apply_repetition_penalty(logits, s.seen, history, 3, V, 2.0f);
    check(logits[1] == 1.25f && logits[2] == -2.0f && logits[0] == 1.0f,
          "sampler: repetition penalty divides positive, multiplies negative logits, once per token");
    memcpy(logits, base, sizeof(base));
    s.repetition_penalty = 2.0f;
    check(sample_token(&s, logits, V, history, 3) == 3, "sampler: greedy after the penalty picks the next best token");
    s.repetition_penalty = 1.0f;

    s.temperature = 1.0f;
    s.top_k = 1;
    int all_argmax = 1;
    for (int i = 0; i < 50; i++) {
        memcpy(logits, base, sizeof(base));
        all_argmax &= sample_token(&s, logits, V, NULL, 0) == 1;
    }
    s.top_k = 0;
    s.top_p = 1e-6f;
    for (int i = 0; i < 50; i++) {
        memcpy(logits, base, sizeof(base));
        all_argmax &= sample_token(&s, logits, V, NULL, 0) == 1;
    }
    check(all_argmax, "sampler: top_k 1 and a tiny top_p always give the argmax");

    // frequencies match softmax(logits / T), restricted by top-k and renormalised
    int draws = 200000;
    double expected[6], sum = 0.0, worst = 0.0;
    int counts[6] = {0};
    s.top_p = 1.0f;
    s.temperature = 0.7f;
    for (int i = 0; i < V; i++) sum += expected[i] = exp(base[i] / 0.7);
    for (int i = 0; i < draws; i++) {
        memcpy(logits, base, sizeof(base));
        counts[sample_token(&s, logits, V, NULL, 0)]++;
    }
    for (int i = 0; i < V; i++) worst = fmax(worst, fabs(counts[i] / (double)draws - expected[i] / sum));
    char what[160];
    snprintf(what, sizeof(what), "sampler: temperature 0.7 frequencies = softmax (worst |freq - p| %.4f, tol 0.005)",
             worst);
    check(worst <= 0.005, what);
    s.top_k = 3;  // keeps 1, 3, 0
    memset(counts, 0, sizeof(counts));
    for (int i = 0; i < draws; i++) {
        memcpy(logits, base, sizeof(base));
        counts[sample_token(&s, logits, V, NULL, 0)]++;
    }
    sum = expected[1] + expected[3] + expected[0];
    worst = 0.0;
    for (int i = 0; i < V; i++) worst = fmax(worst, fabs(counts[i] / (double)draws -
                                                         (i == 0 || i == 1 || i == 3 ? expected[i] / sum : 0.0)));
    snprintf(what, sizeof(what), "sampler: top_k 3 frequencies = renormalised top 3 (worst %.4f, tol 0.005)", worst);
    check(worst <= 0.005, what);
    s.top_k = 0;
    s.top_p = 0.8f;  // p at T=0.7 sorted: 0.51 (id 1), 0.25 (id 3), ...: the nucleus is ids 1 and 3
    memset(counts, 0, sizeof(counts));
    for (int i = 0; i < draws; i++) {
        memcpy(logits, base, sizeof(base));
        counts[sample_token(&s, logits, V, NULL, 0)]++;
    }
    sum = expected[1] + expected[3];
    double p_total = 0.0;
    for (int i = 0; i < V; i++) p_total += expected[i];
    int nucleus_ok = expected[1] / p_total < 0.8 && (expected[1] + expected[3]) / p_total >= 0.8;
    worst = 0.0;
    for (int i = 0; i < V; i++) worst = fmax(worst, fabs(counts[i] / (double)draws -
                                                         (i == 1 || i == 3 ? expected[i] / sum : 0.0)));
    snprintf(what, sizeof(what), "sampler: top_p 0.8 frequencies = renormalised nucleus (worst %.4f, tol 0.005)",
             worst);
    check(nucleus_ok && worst <= 0.005, what);

    Sampler s2 = s;
    sampler_init(&s2, V, 5);
    s.rng = s2.rng;
    int same = 1;
    for (int i = 0; i < 100; i++) {
        float l1[6], l2[6];
        memcpy(l1, base, sizeof(base));
        memcpy(l2, base, sizeof(base));
        same &= sample_token(&s, l1, V, NULL, 0) == sample_token(&s2, l2, V, NULL, 0);
    }
    check(same, "sampler: the same seed gives the same draws");
}

// model_forward's logits for the --dump_logits check in test/test_generate.sh
static void write_reference_logits(void) {
    Model m;
    model_load(&m, "test/models/tiny");
    model_allocate(&m, 1, 5, 0);
    int prompt[5] = {1, 5, 7, 9, 11};
    model_forward(&m, prompt, NULL, NULL, 1, 5, 0);
    FileWriter w;
    file_writer_open(&w, FIXTURES "/ref_logits_1_5_7_9_11.f32");
    file_writer_write(&w, m.acts.logits, (size_t)5 * m.config.V * sizeof(float));
    file_writer_close(&w);
}

int main(void) {
    make_fixtures();
    write_reference_logits();
    test_matvec();
    test_matvec_quantized();
    test_decode_matches_forward("test/models/tiny", NULL, WEIGHT_INT8,
                                "tiny, int8 base (--weights int8)");
    test_decode_matches_forward("test/models/tiny", FIXTURES "/adapter", WEIGHT_INT8,
                                "tiny, int8 base + adapter");
    test_decode_matches_forward(FIXTURES "/wide", NULL, WEIGHT_NF4, "wide, NF4 base (--weights nf4)");
    test_decode_matches_forward("test/models/tiny", NULL, WEIGHT_F32, "tiny F32");
    test_decode_matches_forward("test/models/tiny_bf16", NULL, WEIGHT_BF16,
                                "tiny_bf16, BF16 base");
    test_decode_matches_forward("test/models/tiny", NULL, WEIGHT_BF16,
                                "tiny rounded to BF16 (--weights bf16)");
    test_decode_matches_forward("test/models/tiny", FIXTURES "/adapter", WEIGHT_F32,
                                "tiny + unmerged adapter");
    test_decode_matches_forward("test/models/tiny", FIXTURES "/adapter", WEIGHT_BF16,
                                "tiny + adapter, BF16 base");
    test_decode_matches_forward("test/models/tiny_tied", NULL, WEIGHT_F32,
                                "tiny_tied F32 (tied, sharded)");
    test_long_prompt();
    test_adapter_merged();
    test_merge_bf16();
    test_greedy_deterministic();
    test_sampler();
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
