/*
train_gpu.c: ./train with the model on an NVIDIA GPU.

  ./train_gpu [--bf16] [./train's flags]

The same program as ./train (train.c's train_main: flags, datasets, schedule, logging,
checkpoints, PEFT adapters, merged models), with the model calls replaced by the GPU
twins below, which call the layers of train.cu in the order train.c's model_forward and
model_backward call the CPU ones. Read it side by side with train.c's model section.

The GPU model is the host Model's tensors in GPU memory, in the host's layout: train.c's
parameters_point, lora_point and activations_point carve the GPU blocks exactly as they
carve the host ones, so every tensor is found the same way on both sides. The host Model
keeps the scalars (step, seed, first_token, loss) and gets the trainable weights and the
AdamW moments back before anything is saved, so adapters and checkpoints are the same
files whichever of ./train and ./train_gpu wrote them, and each resumes the other's.

Without --bf16 the GPU computes in fp32 with TF32 off and matches ./train to rounding.
With --bf16 the base model's matmuls take bf16 operands (bf16 weights, and the
activations rounded to bf16 on the way in) and accumulate in fp32; LoRA, norms, softmax,
losses and the optimizer stay fp32. The frozen base is then bf16 only, on the host and
on the GPU (a bf16 checkpoint as it is, an fp32 one rounded at load: 2 bytes a parameter);
when every weight is trained, or the checkpoint is fp16, the GPU keeps fp32 weights and a
bf16 copy of them.
*/
#ifdef TRAIN_NO_MAIN
#include "train.c"     // a test or benchmark includes this file: it brings its own main
#else
#define TRAIN_NO_MAIN  // train.c as a library: everything but its main ...
#include "train.c"
#undef TRAIN_NO_MAIN   // ... and this file's own main at the end
#endif
#include "train_gpu.h"

// ----------------------------------------------------------------------------
// the GPU model

typedef struct {
    Model dev;               // GPU memory in the host model's layout; only its tensors are used
    int bf16;                // bf16 matmuls (--bf16)
    bfloat16* params_bf16;   // (num_parameters) an fp32 base's weights rounded to bf16 (bf16 only)
    void* base_bf16;         // a bf16 base (the host's frozen_memory, uploaded as it is; no fp32 copy)
    bfloat16* x16;           // (B*T, max(C, NH*hs, I)) a matmul input rounded to bf16 (bf16 only)
    bfloat16* dy16;          // (B*T, max(C, NH*hs, I, V)) an output gradient rounded to bf16 (bf16 only)
    void* attention_scratch; // attention_scratch_bytes_gpu(B, T, NH, hs, bf16)
    int* tokens;             // (B, T) the batch
    int* targets;            // (B, T)
    int* pos;                // (B, T)
    double* norm_partials;   // per-chunk sums of squares for the gradient norm
} GpuModel;

static float* gpu_floats(size_t n, const char* what) { return gpu_malloc(n * sizeof(float), what); }

static size_t trainable_parameters(const Model* m) {
    return m->num_lora_parameters + (m->full_finetune ? m->num_parameters : 0);
}

