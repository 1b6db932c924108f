/*
tokenizer.c: Llama 3 and Llama 2 tokenizers from Hugging Face tokenizer.json files,
chat templates with loss masks, and a byte-level BPE trainer, in one file.

Encodes byte-exactly as Hugging Face tokenizers, with no regex library: the Llama 3
split pattern is a hand-written scanner over code points, using Unicode tables generated
by test/gen_unicode_tables.py into unicode_tables.h. Read top to bottom
(llmc/utils.h has the checked wrappers): growable buffers, UTF-8, Unicode classes,
loading, the pre-tokenizer, BPE, encode, decode, chat templates, the trainer, the
command line.

The API is in tokenizer.h. Other programs link this file compiled with -DTRAIN_NO_MAIN,
which leaves out main (make tokenizer.o); without it this file is the CLI:
    ./tokenizer encode|decode|chat|train ...   (./tokenizer with no arguments: usage)
*/
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <cjson/cJSON.h>
#include "tokenizer.h"
#include "unicode_tables.h"
#include "llmc/utils.h"  // defines: fail, malloc_check, realloc_check, strdup_check, path_join, read_file

// Growable buffers: capacity doubles, so appends cost amortised O(1) and nothing is
// allocated per token.
void text_append(TextBuffer* b, const void* bytes, size_t len) {
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + len + 1) cap *= 2;
        b->data = realloc_check(b->data, cap, "a text buffer");
        b->cap = cap;
    }
    if (len) memcpy(b->data + b->len, bytes, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void text_free(TextBuffer* b) { free(b->data); memset(b, 0, sizeof(*b)); }

void tokens_push(Tokens* t, int id, int mask) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        t->ids = realloc_check(t->ids, t->cap * sizeof(int), "token ids");
        t->mask = realloc_check(t->mask, t->cap, "a loss mask");
    }
    t->ids[t->n] = id;
    t->mask[t->n] = (unsigned char)mask;
    t->n++;
}

void tokens_free(Tokens* t) { free(t->ids); free(t->mask); memset(t, 0, sizeof(*t)); }

typedef struct { size_t* data; size_t n, cap; } SizeList;   // token end offsets, for masks

static void sizes_push(SizeList* l, size_t v) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->data = realloc_check(l->data, l->cap * sizeof(size_t), "token offsets");
    }
    l->data[l->n++] = v;
}

// ----------------------------------------------------------------------------
// UTF-8. Invalid input is replaced the way Rust's String::from_utf8_lossy (and so
// Hugging Face) does it: each maximal invalid subpart becomes one U+FFFD.

static const char REPLACEMENT_CHAR[] = "\xEF\xBF\xBD";

// Looks at the character starting at s[0], with n bytes available. Returns its length
// if it is valid, 0 if the n bytes are a valid but unfinished prefix, or -k if the
// first k >= 1 bytes are a maximal invalid subpart (to be replaced by one U+FFFD).
static int utf8_check(const unsigned char* s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int need;
    unsigned lo = 0x80, hi = 0xBF;   // the range allowed for the second byte
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) { need = 2; lo = 0xA0; }           // no overlong forms
    else if (c == 0xED) { need = 2; hi = 0x9F; }           // no surrogates
    else if (c >= 0xE1 && c <= 0xEF) need = 2;
    else if (c == 0xF0) { need = 3; lo = 0x90; }
    else if (c == 0xF4) { need = 3; hi = 0x8F; }           // nothing above U+10FFFF
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else return -1;
    for (int k = 1; k <= need; k++) {
        if ((size_t)k >= n) return 0;
        if (s[k] < lo || s[k] > hi) return -k;
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

// Index of the first invalid byte of s[0..n), or n when it is all valid.
static size_t utf8_valid_prefix(const unsigned char* s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        int k = utf8_check(s + i, n - i);
        if (k <= 0) return i;
        i += (size_t)k;
    }
    return n;
}

// Appends s[0..n) to out with invalid subparts replaced by U+FFFD.
static void utf8_append_lossy(TextBuffer* out, const unsigned char* s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t valid = i + utf8_valid_prefix(s + i, n - i);
        text_append(out, s + i, valid - i);
        if (valid == n) break;
        int k = utf8_check(s + valid, n - valid);
        text_append(out, REPLACEMENT_CHAR, 3);
        i = valid + (size_t)(k == 0 ? (int)(n - valid) : -k);   // an unfinished tail is one subpart
    }
}

// Decodes the (valid) character at s[0]; returns its length.
static int utf8_decode(const unsigned char* s, uint32_t* cp) {
    if (s[0] < 0x80) { *cp = s[0]; return 1; }
    if (s[0] < 0xE0) { *cp = ((s[0] & 0x1Fu) << 6) | (s[1] & 0x3Fu); return 2; }
    if (s[0] < 0xF0) { *cp = ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu); return 3; }
    *cp = ((s[0] & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
    return 4;
}

static int utf8_encode(uint32_t cp, char* out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// ----------------------------------------------------------------------------
// Unicode classes for the Llama 3 split regex: \p{L}, \p{N}, \s, and [\r\n].
// A flat table for the Basic Multilingual Plane (built once from the ranges in
// unicode_tables.h), binary search above it.

enum { CLASS_LETTER = 1, CLASS_NUMBER = 2, CLASS_SPACE = 4, CLASS_NEWLINE = 8 };
static unsigned char bmp_class[0x10000];
static int bmp_class_ready = 0;

static int in_ranges(const uint32_t (*ranges)[2], int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < ranges[mid][0]) hi = mid - 1;
        else if (cp > ranges[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

#define N_RANGES(a) ((int)(sizeof(a) / sizeof(a[0])))

static int unicode_class_slow(uint32_t cp) {
    int c = 0;
    if (in_ranges(unicode_letter_ranges, N_RANGES(unicode_letter_ranges), cp)) c |= CLASS_LETTER;
    if (in_ranges(unicode_number_ranges, N_RANGES(unicode_number_ranges), cp)) c |= CLASS_NUMBER;
    if (in_ranges(unicode_space_ranges, N_RANGES(unicode_space_ranges), cp)) c |= CLASS_SPACE;
    if (cp == '\r' || cp == '\n') c |= CLASS_NEWLINE;
    return c;
}

static void unicode_init(void) {
    if (bmp_class_ready) return;
    for (uint32_t cp = 0; cp < 0x10000; cp++) bmp_class[cp] = (unsigned char)unicode_class_slow(cp);
    bmp_class_ready = 1;
}

static inline int unicode_class(uint32_t cp) {
    return cp < 0x10000 ? bmp_class[cp] : unicode_class_slow(cp);
}

// ----------------------------------------------------------------------------
// GPT-2 byte-level mapping: byte-level vocabularies spell each byte as one printable
// character. Bytes 0x21-0x7E, 0xA1-0xAC, 0xAE-0xFF stand for themselves; the other 68
// bytes, in ascending order, are U+0100, U+0101, ... (space -> U+0120 'Ġ', \n -> U+010A 'Ċ').

static uint32_t byte_to_char[256];

static void byte_level_init(void) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        byte_to_char[b] = printable ? (uint32_t)b : 0x100u + (uint32_t)n++;
    }
}

static int char_to_byte(uint32_t cp) {
    if (cp < 0x100) return ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || cp >= 0xAE) ? (int)cp : -1;
    for (int b = 0; b < 256; b++) if (byte_to_char[b] == cp) return b;
    return -1;
}

// Byte-level spelling of a vocabulary entry -> raw bytes. Returns the byte count, or -1
// if a character is not in the mapping (such an entry can never come out of BPE).
static int byte_level_to_bytes(const char* s, size_t n, char* out) {
    size_t i = 0;
    int m = 0;
    while (i < n) {
        uint32_t cp;
        if (utf8_check((const unsigned char*)s + i, n - i) <= 0) return -1;
        i += (size_t)utf8_decode((const unsigned char*)s + i, &cp);
        int b = char_to_byte(cp);
        if (b < 0) return -1;
        out[m++] = (char)b;
    }
    return m;
}

// ----------------------------------------------------------------------------
// hash tables: token bytes -> id, and (left id, right id) -> merge rank and result

static inline uint64_t hash_bytes(const unsigned char* s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 29);
}

static inline uint64_t hash_pair(uint64_t key) {
    key *= 0x9E3779B97F4A7C15ull;
    return key ^ (key >> 31);
}

static uint32_t table_size_for(size_t n) {
    uint32_t size = 1024;
    while (size < 2 * n) size *= 2;
    return size;
}

// A hash table of strings -> ids over an arena: id's string is arena[start[id] .. start[id+1]).
// The vocabulary hashes BPE keys (key_bytes), the added tokens their texts (text_bytes).
static inline int table_find(const int32_t* slots, uint32_t mask, const char* arena, const uint32_t* start,
                             const char* s, size_t n) {
    uint32_t slot = (uint32_t)hash_bytes((const unsigned char*)s, n) & mask;
    for (;;) {
        int id = slots[slot];
        if (id < 0) return -1;
        if (start[id + 1] - start[id] == n && memcmp(arena + start[id], s, n) == 0) return id;
        slot = (slot + 1) & mask;
    }
}

static void table_insert(int32_t* slots, uint32_t mask, const char* arena, const uint32_t* start, int id) {
    uint32_t n = start[id + 1] - start[id];
    uint32_t slot = (uint32_t)hash_bytes((const unsigned char*)arena + start[id], n) & mask;
    while (slots[slot] >= 0) slot = (slot + 1) & mask;
    slots[slot] = id;
}

static inline int vocab_find(const Tokenizer* t, const char* s, size_t n) {
    return table_find(t->vocab_slots, t->vocab_mask, t->key_bytes, t->key_start, s, n);
}

static inline int added_find(const Tokenizer* t, const char* s, size_t n) {
    return table_find(t->added_slots, t->added_mask, t->text_bytes, t->text_start, s, n);
}

#define NO_MERGE UINT64_MAX

// -> rank << 32 | merged id, or NO_MERGE
static inline uint64_t merge_find(const Tokenizer* t, int left, int right) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint32_t slot = (uint32_t)hash_pair(key) & t->merge_mask;
    for (;;) {
        uint64_t k = t->merge_keys[slot];
        if (k == key) return t->merge_values[slot];
        if (k == NO_MERGE) return NO_MERGE;
        slot = (slot + 1) & t->merge_mask;
    }
}

// A pair listed twice keeps its first (lowest) rank, as Hugging Face does.
static void merge_insert(Tokenizer* t, int left, int right, uint32_t rank, int merged) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint32_t slot = (uint32_t)hash_pair(key) & t->merge_mask;
    while (t->merge_keys[slot] != NO_MERGE) {
        if (t->merge_keys[slot] == key) return;
        slot = (slot + 1) & t->merge_mask;
    }
    t->merge_keys[slot] = key;
    t->merge_values[slot] = (uint64_t)rank << 32 | (uint32_t)merged;
}

// ----------------------------------------------------------------------------
// loading tokenizer.json (+ tokenizer_config.json). The files may be hostile: they must be
// UTF-8 JSON without NUL characters; every id is a whole number below the number of tokens
// the file lists, so no table is sized by a number read from it; every field is checked
// before use; what tokenizer.c does not implement is refused by name. A problem is one
// "error: FILE: ..." line and exit 1.

// Far more tokens, added tokens or merges than any real tokenizer has (Llama 3: 128,256
// tokens and 280,147 merges); keeps every count, id and table size inside int and uint32_t.
#define MAX_ENTRIES (1 << 24)

// The only split pattern the hand-written pre-tokenizer implements.
static const char LLAMA3_PATTERN[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

typedef struct { char text[96]; } Shown;

// A string from the file as it goes into a one-line error message: control characters
// escaped, a long one cut at a character boundary. Use as shown_bytes(s, n).text.
static Shown shown_bytes(const char* s, size_t n) {
    Shown out;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (j > sizeof(out.text) - 12 && (c & 0xC0) != 0x80) { memcpy(out.text + j, "...", 3); j += 3; break; }
        if (c < 0x20 || c == 0x7F) j += (size_t)snprintf(out.text + j, 5, "\\x%02X", c);
        else out.text[j++] = (char)c;
    }
    out.text[j] = '\0';
    return out;
}

static Shown shown(const char* s) { return shown_bytes(s ? s : "(none)", strlen(s ? s : "(none)")); }

// Parses a JSON file's text after refusing what cJSON would silently get wrong: NUL bytes,
// invalid UTF-8, and \u0000 escapes ("a\u0000b" would become the C string "a"). Text after
// the JSON value is an error too.
static cJSON* parse_json_file(const char* text, size_t len, const char* path) {
    const char* nul = memchr(text, '\0', len);
    if (nul) fail("%s: byte %zu is a NUL byte; a JSON file is text (is this the right file?)", path,
                  (size_t)(nul - text));
    size_t valid = utf8_valid_prefix((const unsigned char*)text, len);
    if (valid < len) fail("%s: byte %zu is not valid UTF-8; JSON files must be UTF-8 text (re-save it as UTF-8)",
                          path, valid);
    for (size_t i = 0; i + 1 < len; i++) {
        if (text[i] != '\\') continue;
        if (text[i + 1] == 'u' && len - i >= 6 && memcmp(text + i + 2, "0000", 4) == 0) {
            fail("%s: byte %zu: the escape \\u0000 (a NUL character) cannot be part of a token or a name; "
                 "remove it", path, i);
        }
        i++;   // the escaped character: "\\u0000" is a backslash, then the text u0000
    }
    char* copy = malloc_check(len + 1, path);   // cJSON wants the NUL at the end
    memcpy(copy, text, len);
    copy[len] = '\0';
    const char* end = NULL;
    cJSON* root = cJSON_ParseWithLengthOpts(copy, len + 1, &end, 1);
    if (root == NULL) {
        size_t at = end && end >= copy && end <= copy + len ? (size_t)(end - copy) : 0;
        if (at >= len) {
            fail("%s: invalid JSON: the text ends inside a value (at byte %zu); is the file cut short?", path, len);
        }
        fail("%s: invalid JSON at byte %zu of %zu, near \"%s\"", path, at, len, shown_bytes(copy + at, len - at).text);
    }
    free(copy);
    if (!cJSON_IsObject(root)) fail("%s: expected a JSON object {...}; is this the right file?", path);
    return root;
}

