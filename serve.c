/*
serve.c: the model (and its LoRA adapter) behind an OpenAI-compatible HTTP server, and a
chat page for the browser.

  GET  /                      the chat page (web/index.html)
  GET  /v1/models             the one model this server runs
  POST /v1/chat/completions   messages -> answer, whole or streamed as server-sent events

The generation is generate.c's: this file #includes it, loads the model with the same
flags (the rows of GENERATE_FLAGS), renders the messages with the model's chat template
(tokenizer.c's chat_render, the code training uses) and samples with the same sampler,
so an answer equals ./generate --prompt's for the same seed and settings.

HTTP is GNU libmicrohttpd's, one thread per connection: it parses requests, limits header
size, connections and idle time, and sends streamed responses. One worker thread owns
the model and answers the queued requests one at a time, first come first served; a
connection thread waits for its request's answer and hands it out as it grows.

Read top to bottom: the job queue and the worker, the request (JSON in, OpenAI's
checks), the HTTP side (errors, the page, the routes), main.
*/
#define _GNU_SOURCE    // memmem, POLLRDHUP
#define TRAIN_NO_MAIN  // generate.c as a library: everything but its chat loop and main
#include "generate.c"
#undef TRAIN_NO_MAIN
#include <microhttpd.h>  // defines: MHD_start_daemon, MHD_create_response_*, MHD_queue_response, ...
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>

#define MAX_BODY (1 << 20)        // bytes of a request body; more is 413
#define MAX_STOP_STRINGS 4        // as OpenAI's "stop"
#define MAX_STOP_LENGTH 256       // bytes of one stop string
#define MAX_PAGE_FILE (4 << 20)   // bytes of a file of the page's folder
#define WAIT_SLICE_MS 50          // how often a waiting connection checks that its client is still there

// ----------------------------------------------------------------------------
// jobs: one chat completion, from the connection thread that read it to the worker
// that answers it and back

typedef struct Server Server;

typedef struct Job {
    Server* server;
    // the request, set before it is queued
    int* prompt;             // (n_prompt) the rendered conversation, ending with the assistant header
    int n_prompt;
    int max_tokens, stream;
    float temperature, top_p;
    uint64_t seed;
    char* stop[MAX_STOP_STRINGS];  // stop strings: the answer ends before the first one
    int n_stop;
    char id[32];             // "chatcmpl-N"
    long created;            // Unix time
    int fd;                  // the client's socket, to notice it leaving
    struct MHD_Connection* connection;
    // the answer, under server.lock
    TextBuffer out;          // bytes for the client: events as they come (stream), or the JSON at the end
    size_t sent;             // bytes of out already handed to libmicrohttpd
    int done;                // the worker has finished with it
    int cancelled;           // the client left: the worker stops or skips it
    int references;          // the connection's and the worker's; the last one frees it
    struct Job* next;        // in the queue
} Job;

typedef struct {
    GenerateArgs generate;  // first, so that GENERATE_FLAGS' offsets hold in ServeArgs
    const char* host;
    int port;
    const char* page_dir;
    int timeout;
} ServeArgs;

struct Server {
    ServeArgs args;
    char* model_name;        // what /v1/models lists and requests name: the adapter's folder, else the model's
    // the model: the worker's alone, but for the tokenizer, which connection threads only read (chat_render)
    Model model;
    Text* text;
    Generator generator;
    Sampler sampler;         // its temperature and top_p are set per request
    float temperature, top_p;  // the defaults: generation_config.json's, or the flags'
    StopTokens stop_tokens;
    // the queue
    pthread_mutex_t lock;
    pthread_cond_t changed;  // a job was queued, grew or finished, or the server is stopping
    Job *head, *tail;
    uint64_t next_id;
    int stopping;
};

static void job_release(Job* j) {  // with the server's lock held
    if (--j->references > 0) return;
    free(j->prompt);
    for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
    text_free(&j->out);
    free(j);
}

static void job_append(Server* s, Job* j, const char* bytes, size_t n) {
    pthread_mutex_lock(&s->lock);
    text_append(&j->out, bytes, n);
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
}

static int job_cancelled(Server* s, Job* j) {
    pthread_mutex_lock(&s->lock);
    int cancelled = j->cancelled || s->stopping;
    pthread_mutex_unlock(&s->lock);
    return cancelled;
}

