// gguf.h: the model as one GGUF v3 file for llama.cpp and Ollama, as llama.cpp's converter
// writes a LlamaForCausalLM: gguf_type_from_name, gguf_check_tokenizer, gguf_export (hyperparameters, tokenizer,
// chat template, tensors in F32, F16, BF16, Q8_0 or Q4_0, a LoRA adapter merged in) and
// the Ollama Modelfile beside it. Works on train.c's Model, so train.c includes it after hf.h.
//
// The file: "GGUF", version 3, tensor count, key-value count (all little-endian); the
// key-values (key string, value type, value); per tensor its name, dims innermost first
// (ne0 = row length), ggml type and data offset; padding to 32 bytes; then the tensor data,
// each tensor starting on a multiple of 32 from the data's start.
#ifndef LLMC_GGUF_H
#define LLMC_GGUF_H

#include <ctype.h>
#include "utils.h"
#include "safetensors.h"  // float_to_f16, float_to_bf16
#include "../tokenizer.h"

#define GGUF_ALIGNMENT 32

// value types of the key-values
enum { GGUF_UINT32 = 4, GGUF_INT32 = 5, GGUF_FLOAT32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9 };
// llama.cpp's token types (tokenizer.ggml.token_type)
enum { TOKEN_TYPE_NORMAL = 1, TOKEN_TYPE_UNKNOWN = 2, TOKEN_TYPE_CONTROL = 3, TOKEN_TYPE_USER_DEFINED = 4,
       TOKEN_TYPE_UNUSED = 5, TOKEN_TYPE_BYTE = 6 };

// The output types: ggml's tensor type, llama.cpp's general.file_type, and the block a
// row is stored in (Q8_0: an f16 scale + 32 int8; Q4_0: an f16 scale + 32 4-bit values).
typedef struct {
    const char* name;
    int ggml_type;
    int file_type;
    int block;        // values per block
    int block_bytes;  // bytes per block
} GgufType;

static const GgufType GGUF_TYPES[] = {
    {"F32", 0, 0, 1, 4}, {"F16", 1, 1, 1, 2}, {"BF16", 30, 32, 1, 2}, {"Q8_0", 8, 7, 32, 34}, {"Q4_0", 2, 2, 32, 18},
};
enum { GGUF_F32, GGUF_F16, GGUF_BF16, GGUF_Q8_0, GGUF_Q4_0, NUM_GGUF_TYPES };

// "f32", "F16", "bf16", "q8_0", "Q4_0" -> GGUF_*; anything else is an error.
static int gguf_type_from_name(const char* name) {
    for (int i = 0; i < NUM_GGUF_TYPES; i++) {
        if (strcasecmp(name, GGUF_TYPES[i].name) == 0) return i;
    }
    fail("--export_gguf: unknown type '%s' (F32, F16, BF16, Q8_0 or Q4_0)", name);
    return 0;
}

// ----------------------------------------------------------------------------
// quantisation, one row at a time (n a multiple of 32 for Q8_0 and Q4_0)

// Q8_0: per block of 32, d = max|x| / 127, q = round(x / d); x ~ d q.
static void quantize_row_q8_0(uint8_t* out, const float* x, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, out += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = float_to_f16(d);
        memcpy(out, &dh, 2);
        for (int j = 0; j < 32; j++) out[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

// Q4_0: per block of 32, d = m / -8 where m is the value of largest magnitude (sign kept),
// q = min(15, (int)(x / d + 8.5)); x ~ d (q - 8). Byte j holds value j (low nibble) and j+16 (high).
static void quantize_row_q4_0(uint8_t* out, const float* x, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, out += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++) {
            if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
        }
        float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = float_to_f16(d);
        memcpy(out, &dh, 2);
        for (int j = 0; j < 16; j++) {
            int lo = (int)(int8_t)(x[j] * id + 8.5f), hi = (int)(int8_t)(x[j + 16] * id + 8.5f);
            out[2 + j] = (uint8_t)((lo < 15 ? lo : 15) | (hi < 15 ? hi : 15) << 4);
        }
    }
}

