// hf.h: the Model in and out of Hugging Face's files: model_load (model_load_as: the frozen
// base in bf16, int8 or NF4), base_format_from_name, model_check_weights (shards and all),
// lora_save_adapter, lora_load_adapter (PEFT), lora_adapter_quantization, model_save_merged.
// Works on train.c's Model and parameter table, so train.c includes it after them.
#ifndef LLMC_HF_H
#define LLMC_HF_H

#include <cjson/cJSON.h>
#include "utils.h"
#include "safetensors.h"
#include "config.h"
#include "json.h"

// ----------------------------------------------------------------------------
// loading: model.safetensors or its shards, every tensor the parameter table names

static int compare_strings(const void* a, const void* b) {
    return strcmp(*(const char* const*)a, *(const char* const*)b);
}

// Opens model.safetensors, or every shard named in model.safetensors.index.json.
static int open_weight_files(SafeTensors** files, const char* dir) {
    char* index_path = path_join(dir, "model.safetensors.index.json");
    char* single_path = path_join(dir, "model.safetensors");
    int n = 0;
    if (access(index_path, F_OK) == 0) {
        cJSON* json = json_read_object(index_path, "");
        cJSON* map = json_field(json, "weight_map");
        if (!cJSON_IsObject(map)) fail("%s: missing \"weight_map\" object", index_path);
        int count = cJSON_GetArraySize(map);
        const char** names = malloc_check((count + 1) * sizeof(char*), "shard list");
        for (cJSON* e = map->child; e != NULL; e = e->next) {
            if (!cJSON_IsString(e) || *e->valuestring == '\0' || strchr(e->valuestring, '/') != NULL) {
                fail("%s: weight_map entry '%s' must name a file in the same directory", index_path, e->string);
            }
            names[n++] = e->valuestring;
        }
        if (n == 0) fail("%s: weight_map is empty", index_path);
        qsort(names, n, sizeof(char*), compare_strings);  // each shard once, in O(n log n) however long the map
        int distinct = 0;
        for (int i = 0; i < n; i++) {
            if (i == 0 || strcmp(names[i], names[distinct - 1]) != 0) names[distinct++] = names[i];
        }
        n = distinct;
        *files = malloc_check(n * sizeof(SafeTensors), "shards");
        for (int i = 0; i < n; i++) {
            char* shard = path_join(dir, names[i]);
            safetensors_open(&(*files)[i], shard);
            free(shard);
        }
        free(names);
        cJSON_Delete(json);
    } else if (access(single_path, F_OK) == 0) {
        *files = malloc_check(sizeof(SafeTensors), "weights");
        safetensors_open(&(*files)[0], single_path);
        n = 1;
    } else {
        fail("%s: no weights found (expected model.safetensors or model.safetensors.index.json)", dir);
    }
    // The weights made from the files take as much memory as the files or more. When the two
    // do not fit together, keeping the files' pages cached only makes the kernel reclaim them
    // while the weights fill memory: a 16 GB bf16 file loaded in 47 s instead of 13 s on a
    // 24 GB machine whose cache still held part of it. Then each tensor's pages are dropped.
    double bytes = 0.0;
    for (int i = 0; i < n; i++) bytes += (double)(*files)[i].size;
    for (int i = 0; i < n; i++) (*files)[i].uncached = 2.0 * bytes > available_memory();
    free(index_path);
    free(single_path);
    return n;
}

// The tensor called name in one of the weight files (and that file in *file), or NULL.
static SafeTensor* find_weight(SafeTensors* files, int num_files, const char* name, SafeTensors** file) {
    SafeTensor* t = NULL;
    for (int f = 0; f < num_files && t == NULL; f++) t = safetensors_find(*file = &files[f], name);
    return t;
}

