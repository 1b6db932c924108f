/*
test_train.c: checks train.c against the PyTorch reference written by test/reference.py.

For each reference file it loads the model directory named in the file, sets the LoRA
tensors the reference started from, and compares the logits, the loss, the gradient of
every LoRA tensor and every base weight, and ten AdamW steps with clipping. Each tensor's
max absolute and relative error is printed next to its tolerance. These checks, and
those of determinism, allocations, micro-batches and packing, are model_checks.h's,
which test_train_gpu.c runs on the GPU model; here they run through CPU_OPS. The CPU's
own: results bit-identical across thread counts, BF16/F16 weights loading as the rounded
F32 ones, adapters and merged models written and read back, and the fast matmul against
the naive one. Run from the repository root: ./test_train
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "count_allocations.h"  // defines: allocations, counting train.c's
#define TRAIN_NO_MAIN  // use train.c as a library: everything but its main
#include "../train.c"
#include "model_checks.h"      // defines: check, compare, ref_*, model_from_ref, Tolerances, check_gradients, ...

// test_train.c's tolerances: fp32 on the CPU matches PyTorch to rounding.
static const Tolerances CPU = {.name = "fp32", .logits_abs = 1e-4, .loss = 1e-4, .gradients = 1e-4, .losses = 1e-5,
                               .norms = 1e-4, .weights = 1e-4, .micro_batches = 1e-6, .packing = 1e-6};

// A BF16 or F16 copy of the reference model: the weights must load as exactly the
// rounded F32 weights, and the logits stay close to the F32 reference.
static uint16_t round_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    bits += 0x7fff + ((bits >> 16) & 1);  // round to nearest even
    return (uint16_t)(bits >> 16);
}

static void test_low_precision(SafeTensors* ref, const char* dir, int is_bf16, double tol_logits) {
    Model exact, low;
    model_load(&exact, ref_meta(ref, "model"));
    model_from_ref(&low, &CPU_OPS, ref, dir, 0);
    size_t mismatches = 0;
    for (size_t i = 0; i < exact.num_parameters; i++) {
        float want = exact.params_memory[i];
        float rounded = is_bf16 ? bf16_to_float(round_to_bf16(want)) : (float)(_Float16)want;
        mismatches += memcmp(&rounded, &low.params_memory[i], 4) != 0;
    }
    char what[200];
    snprintf(what, sizeof(what), "%s: all %zu weights load as the %s rounding of the F32 weights (%zu differ)", dir,
             exact.num_parameters, is_bf16 ? "BF16" : "F16", mismatches);
    check(mismatches == 0, what);
    int N = (int)(ref_number(ref, "B") * ref_number(ref, "T"));
    float* logits = malloc_check((size_t)N * low.config.V * sizeof(float), "test");
    forward_backward(&low, &CPU_OPS, ref, logits);
    snprintf(what, sizeof(what), "%s logits vs F32 reference", dir);
    compare(what, logits, ref_floats(ref, "logits"), (size_t)N * low.config.V, tol_logits, 0.0);
    snprintf(what, sizeof(what), "%s loss vs F32 reference", dir);
    compare(what, &low.loss, ref_floats(ref, "loss"), 1, tol_logits, 0.0);
    free(logits);
    free(exact.params_memory);
    model_free(&low);
}

// The same step with 1, 2 and 3 threads gives bit-identical logits and gradients.
static void test_thread_determinism(SafeTensors* ref) {
#ifdef _OPENMP
    Model m;
    model_from_ref(&m, &CPU_OPS, ref, ref_meta(ref, "model"), 1);
    int N = (int)(ref_number(ref, "B") * ref_number(ref, "T"));
    size_t nl = (size_t)N * m.config.V;
    float* logits1 = malloc_check(nl * sizeof(float), "test");
    float* lora1 = malloc_check(m.num_lora_parameters * sizeof(float), "test");
    float* grads1 = malloc_check(m.num_parameters * sizeof(float), "test");
    int saved = omp_get_max_threads();
    int identical = 1;
    for (int threads = 1; threads <= 3; threads++) {
        omp_set_num_threads(threads);
        model_zero_grad(&m);
        model_forward(&m, ref_ints(ref, "tokens"), ref_ints(ref, "targets"), NULL, (int)ref_number(ref, "B"),
                      (int)ref_number(ref, "T"), 1);
        if (threads == 1) memcpy(logits1, m.acts.logits, nl * sizeof(float));
        else identical &= memcmp(logits1, m.acts.logits, nl * sizeof(float)) == 0;
        model_backward(&m, ref_ints(ref, "tokens"), ref_ints(ref, "targets"), NULL, (int)ref_number(ref, "B"),
                       (int)ref_number(ref, "T"), m.num_tokens);
        if (threads == 1) {
            memcpy(lora1, m.lora_grads_memory, m.num_lora_parameters * sizeof(float));
            memcpy(grads1, m.grads_memory, m.num_parameters * sizeof(float));
        } else {
            identical &= memcmp(lora1, m.lora_grads_memory, m.num_lora_parameters * sizeof(float)) == 0;
            identical &= memcmp(grads1, m.grads_memory, m.num_parameters * sizeof(float)) == 0;
        }
    }
    omp_set_num_threads(saved);
    check(identical, "logits and all gradients bit-identical with 1, 2 and 3 threads");
    free(logits1);
    free(lora1);
    free(grads1);
    model_free(&m);
#else
    (void)ref;  // a build without OpenMP runs one thread: the check cannot be made, which is a failure
    check(0, "thread determinism: built without OpenMP; build with a compiler that supports -fopenmp");
#endif
}

// Trains a few steps, writes the PEFT adapter and the merged model, and reads both back:
// the reloaded adapter must give bit-identical logits, the merged model the same logits
// within 1e-5. The logits go to test/tmp/adapter_logits.safetensors for test_peft.py,
// which applies the adapter to the PyTorch reference model the way PEFT would.
static void test_adapter_and_merge(SafeTensors* ref) {
    const char* base = ref_meta(ref, "model");
    Model m;
    model_from_ref(&m, &CPU_OPS, ref, base, 0);
    AdamWConfig o = {.learning_rate = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .max_grad_norm = 1.0f};
    for (int s = 0; s < 3; s++) training_step(&m, &CPU_OPS, ref, &o);
    size_t nl = (size_t)ref_number(ref, "B") * ref_number(ref, "T") * m.config.V;
    float* trained = malloc_check(nl * sizeof(float), "test");
    float* other = malloc_check(nl * sizeof(float), "test");
    eval_logits(&m, &CPU_OPS, ref, trained);
    make_directory("test/tmp");
    lora_save_adapter(&m, "test/tmp/adapter", base);
    model_save_merged(&m, base, "test/tmp/merged", "auto");
    char* name = "logits";
    int64_t rows = (int64_t)nl, cols = 0;
    SafeTensorsWriter w;
    safetensors_writer_open(&w, "test/tmp/adapter_logits.safetensors", 1, &name, &rows, &cols, DTYPE_F32, NULL);
    safetensors_writer_tensor(&w, trained, nl);
    safetensors_writer_close(&w);

    Model reloaded;
    model_load(&reloaded, base);
    lora_load_adapter(&reloaded, "test/tmp/adapter", 0);
    model_allocate(&reloaded, m.B, m.T, 0);
    eval_logits(&reloaded, &CPU_OPS, ref, other);
    check(memcmp(trained, other, nl * sizeof(float)) == 0, "adapter written and read back gives bit-identical logits");
    model_free(&reloaded);

    Model merged;
    model_load(&merged, "test/tmp/merged");
    model_allocate(&merged, m.B, m.T, 0);
    eval_logits(&merged, &CPU_OPS, ref, other);
    compare("merged model logits vs base + adapter", other, trained, nl, 1e-5, 0.0);
    model_free(&merged);
    free(trained);
    free(other);
    model_free(&m);
}

// Merging into a BF16 base writes BF16 by default (the base's dtype, --merge_dtype auto):
// every merged weight read back is exactly the BF16 rounding of the fp32 merge, and the
// logits stay within BF16 error. --merge_dtype fp32 writes the exact merge, with a config
// that says float32. Prints how much of the adapter's effect on the logits the BF16
// rounding loses.
static void test_merge_bf16(SafeTensors* ref) {
    const char* base = "test/models/tiny_bf16";
    Model m;
    model_from_ref(&m, &CPU_OPS, ref, base, 0);
    AdamWConfig o = {.learning_rate = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .max_grad_norm = 1.0f};
    for (int s = 0; s < 3; s++) training_step(&m, &CPU_OPS, ref, &o);
    size_t nl = (size_t)ref_number(ref, "B") * ref_number(ref, "T") * m.config.V;
    float* with_adapter = malloc_check(nl * sizeof(float), "test");
    float* merged_logits = malloc_check(nl * sizeof(float), "test");
    float* base_logits = malloc_check(nl * sizeof(float), "test");
    eval_logits(&m, &CPU_OPS, ref, with_adapter);
    m.use_lora = 0;
    eval_logits(&m, &CPU_OPS, ref, base_logits);
    m.use_lora = 1;
    model_save_merged(&m, base, "test/tmp/merged_bf16", "auto");
    model_save_merged(&m, base, "test/tmp/merged_bf16_as_f32", "fp32");

    SafeTensors written;
    safetensors_open(&written, "test/tmp/merged_bf16/model.safetensors");
    int all_bf16 = written.n > 0;
    for (int i = 0; i < written.n; i++) all_bf16 &= written.tensors[i].dtype == DTYPE_BF16;
    safetensors_close(&written);
    check(all_bf16, "merged model of a BF16 base is written as BF16");
    Model low, exact;
    model_load(&low, "test/tmp/merged_bf16");
    model_load(&exact, "test/tmp/merged_bf16_as_f32");
    size_t mismatches = 0;
    for (size_t i = 0; i < exact.num_parameters; i++) {
        float rounded = bf16_to_float(round_to_bf16(exact.params_memory[i]));
        mismatches += memcmp(&rounded, &low.params_memory[i], 4) != 0;
    }
    char what[200];
    snprintf(what, sizeof(what),
             "merged BF16 round trip: all %zu weights read back as the BF16 rounding of the fp32 merge (%zu differ)",
             exact.num_parameters, mismatches);
    check(mismatches == 0, what);
    check(strcmp(exact.config.dtype, "float32") == 0, "--merge_dtype fp32: the merged config.json says float32");
    model_allocate(&exact, m.B, m.T, 0);
    eval_logits(&exact, &CPU_OPS, ref, merged_logits);
    compare("fp32 merge of a BF16 base: logits vs base + adapter", merged_logits, with_adapter, nl, 1e-5, 0.0);
    model_allocate(&low, m.B, m.T, 0);
    eval_logits(&low, &CPU_OPS, ref, merged_logits);
    compare("merged BF16 model logits vs BF16 base + adapter", merged_logits, with_adapter, nl, 5e-2, 0.0);
    double lost = 0.0, effect = 0.0;  // how much of the adapter's change of the logits the rounding moves
    for (size_t i = 0; i < nl; i++) {
        lost += fabs((double)merged_logits[i] - with_adapter[i]);
        effect += fabs((double)with_adapter[i] - base_logits[i]);
    }
    printf("info   BF16 merge: the rounding moves the logits by %.1f%% of the adapter's own effect on them "
           "(mean |merged - unmerged| / mean |unmerged - base|)\n", 100.0 * lost / effect);
    model_free(&exact);
    free(base_logits);
    model_free(&low);
    model_free(&m);
    free(with_adapter);
    free(merged_logits);
}

// Hugging Face's schedules: linear warmup from 0, then cosine/linear decay to min_lr.
static void test_schedules(void) {
    float lr = 1e-3f, min_lr = 1e-4f;
    int ok = fabsf(learning_rate_at(0, 100, 10, lr, min_lr, SCHEDULE_COSINE)) < 1e-12f &&
             fabsf(learning_rate_at(5, 100, 10, lr, min_lr, SCHEDULE_COSINE) - 5e-4f) < 1e-9f &&
             fabsf(learning_rate_at(10, 100, 10, lr, min_lr, SCHEDULE_COSINE) - lr) < 1e-9f &&
             fabsf(learning_rate_at(55, 100, 10, lr, min_lr, SCHEDULE_COSINE) - 5.5e-4f) < 1e-8f &&
             fabsf(learning_rate_at(100, 100, 10, lr, min_lr, SCHEDULE_COSINE) - min_lr) < 1e-9f &&
             fabsf(learning_rate_at(55, 100, 10, lr, 0.0f, SCHEDULE_LINEAR) - 5e-4f) < 1e-8f &&
             fabsf(learning_rate_at(99, 100, 10, lr, 0.0f, SCHEDULE_CONSTANT) - lr) < 1e-9f;
    check(ok, "learning-rate schedules: warmup, cosine, linear and constant at known points");
}

// The blocked matmul against the naive oracle, on awkward shapes and all stride patterns.
static void test_matmul(void) {
    // {64, 4, 520} and {1000, 8, 300} are thin (N < NR): computed transposed; {50, 2100, 1037}
    // packs A once for both threads (shared_a) across several NC blocks and K blocks
    int shapes[][3] = {{1, 1, 1}, {3, 17, 5}, {40, 301, 48}, {129, 67, 259}, {64, 4, 520}, {7, 1000, 3},
                       {300, 200, 1100}, {1000, 8, 300}, {50, 2100, 1037}};
    double worst = 0.0;
    uint32_t seed = 1;
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float* A = malloc_check((size_t)M * K * sizeof(float), "test");
        float* Bm = malloc_check((size_t)K * N * sizeof(float), "test");
        float* C1 = malloc_check((size_t)M * N * sizeof(float), "test");
        float* C2 = malloc_check((size_t)M * N * sizeof(float), "test");
        for (size_t i = 0; i < (size_t)M * K; i++) A[i] = hash_uniform(seed, 1, (uint32_t)i, 1.0f);
        for (size_t i = 0; i < (size_t)K * N; i++) Bm[i] = hash_uniform(seed, 2, (uint32_t)i, 1.0f);
        for (int pattern = 0; pattern < 4; pattern++) {
            int a_rs = pattern & 1 ? 1 : K, a_cs = pattern & 1 ? M : 1;
            int b_rs = pattern & 2 ? 1 : N, b_cs = pattern & 2 ? K : 1;
            for (size_t i = 0; i < (size_t)M * N; i++) C1[i] = C2[i] = hash_uniform(seed, 3, (uint32_t)i, 1.0f);
            int accumulate = pattern != 0;
            matmul(C1, A, Bm, M, N, K, a_rs, a_cs, b_rs, b_cs, N, accumulate);
            matmul_naive(C2, A, Bm, M, N, K, a_rs, a_cs, b_rs, b_cs, N, accumulate);
            for (size_t i = 0; i < (size_t)M * N; i++) {
                double e = fabs((double)C1[i] - C2[i]) / sqrt((double)K);
                if (!(e <= worst)) worst = e;
            }
        }
        free(A); free(Bm); free(C1); free(C2);
    }
    char what[160];
    snprintf(what, sizeof(what), "matmul vs naive on %d shapes x 4 stride patterns: max error/sqrt(K) %.2e (tol 1e-5)",
             (int)(sizeof(shapes) / sizeof(shapes[0])), worst);
    check(worst <= 1e-5, what);
}

// The matmul against a bf16 B (A rounded to bf16 in the packing) against the naive oracle
// that rounds A the same way, on the shapes and stride patterns above; and bit-identical
// for 1 and 2 threads. Built with AVX-512 BF16 this is vdpbf16ps, else the widening fallback.
static void test_matmul_bf16(void) {
    int shapes[][3] = {{1, 1, 1}, {3, 17, 5}, {40, 301, 48}, {129, 67, 259}, {64, 4, 520}, {7, 1000, 3},
                       {300, 200, 1100}, {13, 70, 1025}, {50, 2100, 1037}};
    double worst = 0.0;
    int identical = 1;
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float* A = malloc_check((size_t)M * K * sizeof(float), "test");
        uint16_t* Bm = malloc_check((size_t)K * N * sizeof(uint16_t), "test");
        float* C1 = malloc_check((size_t)M * N * sizeof(float), "test");
        float* C2 = malloc_check((size_t)M * N * sizeof(float), "test");
        float* C3 = malloc_check((size_t)M * N * sizeof(float), "test");
        for (size_t i = 0; i < (size_t)M * K; i++) A[i] = hash_uniform(5, 1, (uint32_t)i, 1.0f);
        for (size_t i = 0; i < (size_t)K * N; i++) Bm[i] = float_to_bf16(hash_uniform(5, 2, (uint32_t)i, 1.0f));
        for (int pattern = 0; pattern < 4; pattern++) {
            int a_rs = pattern & 1 ? 1 : K, a_cs = pattern & 1 ? M : 1;
            int b_rs = pattern & 2 ? 1 : N, b_cs = pattern & 2 ? K : 1;
            for (size_t i = 0; i < (size_t)M * N; i++) C1[i] = C2[i] = C3[i] = hash_uniform(5, 3, (uint32_t)i, 1.0f);
            int accumulate = pattern != 0;
            matmul_weight(C1, A, weight_bf16(Bm), M, N, K, a_rs, a_cs, b_rs, b_cs, N, accumulate);
            matmul_naive_weight(C2, A, weight_bf16(Bm), M, N, K, a_rs, a_cs, b_rs, b_cs, N, accumulate);
            int threads = omp_get_max_threads();
            omp_set_num_threads(1);
            matmul_weight(C3, A, weight_bf16(Bm), M, N, K, a_rs, a_cs, b_rs, b_cs, N, accumulate);
            omp_set_num_threads(threads);
            identical &= memcmp(C1, C3, (size_t)M * N * sizeof(float)) == 0;
            for (size_t i = 0; i < (size_t)M * N; i++) {
                double e = fabs((double)C1[i] - C2[i]) / sqrt((double)K);
                if (!(e <= worst)) worst = e;
            }
        }
        free(A); free(Bm); free(C1); free(C2); free(C3);
    }
    char what[200];
    snprintf(what, sizeof(what), "bf16 matmul (%s) vs naive on %d shapes x 4 stride patterns: max error/sqrt(K) "
             "%.2e (tol 1e-5)", MATMUL_BF16_NATIVE ? "AVX-512 BF16" : "widened to fp32",
             (int)(sizeof(shapes) / sizeof(shapes[0])), worst);
    check(worst <= 1e-5, what);
    check(identical, "bf16 matmul bit-identical with 1 thread and with all");
}

// values (n) stored in format f (int8: a scale per `cols` values, a row; NF4: blocks of 64,
// which may straddle rows here), in memory the caller frees (.data; the scales follow it);
// dequantized (n) receives the values as the Weight holds them.
static Weight quantized_copy(const float* values, size_t n, size_t cols, WeightFormat f, float* dequantized) {
    size_t block = f == WEIGHT_INT8 ? cols : NF4_BLOCK, code_bytes = (n * WEIGHT_FORMAT_BITS[f] / 8 + 64) / 64 * 64;
    char* memory = malloc_check(code_bytes + ((n + block - 1) / block) * sizeof(float), "test");
    Weight w = {memory, f, (const float*)(memory + code_bytes), block};
    weight_store(w, 0, values, n);
    weight_dequantize(dequantized, w, 0, n);
    return w;
}

// The matmul against an int8 or NF4 B (dequantised as it is packed) against "dequantise B,
// then the fp32 matmul", on awkward shapes and all stride patterns: the packed panels hold the
// same floats, so the two agree to the bit; and bit-identical for 1 thread and all.
static void test_matmul_quantized(WeightFormat f) {
    int shapes[][3] = {{1, 1, 1}, {3, 17, 5}, {40, 301, 48}, {129, 67, 259}, {64, 4, 520}, {7, 1000, 3},
                       {300, 200, 1100}, {13, 70, 1025}};
    double worst = 0.0;
    int identical = 1, threads_identical = 1;
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float* A = malloc_check((size_t)M * K * sizeof(float), "test");
        float* values = malloc_check((size_t)K * N * sizeof(float), "test");
        float* dequantized = malloc_check((size_t)K * N * sizeof(float), "test");
        float* C1 = malloc_check((size_t)M * N * sizeof(float), "test");
        float* C2 = malloc_check((size_t)M * N * sizeof(float), "test");
        float* C3 = malloc_check((size_t)M * N * sizeof(float), "test");
        for (size_t i = 0; i < (size_t)M * K; i++) A[i] = hash_uniform(6, 1, (uint32_t)i, 1.0f);
        for (size_t i = 0; i < (size_t)K * N; i++) values[i] = hash_uniform(6, 2, (uint32_t)i, 1.0f);
        for (int pattern = 0; pattern < 4; pattern++) {
            int a_rs = pattern & 1 ? 1 : K, a_cs = pattern & 1 ? M : 1;
            int b_rs = pattern & 2 ? 1 : N, b_cs = pattern & 2 ? K : 1;  // pattern & 2: B (N,K) as x W^T reads it
            Weight w = quantized_copy(values, (size_t)K * N, pattern & 2 ? K : N, f, dequantized);
            for (size_t i = 0; i < (size_t)M * N; i++) C1[i] = C2[i] = C3[i] = hash_uniform(6, 3, (uint32_t)i, 1.0f);
            int accumulate = pattern != 0;
            matmul_weight(C1, A, w, M, N, K, a_rs, a_cs, b_rs, b_cs, N, accumulate);
            matmul(C2, A, dequantized, M, N, K, a_rs, a_cs, b_rs, b_cs, N, accumulate);
            int threads = omp_get_max_threads();
            omp_set_num_threads(1);
            matmul_weight(C3, A, w, M, N, K, a_rs, a_cs, b_rs, b_cs, N, accumulate);
            omp_set_num_threads(threads);
            identical &= memcmp(C1, C2, (size_t)M * N * sizeof(float)) == 0;
            threads_identical &= memcmp(C1, C3, (size_t)M * N * sizeof(float)) == 0;
            for (size_t i = 0; i < (size_t)M * N; i++) {
                double e = fabs((double)C1[i] - C2[i]) / (fabs((double)C2[i]) + 1e-30);
                if (!(e <= worst)) worst = e;
            }
            free((void*)w.data);
        }
        free(A); free(values); free(dequantized); free(C1); free(C2); free(C3);
    }
    char what[200];
    snprintf(what, sizeof(what), "%s matmul vs dequantise-then-fp32 matmul on 8 shapes x 4 stride patterns: max "
             "relative error %.2e (tol 1e-5)%s", WEIGHT_FORMAT_NAMES[f], worst, identical ? ", bit-identical" : "");
    check(worst <= 1e-5, what);
    snprintf(what, sizeof(what), "%s matmul bit-identical with 1 thread and with all", WEIGHT_FORMAT_NAMES[f]);
    check(threads_identical, what);
}

// A model of the given shape with its frozen base in f, random weights and a LoRA with B
// non-zero too (so that A's gradients are); `twin`, when not NULL, becomes the same model
// in fp32 with the base's dequantised values.
static void quantized_model(Model* m, Model* twin, const LlamaConfig* c, WeightFormat f) {
    LoraConfig lc = {.rank = 4, .alpha = 8.0f, .dropout = 0.0f};
    for (int mod = 0; mod < NUM_LORA_MODULES; mod++) lc.target[mod] = 1;
    Model* models[2] = {m, twin};
    model_create_as(m, c, f);
    model_init_random(m, 3, 0.3f);
    if (twin) {
        model_create(twin, c);
        for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
            if (PARAMETERS[i].cols != DIM_NONE) weight_dequantize((float*)twin->frozen[i].data, m->frozen[i], 0,
                                                                   parameter_numel(c, i));
            else memcpy(*parameter_field(&twin->params, i), *parameter_field(&m->params, i),
                        parameter_numel(c, i) * sizeof(float));
        }
    }
    for (int k = 0; k < 2 && models[k]; k++) {
        model_init_lora(models[k], &lc, 7);
        for (size_t i = 0; i < models[k]->num_lora_parameters; i++) {
            if (models[k]->lora_memory[i] == 0.0f) models[k]->lora_memory[i] = hash_uniform(8, 0, (uint32_t)i, 0.1f);
        }
        model_allocate(models[k], 2, 24, 0);
    }
}

// LoRA's gradients on a quantised base against the fp32 model holding the dequantised base:
// the loss, the logits and every LoRA gradient within 1e-5 relative (they agree to the bit,
// as the matmuls do). The shape's columns are multiples of NF4's 64.
static void test_quantized_base(WeightFormat f) {
    LlamaConfig c = {.C = 64, .I = 192, .L = 2, .NH = 4, .NKV = 2, .hs = 16, .V = 101, .max_seq_len = 64,
                     .norm_eps = 1e-5f, .rope_theta = 10000.0, .tied = f == WEIGHT_NF4};
    Model q, twin;
    quantized_model(&q, &twin, &c, f);
    int B = 2, T = 24, N = B * T, tokens[48], targets[48];
    for (int n = 0; n < N; n++) tokens[n] = (int)(mix32(n) % c.V), targets[n] = (int)(mix32(n + 99) % c.V);
    Model* models[2] = {&q, &twin};
    float* logits[2];
    for (int k = 0; k < 2; k++) {
        model_zero_grad(models[k]);
        model_forward(models[k], tokens, targets, NULL, B, T, 1);
        logits[k] = malloc_check((size_t)N * c.V * sizeof(float), "test");
        memcpy(logits[k], models[k]->acts.logits, (size_t)N * c.V * sizeof(float));
        model_backward(models[k], tokens, targets, NULL, B, T, models[k]->num_tokens);
    }
    char name[120];
    snprintf(name, sizeof(name), "%s base: logits vs fp32 model of the dequantised base", WEIGHT_FORMAT_NAMES[f]);
    compare(name, logits[0], logits[1], (size_t)N * c.V, 0.0, 1e-5);
    snprintf(name, sizeof(name), "%s base: loss vs fp32 model of the dequantised base", WEIGHT_FORMAT_NAMES[f]);
    compare(name, &q.loss, &twin.loss, 1, 0.0, 1e-5);
    snprintf(name, sizeof(name), "%s base: every LoRA gradient vs the same", WEIGHT_FORMAT_NAMES[f]);
    compare(name, q.lora_grads_memory, twin.lora_grads_memory, q.num_lora_parameters, 0.0, 1e-5);
    Model raw;  // negative control: the same random weights unquantised give another loss
    quantized_model(&raw, NULL, &c, WEIGHT_F32);
    model_forward(&raw, tokens, targets, NULL, B, T, 1);
    snprintf(name, sizeof(name), "%s base: its loss %.6f differs from the unquantised model's %.6f (by > 1e-4)",
             WEIGHT_FORMAT_NAMES[f], q.loss, raw.loss);
    check(fabsf(q.loss - raw.loss) > 1e-4f, name);
    model_free(&raw);
    size_t planned = memory_estimate(&c, NULL, 1, 1, 0, f, 0).weights;
    size_t f32_bytes = memory_estimate(&c, NULL, 1, 1, 0, WEIGHT_F32, 0).weights;
    snprintf(name, sizeof(name), "%s base: the weights' memory plan %zu bytes, fp32's %zu (%.2fx smaller)",
             WEIGHT_FORMAT_NAMES[f], planned, f32_bytes, (double)f32_bytes / planned);
    check(planned < f32_bytes / (f == WEIGHT_NF4 ? 5 : 3), name);
    free(logits[0]); free(logits[1]);
    model_free(&q);
    model_free(&twin);
}

// --merge on an int8 base merges into the checkpoint's own weights, re-read from disk: the
// merged file equals, byte for byte, the merge of the same adapter into the fp32 base; and
// the adapter records the base's quantisation and fingerprint.
static void test_merge_quantized(void) {
    Model q, exact;
    model_load_as(&q, "test/models/tiny", WEIGHT_INT8);
    model_load(&exact, "test/models/tiny");
    LoraConfig lc = {.rank = 4, .alpha = 8.0f};
    for (int mod = 0; mod < NUM_LORA_MODULES; mod++) lc.target[mod] = 1;
    Model* both[2] = {&q, &exact};
    for (int k = 0; k < 2; k++) {
        model_init_lora(both[k], &lc, 7);
        for (size_t i = 0; i < both[k]->num_lora_parameters; i++) {
            if (both[k]->lora_memory[i] == 0.0f) both[k]->lora_memory[i] = hash_uniform(9, 0, (uint32_t)i, 0.3f);
        }
    }
    make_directory("test/tmp");
    model_save_merged(&q, "test/models/tiny", "test/tmp/merged_int8", "auto");
    model_save_merged(&exact, "test/models/tiny", "test/tmp/merged_int8_ref", "auto");
    size_t n1, n2;
    char* a = read_file("test/tmp/merged_int8/model.safetensors", &n1, "");
    char* b = read_file("test/tmp/merged_int8_ref/model.safetensors", &n2, "");
    check(n1 == n2 && memcmp(a, b, n1) == 0, "merge of an adapter trained on an int8 base: the unquantised base is "
                                             "re-read, the file equals the fp32 base's merge byte for byte");
    lora_save_adapter(&q, "test/tmp/adapter_int8", "test/models/tiny");
    check(lora_adapter_quantization("test/tmp/adapter_int8") == WEIGHT_INT8 && q.base_fingerprint != 0 &&
          q.base_fingerprint == exact.base_fingerprint, "the adapter records base_quantization int8, and the "
          "fingerprint is the same for the fp32 and the int8 load of the base");
    free(a);
    free(b);
    model_free(&q);
    model_free(&exact);
}

// Loading a checkpoint as int8 quantises each tensor as quantize_int8 does on the fp32 one;
// NF4 refuses tiny's 48 columns with the fix in the message (checked in test_bad_input.sh).
static void test_quantized_load(void) {
    Model q, exact;
    model_load_as(&q, "test/models/tiny", WEIGHT_INT8);
    model_load(&exact, "test/models/tiny");
    int same = 1;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t n = parameter_numel(&q.config, i);
        if (PARAMETERS[i].cols == DIM_NONE || n == 0) continue;
        size_t cols = (size_t)dim_size(&q.config, PARAMETERS[i].cols);
        int8_t* codes = malloc_check(n, "test");
        float* scales = malloc_check(n / cols * sizeof(float), "test");
        quantize_int8(codes, scales, (const float*)exact.frozen[i].data, n, cols);
        same &= memcmp(codes, q.frozen[i].data, n) == 0 && memcmp(scales, q.frozen[i].scales, n / cols * 4) == 0;
        free(codes);
        free(scales);
    }
    check(same && q.params.wq == NULL, "int8 load of test/models/tiny: every matrix's codes and row scales equal "
                                       "quantize_int8 of the fp32 load, and no fp32 matrix is kept");
    model_free(&q);
    model_free(&exact);
}

// One training forward and backward (LoRA and every base weight trained) of the reference
// model with logits_chunk and checkpointing set; its loss and gradients into a model kept for comparing.
static void run_with(Model* m, SafeTensors* ref, int logits_chunk, int checkpointing) {
    model_load(m, ref_meta(ref, "model"));
    LoraConfig lc;
    lora_config_from_ref(&lc, ref);
    m->seed = (uint32_t)ref_number(ref, "seed");
    model_init_lora(m, &lc, m->seed);
    lora_visit(&m->lora, &m->config, &lc, set_from_ref, ref);
    m->logits_chunk = logits_chunk;
    m->checkpointing = checkpointing;
    model_allocate(m, (int)ref_number(ref, "B"), (int)ref_number(ref, "T"), 1);
    forward_backward(m, &CPU_OPS, ref, NULL);
}

// Chunked logits (7 tokens a chunk: 40 tokens make 5 full chunks and a partial one)
// against whole logits, with dropout on: the loss and LoRA gradients bit-identical (a
// matmul's row does not depend on the rows beside it), the base gradients within 1e-6
// relative (lm_head's weight gradient sums over chunks). Both chunks and checkpointing
// (checked bit for bit by check_checkpointing) need fewer activation floats.
static void test_chunks(SafeTensors* ref) {
    Model whole, chunked, checkpointed;
    run_with(&whole, ref, 0, 0);
    run_with(&chunked, ref, 7, 0);
    run_with(&checkpointed, ref, 0, 1);
    size_t lora_bytes = whole.num_lora_parameters * sizeof(float), base = whole.num_parameters;
    check(chunked.loss == whole.loss && memcmp(chunked.lora_grads_memory, whole.lora_grads_memory, lora_bytes) == 0,
          "chunked logits (7 tokens a chunk): loss and LoRA gradients bit-identical to whole logits");
    compare("chunked logits: base gradients vs whole (relative 1e-6)", chunked.grads_memory, whole.grads_memory, base,
            0.0, 1e-6);
    check(activations_point(&checkpointed, whole.B, whole.T, NULL) < activations_point(&whole, whole.B, whole.T, NULL)
          && activations_point(&chunked, whole.B, whole.T, NULL) < activations_point(&whole, whole.B, whole.T, NULL),
          "checkpointing and chunked logits each need fewer activation floats");
    model_free(&whole);
    model_free(&chunked);
    model_free(&checkpointed);
}

// The bf16 base (tiny_bf16 held in bf16, bf16 matmuls) against test/reference.py's bf16-base
// case, which rounds the weights, every base matmul's input and both operands of attention's
// matmuls as the kernels do. The reference runs in float64, train.c in fp32, so a value lying
// near a bf16 rounding boundary may round the other way (one bf16 step, 2^-8 relative): the
// tolerances allow a few. The LoRA gradients meet the most such roundings (attention's
// backward rounds dO, P and dS): 2e-2 of each tensor's largest value, about five steps.
static void check_bf16_base(void) {
    SafeTensors ref;
    safetensors_open(&ref, "test/ref/tiny_bf16base.safetensors");
    printf("--- %s (model %s, base in bf16)\n", ref.path, ref_meta(&ref, "model"));
    Model m;
    model_from_ref_as(&m, &CPU_OPS, &ref, ref_meta(&ref, "model"), WEIGHT_BF16, 0, 0);
    check(m.base_format == WEIGHT_BF16 && m.params.wq == NULL && m.frozen[PARAMETER_EMBEDDINGS].data != NULL,
          "bf16 base: the matrices are held in bf16 only, the norms in fp32");
    int N = (int)(ref_number(&ref, "B") * ref_number(&ref, "T"));
    float* logits = malloc_check((size_t)N * m.config.V * sizeof(float), "test");
    forward_backward(&m, &CPU_OPS, &ref, logits);
    compare("bf16 base: logits", logits, ref_floats(&ref, "logits"), (size_t)N * m.config.V, 0.0, 5e-3);
    compare("bf16 base: loss", &m.loss, ref_floats(&ref, "loss"), 1, 1e-3, 0.0);
    CompareContext cc = {&ref, "grad.lora.", 2e-2};
    lora_visit(&m.lora_grads, &m.config, &m.lora_config, compare_with_ref, &cc);
    float fp32_loss = m.loss;  // negative control: the fp32 reference's loss is further away than the tolerance
    check(fabsf(fp32_loss - 6.206484f) > 1e-4f, "bf16 base: its loss differs from the fp32 one (6.206484)");
    free(logits);
    model_free(&m);
    safetensors_close(&ref);
}

// lora_forward and lora_backward with dropout against the obvious loops in double on a
// materialised dropout(x) (dropout_apply: the mask's definition): in 40 and 19 leave a
// ragged end of a 16-column piece, rank 12 a second group of ranks. Errors relative to
// 1 + |value|; bit-identical with 1 thread and with all.
static void test_lora_dropout(void) {
    int cases[][4] = {{5, 40, 24, 12}, {9, 19, 7, 3}, {33, 64, 48, 8}};  // N, in, out, r
    enum { Y, DX, DA, DB, OUTPUTS };
    const float p = 0.25f;
    double worst = 0.0;
    int identical = 1;
    for (int c = 0; c < 3; c++) {
        int N = cases[c][0], in = cases[c][1], out = cases[c][2], r = cases[c][3], first = 7;
        float s = 2.0f / r;
        uint32_t key = 1234u + (uint32_t)c;
        size_t sizes[OUTPUTS] = {(size_t)N * out, (size_t)N * in, (size_t)r * in, (size_t)out * r};
        float *x = malloc_check((size_t)N * in * sizeof(float), "test"), *xd = malloc_check((size_t)N * in * sizeof(float), "test");
        float* scales = malloc_check((size_t)N * in * sizeof(float), "test");
        float *dy = malloc_check(sizes[Y] * sizeof(float), "test"), *A = malloc_check(sizes[DA] * sizeof(float), "test");
        float* Bw = malloc_check(sizes[DB] * sizeof(float), "test");
        float *xa = malloc_check((size_t)N * (in > r ? in : r) * sizeof(float), "test"), *dxa = malloc_check((size_t)N * r * sizeof(float), "test");
        float* scaled = malloc_check((size_t)N * r * sizeof(float), "test");
        float *start[OUTPUTS], *got[OUTPUTS], *one_thread[OUTPUTS];
        double* ref[OUTPUTS];
        for (int o = 0; o < OUTPUTS; o++) {
            start[o] = malloc_check(sizes[o] * sizeof(float), "test");
            got[o] = malloc_check(sizes[o] * sizeof(float), "test");
            one_thread[o] = malloc_check(sizes[o] * sizeof(float), "test");
            ref[o] = malloc_check(sizes[o] * sizeof(double), "test");
            for (size_t e = 0; e < sizes[o]; e++) start[o][e] = hash_uniform(5, (uint32_t)o, (uint32_t)e, 1.0f);
            for (size_t e = 0; e < sizes[o]; e++) ref[o][e] = start[o][e];
        }
        for (size_t e = 0; e < (size_t)N * in; e++) x[e] = hash_uniform(6, 0, (uint32_t)e, 1.0f);
        for (size_t e = 0; e < sizes[Y]; e++) dy[e] = hash_uniform(6, 1, (uint32_t)e, 1.0f);
        for (size_t e = 0; e < sizes[DA]; e++) A[e] = hash_uniform(6, 2, (uint32_t)e, 1.0f);
        for (size_t e = 0; e < sizes[DB]; e++) Bw[e] = hash_uniform(6, 3, (uint32_t)e, 1.0f);
        // the oracle: xa = xd A^T, y += s xa B^T, dB += dy^T s xa, dxa = s dy B, dA += dxa^T xd,
        // dx += dropout(dxa A) (the elements of x dropped, scaled by 1/(1-p))
        float* ones = xa;  // scratch: scales[e] = 1/(1-p) where element e is kept, else 0
        for (size_t e = 0; e < (size_t)N * in; e++) ones[e] = 1.0f;
        dropout_apply(scales, ones, (size_t)N * in, p, key, (uint32_t)first * (uint32_t)in);
        for (size_t e = 0; e < (size_t)N * in; e++) xd[e] = x[e] * scales[e];
        for (int n = 0; n < N; n++) {
            double xa_ref[16] = {0}, dxa_ref[16] = {0};
            for (int j = 0; j < r; j++) {
                for (int i = 0; i < in; i++) xa_ref[j] += (double)xd[(size_t)n * in + i] * A[(size_t)j * in + i];
                for (int o = 0; o < out; o++) dxa_ref[j] += s * (double)dy[(size_t)n * out + o] * Bw[(size_t)o * r + j];
            }
            for (int o = 0; o < out; o++) {
                for (int j = 0; j < r; j++) {
                    ref[Y][(size_t)n * out + o] += s * xa_ref[j] * Bw[(size_t)o * r + j];
                    ref[DB][(size_t)o * r + j] += dy[(size_t)n * out + o] * s * xa_ref[j];
                }
            }
            for (int i = 0; i < in; i++) {
                double dxi = 0.0;
                for (int j = 0; j < r; j++) {
                    ref[DA][(size_t)j * in + i] += dxa_ref[j] * xd[(size_t)n * in + i];
                    dxi += dxa_ref[j] * A[(size_t)j * in + i];
                }
                ref[DX][(size_t)n * in + i] += dxi * scales[(size_t)n * in + i];
            }
        }
        int saved = omp_get_max_threads();
        for (int threads = 1; threads <= 2; threads++) {  // one thread, then all
            omp_set_num_threads(threads == 1 ? 1 : saved);
            for (int o = 0; o < OUTPUTS; o++) memcpy(got[o], start[o], sizes[o] * sizeof(float));
            lora_forward(got[Y], xa, scaled, x, A, Bw, N, in, out, r, s, p, key, first);
            lora_backward(got[DX], got[DA], got[DB], dxa, scaled, dy, x, xa, A, Bw, N, in, out, r, s, p, key, first);
            for (int o = 0; o < OUTPUTS; o++) {
                for (size_t e = 0; e < sizes[o]; e++) {
                    double err = fabs(got[o][e] - ref[o][e]) / (1.0 + fabs(ref[o][e]));
                    if (!(err <= worst)) worst = err;
                }
                if (threads == 1) memcpy(one_thread[o], got[o], sizes[o] * sizeof(float));
                else identical &= memcmp(one_thread[o], got[o], sizes[o] * sizeof(float)) == 0;
            }
        }
        omp_set_num_threads(saved);
        for (int o = 0; o < OUTPUTS; o++) { free(start[o]); free(got[o]); free(one_thread[o]); free(ref[o]); }
        free(x); free(xd); free(scales); free(dy); free(A); free(Bw); free(xa); free(dxa); free(scaled);
    }
    char what[200];
    snprintf(what, sizeof(what), "LoRA with dropout 0.25 vs loops in double on dropout_apply's x, 3 shapes: y, dx, dA, dB "
             "max error %.2e relative to 1+|value| (tol 1e-5)", worst);
    check(worst <= 1e-5, what);
    check(identical, "LoRA with dropout: y, dx, dA, dB bit-identical with 1 thread and with all");
}

// operand x of an attention matmul as the bf16 path rounds it, or as it is
static double operand(double x, int bf16) { return bf16 ? bf16_to_float(float_to_bf16((float)x)) : x; }

// attention_forward/backward in blocks of ATT_BLOCK queries against a plain per-query
// loop in double, on rows long enough for three blocks: row 0 one sequence, row 1 three
// packed ones whose starts fall inside blocks; hs 24 leaves ragged micro-tiles. Also
// bit-identical with 1 thread and with all. bf16: every matmul's operands rounded to bf16,
// in the oracle too (which rounds its double probabilities, so a value on a rounding edge
// can round the other way: a looser tolerance).
static void test_attention_blocks(int bf16) {
    enum { B = 2, T = 250, NH = 4, NKV = 2, hs = 24 };
    int starts[] = {0, 70, 170};  // row 1's packed sequences
    size_t nq = (size_t)B * T * NH * hs, nkv = (size_t)B * T * NKV * hs;
    float* buf = malloc_check((5 * nq + 5 * nkv + (size_t)B * NH * T) * sizeof(float), "test");
    float *q = buf, *dout = q + nq, *out = dout + nq, *dq = out + nq, *dq1 = dq + nq;
    float *k = dq1 + nq, *v = k + nkv, *dk = v + nkv, *dv = dk + nkv, *dkv1 = dv + nkv, *lse = dkv1 + nkv;
    float* scratch = malloc_check(attention_scratch_size(B, T, NH, NKV) * sizeof(float), "test");
    int pos[B * T];
    for (int t = 0; t < T; t++) {
        pos[t] = t;
        int start = t >= starts[2] ? starts[2] : t >= starts[1] ? starts[1] : 0;
        pos[T + t] = t - start;
    }
    for (size_t i = 0; i < nq; i++) q[i] = hash_uniform(7, 1, (uint32_t)i, 1.5f);
    for (size_t i = 0; i < nq; i++) dout[i] = hash_uniform(7, 2, (uint32_t)i, 1.0f);
    for (size_t i = 0; i < nkv; i++) k[i] = hash_uniform(7, 3, (uint32_t)i, 1.5f);
    for (size_t i = 0; i < nkv; i++) v[i] = hash_uniform(7, 4, (uint32_t)i, 1.0f);
    matmul_init();
    attention_forward(out, lse, scratch, q, k, v, pos, B, T, NH, NKV, hs, bf16);
    attention_backward(dq, dk, dv, scratch, dout, out, lse, q, k, v, pos, B, T, NH, NKV, hs, bf16);
    // the oracle, query by query in double; errors relative to each tensor's largest value
    double* ref = calloc(2 * nq + 2 * nkv + (size_t)B * NH * T, sizeof(double));
    double *r_out = ref, *r_dq = r_out + nq, *r_dk = r_dq + nq, *r_dv = r_dk + nkv, *r_lse = r_dv + nkv;
    double scale = 1.0 / sqrt((double)hs), p[T], dp[T];
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                const float* qt = q + (((size_t)b * T + t) * NH + h) * hs;
                const float* dot = dout + (((size_t)b * T + t) * NH + h) * hs;
                int s0 = t - pos[b * T + t], kvh = h / (NH / NKV);
                double maxv = -INFINITY, sum = 0.0, D = 0.0;
                for (int s = s0; s <= t; s++) {
                    const float* ks = k + (((size_t)b * T + s) * NKV + kvh) * hs;
                    const float* vs = v + (((size_t)b * T + s) * NKV + kvh) * hs;
                    p[s] = dp[s] = 0.0;
                    for (int i = 0; i < hs; i++) {
                        p[s] += scale * operand(qt[i], bf16) * operand(ks[i], bf16);
                        dp[s] += operand(dot[i], bf16) * operand(vs[i], bf16);
                    }
                    maxv = p[s] > maxv ? p[s] : maxv;
                }
                for (int s = s0; s <= t; s++) sum += exp(p[s] - maxv);
                r_lse[((size_t)b * NH + h) * T + t] = maxv + log(sum);
                for (int s = s0; s <= t; s++) p[s] = exp(p[s] - maxv) / sum, D += p[s] * dp[s];
                for (int s = s0; s <= t; s++) {
                    size_t ki = (((size_t)b * T + s) * NKV + kvh) * hs, qi = (((size_t)b * T + t) * NH + h) * hs;
                    double ds = operand(p[s] * (dp[s] - D) * scale, bf16), ps = operand(p[s], bf16);
                    for (int i = 0; i < hs; i++) {
                        r_out[qi + i] += ps * operand(v[ki + i], bf16);
                        r_dq[qi + i] += ds * operand(k[ki + i], bf16);
                        r_dk[ki + i] += ds * operand(qt[i], bf16);
                        r_dv[ki + i] += ps * operand(dot[i], bf16);
                    }
                }
            }
        }
    }
    struct { const char* name; const float* got; const double* want; size_t n; } cases[] = {
        {"out", out, r_out, nq}, {"lse", lse, r_lse, (size_t)B * NH * T}, {"dq", dq, r_dq, nq},
        {"dk", dk, r_dk, nkv}, {"dv", dv, r_dv, nkv}};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        double worst = 0.0, largest = 0.0;
        for (size_t i = 0; i < cases[c].n; i++) {
            double e = fabs(cases[c].got[i] - cases[c].want[i]);
            worst = e > worst || isnan(e) ? e : worst;
            largest = fabs(cases[c].want[i]) > largest ? fabs(cases[c].want[i]) : largest;
        }
        char what[240];
        double tol = bf16 ? 1e-2 : 1e-5;
        snprintf(what, sizeof(what), "attention%s in blocks of %d queries (T %d, packed rows) vs per-query double: "
                 "%s max abs %.2e, %.1e of its largest (tol %.0e)", bf16 ? " (bf16 products)" : "", ATT_BLOCK, T,
                 cases[c].name, worst, worst / largest, tol);
        check(worst <= tol * largest, what);
    }
#ifdef _OPENMP
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    attention_backward(dq1, dkv1, dv, scratch, dout, out, lse, q, k, v, pos, B, T, NH, NKV, hs, bf16);
    omp_set_num_threads(threads);
    check(memcmp(dq1, dq, nq * sizeof(float)) == 0 && memcmp(dkv1, dk, nkv * sizeof(float)) == 0,
          bf16 ? "attention backward (bf16 products) bit-identical with 1 thread and with all"
               : "attention backward bit-identical with 1 thread and with all");
#endif
    free(buf); free(scratch); free(ref);
}

int main(void) {
    const char* refs[] = {"test/ref/tiny.safetensors", "test/ref/tiny_tied.safetensors"};
    test_matmul();
    test_matmul_bf16();
    test_matmul_quantized(WEIGHT_INT8);
    test_matmul_quantized(WEIGHT_NF4);
    test_quantized_base(WEIGHT_INT8);
    test_quantized_base(WEIGHT_NF4);
    test_quantized_load();
    test_merge_quantized();
    test_attention_blocks(0);
    test_attention_blocks(1);
    test_lora_dropout();
    test_schedules();
    for (int i = 0; i < 2; i++) {
        SafeTensors ref;
        safetensors_open(&ref, refs[i]);
        printf("--- %s (model %s)\n", refs[i], ref_meta(&ref, "model"));
        check_gradients(&ref, &CPU_OPS, &CPU);
        check_adamw(&ref, &CPU_OPS, &CPU);
        if (i == 0) {
            check_determinism(&ref, &CPU_OPS, &CPU);
            test_low_precision(&ref, "test/models/tiny_bf16", 1, 5e-2);
            test_low_precision(&ref, "test/models/tiny_f16", 0, 1e-2);
            test_thread_determinism(&ref);
            check_no_allocation(&ref, &CPU_OPS);
            test_adapter_and_merge(&ref);
            test_merge_bf16(&ref);
            check_bf16_base();
            test_chunks(&ref);
            check_checkpointing(&ref, &CPU_OPS);
            check_micro_batches(&ref, &CPU_OPS, &CPU);
            check_packing_isolation(&ref, &CPU_OPS, &CPU);
        }
        safetensors_close(&ref);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
