/*
 * The format-independent half of the loaders: dispatch on the magic bytes,
 * limits, the VA-to-file map lookups, the executable regions (sorted and
 * trimmed so they never overlap), imphash and the JSON view. The loaders in
 * pe.c and elf.c do the format-specific validation; nothing here reads file
 * bytes except through offsets those loaders have already bounds-checked,
 * and binfmt_strdup_at() re-checks every string against the buffer.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "binfmt_internal.h"

#define DEFAULT_MAX_SECTIONS 1024
#define DEFAULT_MAX_IMPORTS  65536
#define DEFAULT_MAX_EXPORTS  65536
#define DEFAULT_MAX_SYMBOLS  ((size_t)1 << 20)
#define DEFAULT_MAX_NAME_LEN 4096

mamori_binfmt_limits mamori_binfmt_limits_default(void)
{
	mamori_binfmt_limits l = {
		.max_sections = DEFAULT_MAX_SECTIONS,
		.max_imports = DEFAULT_MAX_IMPORTS,
		.max_exports = DEFAULT_MAX_EXPORTS,
		.max_symbols = DEFAULT_MAX_SYMBOLS,
		.max_name_len = DEFAULT_MAX_NAME_LEN,
	};
	return l;
}

const char *mamori_format_name(mamori_format f)
{
	switch (f) {
	case MAMORI_FMT_PE32: return "pe32";
	case MAMORI_FMT_PE32PLUS: return "pe32+";
	case MAMORI_FMT_ELF32: return "elf32";
	case MAMORI_FMT_ELF64: return "elf64";
	}
	return "?";
}

const char *mamori_arch_name(mamori_arch a)
{
	switch (a) {
	case MAMORI_ARCH_X86: return "x86";
	case MAMORI_ARCH_X86_64: return "x86_64";
	}
	return "?";
}

static void impl_free_vectors(binfmt_impl *b)
{
	for (size_t i = 0; i < b->imports.count; i++) {
		free(MAMORI_VEC_AT(&b->imports, mamori_import, i).dll);
		free(MAMORI_VEC_AT(&b->imports, mamori_import, i).name);
	}
	for (size_t i = 0; i < b->exports.count; i++) {
		free(MAMORI_VEC_AT(&b->exports, mamori_export, i).name);
		free(MAMORI_VEC_AT(&b->exports, mamori_export, i).forwarder);
	}
	for (size_t i = 0; i < b->symbols.count; i++)
		free(MAMORI_VEC_AT(&b->symbols, mamori_symbol, i).name);
	mamori_vec_free(&b->sections);
	mamori_vec_free(&b->imports);
	mamori_vec_free(&b->exports);
	mamori_vec_free(&b->symbols);
	mamori_vec_free(&b->code);
	mamori_vec_free(&b->relocs);
}

void mamori_binary_free(mamori_binary *pub)
{
	if (!pub)
		return;
	binfmt_impl *b = (binfmt_impl *)pub;
	for (size_t i = 0; i < pub->n_imports; i++) {
		free(pub->imports[i].dll);
		free(pub->imports[i].name);
	}
	for (size_t i = 0; i < pub->n_exports; i++) {
		free(pub->exports[i].name);
		free(pub->exports[i].forwarder);
	}
	for (size_t i = 0; i < pub->n_symbols; i++)
		free(pub->symbols[i].name);
	free(pub->sections);
	free(pub->imports);
	free(pub->exports);
	free(pub->symbols);
	free(pub->code);
	free(pub->reloc_targets);
	impl_free_vectors(b);
	free(b->map);
	free(b);
}

int binfmt_impl_new(binfmt_impl **out, const uint8_t *data, size_t size, const mamori_binfmt_limits *lim)
{
	*out = NULL;
	binfmt_impl *b = calloc(1, sizeof(*b));
	if (!b) {
		mamori_fail(MAMORI_ENOMEM, "binfmt: out of memory");
		return MAMORI_ENOMEM;
	}
	mamori_binfmt_limits d = mamori_binfmt_limits_default();
	b->lim = lim ? *lim : d;
	if (!b->lim.max_sections)
		b->lim.max_sections = d.max_sections;
	if (!b->lim.max_imports)
		b->lim.max_imports = d.max_imports;
	if (!b->lim.max_exports)
		b->lim.max_exports = d.max_exports;
	if (!b->lim.max_symbols)
		b->lim.max_symbols = d.max_symbols;
	if (!b->lim.max_name_len)
		b->lim.max_name_len = d.max_name_len;
	b->pub.data = data;
	b->pub.size = size;
	mamori_vec_init(&b->sections, sizeof(mamori_section), b->lim.max_sections);
	mamori_vec_init(&b->imports, sizeof(mamori_import), b->lim.max_imports);
	mamori_vec_init(&b->exports, sizeof(mamori_export), b->lim.max_exports);
	mamori_vec_init(&b->symbols, sizeof(mamori_symbol), b->lim.max_symbols);
	/* Regions come from sections or segments, both bounded by max_sections. */
	mamori_vec_init(&b->code, sizeof(mamori_region), b->lim.max_sections);
	mamori_vec_init(&b->relocs, sizeof(binfmt_reloc), BINFMT_MAX_RELOCS);
	*out = b;
	return MAMORI_OK;
}

