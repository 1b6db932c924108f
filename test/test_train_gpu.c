/*
test_train_gpu.c: checks train_gpu.c and train.cu against the PyTorch reference of
test_train.c: the files in test/ref, written by test/reference.py.

For each reference file, in fp32 and in bf16: the logits, the loss, the gradient of every
LoRA tensor and every base weight, and ten AdamW steps with clipping. fp32 has
test_train.c's tolerances (1e-4 absolute on logits, 1e-4 relative to each gradient
tensor's largest value). bf16 has bf16's: its weights alone move the logits by up to 1%
of the largest logit (the CPU with the weights rounded to bf16 shows the same), so 2e-2
of it; gradients 5e-2 of their largest value. Its AdamW weights are not compared, and its
gradient norms only loosely: Adam's normalised steps turn the rounding into a slowly
diverging trajectory.
Also: dropout masks bit-identical to the CPU's, two runs bit-identical, two micro-batches
equal to one batch, packed sequences isolated from each other, an adapter trained on the
GPU giving the CPU the same logits, and a training step allocating nothing.
Without a CUDA device it prints "skip" and passes nothing.
Run from the repository root: ./test_train_gpu
*/
#define TEST_TRAIN_NO_MAIN
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"  // test_train.c's CPU tests are not run here
#include "test_train.c"  // train.c as a library, and the reference-file helpers
#pragma GCC diagnostic pop
#include "../train_gpu.c"

// Tolerances: absolute + relative to the largest expected value (test_train.c's compare).
typedef struct {
    const char* name;
    int bf16;
    double logits_abs, logits_rel;  // logits
    double loss;                    // absolute
    double gradients;               // relative
    double losses, norms;           // relative, the AdamW steps' losses and gradient norms
} Precision;
static const Precision FP32 = {"fp32", 0, 1e-4, 0.0, 1e-4, 1e-4, 1e-5, 1e-4};
static const Precision BF16 = {"bf16", 1, 0.0, 2e-2, 5e-2, 5e-2, 1e-2, 2e-1};

static GpuModel* gpu_of(Model* m) { return m->device; }

// test_train.c's model_from_ref, copied to the GPU
static void gpu_model_from_ref(Model* m, SafeTensors* ref, const char* model_dir, int full_finetune, int bf16) {
    model_from_ref(m, ref, model_dir, full_finetune);
    gpu_model_create(m, bf16);
}

static void gpu_model_release(Model* m) {
    gpu_model_free(m);
    model_free(m);
}

// test_train.c's forward_backward on the GPU: logits (when not NULL) receive a copy of
// the logits the backward overwrites.
static void gpu_forward_backward(Model* m, SafeTensors* ref, float* logits) {
    int B = (int)ref_number(ref, "B"), T = (int)ref_number(ref, "T");
    const int* tokens = ref_ints(ref, "tokens");
    const int* targets = ref_ints(ref, "targets");
    const int* pos = ref_ints(ref, "pos");
    gpu_model_zero_grad(m);
    gpu_model_forward(m, tokens, targets, pos, B, T, 1);
    if (logits) gpu_download(logits, gpu_of(m)->dev.acts.logits, (size_t)B * T * m->config.V * sizeof(float));
    gpu_model_backward(m, tokens, targets, pos, B, T, m->num_tokens);
}

// the GPU's gradients into the host model's gradient buffers
static void download_gradients(Model* m) {
    Model* d = &gpu_of(m)->dev;
    if (m->use_lora) gpu_download(m->lora_grads_memory, d->lora_grads_memory, m->num_lora_parameters * sizeof(float));
    if (m->full_finetune) gpu_download(m->grads_memory, d->grads_memory, m->num_parameters * sizeof(float));
}

// test_train.c's eval_logits on the GPU: logits (B,T,V) of an evaluation forward
static void gpu_eval_logits(Model* m, SafeTensors* ref, float* out) {
    int B = (int)ref_number(ref, "B"), T = (int)ref_number(ref, "T");
    gpu_model_forward(m, ref_ints(ref, "tokens"), NULL, ref_ints(ref, "pos"), B, T, 0);
    gpu_download(out, gpu_of(m)->dev.acts.logits, (size_t)B * T * m->config.V * sizeof(float));
}