// The base model's fingerprint h continued with tensor t: its first (up to) 64 values, rounded to
// bf16, so that an fp32 and a bf16 copy of one model agree and different models do not. An
// adapter trained on a quantised base records it (lora_save_adapter). t's dtype is F32, BF16
// or F16 (read_weights has read it).
static uint64_t fingerprint_tensor(uint64_t h, const SafeTensor* t) {
    uint16_t first[64];
    size_t n = t->numel < 64 ? t->numel : 64;
    for (size_t i = 0; i < n; i++) {
        float f;
        uint16_t half;
        memcpy(&half, t->data + 2 * i, 2);
        if (t->dtype == DTYPE_F32) memcpy(&f, t->data + 4 * i, 4);
        else f = t->dtype == DTYPE_BF16 ? bf16_to_float(half) : f16_to_float(half);
        first[i] = float_to_bf16(f);
    }
    return dist_hash(h, first, n * sizeof(uint16_t));
}

#define QUANTIZE_ROWS 64  // rows of a matrix widened to fp32 at a time as an int8 or NF4 base loads

// Finds every parameter the config implies in the weight files and checks its shape;
// with m set, also reads it into m: the RMSNorm weights in fp32, the matrices in the
// model's base format (int8 and NF4 quantised 64 rows at a time as they are read: loading
// holds the quantised model and a few rows in fp32, never a whole matrix).
static void read_weights(SafeTensors* files, int num_files, const LlamaConfig* c, const char* dir, Model* m) {
    // an int8 or NF4 base: per thread, QUANTIZE_ROWS rows of the widest matrix in fp32 before they are quantised
    float* wide = NULL;
    size_t widest = (size_t)c->C;  // the most columns of a matrix: C, NH*hs (o_proj) or I (down_proj)
    if ((size_t)c->NH * c->hs > widest) widest = (size_t)c->NH * c->hs;
    if ((size_t)c->I > widest) widest = (size_t)c->I;
    if (m != NULL && (m->base_format == WEIGHT_INT8 || m->base_format == WEIGHT_NF4)) {
        wide = malloc_check((size_t)max_threads() * QUANTIZE_ROWS * widest * sizeof(float), "weights to quantise");
    }
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        int64_t rows, cols;
        int per_layer;
        parameter_shape(c, i, &rows, &cols, &per_layer);
        if (rows == 0) continue;  // tied lm_head
        for (int l = 0; l < (per_layer ? c->L : 1); l++) {
            char name[128];
            parameter_name(name, sizeof(name), i, l);
            SafeTensors* file = NULL;
            SafeTensor* t = find_weight(files, num_files, name, &file);
            if (t == NULL) {
                fail("%s: missing tensor '%s'%s", num_files > 1 ? dir : files[0].path, name,
                     PARAMETERS[i].rows == DIM_V_UNTIED
                         ? "; if the model shares its embeddings, set \"tie_word_embeddings\": true in config.json"
                         : "");
            }
            int64_t dims[2] = {rows, cols};
            safetensors_check_shape(file, t, cols ? 2 : 1, dims, "config.json");
            if (m == NULL) continue;
            size_t offset = (size_t)l * rows * (cols ? cols : 1);
            if (cols == 0 || m->base_format == WEIGHT_F32) {
                safetensors_read_finite(file, t, (cols ? (float*)m->frozen[i].data : *parameter_field(&m->params, i))
                                                     + offset, 0);
            } else if (m->base_format == WEIGHT_BF16) {
                safetensors_read_bf16(file, t, (uint16_t*)m->frozen[i].data + offset,
                                      "hold this checkpoint's base in fp32 (./train --base_dtype fp32, "
                                      "./generate --weights f32; or auto)");
            } else {  // int8, NF4: QUANTIZE_ROWS rows at a time, widened to fp32 and quantised in place
                #pragma omp parallel for schedule(static)
                for (int64_t r0 = 0; r0 < rows; r0 += QUANTIZE_ROWS) {
                    size_t n = (size_t)(rows - r0 < QUANTIZE_ROWS ? rows - r0 : QUANTIZE_ROWS) * cols;
                    float* piece = wide + (size_t)thread_id() * QUANTIZE_ROWS * widest;
                    safetensors_read_finite_range(file, t, piece, (size_t)r0 * cols, n, 0);
                    weight_store(m->frozen[i], offset + (size_t)r0 * cols, piece, n);
                }
            }
            if (cols) m->base_fingerprint = fingerprint_tensor(m->base_fingerprint, t);
            safetensors_release(file, t);
        }
    }
    free(wide);
}