// One row of n fp32 values in type, into out (n / block * block_bytes bytes).
static void gguf_convert_row(uint8_t* out, const float* x, int64_t n, int type) {
    if (type == GGUF_F32) { memcpy(out, x, (size_t)n * 4); return; }
    if (type == GGUF_Q8_0) { quantize_row_q8_0(out, x, n); return; }
    if (type == GGUF_Q4_0) { quantize_row_q4_0(out, x, n); return; }
    for (int64_t j = 0; j < n; j++) {
        uint16_t h = type == GGUF_BF16 ? float_to_bf16(x[j]) : float_to_f16(x[j]);
        memcpy(out + 2 * j, &h, 2);
    }
}

// ----------------------------------------------------------------------------
// the header: key-values and tensor infos, built in memory, then written in one go

typedef struct {
    TextBuffer kv;        // the key-values, as they lie in the file
    uint64_t n_kv;
    TextBuffer infos;     // the tensor infos
    uint64_t n_tensors;
    uint64_t data_size;   // bytes of tensor data so far, each tensor padded to GGUF_ALIGNMENT
} GgufHeader;

static void put_u32(TextBuffer* b, uint32_t v) {
    uint8_t bytes[4];
    for (int i = 0; i < 4; i++) bytes[i] = (uint8_t)(v >> (8 * i));
    text_append(b, bytes, 4);
}

static void put_u64(TextBuffer* b, uint64_t v) {
    uint8_t bytes[8];
    for (int i = 0; i < 8; i++) bytes[i] = (uint8_t)(v >> (8 * i));
    text_append(b, bytes, 8);
}

static void put_f32(TextBuffer* b, float f) {
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(b, v);
}

static void put_string(TextBuffer* b, const char* s, size_t n) {
    put_u64(b, n);
    text_append(b, s, n);
}

static void gguf_key(GgufHeader* h, const char* key, uint32_t type) {
    put_string(&h->kv, key, strlen(key));
    put_u32(&h->kv, type);
    h->n_kv++;
}

static void gguf_u32(GgufHeader* h, const char* key, uint32_t v) { gguf_key(h, key, GGUF_UINT32); put_u32(&h->kv, v); }
static void gguf_f32(GgufHeader* h, const char* key, float v) { gguf_key(h, key, GGUF_FLOAT32); put_f32(&h->kv, v); }

static void gguf_bool(GgufHeader* h, const char* key, int v) {
    gguf_key(h, key, GGUF_BOOL);
    text_append(&h->kv, v ? "\1" : "\0", 1);
}

static void gguf_string(GgufHeader* h, const char* key, const char* v) {
    gguf_key(h, key, GGUF_STRING);
    put_string(&h->kv, v, strlen(v));
}

// An array's key, element type and count; the caller then appends the n elements.
static void gguf_array(GgufHeader* h, const char* key, uint32_t type, uint64_t n) {
    gguf_key(h, key, GGUF_ARRAY);
    put_u32(&h->kv, type);
    put_u64(&h->kv, n);
}

// A tensor of shape (rows, cols) (cols 0: 1-D (rows)) in type; returns its data offset.
static uint64_t gguf_tensor_info(GgufHeader* h, const char* name, int64_t rows, int64_t cols, int type) {
    const GgufType* t = &GGUF_TYPES[type];
    put_string(&h->infos, name, strlen(name));
    put_u32(&h->infos, cols ? 2 : 1);
    if (cols) put_u64(&h->infos, (uint64_t)cols);  // ne0: the row length, innermost first
    put_u64(&h->infos, (uint64_t)rows);
    put_u32(&h->infos, (uint32_t)t->ggml_type);
    uint64_t offset = h->data_size;
    put_u64(&h->infos, offset);
    uint64_t bytes = (uint64_t)(cols ? cols : rows) / t->block * t->block_bytes * (cols ? rows : 1);
    h->data_size += (bytes + GGUF_ALIGNMENT - 1) / GGUF_ALIGNMENT * GGUF_ALIGNMENT;
    h->n_tensors++;
    return offset;
}

