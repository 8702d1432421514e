/* fuzz_safetensors.c — the safetensors header parser and validator on arbitrary bytes.
 * Any accepted file must describe tensors that lie inside the input and can be widened. */
#include <stdint.h>
#include <stdlib.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sft_set *s;
    mdl_error err;
    if (sft_parse(data, size, "fuzz", &s, &err) != 0)
        return 0;
    for (size_t i = 0; i < sft_count(s); i++) {
        const sft_tensor *t = sft_at(s, i);
        if (t->data < data || t->data + t->nbytes > data + size)
            abort();
        if ((t->dtype == SFT_F32 || t->dtype == SFT_F16 || t->dtype == SFT_BF16) && t->numel < (1u << 20)) {
            float *f = malloc(t->numel ? t->numel * sizeof *f : 1);
            if (f && sft_to_f32(t, f, &err) != 0)
                abort();
            free(f);
        }
    }
    sft_close(s);
    return 0;
}
