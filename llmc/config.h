// config.h: LlamaConfig, config_load (a Hugging Face config.json, every field range-checked), rope_inv_freq, rope_table
#ifndef LLMC_CONFIG_H
#define LLMC_CONFIG_H

#include <limits.h>
#include <math.h>
#include <cjson/cJSON.h>
#include "utils.h"
#include "json.h"

// ----------------------------------------------------------------------------
// config.json (Hugging Face LlamaConfig)

#define MAX_EOS_TOKENS 8

typedef struct {
    int C;         // hidden_size
    int I;         // intermediate_size
    int L;         // num_hidden_layers
    int NH;        // num_attention_heads
    int NKV;       // num_key_value_heads
    int hs;        // head_dim
    int V;         // vocab_size
    int max_seq_len;
    float norm_eps;
    float initializer_range;  // std of fresh weights (only --from_scratch uses it)
    double rope_theta;
    int rope_llama3;  // rope_scaling of type llama3 present
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor, rope_original_max_pos;
    int tied;      // tie_word_embeddings
    int bos_token_id;
    int eos_token_ids[MAX_EOS_TOKENS];
    int num_eos;
    char dtype[16];  // torch_dtype, to write merged models back in the same dtype
} LlamaConfig;

// Bounds on every dimension: the largest Llama (405B: hidden 16384, MLP 53248, 126 layers,
// 128 heads) fits with room to spare, and every size computed from them fits in 64 bits.
#define CONFIG_MAX_HIDDEN (1 << 16)
#define CONFIG_MAX_INTERMEDIATE (1 << 18)
#define CONFIG_MAX_LAYERS 1024
#define CONFIG_MAX_HEADS 1024
#define CONFIG_MAX_HEAD_DIM 1024
#define CONFIG_MAX_VOCAB (1 << 24)
#define CONFIG_MAX_POSITIONS (1 << 24)

static void config_read_rope_scaling(LlamaConfig* c, const cJSON* json, const char* path) {
    cJSON* rs = json_field(json, "rope_scaling");
    if (rs == NULL || cJSON_IsNull(rs)) return;
    if (!cJSON_IsObject(rs)) fail("%s: \"rope_scaling\" must be an object or null", path);
    const char* type = json_has(rs, "rope_type") ? json_string(rs, "rope_type", NULL, path)
                                                 : json_string(rs, "type", "(missing)", path);
    if (strcmp(type, "llama3") != 0) {
        fail("%s: rope_scaling type \"%s\" is not supported (only \"llama3\" or null)", path, type);
    }
    c->rope_llama3 = 1;
    c->rope_factor = json_number(rs, "factor", 1e-6, 1e6, 1, 0, path);
    c->rope_low_freq_factor = json_number(rs, "low_freq_factor", 1e-6, 1e6, 1, 0, path);
    c->rope_high_freq_factor = json_number(rs, "high_freq_factor", 1e-6, 1e6, 1, 0, path);
    c->rope_original_max_pos = (double)json_int(rs, "original_max_position_embeddings", 1, CONFIG_MAX_POSITIONS, 1, 0,
                                                path);
    if (c->rope_high_freq_factor <= c->rope_low_freq_factor) {
        fail("%s: rope_scaling needs high_freq_factor > low_freq_factor, got %g and %g", path,
             c->rope_high_freq_factor, c->rope_low_freq_factor);
    }
}

// eos_token_id: one id or a list of them, each a token of the vocabulary.
static void config_read_eos(LlamaConfig* c, const cJSON* json, const char* path) {
    cJSON* eos = json_field(json, "eos_token_id");
    if (eos == NULL || cJSON_IsNull(eos)) return;
    if (!cJSON_IsArray(eos)) {
        c->eos_token_ids[c->num_eos++] = (int)json_int(json, "eos_token_id", 0, c->V - 1, 1, 0, path);
        return;
    }
    if (cJSON_GetArraySize(eos) > MAX_EOS_TOKENS) fail("%s: \"eos_token_id\" lists %d ids; at most %d are supported",
                                                       path, cJSON_GetArraySize(eos), MAX_EOS_TOKENS);
    for (cJSON* e = eos->child; e != NULL; e = e->next) {
        c->eos_token_ids[c->num_eos++] = (int)json_int_item(e, "eos_token_id", 0, c->V - 1, path);
    }
}

// Fields of other architectures that would change what the model computes: refused by
// name rather than ignored.
static void config_refuse_unsupported(const cJSON* json, const char* path) {
    const char* type = json_string(json, "model_type", "llama", path);
    if (strcmp(type, "llama") != 0 && strcmp(type, "mistral") != 0) {
        fail("%s: model_type \"%s\" is not supported (Llama-architecture models only: llama, mistral)", path, type);
    }
    const char* act = json_string(json, "hidden_act", "silu", path);
    if (strcmp(act, "silu") != 0) fail("%s: hidden_act \"%s\" is not supported (Llama's MLP uses silu)", path, act);
    const char* biases[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++) {
        if (json_bool(json, biases[i], 0, path)) fail("%s: \"%s\": true is not supported (Llama's linear layers "
                                                      "have no biases)", path, biases[i]);
    }
}