// ----------------------------------------------------------------------------
// the model's key-values: llama.* hyperparameters and tokenizer.ggml.*

static void gguf_model_keys(GgufHeader* h, const LlamaConfig* c, const char* name, int type) {
    gguf_string(h, "general.architecture", "llama");
    gguf_string(h, "general.type", "model");
    gguf_string(h, "general.name", name);
    gguf_u32(h, "general.file_type", (uint32_t)GGUF_TYPES[type].file_type);
    gguf_u32(h, "general.quantization_version", 2);
    gguf_u32(h, "llama.block_count", (uint32_t)c->L);
    gguf_u32(h, "llama.context_length", (uint32_t)c->max_seq_len);
    gguf_u32(h, "llama.embedding_length", (uint32_t)c->C);
    gguf_u32(h, "llama.feed_forward_length", (uint32_t)c->I);
    gguf_u32(h, "llama.attention.head_count", (uint32_t)c->NH);
    gguf_u32(h, "llama.attention.head_count_kv", (uint32_t)c->NKV);
    gguf_u32(h, "llama.attention.key_length", (uint32_t)c->hs);
    gguf_u32(h, "llama.attention.value_length", (uint32_t)c->hs);
    gguf_u32(h, "llama.rope.dimension_count", (uint32_t)c->hs);
    gguf_f32(h, "llama.rope.freq_base", (float)c->rope_theta);
    gguf_f32(h, "llama.attention.layer_norm_rms_epsilon", c->norm_eps);
    gguf_u32(h, "llama.vocab_size", (uint32_t)c->V);
}

static int token_type(const Tokenizer* t, int id) {
    if (id >= t->vocab_size || !(t->flags[id] & TOKEN_USED)) return TOKEN_TYPE_UNUSED;
    if (id == t->unk_id) return TOKEN_TYPE_UNKNOWN;
    if (t->flags[id] & TOKEN_SPECIAL) return TOKEN_TYPE_CONTROL;
    if (t->flags[id] & TOKEN_ADDED) return TOKEN_TYPE_USER_DEFINED;
    return t->flags[id] & TOKEN_BYTE ? TOKEN_TYPE_BYTE : TOKEN_TYPE_NORMAL;
}

