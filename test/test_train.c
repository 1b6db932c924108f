/*
test_train.c: checks train.c against the PyTorch reference written by test/reference.py.

For each reference file it loads the model directory named in the file, sets the LoRA
tensors the reference started from, and compares the logits, the loss, the gradient of
every LoRA tensor and every base weight, and ten AdamW steps with clipping. Each tensor's
max absolute and relative error is printed next to its tolerance. It also checks that
results are bit-identical across thread counts, that the training step allocates
nothing, that BF16/F16 weights load as the rounded F32 ones, and the fast matmul against
the naive one. Run from the repository root: ./test_train
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Count allocations made by train.c (all go through malloc_check), to prove the
// training step makes none.
static long allocations = 0;
static void* counted_aligned_alloc(size_t alignment, size_t size) { allocations++; return aligned_alloc(alignment, size); }
#define aligned_alloc counted_aligned_alloc

#define TRAIN_NO_MAIN  // use train.c as a library: everything but its main
#include "../train.c"

static int passed = 0, failed = 0;

static void check(int ok, const char* what) {
    printf("%-6s %s\n", ok ? "ok" : "FAIL", what);
    if (ok) passed++; else failed++;
}

// Compares n floats: max |a-b| must be <= tol_abs + tol_rel * max|expected|.
static void compare(const char* name, const float* got, const float* expected, size_t n, double tol_abs, double tol_rel) {
    double max_abs = 0.0, max_rel = 0.0, magnitude = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - expected[i]);
        if (!(e <= max_abs)) max_abs = e;  // also catches NaN
        double rel = e / (fabs(expected[i]) + 1e-12);
        if (rel > max_rel) max_rel = rel;
        if (fabs(expected[i]) > magnitude) magnitude = fabs(expected[i]);
    }
    double tol = tol_abs + tol_rel * magnitude;
    int ok = max_abs <= tol;
    printf("%-6s %-62s max abs %.2e  max rel %.2e  tol %.1e  (%f %f | %f %f)\n", ok ? "ok" : "FAIL", name, max_abs, max_rel,
           tol, got[0], expected[0], n > 1 ? got[1] : 0.0, n > 1 ? expected[1] : 0.0);
    if (ok) passed++; else failed++;
}

// Reference tensor by name, fp32 (or int32 when ints is set); exits if absent.
static SafeTensor* ref_tensor(SafeTensors* ref, const char* name) {
    SafeTensor* t = safetensors_find(ref, name);
    if (t == NULL) fail("%s: missing reference tensor %s; rerun /usr/bin/python3 test/reference.py", ref->path, name);
    return t;
}

static const float* ref_floats(SafeTensors* ref, const char* name) {
    SafeTensor* t = ref_tensor(ref, name);
    if (t->dtype != DTYPE_F32) fail("%s: %s is not F32", ref->path, name);
    return (const float*)t->data;
}

static const int* ref_ints(SafeTensors* ref, const char* name) {
    SafeTensor* t = ref_tensor(ref, name);
    if (t->dtype != DTYPE_I32) fail("%s: %s is not I32", ref->path, name);
    return (const int*)t->data;
}

static const char* ref_meta(SafeTensors* ref, const char* key) {
    const char* v = safetensors_metadata(ref, key);
    if (v == NULL) fail("%s: metadata %s missing", ref->path, key);
    return v;
}

static double ref_number(SafeTensors* ref, const char* key) { return atof(ref_meta(ref, key)); }

static void lora_config_from_ref(LoraConfig* lc, SafeTensors* ref) {
    memset(lc, 0, sizeof(*lc));
    lc->rank = (int)ref_number(ref, "lora_rank");
    lc->alpha = (float)ref_number(ref, "lora_alpha");
    lc->dropout = (float)ref_number(ref, "lora_dropout");
    lc->rslora = strcmp(ref_meta(ref, "use_rslora"), "true") == 0;
    const char* targets = ref_meta(ref, "lora_target");
    for (int mod = 0; mod < NUM_LORA_MODULES; mod++) lc->target[mod] = strstr(targets, LORA_MODULE_NAMES[mod]) != NULL;
}

// Calls fn(model tensor, reference name, numel) for every LoRA A and B of every layer.
typedef void (*LoraVisitor)(float* tensor, const char* key, size_t n, void* ctx);
static void lora_visit(LoraTensors* t, const LlamaConfig* c, const LoraConfig* lc, LoraVisitor fn, void* ctx) {
    for (int l = 0; l < c->L; l++) {
        for (int mod = 0; mod < NUM_LORA_MODULES; mod++) {
            if (!lc->target[mod]) continue;
            int in, out;
            lora_module_dims(c, mod, &in, &out);
            char key[160];
            lora_key(key, sizeof(key), l, mod, 'A');
            fn(t->A[mod] + (size_t)l * lc->rank * in, key, (size_t)lc->rank * in, ctx);
            lora_key(key, sizeof(key), l, mod, 'B');
            fn(t->B[mod] + (size_t)l * out * lc->rank, key, (size_t)out * lc->rank, ctx);
        }
    }
}

static void set_from_ref(float* tensor, const char* key, size_t n, void* ref) {
    char name[200];
    snprintf(name, sizeof(name), "lora.%s", key);
    memcpy(tensor, ref_floats(ref, name), n * sizeof(float));
}

typedef struct { SafeTensors* ref; const char* prefix; double tol_rel; } CompareContext;

static void compare_with_ref(float* tensor, const char* key, size_t n, void* ctx) {
    CompareContext* cc = ctx;
    char name[200];
    snprintf(name, sizeof(name), "%s%s", cc->prefix, key);
    compare(name, tensor, ref_floats(cc->ref, name), n, 0.0, cc->tol_rel);
}

// A model with the reference's LoRA tensors, allocated for the reference batch.
static void model_from_ref(Model* m, SafeTensors* ref, const char* model_dir, int full_finetune) {
    model_load(m, model_dir);
    LoraConfig lc;
    lora_config_from_ref(&lc, ref);
    m->seed = (uint32_t)ref_number(ref, "seed");
    model_init_lora(m, &lc, m->seed);
    lora_visit(&m->lora, &m->config, &lc, set_from_ref, ref);
    model_allocate(m, (int)ref_number(ref, "B"), (int)ref_number(ref, "T"), full_finetune);
}

static void model_free(Model* m) {
    void* blocks[] = {m->params_memory, m->grads_memory, m->m_memory, m->v_memory, m->lora_memory,
                      m->lora_grads_memory, m->acts_memory, m->default_pos, m->norm_partials};
    for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) free(blocks[i]);
}

// One training forward on the reference batch, then (unless logits is set, which
// receives a copy of the logits the backward overwrites) the backward.
static void forward_backward(Model* m, SafeTensors* ref, float* logits) {
    int B = (int)ref_number(ref, "B"), T = (int)ref_number(ref, "T");
    const int* tokens = ref_ints(ref, "tokens");
    const int* targets = ref_ints(ref, "targets");
    const int* pos = ref_ints(ref, "pos");
    model_zero_grad(m);
    model_forward(m, tokens, targets, pos, B, T, 1);
    if (logits) memcpy(logits, m->acts.logits, (size_t)B * T * m->config.V * sizeof(float));
    model_backward(m, tokens, targets, pos, B, T, m->num_tokens);
}

static void compare_base_grads(Model* m, SafeTensors* ref, double tol_rel) {
    const LlamaConfig* c = &m->config;
    float* g = m->grads_memory;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        int64_t rows, cols;
        int per_layer;
        parameter_shape(c, i, &rows, &cols, &per_layer);
        size_t n = (size_t)rows * (cols ? cols : 1);
        for (int l = 0; l < (per_layer ? c->L : 1) && n > 0; l++) {
            char name[160], refname[200];
            parameter_name(name, sizeof(name), i, l);
            snprintf(refname, sizeof(refname), "grad.%s", name);
            compare(refname, g, ref_floats(ref, refname), n, 0.0, tol_rel);
            g += n;
        }
    }
}

static void test_gradients(SafeTensors* ref) {
    Model m;
    model_from_ref(&m, ref, ref_meta(ref, "model"), 1);
    const LlamaConfig* c = &m.config;
    int N = (int)(ref_number(ref, "B") * ref_number(ref, "T"));
    float* logits = malloc_check((size_t)N * c->V * sizeof(float), "test");
    forward_backward(&m, ref, logits);
    compare("logits", logits, ref_floats(ref, "logits"), (size_t)N * c->V, 1e-4, 0.0);
    free(logits);
    compare("loss", &m.loss, ref_floats(ref, "loss"), 1, 1e-4, 0.0);
    CompareContext cc = {ref, "grad.lora.", 1e-4};
    lora_visit(&m.lora_grads, c, &m.lora_config, compare_with_ref, &cc);
    compare_base_grads(&m, ref, 1e-4);
    model_free(&m);
}

static void test_adamw(SafeTensors* ref) {
    Model m;
    model_from_ref(&m, ref, ref_meta(ref, "model"), 0);
    AdamWConfig o = {.learning_rate = (float)ref_number(ref, "learning_rate"), .beta1 = (float)ref_number(ref, "beta1"),
                     .beta2 = (float)ref_number(ref, "beta2"), .eps = (float)ref_number(ref, "adam_eps"),
                     .weight_decay = (float)ref_number(ref, "weight_decay"), .max_grad_norm = (float)ref_number(ref, "max_grad_norm")};
    int steps = (int)ref_number(ref, "adamw_steps");
    float losses[64], norms[64];
    for (int s = 0; s < steps && s < 64; s++) {
        forward_backward(&m, ref, NULL);
        losses[s] = m.loss;
        norms[s] = model_grad_norm(&m);
        model_update(&m, &o, o.learning_rate, norms[s]);
    }
    compare("adamw.losses (relative 1e-5)", losses, ref_floats(ref, "adamw.losses"), steps, 0.0, 1e-5);
    compare("adamw.grad_norms", norms, ref_floats(ref, "adamw.grad_norms"), steps, 0.0, 1e-4);
    CompareContext cc = {ref, "adamw.", 1e-4};
    lora_visit(&m.lora, &m.config, &m.lora_config, compare_with_ref, &cc);
    model_free(&m);
}

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
    model_from_ref(&low, ref, dir, 0);
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
    forward_backward(&low, ref, logits);
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
    model_from_ref(&m, ref, ref_meta(ref, "model"), 1);
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
        model_forward(&m, ref_ints(ref, "tokens"), ref_ints(ref, "targets"), NULL, (int)ref_number(ref, "B"), (int)ref_number(ref, "T"), 1);
        if (threads == 1) memcpy(logits1, m.acts.logits, nl * sizeof(float));
        else identical &= memcmp(logits1, m.acts.logits, nl * sizeof(float)) == 0;
        model_backward(&m, ref_ints(ref, "tokens"), ref_ints(ref, "targets"), NULL, (int)ref_number(ref, "B"), (int)ref_number(ref, "T"), m.num_tokens);
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
    (void)ref;
    printf("skip   thread determinism (built without OpenMP)\n");
#endif
}

// A whole training step (forward, backward, clip, AdamW) allocates nothing.
static void test_no_allocation(SafeTensors* ref) {
    Model m;
    model_from_ref(&m, ref, ref_meta(ref, "model"), 1);
    AdamWConfig o = {.learning_rate = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .max_grad_norm = 1.0f};
    long before = allocations;
    forward_backward(&m, ref, NULL);
    model_update(&m, &o, o.learning_rate, model_grad_norm(&m));
    char what[120];
    snprintf(what, sizeof(what), "training step made %ld allocations (expected 0)", allocations - before);
    check(allocations == before, what);
    model_free(&m);
}

// Logits (B,T,V) of an evaluation forward (no dropout) on the reference batch, into out.
static void eval_logits(Model* m, SafeTensors* ref, float* out) {
    int B = (int)ref_number(ref, "B"), T = (int)ref_number(ref, "T");
    model_forward(m, ref_ints(ref, "tokens"), NULL, ref_ints(ref, "pos"), B, T, 0);
    memcpy(out, m->acts.logits, (size_t)B * T * m->config.V * sizeof(float));
}

// Trains a few steps, writes the PEFT adapter and the merged model, and reads both back:
// the reloaded adapter must give bit-identical logits, the merged model the same logits
// within 1e-5. The logits go to test/tmp/adapter_logits.safetensors for test_peft.py,
// which applies the adapter to the PyTorch reference model the way PEFT would.
static void test_adapter_and_merge(SafeTensors* ref) {
    const char* base = ref_meta(ref, "model");
    Model m;
    model_from_ref(&m, ref, base, 0);
    AdamWConfig o = {.learning_rate = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .max_grad_norm = 1.0f};
    for (int s = 0; s < 3; s++) {
        forward_backward(&m, ref, NULL);
        model_update(&m, &o, o.learning_rate, model_grad_norm(&m));
    }
    size_t nl = (size_t)ref_number(ref, "B") * ref_number(ref, "T") * m.config.V;
    float* trained = malloc_check(nl * sizeof(float), "test");
    float* other = malloc_check(nl * sizeof(float), "test");
    eval_logits(&m, ref, trained);
    make_directory("test/tmp");
    lora_save_adapter(&m, "test/tmp/adapter", base);
    model_save_merged(&m, base, "test/tmp/merged");
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
    eval_logits(&reloaded, ref, other);
    check(memcmp(trained, other, nl * sizeof(float)) == 0, "adapter written and read back gives bit-identical logits");
    model_free(&reloaded);

    Model merged;
    model_load(&merged, "test/tmp/merged");
    model_allocate(&merged, m.B, m.T, 0);
    eval_logits(&merged, ref, other);
    compare("merged model logits vs base + adapter", other, trained, nl, 1e-5, 0.0);
    model_free(&merged);
    free(trained);
    free(other);
    model_free(&m);
}

// Merging into a BF16 base writes BF16 (the base's dtype): every merged weight read back
// is exactly the BF16 rounding of the fp32 merge, and the logits stay within BF16 error.
static void test_merge_bf16(SafeTensors* ref) {
    const char* base = "test/models/tiny_bf16";
    Model m;
    model_from_ref(&m, ref, base, 0);
    AdamWConfig o = {.learning_rate = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .max_grad_norm = 1.0f};
    for (int s = 0; s < 3; s++) {
        forward_backward(&m, ref, NULL);
        model_update(&m, &o, o.learning_rate, model_grad_norm(&m));
    }
    size_t nl = (size_t)ref_number(ref, "B") * ref_number(ref, "T") * m.config.V;
    float* with_adapter = malloc_check(nl * sizeof(float), "test");
    float* merged_logits = malloc_check(nl * sizeof(float), "test");
    eval_logits(&m, ref, with_adapter);
    model_save_merged(&m, base, "test/tmp/merged_bf16");
    strcpy(m.config.dtype, "float32");
    model_save_merged(&m, base, "test/tmp/merged_bf16_as_f32");

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
    snprintf(what, sizeof(what), "merged BF16 round trip: all %zu weights read back as the BF16 rounding of the fp32 merge (%zu differ)",
             exact.num_parameters, mismatches);
    check(mismatches == 0, what);
    model_allocate(&low, m.B, m.T, 0);
    eval_logits(&low, ref, merged_logits);
    compare("merged BF16 model logits vs BF16 base + adapter", merged_logits, with_adapter, nl, 5e-2, 0.0);
    free(exact.params_memory);
    model_free(&low);
    model_free(&m);
    free(with_adapter);
    free(merged_logits);
}

// One step over the reference batch equals the same batch as two accumulated
// micro-batches, because the loss is normalised by the unmasked tokens of the whole step.
static void test_micro_batches(SafeTensors* ref) {
    Model m;
    model_from_ref(&m, ref, ref_meta(ref, "model"), 1);
    int B = (int)ref_number(ref, "B"), T = (int)ref_number(ref, "T");
    const int* tokens = ref_ints(ref, "tokens");
    const int* targets = ref_ints(ref, "targets");
    forward_backward(&m, ref, NULL);
    float* lora_whole = malloc_check(m.num_lora_parameters * sizeof(float), "test");
    float* grads_whole = malloc_check(m.num_parameters * sizeof(float), "test");
    memcpy(lora_whole, m.lora_grads_memory, m.num_lora_parameters * sizeof(float));
    memcpy(grads_whole, m.grads_memory, m.num_parameters * sizeof(float));
    int tokens_in_step = 0;
    for (int n = 0; n < B * T; n++) tokens_in_step += targets[n] >= 0;
    model_zero_grad(&m);
    for (int b = 0; b < B; b++) {  // one row per micro-batch
        m.first_token = b * T;
        model_forward(&m, tokens + b * T, targets + b * T, NULL, 1, T, 1);
        model_backward(&m, tokens + b * T, targets + b * T, NULL, 1, T, tokens_in_step);
    }
    m.first_token = 0;
    compare("LoRA gradients: 2 micro-batches of 1 row vs 1 batch of 2 (relative 1e-6)", m.lora_grads_memory, lora_whole, m.num_lora_parameters, 0.0, 1e-6);
    compare("base gradients: 2 micro-batches of 1 row vs 1 batch of 2 (relative 1e-6)", m.grads_memory, grads_whole, m.num_parameters, 0.0, 1e-6);
    free(lora_whole);
    free(grads_whole);
    model_free(&m);
}

// Two sequences packed into one row (positions restart at 0 at the second) give the
// same per-token losses as each sequence alone: packed sequences never see each other.
static void test_packing_isolation(SafeTensors* ref) {
    Model m;
    model_from_ref(&m, ref, ref_meta(ref, "model"), 0);
    int T = (int)ref_number(ref, "T");
    const int* tokens = ref_ints(ref, "tokens");
    int split = 7, packed_tokens[64], packed_targets[64], pos[64];
    float alone[64], packed[64];
    for (int t = 0; t < T; t++) {  // row 0's first 7 tokens, then row 1's first 13
        int from = t < split ? t : T + (t - split);
        packed_tokens[t] = tokens[from];
        packed_targets[t] = tokens[(from + 1) % (2 * T)];
        pos[t] = t < split ? t : t - split;
    }
    model_forward(&m, packed_tokens, packed_targets, pos, 1, T, 0);
    memcpy(packed, m.acts.losses, T * sizeof(float));
    model_forward(&m, packed_tokens, packed_targets, NULL, 1, split, 0);
    memcpy(alone, m.acts.losses, split * sizeof(float));
    model_forward(&m, packed_tokens + split, packed_targets + split, NULL, 1, T - split, 0);
    memcpy(alone + split, m.acts.losses, (T - split) * sizeof(float));
    compare("per-token losses of 2 packed sequences vs each alone", packed, alone, T, 1e-6, 0.0);
    model_forward(&m, packed_tokens, packed_targets, NULL, 1, T, 0);  // without the reset they would differ
    double moved = 0.0;
    for (int t = split; t < T; t++) moved = fmax(moved, fabs(m.acts.losses[t] - alone[t]));
    char what[120];
    snprintf(what, sizeof(what), "without restarting positions the second sequence's losses change (by %.2e)", moved);
    check(moved > 1e-3, what);
    model_free(&m);
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
    int shapes[][3] = {{1, 1, 1}, {3, 17, 5}, {40, 301, 48}, {129, 67, 259}, {64, 4, 520}, {7, 1000, 3}, {300, 200, 1100}};
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
    snprintf(what, sizeof(what), "matmul vs naive on 7 shapes x 4 stride patterns: max error/sqrt(K) %.2e (tol 1e-5)", worst);
    check(worst <= 1e-5, what);
}

#ifndef TEST_TRAIN_NO_MAIN  // test_train_gpu.c uses the helpers above
int main(void) {
    const char* refs[] = {"test/ref/tiny.safetensors", "test/ref/tiny_tied.safetensors"};
    test_matmul();
    test_schedules();
    for (int i = 0; i < 2; i++) {
        SafeTensors ref;
        safetensors_open(&ref, refs[i]);
        printf("--- %s (model %s)\n", refs[i], ref_meta(&ref, "model"));
        test_gradients(&ref);
        test_adamw(&ref);
        if (i == 0) {
            test_low_precision(&ref, "test/models/tiny_bf16", 1, 5e-2);
            test_low_precision(&ref, "test/models/tiny_f16", 0, 1e-2);
            test_thread_determinism(&ref);
            test_no_allocation(&ref);
            test_adapter_and_merge(&ref);
            test_merge_bf16(&ref);
            test_micro_batches(&ref);
            test_packing_isolation(&ref);
        }
        safetensors_close(&ref);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
#endif
