// checkpoint.h: TrainState, checkpoint_save, checkpoint_load: everything a resumed run needs.
// Works on train.c's Model, so train.c includes it after the model.
#ifndef LLMC_CHECKPOINT_H
#define LLMC_CHECKPOINT_H

#include "utils.h"
#include "safetensors.h"
#include "run.h"

// ----------------------------------------------------------------------------
// checkpoints: everything a resumed run needs to continue bit for bit. The trainable
// weights, both AdamW moments and the loss history are tensors of one safetensors file;
// the step, the data position and the flags that shape the run are its metadata.
// Dropout and shuffling are pure functions of (seed, step) and (seed, epoch), so no
// generator state needs saving.

typedef struct {
    long step;
    int epoch, cursor;  // data position: next example index into the epoch's order
} TrainState;

void checkpoint_save(const Model* m, const char* path, const TrainState* st, const LossHistory* h,
                     const char* signature) {
    size_t trainable = m->num_lora_parameters + (m->full_finetune ? m->num_parameters : 0);
    char* names[6];
    int64_t rows[6], cols[6] = {0};
    const float* data[6];
    int n = 0;
    if (m->use_lora) { names[n] = "lora"; rows[n] = (int64_t)m->num_lora_parameters; data[n++] = m->lora_memory; }
    if (m->full_finetune) { names[n] = "params"; rows[n] = (int64_t)m->num_parameters; data[n++] = m->params_memory; }
    names[n] = "adam_m"; rows[n] = (int64_t)trainable; data[n++] = m->m_memory;
    names[n] = "adam_v"; rows[n] = (int64_t)trainable; data[n++] = m->v_memory;
    names[n] = "history_train"; rows[n] = h->steps; data[n++] = h->train;
    names[n] = "history_val"; rows[n] = h->steps; data[n++] = h->val;
    char step[32], epoch[32], cursor[32];
    snprintf(step, sizeof(step), "%ld", st->step);
    snprintf(epoch, sizeof(epoch), "%d", st->epoch);
    snprintf(cursor, sizeof(cursor), "%d", st->cursor);
    char* metadata[] = {"step", step, "epoch", epoch, "cursor", cursor, "run", (char*)signature, NULL};
    SafeTensorsWriter w;
    safetensors_writer_open(&w, path, n, names, rows, cols, DTYPE_F32, metadata);
    for (int i = 0; i < n; i++) safetensors_writer_tensor(&w, data[i], (size_t)rows[i]);
    safetensors_writer_close(&w);
}

static void checkpoint_read(SafeTensors* ck, const char* name, float* dst, size_t n) {
    SafeTensor* t = safetensors_find(ck, name);
    int64_t dims[1] = {(int64_t)n};
    if (t == NULL) fail("%s: missing tensor '%s'; not a checkpoint of this run", ck->path, name);
    safetensors_check_shape(ck, t, 1, dims);
    safetensors_read_floats(ck, t, dst);
}

void checkpoint_load(Model* m, const char* path, TrainState* st, LossHistory* h, const char* signature) {
    SafeTensors ck;
    safetensors_open(&ck, path);
    const char* run = safetensors_metadata(&ck, "run");
    const char* step = safetensors_metadata(&ck, "step");
    const char* epoch = safetensors_metadata(&ck, "epoch");
    const char* cursor = safetensors_metadata(&ck, "cursor");
    if (run == NULL || step == NULL || epoch == NULL || cursor == NULL) fail("%s: not a checkpoint written by ./train",
                                                                             path);
    if (strcmp(run, signature) != 0) {
        fail("%s: the checkpoint was made by a run with different settings (%s); this run has (%s). "
             "Resume with the same flags, or pick a new --output_dir",
             path, run, signature);
    }
    size_t trainable = m->num_lora_parameters + (m->full_finetune ? m->num_parameters : 0);
    if (m->use_lora) checkpoint_read(&ck, "lora", m->lora_memory, m->num_lora_parameters);
    if (m->full_finetune) checkpoint_read(&ck, "params", m->params_memory, m->num_parameters);
    checkpoint_read(&ck, "adam_m", m->m_memory, trainable);
    checkpoint_read(&ck, "adam_v", m->v_memory, trainable);
    st->step = atol(step);
    st->epoch = atoi(epoch);
    st->cursor = atoi(cursor);
    SafeTensor* t = safetensors_find(&ck, "history_train");
    int steps = t ? (int)t->numel : 0;
    h->steps = 0;
    for (int i = 0; i < steps; i++) history_add(h, 0.0f, 0.0f);
    if (steps > 0) {
        checkpoint_read(&ck, "history_train", h->train, steps);
        checkpoint_read(&ck, "history_val", h->val, steps);
    }
    m->step = st->step;
    safetensors_close(&ck);
}

#endif  // LLMC_CHECKPOINT_H