// Llama 3 vocabularies are byte-level BPE ("gpt2" with the "llama-bpe" pre-tokenizer) and
// carry their merges; Llama 2 ones are SentencePiece ("llama"), whose merge order llama.cpp
// reads from the scores: a token made by merge rank k scores -(k+1). V is the model's
// vocabulary; ids the tokenizer lacks are unused "[PADn]" tokens, as the converter writes.
static void gguf_tokenizer_keys(GgufHeader* h, const Tokenizer* t, int V) {
    int spm = t->family == TOKENIZER_SENTENCEPIECE;
    gguf_string(h, "tokenizer.ggml.model", spm ? "llama" : "gpt2");
    if (!spm) gguf_string(h, "tokenizer.ggml.pre", "llama-bpe");
    gguf_array(h, "tokenizer.ggml.tokens", GGUF_STRING, (uint64_t)V);
    TextBuffer s = {0};
    for (int id = 0; id < V; id++) {
        s.len = 0;
        if (token_type(t, id) == TOKEN_TYPE_UNUSED) {
            char pad[32];
            text_append(&s, pad, (size_t)snprintf(pad, sizeof(pad), "[PAD%d]", id));
        } else {
            tokenizer_spelling(t, id, &s);
        }
        put_string(&h->kv, s.data, s.len);
    }
    gguf_array(h, "tokenizer.ggml.token_type", GGUF_INT32, (uint64_t)V);
    for (int id = 0; id < V; id++) put_u32(&h->kv, (uint32_t)token_type(t, id));
    int* left = malloc_check((size_t)(t->n_merges + 1) * sizeof(int), "merges");
    int* right = malloc_check((size_t)(t->n_merges + 1) * sizeof(int), "merges");
    int* merged = malloc_check((size_t)(t->n_merges + 1) * sizeof(int), "merges");
    int n_merges = tokenizer_merge_list(t, left, right, merged);
    if (spm) {
        float* scores = calloc_floats((size_t)V, "token scores");
        for (int k = n_merges - 1; k >= 0; k--) {  // the lowest rank that makes a token wins
            if (merged[k] < V) scores[merged[k]] = -(float)(k + 1);
        }
        gguf_array(h, "tokenizer.ggml.scores", GGUF_FLOAT32, (uint64_t)V);
        for (int id = 0; id < V; id++) put_f32(&h->kv, scores[id]);
        free(scores);
    } else {
        gguf_array(h, "tokenizer.ggml.merges", GGUF_STRING, (uint64_t)n_merges);
        for (int k = 0; k < n_merges; k++) {
            s.len = 0;
            tokenizer_spelling(t, left[k], &s);
            text_append(&s, " ", 1);
            tokenizer_spelling(t, right[k], &s);
            put_string(&h->kv, s.data, s.len);
        }
    }
    free(left);
    free(right);
    free(merged);
    text_free(&s);
    if (t->bos_id >= 0) gguf_u32(h, "tokenizer.ggml.bos_token_id", (uint32_t)t->bos_id);
    if (t->eos_id >= 0) gguf_u32(h, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos_id);
    if (t->eot_id >= 0 && t->eot_id != t->eos_id) gguf_u32(h, "tokenizer.ggml.eot_token_id", (uint32_t)t->eot_id);
    if (t->unk_id >= 0) gguf_u32(h, "tokenizer.ggml.unknown_token_id", (uint32_t)t->unk_id);
    gguf_bool(h, "tokenizer.ggml.add_bos_token", t->bos_id >= 0);
    gguf_bool(h, "tokenizer.ggml.add_eos_token", 0);
    if (spm) gguf_bool(h, "tokenizer.ggml.add_space_prefix", t->prepend_space != 0);
    if (t->chat_template) gguf_string(h, "tokenizer.chat_template", t->chat_template);
}

// ----------------------------------------------------------------------------
// tensors: llama.cpp's names, q/k rows in its rope order, the llama3 rope factors