static const char* json_string(const cJSON* obj, const char* key) {
    const cJSON* item = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

// A whole number in [0, limit), else -1. cJSON keeps numbers as doubles: 1e300, -1 or 2.5
// must not reach an int conversion.
static int json_index(const cJSON* item, int limit) {
    if (!cJSON_IsNumber(item)) return -1;
    double v = item->valuedouble;
    if (!(v >= 0 && v < (double)limit)) return -1;
    return v == (double)(int)v ? (int)v : -1;
}

// true or false; fallback when absent or null; anything else is an error.
static int json_bool(const cJSON* obj, const char* key, int fallback, const char* where, const char* path) {
    const cJSON* item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (item == NULL || cJSON_IsNull(item)) return fallback;
    if (!cJSON_IsBool(item)) fail("%s: %s \"%s\" must be true or false", path, where, key);
    return cJSON_IsTrue(item);
}

static const cJSON* require(const cJSON* obj, const char* key, const char* where, const char* path) {
    const cJSON* item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (item == NULL || cJSON_IsNull(item)) {
        fail("%s: %s has no \"%s\"; expected a Hugging Face tokenizer.json (save it with "
             "tokenizer.save_pretrained)", path, where, key);
    }
    return item;
}

// Finds a component of the given "type" in a pre_tokenizer/normalizer, looking inside
// Sequence components ("pretokenizers" / "normalizers").
static const cJSON* find_component(const cJSON* c, const char* type) {
    if (!cJSON_IsObject(c)) return NULL;
    const char* ctype = json_string(c, "type");
    if (ctype && strcmp(ctype, type) == 0) return c;
    const cJSON* items = cJSON_GetObjectItemCaseSensitive(c, "pretokenizers");
    if (!items) items = cJSON_GetObjectItemCaseSensitive(c, "normalizers");
    const cJSON* item;
    cJSON_ArrayForEach(item, items) {
        const cJSON* found = find_component(item, type);
        if (found) return found;
    }
    return NULL;
}

// Refuses a component tokenizer.c would otherwise silently ignore: a type not in allowed
// (NULL-terminated), or an allowed one listed twice (count[k] counts allowed[k]).
static void check_components(const cJSON* c, const char* field, const char* const* allowed, int* count,
                             const char* path) {
    if (c == NULL || cJSON_IsNull(c)) return;
    const char* type = cJSON_IsObject(c) ? json_string(c, "type") : NULL;
    if (type == NULL) fail("%s: %s must be null or an object with a \"type\"", path, field);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON* items = cJSON_GetObjectItemCaseSensitive(c, "pretokenizers");
        if (!items) items = cJSON_GetObjectItemCaseSensitive(c, "normalizers");
        if (!cJSON_IsArray(items)) fail("%s: %s Sequence needs a list of components", path, field);
        const cJSON* item;
        cJSON_ArrayForEach(item, items) check_components(item, field, allowed, count, path);
        return;
    }
    for (int k = 0; allowed[k]; k++) {
        if (strcmp(type, allowed[k]) != 0) continue;
        if (++count[k] > 1) fail("%s: %s lists %s twice; tokenizer.c implements one", path, field, type);
        return;
    }
    fail("%s: %s type \"%s\" is not supported; tokenizer.c implements Llama 3 (Split + ByteLevel) and "
         "Llama 2 (Prepend + Replace, or Metaspace) tokenizers", path, field, shown(type).text);
}

static void check_byte_level(const Tokenizer* t, const cJSON* pre, const cJSON* norm, const cJSON* byte_level) {
    const char* path = t->path;
    const cJSON* split = find_component(pre, "Split");
    const cJSON* pattern = split ? cJSON_GetObjectItemCaseSensitive(split, "pattern") : NULL;
    const char* regex = pattern ? json_string(pattern, "Regex") : NULL;
    if (regex == NULL || strcmp(regex, LLAMA3_PATTERN) != 0) {
        fail("%s: the byte-level pre-tokenizer does not split with the Llama 3 regex; tokenizer.c "
             "implements only that pattern (Llama 3 / 3.1 / 3.2 tokenizers)", path);
    }
    const char* behavior = json_string(split, "behavior");
    if (behavior == NULL || strcmp(behavior, "Isolated") != 0 || json_bool(split, "invert", 0, "Split", path)) {
        fail("%s: the Split pre-tokenizer must have behavior \"Isolated\" and invert false, as in Llama 3", path);
    }
    if (json_bool(byte_level, "add_prefix_space", 1, "ByteLevel", path)) {
        fail("%s: ByteLevel add_prefix_space=true is not supported (Llama 3 uses false)", path);
    }
    if (json_bool(byte_level, "use_regex", 1, "ByteLevel", path)) {
        fail("%s: ByteLevel use_regex=true (a second split with the GPT-2 regex) is not supported; "
             "Llama 3 uses false", path);
    }
    if (norm && !cJSON_IsNull(norm)) fail("%s: a byte-level tokenizer with a normalizer is not supported", path);
}

static void check_sentencepiece(Tokenizer* t, const cJSON* norm, const cJSON* metaspace) {
    const char* path = t->path;
    const cJSON* prepend = find_component(norm, "Prepend");
    const cJSON* replace = find_component(norm, "Replace");
    t->prepend_space = 0;
    if (prepend) {
        const char* p = json_string(prepend, "prepend");
        if (p == NULL || strcmp(p, "\xE2\x96\x81") != 0) fail("%s: normalizer Prepend must prepend "
                                                               "\"\xE2\x96\x81\"", path);
        t->prepend_space = 1;   // every piece between added tokens
    }
    if (replace) {
        const cJSON* pattern = cJSON_GetObjectItemCaseSensitive(replace, "pattern");
        const char* from = pattern ? json_string(pattern, "String") : NULL;
        const char* to = json_string(replace, "content");
        if (!from || !to || strcmp(from, " ") != 0 || strcmp(to, "\xE2\x96\x81") != 0) {
            fail("%s: normalizer Replace must replace \" \" with \"\xE2\x96\x81\"", path);
        }
    } else if (!metaspace) {
        fail("%s: SentencePiece-style tokenizer without a Replace(\" \", \"\xE2\x96\x81\") normalizer "
             "or a Metaspace pre-tokenizer", path);
    }
    if (metaspace) {
        if (prepend) fail("%s: both a Prepend normalizer and a Metaspace pre-tokenizer is not supported", path);
        t->metaspace = 1;
        const char* replacement = json_string(metaspace, "replacement");
        if (replacement && strcmp(replacement, "\xE2\x96\x81") != 0) {
            fail("%s: Metaspace replacement \"%s\" is not supported (Llama 2 uses \"\xE2\x96\x81\")", path,
                 shown(replacement).text);
        }
        if (json_bool(metaspace, "split", 1, "Metaspace", path)) {
            fail("%s: Metaspace with split=true is not supported (Llama 2 uses split=false)", path);
        }
        const char* scheme = json_string(metaspace, "prepend_scheme");
        if (scheme == NULL) t->prepend_space = json_bool(metaspace, "add_prefix_space", 1, "Metaspace", path);
        else if (strcmp(scheme, "always") == 0) t->prepend_space = 1;
        else if (strcmp(scheme, "first") == 0) t->prepend_space = 2;
        else if (strcmp(scheme, "never") == 0) t->prepend_space = 0;
        else fail("%s: Metaspace prepend_scheme \"%s\" is unknown; expected always, first or never", path,
                  shown(scheme).text);
    }
}

// Works out the family and checks the file describes what this tokenizer implements.
static void detect_family(Tokenizer* t, const cJSON* root, const cJSON* model, int byte_fallback) {
    static const char* const PRE_TOKENIZERS[] = {"Split", "ByteLevel", "Metaspace", NULL};
    static const char* const NORMALIZERS[] = {"Prepend", "Replace", NULL};
    const char* path = t->path;
    const cJSON* pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON* norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    int pre_count[3] = {0}, norm_count[2] = {0};
    check_components(pre, "pre_tokenizer", PRE_TOKENIZERS, pre_count, path);
    check_components(norm, "normalizer", NORMALIZERS, norm_count, path);
    const cJSON* byte_level = find_component(pre, "ByteLevel");
    const cJSON* metaspace = find_component(pre, "Metaspace");
    if (byte_level) {
        if (metaspace) fail("%s: a pre-tokenizer with both ByteLevel and Metaspace is not supported", path);
        t->family = TOKENIZER_BYTE_LEVEL;
        check_byte_level(t, pre, norm, byte_level);
        return;
    }
    if (find_component(pre, "Split")) fail("%s: a Split pre-tokenizer without ByteLevel is not supported", path);
    if (find_component(norm, "Prepend") || metaspace || byte_fallback) {
        t->family = TOKENIZER_SENTENCEPIECE;
        check_sentencepiece(t, norm, metaspace);
        return;
    }
    (void)model;
    fail("%s: cannot tell the tokenizer family: expected a ByteLevel pre-tokenizer (Llama 3) or a "
         "Prepend/Replace \"\xE2\x96\x81\" normalizer with byte_fallback (Llama 2)", path);
}

typedef struct {   // one entry of "added_tokens", checked
    int id;
    const char* content;
    int special;
} AddedToken;

// Reads "vocab": {token: id}. Ids are whole numbers below id_limit (the number of tokens the
// file lists), each used once. Returns the id -> spelling table; *n_vocab = largest id + 1.
static const char** read_vocab(Tokenizer* t, const cJSON* vocab, int id_limit, int n_added, int* n_vocab) {
    int max_id = -1, n_listed = cJSON_GetArraySize(vocab);
    const cJSON* item;
    cJSON_ArrayForEach(item, vocab) {
        int id = json_index(item, id_limit);
        if (!cJSON_IsNumber(item)) {
            fail("%s: model.vocab[\"%s\"] is not a number; model.vocab maps each token to its id", t->path,
                 shown(item->string).text);
        }
        if (id < 0) {
            fail("%s: model.vocab gives \"%s\" the id %.17g; ids must be non-negative whole numbers below %d, "
                 "the number of tokens in the file (%d in model.vocab, %d added); number the tokens 0, 1, 2, ...",
                 t->path, shown(item->string).text, item->valuedouble, id_limit, n_listed, n_added);
        }
        if (id > max_id) max_id = id;
    }
    *n_vocab = max_id + 1;
    const char** spelling = calloc((size_t)max_id + 1, sizeof(char*));
    if (!spelling) fail("out of memory reading %s", t->path);
    cJSON_ArrayForEach(item, vocab) {
        int id = json_index(item, id_limit);
        if (spelling[id]) fail("%s: model.vocab gives id %d to both \"%s\" and \"%s\"; each id must be used once",
                               t->path, id, shown(spelling[id]).text, shown(item->string).text);
        spelling[id] = item->string;
    }
    return spelling;
}

// Reads "added_tokens": [{"id", "content", "special", ...}], each checked.
static AddedToken* read_added_list(const Tokenizer* t, const cJSON* added, int id_limit, int n_listed) {
    int n = cJSON_GetArraySize(added), k = 0;
    AddedToken* list = malloc_check((size_t)n * sizeof(AddedToken) + 1, "added tokens");
    const cJSON* item;
    cJSON_ArrayForEach(item, added) {
        const cJSON* id = cJSON_GetObjectItemCaseSensitive(item, "id");
        const char* content = json_string(item, "content");
        if (!cJSON_IsObject(item) || !content || !content[0]) {
            fail("%s: added_tokens[%d] needs an \"id\" >= 0 and a non-empty \"content\" string", t->path, k);
        }
        if (!cJSON_IsNumber(id)) fail("%s: added_tokens[%d] \"%s\" needs a numeric \"id\"", t->path, k,
                                      shown(content).text);
        list[k].id = json_index(id, id_limit);
        if (list[k].id < 0) {
            fail("%s: added_tokens[%d] \"%s\" has the id %.17g; ids must be non-negative whole numbers below %d, "
                 "the number of tokens in the file (%d in model.vocab, %d added)", t->path, k, shown(content).text,
                 id->valuedouble, id_limit, n_listed, n);
        }
        char where[48];
        snprintf(where, sizeof(where), "added_tokens[%d]", k);
        static const char* const UNSUPPORTED[] = {"lstrip", "rstrip", "single_word"};
        for (int u = 0; u < 3; u++) {
            if (json_bool(item, UNSUPPORTED[u], 0, where, t->path)) {
                fail("%s: added token \"%s\" has %s=true, which tokenizer.c does not implement", t->path,
                     shown(content).text, UNSUPPORTED[u]);
            }
        }
        list[k].content = content;
        list[k].special = json_bool(item, "special", 0, where, t->path);
        k++;
    }
    return list;
}

// "<0xAB>" -> 0xAB (a SentencePiece byte token), anything else -> -1
static int byte_token_value(const char* s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        const char* digits = "0123456789ABCDEF0123456789abcdef";
        const char* d = s[i] ? strchr(digits, s[i]) : NULL;
        if (d == NULL) return -1;
        v = v * 16 + (int)(d - digits) % 16;
    }
    return v;
}

