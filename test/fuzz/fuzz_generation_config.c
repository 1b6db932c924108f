// fuzz_generation_config.c: generation_config.json (generate.c's read_generation_defaults)
// from arbitrary text, for a model of 301 tokens. Accepted values must be in the ranges
// of generate's flags, and sampling with them must pick a token of the vocabulary.
// See fuzz.h.
#include "fuzz.h"
#include "../../generate.c"

enum { VOCAB = 301 };

static void read_and_sample(void* dir) {
    Model m;
    memset(&m, 0, sizeof(m));
    m.config = (LlamaConfig){.V = VOCAB, .eos_token_ids = {2}, .num_eos = 1};
    StopTokens stop;
    Sampler s;
    read_generation_defaults(&m, dir, NULL, &stop, &s);
    FUZZ_CHECK(s.temperature >= 0 && s.temperature <= 100);
    FUZZ_CHECK(s.top_p > 0 && s.top_p <= 1 && s.top_k >= 0);
    FUZZ_CHECK(s.repetition_penalty > 0 && isfinite(s.repetition_penalty));
    for (int i = 0; i < stop.n; i++) FUZZ_CHECK(stop.ids[i] >= 0 && stop.ids[i] < VOCAB);
    sampler_init(&s, VOCAB, 7);
    float logits[VOCAB];
    int history[4] = {1, 5, 5, 300};
    for (int i = 0; i < VOCAB; i++) logits[i] = 4.0f * sinf(0.37f * i);
    int id = sample_token(&s, logits, VOCAB, history, 4);
    FUZZ_CHECK(id >= 0 && id < VOCAB);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz_setup("fuzz_generation_config");
    fuzz_write_file("generation_config.json", data, size);
    fuzz_run(read_and_sample, fuzz_dir, size);
    return 0;
}