// Hugging Face name (PARAMETERS) -> llama.cpp name; %d is the layer.
static const char* const GGUF_TENSOR_NAMES[][2] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.layers.%d.input_layernorm.weight", "blk.%d.attn_norm.weight"},
    {"model.layers.%d.self_attn.q_proj.weight", "blk.%d.attn_q.weight"},
    {"model.layers.%d.self_attn.k_proj.weight", "blk.%d.attn_k.weight"},
    {"model.layers.%d.self_attn.v_proj.weight", "blk.%d.attn_v.weight"},
    {"model.layers.%d.self_attn.o_proj.weight", "blk.%d.attn_output.weight"},
    {"model.layers.%d.post_attention_layernorm.weight", "blk.%d.ffn_norm.weight"},
    {"model.layers.%d.mlp.gate_proj.weight", "blk.%d.ffn_gate.weight"},
    {"model.layers.%d.mlp.up_proj.weight", "blk.%d.ffn_up.weight"},
    {"model.layers.%d.mlp.down_proj.weight", "blk.%d.ffn_down.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

static const char* gguf_tensor_name(int i) {
    for (size_t k = 0; k < sizeof(GGUF_TENSOR_NAMES) / sizeof(GGUF_TENSOR_NAMES[0]); k++) {
        if (strcmp(GGUF_TENSOR_NAMES[k][0], PARAMETERS[i].name) == 0) return GGUF_TENSOR_NAMES[k][1];
    }
    fail("internal error: no GGUF name for %s", PARAMETERS[i].name);
    return NULL;
}

// One tensor of the file: parameter i of layer l, or (i = -1) the rope factors.
typedef struct {
    int i, l;
    int64_t rows, cols;  // cols 0: 1-D
    int type;
} GgufTensor;

// Where row r of a q or k weight (heads of hs rows) comes from in the Hugging Face weight.
// HF rotates pairs (k, k + hs/2) of a head (rotate-half), llama.cpp pairs (2k, 2k + 1):
// llama.cpp's row 2k + j of a head is HF's row j hs/2 + k.
static int64_t rope_source_row(int64_t r, int hs) {
    int64_t head = r / hs, k = r % hs;
    return head * hs + (k % 2) * (hs / 2) + k / 2;
}

// The llama3 rope as llama.cpp applies it: angle pos theta^(-2i/hs) / rope_freqs[i], so
// rope_freqs[i] is the base frequency over the adjusted one (1, factor, or between).
static void rope_freqs(float* out, const LlamaConfig* c) {
    for (int i = 0; i < c->hs / 2; i++) out[i] = (float)(pow(c->rope_theta, -2.0 * i / c->hs) / rope_inv_freq(c, i));
}

// Appends parameter i of layer l to plan with its type: 1-D tensors stay F32, as llama.cpp's
// converter keeps them; a matrix whose rows are not whole 32-value blocks falls back to F16.
static void plan_parameter(const LlamaConfig* c, int type, int i, int l, GgufTensor* plan, int* n) {
    int64_t rows, cols;
    int per_layer;
    parameter_shape(c, i, &rows, &cols, &per_layer);
    if (rows == 0) return;  // tied lm_head: llama.cpp reads token_embd instead
    int t = cols == 0 ? GGUF_F32 : type;
    if (cols % GGUF_TYPES[t].block != 0) t = GGUF_F16;
    plan[(*n)++] = (GgufTensor){i, l, rows, cols, t};
}

// Every tensor of the file, in the converter's order: rope_freqs, token_embd, layer by
// layer, output_norm and output. Returns the count.
static int gguf_tensor_plan(const LlamaConfig* c, int type, GgufTensor* plan) {
    int n = 0;
    if (c->rope_llama3) plan[n++] = (GgufTensor){-1, 0, c->hs / 2, 0, GGUF_F32};
    plan_parameter(c, type, 0, 0, plan, &n);
    for (int l = 0; l < c->L; l++) {
        for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
            if (PARAMETERS[i].per_layer) plan_parameter(c, type, i, l, plan, &n);
        }
    }
    for (int i = 1; i < NUM_PARAMETER_TENSORS; i++) {
        if (!PARAMETERS[i].per_layer) plan_parameter(c, type, i, 0, plan, &n);
    }
    return n;
}

// The values of parameter i of layer l (adapter merged in) as rows of the file's type; a
// row of a bf16 base is widened to fp32 in merged first (merged is free then).
static void gguf_write_parameter(FileWriter* w, const Model* m, const GgufTensor* t, float* merged,
                                 float* scaled_B, uint8_t* row) {
    const LlamaConfig* c = &m->config;
    Weight w_l = merged_parameter(m, t->i, t->l, merged, scaled_B, NULL, 0);
    if (t->cols == 0) {
        file_writer_write(w, w_l.data, (size_t)t->rows * sizeof(float));
        return;
    }
    int permute = PARAMETERS[t->i].lora == LORA_Q || PARAMETERS[t->i].lora == LORA_K;
    size_t row_bytes = (size_t)t->cols / GGUF_TYPES[t->type].block * GGUF_TYPES[t->type].block_bytes;
    for (int64_t r = 0; r < t->rows; r++) {
        int64_t source = permute ? rope_source_row(r, c->hs) : r;
        Weight values = weight_at(w_l, (size_t)source * t->cols);
        if (values.format != WEIGHT_F32) {
            for (int64_t k = 0; k < t->cols; k++) merged[k] = weight_get(values, k);
            values = weight_f32(merged);
        }
        gguf_convert_row(row, values.data, t->cols, t->type);
        file_writer_write(w, row, row_bytes);
    }
}