static AdamWConfig adamw_from_ref(SafeTensors* ref) {
    AdamWConfig o = {.learning_rate = (float)ref_number(ref, "learning_rate"), .beta1 = (float)ref_number(ref, "beta1"),
                     .beta2 = (float)ref_number(ref, "beta2"), .eps = (float)ref_number(ref, "adam_eps"),
                     .weight_decay = (float)ref_number(ref, "weight_decay"), .max_grad_norm = (float)ref_number(ref, "max_grad_norm")};
    return o;
}

// The GPU drops exactly the elements train.c's dropout_apply drops, scaled the same.
static void test_gpu_dropout(void) {
    size_t n = 100003;
    uint32_t key = dropout_key(42, 3, 1, 2, LORA_GATE), first = 4000000000u;  // first + e wraps around
    float* x = malloc_check(n * sizeof(float), "test");
    float* cpu = malloc_check(n * sizeof(float), "test");
    float* gpu = malloc_check(n * sizeof(float), "test");
    for (size_t i = 0; i < n; i++) x[i] = hash_uniform(1, 2, (uint32_t)i, 1.0f);
    dropout_apply(cpu, x, n, 0.1f, key, first);
    float* dx = gpu_floats(n, "test");
    float* dout = gpu_floats(n, "test");
    gpu_upload(dx, x, n * sizeof(float));
    dropout_apply_gpu(dout, dx, n, 0.1f, key, first);
    gpu_download(gpu, dout, n * sizeof(float));
    check(memcmp(cpu, gpu, n * sizeof(float)) == 0, "dropout: GPU mask and scaling bit-identical to train.c's dropout_apply");
    gpu_free(dx);
    gpu_free(dout);
    free(x); free(cpu); free(gpu);
}

static void test_gpu_gradients(SafeTensors* ref, const Precision* prec) {
    Model m;
    gpu_model_from_ref(&m, ref, ref_meta(ref, "model"), 1, prec->bf16);
    const LlamaConfig* c = &m.config;
    int N = (int)(ref_number(ref, "B") * ref_number(ref, "T"));
    float* logits = malloc_check((size_t)N * c->V * sizeof(float), "test");
    gpu_forward_backward(&m, ref, logits);
    download_gradients(&m);
    compare("logits", logits, ref_floats(ref, "logits"), (size_t)N * c->V, prec->logits_abs, prec->logits_rel);
    free(logits);
    compare("loss", &m.loss, ref_floats(ref, "loss"), 1, prec->loss, 0.0);
    CompareContext cc = {ref, "grad.lora.", prec->gradients};
    lora_visit(&m.lora_grads, c, &m.lora_config, compare_with_ref, &cc);
    compare_base_grads(&m, ref, prec->gradients);
    gpu_model_release(&m);
}

static void test_gpu_adamw(SafeTensors* ref, const Precision* prec) {
    Model m;
    gpu_model_from_ref(&m, ref, ref_meta(ref, "model"), 0, prec->bf16);
    AdamWConfig o = adamw_from_ref(ref);
    int steps = (int)ref_number(ref, "adamw_steps");
    float losses[64], norms[64];
    for (int s = 0; s < steps && s < 64; s++) {
        gpu_forward_backward(&m, ref, NULL);
        losses[s] = m.loss;
        norms[s] = gpu_model_grad_norm(&m);
        gpu_model_update(&m, &o, o.learning_rate, norms[s]);
    }
    compare("adamw.losses", losses, ref_floats(ref, "adamw.losses"), steps, 0.0, prec->losses);
    compare("adamw.grad_norms", norms, ref_floats(ref, "adamw.grad_norms"), steps, 0.0, prec->norms);
    if (!prec->bf16) {
        gpu_model_to_host(&m);
        CompareContext cc = {ref, "adamw.", 1e-4};
        lora_visit(&m.lora, &m.config, &m.lora_config, compare_with_ref, &cc);
    }
    gpu_model_release(&m);
}

