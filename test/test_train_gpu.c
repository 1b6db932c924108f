/*
test_train_gpu.c: checks train_gpu.c and train.cu against the PyTorch reference of
test_train.c: the files in test/ref, written by test/reference.py.

The checks are model_checks.h's, the ones test_train.c runs on the CPU model, here run
through gpu_ops. For each reference file, in fp32 and in bf16: the logits, the loss, the
gradient of every LoRA tensor and every base weight, ten AdamW steps with clipping, and
(first file) two runs bit-identical. fp32 has test_train.c's tolerances (1e-4 absolute on
logits, 1e-4 relative to each gradient tensor's largest value). bf16 has bf16's: its
weights alone move the logits by up to 1% of the largest logit (the CPU with the weights
rounded to bf16 shows the same), so 2e-2 of it; gradients 5e-2 of their largest value.
Its AdamW weights are not compared, and its gradient norms only loosely: Adam's
normalised steps turn the rounding into a slowly diverging trajectory.
In fp32 also: two micro-batches equal to one batch, packed sequences isolated from each
other, and a training step allocating nothing. The GPU's own: dropout masks
bit-identical to the CPU's, an adapter trained on the GPU giving the CPU the same
logits, and a training step after the first taking no GPU memory.
Without a CUDA device it prints "skip" and passes nothing.
Run from the repository root: ./test_train_gpu
*/
#include "count_allocations.h"  // defines: allocations, counting train.c's
#define TRAIN_NO_MAIN  // use train_gpu.c (and the train.c it includes) as a library: everything but its main
#include "../train_gpu.c"
#include "model_checks.h"      // defines: check, compare, ref_*, model_from_ref, Tolerances, check_gradients, ...

// fp32: test_train.c's tolerances, but 1e-5 for micro-batches and packing where the CPU has 1e-6
static const Tolerances FP32 = {.name = "fp32", .logits_abs = 1e-4, .loss = 1e-4, .gradients = 1e-4, .losses = 1e-5,
                                .norms = 1e-4, .weights = 1e-4, .micro_batches = 1e-5, .packing = 1e-5};
static const Tolerances BF16 = {.name = "bf16", .logits_rel = 2e-2, .loss = 5e-2, .gradients = 5e-2, .losses = 1e-2,
                                .norms = 2e-1};

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
    check(memcmp(cpu, gpu, n * sizeof(float)) == 0,
          "dropout: GPU mask and scaling bit-identical to train.c's dropout_apply");
    gpu_free(dx);
    gpu_free(dout);
    free(x); free(cpu); free(gpu);
}

// Three LoRA steps on the GPU, the adapter saved as ./train_gpu saves it (to_host, then
// train.c's lora_save_adapter) and loaded by the CPU model: the same logits.
static void test_gpu_adapter_to_cpu(SafeTensors* ref, const ModelOps* gpu) {
    const char* base = ref_meta(ref, "model");
    Model m;
    model_from_ref(&m, gpu, ref, base, 0);
    AdamWConfig o = {.learning_rate = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .max_grad_norm = 1.0f};
    for (int s = 0; s < 3; s++) training_step(&m, gpu, ref, &o);
    size_t nl = (size_t)ref_number(ref, "B") * ref_number(ref, "T") * m.config.V;
    float* on_gpu = malloc_check(nl * sizeof(float), "test");
    float* on_cpu = malloc_check(nl * sizeof(float), "test");
    eval_logits(&m, gpu, ref, on_gpu);
    gpu->to_host(&m);
    make_directory("test/tmp");
    lora_save_adapter(&m, "test/tmp/gpu_adapter", base);
    Model cpu;
    model_load(&cpu, base);
    lora_load_adapter(&cpu, "test/tmp/gpu_adapter", 0);
    model_allocate(&cpu, m.B, m.T, 0);
    eval_logits(&cpu, &CPU_OPS, ref, on_cpu);
    compare("adapter trained on the GPU: CPU logits vs GPU logits", on_cpu, on_gpu, nl, 1e-4, 0.0);
    model_free(&cpu);
    free(on_gpu);
    free(on_cpu);
    model_release(&m, gpu);
}

// After a first step (cuBLAS and lazily loaded kernels take their memory then), a
// training step takes no GPU memory.
static void test_gpu_memory(SafeTensors* ref, const ModelOps* gpu) {
    Model m;
    model_from_ref(&m, gpu, ref, ref_meta(ref, "model"), 1);
    AdamWConfig o = {.learning_rate = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .max_grad_norm = 1.0f};
    size_t free_before, free_after, total;
    training_step(&m, gpu, ref, &o);
    gpu_synchronize();
    gpu_memory_info(&free_before, &total);
    training_step(&m, gpu, ref, &o);
    gpu_synchronize();
    gpu_memory_info(&free_after, &total);
    char what[160];
    snprintf(what, sizeof(what), "training step after the first took %lld bytes of GPU memory (expected 0)",
             (long long)free_before - (long long)free_after);
    check(free_before == free_after, what);
    model_release(&m, gpu);
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
    ModelOps ops[2] = {gpu_ops(0), gpu_ops(1)};
    const Tolerances* tolerances[2] = {&FP32, &BF16};
    for (int i = 0; i < 2; i++) {
        SafeTensors ref;
        safetensors_open(&ref, refs[i]);
        for (int p = 0; p < 2; p++) {
            printf("--- %s (model %s), %s\n", refs[i], ref_meta(&ref, "model"), tolerances[p]->name);
            check_gradients(&ref, &ops[p], tolerances[p]);
            check_adamw(&ref, &ops[p], tolerances[p]);
            if (i == 0) check_determinism(&ref, &ops[p], tolerances[p]);
        }
        if (i == 0) {
            check_micro_batches(&ref, &ops[0], &FP32);
            check_checkpointing(&ref, &ops[0]);
            check_packing_isolation(&ref, &ops[0], &FP32);
            test_gpu_adapter_to_cpu(&ref, &ops[0]);
            check_no_allocation(&ref, &ops[0]);
            test_gpu_memory(&ref, &ops[0]);
        }
        safetensors_close(&ref);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
