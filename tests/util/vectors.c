#include "vectors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "vectors: %s: %s\n", what, detail);
    abort();
}

json_t *vec_load(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", DMSG_VECTOR_DIR, name);
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root)
        die(path, err.text);
    return root;
}

json_t *vec_get(json_t *root, const char *path)
{
    char buf[512];
    if (strlen(path) >= sizeof buf)
        return NULL;
    strcpy(buf, path);
    json_t *cur = root;
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok && cur;
         tok = strtok_r(NULL, ".", &save)) {
        if (json_is_array(cur)) {
            char *end;
            unsigned long i = strtoul(tok, &end, 10);
            cur = *end ? NULL : json_array_get(cur, i);
        } else {
            cur = json_object_get(cur, tok);
        }
    }
    return cur;
}

static int nibble(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

long vec_hex_decode(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex);
    if (n % 2 || n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return (long)(n / 2);
}

uint8_t *vec_hex(json_t *root, const char *path, size_t *len)
{
    json_t *v = vec_get(root, path);
    if (!json_is_string(v))
        die("no hex string at", path);
    const char *s = json_string_value(v);
    size_t cap = strlen(s) / 2 + 1;
    uint8_t *out = malloc(cap);
    long n = vec_hex_decode(s, out, cap);
    if (n < 0)
        die("not hex at", path);
    *len = (size_t)n;
    return out;
}

void vec_hex_exact(json_t *root, const char *path, uint8_t *out, size_t n)
{
    size_t got;
    uint8_t *buf = vec_hex(root, path, &got);
    if (got != n)
        die("unexpected length at", path);
    memcpy(out, buf, n);
    free(buf);
}

char *vec_to_hex(const uint8_t *buf, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    char *s = malloc(2 * len + 1);
    for (size_t i = 0; i < len; i++) {
        s[2 * i] = digits[buf[i] >> 4];
        s[2 * i + 1] = digits[buf[i] & 15];
    }
    s[2 * len] = 0;
    return s;
}
