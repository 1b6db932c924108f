// safetensors.h: SafeTensors reader (safetensors_open, _find, _read_floats, ...) and SafeTensorsWriter
#ifndef LLMC_SAFETENSORS_H
#define LLMC_SAFETENSORS_H

#include <fcntl.h>
#include <float.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "utils.h"
#include "json.h"

// ----------------------------------------------------------------------------
// safetensors: u64 header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
// then the data buffer. The file is mapped read-only; every rule of the format is
// checked before a byte of tensor data is used.

enum { DTYPE_F32, DTYPE_F16, DTYPE_BF16, DTYPE_I32, DTYPE_I64, NUM_DTYPES };
static const char* DTYPE_NAMES[NUM_DTYPES] = {"F32", "F16", "BF16", "I32", "I64"};
static const size_t DTYPE_SIZES[NUM_DTYPES] = {4, 2, 2, 4, 8};
#define SAFETENSORS_MAX_HEADER (100u * 1000u * 1000u)
#define SAFETENSORS_MAX_DIMS 8

typedef struct {
    char* name;
    int dtype;
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    size_t numel;
    const uint8_t* data;
    size_t begin, end;  // offsets into the data buffer
} SafeTensor;

typedef struct {
    char* path;
    uint8_t* map;
    size_t size;
    int n;
    SafeTensor* tensors;
    SafeTensor** by_name;  // (n) the tensors sorted by name, for safetensors_find
    cJSON* metadata;  // the "__metadata__" object (owned by header), or NULL
    cJSON* header;
    int uncached;  // safetensors_release also drops the tensor's pages from the kernel's page cache
} SafeTensors;

static int compare_tensor_begin(const void* a, const void* b) {
    const SafeTensor* x = *(const SafeTensor* const*)a;
    const SafeTensor* y = *(const SafeTensor* const*)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

static int compare_tensor_name(const void* a, const void* b) {
    return strcmp((*(const SafeTensor* const*)a)->name, (*(const SafeTensor* const*)b)->name);
}

// A shape entry or offset: a non-negative integer that a double holds exactly (below 2^53).
static int safetensors_integer(const cJSON* v, double max) {
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= max && v->valuedouble == floor(v->valuedouble);
}

static void safetensors_parse_entry(SafeTensors* st, SafeTensor* t, const cJSON* entry, size_t data_size) {
    const char* path = st->path;
    cJSON* dtype = json_field(entry, "dtype");
    cJSON* shape = json_field(entry, "shape");
    cJSON* offsets = json_field(entry, "data_offsets");
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offsets)) {
        fail("%s: tensor '%s' needs \"dtype\", \"shape\" and \"data_offsets\"; the file is not valid safetensors",
             path, t->name);
    }
    t->dtype = -1;
    for (int d = 0; d < NUM_DTYPES; d++) if (strcmp(dtype->valuestring, DTYPE_NAMES[d]) == 0) t->dtype = d;
    if (t->dtype < 0) fail("%s: tensor '%s' has unsupported dtype %.40s (supported: F32, F16, BF16)",
                           path, t->name, dtype->valuestring);
    t->ndim = cJSON_GetArraySize(shape);
    if (t->ndim > SAFETENSORS_MAX_DIMS) fail("%s: tensor '%s' has %d dimensions (at most %d)",
                                             path, t->name, t->ndim, SAFETENSORS_MAX_DIMS);
    t->numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        cJSON* dim = cJSON_GetArrayItem(shape, i);
        if (!safetensors_integer(dim, 1e15)) fail("%s: tensor '%s' has an invalid shape entry (expected a "
                                                  "non-negative integer)", path, t->name);
        t->shape[i] = (int64_t)dim->valuedouble;
        if (t->shape[i] > 0 && t->numel > SIZE_MAX / 8 / (size_t)t->shape[i]) fail("%s: tensor '%s' has an "
                                                                                    "impossibly large shape",
                                                                                    path, t->name);
        t->numel *= (size_t)t->shape[i];
    }
    cJSON* b = cJSON_GetArrayItem(offsets, 0);
    cJSON* e = cJSON_GetArrayItem(offsets, 1);
    if (cJSON_GetArraySize(offsets) != 2 || !safetensors_integer(b, 9007199254740992.0) ||
        !safetensors_integer(e, 9007199254740992.0) || e->valuedouble < b->valuedouble) {
        fail("%s: tensor '%s' has invalid data_offsets (expected [begin, end], integers with begin <= end)",
             path, t->name);
    }
    if (e->valuedouble > (double)data_size) {
        fail("%s: tensor '%s' data_offsets [%.0f, %.0f] run past the end of the data (%zu bytes); "
             "the file is truncated or corrupt",
             path, t->name, b->valuedouble, e->valuedouble, data_size);
    }
    t->begin = (size_t)b->valuedouble;
    t->end = (size_t)e->valuedouble;
    if (t->end - t->begin != t->numel * DTYPE_SIZES[t->dtype]) {
        fail("%s: tensor '%s' has %zu bytes but shape and dtype %s need %zu", path, t->name,
             t->end - t->begin, DTYPE_NAMES[t->dtype], t->numel * DTYPE_SIZES[t->dtype]);
    }
}

