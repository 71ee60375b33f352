/* The generated key pair in the state directory; see keyfile.h. */
#include "keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dmsg/error.h"

#define PATH_CAP 4096

int state_dir_ensure(const char *dir, char *err, size_t err_cap)
{
    char path[PATH_CAP];
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof path) {
        snprintf(err, err_cap, "state_dir \"%s\": empty or too long", dir);
        return DMSG_EIO;
    }
    memcpy(path, dir, len + 1);
    /* mkdir -p: every prefix ending before a '/', then the whole path. */
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            snprintf(err, err_cap, "state_dir \"%s\": cannot create \"%s\": %s", dir, path,
                     strerror(errno));
            return DMSG_EIO;
        }
        path[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, err_cap, "state_dir \"%s\": not a directory", dir);
        return DMSG_EIO;
    }
    return 0;
}

static int load_keys(const char *path, dmsg_pk *pk, dmsg_sk *sk, char *err, size_t err_cap)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    const char *pk_hex, *sk_hex;
    dmsg_pk derived;
    int rc = DMSG_EKEY;

    if (root == NULL) {
        snprintf(err, err_cap, "%s: %s (delete it to generate new keys)", path, jerr.text);
        return DMSG_EIO;
    }
    pk_hex = json_string_value(json_object_get(root, "public_key"));
    sk_hex = json_string_value(json_object_get(root, "secret_key"));
    if (pk_hex == NULL || sk_hex == NULL) {
        snprintf(err, err_cap, "%s: needs \"public_key\" and \"secret_key\" strings", path);
    } else if (dmsg_sk_from_hex(sk, sk_hex, strlen(sk_hex)) != 0 || dmsg_sk_validate(sk) != 0) {
        snprintf(err, err_cap, "%s: \"secret_key\" is not a valid secret key", path);
    } else if (dmsg_pk_from_hex(pk, pk_hex, strlen(pk_hex)) != 0 ||
               dmsg_pk_from_sk(&derived, sk) != 0 || !dmsg_pk_equal(&derived, pk)) {
        snprintf(err, err_cap, "%s: \"public_key\" does not belong to \"secret_key\"", path);
    } else {
        rc = 0;
    }
    json_decref(root);
    if (rc != 0)
        dmsg_wipe(sk, sizeof *sk);
    return rc;
}

static int write_keys(const char *dir, const char *path, const dmsg_pk *pk, const dmsg_sk *sk,
                      char *err, size_t err_cap)
{
    char tmp[PATH_CAP];
    char pk_hex[DMSG_PK_HEX_LEN + 1], sk_hex[DMSG_SK_HEX_LEN + 1];
    char text[256];
    int fd, n;
    bool ok;

    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, KEYFILE_NAME);
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, err_cap, "%s: cannot create: %s", tmp, strerror(errno));
        return DMSG_EIO;
    }
    dmsg_pk_to_hex(pk, pk_hex);
    dmsg_sk_to_hex(sk, sk_hex);
    n = snprintf(text, sizeof text, "{\n  \"public_key\": \"%s\",\n  \"secret_key\": \"%s\"\n}\n",
                 pk_hex, sk_hex);
    ok = write(fd, text, (size_t)n) == n && fsync(fd) == 0;
    dmsg_wipe(text, sizeof text);
    dmsg_wipe(sk_hex, sizeof sk_hex);
    if (close(fd) != 0)
        ok = false;
    if (!ok || rename(tmp, path) != 0) {
        snprintf(err, err_cap, "%s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
        return DMSG_EIO;
    }
    /* Make the rename itself durable. */
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    return 0;
}

int keyfile_load_or_create(const char *dir, const dmsg_rng *rng, dmsg_pk *pk, dmsg_sk *sk,
                           bool *created, char *err, size_t err_cap)
{
    char path[PATH_CAP];
    int rc;

    *created = false;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, KEYFILE_NAME) >= sizeof path) {
        snprintf(err, err_cap, "state_dir \"%s\": path too long", dir);
        return DMSG_EIO;
    }
    if (access(path, F_OK) == 0)
        return load_keys(path, pk, sk, err, err_cap);
    if (errno != ENOENT) {
        snprintf(err, err_cap, "%s: %s", path, strerror(errno));
        return DMSG_EIO;
    }
    rc = dmsg_keypair_generate(pk, sk, rng);
    if (rc != 0) {
        snprintf(err, err_cap, "cannot generate a key pair: %s", dmsg_strerror(rc));
        return rc;
    }
    rc = write_keys(dir, path, pk, sk, err, err_cap);
    if (rc != 0) {
        dmsg_wipe(sk, sizeof *sk);
        return rc;
    }
    *created = true;
    return 0;
}