// Copies the host model, after model_allocate (and any adapter or checkpoint loading),
// to the GPU as m->device. bf16: bf16 matmuls.
void gpu_model_create(Model* m, int bf16) {
    gpu_init();
    const LlamaConfig* c = &m->config;
    GpuModel* gpu = calloc(1, sizeof(GpuModel));
    if (gpu == NULL) fail("out of memory");
    Model* d = &gpu->dev;
    d->config = m->config;  // what the layout functions read
    d->use_lora = m->use_lora;
    d->lora_config = m->lora_config;
    d->checkpointing = m->checkpointing;  // one layer's activations, as train.c keeps them
    size_t N = (size_t)m->B * m->T, trainable = trainable_parameters(m);

    // fp32 tensors as the host holds them: every weight, or the norms beside a bf16 base
    size_t floats = parameters_point(&d->params, NULL, c, m->base_format);
    d->params_memory = gpu_floats(floats, "model weights");
    gpu_upload(d->params_memory, m->params_memory, floats * sizeof(float));
    parameters_point(&d->params, d->params_memory, c, m->base_format);
    if (m->full_finetune) {
        d->grads_memory = gpu_floats(m->num_parameters, "gradients");
        parameters_point(&d->grads, d->grads_memory, c, WEIGHT_F32);
    }
    if (m->use_lora) {
        d->lora_memory = gpu_floats(m->num_lora_parameters, "LoRA weights");
        d->lora_grads_memory = gpu_floats(m->num_lora_parameters, "LoRA gradients");
        gpu_upload(d->lora_memory, m->lora_memory, m->num_lora_parameters * sizeof(float));
        lora_point(&d->lora, d->lora_memory, c, &m->lora_config);
        lora_point(&d->lora_grads, d->lora_grads_memory, c, &m->lora_config);
    }
    d->m_memory = gpu_floats(trainable, "AdamW first moments");
    d->v_memory = gpu_floats(trainable, "AdamW second moments");
    gpu_upload(d->m_memory, m->m_memory, trainable * sizeof(float));
    gpu_upload(d->v_memory, m->v_memory, trainable * sizeof(float));
    d->acts_memory = gpu_floats(activations_point(d, m->B, m->T, NULL), "activations");
    activations_point(d, m->B, m->T, d->acts_memory);  // d->attention_scratch (CPU-sized) goes unused
    gpu_upload(d->cos_sin, m->cos_sin, (size_t)m->T * c->hs * sizeof(float));

    gpu->bf16 = bf16;
    if (m->base_format != WEIGHT_F32 && (m->base_format != WEIGHT_BF16 || !bf16)) {
        fail("internal error: the GPU takes an fp32 base, or a bf16 base with bf16 matmuls (--bf16)");
    }
    if (bf16) {
        size_t widest = (size_t)c->C > (size_t)c->NH * c->hs ? (size_t)c->C : (size_t)c->NH * c->hs;
        widest = widest > (size_t)c->I ? widest : (size_t)c->I;
        size_t widest_out = widest > (size_t)c->V ? widest : (size_t)c->V;
        if (m->base_format == WEIGHT_BF16) {
            Model layout = *m;  // frozen_point with no memory only sizes it (and clears the pointers it sets)
            size_t bytes = frozen_point(&layout, NULL);
            gpu->base_bf16 = gpu_malloc(bytes, "bf16 weights");
            gpu_upload(gpu->base_bf16, m->frozen_memory, bytes);
        } else {
            gpu->params_bf16 = gpu_malloc(m->num_parameters * sizeof(bfloat16), "bf16 weights");
            float_to_bf16_gpu(gpu->params_bf16, d->params_memory, m->num_parameters);
        }
        gpu->x16 = gpu_malloc(N * widest * sizeof(bfloat16), "bf16 matmul inputs");
        gpu->dy16 = gpu_malloc(N * widest_out * sizeof(bfloat16), "bf16 matmul gradients");
    }
    gpu->attention_scratch = gpu_malloc(attention_scratch_bytes_gpu(m->B, m->T, c->NH, c->hs, bf16),
                                        "attention scores");
    gpu->tokens = gpu_malloc(N * sizeof(int), "the batch");
    gpu->targets = gpu_malloc(N * sizeof(int), "the batch");
    gpu->pos = gpu_malloc(N * sizeof(int), "the batch");
    gpu->norm_partials = gpu_malloc((trainable / NORM_CHUNK + 2) * sizeof(double), "gradient norm");
    d->grad_sums = gpu_floats(m->grad_sum_levels * trainable, "partial gradient sums");
    m->device = gpu;
}

void gpu_model_free(Model* m) {
    GpuModel* gpu = m->device;
    Model* d = &gpu->dev;
    void* blocks[] = {d->params_memory, d->grads_memory, d->lora_memory, d->lora_grads_memory, d->m_memory,
                      d->v_memory, d->acts_memory, gpu->params_bf16, gpu->base_bf16, gpu->x16, gpu->dy16,
                      gpu->attention_scratch,
                      gpu->tokens, gpu->targets, gpu->pos, gpu->norm_partials, d->grad_sums};
    for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) gpu_free(blocks[i]);
    free(gpu);
    m->device = NULL;
}

// Copies the trainable weights and the AdamW moments back to the host model (before
// saving an adapter, a checkpoint or a merged model).
void gpu_model_to_host(Model* m) {
    Model* d = &((GpuModel*)m->device)->dev;
    size_t trainable = trainable_parameters(m);
    if (m->use_lora) gpu_download(m->lora_memory, d->lora_memory, m->num_lora_parameters * sizeof(float));
    if (m->full_finetune) gpu_download(m->params_memory, d->params_memory, m->num_parameters * sizeof(float));
    gpu_download(m->m_memory, d->m_memory, trainable * sizeof(float));
    gpu_download(m->v_memory, d->v_memory, trainable * sizeof(float));
}

