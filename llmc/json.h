// json.h: the JSON files we read, strictly: json_parse (exactly one value, no NUL byte or
// \u0000 escape, nothing after it), json_field (the last of duplicate keys, as Python's
// json and Hugging Face read them), and getters that range-check every value before it is
// converted: json_int, json_number, json_bool, json_string.
#ifndef LLMC_JSON_H
#define LLMC_JSON_H

#include <math.h>
#include <cjson/cJSON.h>
#include "utils.h"

// ----------------------------------------------------------------------------
// parsing: cJSON would read a NUL byte or a \u0000 escape as the end of a string (a name
// cut short, a file that ends early) and ignores whatever follows the first value.

// The first byte of text[0..len) that makes it unacceptable, or NULL: a NUL byte, or a
// \u0000 escape inside a string. *why says which.
static const char* json_text_problem(const char* text, size_t len, const char** why) {
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (ch == '\0') { *why = "a NUL byte"; return text + i; }
        if (!in_string) { in_string = ch == '"'; continue; }
        if (ch == '"') in_string = 0;
        else if (ch == '\\' && i + 1 < len) {
            if (len - i >= 6 && memcmp(text + i + 1, "u0000", 5) == 0) {
                *why = "a \\u0000 escape (a NUL character) in a string";
                return text + i;
            }
            i++;  // the escaped character
        }
    }
    return NULL;
}

// Line (from 1) of position at in text.
static int json_line_of(const char* text, const char* at) {
    int line = 1;
    for (const char* p = text; p < at; p++) line += *p == '\n';
    return line;
}

// Parses text[0..len) as exactly one JSON value, with only whitespace after it. On
// failure returns NULL with *at where the problem is and *why what it is.
static cJSON* json_parse_value(const char* text, size_t len, const char** at, const char** why) {
    *at = json_text_problem(text, len, why);
    if (*at != NULL) return NULL;
    const char* end = NULL;
    cJSON* json = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (json == NULL) {
        *at = end != NULL && end >= text && end <= text + len ? end : text;
        *why = "not valid JSON";
        return NULL;
    }
    while (end < text + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    if (end < text + len) {
        cJSON_Delete(json);
        *at = end;
        *why = "text after the JSON value";
        return NULL;
    }
    return json;
}

// Reads path as one JSON object, or fails naming the line. hint ends a "cannot open" error.
// 64 MiB is far more than any config (a 405B model's weight index is 100 KB).
static cJSON* json_read_object(const char* path, const char* hint) {
    size_t len;
    char* text = read_file_at_most(path, &len, hint, (size_t)64 << 20);
    const char *at, *why;
    cJSON* json = json_parse_value(text, len, &at, &why);
    if (json == NULL) fail("%s line %d: %s", path, json_line_of(text, at), why);
    free(text);
    if (!cJSON_IsObject(json)) fail("%s: not a JSON object ({...})", path);
    return json;
}

// ----------------------------------------------------------------------------
// fields: the value a reader of the file would see, checked before it is used

// obj[key], the last one when the key repeats (Python's json keeps the last); NULL if absent.
static cJSON* json_field(const cJSON* obj, const char* key) {
    cJSON* found = NULL;
    if (!cJSON_IsObject(obj)) return NULL;
    for (cJSON* item = obj->child; item != NULL; item = item->next) {
        if (item->string != NULL && strcmp(item->string, key) == 0) found = item;
    }
    return found;
}

// present and not null
static int json_has(const cJSON* obj, const char* key) {
    cJSON* v = json_field(obj, key);
    return v != NULL && !cJSON_IsNull(v);
}

// x in its shortest form that reads back exactly: 0.1, 1e+300, 5.0000001.
static const char* json_format_number(double x, char* buf, size_t size) {
    if (x == floor(x) && fabs(x) < 1e15) {  // integers in full: 300, not 3e+02
        snprintf(buf, size, "%.0f", x);
        return buf;
    }
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, size, "%.*g", digits, x);
        if (strtod(buf, NULL) == x) break;
    }
    return buf;
}

// What v is, for error messages ("got ..."): the number, or its kind.
static const char* json_describe(const cJSON* v, char* buf, size_t size) {
    if (cJSON_IsNumber(v)) json_format_number(v->valuedouble, buf, size);
    else if (cJSON_IsString(v)) snprintf(buf, size, "the string \"%.40s\"", v->valuestring);
    else snprintf(buf, size, "%s", cJSON_IsBool(v) ? (cJSON_IsTrue(v) ? "true" : "false")
                                   : cJSON_IsArray(v) ? "a list" : cJSON_IsObject(v) ? "an object" : "something else");
    return buf;
}

// A value (absent or null: fallback, or an error when required) that must be a number in [lo, hi].
static double json_check_number(const cJSON* v, const char* key, double lo, double hi, int integer, const char* path) {
    int ok = cJSON_IsNumber(v) && v->valuedouble >= lo && v->valuedouble <= hi;  // NaN and inf fail too
    if (ok && integer) ok = v->valuedouble == floor(v->valuedouble);
    if (!ok) {
        char got[64], low[32], high[32];
        fail("%s: \"%s\" must be %s in [%s, %s], got %s", path, key, integer ? "an integer" : "a number",
             json_format_number(lo, low, sizeof(low)), json_format_number(hi, high, sizeof(high)),
             json_describe(v, got, sizeof(got)));
    }
    return v->valuedouble;
}

static int json_absent(const cJSON* obj, const char* key, int required, const char* path) {
    if (json_has(obj, key)) return 0;
    if (required) fail("%s: missing required field \"%s\"", path, key);
    return 1;
}

// obj[key]: a finite number in [lo, hi]; fallback when absent or null (an error when required).
static double json_number(const cJSON* obj, const char* key, double lo, double hi, int required, double fallback,
                          const char* path) {
    if (json_absent(obj, key, required, path)) return fallback;
    return json_check_number(json_field(obj, key), key, lo, hi, 0, path);
}

// obj[key]: an integer in [lo, hi] (written 5, 5.0 or 5e0; never 5.5 or 1e300).
static long long json_int(const cJSON* obj, const char* key, long long lo, long long hi, int required,
                          long long fallback, const char* path) {
    if (json_absent(obj, key, required, path)) return fallback;
    return (long long)json_check_number(json_field(obj, key), key, (double)lo, (double)hi, 1, path);
}

// An element of a list that must be an integer in [lo, hi]; key names the list.
static long long json_int_item(const cJSON* v, const char* key, long long lo, long long hi, const char* path) {
    return (long long)json_check_number(v, key, (double)lo, (double)hi, 1, path);
}

// obj[key]: true or false; fallback when absent or null.
static int json_bool(const cJSON* obj, const char* key, int fallback, const char* path) {
    if (!json_has(obj, key)) return fallback;
    cJSON* v = json_field(obj, key);
    if (!cJSON_IsBool(v)) {
        char got[64];
        fail("%s: \"%s\" must be true or false, got %s", path, key, json_describe(v, got, sizeof(got)));
    }
    return cJSON_IsTrue(v);
}

// obj[key]: a string; fallback when absent or null.
static const char* json_string(const cJSON* obj, const char* key, const char* fallback, const char* path) {
    if (!json_has(obj, key)) return fallback;
    cJSON* v = json_field(obj, key);
    if (!cJSON_IsString(v)) {
        char got[64];
        fail("%s: \"%s\" must be a string, got %s", path, key, json_describe(v, got, sizeof(got)));
    }
    return v->valuestring;
}

#endif  // LLMC_JSON_H