// A chat.completion object or chunk with its id, object name, time and model, and its one
// choice (index 0), returned in *choice for the caller to fill.
static cJSON* completion_object(const Server* s, const Job* j, const char* object, cJSON** choice) {
    cJSON* o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)j->created);
    cJSON_AddStringToObject(o, "model", s->model_name);
    *choice = cJSON_CreateObject();
    cJSON_AddNumberToObject(*choice, "index", 0);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), *choice);
    return o;
}

// The token counts of a finished answer.
static void add_usage(cJSON* o, const Job* j, int n_out) {
    cJSON* usage = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(usage, "prompt_tokens", j->n_prompt);
    cJSON_AddNumberToObject(usage, "completion_tokens", n_out);
    cJSON_AddNumberToObject(usage, "total_tokens", j->n_prompt + n_out);
}

// One server-sent event: "data: {chunk}\n\n", a chat.completion.chunk with the content
// delta (NULL: none; "": the opening chunk, which names the role) and, on the last one,
// the finish reason and the token counts.
static void send_chunk(Server* s, Job* j, const char* content, size_t len, const char* finish, int n_out) {
    cJSON* choice;
    cJSON* chunk = completion_object(s, j, "chat.completion.chunk", &choice);
    cJSON* delta = cJSON_AddObjectToObject(choice, "delta");
    if (content) {
        char* text = strndup(content, len);
        if (text == NULL) fail("out of memory");
        if (len == 0) cJSON_AddStringToObject(delta, "role", "assistant");
        cJSON_AddStringToObject(delta, "content", text);
        free(text);
    }
    if (finish) cJSON_AddStringToObject(choice, "finish_reason", finish);
    else cJSON_AddNullToObject(choice, "finish_reason");
    if (finish) add_usage(chunk, j, n_out);
    char* json = cJSON_PrintUnformatted(chunk);
    if (json == NULL) fail("out of memory");
    TextBuffer event = {0};
    text_append(&event, "data: ", 6);
    text_append(&event, json, strlen(json));
    text_append(&event, "\n\n", 2);
    job_append(s, j, event.data, event.len);
    text_free(&event);
    free(json);
    cJSON_Delete(chunk);
}

// The whole answer as one chat.completion object, when not streaming.
static void send_completion(Server* s, Job* j, const char* answer, const char* finish, int n_out) {
    cJSON* choice;
    cJSON* body = completion_object(s, j, "chat.completion", &choice);
    cJSON* message = cJSON_AddObjectToObject(choice, "message");
    cJSON_AddStringToObject(message, "role", "assistant");
    cJSON_AddStringToObject(message, "content", answer);
    cJSON_AddStringToObject(choice, "finish_reason", finish);
    add_usage(body, j, n_out);
    char* json = cJSON_PrintUnformatted(body);
    if (json == NULL) fail("out of memory");
    job_append(s, j, json, strlen(json));
    free(json);
    cJSON_Delete(body);
}

// Where the first stop string starts in text (len), or len when none occurs.
static size_t find_stop(const Job* j, const char* text, size_t len) {
    size_t first = len;
    for (int i = 0; i < j->n_stop; i++) {
        const char* at = memmem(text, len, j->stop[i], strlen(j->stop[i]));
        if (at && (size_t)(at - text) < first) first = (size_t)(at - text);
    }
    return first;
}

// The start of the UTF-8 character at or before byte at of text.
static size_t utf8_start(const char* text, size_t at) {
    while (at > 0 && ((unsigned char)text[at] & 0xC0) == 0x80) at--;
    return at;
}

