/* Event logs in logfmt; see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define LINE_MAX_BYTES 2048

static const struct {
    const char *name;
    enum log_level level;
} level_names[] = {
    {"trace", LOG_LEVEL_TRACE}, {"debug", LOG_LEVEL_DEBUG}, {"info", LOG_LEVEL_INFO},
    {"warn", LOG_LEVEL_WARN},   {"warning", LOG_LEVEL_WARN}, {"error", LOG_LEVEL_ERROR},
    {"fatal", LOG_LEVEL_ERROR}, {"panic", LOG_LEVEL_ERROR},
};

void log_init(struct dmsgd_log *lg)
{
    const char *journal = getenv("JOURNAL_STREAM");

    lg->level = LOG_LEVEL_INFO;
    lg->out = NULL;
    lg->journal_prefix = journal != NULL && journal[0] != '\0';
}

int log_level_parse(const char *name, enum log_level *out)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcasecmp(name, level_names[i].name) == 0) {
            *out = level_names[i].level;
            return 0;
        }
    }
    return -1;
}

const char *log_level_name(enum log_level level)
{
    switch (level) {
    case LOG_LEVEL_TRACE: return "trace";
    case LOG_LEVEL_DEBUG: return "debug";
    case LOG_LEVEL_INFO: return "info";
    case LOG_LEVEL_WARN: return "warn";
    case LOG_LEVEL_ERROR: return "error";
    }
    return "info";
}

bool log_enabled(const struct dmsgd_log *lg, enum log_level level)
{
    return lg != NULL && level >= lg->level;
}

/* syslog priorities as journald reads them from a "<N>" prefix. */
static int journal_priority(enum log_level level)
{
    switch (level) {
    case LOG_LEVEL_ERROR: return 3;
    case LOG_LEVEL_WARN: return 4;
    case LOG_LEVEL_INFO: return 6;
    default: return 7;
    }
}

static bool needs_quoting(const char *s)
{
    if (*s == '\0')
        return true;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
            return true;
    }
    return false;
}

const char *log_quote(const char *s, char *out, size_t cap)
{
    size_t n = 0;

    if (cap == 0)
        return out;
    if (!needs_quoting(s)) {
        size_t len = strlen(s);
        if (len >= cap)
            len = cap - 1;
        memcpy(out, s, len);
        out[len] = '\0';
        return out;
    }
    /* Room for the closing quote and the NUL is kept back at every step. */
    if (cap < 3) {
        out[0] = '\0';
        return out;
    }
    out[n++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[5];
        size_t esc_len;

        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            esc_len = 2;
        } else if (*p == '\n') {
            memcpy(esc, "\\n", 2);
            esc_len = 2;
        } else if (*p < ' ' || *p == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", *p);
            esc_len = 4;
        } else {
            esc[0] = (char)*p;
            esc_len = 1;
        }
        if (n + esc_len + 2 > cap)
            break;
        memcpy(out + n, esc, esc_len);
        n += esc_len;
    }
    out[n++] = '"';
    out[n] = '\0';
    return out;
}

static size_t append_timestamp(char *line, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    size_t n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, cap, "ts=%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, cap - n, ".%03ldZ ", ts.tv_nsec / 1000000L);
    return n < cap ? n : cap - 1;
}

void log_event(const struct dmsgd_log *lg, enum log_level level, const char *msg,
               const char *kv_fmt, ...)
{
    char line[LINE_MAX_BYTES];
    char quoted[512];
    size_t n = 0;
    int w;

    if (!log_enabled(lg, level))
        return;
    if (lg->journal_prefix)
        n += (size_t)snprintf(line, sizeof line, "<%d>", journal_priority(level));
    else
        n += append_timestamp(line, sizeof line);
    w = snprintf(line + n, sizeof line - n, "level=%s msg=%s", log_level_name(level),
                 log_quote(msg, quoted, sizeof quoted));
    n = w < 0 ? n : n + (size_t)w;
    if (n < sizeof line - 1 && kv_fmt != NULL && kv_fmt[0] != '\0') {
        va_list ap;

        line[n++] = ' ';
        va_start(ap, kv_fmt);
        w = vsnprintf(line + n, sizeof line - n, kv_fmt, ap);
        va_end(ap);
        n = w < 0 ? n : n + (size_t)w;
    }
    if (n > sizeof line - 2)
        n = sizeof line - 2; /* truncated: the line still ends with a newline */
    line[n++] = '\n';
    fwrite(line, 1, n, lg->out != NULL ? lg->out : stderr);
    fflush(lg->out != NULL ? lg->out : stderr);
}