static int region_cmp(const void *pa, const void *pb)
{
	const mamori_region *a = pa, *c = pb;
	if (a->va != c->va)
		return a->va < c->va ? -1 : 1;
	/* Longer first, so a region contained in an earlier one is dropped. */
	if (a->size != c->size)
		return a->size > c->size ? -1 : 1;
	return 0;
}

/* Sort the regions and trim each one's start past the end of the previous,
 * dropping those wholly covered: one pass after an O(n log n) sort. */
static void regions_normalise(mamori_region *r, size_t *n)
{
	if (*n == 0)
		return;
	qsort(r, *n, sizeof(*r), region_cmp);
	size_t w = 0;
	for (size_t i = 0; i < *n; i++) {
		mamori_region cur = r[i];
		if (cur.size == 0)
			continue;
		if (w > 0) {
			uint64_t prev_end = r[w - 1].va + r[w - 1].size;
			if (cur.va + cur.size <= prev_end)
				continue;
			if (cur.va < prev_end) {
				uint64_t cut = prev_end - cur.va;
				cur.va += cut;
				cur.bytes += cut;
				cur.size -= (size_t)cut;
			}
		}
		r[w++] = cur;
	}
	*n = w;
}

static int u64_cmp(const void *pa, const void *pb)
{
	uint64_t a = *(const uint64_t *)pa, c = *(const uint64_t *)pb;
	return (a > c) - (a < c);
}

/* Is `va` inside one of the sorted, disjoint code regions? */
static bool in_code(const mamori_binary *p, uint64_t va)
{
	size_t lo = 0, hi = p->n_code;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (p->code[mid].va <= va)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && va - p->code[lo - 1].va < p->code[lo - 1].size;
}

int binfmt_add_reloc(binfmt_impl *b, uint64_t site, uint64_t target)
{
	binfmt_reloc r = { site, target };
	return mamori_vec_push(&b->relocs, &r);
}

/* Keep the targets inside code of relocations applied outside code,
 * sorted and unique. A relocation inside code is an instruction's address
 * operand or a table in the code, which points at data embedded in the
 * code about as often as at code (on the disassembly ground truth, taking
 * them lowered the precision on code with data); a pointer stored in data
 * that points into code is a function pointer, a vtable slot or a
 * callback. */
static void relocs_finish(binfmt_impl *b)
{
	mamori_binary *p = &b->pub;
	size_t n = 0;
	binfmt_reloc *r = mamori_vec_steal(&b->relocs, &n);
	uint64_t *t = (uint64_t *)r;
	size_t w = 0;
	for (size_t i = 0; i < n; i++)
		if (in_code(p, r[i].target) && !in_code(p, r[i].site))
			t[w++] = r[i].target;
	if (w)
		qsort(t, w, sizeof(*t), u64_cmp);
	size_t u = 0;
	for (size_t i = 0; i < w; i++)
		if (u == 0 || t[i] != t[u - 1])
			t[u++] = t[i];
	if (u == 0) {
		free(t);
		t = NULL;
	}
	p->reloc_targets = t;
	p->n_reloc_targets = u;
}

