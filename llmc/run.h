// run.h: learning-rate schedules (learning_rate_at), the loss history and its SVG curve, format_duration
#ifndef LLMC_RUN_H
#define LLMC_RUN_H

#include <math.h>
#include "utils.h"

// ----------------------------------------------------------------------------
// learning-rate schedules, as Hugging Face's: linear warmup from 0, then cosine or
// linear decay to min_lr, or constant. step counts from 0.

enum { SCHEDULE_COSINE, SCHEDULE_LINEAR, SCHEDULE_CONSTANT };

float learning_rate_at(int step, int total, int warmup, float lr, float min_lr, int schedule) {
    if (step < warmup) return lr * (float)step / (float)warmup;
    if (schedule == SCHEDULE_CONSTANT || total <= warmup) return lr;
    float progress = (float)(step - warmup) / (float)(total - warmup);
    if (progress > 1.0f) progress = 1.0f;
    float decay = schedule == SCHEDULE_COSINE ? 0.5f * (1.0f + cosf((float)M_PI * progress)) : 1.0f - progress;
    return min_lr + (lr - min_lr) * decay;
}

// ----------------------------------------------------------------------------
// the loss curve: train and validation loss against step, as an SVG

typedef struct {
    float* train;  // (steps) loss of each step
    float* val;    // (steps) validation loss, NaN where not computed
    int steps, capacity;
} LossHistory;

void history_add(LossHistory* h, float train, float val) {
    if (h->steps == h->capacity) {
        h->capacity = h->capacity ? 2 * h->capacity : 1024;
        h->train = realloc(h->train, h->capacity * sizeof(float));
        h->val = realloc(h->val, h->capacity * sizeof(float));
        if (h->train == NULL || h->val == NULL) fail("out of memory for the loss history");
    }
    h->train[h->steps] = train;
    h->val[h->steps] = val;
    h->steps++;
}

// Appends printf-formatted text to a growing string.
static void append(char** buf, size_t* len, size_t* cap, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *buf = realloc(*buf, *cap);
        if (*buf == NULL) fail("out of memory");
    }
    va_start(ap, fmt);
    vsnprintf(*buf + *len, n + 1, fmt, ap);
    va_end(ap);
    *len += n;
}

void write_loss_svg(const LossHistory* h, const char* path) {
    const int W = 640, H = 400, left = 60, right = 20, top = 20, bottom = 50;
    float hi = 0.0f;
    for (int i = 0; i < h->steps; i++) {
        float v[2] = {h->train[i], h->val[i]};
        for (int k = 0; k < 2; k++) if (isfinite(v[k])) hi = fmaxf(hi, v[k]);
    }
    // cross-entropy is >= 0: the axis runs from 0 to a round number, ticks a round step apart
    if (!(hi > 0.0f)) hi = 1.0f;
    float tick = powf(10.0f, floorf(log10f(hi / 4)));
    if (hi / tick > 20) tick *= 5; else if (hi / tick > 8) tick *= 2;
    int ticks = (int)ceilf(hi / tick);
    hi = ticks * tick;
    int steps = h->steps > 1 ? h->steps : 2;
    char* buf = NULL;
    size_t len = 0, cap = 0;
    append(&buf, &len, &cap, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
           "font-family=\"sans-serif\" font-size=\"12\">\n"
           "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H);
    for (int k = 0; k <= ticks; k++) {  // axes: loss ticks, first and last step
        float y = top + (H - top - bottom) * (1.0f - (float)k / ticks);
        append(&buf, &len, &cap, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
               "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n",
               left, y, W - right, y, left - 6, y + 4, k * tick);
    }
    append(&buf, &len, &cap, "<text x=\"%d\" y=\"%d\">0</text><text x=\"%d\" y=\"%d\" text-anchor=\"end\">%d</text>\n"
           "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">step</text>\n",
           left, H - bottom + 16, W - right, H - bottom + 16, h->steps - 1,
           (left + W - right) / 2, H - 12);
    const char* colors[2] = {"#1f77b4", "#d62728"};
    const char* labels[2] = {"train loss", "validation loss"};
    for (int k = 0; k < 2; k++) {
        const float* series = k ? h->val : h->train;
        append(&buf, &len, &cap, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", colors[k]);
        for (int i = 0; i < h->steps; i++) {
            if (!isfinite(series[i])) continue;
            float x = left + (W - left - right) * (float)i / (steps - 1);
            float y = top + (H - top - bottom) * (hi - series[i]) / hi;
            append(&buf, &len, &cap, "%.1f,%.1f ", x, y);
        }
        append(&buf, &len, &cap, "\"/>\n<text x=\"%d\" y=\"%d\" fill=\"%s\">%s</text>\n",
               W - right - 120, top + 14 + 16 * k, colors[k], labels[k]);
    }
    append(&buf, &len, &cap, "</svg>\n");
    write_text_file(path, buf);
    free(buf);
}

// ----------------------------------------------------------------------------
// progress and resources

// h:mm:ss, or mm:ss under an hour
static void format_duration(char* buf, size_t size, double seconds) {
    int s = (int)(seconds + 0.5);
    if (s >= 3600) snprintf(buf, size, "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
    else snprintf(buf, size, "%02d:%02d", s / 60, s % 60);
}

#endif  // LLMC_RUN_H