// Builds the key/text arenas of all ids: vocabulary spellings and added tokens.
static void build_tables(Tokenizer* t, const char** spelling, int n_vocab, const AddedToken* added, int n_added) {
    int V = t->vocab_size;
    size_t total = 0;
    for (int id = 0; id < n_vocab; id++) if (spelling[id]) total += strlen(spelling[id]);
    for (int k = 0; k < n_added; k++) total += strlen(added[k].content);
    if (total >= UINT32_MAX) fail("%s: the token strings add up to %zu bytes; more than 4 GiB is not supported",
                                  t->path, total);
    t->key_bytes = malloc_check(total + 1, "token spellings");
    t->text_bytes = malloc_check(total + 1, "token texts");
    t->key_start = malloc_check((size_t)(V + 1) * sizeof(uint32_t), "token offsets");
    t->text_start = malloc_check((size_t)(V + 1) * sizeof(uint32_t), "token offsets");
    t->flags = calloc((size_t)V, 1);
    if (!t->flags) fail("out of memory reading %s", t->path);
    const char** added_content = calloc((size_t)V, sizeof(char*));
    if (!added_content) fail("out of memory reading %s", t->path);
    for (int k = 0; k < n_added; k++) {
        int id = added[k].id;
        if (added_content[id]) fail("%s: added_tokens gives the id %d to both \"%s\" and \"%s\"; each id must be "
                                    "used once", t->path, id, shown(added_content[id]).text,
                                    shown(added[k].content).text);
        if (id < n_vocab && spelling[id] && strcmp(spelling[id], added[k].content) != 0) {
            fail("%s: added token \"%s\" has the id %d, which model.vocab gives to \"%s\"; each id must be used once",
                 t->path, shown(added[k].content).text, id, shown(spelling[id]).text);
        }
        added_content[id] = added[k].content;
        t->flags[id] |= TOKEN_ADDED | TOKEN_USED;
        if (added[k].special) t->flags[id] |= TOKEN_SPECIAL;
    }
    uint32_t key_len = 0, text_len = 0;
    for (int id = 0; id < V; id++) {
        t->key_start[id] = key_len;
        t->text_start[id] = text_len;
        const char* s = added_content[id] ? added_content[id] : id < n_vocab ? spelling[id] : NULL;
        if (s == NULL) continue;   // an unused id decodes to nothing
        size_t n = strlen(s);
        t->flags[id] |= TOKEN_USED;
        char* key = t->key_bytes + key_len;
        char* text = t->text_bytes + text_len;
        if (t->family == TOKENIZER_BYTE_LEVEL) {
            // Keys are raw bytes, so encode looks up input bytes directly. Added tokens
            // (and entries outside the mapping) decode to their own UTF-8, as HF's
            // ByteLevel decoder does for characters it cannot map.
            int m = byte_level_to_bytes(s, n, key);
            if (m < 0 || added_content[id]) { memcpy(text, s, n); text_len += (uint32_t)n; }
            else { memcpy(text, key, (size_t)m); text_len += (uint32_t)m; }
            if (m >= 0 && !added_content[id]) key_len += (uint32_t)m;
        } else {
            // Keys are the spelling ("▁Hello"); text has "▁" -> " " (HF's Replace decoder).
            memcpy(key, s, n);
            if (!added_content[id]) key_len += (uint32_t)n;
            for (size_t i = 0; i < n && added_content[id]; i++) { *text++ = s[i]; text_len++; }
            for (size_t i = 0; i < n && !added_content[id]; i++) {
                if (i + 2 < n && memcmp(s + i, "\xE2\x96\x81", 3) == 0) { text[0] = ' '; text++; text_len++; i += 2; }
                else { *text++ = s[i]; text_len++; }
            }
            int byte = added_content[id] ? -1 : byte_token_value(s, n);
            if (byte >= 0) {
                t->flags[id] |= TOKEN_BYTE;
                t->text_bytes[t->text_start[id]] = (char)byte;   // decodes to the raw byte
                text_len = t->text_start[id] + 1;
            }
        }
    }
    t->key_start[V] = key_len;
    t->text_start[V] = text_len;
    free(added_content);
}

// The vocabulary hash: BPE keys -> ids (added tokens have their own table).
static void build_vocab_table(Tokenizer* t, const char** spelling, int n_vocab) {
    t->vocab_mask = table_size_for((size_t)n_vocab) - 1;
    t->vocab_slots = malloc_check(((size_t)t->vocab_mask + 1) * sizeof(int32_t), "the vocabulary table");
    memset(t->vocab_slots, 0xFF, ((size_t)t->vocab_mask + 1) * sizeof(int32_t));
    for (int id = 0; id < n_vocab; id++) {
        uint32_t start = t->key_start[id], n = t->key_start[id + 1] - start;
        if (!spelling[id] || n == 0 || (t->flags[id] & TOKEN_ADDED)) continue;
        int other = vocab_find(t, t->key_bytes + start, n);
        if (other >= 0) fail("%s: model.vocab lists \"%s\" twice (ids %d and %d); each token must appear once",
                             t->path, shown(spelling[id]).text, other, id);
        table_insert(t->vocab_slots, t->vocab_mask, t->key_bytes, t->key_start, id);
    }
}

static void read_merges(Tokenizer* t, const cJSON* merges) {
    int n = cJSON_GetArraySize(merges);
    if (n > MAX_ENTRIES) fail("%s: model.merges has %d entries; tokenizer.c accepts up to %d", t->path, n,
                              MAX_ENTRIES);
    t->n_merges = n;
    t->merge_mask = table_size_for((size_t)n) - 1;
    t->merge_keys = malloc_check(((size_t)t->merge_mask + 1) * sizeof(uint64_t), "the merge table");
    t->merge_values = malloc_check(((size_t)t->merge_mask + 1) * sizeof(uint64_t), "the merge table");
    memset(t->merge_keys, 0xFF, ((size_t)t->merge_mask + 1) * sizeof(uint64_t));
    TextBuffer joined = {0};
    char* bytes = malloc_check(4096, "a merge");
    size_t bytes_cap = 4096;
    int rank = 0;
    const cJSON* item;
    cJSON_ArrayForEach(item, merges) {
        // "a b" (tokenizers < 0.20) or ["a", "b"] (newer)
        const char *left = NULL, *right = NULL;
        size_t left_len = 0, right_len = 0;
        if (cJSON_IsString(item)) {
            const char* space = strchr(item->valuestring, ' ');
            if (!space || strchr(space + 1, ' ')) fail("%s: merge %d \"%s\" is not two tokens separated by one space",
                                                       t->path, rank, shown(item->valuestring).text);
            left = item->valuestring; left_len = (size_t)(space - left);
            right = space + 1; right_len = strlen(right);
        } else if (cJSON_IsArray(item) && cJSON_GetArraySize(item) == 2 && cJSON_IsString(item->child) &&
                   cJSON_IsString(item->child->next)) {
            left = item->child->valuestring; left_len = strlen(left);
            right = item->child->next->valuestring; right_len = strlen(right);
        } else {
            fail("%s: merge %d must be \"a b\" or [\"a\", \"b\"]", t->path, rank);
        }
        joined.len = 0;
        text_append(&joined, left, left_len);
        text_append(&joined, right, right_len);
        const char* parts[3] = {left, right, joined.data};
        size_t lens[3] = {left_len, right_len, joined.len};
        int ids[3];
        for (int k = 0; k < 3; k++) {
            const char* key = parts[k];
            int key_len = (int)lens[k];
            if (t->family == TOKENIZER_BYTE_LEVEL) {
                if (lens[k] > bytes_cap) bytes = realloc_check(bytes, bytes_cap = lens[k], "a merge");
                key_len = byte_level_to_bytes(parts[k], lens[k], bytes);
                key = bytes;
            }
            ids[k] = key_len < 0 ? -1 : vocab_find(t, key, (size_t)key_len);
            if (ids[k] < 0) {
                fail("%s: merge %d \"%s\" + \"%s\" names the token \"%s\", which is not in model.vocab",
                     t->path, rank, shown_bytes(left, left_len).text, shown_bytes(right, right_len).text,
                     shown_bytes(parts[k], lens[k]).text);
            }
        }
        merge_insert(t, ids[0], ids[1], (uint32_t)rank, ids[2]);
        rank++;
    }
    free(bytes);
    text_free(&joined);
}

// Hugging Face does not take an added token's id from the file: it gives the token its
// vocabulary id when its text is in model.vocab, else the next id after the vocabulary
// and the added tokens before it. A file whose ids differ would encode differently there,
// so it is refused.
static void check_added_ids(const Tokenizer* t, const char** spelling, int n_vocab, int n_listed,
                            const AddedToken* added, int n) {
    int max_id = -1;
    char* bytes = NULL;
    for (int k = 0; k < n; k++) {
        const char* c = added[k].content;
        size_t len = strlen(c);
        int in_vocab = added[k].id < n_vocab && spelling[added[k].id] && strcmp(spelling[added[k].id], c) == 0
                           ? added[k].id : -1;
        if (in_vocab < 0 && t->family == TOKENIZER_BYTE_LEVEL) {
            bytes = realloc_check(bytes, len + 1, "a token");
            int m = byte_level_to_bytes(c, len, bytes);
            in_vocab = m < 0 ? -1 : vocab_find(t, bytes, (size_t)m);
        } else if (in_vocab < 0) {
            in_vocab = vocab_find(t, c, len);
        }
        int expect = in_vocab >= 0 ? in_vocab : max_id < 0 || max_id < n_listed ? n_listed : max_id + 1;
        if (added[k].id != expect) {
            const char* why = in_vocab >= 0 ? "its id in model.vocab"
                                            : "the next id after model.vocab and the added tokens before it";
            fail("%s: added_tokens[%d] \"%s\" has the id %d, but Hugging Face gives it %d (%s); renumber the added "
                 "tokens", t->path, k, shown(c).text, added[k].id, expect, why);
        }
        if (expect > max_id) max_id = expect;
    }
    free(bytes);
}

static int compare_lengths_descending(const void* a, const void* b) {
    uint32_t x = *(const uint32_t*)a, y = *(const uint32_t*)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

// The added tokens' table: their texts hashed, and the distinct lengths longest first, so
// the longest added token at a position takes one lookup per length (HF matches
// leftmost-longest). Linear in the number of added tokens, however many there are.
static void read_added_tokens(Tokenizer* t, const AddedToken* added, int n) {
    t->added_mask = table_size_for((size_t)n) - 1;
    t->added_slots = malloc_check(((size_t)t->added_mask + 1) * sizeof(int32_t), "the added-token table");
    memset(t->added_slots, 0xFF, ((size_t)t->added_mask + 1) * sizeof(int32_t));
    t->added_lengths = malloc_check((size_t)n * sizeof(uint32_t) + 1, "added tokens");
    for (int k = 0; k < n; k++) {
        int id = added[k].id;
        uint32_t start = t->text_start[id], len = t->text_start[id + 1] - start;   // the content, verbatim
        int other = added_find(t, t->text_bytes + start, len);
        if (other >= 0) fail("%s: added_tokens lists \"%s\" twice (ids %d and %d); each added token must appear once",
                             t->path, shown(added[k].content).text, other, id);
        table_insert(t->added_slots, t->added_mask, t->text_bytes, t->text_start, id);
        t->added_first_byte[(unsigned char)t->text_bytes[start]] = 1;
        t->added_lengths[k] = len;
    }
    t->n_added = n;
    qsort(t->added_lengths, (size_t)n, sizeof(uint32_t), compare_lengths_descending);
    int distinct = 0;
    for (int k = 0; k < n; k++) {
        if (distinct == 0 || t->added_lengths[distinct - 1] != t->added_lengths[k]) {
            t->added_lengths[distinct++] = t->added_lengths[k];
        }
    }
    t->n_added_lengths = distinct;
}

// bos_token / eos_token of tokenizer_config.json: a string or {"content": ...}; -1 when
// absent or null.
static int config_token(const Tokenizer* t, const cJSON* config, const char* key, const char* path) {
    const cJSON* item = cJSON_GetObjectItemCaseSensitive(config, key);
    if (item == NULL || cJSON_IsNull(item)) return -1;
    const char* name = cJSON_IsString(item) ? item->valuestring : json_string(item, "content");
    if (name == NULL) fail("%s: %s must be a token's text or {\"content\": text}", path, key);
    int id = tokenizer_token_id(t, name);
    if (id < 0) fail("%s: %s \"%s\" is not a token of %s; is this the right tokenizer_config.json?", path, key,
                     shown(name).text, t->path);
    return id;
}

// tokenizer_config.json: bos and eos tokens, and the chat template (which names the default).
static void read_config_text(Tokenizer* t, const char* text, size_t len, const char* path) {
    cJSON* config = parse_json_file(text, len, path);
    const cJSON* tpl = cJSON_GetObjectItemCaseSensitive(config, "chat_template");
    if (cJSON_IsString(tpl)) t->chat_template = strdup_check(tpl->valuestring);
    else if (cJSON_IsArray(tpl)) {   // [{"name": "default", "template": ...}, ...]
        const char* s = tpl->child ? json_string(tpl->child, "template") : NULL;
        if (s) t->chat_template = strdup_check(s);
    } else if (tpl && !cJSON_IsNull(tpl)) {
        fail("%s: chat_template must be a string (Jinja text) or a list of {\"name\", \"template\"}", path);
    }
    int bos = config_token(t, config, "bos_token", path), eos = config_token(t, config, "eos_token", path);
    if (bos >= 0) t->bos_id = bos;
    if (eos >= 0) t->eos_id = eos;
    t->eot_id = tokenizer_token_id(t, "<|eot_id|>");
    if (t->eot_id < 0) t->eot_id = t->eos_id;
    cJSON_Delete(config);
}

// The model's settings: BPE with nothing tokenizer.c does not implement.
static void check_model(const Tokenizer* t, const cJSON* model) {
    const char* path = t->path;
    if (!cJSON_IsObject(model)) fail("%s: \"model\" must be an object; expected a Hugging Face tokenizer.json", path);
    const char* type = json_string(model, "type");
    if (type && strcmp(type, "BPE") != 0) {
        fail("%s: model.type is \"%s\"; tokenizer.c supports only \"BPE\" (Llama 3 byte-level, Llama 2 "
             "SentencePiece-style)", path, shown(type).text);
    }
    const cJSON* vocab = require(model, "vocab", "model", path);
    const cJSON* merges = require(model, "merges", "model", path);
    if (!cJSON_IsObject(vocab)) fail("%s: model.vocab must be an object {token: id}", path);
    if (!cJSON_IsArray(merges)) fail("%s: model.merges must be an array", path);
    if (!type) fail("%s: model has no \"type\"; expected \"BPE\"", path);
    if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix")) ||
        cJSON_IsString(cJSON_GetObjectItemCaseSensitive(model, "end_of_word_suffix"))) {
        fail("%s: BPE continuing_subword_prefix / end_of_word_suffix are not supported (Llama uses neither)", path);
    }
    const cJSON* dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0)) {
        fail("%s: model.dropout is set; BPE dropout (randomly skipped merges) is not supported: set it to null", path);
    }
    const cJSON* unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (unk && !cJSON_IsNull(unk) && !cJSON_IsString(unk)) fail("%s: model.unk_token must be a string or null", path);
}

// The fields of tokenizer.json. Hugging Face refuses any other: a misspelt "added_tokens"
// must not load as a tokenizer without its special tokens.
static void check_top_level(const cJSON* root, const char* path) {
    static const char* const FIELDS[] = {"version", "truncation", "padding", "added_tokens", "normalizer",
                                         "pre_tokenizer", "model", "post_processor", "decoder"};
    const cJSON* item;
    cJSON_ArrayForEach(item, root) {
        int known = 0;
        for (size_t k = 0; k < sizeof(FIELDS) / sizeof(FIELDS[0]); k++) known |= strcmp(item->string, FIELDS[k]) == 0;
        if (!known) {
            fail("%s: unknown field \"%s\"; a tokenizer.json has version, truncation, padding, added_tokens, "
                 "normalizer, pre_tokenizer, model, post_processor and decoder", path, shown(item->string).text);
        }
    }
}