// Answers one job: ./generate --prompt's loop (generate_tokens), with the text going to
// the job instead of stdout, stop strings, and a check that the client is still there.
// The cache starts empty for every request, so the prompt goes through the same prefill
// as in ./generate and the answer does not depend on the requests before it.
static void answer_job(Server* s, Job* j) {
    Generator* g = &s->generator;
    Sampler* sampler = &s->sampler;
    sampler_seed(sampler, j->seed);
    sampler->temperature = j->temperature;
    sampler->top_p = j->top_p;
    g->pos = 0;
    generator_extend(g, j->prompt, j->n_prompt);
    char* text = NULL;  // the answer so far, written by text_stream_token
    size_t len = 0, shown = 0, hold = 0;
    for (int i = 0; i < j->n_stop; i++) if (strlen(j->stop[i]) - 1 > hold) hold = strlen(j->stop[i]) - 1;
    FILE* sink = open_memstream(&text, &len);
    if (sink == NULL) fail("out of memory");
    const char* finish = "length";
    int n_out = 0, cancelled = 0;
    if (j->stream) send_chunk(s, j, "", 0, NULL, 0);
    while (n_out < j->max_tokens && !(cancelled = job_cancelled(s, j))) {
        int id = generator_sample(g, sampler, s->text);
        n_out++;
        if (is_stop_token(&s->stop_tokens, id)) { finish = "stop"; break; }
        text_stream_token(s->text, id, sink);
        fflush(sink);
        if (find_stop(j, text, len) < len) { finish = "stop"; break; }
        // streamed up to what cannot be the start of a stop string
        size_t ready = utf8_start(text, len > hold ? len - hold : 0);
        if (j->stream && ready > shown) {
            send_chunk(s, j, text + shown, ready - shown, NULL, 0);
            shown = ready;
        }
        if (n_out == j->max_tokens || g->pos == g->maxT) break;  // length: max_tokens or the context
        generator_forward(g, &id, 1);
    }
    text_stream_end(s->text, sink, NULL);
    fclose(sink);  // text (len) is now the whole answer
    size_t end = find_stop(j, text, len);
    if (end < len) finish = "stop";
    if (!cancelled && j->stream) {
        if (end > shown) send_chunk(s, j, text + shown, end - shown, NULL, 0);
        send_chunk(s, j, NULL, 0, finish, n_out);
        job_append(s, j, "data: [DONE]\n\n", 14);
    } else if (!cancelled) {
        text[end] = '\0';
        send_completion(s, j, text, finish, n_out);
    }
    free(text);
    fprintf(stderr, "[%s: %d prompt + %d answer tokens, %s]\n", j->id, j->n_prompt, n_out,
            cancelled ? "cancelled: the client left" : finish);
}

// The worker: takes the jobs in order until the server stops.
static void* worker_main(void* arg) {
    Server* s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (s->head == NULL && !s->stopping) pthread_cond_wait(&s->changed, &s->lock);
        if (s->stopping) break;
        Job* j = s->head;
        s->head = j->next;
        if (s->head == NULL) s->tail = NULL;
        int skip = j->cancelled;
        pthread_mutex_unlock(&s->lock);
        if (!skip) answer_job(s, j);
        pthread_mutex_lock(&s->lock);
        j->done = 1;
        pthread_cond_broadcast(&s->changed);
        job_release(j);
    }
    while (s->head) {  // stopping: drop what is still queued
        Job* j = s->head;
        s->head = j->next;
        j->done = 1;
        job_release(j);
    }
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void job_enqueue(Server* s, Job* j) {
    pthread_mutex_lock(&s->lock);
    j->references = 2;  // the connection's and the worker's
    snprintf(j->id, sizeof(j->id), "chatcmpl-%llu", (unsigned long long)++s->next_id);
    j->created = (long)time(NULL);
    if (s->tail) s->tail->next = j;
    else s->head = j;
    s->tail = j;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
}

// Whether the client closed its end of the socket (or it broke).
static int client_gone(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

// Waits (s->lock held) until the job has news: returns 1, or 0 when the client left or the
// server is stopping, after marking the job cancelled.
static int job_wait(Server* s, Job* j) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += WAIT_SLICE_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) { until.tv_sec++; until.tv_nsec -= 1000000000L; }
    pthread_cond_timedwait(&s->changed, &s->lock, &until);
    if (s->stopping || client_gone(j->fd)) {
        j->cancelled = 1;
        return 0;
    }
    return 1;
}

// ----------------------------------------------------------------------------
// the request: OpenAI's chat.completions body, checked field by field

typedef struct {
    int status;         // 400, 404, 405, 413, 500
    const char* type;   // OpenAI's error type
    char message[400];
} HttpError;

static int refuse(HttpError* e, int status, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    e->status = status;
    e->type = status == 500 ? "server_error" : "invalid_request_error";
    return 0;
}

// A present, non-null field (OpenAI's clients send null for "not given").
static const cJSON* field(const cJSON* body, const char* name) {
    const cJSON* f = cJSON_GetObjectItemCaseSensitive(body, name);
    return cJSON_IsNull(f) ? NULL : f;
}