// Three full fine-tuning steps (LoRA and every weight, so the embedding and norm weight
// gradients too), run twice: losses, norms and weights bit-identical.
static void test_gpu_determinism(SafeTensors* ref, const Precision* prec) {
    AdamWConfig o = {.learning_rate = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .max_grad_norm = 1.0f};
    float results[2][6];
    float* weights[2] = {NULL, NULL};
    size_t n_lora = 0, n_params = 0;
    for (int run = 0; run < 2; run++) {
        Model m;
        gpu_model_from_ref(&m, ref, ref_meta(ref, "model"), 1, prec->bf16);
        for (int s = 0; s < 3; s++) {
            gpu_forward_backward(&m, ref, NULL);
            results[run][2 * s] = m.loss;
            results[run][2 * s + 1] = gpu_model_grad_norm(&m);
            gpu_model_update(&m, &o, o.learning_rate, results[run][2 * s + 1]);
        }
        gpu_model_to_host(&m);
        n_lora = m.num_lora_parameters;
        n_params = m.num_parameters;
        weights[run] = malloc_check((n_lora + n_params) * sizeof(float), "test");
        memcpy(weights[run], m.lora_memory, n_lora * sizeof(float));
        memcpy(weights[run] + n_lora, m.params_memory, n_params * sizeof(float));
        gpu_model_release(&m);
    }
    int identical = memcmp(results[0], results[1], sizeof(results[0])) == 0 &&
                    memcmp(weights[0], weights[1], (n_lora + n_params) * sizeof(float)) == 0;
    char what[200];
    snprintf(what, sizeof(what), "%s: two runs of 3 full fine-tuning steps are bit-identical (losses, norms, all weights)", prec->name);
    check(identical, what);
    free(weights[0]);
    free(weights[1]);
}

// test_train.c's test_micro_batches on the GPU: one step over the reference batch equals
// the same batch as two micro-batches of one row (dropout masks follow first_token).
static void test_gpu_micro_batches(SafeTensors* ref) {
    Model m;
    gpu_model_from_ref(&m, ref, ref_meta(ref, "model"), 1, 0);
    int B = (int)ref_number(ref, "B"), T = (int)ref_number(ref, "T");
    const int* tokens = ref_ints(ref, "tokens");
    const int* targets = ref_ints(ref, "targets");
    gpu_forward_backward(&m, ref, NULL);
    download_gradients(&m);
    float* lora_whole = malloc_check(m.num_lora_parameters * sizeof(float), "test");
    float* grads_whole = malloc_check(m.num_parameters * sizeof(float), "test");
    memcpy(lora_whole, m.lora_grads_memory, m.num_lora_parameters * sizeof(float));
    memcpy(grads_whole, m.grads_memory, m.num_parameters * sizeof(float));
    int tokens_in_step = 0;
    for (int n = 0; n < B * T; n++) tokens_in_step += targets[n] >= 0;
    gpu_model_zero_grad(&m);
    for (int b = 0; b < B; b++) {  // one row per micro-batch
        m.first_token = b * T;
        gpu_model_forward(&m, tokens + b * T, targets + b * T, NULL, 1, T, 1);
        gpu_model_backward(&m, tokens + b * T, targets + b * T, NULL, 1, T, tokens_in_step);
    }
    m.first_token = 0;
    download_gradients(&m);
    compare("LoRA gradients: micro-batches of 1 row vs 1 batch (relative 1e-5)", m.lora_grads_memory, lora_whole, m.num_lora_parameters, 0.0, 1e-5);
    compare("base gradients: micro-batches of 1 row vs 1 batch (relative 1e-5)", m.grads_memory, grads_whole, m.num_parameters, 0.0, 1e-5);
    free(lora_whole);
    free(grads_whole);
    gpu_model_release(&m);
}

// test_train.c's test_packing_isolation on the GPU: two sequences packed into one row
// (positions restart at 0 at the second) give the same per-token losses as each alone.
static void test_gpu_packing_isolation(SafeTensors* ref) {
    Model m;
    gpu_model_from_ref(&m, ref, ref_meta(ref, "model"), 0, 0);
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
    gpu_model_forward(&m, packed_tokens, packed_targets, pos, 1, T, 0);  // losses come back in m.acts.losses
    memcpy(packed, m.acts.losses, T * sizeof(float));
    gpu_model_forward(&m, packed_tokens, packed_targets, NULL, 1, split, 0);
    memcpy(alone, m.acts.losses, split * sizeof(float));
    gpu_model_forward(&m, packed_tokens + split, packed_targets + split, NULL, 1, T - split, 0);
    memcpy(alone + split, m.acts.losses, (T - split) * sizeof(float));
    compare("per-token losses of 2 packed sequences vs each alone", packed, alone, T, 1e-5, 0.0);
    gpu_model_forward(&m, packed_tokens, packed_targets, NULL, 1, T, 0);  // without the reset they would differ
    double moved = 0.0;
    for (int t = split; t < T; t++) moved = fmax(moved, fabs(m.acts.losses[t] - alone[t]));
    char what[120];
    snprintf(what, sizeof(what), "without restarting positions the second sequence's losses change (by %.2e)", moved);
    check(moved > 1e-3, what);
    gpu_model_release(&m);
}