void tokenizer_load_text(Tokenizer* t, const char* json, size_t len, const char* name) {
    memset(t, 0, sizeof(*t));
    unicode_init();
    byte_level_init();
    t->path = strdup_check(name);
    cJSON* root = parse_json_file(json, len, name);
    check_top_level(root, name);
    const cJSON* model = require(root, "model", "the file", name);
    check_model(t, model);
    const cJSON* vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON* merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    int byte_fallback = json_bool(model, "byte_fallback", 0, "model", name);
    detect_family(t, root, model, byte_fallback);
    t->ignore_merges = json_bool(model, "ignore_merges", 0, "model", name);
    t->fuse_unk = json_bool(model, "fuse_unk", 0, "model", name);

    // Every id must be below the number of tokens the file lists: then no table is sized
    // by a number read from the file ({"a": 100000000} would otherwise allocate gigabytes).
    const cJSON* added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added)) fail("%s: added_tokens must be a list", name);
    int n_listed = cJSON_GetArraySize(vocab), n_added = cJSON_GetArraySize(added);
    if (n_listed == 0) fail("%s: model.vocab is empty", name);
    if (n_listed > MAX_ENTRIES || n_added > MAX_ENTRIES) {
        fail("%s: %d tokens in model.vocab and %d added tokens; tokenizer.c accepts up to %d of each", name, n_listed,
             n_added, MAX_ENTRIES);
    }
    int n_vocab;
    const char** spelling = read_vocab(t, vocab, n_listed + n_added, n_added, &n_vocab);
    AddedToken* added_list = read_added_list(t, added, n_listed + n_added, n_listed);
    t->vocab_size = n_vocab;
    for (int k = 0; k < n_added; k++) if (added_list[k].id >= t->vocab_size) t->vocab_size = added_list[k].id + 1;
    build_tables(t, spelling, n_vocab, added_list, n_added);
    build_vocab_table(t, spelling, n_vocab);
    check_added_ids(t, spelling, n_vocab, n_listed, added_list, n_added);
    read_merges(t, merges);
    read_added_tokens(t, added_list, n_added);

    for (int b = 0; b < 256; b++) {
        char key[8];
        int n = 1;
        key[0] = (char)b;
        if (t->family == TOKENIZER_SENTENCEPIECE) n = snprintf(key, sizeof(key), "<0x%02X>", b);
        t->byte_token[b] = vocab_find(t, key, (size_t)n);
        if (t->family == TOKENIZER_BYTE_LEVEL && t->byte_token[b] < 0) {
            fail("%s: the byte-level vocabulary has no token for byte 0x%02X; every byte needs one", name, b);
        }
    }
    t->unk_id = -1;
    const char* unk = json_string(model, "unk_token");
    if (unk) t->unk_id = tokenizer_token_id(t, unk);
    if (t->family == TOKENIZER_SENTENCEPIECE && byte_fallback) {
        for (int b = 0; b < 256; b++) {
            if (t->byte_token[b] < 0) fail("%s: byte_fallback is on but the vocabulary lacks <0x%02X>", name, b);
        }
    } else if (t->family == TOKENIZER_SENTENCEPIECE) {
        for (int b = 0; b < 256; b++) t->byte_token[b] = -1;
    }
    // without tokenizer_config.json: the usual names
    t->bos_id = tokenizer_token_id(t, "<|begin_of_text|>");
    if (t->bos_id < 0) t->bos_id = tokenizer_token_id(t, "<s>");
    t->eos_id = tokenizer_token_id(t, "<|end_of_text|>");
    if (t->eos_id < 0) t->eos_id = tokenizer_token_id(t, "</s>");
    t->eot_id = tokenizer_token_id(t, "<|eot_id|>");
    if (t->eot_id < 0) t->eot_id = t->eos_id;
    free(added_list);
    free(spelling);
    cJSON_Delete(root);
}

void tokenizer_load(Tokenizer* t, const char* model_dir_or_file) {
    char *json_path, *config_path;
    if (is_directory(model_dir_or_file)) {
        json_path = path_join(model_dir_or_file, "tokenizer.json");
        config_path = path_join(model_dir_or_file, "tokenizer_config.json");
    } else {
        json_path = strdup_check(model_dir_or_file);
        const char* slash = strrchr(json_path, '/');
        char* dir = strdup_check(json_path);
        if (slash) dir[slash - json_path] = '\0'; else strcpy(dir, ".");
        config_path = path_join(dir, "tokenizer_config.json");
        free(dir);
    }
    size_t len;
    char* text = read_file(json_path, &len, "; pass a model directory holding tokenizer.json, or the file itself");
    tokenizer_load_text(t, text, len, json_path);
    free(text);
    FILE* f = fopen(config_path, "rb");
    if (f) {
        fclose(f);
        text = read_file(config_path, &len, "");
        read_config_text(t, text, len, config_path);
        free(text);
    }
    free(json_path);
    free(config_path);
}

void tokenizer_free(Tokenizer* t) {
    free(t->path); free(t->key_bytes); free(t->key_start); free(t->text_bytes); free(t->text_start);
    free(t->flags); free(t->vocab_slots); free(t->merge_keys); free(t->merge_values);
    free(t->added_slots); free(t->added_lengths); free(t->chat_template);
    memset(t, 0, sizeof(*t));
}

int tokenizer_token_id(const Tokenizer* t, const char* s) {
    size_t n = strlen(s);
    int id = added_find(t, s, n);   // added tokens first: they are not in the vocabulary's table
    if (id >= 0 || t->family == TOKENIZER_SENTENCEPIECE) return id >= 0 ? id : vocab_find(t, s, n);
    char* bytes = malloc_check(n + 1, "a token");
    int m = byte_level_to_bytes(s, n, bytes);
    id = m < 0 ? -1 : vocab_find(t, bytes, (size_t)m);
    free(bytes);
    return id;
}

void tokenizer_spelling(const Tokenizer* t, int id, TextBuffer* out) {
    if (id < 0 || id >= t->vocab_size) fail("%s: token id %d is outside [0, %d)", t->path, id, t->vocab_size);
    const char* key = t->key_bytes + t->key_start[id];
    size_t n = t->key_start[id + 1] - t->key_start[id];
    if ((t->flags[id] & TOKEN_ADDED) || n == 0) {  // added tokens (and spellings outside the byte map): their text
        text_append(out, t->text_bytes + t->text_start[id], t->text_start[id + 1] - t->text_start[id]);
    } else if (t->family == TOKENIZER_SENTENCEPIECE) {
        text_append(out, key, n);
    } else {
        for (size_t i = 0; i < n; i++) {  // raw bytes -> the GPT-2 characters that spell them
            char utf8[4];
            text_append(out, utf8, (size_t)utf8_encode(byte_to_char[(unsigned char)key[i]], utf8));
        }
    }
}

int tokenizer_merge_list(const Tokenizer* t, int* left, int* right, int* merged) {
    int n = 0;
    for (int rank = 0; rank < t->n_merges; rank++) left[rank] = right[rank] = merged[rank] = -1;
    for (uint32_t slot = 0; slot <= t->merge_mask && t->merge_keys != NULL; slot++) {
        if (t->merge_keys[slot] == NO_MERGE) continue;
        uint32_t rank = (uint32_t)(t->merge_values[slot] >> 32);
        left[rank] = (int)(t->merge_keys[slot] >> 32);
        right[rank] = (int)(uint32_t)t->merge_keys[slot];
        merged[rank] = (int)(uint32_t)t->merge_values[slot];
        n++;
    }
    // a pair listed twice left a gap at its second rank: close the gaps, keeping the order
    int kept = 0;
    for (int rank = 0; rank < t->n_merges && kept < n; rank++) {
        if (left[rank] < 0) continue;
        left[kept] = left[rank];
        right[kept] = right[rank];
        merged[kept++] = merged[rank];
    }
    return kept;
}

// ----------------------------------------------------------------------------
// the Llama 3 pre-tokenizer: the split regex
//   (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}{1,3}
//   | ' '?[^\s\p{L}\p{N}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
// as a scanner: at each position the alternatives are tried in order, the first that
// matches wins (leftmost-first, like the regex engine), and the next piece starts where
// it ended. Every character matches some alternative, so the pieces tile the text.

static inline int class_at(const unsigned char* s, size_t n, size_t i, int* len) {
    if (i >= n) { *len = 0; return -1; }   // end of text: matches no class
    if (s[i] < 0x80) { *len = 1; return bmp_class[s[i]]; }
    uint32_t cp;
    *len = utf8_decode(s + i, &cp);
    return unicode_class(cp);
}

static inline int is_other(int c) { return c >= 0 && !(c & (CLASS_LETTER | CLASS_NUMBER | CLASS_SPACE)); }

static inline size_t skip_class(const unsigned char* s, size_t n, size_t i, int want) {
    int len, c;
    while ((c = class_at(s, n, i, &len)) >= 0 && (c & want)) i += (size_t)len;
    return i;
}

// End of the pre-token that starts at s[i] (text is valid UTF-8, i < n).
static size_t pretoken_end(const unsigned char* s, size_t n, size_t i) {
    // 1. contractions, case-insensitive
    if (s[i] == '\'' && i + 1 < n) {
        unsigned char a = s[i + 1] | 0x20, b = i + 2 < n ? (s[i + 2] | 0x20) : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
    int len0, len1;
    int c0 = class_at(s, n, i, &len0);
    // 2. an optional non-letter, non-number, non-newline character, then letters
    if (c0 & CLASS_LETTER) return skip_class(s, n, i + (size_t)len0, CLASS_LETTER);
    if (!(c0 & (CLASS_NUMBER | CLASS_NEWLINE))) {
        int c1 = class_at(s, n, i + (size_t)len0, &len1);
        if (c1 >= 0 && (c1 & CLASS_LETTER)) return skip_class(s, n, i + (size_t)len0 + (size_t)len1, CLASS_LETTER);
    }
    // 3. one to three numbers
    if (c0 & CLASS_NUMBER) {
        size_t j = i + (size_t)len0;
        for (int k = 1; k < 3; k++) {
            int c = class_at(s, n, j, &len1);
            if (c < 0 || !(c & CLASS_NUMBER)) break;
            j += (size_t)len1;
        }
        return j;
    }
    // 4. an optional space, then other characters, then newlines
    size_t j = i;
    int cj = c0, lenj = len0;
    if (s[i] == ' ') { j = i + 1; cj = class_at(s, n, j, &lenj); }
    if (is_other(cj)) {
        j += (size_t)lenj;
        for (;;) {
            int c = class_at(s, n, j, &len1);
            if (!is_other(c)) break;
            j += (size_t)len1;
        }
        return skip_class(s, n, j, CLASS_NEWLINE);
    }
    // c0 is whitespace from here on. 5. whitespace up to and including the last newline of the run
    size_t end = i, last_newline = 0, last_start = i;
    int has_newline = 0;
    for (;;) {
        int c = class_at(s, n, end, &len1);
        if (c < 0 || !(c & CLASS_SPACE)) break;
        if (c & CLASS_NEWLINE) { has_newline = 1; last_newline = end; }
        last_start = end;
        end += (size_t)len1;
    }
    if (has_newline) return last_newline + 1;
    // 6. whitespace not followed by a non-space: all of it at the end of the text,
    //    else all but the last character (which then starts the next word)
    if (end == n) return end;
    if (last_start > i) return last_start;
    // 7. the single whitespace character
    return end;
}

// ----------------------------------------------------------------------------
// BPE: start from one symbol per byte (byte-level) or character (SentencePiece) and
// repeatedly merge the adjacent pair with the lowest rank, leftmost first, until no
// listed pair remains. bpe_merge_simple is the definition, O(n^2); bpe_merge does the
// same with a heap of candidate merges, O(n log n), as Hugging Face does (and with its
// exact rule for stale candidates: one is still good if the pair there now merges into
// the same token). Symbols form a linked list; a merged-away symbol gets id -1.

typedef struct {
    int id;
    int prev, next;   // neighbours, -1 at the ends
    int len;          // source bytes the symbol covers (for token offsets)
} Symbol;

typedef struct {
    uint32_t rank;
    int pos;          // left symbol
    int merged;       // the id the pair merged into when the candidate was made
} MergeCandidate;

typedef struct {
    Symbol* sym;
    size_t sym_cap;
    MergeCandidate* heap;
    size_t heap_n, heap_cap;
} BpeWork;

static void bpe_reserve(BpeWork* w, size_t n) {
    if (n > w->sym_cap) {
        while (w->sym_cap < n) w->sym_cap = w->sym_cap ? 2 * w->sym_cap : 256;
        w->sym = realloc_check(w->sym, w->sym_cap * sizeof(Symbol), "BPE symbols");
    }
}

static void bpe_work_free(BpeWork* w) { free(w->sym); free(w->heap); memset(w, 0, sizeof(*w)); }

static inline int candidate_before(const MergeCandidate* a, const MergeCandidate* b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(BpeWork* w, MergeCandidate m) {
    if (w->heap_n == w->heap_cap) {
        w->heap_cap = w->heap_cap ? 2 * w->heap_cap : 256;
        w->heap = realloc_check(w->heap, w->heap_cap * sizeof(MergeCandidate), "the BPE heap");
    }
    size_t i = w->heap_n++;
    while (i > 0 && candidate_before(&m, &w->heap[(i - 1) / 2])) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = m;
}

static MergeCandidate heap_pop(BpeWork* w) {
    MergeCandidate top = w->heap[0], last = w->heap[--w->heap_n];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= w->heap_n) break;
        if (child + 1 < w->heap_n && candidate_before(&w->heap[child + 1], &w->heap[child])) child++;
        if (!candidate_before(&w->heap[child], &last)) break;
        w->heap[i] = w->heap[child];
        i = child;
    }
    if (w->heap_n > 0) w->heap[i] = last;
    return top;
}

static inline void push_candidate(const Tokenizer* t, BpeWork* w, int left) {
    int right = w->sym[left].next;
    if (right < 0) return;
    uint64_t m = merge_find(t, w->sym[left].id, w->sym[right].id);
    if (m != NO_MERGE) heap_push(w, (MergeCandidate){(uint32_t)(m >> 32), left, (int)(uint32_t)m});
}

