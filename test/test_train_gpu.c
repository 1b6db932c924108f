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
bit-identical to the CPU's, the int8 and NF4 dequantisers bit-identical to quant.h's (and
the products on their output within 1e-5 of the CPU's quantised matmul), an adapter
trained on the GPU giving the CPU the same logits, and a training step after the first
taking no GPU memory.
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

// The int8 and NF4 dequantisers against quant.h's on the CPU, bit for bit, and the forward and
// input-gradient products on the dequantised matrix against train.c's on the quantised Weight
// (1e-5 of the largest value: the CPU's blocked sums and cuBLAS's differ by rounding).
static void test_gpu_quantized(void) {
    int N = 37, in = 192, out = 130;  // in: whole NF4 blocks a row
    size_t n = (size_t)out * in;
    float* W = malloc_check(n * sizeof(float), "test");
    float* x = malloc_check((size_t)N * in * sizeof(float), "test");
    float* dy = malloc_check((size_t)N * out * sizeof(float), "test");
    float* host = malloc_check(n * sizeof(float), "test");
    float* y = malloc_check((size_t)N * (in > out ? in : out) * sizeof(float), "test");
    float* y_gpu = malloc_check((size_t)N * (in > out ? in : out) * sizeof(float), "test");
    void* codes = malloc_check(n, "test");
    float* scales = malloc_check(n / 64 * sizeof(float) + out * sizeof(float), "test");
    for (size_t e = 0; e < n; e++) W[e] = hash_uniform(31, 0, (uint32_t)e, 1.0f);
    for (size_t e = 0; e < (size_t)N * in; e++) x[e] = hash_uniform(32, 0, (uint32_t)e, 1.0f);
    for (size_t e = 0; e < (size_t)N * out; e++) dy[e] = hash_uniform(33, 0, (uint32_t)e, 1.0f);
    float *dW = gpu_floats(n, "test"), *dx = gpu_floats((size_t)N * in, "test");
    float* ddy = gpu_floats((size_t)N * out, "test");
    float *dout = gpu_floats((size_t)N * (in > out ? in : out), "test"), *dscales = gpu_floats(n / 64 + out, "test");
    void* dcodes = gpu_malloc(n, "test");
    gpu_upload(dx, x, (size_t)N * in * sizeof(float));
    gpu_upload(ddy, dy, (size_t)N * out * sizeof(float));
    for (WeightFormat f = WEIGHT_INT8; f <= WEIGHT_NF4; f++) {
        Weight w = {codes, f, scales, f == WEIGHT_INT8 ? (size_t)in : NF4_BLOCK};
        weight_store(w, 0, W, n);
        weight_dequantize(host, w, 0, n);
        gpu_upload(dcodes, codes, n * WEIGHT_FORMAT_BITS[f] / 8);
        gpu_upload(dscales, scales, n / w.block * sizeof(float));
        if (f == WEIGHT_INT8) dequantize_int8_gpu(dW, (const int8_t*)dcodes, dscales, w.block, n);
        else dequantize_nf4_gpu(dW, (const uint8_t*)dcodes, dscales, n, NF4_CODE);
        gpu_download(y_gpu, dW, n * sizeof(float));
        char what[120];
        snprintf(what, sizeof(what), "%s: the GPU's dequantised matrix equals quant.h's bit for bit",
                 WEIGHT_FORMAT_NAMES[f]);
        check(memcmp(y_gpu, host, n * sizeof(float)) == 0, what);
        linear_forward(y, x, w, N, in, out, 0);
        linear_forward_gpu(dout, dx, dW, N, in, out, 0);
        gpu_download(y_gpu, dout, (size_t)N * out * sizeof(float));
        snprintf(what, sizeof(what), "%s: forward x W^T on the GPU vs the CPU's quantised matmul",
                 WEIGHT_FORMAT_NAMES[f]);
        compare(what, y_gpu, y, (size_t)N * out, 0.0, 1e-5);
        linear_backward_input(y, dy, w, N, in, out, 0);
        linear_backward_input_gpu(dout, ddy, dW, N, in, out, 0);
        gpu_download(y_gpu, dout, (size_t)N * in * sizeof(float));
        snprintf(what, sizeof(what), "%s: input gradient dy W on the GPU vs the CPU's", WEIGHT_FORMAT_NAMES[f]);
        compare(what, y_gpu, y, (size_t)N * in, 0.0, 1e-5);
    }
    gpu_free(dW); gpu_free(dx); gpu_free(ddy); gpu_free(dout); gpu_free(dscales); gpu_free(dcodes);
    free(W); free(x); free(dy); free(host); free(y); free(y_gpu); free(codes); free(scales);
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

// ./train_gpu --bf16 on a bf16 base (the host's bf16 matrices uploaded as they are, no fp32
// copy on either side) = on the same values held in fp32 (tiny_bf16 loaded as fp32 is exact)
// and rounded to a bf16 copy on the GPU: logits and every LoRA gradient bit-identical.
static void test_gpu_bf16_base(const ModelOps* ops) {
    SafeTensors ref;
    safetensors_open(&ref, "test/ref/tiny_bf16base.safetensors");
    Model m16, m32;
    model_from_ref_as(&m16, ops, &ref, ref_meta(&ref, "model"), WEIGHT_BF16, 0, 0);
    model_from_ref_as(&m32, ops, &ref, ref_meta(&ref, "model"), WEIGHT_F32, 0, 0);
    size_t N = (size_t)(ref_number(&ref, "B") * ref_number(&ref, "T")), logits = N * m16.config.V;
    float* l16 = malloc_check(logits * sizeof(float), "test");
    float* l32 = malloc_check(logits * sizeof(float), "test");
    forward_backward(&m16, ops, &ref, l16);
    forward_backward(&m32, ops, &ref, l32);
    ops->grads_to_host(&m16);
    ops->grads_to_host(&m32);
    int same = memcmp(l16, l32, logits * sizeof(float)) == 0 &&
               memcmp(m16.lora_grads_memory, m32.lora_grads_memory, m16.num_lora_parameters * sizeof(float)) == 0;
    check(m16.base_format == WEIGHT_BF16 && m16.params.wq == NULL && same,
          "bf16 base on the GPU (no fp32 copy) = fp32 weights with a bf16 copy: logits and LoRA gradients "
          "bit-identical");
    free(l16);
    free(l32);
    model_release(&m16, ops);
    model_release(&m32, ops);
    safetensors_close(&ref);
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
    test_gpu_quantized();
    ModelOps bf16_ops = gpu_ops(1);
    test_gpu_bf16_base(&bf16_ops);
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