// The last forward's logits (B,T,V) into the host model's m->acts.logits (the tests'
// comparisons; the backward overwrites them).
void gpu_model_logits_to_host(Model* m) {
    Model* d = &((GpuModel*)m->device)->dev;
    gpu_download(m->acts.logits, d->acts.logits, (size_t)m->B * m->T * m->config.V * sizeof(float));
}

// The gradients into the host model's gradient buffers (the tests' comparisons).
void gpu_model_grads_to_host(Model* m) {
    Model* d = &((GpuModel*)m->device)->dev;
    if (m->use_lora) gpu_download(m->lora_grads_memory, d->lora_grads_memory, m->num_lora_parameters * sizeof(float));
    if (m->full_finetune) gpu_download(m->grads_memory, d->grads_memory, m->num_parameters * sizeof(float));
}

// The batch to the GPU. pos NULL means 0..T-1 in every row (m->default_pos, as on the CPU).
static void gpu_upload_batch(Model* m, const int* tokens, const int* targets, const int* pos, int B, int T) {
    GpuModel* gpu = m->device;
    int N = B * T;
    if (pos == NULL) {
        for (int n = 0; n < N; n++) m->default_pos[n] = n % T;
        pos = m->default_pos;
    }
    gpu_upload(gpu->tokens, tokens, N * sizeof(int));
    gpu_upload(gpu->pos, pos, N * sizeof(int));
    if (targets != NULL) gpu_upload(gpu->targets, targets, N * sizeof(int));
}

// ----------------------------------------------------------------------------
// the base model's matmuls: train.c's linear_forward, linear_backward_input and
// linear_backward_weight for parameter i's matrix (layer l's slice). With --bf16 the
// weight is bf16 (a bf16 base as uploaded, or an fp32 base's bf16 copy) and the activation
// operands are rounded to bf16 on the way in.

// Parameter i's matrix, layer l's slice, as the matmuls read it: fp32, or bf16 with --bf16
static const void* gpu_base_weight(const Model* m, int i, int l) {
    const GpuModel* gpu = m->device;
    if (m->base_format == WEIGHT_BF16) {  // where the host keeps it in frozen_memory, on the GPU
        return (const char*)gpu->base_bf16 + ((const char*)base_weight(m, i, l).data - (const char*)m->frozen_memory);
    }
    int64_t rows, cols;
    int per_layer;
    parameter_shape(&m->config, i, &rows, &cols, &per_layer);
    const float* W = *parameter_field((ParameterTensors*)&gpu->dev.params, i) + (size_t)l * rows * cols;
    return gpu->bf16 ? (const void*)(gpu->params_bf16 + (W - gpu->dev.params_memory)) : (const void*)W;
}

// y (N,out) (+)= x (N,in) @ W^T, W parameter i of layer l
static void base_forward(Model* m, int i, int l, float* y, const float* x, int N, int in, int out, int accumulate) {
    GpuModel* gpu = m->device;
    const void* W = gpu_base_weight(m, i, l);
    if (!gpu->bf16) {
        linear_forward_gpu(y, x, (const float*)W, N, in, out, accumulate);
        return;
    }
    float_to_bf16_gpu(gpu->x16, x, (size_t)N * in);
    linear_forward_bf16_gpu(y, gpu->x16, (const bfloat16*)W, N, in, out, accumulate);
}

// dx (N,in) (+)= dy (N,out) @ W, W parameter i of layer l
static void base_backward_input(Model* m, int i, int l, float* dx, const float* dy, int N, int in, int out,
                                int accumulate) {
    GpuModel* gpu = m->device;
    const void* W = gpu_base_weight(m, i, l);
    if (!gpu->bf16) {
        linear_backward_input_gpu(dx, dy, (const float*)W, N, in, out, accumulate);
        return;
    }
    float_to_bf16_gpu(gpu->dy16, dy, (size_t)N * out);
    linear_backward_input_bf16_gpu(dx, gpu->dy16, (const bfloat16*)W, N, in, out, accumulate);
}

// dW (out,in) += dy^T (out,N) @ x (N,in)
static void base_backward_weight(GpuModel* gpu, float* dW, const float* dy, const float* x, int N, int in, int out) {
    if (!gpu->bf16) {
        linear_backward_weight_gpu(dW, dy, x, N, in, out);
        return;
    }
    float_to_bf16_gpu(gpu->dy16, dy, (size_t)N * out);
    float_to_bf16_gpu(gpu->x16, x, (size_t)N * in);
    linear_backward_weight_bf16_gpu(dW, gpu->dy16, gpu->x16, N, in, out);
}