// Merges w->sym[0..n) in place (linked list from 0).
static void bpe_merge(const Tokenizer* t, BpeWork* w, int n) {
    for (int i = 0; i < n; i++) { w->sym[i].prev = i - 1; w->sym[i].next = i + 1 < n ? i + 1 : -1; }
    w->heap_n = 0;
    for (int i = 0; i + 1 < n; i++) push_candidate(t, w, i);
    while (w->heap_n > 0) {
        MergeCandidate top = heap_pop(w);
        Symbol* left = &w->sym[top.pos];
        if (left->id < 0 || left->next < 0) continue;
        Symbol* right = &w->sym[left->next];
        uint64_t m = merge_find(t, left->id, right->id);
        if (m == NO_MERGE || (int)(uint32_t)m != top.merged) continue;   // stale
        left->id = top.merged;
        left->len += right->len;
        left->next = right->next;
        if (right->next >= 0) w->sym[right->next].prev = top.pos;
        right->id = -1;
        if (left->prev >= 0) push_candidate(t, w, left->prev);
        push_candidate(t, w, top.pos);
    }
}

// The definition, kept as the test oracle for bpe_merge: find the lowest-rank pair,
// leftmost on ties, merge it, repeat. Works on a plain array of ids; returns the count.
int bpe_merge_simple(const Tokenizer* t, int* ids, int n) {
    for (;;) {
        uint64_t best = NO_MERGE;
        int best_pos = -1;
        for (int i = 0; i + 1 < n; i++) {
            uint64_t m = merge_find(t, ids[i], ids[i + 1]);
            if (m != NO_MERGE && (m >> 32) < (best >> 32)) { best = m; best_pos = i; }
        }
        if (best_pos < 0) return n;
        ids[best_pos] = (int)(uint32_t)best;
        memmove(ids + best_pos + 1, ids + best_pos + 2, (size_t)(n - best_pos - 2) * sizeof(int));
        n--;
    }
}

// ----------------------------------------------------------------------------
// encode: added tokens are cut out first; each piece between them is pre-tokenized
// (byte-level) or normalised (SentencePiece), then BPE'd.

typedef struct {
    const Tokenizer* t;
    Tokens* out;
    SizeList* ends;     // when not NULL: each token's end offset in the text
    BpeWork work;
} Encoder;

static void emit_symbols(Encoder* e, int n, size_t start) {
    size_t pos = start;
    for (int i = 0; i >= 0 && i < n; i = e->work.sym[i].next) {
        tokens_push(e->out, e->work.sym[i].id, 0);
        pos += (size_t)e->work.sym[i].len;
        if (e->ends) sizes_push(e->ends, pos);
    }
}

// One pre-token of a byte-level tokenizer: text[start..end).
static void encode_word_byte_level(Encoder* e, const unsigned char* text, size_t start, size_t end) {
    const Tokenizer* t = e->t;
    size_t n = end - start;
    if (t->ignore_merges) {
        int id = vocab_find(t, (const char*)text + start, n);
        if (id >= 0) {
            tokens_push(e->out, id, 0);
            if (e->ends) sizes_push(e->ends, end);
            return;
        }
    }
    if (n == 1) {
        tokens_push(e->out, t->byte_token[text[start]], 0);
        if (e->ends) sizes_push(e->ends, end);
        return;
    }
    bpe_reserve(&e->work, n);
    for (size_t i = 0; i < n; i++) e->work.sym[i] = (Symbol){t->byte_token[text[start + i]], 0, 0, 1};
    bpe_merge(t, &e->work, (int)n);
    emit_symbols(e, (int)n, start);
}

static void encode_piece_byte_level(Encoder* e, const unsigned char* text, size_t start, size_t end) {
    size_t i = start;
    while (i < end) {
        size_t j = pretoken_end(text, end, i);
        encode_word_byte_level(e, text, i, j);
        i = j;
    }
}

// One character c[0..len) of a SentencePiece piece, covering `covers` source bytes: its
// token, else its <0xXX> byte tokens (byte_fallback), else unk, as HF's BPE does.
static void push_character(const Tokenizer* t, BpeWork* w, int* n, const char* c, int len, int covers) {
    bpe_reserve(w, (size_t)*n + 4);
    int id = vocab_find(t, c, (size_t)len);
    if (id >= 0) {
        w->sym[(*n)++] = (Symbol){id, 0, 0, covers};
    } else if (t->byte_token[(unsigned char)c[0]] >= 0) {
        for (int k = 0; k < len; k++) w->sym[(*n)++] = (Symbol){t->byte_token[(unsigned char)c[k]], 0, 0, k < covers};
    } else if (t->unk_id >= 0) {
        if (t->fuse_unk && *n > 0 && w->sym[*n - 1].id == t->unk_id) w->sym[*n - 1].len += covers;
        else w->sym[(*n)++] = (Symbol){t->unk_id, 0, 0, covers};
    } else {
        uint32_t cp;
        utf8_decode((const unsigned char*)c, &cp);
        fail("%s: character U+%04X is not in the vocabulary and there is no byte_fallback or unk_token", t->path, cp);
    }
}

// A piece of a SentencePiece tokenizer: "▁" prepended, spaces -> "▁", one symbol per
// character (or its <0xXX> bytes when the character is not in the vocabulary), BPE.
static void encode_piece_sentencepiece(Encoder* e, const unsigned char* text, size_t start, size_t end, int first) {
    const Tokenizer* t = e->t;
    static const char SPACE_MARK[] = "\xE2\x96\x81";
    int n = 0;
    int prepend = end > start && (t->prepend_space == 1 || (t->prepend_space == 2 && first));
    int starts_with_mark = text[start] == ' ' || (end - start >= 3 && memcmp(text + start, SPACE_MARK, 3) == 0);
    if (prepend && t->metaspace && starts_with_mark) prepend = 0;   // HF's Metaspace: not before a "▁"
    if (prepend) push_character(t, &e->work, &n, SPACE_MARK, 3, 0);   // covers no source byte
    for (size_t i = start; i < end;) {
        uint32_t cp;
        int len = utf8_decode(text + i, &cp);
        if (cp == ' ') push_character(t, &e->work, &n, SPACE_MARK, 3, 1);
        else push_character(t, &e->work, &n, (const char*)text + i, len, len);
        i += (size_t)len;
    }
    if (n == 0) return;
    bpe_merge(t, &e->work, n);
    emit_symbols(e, n, start);
}

static void encode_piece(Encoder* e, const unsigned char* text, size_t start, size_t end, int first) {
    if (e->t->family == TOKENIZER_BYTE_LEVEL) encode_piece_byte_level(e, text, start, end);
    else encode_piece_sentencepiece(e, text, start, end, first);
}

// Longest added token starting at text[i], or -1: one lookup per length an added token has.
static inline int added_token_at(const Tokenizer* t, const unsigned char* text, size_t n, size_t i) {
    for (int k = 0; k < t->n_added_lengths; k++) {
        uint32_t len = t->added_lengths[k];
        if (len > n - i) continue;
        int id = added_find(t, (const char*)text + i, len);
        if (id >= 0) return id;
    }
    return -1;
}

// at_start: the text begins the whole input (SentencePiece "first" prepend scheme)
static void encode_valid(Encoder* e, const unsigned char* text, size_t n, int split_special, int at_start) {
    const Tokenizer* t = e->t;
    size_t piece_start = 0;
    for (size_t i = 0; split_special && i < n; i++) {
        if (!t->added_first_byte[text[i]]) continue;
        int id = added_token_at(t, text, n, i);
        if (id < 0) continue;
        encode_piece(e, text, piece_start, i, at_start && piece_start == 0);
        tokens_push(e->out, id, 0);
        i += t->text_start[id + 1] - t->text_start[id];
        if (e->ends) sizes_push(e->ends, i);
        piece_start = i;
        i--;
    }
    encode_piece(e, text, piece_start, n, at_start && piece_start == 0);
}

static void encode_text(const Tokenizer* t, const char* text, size_t len, int split_special, int at_start,
                        Tokens* out, SizeList* ends) {
    Encoder e = {t, out, ends, {0}};
    const unsigned char* s = (const unsigned char*)text;
    if (utf8_valid_prefix(s, len) == len) {
        encode_valid(&e, s, len, split_special, at_start);
    } else {
        TextBuffer clean = {0};   // what HF sees: the text with U+FFFD for invalid bytes
        utf8_append_lossy(&clean, s, len);
        encode_valid(&e, (const unsigned char*)clean.data, clean.len, split_special, at_start);
        text_free(&clean);
    }
    bpe_work_free(&e.work);
}

void tokenizer_encode(const Tokenizer* t, const char* text, size_t len, Tokens* out) {
    encode_text(t, text, len, 1, 1, out, NULL);
}

void tokenizer_encode_ordinary(const Tokenizer* t, const char* text, size_t len, Tokens* out) {
    encode_text(t, text, len, 0, 1, out, NULL);
}

// ----------------------------------------------------------------------------
// decode. Byte-level: the bytes of all tokens, then invalid UTF-8 -> U+FFFD (HF's
// ByteLevel decoder). SentencePiece, HF's decoder chain: "▁" -> " ", each run of
// <0xXX> tokens becomes its bytes if they are valid UTF-8 and one U+FFFD per byte if
// not, then one leading space is stripped.

static void check_id(const Tokenizer* t, int id) {
    if (id < 0 || id >= t->vocab_size) {
        fail("token id %d is out of range: the vocabulary of %s has %d tokens (ids 0..%d)", id, t->path,
             t->vocab_size, t->vocab_size - 1);
    }
}

static inline const char* token_text(const Tokenizer* t, int id, size_t* len) {
    *len = t->text_start[id + 1] - t->text_start[id];
    return t->text_bytes + t->text_start[id];
}

static void append_byte_run(TextBuffer* out, const unsigned char* bytes, size_t n) {
    if (utf8_valid_prefix(bytes, n) == n) text_append(out, bytes, n);
    else for (size_t i = 0; i < n; i++) text_append(out, REPLACEMENT_CHAR, 3);
}

void tokenizer_decode(const Tokenizer* t, const int* ids, size_t n, int skip_special, TextBuffer* out) {
    for (size_t i = 0; i < n; i++) check_id(t, ids[i]);
    TextBuffer raw = {0};
    size_t start = out->len, run_start = 0;
    int in_run = 0;
    for (size_t i = 0; i < n; i++) {
        int id = ids[i];
        if (skip_special && (t->flags[id] & TOKEN_SPECIAL)) continue;
        size_t len;
        const char* s = token_text(t, id, &len);
        if (t->family == TOKENIZER_BYTE_LEVEL) { text_append(&raw, s, len); continue; }
        if (t->flags[id] & TOKEN_BYTE) {
            if (!in_run) { run_start = raw.len; in_run = 1; }
            text_append(&raw, s, len);
            continue;
        }
        if (in_run) {
            append_byte_run(out, (const unsigned char*)raw.data + run_start, raw.len - run_start);
            in_run = 0;
        }
        text_append(out, s, len);
    }
    if (t->family == TOKENIZER_BYTE_LEVEL) utf8_append_lossy(out, (const unsigned char*)raw.data, raw.len);
    else {
        if (in_run) append_byte_run(out, (const unsigned char*)raw.data + run_start, raw.len - run_start);
        if (out->len > start && out->data[start] == ' ') {
            memmove(out->data + start, out->data + start + 1, out->len - start);   // moves the NUL too
            out->len--;
        }
    }
    text_free(&raw);
}

// Streaming: complete characters go out at once, an unfinished one waits in pending.
// Equal to tokenizer_decode of all the ids, except that for SentencePiece an invalid
// run of <0xXX> tokens gives one U+FFFD per invalid subpart rather than per byte.

void stream_decoder_init(StreamDecoder* d, const Tokenizer* t, int skip_special) {
    memset(d, 0, sizeof(*d));
    d->t = t;
    d->skip_special = skip_special;
    text_append(&d->out, "", 0);
}

static void stream_emit(StreamDecoder* d, const void* bytes, size_t n) {
    if (!d->started && n > 0) {
        d->started = 1;
        if (d->t->family == TOKENIZER_SENTENCEPIECE && ((const char*)bytes)[0] == ' ') {
            bytes = (const char*)bytes + 1;
            n--;
        }
    }
    text_append(&d->out, bytes, n);
}

static void stream_feed(StreamDecoder* d, const unsigned char* s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (d->n_pending == 0 && s[i] < 0x80) {   // ASCII: no state
            size_t j = i;
            while (j < n && s[j] < 0x80) j++;
            stream_emit(d, s + i, j - i);
            i = j - 1;
            continue;
        }
        d->pending[d->n_pending++] = s[i];
        while (d->n_pending > 0) {
            int k = utf8_check(d->pending, (size_t)d->n_pending);
            if (k == 0) break;   // unfinished: wait for more bytes
            int used = k > 0 ? k : -k;
            if (k > 0) stream_emit(d, d->pending, (size_t)k);
            else stream_emit(d, REPLACEMENT_CHAR, 3);
            memmove(d->pending, d->pending + used, (size_t)(d->n_pending - used));
            d->n_pending -= used;
        }
    }
}

const char* stream_decoder_push(StreamDecoder* d, int id) {
    if (id < 0 || id >= d->t->vocab_size) {   // generation: the model has more output rows than tokens
        fail("the model emitted token id %d, which %s does not have (its ids are 0..%d); the model's vocab_size is "
             "larger than its tokenizer's: check that the tokenizer belongs to this model", id, d->t->path,
             d->t->vocab_size - 1);
    }
    d->out.len = 0;
    d->out.data[0] = '\0';
    if (d->skip_special && (d->t->flags[id] & TOKEN_SPECIAL)) return d->out.data;
    size_t len;
    const char* s = token_text(d->t, id, &len);
    stream_feed(d, (const unsigned char*)s, len);
    return d->out.data;
}

const char* stream_decoder_flush(StreamDecoder* d) {
    d->out.len = 0;
    d->out.data[0] = '\0';
    if (d->n_pending > 0) stream_emit(d, REPLACEMENT_CHAR, 3);   // an unfinished character at the end
    d->n_pending = 0;
    return d->out.data;
}

void stream_decoder_free(StreamDecoder* d) { text_free(&d->out); }

// ----------------------------------------------------------------------------
// chat templates. A conversation is rendered as a list of special tokens and text;
// the text between two special tokens is encoded as one piece, exactly as Hugging Face
// encodes the rendered string, and a token is a training target when its bytes
// overlap a trained span (so a token that straddles a span boundary still trains).
//   llama3:   <|begin_of_text|> then per message
//             <|start_header_id|>{role}<|end_header_id|>\n\n{content.strip()}<|eot_id|>
//   llama3.1/3.2: the same, after a system block that always comes first:
//             ...system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n
//             Today Date: {date}\n\n{system.strip()}<|eot_id|>
//   llama2:   <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s>
//             then <s>[INST] {user} [/INST] {assistant} </s> per turn
//   alpaca:   <bos>{preamble}\n\n### Instruction:\n{user}\n\n[### Input:\n{input}\n\n]
//             ### Response:\n{assistant}<eos>; later turns start with "\n\n### Instruction:"
//   plain:    <bos>{content}\n\n{content}...<eos>  (generation prompt: ends with "\n\n")
// Trained: assistant content + the token ending its turn (llama2 also the spaces around
// the answer). In alpaca and plain text, a token may straddle the end of a span (".\n\n")
// and is then trained; content that starts with whitespace can tokenize differently after
// the prompt than at inference, so strip it in the data.