// Checks that the weight files hold every tensor the config implies, with its shape.
void model_check_weights(const char* dir, const LlamaConfig* c) {
    SafeTensors* files;
    int num_files = open_weight_files(&files, dir);
    read_weights(files, num_files, c, dir, NULL);
    for (int f = 0; f < num_files; f++) safetensors_close(&files[f]);
    free(files);
}

// Reads every parameter of the config from the model directory, the frozen matrices in
// `base` (never materialised in fp32 when it is bf16), the rest in fp32. Shapes are
// checked before the weights are allocated, so a config that does not match its
// weights is reported as such rather than as a failed allocation.
void model_load_as(Model* m, const char* dir, WeightFormat base) {
    LlamaConfig config;
    config_load(&config, dir);
    SafeTensors* files;
    int num_files = open_weight_files(&files, dir);
    read_weights(files, num_files, &config, dir, NULL);
    model_create_as(m, &config, base);
    m->base_fingerprint = DIST_HASH_START;
    read_weights(files, num_files, &config, dir, m);
    for (int f = 0; f < num_files; f++) safetensors_close(&files[f]);
    free(files);
}

void model_load(Model* m, const char* dir) { model_load_as(m, dir, WEIGHT_F32); }

// --base_dtype: "auto" keeps the checkpoint's bf16 (torch_dtype bfloat16) when the base
// stays frozen, else fp32; "fp32"; "bf16" (an fp32 checkpoint is rounded).
WeightFormat base_format_from_name(const char* name, const LlamaConfig* c, int full_finetune) {
    if (strcmp(name, "auto") == 0) {
        return !full_finetune && strcmp(c->dtype, "bfloat16") == 0 ? WEIGHT_BF16 : WEIGHT_F32;
    }
    if (strcmp(name, "fp32") == 0) return WEIGHT_F32;
    if (strcmp(name, "bf16") != 0) fail("--base_dtype: unknown dtype '%s' (auto, fp32 or bf16)", name);
    if (full_finetune) {
        fail("--base_dtype bf16 keeps the base frozen but --full_finetune trains it (in fp32); drop one of them");
    }
    if (strcmp(c->dtype, "float16") == 0) {
        fail("--base_dtype bf16: the checkpoint is float16 (config.json torch_dtype), which bf16 would round; "
             "use --base_dtype fp32 (or auto)");
    }
    return WEIGHT_BF16;
}

// ----------------------------------------------------------------------------
// saving: PEFT adapters and merged models, through the atomic SafeTensorsWriter: a crash
// or a full disk never leaves a half-written file under the real name.

// The double nearest the float's shortest decimal form, so 0.05f is written as 0.05.
static double shortest_double(float f) {
    char buf[32];
    snprintf(buf, sizeof(buf), "%.7g", f);
    return strtod(buf, NULL);
}

// Names and shapes of every LoRA tensor of config c under PEFT's keys, layer by layer,
// and where each lies in lora (data, when lora is not NULL). Returns the count.
static int lora_tensor_list(const LlamaConfig* c, const LoraConfig* lc, const LoraTensors* lora, char** names,
                            int64_t* rows, int64_t* cols, float** data) {
    int r = lc->rank, n = 0;
    for (int l = 0; l < c->L; l++) {
        for (int mod = 0; mod < NUM_LORA_MODULES; mod++) {
            if (!lc->target[mod]) continue;
            int in, out;
            lora_module_dims(c, mod, &in, &out);
            for (int which = 0; which < 2; which++) {
                names[n] = malloc_check(160, "tensor name");
                lora_key(names[n], 160, l, mod, which ? 'B' : 'A');
                rows[n] = which ? out : r;
                cols[n] = which ? r : in;
                if (lora) data[n] = which ? lora->B[mod] + (size_t)l * out * r : lora->A[mod] + (size_t)l * r * in;
                n++;
            }
        }
    }
    return n;
}

