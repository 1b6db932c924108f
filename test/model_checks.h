// model_checks.h: defines check, compare, the reference readers, Tolerances, and the checks a model
// passes through its ModelOps
/*
The PyTorch reference (the files in test/ref, written by test/reference.py) holds a
batch, the LoRA tensors the reference started from, and what PyTorch computed from them:
logits, loss, gradients, ten AdamW steps. The checks below run a model through a
ModelOps, so test_train.c checks the CPU model (train.c's CPU_OPS) and test_train_gpu.c
the GPU model (train_gpu.c's gpu_ops) with the same code, each with its own Tolerances.
On the CPU the ops that move data between the model and the host are NULL: the model is
the host copy. Include this file after train.c or train_gpu.c, and count_allocations.h
before them.
*/
#ifndef MODEL_CHECKS_H
#define MODEL_CHECKS_H

static int passed = 0, failed = 0;

static void check(int ok, const char* what) {
    printf("%-6s %s\n", ok ? "ok" : "FAIL", what);
    if (ok) passed++; else failed++;
}

// Compares n floats: max |a-b| must be <= tol_abs + tol_rel * max|expected|.
static void compare(const char* name, const float* got, const float* expected, size_t n, double tol_abs,
                    double tol_rel) {
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
    printf("%-6s %-62s max abs %.2e  max rel %.2e  tol %.1e  (%f %f | %f %f)\n", ok ? "ok" : "FAIL", name, max_abs,
           max_rel, tol, got[0], expected[0], n > 1 ? got[1] : 0.0, n > 1 ? expected[1] : 0.0);
    if (ok) passed++; else failed++;
}

// ----------------------------------------------------------------------------
// the reference file

// Reference tensor by name; exits if absent.
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

static AdamWConfig adamw_from_ref(SafeTensors* ref) {
    AdamWConfig o = {.learning_rate = (float)ref_number(ref, "learning_rate"), .beta1 = (float)ref_number(ref, "beta1"),
                     .beta2 = (float)ref_number(ref, "beta2"), .eps = (float)ref_number(ref, "adam_eps"),
                     .weight_decay = (float)ref_number(ref, "weight_decay"),
                     .max_grad_norm = (float)ref_number(ref, "max_grad_norm")};
    return o;
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

// The base weights' gradients (in the host model) against the reference's "grad." tensors.
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

// ----------------------------------------------------------------------------
// a model on the reference batch, run through its ops

// A model with its base in `base` and the reference's LoRA tensors, allocated for the
// reference batch (keeping one layer's activations when checkpointing), on the ops' device.
static void model_from_ref_as(Model* m, const ModelOps* ops, SafeTensors* ref, const char* model_dir, WeightFormat base,
                              int full_finetune, int checkpointing) {
    model_load_as(m, model_dir, base);
    m->checkpointing = checkpointing;
    LoraConfig lc;
    lora_config_from_ref(&lc, ref);
    m->seed = (uint32_t)ref_number(ref, "seed");
    model_init_lora(m, &lc, m->seed);
    lora_visit(&m->lora, &m->config, &lc, set_from_ref, ref);
    model_allocate(m, (int)ref_number(ref, "B"), (int)ref_number(ref, "T"), full_finetune);
    model_allocate_grad_sums(m, (int)ref_number(ref, "B"));  // for a pairwise sum over the batch's rows
    if (ops->to_device) ops->to_device(m);
}

static void model_from_ref(Model* m, const ModelOps* ops, SafeTensors* ref, const char* model_dir, int full_finetune) {
    model_from_ref_as(m, ops, ref, model_dir, WEIGHT_F32, full_finetune, 0);
}

// The host model's memory.
static void model_free(Model* m) {
    void* blocks[] = {m->params_memory, m->frozen_memory, m->grads_memory, m->m_memory, m->v_memory,
                      m->lora_memory, m->lora_grads_memory, m->acts_memory, m->default_pos, m->norm_partials,
                      m->grad_sums};
    for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) free(blocks[i]);
}

// Frees what model_from_ref made: the device copy, then the host model.
static void model_release(Model* m, const ModelOps* ops) {
    if (ops->free_device) ops->free_device(m);
    model_free(m);
}