static const char* TEMPLATE_NAMES[] = {"plain", "alpaca", "llama2", "llama3", "llama3.1", "llama3.2"};

const char* chat_template_name(ChatTemplate kind) {
    return kind >= CHAT_PLAIN && kind <= CHAT_LLAMA32 ? TEMPLATE_NAMES[kind] : "(unknown)";
}

ChatTemplate chat_template_from_name(const char* name) {
    for (int i = 0; i < 6; i++) if (strcmp(name, TEMPLATE_NAMES[i]) == 0) return (ChatTemplate)i;
    fail("unknown chat template \"%s\"; expected one of plain, alpaca, llama2, llama3, llama3.1, llama3.2", name);
    return CHAT_PLAIN;
}

ChatTemplate chat_template_default(const Tokenizer* t) {
    const char* tpl = t->chat_template;
    if (tpl && strstr(tpl, "<|start_header_id|>")) {
        if (strstr(tpl, "Cutting Knowledge Date")) return strstr(tpl, "strftime_now") ? CHAT_LLAMA32 : CHAT_LLAMA31;
        return CHAT_LLAMA3;
    }
    if (tpl && strstr(tpl, "[INST]")) return CHAT_LLAMA2;
    if (tpl && strstr(tpl, "### Instruction")) return CHAT_ALPACA;
    if (tokenizer_token_id(t, "<|start_header_id|>") >= 0 && tokenizer_token_id(t, "<|eot_id|>") >= 0) {
        return tokenizer_token_id(t, "<|eom_id|>") >= 0 ? CHAT_LLAMA31 : CHAT_LLAMA3;
    }
    if (t->family == TOKENIZER_SENTENCEPIECE && t->bos_id >= 0 && t->eos_id >= 0) return CHAT_LLAMA2;
    return CHAT_PLAIN;
}

ChatOptions chat_options_default(const Tokenizer* t) {
    ChatOptions opt = {chat_template_default(t), NULL, 0, 0, 0};
    return opt;
}

typedef struct {
    const Tokenizer* t;
    Tokens* out;
    int train_all;
    int split_special;   // special-token text in the text becomes the token (HF), else stays text
    TextBuffer text;     // text since the last special token
    SizeList trained;    // trained byte spans in text, as start, end pairs
} ChatRenderer;

static void render_text(ChatRenderer* r, const char* s, size_t n, int trained) {
    size_t start = r->text.len;
    utf8_append_lossy(&r->text, (const unsigned char*)s, n);
    if (trained && r->text.len > start) { sizes_push(&r->trained, start); sizes_push(&r->trained, r->text.len); }
}

static void render_str(ChatRenderer* r, const char* s, int trained) { render_text(r, s, strlen(s), trained); }

static void render_flush(ChatRenderer* r) {
    if (r->text.len == 0) return;
    SizeList ends = {0};
    size_t first = r->out->n;
    encode_text(r->t, r->text.data, r->text.len, r->split_special, first == 0, r->out, &ends);
    for (size_t k = 0; k < ends.n; k++) {
        size_t start = k == 0 ? 0 : ends.data[k - 1], end = ends.data[k];
        int trained = r->train_all;
        for (size_t s = 0; s + 1 < r->trained.n && !trained; s += 2) {
            trained = start < r->trained.data[s + 1] && r->trained.data[s] < end;
        }
        r->out->mask[first + k] = (unsigned char)trained;
    }
    free(ends.data);
    r->text.len = 0;
    r->trained.n = 0;
}

static void render_special(ChatRenderer* r, int id, int trained) {
    render_flush(r);
    tokens_push(r->out, id, trained || r->train_all);
}

static int need_token(const Tokenizer* t, const char* name, ChatTemplate kind) {
    int id = tokenizer_token_id(t, name);
    if (id < 0) {
        fail("chat template %s needs the token %s, which %s lacks; choose another template (plain, alpaca)",
             chat_template_name(kind), name, t->path);
    }
    return id;
}

static int is_strip_space(uint32_t cp) {   // Python's str.strip() set, which Jinja's trim uses
    return (cp >= 0x1C && cp <= 0x1F) || (unicode_class(cp) & CLASS_SPACE);
}

// content with surrounding whitespace removed (left and/or right): sets *start, *len.
static void strip_span(const char* s, int left, int right, size_t* start, size_t* len) {
    size_t n = strlen(s), a = 0, b = n;
    const unsigned char* u = (const unsigned char*)s;
    while (left && a < b) {
        uint32_t cp;
        int k = utf8_check(u + a, b - a);
        if (k <= 0) break;
        utf8_decode(u + a, &cp);
        if (!is_strip_space(cp)) break;
        a += (size_t)k;
    }
    while (right && b > a) {
        size_t p = b - 1;
        while (p > a && (u[p] & 0xC0) == 0x80 && b - p < 4) p--;
        uint32_t cp;
        if (utf8_check(u + p, b - p) != (int)(b - p)) break;
        utf8_decode(u + p, &cp);
        if (!is_strip_space(cp)) break;
        b = p;
    }
    *start = a;
    *len = b - a;
}

static void render_stripped(ChatRenderer* r, const char* s, int left, int right, int trained) {
    size_t start, len;
    strip_span(s, left, right, &start, &len);
    render_text(r, s + start, len, trained);
}

static int is_role(const ChatMessage* m, const char* role) { return m->role && strcmp(m->role, role) == 0; }

static void render_llama3(ChatRenderer* r, const ChatOptions* opt, const ChatMessage* m, int n) {
    ChatTemplate kind = opt->template_kind;
    int start_header = need_token(r->t, "<|start_header_id|>", kind);
    int end_header = need_token(r->t, "<|end_header_id|>", kind);
    int eot = need_token(r->t, "<|eot_id|>", kind);
    int bos = need_token(r->t, "<|begin_of_text|>", kind);
    render_special(r, bos, 0);
    int i = 0;
    if (kind == CHAT_LLAMA31 || kind == CHAT_LLAMA32) {
        char today[64];
        const char* date = opt->date;
        if (date == NULL && kind == CHAT_LLAMA31) date = "26 Jul 2024";
        if (date == NULL) {
            time_t now = time(NULL);
            strftime(today, sizeof(today), "%d %b %Y", localtime(&now));
            date = today;
        }
        render_special(r, start_header, 0);
        render_str(r, "system", 0);
        render_special(r, end_header, 0);
        render_str(r, "\n\nCutting Knowledge Date: December 2023\nToday Date: ", 0);
        render_str(r, date, 0);
        render_str(r, "\n\n", 0);
        if (n > 0 && is_role(&m[0], "system")) { render_stripped(r, m[0].content, 1, 1, 0); i = 1; }
        render_special(r, eot, 0);
    }
    for (; i < n; i++) {
        int trained = is_role(&m[i], "assistant");
        render_special(r, start_header, 0);
        render_str(r, m[i].role, 0);
        render_special(r, end_header, 0);
        render_str(r, "\n\n", 0);
        render_stripped(r, m[i].content, 1, 1, trained);
        render_special(r, eot, trained);
    }
    if (opt->add_generation_prompt) {
        render_special(r, start_header, 0);
        render_str(r, "assistant", 0);
        render_special(r, end_header, 0);
        render_str(r, "\n\n", 0);
    }
}

static void render_llama2(ChatRenderer* r, const ChatOptions* opt, const ChatMessage* m, int n) {
    int bos = r->t->bos_id, eos = r->t->eos_id;
    if (bos < 0 || eos < 0) fail("chat template llama2 needs bos and eos tokens, which %s lacks", r->t->path);
    const char* system = NULL;
    int i = 0;
    if (n > 0 && is_role(&m[0], "system")) { system = m[0].content; i = 1; }
    for (int turn = 0; i < n; i++, turn++) {
        const char* want = turn % 2 == 0 ? "user" : "assistant";
        if (!is_role(&m[i], want)) {
            fail("chat template llama2: message %d has role \"%s\"; after an optional system message, roles "
                 "must alternate user/assistant starting with user", i, m[i].role ? m[i].role : "(none)");
        }
        if (turn % 2 == 0) {
            render_special(r, bos, 0);
            render_str(r, "[INST] ", 0);
            if (system && turn == 0) {
                render_str(r, "<<SYS>>\n", 0);
                render_str(r, system, 0);
                render_str(r, "\n<</SYS>>\n\n", 0);
                render_stripped(r, m[i].content, 0, 1, 0);
            } else {
                render_stripped(r, m[i].content, 1, 1, 0);
            }
            render_str(r, " [/INST]", 0);
        } else {
            render_str(r, " ", 1);   // the model must learn to write the space after [/INST] too
            render_stripped(r, m[i].content, 1, 1, 1);
            render_str(r, " ", 1);
            render_special(r, eos, 1);
        }
    }
    (void)opt;   // the prompt already ends with " [/INST]", where generation starts
}

static const char ALPACA_PREAMBLE_INPUT[] =
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.";
static const char ALPACA_PREAMBLE[] =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.";

static void render_alpaca(ChatRenderer* r, const ChatOptions* opt, const ChatMessage* m, int n) {
    if (r->t->bos_id >= 0) render_special(r, r->t->bos_id, 0);
    int i = 0, turn = 0;
    const char* system = NULL;
    if (n > 0 && is_role(&m[0], "system")) { system = m[0].content; i = 1; }
    for (; i < n; i++) {
        if (is_role(&m[i], "assistant")) {
            render_str(r, m[i].content, 1);
            if (r->t->eos_id >= 0) render_special(r, r->t->eos_id, 1);
            continue;
        }
        if (!is_role(&m[i], "user")) {
            fail("chat template alpaca: message %d has role \"%s\"; expected user (the instruction), an optional "
                 "input, then assistant", i, m[i].role ? m[i].role : "(none)");
        }
        const char* input = i + 1 < n && is_role(&m[i + 1], "input") ? m[i + 1].content : NULL;
        if (turn == 0) render_str(r, system ? system : input ? ALPACA_PREAMBLE_INPUT : ALPACA_PREAMBLE, 0);
        render_str(r, "\n\n### Instruction:\n", 0);
        render_str(r, m[i].content, 0);
        if (input) { render_str(r, "\n\n### Input:\n", 0); render_str(r, input, 0); i++; }
        render_str(r, "\n\n### Response:\n", 0);
        turn++;
    }
    (void)opt;   // the prompt already ends with "### Response:\n"
}

static void render_plain(ChatRenderer* r, const ChatOptions* opt, const ChatMessage* m, int n) {
    if (r->t->bos_id >= 0) render_special(r, r->t->bos_id, 0);
    for (int i = 0; i < n; i++) {
        if (i > 0) render_str(r, "\n\n", 0);
        render_str(r, m[i].content, is_role(&m[i], "assistant"));
    }
    if (opt->add_generation_prompt && n > 0) render_str(r, "\n\n", 0);   // where the next message starts
    else if (r->t->eos_id >= 0) render_special(r, r->t->eos_id, n > 0 && is_role(&m[n - 1], "assistant"));
}

void chat_render(const Tokenizer* t, const ChatOptions* opt, const ChatMessage* messages, int n_messages, Tokens* out) {
    for (int i = 0; i < n_messages; i++) {
        if (!messages[i].role || !messages[i].content) fail("chat message %d needs a role and a content", i);
    }
    ChatRenderer r = {t, out, opt->train_on_inputs, opt->parse_special_in_content, {0}, {0}};
    text_append(&r.text, "", 0);
    switch (opt->template_kind) {
        case CHAT_LLAMA3: case CHAT_LLAMA31: case CHAT_LLAMA32: render_llama3(&r, opt, messages, n_messages); break;
        case CHAT_LLAMA2: render_llama2(&r, opt, messages, n_messages); break;
        case CHAT_ALPACA: render_alpaca(&r, opt, messages, n_messages); break;
        case CHAT_PLAIN: render_plain(&r, opt, messages, n_messages); break;
        default: fail("unknown chat template %d", (int)opt->template_kind);
    }
    render_flush(&r);
    text_free(&r.text);
    free(r.trained.data);
}

// ----------------------------------------------------------------------------
// BPE trainer (byte-level). Count the corpus's pre-tokens ("words"), then repeatedly
// merge the most frequent adjacent pair of tokens, counted over all words weighted by
// their frequency (ties: the pair of lower ids), until the vocabulary has vocab_size
// tokens. Each pair remembers the words it occurs in, so a merge only revisits those;
// a max-heap holds candidate pairs, re-pushed when their count is stale.

typedef struct {
    int left, right;
    int64_t count;
    int* words;          // words the pair occurs in (may repeat; deduplicated on use)
    int n_words, cap_words;
} PairStat;

typedef struct { int64_t count; int pair; } PairEntry;

typedef struct {
    PairStat* pairs;
    int n_pairs, cap_pairs;
    int* slots;          // hash (left, right) -> pair index, -1 empty
    uint32_t mask;
    PairEntry* heap;
    size_t heap_n, heap_cap;
    int* touched;        // pairs whose count grew this step
    int n_touched, cap_touched;
} PairTable;

static int pair_index(PairTable* p, int left, int right) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint32_t slot = (uint32_t)hash_pair(key) & p->mask;
    while (p->slots[slot] >= 0) {
        PairStat* s = &p->pairs[p->slots[slot]];
        if (s->left == left && s->right == right) return p->slots[slot];
        slot = (slot + 1) & p->mask;
    }
    if ((uint32_t)(p->n_pairs + 1) * 2 > p->mask) {   // grow and rehash
        free(p->slots);
        p->mask = p->mask * 2 + 1;
        p->slots = malloc_check(((size_t)p->mask + 1) * sizeof(int), "the pair table");
        memset(p->slots, 0xFF, ((size_t)p->mask + 1) * sizeof(int));
        for (int i = 0; i < p->n_pairs; i++) {
            uint64_t k = (uint64_t)(uint32_t)p->pairs[i].left << 32 | (uint32_t)p->pairs[i].right;
            uint32_t s = (uint32_t)hash_pair(k) & p->mask;
            while (p->slots[s] >= 0) s = (s + 1) & p->mask;
            p->slots[s] = i;
        }
        return pair_index(p, left, right);
    }
    if (p->n_pairs == p->cap_pairs) {
        p->cap_pairs = p->cap_pairs ? 2 * p->cap_pairs : 1024;
        p->pairs = realloc_check(p->pairs, (size_t)p->cap_pairs * sizeof(PairStat), "the pair table");
    }
    p->pairs[p->n_pairs] = (PairStat){left, right, 0, NULL, 0, 0};
    p->slots[slot] = p->n_pairs;
    return p->n_pairs++;
}