// A PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) that
// PeftModel.from_pretrained loads onto base_model.
void lora_save_adapter(const Model* m, const char* dir, const char* base_model) {
    make_directory(dir);
    int max = m->config.L * NUM_LORA_MODULES * 2;
    char** names = malloc_check(max * sizeof(char*), "adapter");
    int64_t* rows = malloc_check(max * sizeof(int64_t), "adapter");
    int64_t* cols = malloc_check(max * sizeof(int64_t), "adapter");
    float** data = malloc_check(max * sizeof(float*), "adapter");
    int n = lora_tensor_list(&m->config, &m->lora_config, &m->lora, names, rows, cols, data);
    char* path = path_join(dir, "adapter_model.safetensors");
    // trained on an int8 or NF4 base: which, and the base's fingerprint (./generate decodes from
    // the same quantisation; loading it onto another base fails)
    char fingerprint[24];
    snprintf(fingerprint, sizeof(fingerprint), "%016llx", (unsigned long long)m->base_fingerprint);
    char* quantized[] = {"base_quantization", (char*)WEIGHT_FORMAT_NAMES[m->base_format], "base_fingerprint",
                         fingerprint, NULL};
    int quantized_base = m->base_format == WEIGHT_INT8 || m->base_format == WEIGHT_NF4;
    SafeTensorsWriter w;
    safetensors_writer_open(&w, path, n, names, rows, cols, DTYPE_F32, quantized_base ? quantized : NULL);
    for (int i = 0; i < n; i++) safetensors_writer_tensor(&w, data[i], (size_t)rows[i] * cols[i]);
    safetensors_writer_close(&w);
    free(path);

    const LoraConfig* lc = &m->lora_config;
    cJSON* config = cJSON_CreateObject();
    cJSON_AddStringToObject(config, "peft_type", "LORA");
    cJSON_AddStringToObject(config, "task_type", "CAUSAL_LM");
    cJSON_AddStringToObject(config, "base_model_name_or_path", base_model);
    cJSON_AddNumberToObject(config, "r", lc->rank);
    cJSON_AddNumberToObject(config, "lora_alpha", shortest_double(lc->alpha));
    cJSON_AddNumberToObject(config, "lora_dropout", shortest_double(lc->dropout));
    cJSON* targets = cJSON_AddArrayToObject(config, "target_modules");
    for (int mod = 0; mod < NUM_LORA_MODULES; mod++) {
        if (lc->target[mod]) cJSON_AddItemToArray(targets, cJSON_CreateString(LORA_MODULE_NAMES[mod]));
    }
    cJSON_AddStringToObject(config, "bias", "none");
    cJSON_AddBoolToObject(config, "use_rslora", lc->rslora);
    cJSON_AddBoolToObject(config, "fan_in_fan_out", 0);
    cJSON_AddBoolToObject(config, "inference_mode", 1);
    cJSON_AddBoolToObject(config, "use_dora", 0);
    char* json = cJSON_Print(config);
    path = path_join(dir, "adapter_config.json");
    write_text_file(path, json);
    free(path);
    free(json);
    cJSON_Delete(config);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names); free(rows); free(cols); free(data);
}