// Offsets must tile the data buffer exactly: no holes, no overlap, ending at EOF.
static void safetensors_check_layout(SafeTensors* st, size_t data_size) {
    st->by_name = malloc_check((st->n + 1) * sizeof(SafeTensor*), "safetensors index");
    for (int i = 0; i < st->n; i++) st->by_name[i] = &st->tensors[i];
    qsort(st->by_name, st->n, sizeof(SafeTensor*), compare_tensor_name);
    for (int i = 1; i < st->n; i++) {
        if (strcmp(st->by_name[i - 1]->name, st->by_name[i]->name) == 0) {
            fail("%s: tensor '%s' appears twice in the header", st->path, st->by_name[i]->name);
        }
    }
    SafeTensor** order = malloc_check((st->n + 1) * sizeof(SafeTensor*), "safetensors index");
    memcpy(order, st->by_name, st->n * sizeof(SafeTensor*));
    qsort(order, st->n, sizeof(SafeTensor*), compare_tensor_begin);
    size_t expect = 0;
    for (int i = 0; i < st->n; i++) {
        if (order[i]->begin < expect) fail("%s: tensor '%s' overlaps tensor '%s'",
                                           st->path, order[i]->name, order[i - 1]->name);
        if (order[i]->begin > expect) fail("%s: hole in the data buffer before tensor '%s' (offset %zu, expected %zu)",
                                           st->path, order[i]->name, order[i]->begin, expect);
        expect = order[i]->end;
    }
    if (expect != data_size) fail("%s: data buffer is %zu bytes but the tensors cover %zu; "
                                  "the file is truncated or has trailing bytes", st->path, data_size, expect);
    free(order);
}

// JSON text is UTF-8 with no raw control characters (cJSON would accept a raw NUL inside
// a name and silently cut the name there).
static int json_text_valid(const uint8_t* s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t b = s[i];
        int extra = b < 0x80 ? 0 : (b & 0xE0) == 0xC0 ? 1 : (b & 0xF0) == 0xE0 ? 2 : (b & 0xF8) == 0xF0 ? 3 : -1;
        // bad or cut-off sequence
        if (extra < 0 || (extra == 1 && b < 0xC2) || i + extra >= n + (extra == 0)) return 0;
        if (b < 0x20 && b != '\t' && b != '\n' && b != '\r') return 0;
        for (int k = 1; k <= extra; k++) if ((s[i + k] & 0xC0) != 0x80) return 0;
        i += 1 + extra;
    }
    return 1;
}

// "__metadata__": an object of strings (the format's rule; PEFT and transformers read it so).
static void safetensors_check_metadata(const SafeTensors* st, const cJSON* metadata) {
    if (!cJSON_IsObject(metadata)) fail("%s: \"__metadata__\" must be an object of strings", st->path);
    for (const cJSON* item = metadata->child; item != NULL; item = item->next) {
        if (!cJSON_IsString(item)) fail("%s: \"__metadata__\" entry '%s' must be a string", st->path, item->string);
    }
}