static int read_number(const cJSON* body, const char* name, double lo, double hi, int integer, double* value,
                       HttpError* e) {
    const cJSON* f = field(body, name);
    if (f == NULL) return 1;
    if (!cJSON_IsNumber(f) || !(f->valuedouble >= lo && f->valuedouble <= hi) ||
        (integer && f->valuedouble != floor(f->valuedouble))) {
        return refuse(e, 400, "\"%s\" must be %s in [%g, %g]", name, integer ? "an integer" : "a number", lo, hi);
    }
    *value = f->valuedouble;
    return 1;
}

// messages: an optional system message, then user and assistant taking turns, ending with
// the user: every chat template renders that (llama2 and alpaca accept nothing else).
static int read_messages(const cJSON* body, Message** messages, int* n, HttpError* e) {
    const cJSON* list = field(body, "messages");
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0) {
        return refuse(e, 400, "\"messages\" must be a non-empty list of {\"role\", \"content\"}");
    }
    *n = cJSON_GetArraySize(list);
    *messages = calloc(*n, sizeof(Message));
    if (*messages == NULL) return refuse(e, 500, "out of memory");
    int i = 0, first = 0;
    for (const cJSON* m = list->child; m; m = m->next, i++) {
        const cJSON* role = field(m, "role");
        const cJSON* content = field(m, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content)) {
            return refuse(e, 400, "messages[%d] must be an object with a string \"role\" and a string \"content\"", i);
        }
        if (i == 0 && strcmp(role->valuestring, "system") == 0) first = 1;
        const char* want = i == 0 && first ? "system" : (i - first) % 2 == 0 ? "user" : "assistant";
        if (strcmp(role->valuestring, want) != 0) {
            return refuse(e, 400, "messages[%d] has role \"%.40s\" where \"%s\" was expected: an optional system "
                                  "message, then user and assistant taking turns, ending with user",
                          i, role->valuestring, want);
        }
        (*messages)[i] = (Message){role->valuestring, content->valuestring};
    }
    if ((*n - first) % 2 == 0) return refuse(e, 400, "the last message must be the user's");
    return 1;
}

static int read_stop(const cJSON* body, Job* j, HttpError* e) {
    const cJSON* stop = field(body, "stop");
    if (stop == NULL) return 1;
    const char* what = "\"stop\" must be a string or a list of at most 4 non-empty strings of at most 256 bytes";
    if (cJSON_IsString(stop)) {
        if (stop->valuestring[0] == '\0' || strlen(stop->valuestring) > MAX_STOP_LENGTH) return refuse(e, 400, what);
        j->stop[j->n_stop++] = strdup_check(stop->valuestring);
        return 1;
    }
    if (!cJSON_IsArray(stop) || cJSON_GetArraySize(stop) > MAX_STOP_STRINGS) return refuse(e, 400, what);
    for (const cJSON* s = stop->child; s; s = s->next) {
        if (!cJSON_IsString(s) || s->valuestring[0] == '\0' || strlen(s->valuestring) > MAX_STOP_LENGTH) {
            return refuse(e, 400, what);
        }
        j->stop[j->n_stop++] = strdup_check(s->valuestring);
    }
    return 1;
}

// The body's fields into j; renders the messages with the chat template.
static int read_request(Server* s, const cJSON* body, Job* j, HttpError* e) {
    if (!cJSON_IsObject(body)) return refuse(e, 400, "the body must be a JSON object: {\"messages\": [...], ...}");
    const cJSON* model = field(body, "model");
    if (model && (!cJSON_IsString(model) || strcmp(model->valuestring, s->model_name) != 0)) {
        refuse(e, 404, "model %.60s%s%s not found: this server runs \"%s\" (GET /v1/models)",
               cJSON_IsString(model) ? "\"" : "", cJSON_IsString(model) ? model->valuestring : "(not a string)",
               cJSON_IsString(model) ? "\"" : "", s->model_name);
        return 0;
    }
    const cJSON* stream = field(body, "stream");
    if (stream && !cJSON_IsBool(stream)) return refuse(e, 400, "\"stream\" must be true or false");
    j->stream = cJSON_IsTrue(stream);
    double temperature = s->temperature, top_p = s->top_p, seed = (double)s->args.generate.seed;
    double max_tokens = s->args.generate.max_new_tokens, n = 1, maxT = s->generator.maxT;
    if (!read_number(body, "temperature", 0, 2, 0, &temperature, e) ||
        !read_number(body, "top_p", 1e-6, 1, 0, &top_p, e) ||
        !read_number(body, "max_tokens", 1, maxT, 1, &max_tokens, e) ||
        !read_number(body, "max_completion_tokens", 1, maxT, 1, &max_tokens, e) ||
        !read_number(body, "seed", 0, 9007199254740992.0, 1, &seed, e) ||  // 2^53: a double's whole numbers
        !read_number(body, "n", 1, 1, 1, &n, e) || !read_stop(body, j, e)) {
        return 0;
    }
    j->temperature = (float)temperature;
    j->top_p = (float)top_p;
    j->max_tokens = (int)max_tokens;
    j->seed = (uint64_t)seed;
    Message* messages = NULL;
    int n_messages = 0;
    int ok = read_messages(body, &messages, &n_messages, e);
    if (ok) {
        j->n_prompt = text_render_chat(s->text, messages, n_messages, &j->prompt);
        if (j->n_prompt > s->generator.maxT) {
            ok = refuse(e, 400, "the messages take %d tokens but the context holds %d (--context); "
                                "shorten them or drop old turns", j->n_prompt, s->generator.maxT);
        }
    }
    free(messages);
    return ok;
}