// PEFT options this program cannot honour, refused by name rather than ignored: each
// would make the adapter compute something else than what is loaded.
static void lora_refuse_unsupported(const cJSON* json, const char* path) {
    const char* bias = json_string(json, "bias", "none", path);
    if (strcmp(bias, "none") != 0) fail("%s: bias \"%.20s\" is not supported (only \"none\": LoRA without "
                                        "trained biases)", path, bias);
    const char* flags[] = {"use_dora", "fan_in_fan_out", "lora_bias"};
    for (int i = 0; i < 3; i++) {
        if (json_bool(json, flags[i], 0, path)) fail("%s: \"%s\": true is not supported (plain LoRA only)",
                                                     path, flags[i]);
    }
    const char* patterns[] = {"alpha_pattern", "rank_pattern"};
    for (int i = 0; i < 2; i++) {
        cJSON* v = json_field(json, patterns[i]);
        if (v != NULL && !cJSON_IsNull(v) && (!cJSON_IsObject(v) || v->child != NULL)) {
            fail("%s: \"%s\" is not supported (one rank and alpha for every module); it must be empty",
                 path, patterns[i]);
        }
    }
    const char* lists[] = {"layers_to_transform", "modules_to_save"};
    for (int i = 0; i < 2; i++) {
        if (json_has(json, lists[i])) fail("%s: \"%s\" is not supported (adapters on every layer's linear "
                                           "modules only); it must be null", path, lists[i]);
    }
}

// Reads a PEFT adapter's config into lc: every value range-checked, every option that
// would change the adapter's meaning refused.
static void lora_read_adapter_config(LoraConfig* lc, const char* dir) {
    char* path = path_join(dir, "adapter_config.json");
    cJSON* json = json_read_object(path, "; an adapter directory needs adapter_config.json "
                                         "and adapter_model.safetensors");
    const char* type = json_string(json, "peft_type", "LORA", path);
    if (strcmp(type, "LORA") != 0) fail("%s: peft_type is %.40s; only LORA adapters are supported", path, type);
    lora_refuse_unsupported(json, path);
    memset(lc, 0, sizeof(*lc));
    lc->rank = (int)json_int(json, "r", 1, 65536, 1, 0, path);
    lc->alpha = (float)json_number(json, "lora_alpha", 1e-6, 1e6, 1, 0, path);
    lc->dropout = (float)json_number(json, "lora_dropout", 0, 0.99, 0, 0.0, path);
    lc->rslora = json_bool(json, "use_rslora", 0, path);
    cJSON* targets = json_field(json, "target_modules");
    if (cJSON_IsString(targets) && strcmp(targets->valuestring, "all-linear") == 0) {
        for (int mod = 0; mod < NUM_LORA_MODULES; mod++) lc->target[mod] = 1;
    } else if (cJSON_IsArray(targets) && targets->child != NULL) {
        for (cJSON* t = targets->child; t != NULL; t = t->next) {
            int found = 0;
            for (int mod = 0; mod < NUM_LORA_MODULES; mod++) {
                if (cJSON_IsString(t) &&
                    strcmp(t->valuestring, LORA_MODULE_NAMES[mod]) == 0) lc->target[mod] = found = 1;
            }
            if (!found) fail("%s: target module %.40s is not a Llama linear layer", path,
                             cJSON_IsString(t) ? t->valuestring : "(not a string)");
        }
    } else {
        fail("%s: \"target_modules\" must be a non-empty list of module names or \"all-linear\"", path);
    }
    cJSON_Delete(json);
    free(path);
}

// The base format an adapter was trained on: WEIGHT_INT8 or WEIGHT_NF4 from its
// "base_quantization", else WEIGHT_F32 (trained on an unquantised base, or by PEFT; a missing
// file is lora_load_adapter's to report).
WeightFormat lora_adapter_quantization(const char* dir) {
    char* path = path_join(dir, "adapter_model.safetensors");
    if (access(path, R_OK) != 0) {
        free(path);
        return WEIGHT_F32;
    }
    SafeTensors st;
    safetensors_open(&st, path);
    const char* name = safetensors_metadata(&st, "base_quantization");
    WeightFormat f = WEIGHT_F32;
    if (name && strcmp(name, "int8") == 0) f = WEIGHT_INT8;
    else if (name && strcmp(name, "nf4") == 0) f = WEIGHT_NF4;
    else if (name) fail("%s: base_quantization \"%.20s\" is not int8 or nf4; the file is corrupt", path, name);
    safetensors_close(&st);
    free(path);
    return f;
}