void config_load(LlamaConfig* c, const char* model_dir) {
    memset(c, 0, sizeof(*c));
    struct stat sb;
    if (stat(model_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fail("model directory %s does not exist; "
             "pass a Hugging Face model directory (config.json + *.safetensors) with --model", model_dir);
    }
    char* path = path_join(model_dir, "config.json");
    cJSON* json = json_read_object(path, "; a Hugging Face model directory needs config.json");
    config_refuse_unsupported(json, path);
    c->C = (int)json_int(json, "hidden_size", 1, CONFIG_MAX_HIDDEN, 1, 0, path);
    c->I = (int)json_int(json, "intermediate_size", 1, CONFIG_MAX_INTERMEDIATE, 1, 0, path);
    c->L = (int)json_int(json, "num_hidden_layers", 1, CONFIG_MAX_LAYERS, 1, 0, path);
    c->NH = (int)json_int(json, "num_attention_heads", 1, CONFIG_MAX_HEADS, 1, 0, path);
    c->NKV = (int)json_int(json, "num_key_value_heads", 1, c->NH, 0, c->NH, path);
    c->hs = (int)json_int(json, "head_dim", 2, CONFIG_MAX_HEAD_DIM, 0, c->C / c->NH, path);
    c->V = (int)json_int(json, "vocab_size", 1, CONFIG_MAX_VOCAB, 1, 0, path);
    c->max_seq_len = (int)json_int(json, "max_position_embeddings", 1, CONFIG_MAX_POSITIONS, 0, 2048, path);
    if (json_int(json, "sliding_window", 1, INT_MAX, 0, INT_MAX, path) < c->max_seq_len) {
        fail("%s: sliding_window attention is not supported (a window shorter than max_position_embeddings)", path);
    }
    c->norm_eps = (float)json_number(json, "rms_norm_eps", 1e-30, 1, 0, 1e-6, path);
    c->rope_theta = json_number(json, "rope_theta", 1, 1e12, 0, 10000.0, path);
    c->initializer_range = (float)json_number(json, "initializer_range", 0, 1, 0, 0.02, path);
    if (c->NH % c->NKV != 0) fail("%s: num_attention_heads (%d) must be a multiple of num_key_value_heads (%d)",
                                  path, c->NH, c->NKV);
    if (c->hs < 2 || c->hs > CONFIG_MAX_HEAD_DIM || c->hs % 2 != 0) {
        fail("%s: head_dim %d (hidden_size / num_attention_heads when absent) must be even and in [2, %d] for RoPE",
             path, c->hs, CONFIG_MAX_HEAD_DIM);
    }
    config_read_rope_scaling(c, json, path);
    c->tied = json_bool(json, "tie_word_embeddings", 0, path);
    c->bos_token_id = (int)json_int(json, "bos_token_id", 0, c->V - 1, 0, -1, path);
    config_read_eos(c, json, path);
    const char* dtype = json_string(json, "torch_dtype", "float32", path);
    if (strcmp(dtype, "float32") != 0 && strcmp(dtype, "bfloat16") != 0 && strcmp(dtype, "float16") != 0) {
        fail("%s: torch_dtype \"%.40s\" is not supported (float32, bfloat16 or float16)", path, dtype);
    }
    snprintf(c->dtype, sizeof(c->dtype), "%s", dtype);
    cJSON_Delete(json);
    free(path);
}

// The RoPE frequency of pair i: inv_freq[i] = theta^(-2i/hs), with the llama3 adjustment:
// long wavelengths are slowed down by `factor`, short ones kept, and the band between
// them interpolated.
double rope_inv_freq(const LlamaConfig* c, int i) {
    double inv_freq = pow(c->rope_theta, -2.0 * i / c->hs);
    if (c->rope_llama3) {
        double wavelen = 2.0 * M_PI / inv_freq;
        double low_wavelen = c->rope_original_max_pos / c->rope_low_freq_factor;
        double high_wavelen = c->rope_original_max_pos / c->rope_high_freq_factor;
        if (wavelen > low_wavelen) {
            inv_freq /= c->rope_factor;
        } else if (wavelen >= high_wavelen) {
            double smooth = (c->rope_original_max_pos / wavelen - c->rope_low_freq_factor) /
                            (c->rope_high_freq_factor - c->rope_low_freq_factor);
            inv_freq = (1.0 - smooth) * inv_freq / c->rope_factor + smooth * inv_freq;
        }
    }
    return inv_freq;
}

// RoPE table cos_sin (T, hs/2, 2) for positions 0..T-1, angle t * rope_inv_freq(c, i).
void rope_table(float* cos_sin, const LlamaConfig* c, int T) {
    int half = c->hs / 2;
    for (int i = 0; i < half; i++) {
        double inv_freq = rope_inv_freq(c, i);
        for (int t = 0; t < T; t++) {
            cos_sin[((size_t)t * half + i) * 2] = (float)cos(t * inv_freq);
            cos_sin[((size_t)t * half + i) * 2 + 1] = (float)sin(t * inv_freq);
        }
    }
}

#endif  // LLMC_CONFIG_H
