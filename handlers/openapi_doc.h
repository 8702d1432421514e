/* openapi_doc.h — openapi/openapi.json, embedded at build time (openapi/embed.py). */
#ifndef RAGD_OPENAPI_DOC_H
#define RAGD_OPENAPI_DOC_H

#include <stddef.h>

extern const char openapi_doc[];
extern const size_t openapi_doc_len;

#endif
