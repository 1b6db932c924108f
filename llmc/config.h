// config.h: LlamaConfig, config_load (a Hugging Face config.json), rope_table
#ifndef LLMC_CONFIG_H
#define LLMC_CONFIG_H

#include <math.h>
#include <cjson/cJSON.h>
#include "utils.h"

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

static double json_number(const cJSON* obj, const char* key, int required, double fallback, const char* path) {
    cJSON* v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (v == NULL || cJSON_IsNull(v)) {
        if (required) fail("%s: missing required field \"%s\"; is this a Llama config.json?", path, key);
        return fallback;
    }
    if (!cJSON_IsNumber(v)) fail("%s: field \"%s\" must be a number", path, key);
    return v->valuedouble;
}

static int json_positive_int(const cJSON* obj, const char* key, int required, int fallback, const char* path) {
    double v = json_number(obj, key, required, fallback, path);
    if (v < 1 || v > 1e9 || v != floor(v)) fail("%s: field \"%s\" must be a positive integer, got %g", path, key, v);
    return (int)v;
}

static void config_read_rope_scaling(LlamaConfig* c, const cJSON* json, const char* path) {
    cJSON* rs = cJSON_GetObjectItemCaseSensitive(json, "rope_scaling");
    if (rs == NULL || cJSON_IsNull(rs)) return;
    if (!cJSON_IsObject(rs)) fail("%s: \"rope_scaling\" must be an object or null", path);
    cJSON* type = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!cJSON_IsString(type)) type = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "llama3") != 0) {
        fail("%s: rope_scaling type \"%s\" is not supported (only \"llama3\" or null)", path,
             cJSON_IsString(type) ? type->valuestring : "(missing)");
    }
    c->rope_llama3 = 1;
    c->rope_factor = json_number(rs, "factor", 1, 0, path);
    c->rope_low_freq_factor = json_number(rs, "low_freq_factor", 1, 0, path);
    c->rope_high_freq_factor = json_number(rs, "high_freq_factor", 1, 0, path);
    c->rope_original_max_pos = json_number(rs, "original_max_position_embeddings", 1, 0, path);
    if (c->rope_factor <= 0 || c->rope_high_freq_factor <= c->rope_low_freq_factor || c->rope_original_max_pos <= 0) {
        fail("%s: rope_scaling needs factor > 0, high_freq_factor > low_freq_factor "
             "and original_max_position_embeddings > 0", path);
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
    char* text = read_file(path, NULL, "; a Hugging Face model directory needs config.json");
    cJSON* json = cJSON_Parse(text);
    if (!cJSON_IsObject(json)) fail("%s: not valid JSON", path);
    c->C = json_positive_int(json, "hidden_size", 1, 0, path);
    c->I = json_positive_int(json, "intermediate_size", 1, 0, path);
    c->L = json_positive_int(json, "num_hidden_layers", 1, 0, path);
    c->NH = json_positive_int(json, "num_attention_heads", 1, 0, path);
    c->NKV = json_positive_int(json, "num_key_value_heads", 0, c->NH, path);
    c->hs = json_positive_int(json, "head_dim", 0, c->C / c->NH, path);
    c->V = json_positive_int(json, "vocab_size", 1, 0, path);
    c->max_seq_len = json_positive_int(json, "max_position_embeddings", 0, 2048, path);
    c->norm_eps = (float)json_number(json, "rms_norm_eps", 0, 1e-6, path);
    c->rope_theta = json_number(json, "rope_theta", 0, 10000.0, path);
    c->initializer_range = (float)json_number(json, "initializer_range", 0, 0.02, path);
    if (c->NH % c->NKV != 0) fail("%s: num_attention_heads (%d) must be a multiple of num_key_value_heads (%d)",
                                  path, c->NH, c->NKV);
    if (c->hs % 2 != 0) fail("%s: head_dim (%d) must be even for RoPE", path, c->hs);
    config_read_rope_scaling(c, json, path);
    cJSON* tied = cJSON_GetObjectItemCaseSensitive(json, "tie_word_embeddings");
    c->tied = cJSON_IsTrue(tied);
    c->bos_token_id = (int)json_number(json, "bos_token_id", 0, -1, path);
    cJSON* eos = cJSON_GetObjectItemCaseSensitive(json, "eos_token_id");
    if (cJSON_IsNumber(eos)) {
        c->eos_token_ids[c->num_eos++] = eos->valueint;
    } else if (cJSON_IsArray(eos)) {
        for (cJSON* e = eos->child; e != NULL && c->num_eos < MAX_EOS_TOKENS; e = e->next) {
            if (cJSON_IsNumber(e)) c->eos_token_ids[c->num_eos++] = e->valueint;
        }
    }
    cJSON* dtype = cJSON_GetObjectItemCaseSensitive(json, "torch_dtype");
    snprintf(c->dtype, sizeof(c->dtype), "%s", cJSON_IsString(dtype) ? dtype->valuestring : "float32");
    cJSON_Delete(json);
    free(text);
    free(path);
}

// RoPE table cos_sin (T, hs/2, 2) for positions 0..T-1. inv_freq[i] = theta^(-2i/hs),
// with the llama3 adjustment: long wavelengths are slowed down by `factor`, short ones
// kept, and the band between them interpolated.
void rope_table(float* cos_sin, const LlamaConfig* c, int T) {
    int half = c->hs / 2;
    for (int i = 0; i < half; i++) {
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
        for (int t = 0; t < T; t++) {
            cos_sin[((size_t)t * half + i) * 2] = (float)cos(t * inv_freq);
            cos_sin[((size_t)t * half + i) * 2 + 1] = (float)sin(t * inv_freq);
        }
    }
}

#endif  // LLMC_CONFIG_H