// ----------------------------------------------------------------------------
// the Ollama Modelfile: the chat template in Ollama's Go template syntax, the end tokens

static const char* ollama_template(ChatTemplate kind) {
    switch (kind) {
        case CHAT_LLAMA3:
            return "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
                   "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n";
        case CHAT_LLAMA31: case CHAT_LLAMA32:
            return "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
                   "Today Date: 26 Jul 2024\n\n{{ if .System }}{{ .System }}{{ end }}<|eot_id|>"
                   "{{- range .Messages }}{{ if ne .Role \"system\" }}<|start_header_id|>{{ .Role }}<|end_header_id|>"
                   "\n\n{{ .Content }}<|eot_id|>{{ end }}{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n";
        case CHAT_LLAMA2:
            return "{{- range $i, $m := .Messages }}{{ if eq .Role \"user\" }}{{ if $i }}<s>{{ end }}[INST] "
                   "{{ if and $.System (eq $i 1) }}<<SYS>>\n{{ $.System }}\n<</SYS>>\n\n{{ end }}{{ .Content }} [/INST]"
                   "{{ else if eq .Role \"assistant\" }} {{ .Content }} </s>{{ end }}{{ end }}";
        case CHAT_ALPACA:
            return "Below is an instruction that describes a task. Write a response that appropriately completes "
                   "the request.\n\n### Instruction:\n{{ .Prompt }}\n\n### Response:\n";
        default:
            return "{{ .Prompt }}";
    }
}

static void write_modelfile(const char* path, const Tokenizer* t, const LlamaConfig* c) {
    TextBuffer b = {0};
    const char* head = "# ollama create NAME -f Modelfile\nFROM ./model.gguf\nTEMPLATE \"\"\"";
    text_append(&b, head, strlen(head));
    const char* tpl = ollama_template(chat_template_default(t));
    text_append(&b, tpl, strlen(tpl));
    text_append(&b, "\"\"\"\n", 4);
    int ends[MAX_EOS_TOKENS + 2], n = 0;
    for (int k = 0; k < c->num_eos; k++) ends[n++] = c->eos_token_ids[k];
    ends[n++] = t->eos_id;
    ends[n++] = t->eot_id;
    for (int k = 0; k < n; k++) {
        int seen = 0;
        for (int j = 0; j < k; j++) seen |= ends[j] == ends[k];
        if (seen || ends[k] < 0 || ends[k] >= t->vocab_size) continue;
        TextBuffer s = {0};
        tokenizer_spelling(t, ends[k], &s);
        const char* stop = "PARAMETER stop \"";
        text_append(&b, stop, strlen(stop));
        text_append(&b, s.data, s.len);
        text_append(&b, "\"\n", 2);
        text_free(&s);
    }
    write_text_file(path, b.data);
    text_free(&b);
}

// ----------------------------------------------------------------------------
// export: OUT_DIR/model.gguf and OUT_DIR/Modelfile

// A GGUF file carries the tokenizer: checked before training, so a run does not end in this error.
static void gguf_check_tokenizer(const char* model_dir) {
    char* path = path_join(model_dir, "tokenizer.json");
    if (access(path, R_OK) != 0) fail("%s: cannot read it (%s); a GGUF file carries the tokenizer, so the model "
                                      "directory needs its tokenizer.json", path, strerror(errno));
    free(path);
}