// Adds the PEFT adapter in dir to the model (its config decides rank, alpha and targets).
// Every tensor's shape is checked against the config and the model before anything is
// allocated, so the memory an adapter takes is bounded by its file. An adapter trained on a
// quantised base must meet that base (its fingerprint, when the model was loaded from files).
void lora_load_adapter(Model* m, const char* dir, uint32_t seed) {
    LoraConfig lc;
    lora_read_adapter_config(&lc, dir);
    char* path = path_join(dir, "adapter_model.safetensors");
    SafeTensors st;
    safetensors_open(&st, path);
    const char* fingerprint = safetensors_metadata(&st, "base_fingerprint");
    if (fingerprint && m->base_fingerprint && strtoull(fingerprint, NULL, 16) != m->base_fingerprint) {
        fail("%s: trained on the %s quantisation of another base model (fingerprint %.20s, this model's %016llx); "
             "load or merge it with the model it was trained on", path,
             safetensors_metadata(&st, "base_quantization") ? safetensors_metadata(&st, "base_quantization") : "?",
             fingerprint, (unsigned long long)m->base_fingerprint);
    }
    int max = m->config.L * NUM_LORA_MODULES * 2;
    char** names = malloc_check(max * sizeof(char*), "adapter");
    int64_t* rows = malloc_check(max * sizeof(int64_t), "adapter");
    int64_t* cols = malloc_check(max * sizeof(int64_t), "adapter");
    float** data = malloc_check(max * sizeof(float*), "adapter");
    int n = lora_tensor_list(&m->config, &lc, NULL, names, rows, cols, data);
    SafeTensor** found = malloc_check(max * sizeof(SafeTensor*), "adapter");
    for (int i = 0; i < n; i++) {
        found[i] = safetensors_find(&st, names[i]);
        if (found[i] == NULL) fail("%s: missing tensor '%s'; the adapter does not match adapter_config.json or "
                                   "this base model", path, names[i]);
        int64_t dims[2] = {rows[i], cols[i]};
        char implied_by[64];
        snprintf(implied_by, sizeof(implied_by), "adapter_config.json (r = %d) with this base model", lc.rank);
        safetensors_check_shape(&st, found[i], 2, dims, implied_by);
        free(names[i]);
    }
    if (st.n != n) fail("%s: has %d tensors but a rank-%d adapter on this %d-layer model has %d; "
                        "was it made for a different base model?", path, st.n, lc.rank, m->config.L, n);
    model_init_lora(m, &lc, seed);
    lora_tensor_list(&m->config, &lc, &m->lora, names, rows, cols, data);
    for (int i = 0; i < n; i++) {
        safetensors_read_finite(&st, found[i], data[i], 0);
        free(names[i]);
    }
    safetensors_close(&st);
    free(path);
    free(found); free(names); free(rows); free(cols); free(data);
}

// The torch_dtype names of the dtypes a merged model can be written in.
static const char* merge_dtype_torch_name(int dtype) {
    return dtype == DTYPE_BF16 ? "bfloat16" : dtype == DTYPE_F16 ? "float16" : "float32";
}