// ----------------------------------------------------------------------------
// HTTP: libmicrohttpd calls on_request for each request, several times: once with the
// headers, once per piece of body, once at the end, where the answer is queued.

typedef struct {
    TextBuffer body;
    int too_big;
    Job* job;  // a non-streamed completion the connection still holds
} Request;

static enum MHD_Result reply(struct MHD_Connection* c, int status, const char* content_type, const void* data,
                             size_t len) {
    struct MHD_Response* r = MHD_create_response_from_buffer(len, (void*)data, MHD_RESPMEM_MUST_COPY);
    if (r == NULL) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, POST");
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

// {"error": {"message", "type", "param", "code"}}, as OpenAI answers; logged to stderr.
static enum MHD_Result reply_error(struct MHD_Connection* c, const char* method, const char* url,
                                   const HttpError* e) {
    cJSON* body = cJSON_CreateObject();
    cJSON* error = cJSON_AddObjectToObject(body, "error");
    cJSON_AddStringToObject(error, "message", e->message);
    cJSON_AddStringToObject(error, "type", e->type);
    cJSON_AddNullToObject(error, "param");
    cJSON_AddNullToObject(error, "code");
    char* json = cJSON_PrintUnformatted(body);
    if (json == NULL) fail("out of memory");
    fprintf(stderr, "[%.10s %.80s: %d %s]\n", method, url, e->status, e->message);
    enum MHD_Result ok = reply(c, e->status, "application/json", json, strlen(json));
    free(json);
    cJSON_Delete(body);
    return ok;
}

static enum MHD_Result reply_refused(struct MHD_Connection* c, const char* method, const char* url, int status,
                                     const char* fmt, ...) {
    HttpError e;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof(e.message), fmt, ap);
    va_end(ap);
    e.status = status;
    e.type = status == 500 ? "server_error" : "invalid_request_error";
    return reply_error(c, method, url, &e);
}

// GET /NAME: a file of the page's folder; / is index.html. Names are letters, digits, '-',
// '_' and '.' (not first), so no path can leave the folder; links are not followed.
static enum MHD_Result serve_page_file(Server* s, struct MHD_Connection* c, const char* method, const char* url) {
    const char* name = strcmp(url, "/") == 0 ? "index.html" : url + 1;
    size_t n = strlen(name);
    int valid = n > 0 && n <= 64 && name[0] != '.' && strspn(name, "abcdefghijklmnopqrstuvwxyz"
                "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == n;
    if (!valid) return reply_refused(c, method, url, 404, "no such page: %.80s", url);
    char* path = path_join(s->args.page_dir, name);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    free(path);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_PAGE_FILE) {
        if (fd >= 0) close(fd);
        return reply_refused(c, method, url, 404, "no such page: %.80s (the page's folder is %s; --page_dir)", url,
                             s->args.page_dir);
    }
    const char* dot = strrchr(name, '.');
    const char* type = !dot ? "application/octet-stream"
                       : strcmp(dot, ".html") == 0 ? "text/html; charset=utf-8"
                       : strcmp(dot, ".css") == 0 ? "text/css; charset=utf-8"
                       : strcmp(dot, ".js") == 0 ? "text/javascript; charset=utf-8"
                       : strcmp(dot, ".svg") == 0 ? "image/svg+xml"
                       : strcmp(dot, ".png") == 0 ? "image/png" : "application/octet-stream";
    struct MHD_Response* r = MHD_create_response_from_fd((uint64_t)st.st_size, fd);  // closes fd
    if (r == NULL) { close(fd); return MHD_NO; }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result serve_models(Server* s, struct MHD_Connection* c) {
    cJSON* body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "object", "list");
    cJSON* model = cJSON_CreateObject();
    cJSON_AddStringToObject(model, "id", s->model_name);
    cJSON_AddStringToObject(model, "object", "model");
    cJSON_AddNumberToObject(model, "created", 0);
    cJSON_AddStringToObject(model, "owned_by", "llmc");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(body, "data"), model);
    char* json = cJSON_PrintUnformatted(body);
    if (json == NULL) fail("out of memory");
    enum MHD_Result ok = reply(c, MHD_HTTP_OK, "application/json", json, strlen(json));
    free(json);
    cJSON_Delete(body);
    return ok;
}

