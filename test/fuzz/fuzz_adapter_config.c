// fuzz_adapter_config.c: a PEFT adapter (llmc/hf.h's lora_load_adapter) onto the tiny model
// of fuzz_model.h. The input is adapter_config.json, then a NUL byte and the bytes of
// adapter_model.safetensors; without a NUL, the whole input is the config and the
// safetensors file is a good rank-2 q_proj,v_proj adapter. An accepted adapter runs
// through the model; logits that overflow (finite but huge weights) must be caught by
// generate.c's check, as ./generate does. See fuzz.h.
#include "fuzz.h"
#include "../../generate.c"
#include "fuzz_model.h"

static Model base;
static uint8_t* good_adapter;  // adapter_model.safetensors of FUZZ_LORA
static size_t good_adapter_size;

static void setup(void) {
    base = fuzz_model();
    Model m = base;
    model_init_lora(&m, &FUZZ_LORA, 5);
    for (size_t i = 0; i < m.num_lora_parameters; i++) m.lora_memory[i] = 0.01f * (float)(i % 7);
    char* dir = path_join(fuzz_dir, "good_adapter");
    lora_save_adapter(&m, dir, "fuzz");
    char* path = path_join(dir, "adapter_model.safetensors");
    good_adapter = (uint8_t*)read_file(path, &good_adapter_size, "");
    unlink(path);
    free(path);
    path = path_join(dir, "adapter_config.json");
    unlink(path);
    free(path);
    rmdir(dir);
    free(dir);
}

static void load_and_run(void* dir) {
    Model m = base;  // the frozen weights are shared; the adapter and the activations are this input's
    lora_load_adapter(&m, dir, 0);
    FUZZ_CHECK(m.use_lora && m.lora_config.rank >= 1 && isfinite(m.lora_scale));
    model_allocate(&m, 1, 8, 0);
    int tokens[8] = {1, 3, 5, 7, 9, 11, 13, 15};
    model_forward(&m, tokens, NULL, NULL, 1, 8, 0);
    check_logits(m.acts.logits + 7 * FUZZ_CONFIG.V, FUZZ_CONFIG.V, 8);  // what ./generate samples from
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz_setup("fuzz_adapter_config");
    if (good_adapter == NULL) setup();
    const uint8_t* nul = memchr(data, 0, size);
    size_t config_size = nul ? (size_t)(nul - data) : size;
    fuzz_write_file("adapter_config.json", data, config_size);
    if (nul) fuzz_write_file("adapter_model.safetensors", nul + 1, size - config_size - 1);
    else fuzz_write_file("adapter_model.safetensors", good_adapter, good_adapter_size);
    fuzz_run(load_and_run, fuzz_dir, size);
    return 0;
}
