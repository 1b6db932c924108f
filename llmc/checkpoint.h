// checkpoint.h: TrainState, checkpoint_save, checkpoint_load: everything a resumed run needs.
// Works on train.c's Model, so train.c includes it after the model.
#ifndef LLMC_CHECKPOINT_H
#define LLMC_CHECKPOINT_H

#include <ctype.h>
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

static void checkpoint_read(SafeTensors* ck, const char* name, float* dst, size_t n, int finite) {
    SafeTensor* t = safetensors_find(ck, name);
    int64_t dims[1] = {(int64_t)n};
    if (t == NULL) fail("%s: missing tensor '%s'; not a checkpoint of this run", ck->path, name);
    safetensors_check_shape(ck, t, 1, dims, "this run");
    if (finite) safetensors_read_finite(ck, t, dst, strcmp(name, "adam_v") == 0);
    else safetensors_read_floats(ck, t, dst);  // the loss history: NaN marks steps without a validation loss
}

// A metadata value that must be a decimal integer in [lo, hi], the whole string (atol
// would read "-1", "12abc" or "" as numbers and overflow silently).
static long checkpoint_integer(const SafeTensors* ck, const char* key, const char* text, long lo, long hi) {
    char* end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi || !(isdigit((unsigned char)*text))) {
        fail("%s: metadata \"%s\" is \"%.40s\", expected an integer in [%ld, %ld]; the checkpoint is corrupt",
             ck->path, key, text, lo, hi);
    }
    return v;
}

// Restores the trainable weights, the AdamW moments, the loss history and the position
// (step, epoch, cursor into the epoch's num_examples examples) of a checkpoint of the run
// with this signature. Every value is checked before it is used.
void checkpoint_load(Model* m, const char* path, TrainState* st, LossHistory* h, const char* signature,
                     int num_examples) {
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
    st->step = checkpoint_integer(&ck, "step", step, 0, 1000000000);  // --max_steps' range
    st->epoch = (int)checkpoint_integer(&ck, "epoch", epoch, 0, 1000000000);
    st->cursor = (int)checkpoint_integer(&ck, "cursor", cursor, 0, num_examples);
    SafeTensor* history = safetensors_find(&ck, "history_train");
    if (history == NULL || history->numel != (size_t)st->step + 1) {
        fail("%s: tensor 'history_train' must hold step + 1 = %ld losses, one per step and the start; "
             "the checkpoint is corrupt", path, st->step + 1);
    }
    size_t trainable = m->num_lora_parameters + (m->full_finetune ? m->num_parameters : 0);
    if (m->use_lora) checkpoint_read(&ck, "lora", m->lora_memory, m->num_lora_parameters, 1);
    if (m->full_finetune) checkpoint_read(&ck, "params", m->params_memory, m->num_parameters, 1);
    checkpoint_read(&ck, "adam_m", m->m_memory, trainable, 1);
    checkpoint_read(&ck, "adam_v", m->v_memory, trainable, 1);
    h->steps = 0;
    for (long i = 0; i <= st->step; i++) history_add(h, 0.0f, 0.0f);
    checkpoint_read(&ck, "history_train", h->train, st->step + 1, 0);
    checkpoint_read(&ck, "history_val", h->val, st->step + 1, 0);
    m->step = st->step;
    safetensors_close(&ck);
}

#endif  // LLMC_CHECKPOINT_H