// ----------------------------------------------------------------------------
// forward and backward of the whole model: train.c's model section on the GPU

// train.c: model_linear_forward. y (N,out) (+)= x W^T for module mod of layer l, plus its LoRA term.
static void gpu_linear_forward(Model* m, int l, int mod, float* y, const float* x, int N, int accumulate,
                               int training) {
    GpuModel* gpu = m->device;
    Model* d = &gpu->dev;
    const LlamaConfig* c = &m->config;
    int in, out;
    lora_module_dims(c, mod, &in, &out);
    base_forward(m, module_parameter(mod), l, y, x, N, in, out, accumulate);
    if (!m->use_lora || !m->lora_config.target[mod]) return;
    int r = m->lora_config.rank;
    float p = training ? m->lora_config.dropout : 0.0f;
    uint32_t key = dropout_key(m->seed, m->step, l, c->L, mod);
    lora_forward_gpu(y, d->lora_xa[mod] + (size_t)layer_slot(d, l) * N * r, d->scratch.lora_xd, d->scratch.lora_r1, x,
                     d->lora.A[mod] + (size_t)l * r * in, d->lora.B[mod] + (size_t)l * out * r,
                     N, in, out, r, m->lora_scale, p, key, m->first_token);
}

// train.c: model_linear_backward. dx (N,in) (+)= dy W; dW += dy^T x when training every
// weight; LoRA gradients when targeted.
static void gpu_linear_backward(Model* m, int l, int mod, float* dx, const float* dy, const float* x, int N,
                                int accumulate) {
    GpuModel* gpu = m->device;
    Model* d = &gpu->dev;
    const LlamaConfig* c = &m->config;
    int in, out;
    lora_module_dims(c, mod, &in, &out);
    base_backward_input(m, module_parameter(mod), l, dx, dy, N, in, out, accumulate);
    if (m->full_finetune) base_backward_weight(gpu, module_weight(&d->grads, c, l, mod), dy, x, N, in, out);
    if (!m->use_lora || !m->lora_config.target[mod]) return;
    int r = m->lora_config.rank;
    uint32_t key = dropout_key(m->seed, m->step, l, c->L, mod);
    lora_backward_gpu(dx, d->lora_grads.A[mod] + (size_t)l * r * in, d->lora_grads.B[mod] + (size_t)l * out * r,
                      d->scratch.lora_xd, d->scratch.lora_r1, d->scratch.lora_r2, dy, x,
                      d->lora_xa[mod] + (size_t)layer_slot(d, l) * N * r, d->lora.A[mod] + (size_t)l * r * in,
                      d->lora.B[mod] + (size_t)l * out * r, N, in, out, r,
                      m->lora_scale, m->lora_config.dropout, key, m->first_token);
}

// train.c: layer_forward. Layer l: x[l] (N,C) to x[l+1], keeping what its backward needs.
static void gpu_layer_forward(Model* m, int l, int B, int T, int training) {
    GpuModel* gpu = m->device;
    Model* d = &gpu->dev;
    const LlamaConfig* c = &m->config;
    ParameterTensors* p = &d->params;
    int N = B * T, C = c->C, I = c->I;
    LayerActivations layer = layer_activations(&d->acts, c, l, layer_slot(d, l), N);

    rmsnorm_forward_gpu(layer.ln1, layer.ln1_rstd, layer.x, p->ln1 + (size_t)l * C, N, C, c->norm_eps);
    gpu_linear_forward(m, l, LORA_Q, layer.q, layer.ln1, N, 0, training);
    gpu_linear_forward(m, l, LORA_K, layer.k, layer.ln1, N, 0, training);
    gpu_linear_forward(m, l, LORA_V, layer.v, layer.ln1, N, 0, training);
    rope_forward_gpu(layer.q, gpu->pos, d->cos_sin, N, c->NH, c->hs);
    rope_forward_gpu(layer.k, gpu->pos, d->cos_sin, N, c->NKV, c->hs);
    attention_forward_gpu(layer.att, layer.lse, gpu->attention_scratch, layer.q, layer.k, layer.v, gpu->pos,
                          B, T, c->NH, c->NKV, c->hs, gpu->bf16);
    gpu_copy(layer.x_mid, layer.x, (size_t)N * C * sizeof(float));  // residual: x_mid = x + o_proj(att)
    gpu_linear_forward(m, l, LORA_O, layer.x_mid, layer.att, N, 1, training);

    rmsnorm_forward_gpu(layer.ln2, layer.ln2_rstd, layer.x_mid, p->ln2 + (size_t)l * C, N, C, c->norm_eps);
    gpu_linear_forward(m, l, LORA_GATE, layer.gate, layer.ln2, N, 0, training);
    gpu_linear_forward(m, l, LORA_UP, layer.up, layer.ln2, N, 0, training);
    swiglu_forward_gpu(d->scratch.act, layer.gate, layer.up, (size_t)N * I);
    gpu_copy(layer.x_next, layer.x_mid, (size_t)N * C * sizeof(float));  // residual: x_next = x_mid + down(act)
    gpu_linear_forward(m, l, LORA_DOWN, layer.x_next, d->scratch.act, N, 1, training);
}

