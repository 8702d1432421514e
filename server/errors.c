#include "errors.h"

static const srv_err_info table[SRV_E_COUNT] = {
    [SRV_E_INVALID_JSON] = {400, "Validation", "invalid_json"},
    [SRV_E_BAD_REQUEST] = {400, "Validation", "bad_request"},
    [SRV_E_UNAUTHORIZED] = {401, "Auth", "unauthorized"},
    [SRV_E_NOT_FOUND] = {404, "NotFound", "not_found"},
    [SRV_E_METHOD_NOT_ALLOWED] = {405, "Validation", "method_not_allowed"},
    [SRV_E_EXISTS] = {409, "Validation", "already_exists"},
    [SRV_E_CONFLICT] = {409, "Validation", "conflict"},
    [SRV_E_PAYLOAD_TOO_LARGE] = {413, "Validation", "payload_too_large"},
    [SRV_E_BATCH_TOO_LARGE] = {413, "Validation", "batch_too_large"},
    [SRV_E_INPUT_TOO_LONG] = {413, "Validation", "input_too_long"},
    [SRV_E_UNSUPPORTED_MEDIA_TYPE] = {415, "Validation", "unsupported_media_type"},
    [SRV_E_MISSING_FIELD] = {422, "Validation", "missing_field"},
    [SRV_E_INVALID_TYPE] = {422, "Validation", "invalid_type"},
    [SRV_E_OUT_OF_RANGE] = {422, "Validation", "out_of_range"},
    [SRV_E_INVALID_VALUE] = {422, "Validation", "invalid_value"},
    [SRV_E_EMPTY_INPUT] = {422, "Empty", "empty_input"},
    [SRV_E_TOKENIZER] = {422, "Tokenizer", "tokenizer_error"},
    [SRV_E_OVERLOADED] = {429, "Overloaded", "overloaded"},
    [SRV_E_INTERNAL] = {500, "Backend", "internal_error"},
    [SRV_E_MODEL_NOT_LOADED] = {503, "Unhealthy", "model_not_loaded"},
    [SRV_E_SHUTTING_DOWN] = {503, "Unhealthy", "shutting_down"},
    [SRV_E_OUT_OF_MEMORY] = {503, "Backend", "out_of_memory"},
    [SRV_E_STORE_BUSY] = {503, "Overloaded", "store_busy"},
    [SRV_E_INDEX_BEHIND] = {503, "Overloaded", "indexing_behind"},
    [SRV_E_STORAGE_FULL] = {507, "Backend", "storage_full"},
};

const srv_err_info *srv_err_lookup(srv_err e)
{
    return (unsigned)e < SRV_E_COUNT ? &table[e] : &table[SRV_E_INTERNAL];
}