int binfmt_impl_finish(binfmt_impl *b)
{
	mamori_binary *p = &b->pub;
	p->sections = mamori_vec_steal(&b->sections, &p->n_sections);
	p->imports = mamori_vec_steal(&b->imports, &p->n_imports);
	p->exports = mamori_vec_steal(&b->exports, &p->n_exports);
	p->symbols = mamori_vec_steal(&b->symbols, &p->n_symbols);
	p->code = mamori_vec_steal(&b->code, &p->n_code);
	regions_normalise(p->code, &p->n_code);
	relocs_finish(b);
	return binfmt_imphash(b);
}

int binfmt_parse_with(mamori_binary **out, const uint8_t *data, size_t size, const mamori_binfmt_limits *lim,
		      int (*loader)(binfmt_impl *))
{
	binfmt_impl *b = NULL;
	int err;

	*out = NULL;
	if (!data && size)
		return mamori_fail(MAMORI_EINVAL, "binfmt: NULL buffer");
	err = binfmt_impl_new(&b, data, size, lim);
	if (err < 0)
		goto done;
	err = loader(b);
	if (err < 0)
		goto done;
	err = binfmt_impl_finish(b);
	if (err < 0)
		goto done;
	*out = &b->pub;
	b = NULL;
done:
	mamori_binary_free(b ? &b->pub : NULL);
	return err;
}

int mamori_binary_parse(mamori_binary **out, const uint8_t *data, size_t size,
			const mamori_binfmt_limits *lim)
{
	*out = NULL;
	if (size >= 4 && data[0] == 0x7f && data[1] == 'E' && data[2] == 'L' && data[3] == 'F')
		return binfmt_parse_with(out, data, size, lim, binfmt_elf_parse);
	if (size >= 2 && data[0] == 'M' && data[1] == 'Z')
		return binfmt_parse_with(out, data, size, lim, binfmt_pe_parse);
	if (size < 4)
		return mamori_fail(MAMORI_ETRUNC, "binfmt: file of %zu bytes is too short for any format",
				   size);
	return mamori_fail(MAMORI_EUNSUPPORTED, "binfmt: neither PE (MZ) nor ELF magic");
}

ptrdiff_t binfmt_map_find(const binfmt_impl *b, uint64_t va)
{
	size_t lo = 0, hi = b->n_map;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const binfmt_map *m = &b->map[mid];
		if (va < m->va)
			hi = mid;
		else if (va - m->va >= m->mem_size)
			lo = mid + 1;
		else
			return (ptrdiff_t)mid;
	}
	return -1;
}

int mamori_binary_va_bytes(const mamori_binary *pub, uint64_t va, const uint8_t **out, size_t *out_len)
{
	const binfmt_impl *b = (const binfmt_impl *)pub;
	*out = NULL;
	*out_len = 0;
	ptrdiff_t i = binfmt_map_find(b, va);
	if (i < 0)
		return mamori_fail(MAMORI_ENOTFOUND, "VA 0x%llx is not mapped", (unsigned long long)va);
	const binfmt_map *m = &b->map[i];
	uint64_t delta = va - m->va;
	if (delta >= m->file_size)
		return mamori_fail(MAMORI_ENOTFOUND, "VA 0x%llx is not backed by file bytes",
				   (unsigned long long)va);
	/* The loaders checked file_off + file_size <= size. */
	*out = pub->data + m->file_off + delta;
	*out_len = (size_t)(m->file_size - delta);
	return MAMORI_OK;
}

int binfmt_strdup_at(char **out, binfmt_impl *b, uint64_t off, uint64_t avail, const char *what)
{
	mamori_cursor file, sub;
	*out = NULL;
	mamori_cursor_init(&file, b->pub.data, b->pub.size);
	if (!mamori_span_fits(b->pub.size, off, 0))
		return mamori_fail(MAMORI_ETRUNC, "%s at file offset 0x%llx is beyond the end of the file",
				   what, (unsigned long long)off);
	if (avail > b->pub.size - off)
		avail = b->pub.size - off;
	if (mamori_cursor_sub(&sub, &file, off, avail) < 0)
		return mamori_fail(MAMORI_ETRUNC, "%s at file offset 0x%llx is beyond the end of the file",
				   what, (unsigned long long)off);
	int err = mamori_read_cstr_at(out, &sub, 0, b->lim.max_name_len);
	if (err == MAMORI_ETRUNC)
		return mamori_fail(MAMORI_EFORMAT,
				   "%s at file offset 0x%llx is not terminated within its section", what,
				   (unsigned long long)off);
	if (err == MAMORI_ELIMIT)
		return mamori_fail(MAMORI_ELIMIT, "%s at file offset 0x%llx is longer than %zu bytes", what,
				   (unsigned long long)off, b->lim.max_name_len);
	if (err < 0)
		return err;
	b->string_bytes += strlen(*out) + 1;
	if (b->string_bytes > BINFMT_STRING_BUDGET) {
		free(*out);
		*out = NULL;
		return mamori_fail(MAMORI_ELIMIT, "%s: names take more than %llu bytes in all", what,
				   (unsigned long long)BINFMT_STRING_BUDGET);
	}
	return MAMORI_OK;
}