// One training forward on the reference batch, then (unless logits is set, which
// receives a copy of the logits the backward overwrites) the backward.
static void forward_backward(Model* m, const ModelOps* ops, SafeTensors* ref, float* logits) {
    int B = (int)ref_number(ref, "B"), T = (int)ref_number(ref, "T");
    const int* tokens = ref_ints(ref, "tokens");
    const int* targets = ref_ints(ref, "targets");
    const int* pos = ref_ints(ref, "pos");
    ops->zero_grad(m);
    ops->forward(m, tokens, targets, pos, B, T, 1);
    if (logits) {
        if (ops->logits_to_host) ops->logits_to_host(m);
        memcpy(logits, m->acts.logits, (size_t)B * T * m->config.V * sizeof(float));
    }
    ops->backward(m, tokens, targets, pos, B, T, m->num_tokens);
}

// A whole training step on the reference batch (forward, backward, clip, AdamW at o's
// learning rate); returns the gradient norm before clipping.
static float training_step(Model* m, const ModelOps* ops, SafeTensors* ref, const AdamWConfig* o) {
    forward_backward(m, ops, ref, NULL);
    float norm = ops->grad_norm(m);
    ops->update(m, o, o->learning_rate, norm);
    return norm;
}

// Logits (B,T,V) of an evaluation forward (no dropout) on the reference batch, into out.
static void eval_logits(Model* m, const ModelOps* ops, SafeTensors* ref, float* out) {
    int B = (int)ref_number(ref, "B"), T = (int)ref_number(ref, "T");
    ops->forward(m, ref_ints(ref, "tokens"), NULL, ref_ints(ref, "pos"), B, T, 0);
    if (ops->logits_to_host) ops->logits_to_host(m);
    memcpy(out, m->acts.logits, (size_t)B * T * m->config.V * sizeof(float));
}

// ----------------------------------------------------------------------------
// the checks

// How close a model must come: absolute, or relative to the largest expected value
// (compare's tol_abs + tol_rel * max|expected|).
typedef struct {
    const char* name;               // "fp32", "bf16"
    double logits_abs, logits_rel;  // logits vs the reference
    double loss;                    // absolute
    double gradients;               // relative, per gradient tensor
    double losses, norms;           // relative, the AdamW steps' losses and gradient norms
    double weights;                 // relative, the LoRA weights after the AdamW steps; 0: not compared
    double micro_batches;           // relative, gradients of micro-batches vs the whole batch
    double packing;                 // absolute, per-token losses of packed sequences vs each alone
} Tolerances;

// Logits, loss, and the gradient of every LoRA tensor and every base weight.
static void check_gradients(SafeTensors* ref, const ModelOps* ops, const Tolerances* tol) {
    Model m;
    model_from_ref(&m, ops, ref, ref_meta(ref, "model"), 1);
    const LlamaConfig* c = &m.config;
    int N = (int)(ref_number(ref, "B") * ref_number(ref, "T"));
    float* logits = malloc_check((size_t)N * c->V * sizeof(float), "test");
    forward_backward(&m, ops, ref, logits);
    if (ops->grads_to_host) ops->grads_to_host(&m);
    compare("logits", logits, ref_floats(ref, "logits"), (size_t)N * c->V, tol->logits_abs, tol->logits_rel);
    free(logits);
    compare("loss", &m.loss, ref_floats(ref, "loss"), 1, tol->loss, 0.0);
    CompareContext cc = {ref, "grad.lora.", tol->gradients};
    lora_visit(&m.lora_grads, c, &m.lora_config, compare_with_ref, &cc);
    compare_base_grads(&m, ref, tol->gradients);
    model_release(&m, ops);
}

// The reference's AdamW steps with clipping: losses, gradient norms and the LoRA weights.
static void check_adamw(SafeTensors* ref, const ModelOps* ops, const Tolerances* tol) {
    Model m;
    model_from_ref(&m, ops, ref, ref_meta(ref, "model"), 0);
    AdamWConfig o = adamw_from_ref(ref);
    int steps = (int)ref_number(ref, "adamw_steps");
    float losses[64], norms[64];
    for (int s = 0; s < steps && s < 64; s++) {
        norms[s] = training_step(&m, ops, ref, &o);
        losses[s] = m.loss;
    }
    char name[80];
    snprintf(name, sizeof(name), "adamw.losses (relative %g)", tol->losses);
    compare(name, losses, ref_floats(ref, "adamw.losses"), steps, 0.0, tol->losses);
    compare("adamw.grad_norms", norms, ref_floats(ref, "adamw.grad_norms"), steps, 0.0, tol->norms);
    if (tol->weights > 0.0) {
        if (ops->to_host) ops->to_host(&m);
        CompareContext cc = {ref, "adamw.", tol->weights};
        lora_visit(&m.lora, &m.config, &m.lora_config, compare_with_ref, &cc);
    }
    model_release(&m, ops);
}