// Writes the model (with its adapter merged in, when it has one) and the tokenizer of
// model_dir as out_dir/model.gguf in type (GGUF_*), and out_dir/Modelfile for Ollama.
// Both go through the atomic FileWriter: never half-written under their real names.
void gguf_export(const Model* m, const char* model_dir, const char* out_dir, int type) {
    const LlamaConfig* c = &m->config;
    uint32_t probe = 1;
    if (*(uint8_t*)&probe != 1) fail("GGUF files are little-endian and this machine is big-endian");
    gguf_check_tokenizer(model_dir);
    char* tokenizer_path = path_join(model_dir, "tokenizer.json");
    Tokenizer tok;
    tokenizer_load(&tok, model_dir);
    if (tok.vocab_size > c->V) fail("%s: the tokenizer has %d tokens but config.json's vocab_size is %d",
                                    tokenizer_path, tok.vocab_size, c->V);
    make_directory(out_dir);
    GgufHeader h = {0};
    const char* slash = strrchr(model_dir, '/');
    gguf_model_keys(&h, c, slash && slash[1] ? slash + 1 : model_dir, type);
    gguf_tokenizer_keys(&h, &tok, c->V);
    GgufTensor* plan = malloc_check(((size_t)NUM_PARAMETER_TENSORS * c->L + 1) * sizeof(GgufTensor), "GGUF plan");
    int n = gguf_tensor_plan(c, type, plan);
    for (int k = 0; k < n; k++) {
        char name[64];
        snprintf(name, sizeof(name), plan[k].i < 0 ? "rope_freqs.weight" : gguf_tensor_name(plan[k].i), plan[k].l);
        gguf_tensor_info(&h, name, plan[k].rows, plan[k].cols, plan[k].type);
    }
    char* path = path_join(out_dir, "model.gguf");
    FileWriter w;
    file_writer_open(&w, path);
    TextBuffer head = {0};
    text_append(&head, "GGUF", 4);
    put_u32(&head, 3);
    put_u64(&head, h.n_tensors);
    put_u64(&head, h.n_kv);
    static const uint8_t zeros[GGUF_ALIGNMENT] = {0};
    size_t header_bytes = head.len + h.kv.len + h.infos.len;
    file_writer_write(&w, head.data, head.len);
    file_writer_write(&w, h.kv.data, h.kv.len);
    file_writer_write(&w, h.infos.data, h.infos.len);
    file_writer_write(&w, zeros, (GGUF_ALIGNMENT - header_bytes % GGUF_ALIGNMENT) % GGUF_ALIGNMENT);

    int widest = c->I > c->NH * c->hs ? c->I : c->NH * c->hs;  // largest out or in of a module
    float* merged = malloc_check((size_t)widest * c->C * sizeof(float), "merged weight");
    float* scaled_B = malloc_check((size_t)widest * (m->use_lora ? m->lora_config.rank : 1) * sizeof(float),
                                   "merged weight");
    int longest = widest > c->C ? widest : c->C;  // longest row
    uint8_t* row = malloc_check((size_t)longest * 4, "GGUF row");
    float* freqs = malloc_check((size_t)c->hs / 2 * sizeof(float), "rope factors");
    for (int k = 0; k < n; k++) {
        size_t numel = (size_t)plan[k].rows * (plan[k].cols ? plan[k].cols : 1);
        size_t bytes = numel / GGUF_TYPES[plan[k].type].block * GGUF_TYPES[plan[k].type].block_bytes;
        if (plan[k].i < 0) {
            rope_freqs(freqs, c);
            file_writer_write(&w, freqs, bytes);
        } else {
            gguf_write_parameter(&w, m, &plan[k], merged, scaled_B, row);
        }
        file_writer_write(&w, zeros, (GGUF_ALIGNMENT - bytes % GGUF_ALIGNMENT) % GGUF_ALIGNMENT);
    }
    file_writer_close(&w);
    printf("GGUF (%s, llama.cpp and Ollama): %s\n", GGUF_TYPES[type].name, path);
    free(path);
    path = path_join(out_dir, "Modelfile");
    write_modelfile(path, &tok, c);
    free(path);
    free(merged); free(scaled_B); free(row); free(freqs); free(plan); free(tokenizer_path);
    text_free(&head); text_free(&h.kv); text_free(&h.infos);
    tokenizer_free(&tok);
}

#endif  // LLMC_GGUF_H