static void pair_add(PairTable* p, int left, int right, int64_t count, int word) {
    int i = pair_index(p, left, right);
    PairStat* s = &p->pairs[i];
    s->count += count;
    if (count > 0) {
        if (s->n_words == s->cap_words) {
            s->cap_words = s->cap_words ? 2 * s->cap_words : 4;
            s->words = realloc_check(s->words, (size_t)s->cap_words * sizeof(int), "pair occurrences");
        }
        s->words[s->n_words++] = word;
        if (p->n_touched == p->cap_touched) {
            p->cap_touched = p->cap_touched ? 2 * p->cap_touched : 1024;
            p->touched = realloc_check(p->touched, (size_t)p->cap_touched * sizeof(int), "pair list");
        }
        p->touched[p->n_touched++] = i;
    }
}

static int pair_entry_before(const PairTable* p, PairEntry a, PairEntry b) {
    if (a.count != b.count) return a.count > b.count;
    const PairStat *x = &p->pairs[a.pair], *y = &p->pairs[b.pair];
    return x->left != y->left ? x->left < y->left : x->right < y->right;
}

static void pair_heap_push(PairTable* p, PairEntry e) {
    if (p->heap_n == p->heap_cap) {
        p->heap_cap = p->heap_cap ? 2 * p->heap_cap : 1024;
        p->heap = realloc_check(p->heap, p->heap_cap * sizeof(PairEntry), "the pair heap");
    }
    size_t i = p->heap_n++;
    while (i > 0 && pair_entry_before(p, e, p->heap[(i - 1) / 2])) {
        p->heap[i] = p->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    p->heap[i] = e;
}

static PairEntry pair_heap_pop(PairTable* p) {
    PairEntry top = p->heap[0], last = p->heap[--p->heap_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= p->heap_n) break;
        if (c + 1 < p->heap_n && pair_entry_before(p, p->heap[c + 1], p->heap[c])) c++;
        if (!pair_entry_before(p, p->heap[c], last)) break;
        p->heap[i] = p->heap[c];
        i = c;
    }
    if (p->heap_n > 0) p->heap[i] = last;
    return top;
}

// The 256 Llama 3.1 special tokens, appended after the learned vocabulary.
static void llama3_special_name(int k, char* out, size_t cap) {
    static const char* named[] = {"<|begin_of_text|>", "<|end_of_text|>", NULL, NULL, "<|finetune_right_pad_id|>",
                                  NULL, "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>",
                                  "<|python_tag|>"};
    static const int reserved_index[] = {0, 0, 0, 1, 0, 2};
    if (k < 11 && named[k]) snprintf(out, cap, "%s", named[k]);
    else snprintf(out, cap, "<|reserved_special_token_%d|>", k < 6 ? reserved_index[k] : k - 8);
}

typedef struct {   // token id -> bytes, plus bytes -> id, for the learned vocabulary
    TextBuffer bytes;
    uint32_t* start;   // (n+1,)
    int n, cap;
    int* slots;        // hash of bytes -> id, -1 empty; sized for cap
    uint32_t mask;
} TrainVocab;

static int train_vocab_find(const TrainVocab* v, const char* s, size_t n, uint32_t* slot_out) {
    uint32_t slot = (uint32_t)hash_bytes((const unsigned char*)s, n) & v->mask;
    for (; v->slots[slot] >= 0; slot = (slot + 1) & v->mask) {
        int id = v->slots[slot];
        if (v->start[id + 1] - v->start[id] == n && memcmp(v->bytes.data + v->start[id], s, n) == 0) return id;
    }
    if (slot_out) *slot_out = slot;
    return -1;
}

// The id of the token with bytes s[0..n), added if new.
static int train_vocab_add(TrainVocab* v, const char* s, size_t n) {
    if (v->n + 1 >= v->cap) {
        v->cap = v->cap ? 2 * v->cap : 1024;
        v->start = realloc_check(v->start, (size_t)(v->cap + 1) * sizeof(uint32_t), "the vocabulary");
        free(v->slots);
        v->mask = table_size_for((size_t)v->cap) - 1;
        v->slots = malloc_check(((size_t)v->mask + 1) * sizeof(int), "the vocabulary");
        memset(v->slots, 0xFF, ((size_t)v->mask + 1) * sizeof(int));
        for (int id = 0; id < v->n; id++) {
            uint32_t slot = 0;
            train_vocab_find(v, v->bytes.data + v->start[id], v->start[id + 1] - v->start[id], &slot);
            v->slots[slot] = id;
        }
    }
    uint32_t slot = 0;
    int id = train_vocab_find(v, s, n, &slot);
    if (id >= 0) return id;
    text_append(&v->bytes, s, n);
    v->start[v->n + 1] = (uint32_t)v->bytes.len;
    v->slots[slot] = v->n;
    return v->n++;
}

static cJSON* spelled(const TrainVocab* v, int id) {
    TextBuffer b = {0};
    for (uint32_t i = v->start[id]; i < v->start[id + 1]; i++) {
        char c[4];
        text_append(&b, c, (size_t)utf8_encode(byte_to_char[(unsigned char)v->bytes.data[i]], c));
    }
    cJSON* s = cJSON_CreateString(b.data);
    text_free(&b);
    return s;
}

static void write_json(const char* path, cJSON* root) {
    char* text = cJSON_PrintUnformatted(root);
    if (!text) fail("out of memory writing %s", path);
    FILE* f = fopen(path, "wb");
    if (!f) fail("cannot write %s: %s", path, strerror(errno));
    if (fputs(text, f) < 0 || fclose(f) != 0) fail("cannot write %s: %s", path, strerror(errno));
    free(text);
}

static cJSON* object_of(const char* json) {   // small fixed parts of tokenizer.json
    cJSON* o = cJSON_Parse(json);
    if (!o) fail("internal error: bad JSON constant");
    return o;
}

static void write_trained(const TrainVocab* v, int** merges, int n_merges, const char* out_dir) {
    mkdir(out_dir, 0755);
    if (!is_directory(out_dir)) fail("cannot create the output directory %s: %s", out_dir, strerror(errno));
    cJSON* root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON* added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int k = 0; k < 256; k++) {
        char name[64];
        llama3_special_name(k, name, sizeof(name));
        cJSON* a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", v->n + k);
        cJSON_AddStringToObject(a, "content", name);
        cJSON_AddFalseToObject(a, "single_word");
        cJSON_AddFalseToObject(a, "lstrip");
        cJSON_AddFalseToObject(a, "rstrip");
        cJSON_AddFalseToObject(a, "normalized");
        cJSON_AddTrueToObject(a, "special");
        cJSON_AddItemToArray(added, a);
    }
    cJSON_AddNullToObject(root, "normalizer");
    cJSON* pre = object_of("{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{},"
                           "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\","
                           "\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]}");
    cJSON* split = cJSON_GetArrayItem(cJSON_GetObjectItem(pre, "pretokenizers"), 0);
    cJSON_AddStringToObject(cJSON_GetObjectItem(split, "pattern"), "Regex", LLAMA3_PATTERN);
    cJSON_AddItemToObject(root, "pre_tokenizer", pre);
    char post[1024];
    snprintf(post, sizeof(post),
             "{\"type\":\"Sequence\",\"processors\":[{\"type\":\"ByteLevel\",\"add_prefix_space\":true,"
             "\"trim_offsets\":false,\"use_regex\":true},{\"type\":\"TemplateProcessing\","
             "\"single\":[{\"SpecialToken\":{\"id\":\"<|begin_of_text|>\",\"type_id\":0}},"
             "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],"
             "\"pair\":[{\"SpecialToken\":{\"id\":\"<|begin_of_text|>\",\"type_id\":0}},"
             "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
             "{\"SpecialToken\":{\"id\":\"<|begin_of_text|>\",\"type_id\":1}},"
             "{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}],"
             "\"special_tokens\":{\"<|begin_of_text|>\":"
             "{\"id\":\"<|begin_of_text|>\",\"ids\":[%d],\"tokens\":[\"<|begin_of_text|>\"]}}}]}", v->n);
    cJSON_AddItemToObject(root, "post_processor", object_of(post));
    cJSON_AddItemToObject(root, "decoder", object_of("{\"type\":\"ByteLevel\",\"add_prefix_space\":true,"
                                                     "\"trim_offsets\":true,\"use_regex\":true}"));
    cJSON* model = object_of("{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":null,"
                             "\"end_of_word_suffix\":null,\"fuse_unk\":false,\"byte_fallback\":false,"
                             "\"ignore_merges\":true}");
    cJSON* vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int id = 0; id < v->n; id++) {
        cJSON* s = spelled(v, id);
        cJSON_AddNumberToObject(vocab, s->valuestring, id);
        cJSON_Delete(s);
    }
    cJSON* merge_list = cJSON_AddArrayToObject(model, "merges");
    for (int i = 0; i < n_merges; i++) {
        cJSON* pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, spelled(v, merges[i][0]));
        cJSON_AddItemToArray(pair, spelled(v, merges[i][1]));
        cJSON_AddItemToArray(merge_list, pair);
    }
    cJSON_AddItemToObject(root, "model", model);
    char* path = path_join(out_dir, "tokenizer.json");
    write_json(path, root);
    free(path);
    cJSON_Delete(root);

    cJSON* config = cJSON_CreateObject();
    cJSON_AddStringToObject(config, "bos_token", "<|begin_of_text|>");
    cJSON_AddStringToObject(config, "eos_token", "<|end_of_text|>");
    cJSON_AddFalseToObject(config, "clean_up_tokenization_spaces");
    cJSON_AddNumberToObject(config, "model_max_length", 131072);
    cJSON_AddStringToObject(config, "tokenizer_class", "PreTrainedTokenizerFast");
    path = path_join(out_dir, "tokenizer_config.json");
    write_json(path, config);
    free(path);
    cJSON_Delete(config);
}

// Pre-tokenizes text into distinct words with counts; special-token text is cut out
// first, as encode does, so no learned token can contain it.
typedef struct {
    TextBuffer bytes;
    size_t* start;     // (n+1,)
    int64_t* count;
    int n, cap;
    int* slots;
    uint32_t mask;
} WordCounts;

static void word_count_add(WordCounts* w, const unsigned char* s, size_t n) {
    uint64_t h = hash_bytes(s, n);
    uint32_t slot = (uint32_t)h & w->mask;
    while (w->slots[slot] >= 0) {
        int i = w->slots[slot];
        if (w->start[i + 1] - w->start[i] == n && memcmp(w->bytes.data + w->start[i], s, n) == 0) {
            w->count[i]++;
            return;
        }
        slot = (slot + 1) & w->mask;
    }
    if (w->n + 1 >= w->cap) {
        w->cap = w->cap ? 2 * w->cap : 4096;
        w->start = realloc_check(w->start, (size_t)(w->cap + 1) * sizeof(size_t), "word counts");
        w->count = realloc_check(w->count, (size_t)w->cap * sizeof(int64_t), "word counts");
        w->start[0] = 0;
    }
    text_append(&w->bytes, s, n);
    w->start[w->n + 1] = w->bytes.len;
    w->count[w->n] = 1;
    w->slots[slot] = w->n++;
    if ((uint32_t)w->n * 2 > w->mask) {   // grow and rehash
        free(w->slots);
        w->mask = w->mask * 2 + 1;
        w->slots = malloc_check(((size_t)w->mask + 1) * sizeof(int), "word counts");
        memset(w->slots, 0xFF, ((size_t)w->mask + 1) * sizeof(int));
        for (int i = 0; i < w->n; i++) {
            uint32_t s2 = (uint32_t)hash_bytes((const unsigned char*)w->bytes.data + w->start[i],
                                               w->start[i + 1] - w->start[i]) & w->mask;
            while (w->slots[s2] >= 0) s2 = (s2 + 1) & w->mask;
            w->slots[s2] = i;
        }
    }
}

static void count_words(WordCounts* w, const unsigned char* s, size_t n) {
    char names[256][64];
    for (int k = 0; k < 256; k++) llama3_special_name(k, names[k], sizeof(names[k]));
    size_t piece = 0, i = 0;
    while (i <= n) {
        size_t cut = 0;
        if (i < n && s[i] == '<' && i + 1 < n && s[i + 1] == '|') {
            for (int k = 0; k < 256 && !cut; k++) {
                size_t len = strlen(names[k]);
                if (len <= n - i && memcmp(s + i, names[k], len) == 0) cut = len;
            }
        }
        if (cut || i == n) {
            for (size_t j = piece; j < i;) {
                size_t e = pretoken_end(s, i, j);
                word_count_add(w, s + j, e - j);
                j = e;
            }
            i += cut ? cut : 1;
            piece = i;
        } else {
            i++;
        }
    }
}