// Maps path, or fails. The descriptor is closed before any check can fail.
static void safetensors_map(SafeTensors* st, const char* path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) fail("cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    int regular = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode);
    st->size = regular ? (size_t)sb.st_size : 0;
    st->map = regular && st->size >= 8 ? mmap(NULL, st->size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    int map_error = errno;
    close(fd);
    if (!regular) fail("%s is not a regular file", path);
    if (st->size < 8) fail("%s: file is %zu bytes, too short for a safetensors header; the file is truncated",
                           path, st->size);
    if (st->map == MAP_FAILED) {
        st->map = NULL;
        fail("cannot map %s: %s", path, strerror(map_error));
    }
}

void safetensors_open(SafeTensors* st, const char* path) {
    memset(st, 0, sizeof(*st));
    st->path = strdup_check(path);
    safetensors_map(st, path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | st->map[i];
    if (n > SAFETENSORS_MAX_HEADER) fail("%s: header length %llu is over the 100 MB limit; the file is corrupt",
                                         path, (unsigned long long)n);
    if (n > st->size - 8) fail("%s: header length %llu runs past the end of the file (%zu bytes); "
                               "the file is truncated", path, (unsigned long long)n, st->size);
    if (n < 2 || st->map[8] != '{') fail("%s: header does not start with '{'; not a safetensors file", path);
    const char* text = (const char*)st->map + 8;
    if (!json_text_valid(st->map + 8, (size_t)n)) fail("%s: header is not valid JSON (a control character or "
                                                      "invalid UTF-8)", path);
    const char *at, *why;
    st->header = json_parse_value(text, (size_t)n, &at, &why);
    if (st->header == NULL || !cJSON_IsObject(st->header)) {
        fail("%s: header is not valid JSON: %s at byte %zu of the header", path, st->header ? "not an object" : why,
             st->header ? (size_t)0 : (size_t)(at - text));
    }
    size_t data_size = st->size - 8 - (size_t)n;
    int count = cJSON_GetArraySize(st->header);
    st->tensors = malloc_check((count + 1) * sizeof(SafeTensor), "safetensors index");
    for (cJSON* entry = st->header->child; entry != NULL; entry = entry->next) {
        if (strcmp(entry->string, "__metadata__") == 0) {
            if (st->metadata != NULL) fail("%s: \"__metadata__\" appears twice in the header", path);
            safetensors_check_metadata(st, entry);
            st->metadata = entry;
            continue;
        }
        if (!cJSON_IsObject(entry)) fail("%s: header entry '%s' is not an object", path, entry->string);
        SafeTensor* t = &st->tensors[st->n++];
        t->name = entry->string;
        safetensors_parse_entry(st, t, entry, data_size);
        t->data = st->map + 8 + n + t->begin;
    }
    safetensors_check_layout(st, data_size);
}

void safetensors_close(SafeTensors* st) {
    if (st->map != NULL) munmap(st->map, st->size);
    cJSON_Delete(st->header);
    free(st->tensors);
    free(st->by_name);
    free(st->path);
    memset(st, 0, sizeof(*st));
}

SafeTensor* safetensors_find(SafeTensors* st, const char* name) {
    int lo = 0, hi = st->n;  // binary search: a header may list millions of tensors
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2, order = strcmp(st->by_name[mid]->name, name);
        if (order == 0) return st->by_name[mid];
        if (order < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

// "__metadata__" value for key, or NULL
const char* safetensors_metadata(SafeTensors* st, const char* key) {
    cJSON* v = json_field(st->metadata, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static float f16_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exponent = (h >> 10) & 31, mantissa = h & 1023, bits;
    if (exponent == 31) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else if (exponent == 0) {
        float f = ldexpf((float)mantissa, -24);  // zero or subnormal
        return sign ? -f : f;
    } else {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// Fails unless tensor t has exactly the expected dims (ndim entries); implied_by names
// what they come from ("config.json").
void safetensors_check_shape(SafeTensors* st, SafeTensor* t, int ndim, const int64_t* dims, const char* implied_by) {
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == dims[i];
    if (ok) return;
    char want[128] = "", got[128] = "";
    for (int i = 0; i < ndim; i++) snprintf(want + strlen(want), sizeof(want) - strlen(want),
                                            "%s%lld", i ? "," : "", (long long)dims[i]);
    for (int i = 0; i < t->ndim; i++) snprintf(got + strlen(got), sizeof(got) - strlen(got),
                                               "%s%lld", i ? "," : "", (long long)t->shape[i]);
    fail("%s: tensor '%s' has shape [%s] but %s implies [%s]; the file does not match it", st->path, t->name, got,
         implied_by, want);
}

// Converts tensor t (F32, BF16 or F16) to fp32 into dst.
// Elements first .. first+n-1 of tensor t as fp32, into dst (n).
void safetensors_read_floats_range(SafeTensors* st, SafeTensor* t, float* dst, size_t first, size_t n) {
    const uint8_t* src = t->data + first * DTYPE_SIZES[t->dtype];
    switch (t->dtype) {
    case DTYPE_F32: memcpy(dst, src, n * 4); break;
    case DTYPE_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = bf16_to_float((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
        break;
    case DTYPE_F16:
        for (size_t i = 0; i < n; i++) dst[i] = f16_to_float((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
        break;
    default: fail("%s: tensor '%s' has dtype %s; weights must be F32, F16 or BF16",
                  st->path, t->name, DTYPE_NAMES[t->dtype]);
    }
}

void safetensors_read_floats(SafeTensors* st, SafeTensor* t, float* dst) {
    safetensors_read_floats_range(st, t, dst, 0, t->numel);
}

// Tensor t as bf16 into dst: BF16 as it is, F32 rounded to nearest even; every value
// checked finite. F16 is refused (bf16 keeps 7 of its 10 mantissa bits): `instead` says
// what to do then.
void safetensors_read_bf16(SafeTensors* st, SafeTensor* t, uint16_t* dst, const char* instead) {
    const uint8_t* src = t->data;
    switch (t->dtype) {
    case DTYPE_BF16:
        for (size_t i = 0; i < t->numel; i++) dst[i] = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
        break;
    case DTYPE_F32:
        for (size_t i = 0; i < t->numel; i++) {
            float f;
            memcpy(&f, src + 4 * i, 4);
            dst[i] = float_to_bf16(f);
        }
        break;
    default: fail("%s: tensor '%s' has dtype %s; a bf16 base reads F32 or BF16 weights; %s",
                  st->path, t->name, DTYPE_NAMES[t->dtype], instead);
    }
    size_t bad = 0;
    for (size_t i = 0; i < t->numel; i++) bad += (dst[i] & 0x7f80) == 0x7f80;  // exponent all ones: inf or NaN
    for (size_t i = 0; bad > 0 && i < t->numel; i++) {
        if ((dst[i] & 0x7f80) == 0x7f80) {
            fail("%s: tensor '%s' holds %g at element %zu; expected finite values; the file is corrupt", st->path,
                 t->name, bf16_to_float(dst[i]), i);
        }
    }
}

// Drops tensor t's pages from this process's memory (the kernel keeps them in its page
// cache, unless st->uncached): called after a tensor is read, so that loading holds the
// model plus one tensor, not the model plus every page of the file it has read.
void safetensors_release(SafeTensors* st, SafeTensor* t) {
    if (st->map == NULL || t->end == t->begin) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), from = (uintptr_t)t->data, to = from + (t->end - t->begin);
    from -= from % page;
    madvise((void*)from, to - from, MADV_DONTNEED);  // a private, unwritten map: re-reading faults the file in
    int fd = st->uncached ? open(st->path, O_RDONLY) : -1;
    if (fd >= 0) {
        posix_fadvise(fd, (off_t)(from - (uintptr_t)st->map), (off_t)(to - from), POSIX_FADV_DONTNEED);
        close(fd);
    }
}

// safetensors_read_floats_range, then every value checked: weights that are NaN or infinite
// (or negative, with nonnegative set: AdamW's second moments) would only show up later as a
// NaN loss or NaN logits, far from their cause.
void safetensors_read_finite_range(SafeTensors* st, SafeTensor* t, float* dst, size_t first, size_t n,
                                   int nonnegative) {
    safetensors_read_floats_range(st, t, dst, first, n);
    float lowest = nonnegative ? 0.0f : -FLT_MAX;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += !(dst[i] >= lowest && dst[i] <= FLT_MAX);  // NaN fails both
    for (size_t i = 0; bad > 0 && i < n; i++) {  // (a loop without an early exit vectorises)
        if (!(dst[i] >= lowest && dst[i] <= FLT_MAX)) {
            fail("%s: tensor '%s' holds %g at element %zu; %s", st->path, t->name, dst[i], first + i,
                 nonnegative ? "expected a finite value >= 0; the file is corrupt"
                             : "expected finite values; the file is corrupt or the training that wrote it diverged");
        }
    }
}

void safetensors_read_finite(SafeTensors* st, SafeTensor* t, float* dst, int nonnegative) {
    safetensors_read_finite_range(st, t, dst, 0, t->numel, nonnegative);
}

// Round to nearest even, as a (_Float16) cast does (checked against it on all 2^32
// floats, NaN payloads included), in plain integer code: clang before 15 has no _Float16
// on x86, and the fuzzers (make fuzz) are built with clang.
static uint16_t float_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t magnitude = x & 0x7FFFFFFFu;
    if (magnitude > 0x7F800000u) return sign | 0x7E00u | (uint16_t)((magnitude >> 13) & 0x3FFu);  // NaN stays NaN
    if (magnitude >= 0x477FF000u) return sign | 0x7C00u;  // 65520 and above round to infinity
    if (magnitude < 0x38800000u) {  // below 2^-14: a subnormal half, in units of 2^-24
        float scaled, half = 0.5f;
        memcpy(&scaled, &magnitude, 4);
        scaled += half;  // the sum's last bit is worth 2^-24: rounded to nearest even there
        uint32_t bits, half_bits;
        memcpy(&bits, &scaled, 4);
        memcpy(&half_bits, &half, 4);
        return sign | (uint16_t)(bits - half_bits);
    }
    uint32_t rounded = magnitude + 0xFFFu + ((magnitude >> 13) & 1u);  // to nearest even at bit 13
    return sign | (uint16_t)((rounded - 0x38000000u) >> 13);           // exponent bias 127 -> 15
}

#define MAX_WRITER_TENSORS 4096
typedef struct {
    FileWriter file;
    int count, written;
    int dtype;  // of every tensor in the file: F32, BF16 or F16
} SafeTensorsWriter;

// Writes the header for tensors names[i] with shape (rows[i], cols[i]) (cols 0 = 1-D), all
// of one dtype, laid out in order; the data then follows with safetensors_writer_tensor.
// metadata: NULL or NULL-terminated key, value pairs added to {"format": "pt"}.
void safetensors_writer_open(SafeTensorsWriter* w, const char* path, int count, char** names,
                             const int64_t* rows, const int64_t* cols, int dtype, char** metadata) {
    cJSON* header = cJSON_CreateObject();
    cJSON* meta = cJSON_AddObjectToObject(header, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    for (int i = 0; metadata && metadata[i]; i += 2) cJSON_AddStringToObject(meta, metadata[i], metadata[i + 1]);
    size_t offset = 0;
    for (int i = 0; i < count; i++) {
        cJSON* t = cJSON_AddObjectToObject(header, names[i]);
        cJSON_AddStringToObject(t, "dtype", DTYPE_NAMES[dtype]);
        double shape[2] = {(double)rows[i], (double)cols[i]};
        cJSON_AddItemToObject(t, "shape", cJSON_CreateDoubleArray(shape, cols[i] ? 2 : 1));
        size_t bytes = (size_t)rows[i] * (cols[i] ? cols[i] : 1) * DTYPE_SIZES[dtype];
        double offsets[2] = {(double)offset, (double)(offset + bytes)};
        cJSON_AddItemToObject(t, "data_offsets", cJSON_CreateDoubleArray(offsets, 2));
        offset += bytes;
    }
    char* json = cJSON_PrintUnformatted(header);
    size_t n = strlen(json), padded = (n + 7) / 8 * 8;
    uint8_t length[8];
    for (int i = 0; i < 8; i++) length[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    file_writer_open(&w->file, path);
    file_writer_write(&w->file, length, 8);
    file_writer_write(&w->file, json, n);
    file_writer_write(&w->file, "        ", padded - n);
    w->count = count;
    w->written = 0;
    w->dtype = dtype;
    free(json);
    cJSON_Delete(header);
}

// The next n values of the tensor being written, converted from fp32 to the file's dtype;
// a tensor may come in several parts, safetensors_writer_tensor ends it.
void safetensors_writer_part(SafeTensorsWriter* w, const float* data, size_t n) {
    uint16_t buffer[4096];
    if (w->dtype == DTYPE_F32) {
        file_writer_write(&w->file, data, n * sizeof(float));
    } else {
        for (size_t i = 0; i < n; i += 4096) {
            size_t k = n - i < 4096 ? n - i : 4096;
            for (size_t j = 0; j < k; j++) buffer[j] = w->dtype == DTYPE_BF16 ? float_to_bf16(data[i + j])
                                                                              : float_to_f16(data[i + j]);
            file_writer_write(&w->file, buffer, k * 2);
        }
    }
}

// The next tensor's (last) n values.
void safetensors_writer_tensor(SafeTensorsWriter* w, const float* data, size_t n) {
    safetensors_writer_part(w, data, n);
    w->written++;
}

void safetensors_writer_close(SafeTensorsWriter* w) {
    if (w->written != w->count) fail("internal error: %s got %d of %d tensors", w->file.path, w->written, w->count);
    file_writer_close(&w->file);
}

#endif  // LLMC_SAFETENSORS_H