// Gradient checkpointing (each layer rerun in the backward, dropout on) against keeping
// every layer: loss, LoRA and base gradients bit-identical.
static void check_checkpointing(SafeTensors* ref, const ModelOps* ops) {
    Model kept, rerun;
    model_from_ref_as(&kept, ops, ref, ref_meta(ref, "model"), WEIGHT_F32, 1, 0);
    model_from_ref_as(&rerun, ops, ref, ref_meta(ref, "model"), WEIGHT_F32, 1, 1);
    forward_backward(&kept, ops, ref, NULL);
    forward_backward(&rerun, ops, ref, NULL);
    if (ops->grads_to_host) ops->grads_to_host(&kept), ops->grads_to_host(&rerun);
    int identical = kept.loss == rerun.loss &&
                    memcmp(kept.lora_grads_memory, rerun.lora_grads_memory,
                           kept.num_lora_parameters * sizeof(float)) == 0 &&
                    memcmp(kept.grads_memory, rerun.grads_memory, kept.num_parameters * sizeof(float)) == 0;
    check(identical, "gradient checkpointing: loss, LoRA and base gradients bit-identical to keeping every layer");
    model_release(&kept, ops);
    model_release(&rerun, ops);
}

// Three full fine-tuning steps (LoRA and every weight, so the embedding and norm weight
// gradients too), run twice: losses, norms and weights bit-identical.
static void check_determinism(SafeTensors* ref, const ModelOps* ops, const Tolerances* tol) {
    AdamWConfig o = {.learning_rate = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .max_grad_norm = 1.0f};
    float results[2][6];
    float* weights[2] = {NULL, NULL};
    size_t n_lora = 0, n_params = 0;
    for (int run = 0; run < 2; run++) {
        Model m;
        model_from_ref(&m, ops, ref, ref_meta(ref, "model"), 1);
        for (int s = 0; s < 3; s++) {
            results[run][2 * s + 1] = training_step(&m, ops, ref, &o);
            results[run][2 * s] = m.loss;
        }
        if (ops->to_host) ops->to_host(&m);
        n_lora = m.num_lora_parameters;
        n_params = m.num_parameters;
        weights[run] = malloc_check((n_lora + n_params) * sizeof(float), "test");
        memcpy(weights[run], m.lora_memory, n_lora * sizeof(float));
        memcpy(weights[run] + n_lora, m.params_memory, n_params * sizeof(float));
        model_release(&m, ops);
    }
    int identical = memcmp(results[0], results[1], sizeof(results[0])) == 0 &&
                    memcmp(weights[0], weights[1], (n_lora + n_params) * sizeof(float)) == 0;
    char what[200];
    snprintf(what, sizeof(what),
             "%s: two runs of 3 full fine-tuning steps are bit-identical (losses, norms, all weights)", tol->name);
    check(identical, what);
    free(weights[0]);
    free(weights[1]);
}

// A whole training step (forward, backward, clip, AdamW) allocates no host memory.
static void check_no_allocation(SafeTensors* ref, const ModelOps* ops) {
    Model m;
    model_from_ref(&m, ops, ref, ref_meta(ref, "model"), 1);
    AdamWConfig o = {.learning_rate = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .max_grad_norm = 1.0f};
    long before = allocations;
    training_step(&m, ops, ref, &o);
    char what[120];
    snprintf(what, sizeof(what), "training step made %ld allocations (expected 0)", allocations - before);
    check(allocations == before, what);
    model_release(&m, ops);
}