void tokenizer_train(const char* corpus, size_t len, int vocab_size, const char* out_dir) {
    unicode_init();
    byte_level_init();
    if (vocab_size < 256) fail("--vocab_size %d is too small: a byte-level vocabulary has at least the 256 bytes",
                               vocab_size);
    TextBuffer clean = {0};
    utf8_append_lossy(&clean, (const unsigned char*)corpus, len);
    WordCounts words = {0};
    words.mask = 4095;
    words.slots = malloc_check(4096 * sizeof(int), "word counts");
    memset(words.slots, 0xFF, 4096 * sizeof(int));
    text_append(&words.bytes, "", 0);
    count_words(&words, (const unsigned char*)clean.data, clean.len);
    if (words.n == 0) fail("the training corpus is empty");
    text_free(&clean);

    // the 256 byte tokens, in the order of their byte-level characters (as GPT-2 / Llama 3)
    TrainVocab v = {0};
    int byte_id[256];
    text_append(&v.bytes, "", 0);
    v.start = malloc_check(sizeof(uint32_t), "the vocabulary");
    v.start[0] = 0;
    for (uint32_t ch = 0; ch < 0x200; ch++) {
        for (int b = 0; b < 256; b++) {
            if (byte_to_char[b] == ch) { char c = (char)b; byte_id[b] = train_vocab_add(&v, &c, 1); }
        }
    }
    // each word as a list of token ids, initially its bytes
    int** sym = malloc_check((size_t)words.n * sizeof(int*), "words");
    int* sym_n = malloc_check((size_t)words.n * sizeof(int), "words");
    PairTable p = {0};
    p.mask = 4095;
    p.slots = malloc_check(4096 * sizeof(int), "the pair table");
    memset(p.slots, 0xFF, 4096 * sizeof(int));
    for (int w = 0; w < words.n; w++) {
        size_t n = words.start[w + 1] - words.start[w];
        sym[w] = malloc_check(n * sizeof(int), "a word");
        sym_n[w] = (int)n;
        for (size_t i = 0; i < n; i++) sym[w][i] = byte_id[(unsigned char)words.bytes.data[words.start[w] + i]];
        for (size_t i = 0; i + 1 < n; i++) pair_add(&p, sym[w][i], sym[w][i + 1], words.count[w], w);
    }
    for (int i = 0; i < p.n_pairs; i++) pair_heap_push(&p, (PairEntry){p.pairs[i].count, i});
    p.n_touched = 0;

    int merges_cap = vocab_size;
    int** merges = malloc_check((size_t)merges_cap * sizeof(int*), "merges");
    int n_merges = 0;
    int* stamp = malloc_check((size_t)words.n * sizeof(int), "words");
    for (int w = 0; w < words.n; w++) stamp[w] = -1;
    TextBuffer joined = {0};
    while (v.n < vocab_size && p.heap_n > 0) {
        PairEntry top = pair_heap_pop(&p);
        PairStat* best = &p.pairs[top.pair];
        if (top.count != best->count) {   // stale: re-queue with the current count
            if (best->count > 0) pair_heap_push(&p, (PairEntry){best->count, top.pair});
            continue;
        }
        if (best->count <= 0) continue;
        int left = best->left, right = best->right;
        joined.len = 0;
        text_append(&joined, v.bytes.data + v.start[left], v.start[left + 1] - v.start[left]);
        text_append(&joined, v.bytes.data + v.start[right], v.start[right + 1] - v.start[right]);
        // (the same bytes may already be a token, reached by another split: then it is reused)
        int merged = train_vocab_add(&v, joined.data, joined.len);
        merges[n_merges] = malloc_check(2 * sizeof(int), "a merge");
        merges[n_merges][0] = left;
        merges[n_merges][1] = right;
        n_merges++;
        if (n_merges == merges_cap) merges = realloc_check(merges, (size_t)(merges_cap *= 2) * sizeof(int*), "merges");
        p.n_touched = 0;
        int n_where = best->n_words;
        int* where = best->words;   // pair_add may move p.pairs: keep the list, not the pointer
        best->words = NULL;
        best->n_words = best->cap_words = 0;
        for (int k = 0; k < n_where; k++) {
            int w = where[k];
            if (stamp[w] == n_merges) continue;
            stamp[w] = n_merges;
            int* s = sym[w];
            int64_t c = words.count[w];
            for (int i = 0; i + 1 < sym_n[w]; i++) {
                if (s[i] != left || s[i + 1] != right) continue;
                if (i > 0) { pair_add(&p, s[i - 1], left, -c, w); pair_add(&p, s[i - 1], merged, c, w); }
                if (i + 2 < sym_n[w]) { pair_add(&p, right, s[i + 2], -c, w); pair_add(&p, merged, s[i + 2], c, w); }
                pair_add(&p, left, right, -c, w);
                s[i] = merged;
                memmove(s + i + 1, s + i + 2, (size_t)(sym_n[w] - i - 2) * sizeof(int));
                sym_n[w]--;
            }
        }
        free(where);
        for (int k = 0; k < p.n_touched; k++) {
            int i = p.touched[k];
            if (p.pairs[i].count > 0) pair_heap_push(&p, (PairEntry){p.pairs[i].count, i});
        }
    }
    if (v.n < vocab_size) {
        fprintf(stderr, "note: the corpus has no more pairs to merge; the vocabulary has %d tokens, not %d\n",
                v.n, vocab_size);
    }
    write_trained(&v, merges, n_merges, out_dir);

    for (int i = 0; i < n_merges; i++) free(merges[i]);
    for (int w = 0; w < words.n; w++) free(sym[w]);
    for (int i = 0; i < p.n_pairs; i++) free(p.pairs[i].words);
    free(merges); free(sym); free(sym_n); free(stamp); free(p.pairs); free(p.slots); free(p.heap); free(p.touched);
    free(v.start); free(v.slots); text_free(&v.bytes); text_free(&joined);
    free(words.start); free(words.count); free(words.slots); text_free(&words.bytes);
}

// ----------------------------------------------------------------------------
// command line

#ifndef TRAIN_NO_MAIN  // the project's one guard: programs and tests using this file as a library
#include "llmc/flags.h"  // defines: Flag, FlagTable, flags_parse, flags_usage

typedef struct {
    const char* tokenizer;       // a model directory or a tokenizer.json
    int ordinary, skip_special;  // encode, decode
    const char* template_name;   // chat
    const char* date;
    int train_on_inputs, generation_prompt, parse_special_in_content;
    const char* corpus;          // train
    int vocab_size;
    const char* out;
} TokenizerArgs;

#define ARG(field) offsetof(TokenizerArgs, field)
static const Flag TOKENIZER_FLAGS[] = {
    {"--tokenizer", NULL, FLAG_STRING, ARG(tokenizer), 0, 0,
     "a model directory holding tokenizer.json, or the file itself"},
    {"--ordinary", NULL, FLAG_BOOL, ARG(ordinary), 0, 1, "encode: special-token text stays text"},
    {"--skip_special", NULL, FLAG_BOOL, ARG(skip_special), 0, 1, "decode: leave out special tokens"},
    {"--template", NULL, FLAG_STRING, ARG(template_name), 0, 0,
     "chat: plain, alpaca, llama2, llama3, llama3.1, llama3.2 (none: from the tokenizer)"},
    {"--date", NULL, FLAG_STRING, ARG(date), 0, 0,
     "chat: the date in the Llama 3.1/3.2 system header, e.g. \"26 Jul 2024\""},
    {"--train_on_inputs", NULL, FLAG_BOOL, ARG(train_on_inputs), 0, 1, "chat: every token is trained (mask all 1)"},
    {"--generation_prompt", NULL, FLAG_BOOL, ARG(generation_prompt), 0, 1, "chat: end with the assistant's header"},
    {"--parse_special_in_content", NULL, FLAG_BOOL, ARG(parse_special_in_content), 0, 1,
     "chat: special-token text in messages (\"<|eot_id|>\") becomes the control token, as HF's "
     "apply_chat_template does; off: it stays text"},
    {"--corpus", NULL, FLAG_STRING, ARG(corpus), 0, 0, "train: the text to learn the vocabulary from"},
    {"--vocab_size", NULL, FLAG_INT, ARG(vocab_size), 1, 1 << 24,
     "train: BPE tokens to learn (special tokens come on top)"},
    {"--out", NULL, FLAG_STRING, ARG(out), 0, 0, "train: the directory for tokenizer.json and tokenizer_config.json"},
};
#undef ARG

static const TokenizerArgs TOKENIZER_DEFAULTS = {0};

static const FlagTable TOKENIZER_FLAG_TABLE = {
    "./tokenizer",
    "usage:\n"
    "  ./tokenizer encode --tokenizer PATH [--ordinary] [TEXT]   ids of TEXT (default: stdin), like HF\n"
    "        encode(add_special_tokens=False)\n"
    "  ./tokenizer decode --tokenizer PATH [--skip_special] [ID ...]   text of the ids (default: stdin)\n"
    "  ./tokenizer chat --tokenizer PATH [--template NAME] [--date D] [--train_on_inputs] [--generation_prompt]\n"
    "        [--parse_special_in_content] FILE.json   render [{\"role\":..., \"content\":...}, ...]: ids, mask, text\n"
    "  ./tokenizer train --corpus FILE --vocab_size N --out DIR   learn a byte-level BPE tokenizer.json\n"
    "flags:",
    TOKENIZER_FLAGS, (int)(sizeof(TOKENIZER_FLAGS) / sizeof(TOKENIZER_FLAGS[0])), &TOKENIZER_DEFAULTS,
    sizeof(TokenizerArgs)};

static char* read_stdin(size_t* len) {
    TextBuffer b = {0};
    char chunk[65536];
    size_t got;
    text_append(&b, "", 0);
    while ((got = fread(chunk, 1, sizeof(chunk), stdin)) > 0) text_append(&b, chunk, got);
    *len = b.len;
    return b.data;
}

static int parse_int(const char* s, const char* what) {
    char* end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < -2147483647L || v > 2147483647L) fail("%s \"%s\" is not an integer",
                                                                                       what, s);
    return (int)v;
}

static int command_encode(const char* path, int ordinary, int argc, char** argv) {
    Tokenizer t;
    tokenizer_load(&t, path);
    size_t len;
    char* text = argc > 0 ? strdup_check(argv[0]) : read_stdin(&len);
    if (argc > 0) len = strlen(text);
    Tokens ids = {0};
    if (ordinary) tokenizer_encode_ordinary(&t, text, len, &ids);
    else tokenizer_encode(&t, text, len, &ids);
    for (size_t i = 0; i < ids.n; i++) printf(i ? " %d" : "%d", ids.ids[i]);
    printf("\n");
    tokens_free(&ids);
    free(text);
    tokenizer_free(&t);
    return 0;
}

static int command_decode(const char* path, int skip_special, int argc, char** argv) {
    Tokenizer t;
    tokenizer_load(&t, path);
    Tokens ids = {0};
    if (argc > 0) {
        for (int i = 0; i < argc; i++) tokens_push(&ids, parse_int(argv[i], "token id"), 0);
    } else {
        size_t len;
        char* text = read_stdin(&len);
        for (char* word = strtok(text, " \t\r\n"); word;
             word = strtok(NULL, " \t\r\n")) tokens_push(&ids, parse_int(word, "token id"), 0);
        free(text);
    }
    TextBuffer out = {0};
    tokenizer_decode(&t, ids.ids, ids.n, skip_special, &out);
    fwrite(out.data ? out.data : "", 1, out.len, stdout);
    printf("\n");
    text_free(&out);
    tokens_free(&ids);
    tokenizer_free(&t);
    return 0;
}

static int command_chat(const char* path, ChatOptions opt, const char* template_name, const char* file) {
    Tokenizer t;
    tokenizer_load(&t, path);
    opt.template_kind = template_name ? chat_template_from_name(template_name) : chat_template_default(&t);
    char* text = read_file(file, NULL, "");
    cJSON* root = cJSON_Parse(text);
    if (!root) fail("%s: invalid JSON near \"%.40s\"", file, cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "?");
    const cJSON* list = cJSON_IsArray(root) ? root : cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!cJSON_IsArray(list)) fail("%s: expected [{\"role\": ..., \"content\": ...}, ...] or {\"messages\": [...]}",
                                   file);
    int n = cJSON_GetArraySize(list), i = 0;
    ChatMessage* messages = malloc_check((size_t)n * sizeof(ChatMessage) + 1, "messages");
    const cJSON* item;
    cJSON_ArrayForEach(item, list) {
        messages[i].role = json_string(item, "role");
        messages[i].content = json_string(item, "content");
        if (!messages[i].role || !messages[i].content) fail("%s: message %d needs string \"role\" and \"content\"",
                                                            file, i);
        i++;
    }
    Tokens out = {0};
    chat_render(&t, &opt, messages, n, &out);
    printf("template: %s\nids:", chat_template_name(opt.template_kind));
    for (size_t k = 0; k < out.n; k++) printf(" %d", out.ids[k]);
    printf("\nmask:");
    for (size_t k = 0; k < out.n; k++) printf(" %d", out.mask[k]);
    printf("\ntext (trained tokens in [[ ]]):\n");
    TextBuffer piece = {0};
    for (size_t k = 0; k < out.n; k++) {   // runs of equal mask, decoded together
        size_t j = k;
        while (j < out.n && out.mask[j] == out.mask[k]) j++;
        piece.len = 0;
        tokenizer_decode(&t, out.ids + k, j - k, 0, &piece);
        printf("%s%s%s", out.mask[k] ? "[[" : "", piece.data ? piece.data : "", out.mask[k] ? "]]" : "");
        k = j - 1;
    }
    printf("\n");
    text_free(&piece);
    tokens_free(&out);
    free(messages);
    cJSON_Delete(root);
    free(text);
    tokenizer_free(&t);
    return 0;
}

int main(int argc, char** argv) {
    const char* command = argc > 1 ? argv[1] : "";
    if (strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0 || strcmp(command, "help") == 0) {
        flags_usage(&TOKENIZER_FLAG_TABLE);
        return 0;
    }
    if (strcmp(command, "encode") != 0 && strcmp(command, "decode") != 0 && strcmp(command, "chat") != 0 &&
        strcmp(command, "train") != 0) {
        flags_usage(&TOKENIZER_FLAG_TABLE);
        fail(*command ? "unknown command '%s' (encode, decode, chat or train)"
                      : "give a command: encode, decode, chat or train",
             command);
    }
    TokenizerArgs a;
    char** rest = malloc_check((size_t)argc * sizeof(char*), "arguments");
    int n_rest = flags_parse(&TOKENIZER_FLAG_TABLE, &a, argc, argv, 2, rest);
    int rc;
    if (strcmp(command, "train") == 0) {
        if (!a.corpus || !a.out || a.vocab_size <= 0) fail("train needs --corpus FILE --vocab_size N --out DIR");
        size_t len;
        char* text = read_file(a.corpus, &len, "");
        tokenizer_train(text, len, a.vocab_size, a.out);
        free(text);
        printf("wrote %s/tokenizer.json and %s/tokenizer_config.json\n", a.out, a.out);
        rc = 0;
    } else {
        if (!a.tokenizer) fail("%s needs --tokenizer PATH (a model directory or its tokenizer.json)", command);
        if (strcmp(command, "encode") == 0) rc = command_encode(a.tokenizer, a.ordinary, n_rest, rest);
        else if (strcmp(command, "decode") == 0) rc = command_decode(a.tokenizer, a.skip_special, n_rest, rest);
        else {
            if (n_rest != 1) fail("chat needs one FILE.json with the messages");
            ChatOptions opt = {CHAT_PLAIN, a.date, a.train_on_inputs, a.generation_prompt,
                               a.parse_special_in_content};
            rc = command_chat(a.tokenizer, opt, a.template_name, rest[0]);
        }
    }
    free(rest);
    return rc;
}

#endif
