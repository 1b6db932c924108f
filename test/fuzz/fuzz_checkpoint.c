// fuzz_checkpoint.c: a training checkpoint (llmc/checkpoint.h's checkpoint_load) of a LoRA
// run on the tiny model of fuzz_model.h, from arbitrary bytes: the input is the whole
// checkpoint.safetensors; the run's signature is "fuzz" and it has 10 training examples.
// An accepted checkpoint must resume: the data loader seeks to its position and one
// training step runs; a loss that overflows (finite but huge weights) must stop the run as
// train_step does. See fuzz.h.
#include "fuzz.h"
#include "../../train.c"
#include "fuzz_model.h"

enum { EXAMPLES = 10, B = 2, T = 16 };
static Model base;
static Examples examples;

static void setup(void) {
    base = fuzz_model();
    model_init_lora(&base, &FUZZ_LORA, 5);
    model_allocate(&base, B, T, 0);
    base.seed = 5;
    examples.count = EXAMPLES;
    examples.items = calloc(EXAMPLES, sizeof(Example));
    for (int i = 0; i < EXAMPLES; i++) {  // lengths 3..12, every token a target but the first
        Example* e = &examples.items[i];
        e->len = 3 + i;
        e->ids = malloc(e->len * sizeof(int));
        e->train = malloc(e->len);
        for (int t = 0; t < e->len; t++) {
            e->ids[t] = (i + 3 * t) % FUZZ_CONFIG.V;
            e->train[t] = t > 0;
        }
    }
}

static void resume_and_step(void* path) {
    Model m = base;  // the weights and moments are overwritten by the checkpoint
    TrainState st = {0};
    LossHistory history = {0};
    checkpoint_load(&m, path, &st, &history, "fuzz", EXAMPLES);
    FUZZ_CHECK(st.step >= 0 && st.epoch >= 0 && st.cursor >= 0 && st.cursor <= EXAMPLES);
    FUZZ_CHECK(history.steps == st.step + 1);
    for (size_t i = 0; i < m.num_lora_parameters; i++) FUZZ_CHECK(m.v_memory[i] >= 0 && isfinite(m.m_memory[i]));
    DataLoader loader;
    dataloader_init(&loader, &examples, B, T, 0, 0, 1, m.seed);
    dataloader_seek(&loader, st.epoch, st.cursor);
    Batch batch;
    batch_alloc(&batch, B, T);
    FUZZ_CHECK(dataloader_next(&loader, &batch) > 0);
    int tokens = 0;
    for (int n = 0; n < batch.rows * batch.width; n++) tokens += batch.targets[n] >= 0;
    model_zero_grad(&m);
    m.first_token = 0;
    model_forward(&m, batch.inputs, batch.targets, batch.pos, batch.rows, batch.width, 1);
    model_backward(&m, batch.inputs, batch.targets, batch.pos, batch.rows, batch.width, tokens);
    float norm = model_grad_norm(&m);
    if (!isfinite(m.loss) || !isfinite(norm)) fail("the loss or gradient norm is not finite");  // as train_step
    AdamWConfig adamw = {.learning_rate = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .max_grad_norm = 1.0f};
    model_update(&m, &adamw, 1e-3f, norm);
    for (size_t i = 0; i < m.num_lora_parameters; i++) FUZZ_CHECK(isfinite(m.lora_memory[i]));
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz_setup("fuzz_checkpoint");
    if (examples.items == NULL) setup();
    const char* path = fuzz_write_file("checkpoint.safetensors", data, size);
    fuzz_run(resume_and_step, (void*)path, size);
    return 0;
}
