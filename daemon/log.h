/* Event logs: one line per event, `ts=… level=… msg=… key=value …`, to stderr (journald picks
 * it up; under systemd the line also starts with the <N> priority prefix).
 *
 * A logger is a small value owned by struct dmsgd and passed by pointer to every module, so the
 * level can be changed at runtime (SIGHUP) without any global state. */
#ifndef DMSGD_LOG_H
#define DMSGD_LOG_H

#include <stdbool.h>
#include <stdio.h>

enum log_level {
    LOG_LEVEL_TRACE = 0,
    LOG_LEVEL_DEBUG,
    LOG_LEVEL_INFO,
    LOG_LEVEL_WARN,
    LOG_LEVEL_ERROR
};

struct dmsgd_log {
    enum log_level level;  /* events below it are dropped */
    FILE *out;             /* NULL: stderr */
    bool journal_prefix;   /* prefix <N> so journald knows the priority; then no ts= either */
};

/* stderr, level info, journald prefix when $JOURNAL_STREAM is set. */
void log_init(struct dmsgd_log *lg);

/* Accepts the reference's logrus names: trace, debug, info, warn, warning, error, fatal, panic
 * (the last two map to error). Returns 0 or -1 for an unknown name. */
int log_level_parse(const char *name, enum log_level *out);
const char *log_level_name(enum log_level level);

bool log_enabled(const struct dmsgd_log *lg, enum log_level level);

/* Writes one event: msg is quoted when needed; kv_fmt (may be NULL) is printf-style text of
 * space-separated key=value pairs whose values the caller made safe (see log_quote). */
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
void log_event(const struct dmsgd_log *lg, enum log_level level, const char *msg,
               const char *kv_fmt, ...);

/* Copies s into out (cap bytes) as a logfmt value: unchanged when it has no space, quote, '='
 * or control character, else double-quoted with \" \\ \n escapes and other control bytes as
 * \xNN. Truncates to fit; returns out. */
const char *log_quote(const char *s, char *out, size_t cap);

#define log_trace(lg, msg, ...) log_event((lg), LOG_LEVEL_TRACE, (msg), __VA_ARGS__)
#define log_debug(lg, msg, ...) log_event((lg), LOG_LEVEL_DEBUG, (msg), __VA_ARGS__)
#define log_info(lg, msg, ...) log_event((lg), LOG_LEVEL_INFO, (msg), __VA_ARGS__)
#define log_warn(lg, msg, ...) log_event((lg), LOG_LEVEL_WARN, (msg), __VA_ARGS__)
#define log_error(lg, msg, ...) log_event((lg), LOG_LEVEL_ERROR, (msg), __VA_ARGS__)

#endif