// train.c: model_forward. Sets m->loss and m->num_tokens, and m->acts.losses (the per-token
// losses, copied back to be summed in order on the host as train.c sums them).
void gpu_model_forward(Model* m, const int* tokens, const int* targets, const int* pos, int B, int T, int training) {
    check_batch(m, tokens, pos, B, T);
    GpuModel* gpu = m->device;
    Model* d = &gpu->dev;
    const LlamaConfig* c = &m->config;
    ActivationTensors* a = &d->acts;
    ParameterTensors* p = &d->params;
    int N = B * T, C = c->C;
    gpu_upload_batch(m, tokens, targets, pos, B, T);

    if (m->base_format == WEIGHT_BF16) {
        embedding_forward_bf16_gpu(a->x, gpu->tokens, (const bfloat16*)gpu_base_weight(m, PARAMETER_EMBEDDINGS, 0), N, C);
    } else {
        embedding_forward_gpu(a->x, gpu->tokens, p->wte, N, C);
    }
    for (int l = 0; l < c->L; l++) gpu_layer_forward(m, l, B, T, training);
    rmsnorm_forward_gpu(a->lnf, a->lnf_rstd, a->x + (size_t)c->L * N * C, p->lnf, N, C, c->norm_eps);
    base_forward(m, PARAMETER_LM_HEAD, 0, a->logits, a->lnf, N, C, c->V, 0);
    m->num_tokens = 0;
    m->loss = 0.0f;
    if (targets == NULL) return;
    for (int n = 0; n < N; n++) {
        if (targets[n] >= c->V) {
            fail("target id %d at position %d is outside the vocabulary [0, %d)", targets[n], n, c->V);
        }
        m->num_tokens += targets[n] >= 0;
    }
    crossentropy_forward_gpu(a->losses, a->logits, gpu->targets, N, c->V);
    gpu_download(m->acts.losses, a->losses, (size_t)N * sizeof(float));
    double sum = 0.0;
    for (int n = 0; n < N; n++) sum += m->acts.losses[n];
    m->loss = m->num_tokens > 0 ? (float)(sum / m->num_tokens) : 0.0f;
}

