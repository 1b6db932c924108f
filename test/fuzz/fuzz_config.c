// fuzz_config.c: config.json (llmc/config.h) from arbitrary text. An accepted config must
// describe a model whose shapes hold together, and when it is small enough, a model with
// random weights of that shape must give finite logits (no NaN from the config's values).
// See fuzz.h.
#include "fuzz.h"
#include "../../train.c"

static void load_and_check(void* dir) {
    LlamaConfig c;
    config_load(&c, dir);
    FUZZ_CHECK(c.C >= 1 && c.I >= 1 && c.L >= 1 && c.V >= 1 && c.max_seq_len >= 1);
    FUZZ_CHECK(c.NH >= 1 && c.NKV >= 1 && c.NH % c.NKV == 0 && c.hs >= 2 && c.hs % 2 == 0);
    FUZZ_CHECK(isfinite(c.norm_eps) && c.norm_eps > 0 && isfinite(c.rope_theta) && c.rope_theta > 0);
    FUZZ_CHECK(c.bos_token_id >= -1 && c.bos_token_id < c.V && c.num_eos <= MAX_EOS_TOKENS);
    for (int i = 0; i < c.num_eos; i++) FUZZ_CHECK(c.eos_token_ids[i] >= 0 && c.eos_token_ids[i] < c.V);
    int T = c.max_seq_len < 8 ? c.max_seq_len : 8;
    MemoryEstimate e = memory_estimate(&c, NULL, 1, T, 0, WEIGHT_F32, 0);
    FUZZ_CHECK(e.weights >= 4 * (size_t)c.V * c.C);
    if (e.weights + e.activations > ((size_t)1 << 20)) return;  // only small models are run
    Model m;
    model_create(&m, &c);
    model_init_random(&m, 1, c.initializer_range > 0 ? c.initializer_range : 0.02f);
    model_allocate(&m, 1, T, 0);
    int tokens[8];
    for (int t = 0; t < T; t++) tokens[t] = (t * 7 + 1) % c.V;
    model_forward(&m, tokens, NULL, NULL, 1, T, 0);
    for (size_t i = 0; i < (size_t)T * c.V; i++) FUZZ_CHECK(isfinite(m.acts.logits[i]));
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz_setup("fuzz_config");
    matmul_init();
    fuzz_write_file("config.json", data, size);
    fuzz_run(load_and_check, fuzz_dir, size);
    return 0;
}