// The dtype a merged model is written in: dtype_name "auto" (the base model's torch_dtype),
// "fp32", "bf16" or "fp16".
static int merge_dtype_from_name(const char* dtype_name, const LlamaConfig* c) {
    if (strcmp(dtype_name, "auto") == 0) {
        if (strcmp(c->dtype, "bfloat16") == 0) return DTYPE_BF16;
        return strcmp(c->dtype, "float16") == 0 ? DTYPE_F16 : DTYPE_F32;
    }
    if (strcmp(dtype_name, "fp32") == 0) return DTYPE_F32;
    if (strcmp(dtype_name, "bf16") == 0) return DTYPE_BF16;
    if (strcmp(dtype_name, "fp16") == 0) return DTYPE_F16;
    fail("--merge_dtype: unknown dtype '%s' (auto, fp32, bf16 or fp16)", dtype_name);
    return DTYPE_F32;
}

// config.json of the base, with torch_dtype set to the merged model's dtype (a copy when it
// already says so).
static void write_merged_config(const char* base_dir, const char* dir, int dtype) {
    char* from = path_join(base_dir, "config.json");
    char* to = path_join(dir, "config.json");
    if (access(from, R_OK) != 0) {  // a model made in memory (tests) has none
        free(from);
        free(to);
        return;
    }
    char* text = read_file(from, NULL, "");
    cJSON* json = cJSON_Parse(text);
    if (json == NULL) fail("%s: not valid JSON", from);
    cJSON* old = cJSON_GetObjectItemCaseSensitive(json, "torch_dtype");
    const char* want = merge_dtype_torch_name(dtype);
    if (cJSON_IsString(old) && strcmp(old->valuestring, want) == 0) {
        write_text_file(to, text);
    } else {
        cJSON_DeleteItemFromObjectCaseSensitive(json, "torch_dtype");
        cJSON_AddStringToObject(json, "torch_dtype", want);
        char* printed = cJSON_Print(json);
        write_text_file(to, printed);
        free(printed);
    }
    cJSON_Delete(json);
    free(text);
    free(from);
    free(to);
}

// Parameter i of layer l of the merged model: for a LoRA target W + s B A, in fp32 in
// merged; otherwise the model's own tensor in its storage format (RMSNorm weights are fp32).
// With files (an int8 or NF4 base, whose own values are not the checkpoint's), W is the
// checkpoint's tensor re-read into merged (which then holds rows x cols floats).
static Weight merged_parameter(const Model* m, int i, int l, float* merged, float* scaled_B, SafeTensors* files,
                               int num_files) {
    int64_t rows, cols;
    int per_layer;
    parameter_shape(&m->config, i, &rows, &cols, &per_layer);
    if (cols == 0) return weight_f32(*parameter_field((ParameterTensors*)&m->params, i) + l * rows);
    Weight base = base_weight(m, i, l);
    if (files) {
        char name[128];
        parameter_name(name, sizeof(name), i, l);
        SafeTensors* file = NULL;
        SafeTensor* t = find_weight(files, num_files, name, &file);
        if (t == NULL) fail("%s: tensor '%s' is gone; the base model changed since it was loaded", files[0].path,
                            name);
        int64_t dims[2] = {rows, cols};
        safetensors_check_shape(file, t, 2, dims, "the model that was trained");
        safetensors_read_finite(file, t, merged, 0);
        safetensors_release(file, t);
        base = weight_f32(merged);
    }
    int mod = PARAMETERS[i].lora;
    if (!m->use_lora || mod < 0 || !m->lora_config.target[mod]) return base;
    int in, out, r = m->lora_config.rank;
    lora_module_dims(&m->config, mod, &in, &out);
    for (size_t e = 0; files == NULL && e < (size_t)in * out; e++) merged[e] = weight_get(base, e);
    lora_merge(merged, m->lora.A[mod] + (size_t)l * r * in, m->lora.B[mod] + (size_t)l * out * r, m->lora_scale,
               in, out, r, scaled_B);
    return weight_f32(merged);
}