// The streamed answer: libmicrohttpd asks for the next bytes; this waits until the worker
// has some, the answer is complete, or the client is gone.
static ssize_t stream_read(void* cls, uint64_t pos, char* buf, size_t max) {
    Job* j = cls;
    Server* s = j->server;
    (void)pos;
    pthread_mutex_lock(&s->lock);
    ssize_t n = MHD_CONTENT_READER_END_WITH_ERROR;
    for (;;) {
        if (j->sent < j->out.len) {
            n = (ssize_t)(j->out.len - j->sent < max ? j->out.len - j->sent : max);
            memcpy(buf, j->out.data + j->sent, n);
            j->sent += n;
            if (j->done && j->sent == j->out.len) {  // the last bytes: the idle timeout is back
                MHD_set_connection_option(j->connection, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)s->args.timeout);
            }
            break;
        }
        if (j->done) { n = MHD_CONTENT_READER_END_OF_STREAM; break; }
        if (!job_wait(s, j)) break;
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

// The streamed response is done with its job: sent, or the client left (then the worker stops).
static void stream_free(void* cls) {
    Job* j = cls;
    Server* s = j->server;
    pthread_mutex_lock(&s->lock);
    if (!j->done) j->cancelled = 1;
    job_release(j);
    pthread_mutex_unlock(&s->lock);
}

static enum MHD_Result serve_chat(Server* s, struct MHD_Connection* c, Request* r, const char* method,
                                  const char* url) {
    cJSON* body = cJSON_ParseWithLength(r->body.data ? r->body.data : "", r->body.len);
    if (body == NULL) return reply_refused(c, method, url, 400, "the body is not valid JSON");
    Job* j = calloc(1, sizeof(Job));
    if (j == NULL) fail("out of memory");
    j->server = s;
    HttpError e;
    int ok = read_request(s, body, j, &e);
    cJSON_Delete(body);
    if (!ok) {
        j->references = 1;
        job_release(j);
        return reply_error(c, method, url, &e);
    }
    j->fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD)->connect_fd;
    j->connection = c;
    // No idle timeout while the answer is on its way: waiting in the queue is not the
    // client's silence. A client that leaves is noticed by client_gone instead.
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    job_enqueue(s, j);
    if (j->stream) {
        struct MHD_Response* response = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, j,
                                                                          stream_free);
        if (response == NULL) fail("out of memory");
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8");
        MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        enum MHD_Result queued = MHD_queue_response(c, MHD_HTTP_OK, response);
        MHD_destroy_response(response);  // stream_free runs when libmicrohttpd is done with it
        return queued;
    }
    r->job = j;  // released in on_completed, whatever happens
    pthread_mutex_lock(&s->lock);
    int answered = 1;
    while (!j->done && (answered = job_wait(s, j))) {}
    pthread_mutex_unlock(&s->lock);
    if (!answered) return MHD_NO;  // the client left, or the server is stopping: close
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)s->args.timeout);  // counts from now
    return reply(c, MHD_HTTP_OK, "application/json", j->out.data, j->out.len);
}

