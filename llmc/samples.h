// samples.h: compare_answers: the base and the fine-tuned model's greedy answers to a file of
// prompts, through ./generate, printed side by side and written to samples.jsonl.
#ifndef LLMC_SAMPLES_H
#define LLMC_SAMPLES_H

#include <fcntl.h>
#include <sys/wait.h>
#include <cjson/cJSON.h>
#include "utils.h"
#include "../tokenizer.h"

// Runs argv[0] with argv, its stdout returned (malloc'd) and its stderr sent to log_path;
// fails, showing the log, if it does not exit 0.
static char* run_and_capture(char* const argv[], const char* log_path) {
    int fds[2];
    if (pipe(fds) != 0) fail("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) fail("fork: %s", strerror(errno));
    if (pid == 0) {
        int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fds[1], STDOUT_FILENO);
        if (log_fd >= 0) dup2(log_fd, STDERR_FILENO);
        close(fds[0]);
        execv(argv[0], argv);
        fprintf(stderr, "error: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    TextBuffer out = {0};
    char chunk[4096];
    ssize_t got;
    while ((got = read(fds[0], chunk, sizeof(chunk))) > 0) text_append(&out, chunk, (size_t)got);
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fail("%s failed:\n%s", argv[0], read_file(log_path, NULL, ""));
    }
    text_append(&out, "", 1);
    return out.data;
}

// The next line of *text (newline removed, "\n" escapes kept), advancing it.
static char* next_line(char** text) {
    char* line = *text;
    char* end = strchr(line, '\n');
    if (end) { *end = '\0'; *text = end + 1; }
    else *text = line + strlen(line);
    return line;
}

// Answers every line of prompts_path with the base model and with the trained one (greedy,
// through ./generate next to the program `self`): trained_model alone when the run trained
// every weight, else base_model with the adapter in output_dir. Prints them side by side and
// writes OUTPUT_DIR/samples.jsonl with {"prompt", "base", "fine_tuned"} per prompt.
// template_name "auto": the tokenizer's own template.
static void compare_answers(const char* self, const char* base_model, const char* trained_model, const char* output_dir,
                            const char* prompts_path, const char* template_name) {
    const char* slash = strrchr(self, '/');
    char* dir = strndup(self, slash ? (size_t)(slash - self) : 0);
    char* generate = path_join(*dir ? dir : ".", "generate");
    free(dir);
    if (access(generate, X_OK) != 0) {
        printf("sample answers skipped: %s is missing (make generate)\n", generate);
        free(generate);
        return;
    }
    int full_finetune = trained_model != NULL;
    char* log_path = path_join(output_dir, "generate.log");
    char* base_argv[] = {generate, "--model", (char*)base_model, "--prompts", (char*)prompts_path, "--temperature", "0",
                         "--max_new_tokens", "48", "--template", (char*)template_name, NULL};
    char* tuned_argv[] = {generate, "--model", (char*)(full_finetune ? trained_model : base_model), "--adapter",
                          (char*)output_dir, "--prompts", (char*)prompts_path, "--temperature", "0", "--max_new_tokens",
                          "48", "--template", (char*)template_name, NULL};
    if (strcmp(template_name, "auto") == 0) base_argv[9] = tuned_argv[11] = NULL;  // the tokenizer's own template
    if (full_finetune) memmove(&tuned_argv[3], &tuned_argv[5], 9 * sizeof(char*));  // no --adapter
    char* base = run_and_capture(base_argv, log_path);
    char* tuned = run_and_capture(tuned_argv, log_path);
    char* prompts = read_file(prompts_path, NULL, "");
    char* samples_path = path_join(output_dir, "samples.jsonl");
    TextBuffer samples = {0};
    char *p = prompts, *b = base, *t = tuned;
    printf("\nanswers to %s, greedy (base model | fine-tuned):\n", prompts_path);
    while (*p) {
        char* prompt = next_line(&p);
        size_t len = strlen(prompt);
        if (len && prompt[len - 1] == '\r') prompt[len - 1] = '\0';
        if (*prompt == '\0') continue;
        char* base_answer = next_line(&b);
        char* tuned_answer = next_line(&t);
        printf("\n  prompt:     %s\n  base:       %s\n  fine-tuned: %s\n", prompt, base_answer, tuned_answer);
        cJSON* item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "prompt", prompt);
        cJSON_AddStringToObject(item, "base", base_answer);
        cJSON_AddStringToObject(item, "fine_tuned", tuned_answer);
        char* json = cJSON_PrintUnformatted(item);
        text_append(&samples, json, strlen(json));
        text_append(&samples, "\n", 2);  // and the terminating 0
        samples.len--;
        free(json);
        cJSON_Delete(item);
    }
    write_text_file(samples_path, samples.data ? samples.data : "");
    printf("\nsamples: %s\n", samples_path);
    free(samples.data); free(base); free(tuned); free(prompts); free(samples_path); free(log_path); free(generate);
}

#endif  // LLMC_SAMPLES_H