void binfmt_set_name(char dst[64], const char *src, size_t len)
{
	/* Names end up in messages and JSON: keep them printable ASCII. */
	size_t n = 0;
	while (n < len && n < 63 && src[n]) {
		unsigned char ch = (unsigned char)src[n];
		dst[n] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
		n++;
	}
	dst[n] = '\0';
}

/* ------------------------------------------------------------------ */
/* imphash                                                              */
/* ------------------------------------------------------------------ */

/* pefile's get_imphash(): for each import "<dll>.<func>", lowercased, where
 * <dll> loses an extension of ocx/sys/dll and <func> is the name or
 * "ord<N>"; joined with ','; MD5 in hex. pefile maps ordinals of ws2_32,
 * wsock32 and oleaut32 to names; we do not (the contract makes it optional),
 * so such files hash differently from pefile. */
static int buf_append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t nc = *cap ? *cap : 256;
		while (nc < *len + n + 1)
			nc *= 2;
		char *nb = realloc(*buf, nc);
		if (!nb) {
			mamori_fail(MAMORI_ENOMEM, "imphash: out of memory");
			return MAMORI_ENOMEM;
		}
		*buf = nb;
		*cap = nc;
	}
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		(*buf)[(*len)++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	(*buf)[*len] = '\0';
	return MAMORI_OK;
}

int binfmt_imphash(binfmt_impl *b)
{
	mamori_binary *p = &b->pub;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int err = MAMORI_OK;

	p->imphash[0] = '\0';
	if (p->n_imports == 0)
		return MAMORI_OK;
	for (size_t i = 0; i < p->n_imports; i++) {
		const mamori_import *im = &p->imports[i];
		const char *dll = im->dll ? im->dll : "";
		size_t dl = strlen(dll);
		const char *dot = strrchr(dll, '.');
		if (dot) {
			const char *ext = dot + 1;
			if (!strcasecmp(ext, "dll") || !strcasecmp(ext, "ocx") || !strcasecmp(ext, "sys"))
				dl = (size_t)(dot - dll);
		}
		char ord[24];
		const char *fn = im->name;
		if (!fn) {
			snprintf(ord, sizeof(ord), "ord%u", im->ordinal);
			fn = ord;
		}
		if (i > 0 && (err = buf_append(&buf, &len, &cap, ",", 1)) < 0)
			goto done;
		if ((err = buf_append(&buf, &len, &cap, dll, dl)) < 0)
			goto done;
		if ((err = buf_append(&buf, &len, &cap, ".", 1)) < 0)
			goto done;
		if ((err = buf_append(&buf, &len, &cap, fn, strlen(fn))) < 0)
			goto done;
	}
	mamori_md5_hex(p->imphash, buf, len);
done:
	free(buf);
	return err;
}

/* ------------------------------------------------------------------ */
/* JSON                                                                 */
/* ------------------------------------------------------------------ */

/* Names come from hostile files and need not be UTF-8, which jansson
 * refuses; such a name is shown with its non-ASCII bytes as '?'. */
static json_t *safe_str(const char *s, size_t n)
{
	json_t *j = json_stringn(s, n);
	if (j)
		return j;
	char *copy = malloc(n + 1);
	if (!copy)
		return NULL;
	for (size_t i = 0; i < n; i++)
		copy[i] = ((unsigned char)s[i] < 0x80 && s[i]) ? s[i] : '?';
	j = json_stringn(copy, n);
	free(copy);
	return j;
}

static json_t *str_or_null(const char *s)
{
	return s ? safe_str(s, strlen(s)) : json_null();
}

