/* tok_fixture.h — what the tokenizer suites share: the real tokenizers of ../shared/testdata
 * (GPT-2 from tokenizer.json and from vocab.json + merges.txt, BERT from tokenizer.json and
 * from vocab.txt, the makemore characters), moby_dick.txt, and helpers around tok_encode and
 * tok_decode that report what went wrong on stderr. */
#ifndef RAGD_TOK_FIXTURE_H
#define RAGD_TOK_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "cu.h"
#include "tokenizer.h"

extern tok_tokenizer *gpt2, *gpt2_files, *bert, *bert_txt, *names;
extern char *moby;
extern size_t moby_len;

/* 1 when every file the fixture reads is in ../shared/testdata. */
int tok_fixture_available(void);
/* Suite init and cleanup: load and free everything above. */
int tok_fixture_setup(void);
int tok_fixture_teardown(void);

/* Loading: a directory, a path under ../shared/testdata, or some files of one copied to a
 * temporary directory. NULL (and the reason on stderr) when loading fails. */
tok_tokenizer *load_dir(const char *dir);
tok_tokenizer *load(const char *rel);
tok_tokenizer *load_subset(const char *rel, const char *const *files, size_t n);

/* Files: the whole file (NUL-terminated) or NULL; write_file returns 0 on success. */
char *read_all(const char *path, size_t *len);
int write_file(const char *dir, const char *name, const char *text, size_t len);
void copy_file(const char *from_dir, const char *name, const char *to_dir);
void remove_dir(const char *dir); /* a directory of tokenizer files */

/* tok_encode of a (and b as a pair when not NULL); 0 on success. */
int encode_n(const tok_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, int special, size_t max,
             tok_direction dir, tok_encoding *e);
int encode(const tok_tokenizer *t, const char *a, const char *b, int special, size_t max, tok_direction dir,
           tok_encoding *e);
int ids_equal(const tok_encoding *e, const int32_t *want, size_t n);
int same_encoding(const tok_encoding *x, const tok_encoding *y); /* ids, offsets and type ids */
void show(const char *what, const tok_encoding *e);              /* ids and offsets on stderr */
/* Decodes ids and compares with want (NUL-terminated). */
int decodes_to(const tok_tokenizer *t, const int32_t *ids, size_t n, unsigned flags, const char *want);

uint64_t rng_next(uint64_t *s); /* xorshift64 */

#endif