// train.c: model_backward. Adds this batch's gradients to the gradient buffers; each
// unmasked token's loss gradient is 1/tokens_in_step. Follows a forward of the same batch.
void gpu_model_backward(Model* m, const int* tokens, const int* targets, const int* pos, int B, int T,
                        int tokens_in_step) {
    GpuModel* gpu = m->device;
    Model* d = &gpu->dev;
    const LlamaConfig* c = &m->config;
    ActivationTensors* a = &d->acts;
    ScratchTensors* s = &d->scratch;
    ParameterTensors* p = &d->params;
    ParameterTensors* g = m->full_finetune ? &d->grads : NULL;
    int N = B * T, C = c->C, I = c->I;
    gpu_upload_batch(m, tokens, targets, pos, B, T);

    crossentropy_backward_gpu(a->logits, gpu->targets, N, c->V, tokens_in_step > 0 ? 1.0f / tokens_in_step : 0.0f);
    float* dlogits = a->logits;
    base_backward_input(m, PARAMETER_LM_HEAD, 0, s->dln, dlogits, N, C, c->V, 0);
    if (g) base_backward_weight(gpu, g->wlm, dlogits, a->lnf, N, C, c->V);
    gpu_zero(s->dx, (size_t)N * C * sizeof(float));
    rmsnorm_backward_gpu(s->dx, g ? g->lnf : NULL, s->dln, a->x + (size_t)c->L * N * C, p->lnf, a->lnf_rstd, N, C);

    for (int l = c->L - 1; l >= 0; l--) {
        if (d->checkpointing) gpu_layer_forward(m, l, B, T, 1);  // the same dropout masks: bit-identical
        LayerActivations layer = layer_activations(a, c, l, layer_slot(d, l), N);

        // MLP: s->dx holds d x_next, which flows unchanged into d x_mid plus the MLP branch
        swiglu_forward_gpu(s->act, layer.gate, layer.up, (size_t)N * I);
        gpu_linear_backward(m, l, LORA_DOWN, s->dact, s->dx, s->act, N, 0);
        swiglu_backward_gpu(s->dgate, s->dup, s->dact, layer.gate, layer.up, (size_t)N * I);
        gpu_linear_backward(m, l, LORA_GATE, s->dln, s->dgate, layer.ln2, N, 0);
        gpu_linear_backward(m, l, LORA_UP, s->dln, s->dup, layer.ln2, N, 1);
        rmsnorm_backward_gpu(s->dx, g ? g->ln2 + (size_t)l * C : NULL, s->dln, layer.x_mid, p->ln2 + (size_t)l * C,
                             layer.ln2_rstd, N, C);

        // attention: s->dx now holds d x_mid
        gpu_linear_backward(m, l, LORA_O, s->datt, s->dx, layer.att, N, 0);
        attention_backward_gpu(s->dq, s->dk, s->dv, gpu->attention_scratch, s->datt, layer.att, layer.lse,
                               layer.q, layer.k, layer.v, gpu->pos, B, T, c->NH, c->NKV, c->hs, gpu->bf16);
        rope_backward_gpu(s->dq, gpu->pos, d->cos_sin, N, c->NH, c->hs);
        rope_backward_gpu(s->dk, gpu->pos, d->cos_sin, N, c->NKV, c->hs);
        gpu_linear_backward(m, l, LORA_Q, s->dln, s->dq, layer.ln1, N, 0);
        gpu_linear_backward(m, l, LORA_K, s->dln, s->dk, layer.ln1, N, 1);
        gpu_linear_backward(m, l, LORA_V, s->dln, s->dv, layer.ln1, N, 1);
        rmsnorm_backward_gpu(s->dx, g ? g->ln1 + (size_t)l * C : NULL, s->dln, layer.x, p->ln1 + (size_t)l * C,
                             layer.ln1_rstd, N, C);
    }
    if (g) embedding_backward_gpu(g->wte, s->dx, gpu->tokens, N, C);
}

// train.c: model_zero_grad
void gpu_model_zero_grad(Model* m) {
    Model* d = &((GpuModel*)m->device)->dev;
    if (m->use_lora) gpu_zero(d->lora_grads_memory, m->num_lora_parameters * sizeof(float));
    if (m->full_finetune) gpu_zero(d->grads_memory, m->num_parameters * sizeof(float));
}

// The trainable gradients on the GPU (train.c: model_trainable_grads). Returns how many arrays.
static int gpu_trainable_grads(Model* m, float* grads[2], size_t sizes[2]) {
    Model* d = &((GpuModel*)m->device)->dev;
    int n = 0;
    if (m->use_lora) grads[n] = d->lora_grads_memory, sizes[n++] = m->num_lora_parameters;
    if (m->full_finetune) grads[n] = d->grads_memory, sizes[n++] = m->num_parameters;
    return n;
}

// train.c: model_save_grads
void gpu_model_save_grads(Model* m, int level) {
    float* grads[2];
    size_t sizes[2];
    float* saved = ((GpuModel*)m->device)->dev.grad_sums + (size_t)level * trainable_parameters(m);
    for (int i = 0, n = gpu_trainable_grads(m, grads, sizes); i < n; saved += sizes[i++]) {
        gpu_copy(saved, grads[i], sizes[i] * sizeof(float));
    }
}

// train.c: model_add_saved_grads
void gpu_model_add_saved_grads(Model* m, int level) {
    float* grads[2];
    size_t sizes[2];
    const float* saved = ((GpuModel*)m->device)->dev.grad_sums + (size_t)level * trainable_parameters(m);
    for (int i = 0, n = gpu_trainable_grads(m, grads, sizes); i < n; saved += sizes[i++]) {
        add_gpu(grads[i], saved, sizes[i]);
    }
}