static void flags_text(char out[4], uint32_t f)
{
	out[0] = (f & MAMORI_SEC_READ) ? 'r' : '-';
	out[1] = (f & MAMORI_SEC_WRITE) ? 'w' : '-';
	out[2] = (f & MAMORI_SEC_EXEC) ? 'x' : '-';
	out[3] = '\0';
}

json_t *mamori_binary_to_json(const mamori_binary *b)
{
	json_t *root = json_object(), *secs = json_array(), *imps = json_array(), *exps = json_array(),
	       *syms = json_array(), *code = json_array();
	json_t *ret = NULL;
	int bad = 0;

	if (!root || !secs || !imps || !exps || !syms || !code)
		goto done;
	bad |= json_object_set_new(root, "format", json_string(mamori_format_name(b->format)));
	bad |= json_object_set_new(root, "arch", json_string(mamori_arch_name(b->arch)));
	bad |= json_object_set_new(root, "size", mamori_json_u64(b->size));
	bad |= json_object_set_new(root, "image_base", mamori_json_u64(b->image_base));
	bad |= json_object_set_new(root, "entry", b->has_entry ? mamori_json_u64(b->entry) : json_null());
	bad |= json_object_set_new(root, "timestamp", json_integer(b->timestamp));
	bad |= json_object_set_new(root, "is_dll", json_boolean(b->is_dll));
	bad |= json_object_set_new(root, "imphash", json_string(b->imphash));
	bad |= json_object_set_new(root, "reloc_targets_in_code", mamori_json_u64(b->n_reloc_targets));
	for (size_t i = 0; i < b->n_sections; i++) {
		const mamori_section *s = &b->sections[i];
		char f[4];
		flags_text(f, s->flags);
		json_t *o = json_pack(
			"{s:o, s:o, s:o, s:o, s:o, s:s}", "name", safe_str(s->name, strnlen(s->name, 63)),
			"va", mamori_json_u64(s->va), "vsize", mamori_json_u64(s->vsize), "raw_off",
			mamori_json_u64(s->raw_off), "raw_size", mamori_json_u64(s->raw_size), "flags", f);
		bad |= json_array_append_new(secs, o);
	}
	for (size_t i = 0; i < b->n_imports; i++) {
		const mamori_import *m = &b->imports[i];
		json_t *o = json_pack("{s:o, s:o, s:I, s:o}", "dll", str_or_null(m->dll), "name",
				      str_or_null(m->name), "ordinal", (json_int_t)m->ordinal, "thunk_va",
				      mamori_json_u64(m->thunk_va));
		bad |= json_array_append_new(imps, o);
	}
	for (size_t i = 0; i < b->n_exports; i++) {
		const mamori_export *e = &b->exports[i];
		json_t *o = json_pack("{s:o, s:I, s:o, s:o}", "name", str_or_null(e->name), "ordinal",
				      (json_int_t)e->ordinal, "va", mamori_json_u64(e->va), "forwarder",
				      str_or_null(e->forwarder));
		bad |= json_array_append_new(exps, o);
	}
	for (size_t i = 0; i < b->n_symbols; i++) {
		const mamori_symbol *s = &b->symbols[i];
		json_t *o = json_pack("{s:o, s:o, s:o, s:b}", "name", str_or_null(s->name), "va",
				      mamori_json_u64(s->va), "size", mamori_json_u64(s->size), "is_func",
				      s->is_func);
		bad |= json_array_append_new(syms, o);
	}
	for (size_t i = 0; i < b->n_code; i++) {
		const mamori_region *r = &b->code[i];
		json_t *o = json_pack("{s:o, s:o, s:o}", "va", mamori_json_u64(r->va), "size",
				      mamori_json_u64(r->size), "file_off",
				      mamori_json_u64((uint64_t)(r->bytes - b->data)));
		bad |= json_array_append_new(code, o);
	}
	bad |= json_object_set(root, "sections", secs);
	bad |= json_object_set(root, "imports", imps);
	bad |= json_object_set(root, "exports", exps);
	bad |= json_object_set(root, "symbols", syms);
	bad |= json_object_set(root, "code", code);
	if (!bad) {
		ret = root;
		root = NULL;
	}
done:
	json_decref(root);
	json_decref(secs);
	json_decref(imps);
	json_decref(exps);
	json_decref(syms);
	json_decref(code);
	return ret;
}