// One step over the reference batch equals the same batch as micro-batches of one row,
// because the loss is normalised by the unmasked tokens of the whole step (and dropout
// masks follow first_token).
static void check_micro_batches(SafeTensors* ref, const ModelOps* ops, const Tolerances* tol) {
    Model m;
    model_from_ref(&m, ops, ref, ref_meta(ref, "model"), 1);
    int B = (int)ref_number(ref, "B"), T = (int)ref_number(ref, "T");
    const int* tokens = ref_ints(ref, "tokens");
    const int* targets = ref_ints(ref, "targets");
    forward_backward(&m, ops, ref, NULL);
    if (ops->grads_to_host) ops->grads_to_host(&m);
    float* lora_whole = malloc_check(m.num_lora_parameters * sizeof(float), "test");
    float* grads_whole = malloc_check(m.num_parameters * sizeof(float), "test");
    memcpy(lora_whole, m.lora_grads_memory, m.num_lora_parameters * sizeof(float));
    memcpy(grads_whole, m.grads_memory, m.num_parameters * sizeof(float));
    int tokens_in_step = 0;
    for (int n = 0; n < B * T; n++) tokens_in_step += targets[n] >= 0;
    ops->zero_grad(&m);
    for (int b = 0; b < B; b++) {  // one row per micro-batch
        m.first_token = b * T;
        ops->forward(&m, tokens + b * T, targets + b * T, NULL, 1, T, 1);
        ops->backward(&m, tokens + b * T, targets + b * T, NULL, 1, T, tokens_in_step);
    }
    m.first_token = 0;
    if (ops->grads_to_host) ops->grads_to_host(&m);
    char name[120];
    snprintf(name, sizeof(name), "LoRA gradients: %d micro-batches of 1 row vs 1 batch of %d (relative %g)", B, B,
             tol->micro_batches);
    compare(name, m.lora_grads_memory, lora_whole, m.num_lora_parameters, 0.0, tol->micro_batches);
    snprintf(name, sizeof(name), "base gradients: %d micro-batches of 1 row vs 1 batch of %d (relative %g)", B, B,
             tol->micro_batches);
    compare(name, m.grads_memory, grads_whole, m.num_parameters, 0.0, tol->micro_batches);
    // the rows summed pairwise through the ops' save_grads and add_saved_grads, as train_step sums micro-batches
    Batch* rows = malloc_check(B * sizeof(Batch), "test");
    int* first_token = malloc_check(B * sizeof(int), "test");
    double* losses = malloc_check(B * sizeof(double), "test");
    for (int b = 0; b < B; b++) {
        rows[b] = (Batch){.inputs = (int*)tokens + b * T, .targets = (int*)targets + b * T, .rows = 1, .width = T};
        first_token[b] = b * T;
    }
    model_step_gradients(&m, ops, rows, B, first_token, losses, tokens_in_step);
    m.first_token = 0;
    if (ops->grads_to_host) ops->grads_to_host(&m);
    snprintf(name, sizeof(name), "LoRA gradients: %d micro-batches summed pairwise vs 1 batch (relative %g)", B,
             tol->micro_batches);
    compare(name, m.lora_grads_memory, lora_whole, m.num_lora_parameters, 0.0, tol->micro_batches);
    snprintf(name, sizeof(name), "base gradients: %d micro-batches summed pairwise vs 1 batch (relative %g)", B,
             tol->micro_batches);
    compare(name, m.grads_memory, grads_whole, m.num_parameters, 0.0, tol->micro_batches);
    free(rows);
    free(first_token);
    free(losses);
    free(lora_whole);
    free(grads_whole);
    model_release(&m, ops);
}

// Two sequences packed into one row (positions restart at 0 at the second) give the
// same per-token losses as each sequence alone: packed sequences never see each other.
// The forward leaves the per-token losses in the host's m.acts.losses.
static void check_packing_isolation(SafeTensors* ref, const ModelOps* ops, const Tolerances* tol) {
    Model m;
    model_from_ref(&m, ops, ref, ref_meta(ref, "model"), 0);
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
    ops->forward(&m, packed_tokens, packed_targets, pos, 1, T, 0);
    memcpy(packed, m.acts.losses, T * sizeof(float));
    ops->forward(&m, packed_tokens, packed_targets, NULL, 1, split, 0);
    memcpy(alone, m.acts.losses, split * sizeof(float));
    ops->forward(&m, packed_tokens + split, packed_targets + split, NULL, 1, T - split, 0);
    memcpy(alone + split, m.acts.losses, (T - split) * sizeof(float));
    compare("per-token losses of 2 packed sequences vs each alone", packed, alone, T, tol->packing, 0.0);
    ops->forward(&m, packed_tokens, packed_targets, NULL, 1, T, 0);  // without the reset they would differ
    double moved = 0.0;
    for (int t = split; t < T; t++) moved = fmax(moved, fabs(m.acts.losses[t] - alone[t]));
    char what[120];
    snprintf(what, sizeof(what), "without restarting positions the second sequence's losses change (by %.2e)", moved);
    check(moved > 1e-3, what);
    model_release(&m, ops);
}

#endif