// ----------------------------------------------------------------------------
// several GPUs: one process per GPU, started by mpirun (make train_gpu_mpi); MPI hands rank 0's NCCL id to
// the others, as llm.c does, and NCCL moves the gradients GPU to GPU. Without USE_NCCL there is one GPU.

#ifdef USE_NCCL
#include <nccl.h>

static ncclComm_t nccl;
static float *nccl_shards, *nccl_gathered;  // (DIST_CHUNK) GPU buffers of the exchange

static void nccl_check_at(ncclResult_t result, const char* call, int line) {
    if (result != ncclSuccess) fail("%s failed at train_gpu.c:%d: %s", call, line, ncclGetErrorString(result));
}
#define nccl_check(call) nccl_check_at((call), #call, __LINE__)

// This rank's GPU (its rank among the ranks on its machine) and the NCCL communicator.
static void gpu_distributed_init(int* argc, char*** argv) {
    dist_init(argc, argv);
    MPI_Comm machine;
    int local_rank;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, dist_rank(), MPI_INFO_NULL, &machine);
    MPI_Comm_rank(machine, &local_rank);
    MPI_Comm_free(&machine);
    gpu_use_device(local_rank);
    gpu_init();
    ncclUniqueId id;
    if (dist_rank() == 0) nccl_check(ncclGetUniqueId(&id));
    MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
    nccl_check(ncclCommInitRank(&nccl, dist_size(), id, dist_rank()));
    nccl_shards = gpu_floats(DIST_CHUNK, "the gradient exchange");
    nccl_gathered = gpu_floats(DIST_CHUNK, "the gradient exchange");
}

// llmc/distributed.h's dist_sum_floats on the GPU, in the same order: rank q receives shard q of every
// rank's x (grouped ncclSend/ncclRecv), adds them pairwise in rank order, and every rank gathers every shard.
static void gpu_sum_across_ranks(float* x, size_t n) {
    int R = dist_size(), me = dist_rank();
    size_t per_chunk = DIST_CHUNK / R;
    for (size_t start = 0; start < n; start += per_chunk * R) {
        size_t len = n - start < per_chunk * R ? n - start : per_chunk * R, shard = (len + R - 1) / R;
        size_t mine = dist_shard_length(len, shard, me);
        nccl_check(ncclGroupStart());
        for (int q = 0; q < R; q++) {
            size_t theirs = dist_shard_length(len, shard, q);
            if (theirs > 0) nccl_check(ncclSend(x + start + q * shard, theirs, ncclFloat, q, nccl, 0));
            if (mine > 0) nccl_check(ncclRecv(nccl_shards + q * shard, mine, ncclFloat, q, nccl, 0));
        }
        nccl_check(ncclGroupEnd());
        for (int stride = 1; stride < R; stride *= 2) {
            for (int q = 0; q + stride < R; q += 2 * stride) {
                add_gpu(nccl_shards + q * shard, nccl_shards + (q + stride) * shard, mine);
            }
        }
        nccl_check(ncclAllGather(nccl_shards, nccl_gathered, shard, ncclFloat, nccl, 0));  // past len: unused
        gpu_copy(x + start, nccl_gathered, len * sizeof(float));
    }
}
#endif

// train.c: model_sum_grads_across_ranks
void gpu_model_sum_grads_across_ranks(Model* m) {
#ifdef USE_NCCL
    float* grads[2];
    size_t sizes[2];
    if (dist_size() == 1) return;
    for (int i = 0, n = gpu_trainable_grads(m, grads, sizes); i < n; i++) gpu_sum_across_ranks(grads[i], sizes[i]);
#else
    (void)m;
#endif
}

// train.c: sum_of_squares. The per-chunk sums come back to be added in order on the host.
static double gpu_sum_of_squares(Model* m, const float* g, size_t n) {
    size_t chunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    double* partials = ((GpuModel*)m->device)->norm_partials;
    sum_of_squares_gpu(partials, g, n, NORM_CHUNK);
    gpu_download(m->norm_partials, partials, chunks * sizeof(double));
    double total = 0.0;
    for (size_t i = 0; i < chunks; i++) total += m->norm_partials[i];
    return total;
}

// train.c: model_grad_norm. L2 norm of all trainable gradients.
float gpu_model_grad_norm(Model* m) {
    Model* d = &((GpuModel*)m->device)->dev;
    double sum = 0.0;
    if (m->use_lora) sum += gpu_sum_of_squares(m, d->lora_grads_memory, m->num_lora_parameters);
    if (m->full_finetune) sum += gpu_sum_of_squares(m, d->grads_memory, m->num_parameters);
    return (float)sqrt(sum);
}