// Three LoRA steps on the GPU, the adapter saved as ./train_gpu saves it (to_host, then
// train.c's lora_save_adapter) and loaded by the CPU model: the same logits.
static void test_gpu_adapter_to_cpu(SafeTensors* ref) {
    const char* base = ref_meta(ref, "model");
    Model m;
    gpu_model_from_ref(&m, ref, base, 0, 0);
    AdamWConfig o = {.learning_rate = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .max_grad_norm = 1.0f};
    for (int s = 0; s < 3; s++) {
        gpu_forward_backward(&m, ref, NULL);
        gpu_model_update(&m, &o, o.learning_rate, gpu_model_grad_norm(&m));
    }
    size_t nl = (size_t)ref_number(ref, "B") * ref_number(ref, "T") * m.config.V;
    float* on_gpu = malloc_check(nl * sizeof(float), "test");
    float* on_cpu = malloc_check(nl * sizeof(float), "test");
    gpu_eval_logits(&m, ref, on_gpu);
    gpu_model_to_host(&m);
    make_directory("test/tmp");
    lora_save_adapter(&m, "test/tmp/gpu_adapter", base);
    Model cpu;
    model_load(&cpu, base);
    lora_load_adapter(&cpu, "test/tmp/gpu_adapter", 0);
    model_allocate(&cpu, m.B, m.T, 0);
    eval_logits(&cpu, ref, on_cpu);
    compare("adapter trained on the GPU: CPU logits vs GPU logits", on_cpu, on_gpu, nl, 1e-4, 0.0);
    model_free(&cpu);
    free(on_gpu);
    free(on_cpu);
    gpu_model_release(&m);
}

// After a first step (cuBLAS and lazily loaded kernels take their memory then), a
// training step allocates neither host nor GPU memory.
static void test_gpu_no_allocation(SafeTensors* ref) {
    Model m;
    gpu_model_from_ref(&m, ref, ref_meta(ref, "model"), 1, 0);
    AdamWConfig o = {.learning_rate = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .max_grad_norm = 1.0f};
    size_t free_before, free_after, total;
    for (int s = 0; s < 2; s++) {
        gpu_synchronize();
        gpu_memory_info(&free_before, &total);
        long before = allocations;
        gpu_forward_backward(&m, ref, NULL);
        gpu_model_update(&m, &o, o.learning_rate, gpu_model_grad_norm(&m));
        gpu_synchronize();
        gpu_memory_info(&free_after, &total);
        if (s == 0) continue;
        char what[160];
        snprintf(what, sizeof(what), "training step made %ld host allocations and took %lld bytes of GPU memory (expected 0)",
                 allocations - before, (long long)free_before - (long long)free_after);
        check(allocations == before && free_before == free_after, what);
    }
    gpu_model_release(&m);
}

int main(void) {
    const char* why = gpu_unavailable();
    if (why != NULL) {
        printf("skip   no CUDA device: %s\n", why);
        printf("0 passed, 0 failed\n");
        return 0;
    }
    gpu_init();
    printf("--- %s\n", gpu_name());
    test_gpu_dropout();
    const char* refs[] = {"test/ref/tiny.safetensors", "test/ref/tiny_tied.safetensors"};
    const Precision* precisions[] = {&FP32, &BF16};
    for (int i = 0; i < 2; i++) {
        SafeTensors ref;
        safetensors_open(&ref, refs[i]);
        for (int p = 0; p < 2; p++) {
            printf("--- %s (model %s), %s\n", refs[i], ref_meta(&ref, "model"), precisions[p]->name);
            test_gpu_gradients(&ref, precisions[p]);
            test_gpu_adamw(&ref, precisions[p]);
            if (i == 0) test_gpu_determinism(&ref, precisions[p]);
        }
        if (i == 0) {
            test_gpu_micro_batches(&ref);
            test_gpu_packing_isolation(&ref);
            test_gpu_adapter_to_cpu(&ref);
            test_gpu_no_allocation(&ref);
        }
        safetensors_close(&ref);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
