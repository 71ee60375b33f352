/* Bearer tokens of the TCP admin listener (RFC 6750 §2.1): the two token files and the check
 * of the Authorization header. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "dmsg/cipher.h"
#include "dmsg/error.h"
#include "dmsg/rng.h"

#define TOKEN_BYTES 32

static bool is_token_text(const char *t, size_t len)
{
    if (len != API_TOKEN_HEX_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((t[i] >= '0' && t[i] <= '9') || (t[i] >= 'a' && t[i] <= 'f')))
            return false;
    return true;
}

/* Creates path with a fresh token unless it exists; never overwrites. */
static int create_token_file(const char *path, char *err, size_t err_cap)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return 0;
        snprintf(err, err_cap, "cannot create token file %s: %s", path, strerror(errno));
        return DMSG_EIO;
    }
    uint8_t raw[TOKEN_BYTES];
    char line[API_TOKEN_HEX_LEN + 2];
    dmsg_rng rng = dmsg_rng_system();
    dmsg_rng_fill(&rng, raw, sizeof raw);
    dmsg_hex_encode(raw, sizeof raw, line);
    line[API_TOKEN_HEX_LEN] = '\n';
    line[API_TOKEN_HEX_LEN + 1] = '\0';
    ssize_t n = write(fd, line, API_TOKEN_HEX_LEN + 1);
    int rc = (n == API_TOKEN_HEX_LEN + 1 && fsync(fd) == 0) ? 0 : DMSG_EIO;
    dmsg_wipe(raw, sizeof raw);
    dmsg_wipe(line, sizeof line);
    close(fd);
    if (rc != 0) {
        unlink(path); /* a half-written token would lock the operator out at the next start */
        snprintf(err, err_cap, "cannot write token file %s", path);
    }
    return rc;
}

static int read_token_file(const char *path, char out[API_TOKEN_HEX_LEN + 1], char *err,
                           size_t err_cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, err_cap, "cannot read token file %s: %s", path, strerror(errno));
        return DMSG_EIO;
    }
    struct stat stt;
    char buf[API_TOKEN_HEX_LEN + 8];
    ssize_t n = fstat(fd, &stt) == 0 ? read(fd, buf, sizeof buf - 1) : -1;
    close(fd);
    if (n < 0) {
        snprintf(err, err_cap, "cannot read token file %s: %s", path, strerror(errno));
        return DMSG_EIO;
    }
    size_t len = (size_t)n;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
                       buf[len - 1] == '\t'))
        len--;
    if (!is_token_text(buf, len)) {
        dmsg_wipe(buf, sizeof buf);
        snprintf(err, err_cap, "token file %s does not hold 64 lowercase hex characters; delete"
                 " it and restart dmsgd to get a new token", path);
        return DMSG_EINVAL;
    }
    if (stt.st_mode & 0077) {
        snprintf(err, err_cap, "token file %s is readable by other users (mode %03o); chmod 600"
                 " it", path, (unsigned)(stt.st_mode & 0777));
        dmsg_wipe(buf, sizeof buf);
        return DMSG_EPERM;
    }
    memcpy(out, buf, API_TOKEN_HEX_LEN);
    out[API_TOKEN_HEX_LEN] = '\0';
    dmsg_wipe(buf, sizeof buf);
    return 0;
}

int api_tokens_load(const char *state_dir, char admin_token[API_TOKEN_HEX_LEN + 1],
                    char read_token[API_TOKEN_HEX_LEN + 1], char *err, size_t err_cap)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", state_dir, ADMIN_TOKEN_FILE);
    int rc = create_token_file(path, err, err_cap);
    if (rc == 0)
        rc = read_token_file(path, admin_token, err, err_cap);
    if (rc != 0)
        return rc;
    snprintf(path, sizeof path, "%s/%s", state_dir, ADMIN_READ_TOKEN_FILE);
    rc = create_token_file(path, err, err_cap);
    if (rc == 0)
        rc = read_token_file(path, read_token, err, err_cap);
    if (rc == 0 && strcmp(admin_token, read_token) == 0) {
        snprintf(err, err_cap, "%s and %s hold the same token; delete %s and restart dmsgd",
                 ADMIN_TOKEN_FILE, ADMIN_READ_TOKEN_FILE, ADMIN_READ_TOKEN_FILE);
        rc = DMSG_EINVAL;
    }
    return rc;
}

/* RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
static bool is_b64token(const char *t)
{
    size_t i = 0;
    for (; t[i]; i++) {
        char c = t[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
        if (!ok)
            break;
    }
    if (i == 0)
        return false;
    while (t[i] == '=')
        i++;
    return t[i] == '\0';
}

enum api_auth_result api_authenticate(const char *authorization, const char *admin_token,
                                      const char *read_token)
{
    if (!authorization)
        return API_AUTH_MISSING;
    if (strncasecmp(authorization, "Bearer ", 7) != 0)
        return API_AUTH_MALFORMED;
    const char *token = authorization + 7;
    while (*token == ' ')
        token++;
    if (!is_b64token(token))
        return API_AUTH_MALFORMED;
    if (strlen(token) != API_TOKEN_HEX_LEN)
        return API_AUTH_INVALID;
    /* Both compares always run, in constant time, so timing tells nothing about either. */
    bool is_admin = dmsg_ct_equal((const uint8_t *)token, (const uint8_t *)admin_token,
                                  API_TOKEN_HEX_LEN);
    bool is_read = dmsg_ct_equal((const uint8_t *)token, (const uint8_t *)read_token,
                                 API_TOKEN_HEX_LEN);
    if (is_admin)
        return API_AUTH_ADMIN;
    return is_read ? API_AUTH_READ : API_AUTH_INVALID;
}
