/* The persisted route setup toggle; see route_setup_setting.h. */
#include "route_setup_setting.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "dmsg/error.h"
#include "store.h"

int route_setup_setting_get(struct store *st, bool configured, struct route_setup_setting *out)
{
    char *text = NULL;
    out->enabled = configured;
    out->runtime = false;
    out->updated_at_ms = 0;
    int rc = store_setting_get(st, ROUTE_SETUP_SETTING, &text);
    if (rc == DMSG_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    json_t *v = json_loads(text, 0, NULL);
    free(text);
    json_t *enabled = json_object_get(v, "enabled");
    json_t *at = json_object_get(v, "updated_at_ms");
    if (json_is_boolean(enabled)) {
        out->enabled = json_is_true(enabled);
        out->runtime = true;
        out->updated_at_ms = json_is_integer(at) ? (int64_t)json_integer_value(at) : 0;
    }
    json_decref(v);
    return 0;
}

int route_setup_setting_set(struct store *st, bool enabled, int64_t now_ms)
{
    char value[96];
    snprintf(value, sizeof value, "{\"enabled\":%s,\"updated_at_ms\":%lld}",
             enabled ? "true" : "false", (long long)now_ms);
    return store_setting_set(st, ROUTE_SETUP_SETTING, value, now_ms / 1000);
}
