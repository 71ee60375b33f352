/* Discovery entries from arbitrary bytes: parse, the discovery's checks, list iteration. Every
 * entry that parses must write canonically, and its canonical text must read back to itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/entry.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return dmsg_cipher_init() == 0 ? 0 : -1;
}

static dmsg_entry a, b;
static char text_a[DMSG_ENTRY_JSON_MAX], text_b[DMSG_ENTRY_JSON_MAX];

static void round_trip(const dmsg_entry *e)
{
    size_t la, lb;
    if (dmsg_entry_write(e, true, text_a, sizeof text_a, &la) != 0)
        abort(); /* every entry that can be held can be written */
    if (dmsg_entry_parse(&b, text_a, la) != 0)
        abort();
    if (dmsg_entry_write(&b, true, text_b, sizeof text_b, &lb) != 0 || la != lb ||
        memcmp(text_a, text_b, la) != 0)
        abort();
    (void)dmsg_entry_verify(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *json = (const char *)data;
    if (dmsg_entry_parse(&a, json, size) == 0)
        round_trip(&a);

    dmsg_disc_op op = size && (data[0] & 1) ? DMSG_DISC_OP_DELETE : DMSG_DISC_OP_POST;
    dmsg_disc_result r = dmsg_disc_check_body(&a, json, size, op, size && (data[0] & 2), 0);
    if (dmsg_disc_result_status(r) == 0 || dmsg_disc_result_message(r) == NULL)
        abort();

    dmsg_entry_iter it;
    if (dmsg_entry_iter_init(&it, json, size) == 0) {
        int rc;
        while ((rc = dmsg_entry_iter_next(&it, &a)) == 1)
            round_trip(&a);
    }

    dmsg_pk pk;
    (void)dmsg_entry_pk_parse(&pk, json, size);
    char *copy = malloc(size + 1);
    if (copy) {
        memcpy(copy, data, size);
        copy[size] = '\0';
        (void)dmsg_disc_address_is_loopback(copy);
        free(copy);
    }
    return 0;
}