static enum MHD_Result on_request(void* cls, struct MHD_Connection* c, const char* url, const char* method,
                                  const char* version, const char* upload, size_t* upload_size, void** context) {
    Server* s = cls;
    Request* r = *context;
    (void)version;
    if (r == NULL) {  // the headers are in
        r = calloc(1, sizeof(Request));
        if (r == NULL) return MHD_NO;
        *context = r;
        const char* length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (length && strtoull(length, NULL, 10) > MAX_BODY) {
            return reply_refused(c, method, url, 413, "the body has %.20s bytes; at most %d are accepted", length,
                                 MAX_BODY);
        }
        return MHD_YES;
    }
    if (*upload_size > 0) {  // a piece of the body
        if (r->body.len + *upload_size > MAX_BODY) r->too_big = 1;
        else text_append(&r->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0, post = strcmp(method, "POST") == 0;
    if (r->too_big) return reply_refused(c, method, url, 413, "the body is over %d bytes", MAX_BODY);
    if (strcmp(url, "/v1/models") == 0) {
        return get ? serve_models(s, c) : reply_refused(c, method, url, 405, "%s /v1/models: use GET", method);
    }
    if (strcmp(url, "/v1/chat/completions") == 0) {
        return post ? serve_chat(s, c, r, method, url)
                    : reply_refused(c, method, url, 405, "%.10s /v1/chat/completions: use POST", method);
    }
    if (strncmp(url, "/v1/", 4) == 0) {
        return reply_refused(c, method, url, 404, "unknown endpoint %.80s: this server has GET /v1/models and "
                                                  "POST /v1/chat/completions", url);
    }
    if (!get) return reply_refused(c, method, url, 405, "%.10s %.80s: the page's files take GET", method, url);
    return serve_page_file(s, c, method, url);
}

static void on_completed(void* cls, struct MHD_Connection* c, void** context, enum MHD_RequestTerminationCode code) {
    Server* s = cls;
    Request* r = *context;
    (void)c;
    (void)code;
    if (r == NULL) return;
    if (r->job) {
        pthread_mutex_lock(&s->lock);
        if (!r->job->done) r->job->cancelled = 1;
        job_release(r->job);
        pthread_mutex_unlock(&s->lock);
    }
    text_free(&r->body);
    free(r);
    *context = NULL;
}

// ----------------------------------------------------------------------------
// main

// ./generate's flags for the model and sampling, the same rows of GENERATE_FLAGS
static const char* const SHARED_FLAGS[] = {
    "--model", "--adapter", "--merge_adapter", "--template", "--date", "--parse_special_in_content",
    "--max_new_tokens", "--temperature", "--top_p", "--top_k", "--repetition_penalty", "--seed", "--context",
    "--weights", "--threads"};

#define ARG(field) offsetof(ServeArgs, field)
static const Flag SERVE_FLAGS[] = {
    {"--host", NULL, FLAG_STRING, ARG(host), 0, 0, "address to listen on (0.0.0.0: every interface)"},
    {"--port", NULL, FLAG_INT, ARG(port), 0, 65535, "TCP port; 0 = any free one (printed)"},
    {"--page_dir", NULL, FLAG_STRING, ARG(page_dir), 0, 0, "the chat page's folder, served at /"},
    {"--timeout", NULL, FLAG_INT, ARG(timeout), 1, 3600, "seconds a silent client keeps its connection"},
};
#undef ARG

#define N_SHARED (int)(sizeof(SHARED_FLAGS) / sizeof(SHARED_FLAGS[0]))
#define N_SERVE (int)(sizeof(SERVE_FLAGS) / sizeof(SERVE_FLAGS[0]))

static void parse_serve_args(ServeArgs* a, int argc, char** argv) {
    static Flag flags[N_SHARED + N_SERVE];
    int n = 0;
    for (int i = 0; i < N_SHARED; i++) {
        for (int k = 0; k < GENERATE_FLAG_TABLE.count; k++) {
            if (strcmp(GENERATE_FLAGS[k].name, SHARED_FLAGS[i]) == 0) flags[n++] = GENERATE_FLAGS[k];
        }
    }
    if (n != N_SHARED) fail("internal error: serve.c names a flag generate.c does not have");
    for (int i = 0; i < N_SERVE; i++) flags[n++] = SERVE_FLAGS[i];
    ServeArgs defaults = {.host = "127.0.0.1", .port = 8080, .page_dir = "web", .timeout = 10};
    defaults.generate = GENERATE_DEFAULTS;
    FlagTable table = {"./serve",
                       "usage: ./serve --model DIR [--adapter DIR] [--host 127.0.0.1] [--port 8080] [flags]\n"
                       "An OpenAI-compatible server (/v1/chat/completions, /v1/models) and a chat page at /.",
                       flags, n, &defaults, sizeof(ServeArgs)};
    flags_parse(&table, a, argc, argv, 1, NULL);
    if (a->generate.model_dir == NULL) fail("--model DIR is required (a Hugging Face model directory); "
                                            "./serve --help lists every flag");
    if (a->generate.merge_adapter && a->generate.adapter_dir == NULL) fail("--merge_adapter needs --adapter DIR");
    const char* w = a->generate.weights;
    if (strcmp(w, "auto") != 0 && strcmp(w, "f32") != 0 && strcmp(w, "bf16") != 0) {
        fail("--weights must be auto, f32 or bf16, got '%s'", w);
    }
}

// The last part of a path: "out/pirate/" -> "pirate" (malloc'd).
static char* last_path_part(const char* path) {
    size_t end = strlen(path);
    while (end > 1 && path[end - 1] == '/') end--;
    size_t start = end;
    while (start > 0 && path[start - 1] != '/') start--;
    return strndup(path + start, end - start);
}

static struct MHD_Daemon* start_http(Server* s) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo* address;
    int status = getaddrinfo(s->args.host, NULL, &hints, &address);
    if (status != 0) fail("--host %s: %s", s->args.host, gai_strerror(status));
    struct sockaddr_storage bind_to = {0};
    memcpy(&bind_to, address->ai_addr, address->ai_addrlen);
    int ipv6 = address->ai_family == AF_INET6;
    freeaddrinfo(address);
    if (ipv6) ((struct sockaddr_in6*)&bind_to)->sin6_port = htons((uint16_t)s->args.port);
    else ((struct sockaddr_in*)&bind_to)->sin_port = htons((uint16_t)s->args.port);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
                     MHD_USE_ERROR_LOG | (ipv6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon* d = MHD_start_daemon(
        flags, (uint16_t)s->args.port, NULL, NULL, on_request, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr*)&bind_to,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,            // threads and sockets held by clients
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->args.timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536,    // per connection; bounds a request's headers
        MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
        MHD_OPTION_END);
    if (d == NULL) fail("cannot listen on %s port %d: %s (is another server there? try --port)", s->args.host,
                        s->args.port, strerror(errno));
    return d;
}

int main(int argc, char** argv) {
    threads_init(argv);
    // SIGINT and SIGTERM go to sigwait below: blocked here, before any thread starts, so
    // every thread inherits the mask
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);  // a client that left is noticed by its write failing, not by dying

    static Server server;
    Server* s = &server;
    parse_serve_args(&s->args, argc, argv);
    generate_open(&s->args.generate, &s->model, &s->text, &s->generator, &s->sampler, &s->stop_tokens);
    print_settings(&s->args.generate, &s->generator, &s->sampler);
    s->temperature = s->sampler.temperature;
    s->top_p = s->sampler.top_p;
    s->model_name = last_path_part(s->args.generate.adapter_dir ? s->args.generate.adapter_dir
                                                                : s->args.generate.model_dir);
    // Rendering a conversation here makes the chat template's own errors (a token the
    // template needs and the tokenizer lacks) fail now rather than on the first request,
    // and builds tokenizer.c's lookup tables before connection threads share them.
    Message probe[] = {{"system", "s"}, {"user", "u"}, {"assistant", "a"}, {"user", "u"}};
    int* probe_ids = NULL;
    text_render_chat(s->text, probe, 4, &probe_ids);
    free(probe_ids);

    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->changed, NULL);
    pthread_t worker;
    if (pthread_create(&worker, NULL, worker_main, s) != 0) fail("cannot start the worker thread");
    struct MHD_Daemon* http = start_http(s);
    const union MHD_DaemonInfo* info = MHD_get_daemon_info(http, MHD_DAEMON_INFO_BIND_PORT);
    fprintf(stderr, "serving \"%s\" on http://%s:%u/ (chat page: %s/index.html; Ctrl-C stops)\n", s->model_name,
            s->args.host, info ? info->port : (unsigned)s->args.port, s->args.page_dir);

    int signal_number;
    sigwait(&stop_signals, &signal_number);
    fprintf(stderr, "[%s: stopping]\n", strsignal(signal_number));
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    MHD_stop_daemon(http);  // waits for the connection threads, which see stopping
    pthread_join(worker, NULL);
    free(s->model_name);
    fprintf(stderr, "[stopped]\n");
    return 0;
}