// train.c: model_update. Clipping factor max_norm/(norm+1e-6) (at most 1), then one AdamW
// step; norm weights are not decayed. With --bf16 the weights' bf16 copy is refreshed.
void gpu_model_update(Model* m, const AdamWConfig* o, float lr, float grad_norm) {
    GpuModel* gpu = m->device;
    Model* d = &gpu->dev;
    float scale = 1.0f;
    if (o->max_grad_norm > 0.0f) {
        float coef = o->max_grad_norm / (grad_norm + 1e-6f);
        scale = coef < 1.0f ? coef : 1.0f;
    }
    m->step++;
    size_t offset = 0;
    if (m->use_lora) {
        adamw_update_gpu(d->lora_memory, d->lora_grads_memory, d->m_memory, d->v_memory, m->num_lora_parameters,
                         o->beta1, o->beta2, o->eps, lr, o->weight_decay, scale, m->step);
        offset = m->num_lora_parameters;
    }
    if (m->full_finetune) {
        size_t start = 0;
        for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
            size_t n = parameter_numel(&m->config, i);
            adamw_update_gpu(d->params_memory + start, d->grads_memory + start, d->m_memory + offset + start,
                             d->v_memory + offset + start, n, o->beta1, o->beta2, o->eps, lr,
                             PARAMETERS[i].decay ? o->weight_decay : 0.0f, scale, m->step);
            start += n;
        }
        if (gpu->bf16) float_to_bf16_gpu(gpu->params_bf16, d->params_memory, m->num_parameters);
    }
}

// ----------------------------------------------------------------------------
// the GPU model's ModelOps (train.c's CPU_OPS): ./train_gpu's and the tests'

static void gpu_model_create_fp32(Model* m) { gpu_model_create(m, 0); }
static void gpu_model_create_bf16(Model* m) { gpu_model_create(m, 1); }

// bf16: to_device makes the model with bf16 matmuls (--bf16)
ModelOps gpu_ops(int bf16) {
    ModelOps ops = {.forward = gpu_model_forward, .backward = gpu_model_backward, .zero_grad = gpu_model_zero_grad,
                    .save_grads = gpu_model_save_grads, .add_saved_grads = gpu_model_add_saved_grads,
                    .sum_grads_across_ranks = gpu_model_sum_grads_across_ranks,
                    .grad_norm = gpu_model_grad_norm, .update = gpu_model_update,
                    .to_device = bf16 ? gpu_model_create_bf16 : gpu_model_create_fp32, .to_host = gpu_model_to_host,
                    .logits_to_host = gpu_model_logits_to_host, .grads_to_host = gpu_model_grads_to_host,
                    .free_device = gpu_model_free, .device_bf16 = bf16};
    return ops;
}

// ----------------------------------------------------------------------------
// main: train.c's training run with the GPU model

#ifndef TRAIN_NO_MAIN
static int bf16_flag = 0;  // --bf16

// gpu_ops's to_device, and a line saying which GPU and precision
static void to_device(Model* m) {
    gpu_model_create(m, bf16_flag);
    printf("gpu: %s, %s\n", gpu_name(), bf16_flag ? "bf16 matmuls with fp32 accumulation (--bf16)" : "fp32 (TF32 off)");
}

int main(int argc, char** argv) {
    threads_init(argv);
    int n = 0, help = 0;
    for (int i = 0; i < argc; i++) {  // --bf16 is ./train_gpu's own flag, the others are ./train's
        help |= strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0;
        if (strcmp(argv[i], "--bf16") == 0) bf16_flag = 1;
        else argv[n++] = argv[i];
    }
    if (help) {
        printf("./train_gpu: ./train on an NVIDIA GPU, with every flag of ./train and\n"
               "  %-44s %s\n\n", "--bf16",
               "bf16 matmuls for the base model, accumulated in fp32, on a base held in bf16 only "
               "(default fp32, TF32 off)");
    } else {
#ifdef USE_NCCL
        gpu_distributed_init(&n, &argv);  // MPI, this rank's GPU, NCCL
#else
        gpu_init();  // no GPU: say so before reading the model and the data
#endif
    }
    ModelOps gpu = gpu_ops(bf16_flag);
    gpu.to_device = to_device;
    return train_main(n, argv, &gpu);
}
#endif
