// fuzz_model.h: the tiny Llama the adapter and checkpoint harnesses load into (include
// after train.c). test/fuzz/write_corpus.py writes its seeds for exactly these shapes.
#ifndef FUZZ_MODEL_H
#define FUZZ_MODEL_H

static const LlamaConfig FUZZ_CONFIG = {.C = 8, .I = 16, .L = 2, .NH = 2, .NKV = 1, .hs = 4, .V = 16,
                                        .max_seq_len = 16, .norm_eps = 1e-5f, .rope_theta = 10000.0,
                                        .bos_token_id = 1, .eos_token_ids = {2}, .num_eos = 1, .dtype = "float32"};
// the LoRA the checkpoint seeds were trained with, and the adapter when an input brings none
static const LoraConfig FUZZ_LORA = {.rank = 2, .alpha = 4.0f, .dropout = 0.1f, .target = {[LORA_Q] = 1, [LORA_V] = 1}};

// The tiny model with random weights; call it outside fuzz_run (it stays for the process).
static Model fuzz_model(void) {
    Model m;
    model_create(&m, &FUZZ_CONFIG);
    model_init_random(&m, 3, 0.5f);
    matmul_init();
    return m;
}

#endif