// A complete Hugging Face model directory with the adapter merged in, W' = W + s B A, with
// the base's config and tokenizer files. dtype_name: "auto" writes the base model's dtype,
// as PEFT's merge_and_unload does; merging into bf16 rounds W + s B A to bf16, which loses
// part of a small adapter's effect, so "fp32" keeps the merge exact (see README, Merging).
void model_save_merged(const Model* m, const char* base_dir, const char* dir, const char* dtype_name) {
    const LlamaConfig* c = &m->config;
    int dtype = merge_dtype_from_name(dtype_name, c);
    make_directory(dir);
    int max = NUM_PARAMETER_TENSORS * c->L;
    char** names = malloc_check(max * sizeof(char*), "merged model");
    int64_t* rows = malloc_check(max * sizeof(int64_t), "merged model");
    int64_t* cols = malloc_check(max * sizeof(int64_t), "merged model");
    int n = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        int64_t r, cl;
        int per_layer;
        parameter_shape(c, i, &r, &cl, &per_layer);
        for (int l = 0; r > 0 && l < (per_layer ? c->L : 1); l++, n++) {
            names[n] = malloc_check(128, "tensor name");
            parameter_name(names[n], 128, i, l);
            rows[n] = r;
            cols[n] = cl;
        }
    }
    char* path = path_join(dir, "model.safetensors");
    SafeTensorsWriter w;
    safetensors_writer_open(&w, path, n, names, rows, cols, dtype, NULL);
    int widest = c->I > c->NH * c->hs ? c->I : c->NH * c->hs;  // largest out or in of a module
    size_t buffer_numel = (size_t)widest * c->C;
    SafeTensors* files = NULL;  // an int8 or NF4 base merges into the checkpoint's own weights, re-read
    int num_files = 0;
    if (m->base_format == WEIGHT_INT8 || m->base_format == WEIGHT_NF4) {
        num_files = open_weight_files(&files, base_dir);
        size_t embeddings = (size_t)c->V * c->C;
        buffer_numel = embeddings > buffer_numel ? embeddings : buffer_numel;  // the largest matrix, whole
    }
    float* merged = malloc_check(buffer_numel * sizeof(float), "merged weight");
    int r = m->use_lora ? m->lora_config.rank : 0;
    float* scaled_B = malloc_check((size_t)widest * r * sizeof(float), "merged weight");
    for (int i = 0, k = 0; i < NUM_PARAMETER_TENSORS; i++) {
        int64_t rr, cl;
        int per_layer;
        parameter_shape(c, i, &rr, &cl, &per_layer);
        for (int l = 0; rr > 0 && l < (per_layer ? c->L : 1); l++, k++) {
            size_t numel = (size_t)rr * (cl ? cl : 1);
            Weight w_l = merged_parameter(m, i, l, merged, scaled_B, files, num_files);
            for (size_t done = 0; done < numel; done += buffer_numel) {  // parts of the buffer's size
                size_t part = numel - done < buffer_numel ? numel - done : buffer_numel;
                if (w_l.format == WEIGHT_F32) {
                    safetensors_writer_part(&w, (const float*)w_l.data + done, part);
                } else {  // widened from the base's storage
                    for (size_t e = 0; e < part; e++) merged[e] = weight_get(w_l, done + e);
                    safetensors_writer_part(&w, merged, part);
                }
            }
            safetensors_writer_tensor(&w, merged, 0);  // ends the tensor
            free(names[k]);
        }
    }
    safetensors_writer_close(&w);
    for (int f = 0; f < num_files; f++) safetensors_close(&files[f]);
    free(files);
    free(path);
    free(merged);
    free(scaled_B);
    free(names); free(rows); free(cols);
    write_merged_config(base_dir, dir, dtype);
    const char* copies[] = {"generation_config.json", "tokenizer.json", "tokenizer_config.json",
                            "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof(copies) / sizeof(copies[0]); i++) {
        char* from = path_join(base_dir, copies[i]);
        char* to = path_join(dir, copies[i]);
        if (access(from, R_OK) == 0) copy_file(from, to);
        free(from);
        free(to);
    }
}

#endif  // LLMC_HF_H
