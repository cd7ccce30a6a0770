/*
 * Techniques 2 (`lz`) and 4 (`antiemu`) of the test packers, and the LZSS
 * encoder they share. The input's memory image (headers and sections at
 * their RVAs) is compressed, encrypted with the rolling key stream, and
 * appended as one section to a prebuilt stub (stubs/lz*.exe or
 * stubs/antiemu*.exe, read at run time) whose configuration block, found
 * by its magic, tells where the payload is. The stub unpacks the image into
 * VirtualAlloc'd memory, relocates it, binds its imports and jumps to its
 * entry point. The key changes the payload bytes, the payload section's
 * name and its padding (and, for antiemu, the hash seed, the module list
 * walked and the Sleep of the timing check).
 *
 * Limits: PE32/PE32+ executables (no DLLs), SizeOfImage up to 64 MiB, room
 * for one more section header in the stub (always true for our stubs). An
 * original without base relocations is loaded at its preferred base, which
 * must then be free in the packed process (the stubs sit at 0x01000000 and
 * 0x160000000, away from mingw's defaults).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "mamori/base.h"
#include "mamori/binfmt.h"
#include "stubs/stubcfg.h"
#include "testpack.h"

#ifndef MAMORI_TESTPACK_STUB_DIR
#define MAMORI_TESTPACK_STUB_DIR "tests/packers/stubs"
#endif

#define SECTION_HEADER	     40u
#define MAX_IMAGE	     ((uint32_t)64 << 20)
#define MAX_STUB	     ((size_t)1 << 20)
#define FILE_RELOCS_STRIPPED 0x0001u
#define DIR_BASERELOC	     5u
#define SCN_INIT_DATA	     0x00000040u
#define SCN_MEM_READ	     0x40000000u
#define LZ_WINDOW	     65536u
#define LZ_MIN		     3u
#define LZ_MAX		     258u
#define LZ_HASH_BITS	     15u
#define LZ_CHAIN	     48u

/* A small generator for the key-driven layout choices (not the key stream). */
static uint32_t layout_next(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return *s >> 8;
}

static uint32_t lz_hash(const uint8_t *p)
{
	return ((uint32_t)p[0] << 16 ^ (uint32_t)p[1] << 8 ^ p[2]) * 2654435761u >> (32 - LZ_HASH_BITS);
}

int mamori_testpack_lz_encode(uint8_t **out, size_t *out_len, const uint8_t *in, size_t n, uint32_t key)
{
	int32_t *head = NULL, *prev = NULL;
	uint8_t *o = NULL;
	int rc = MAMORI_OK;

	*out = NULL;
	*out_len = 0;
	if (n > MAX_IMAGE) {
		rc = mamori_fail(MAMORI_ELIMIT, "lz: %zu bytes to compress, at most %u", n, MAX_IMAGE);
		goto done;
	}
	/* Worst case: every byte a literal, plus one control byte per 8. */
	size_t cap = n + n / 8 + 16;
	o = malloc(cap);
	head = malloc(sizeof(*head) << LZ_HASH_BITS);
	prev = malloc(sizeof(*prev) * LZ_WINDOW);
	if (!o || !head || !prev) {
		rc = mamori_fail(MAMORI_ENOMEM, "lz: %zu bytes", cap);
		goto done;
	}
	memset(head, 0xff, sizeof(*head) << LZ_HASH_BITS);
	size_t op = 0, ctl_at = 0, i = 0;
	unsigned bit = 8;
	while (i < n) {
		if (bit == 8) {
			ctl_at = op++;
			o[ctl_at] = 0;
			bit = 0;
		}
		uint32_t best_len = 0, best_dist = 0;
		if (n - i >= LZ_MIN) {
			uint32_t h = lz_hash(in + i);
			size_t maxlen = n - i < LZ_MAX ? n - i : LZ_MAX;
			int32_t cand = head[h];
			for (uint32_t chain = 0; cand >= 0 && chain < LZ_CHAIN; chain++) {
				size_t dist = i - (size_t)cand;
				if (dist > LZ_WINDOW)
					break;
				uint32_t len = 0;
				while (len < maxlen && in[(size_t)cand + len] == in[i + len])
					len++;
				if (len > best_len) {
					best_len = len;
					best_dist = (uint32_t)dist;
					if (len == maxlen)
						break;
				}
				int32_t nx = prev[(size_t)cand % LZ_WINDOW];
				if (nx >= cand)
					break;
				cand = nx;
			}
		}
		size_t step = best_len >= LZ_MIN ? best_len : 1;
		if (best_len >= LZ_MIN) {
			o[op++] = (uint8_t)(best_dist - 1);
			o[op++] = (uint8_t)((best_dist - 1) >> 8);
			o[op++] = (uint8_t)(best_len - LZ_MIN);
		} else {
			o[ctl_at] |= (uint8_t)(1u << bit);
			o[op++] = in[i];
		}
		bit++;
		/* Index every position the item covered. */
		for (size_t j = 0; j < step; j++, i++) {
			if (n - i >= LZ_MIN) {
				uint32_t h = lz_hash(in + i);
				prev[i % LZ_WINDOW] = head[h];
				head[h] = (int32_t)i;
			}
		}
	}
	uint32_t k = key;
	for (size_t j = 0; j < op; j++)
		o[j] ^= mpk_key_next(&k);
	*out = o;
	*out_len = op;
	o = NULL;
done:
	free(o);
	free(head);
	free(prev);
	return rc;
}

int mamori_testpack_lz_decode(uint8_t *out, size_t n, const uint8_t *in, size_t in_len, uint32_t key)
{
	if (n > MAX_IMAGE || in_len > UINT32_MAX)
		return mamori_fail(MAMORI_ELIMIT, "lz: too large");
	if (mpk_lz_decode(out, (uint32_t)n, in, (uint32_t)in_len, key) != 0)
		return mamori_fail(MAMORI_EFORMAT, "lz: corrupt stream");
	return MAMORI_OK;
}

/* The input's headers, read once the parser has validated them. */
typedef struct pe_view {
	bool is64;
	uint32_t pe, opt, sec, nsec;
	uint32_t sect_align, file_align, hdr_size, image_size, entry;
	uint64_t image_base;
	bool relocs;
} pe_view;

static int pe_view_of(pe_view *v, const uint8_t *in, size_t in_len, const char *what)
{
	mamori_binary *bin = NULL;
	int rc = mamori_binary_parse(&bin, in, in_len, NULL);

	if (rc != MAMORI_OK)
		goto done;
	if (bin->format != MAMORI_FMT_PE32 && bin->format != MAMORI_FMT_PE32PLUS) {
		rc = mamori_fail(MAMORI_EUNSUPPORTED, "%s: input is %s, not PE", what,
				 mamori_format_name(bin->format));
		goto done;
	}
	if (bin->is_dll || !bin->has_entry) {
		rc = mamori_fail(MAMORI_EUNSUPPORTED, "%s: only executables with an entry point", what);
		goto done;
	}
	v->is64 = bin->format == MAMORI_FMT_PE32PLUS;
	v->pe = rd32(in + 0x3c);
	v->nsec = rd16(in + v->pe + 6);
	v->opt = v->pe + 24;
	v->sec = v->opt + rd16(in + v->pe + 20);
	v->entry = rd32(in + v->opt + 16);
	v->sect_align = rd32(in + v->opt + 32);
	v->file_align = rd32(in + v->opt + 36);
	v->image_size = rd32(in + v->opt + 56);
	v->hdr_size = rd32(in + v->opt + 60);
	v->image_base = bin->image_base;
	uint32_t ndirs = rd32(in + v->opt + (v->is64 ? 108 : 92));
	uint32_t dirs = v->opt + (v->is64 ? 112 : 96);
	v->relocs = ndirs > DIR_BASERELOC && (size_t)dirs + DIR_BASERELOC * 8 + 8 <= v->sec &&
		    rd32(in + dirs + DIR_BASERELOC * 8 + 4) != 0 &&
		    !(rd16(in + v->pe + 22) & FILE_RELOCS_STRIPPED);
	/* The fields read here and copied into the stub end at the data directories. */
	if (v->sect_align == 0 || v->file_align == 0 || v->image_size == 0 || v->sec < dirs ||
	    (size_t)v->sec + (size_t)v->nsec * SECTION_HEADER > in_len) {
		rc = mamori_fail(MAMORI_EFORMAT, "%s: bad alignment, image size or section table", what);
		goto done;
	}
	if (v->image_size > MAX_IMAGE) {
		rc = mamori_fail(MAMORI_ELIMIT, "%s: SizeOfImage %u above %u", what, v->image_size,
				 MAX_IMAGE);
		goto done;
	}
done:
	mamori_binary_free(bin);
	return rc;
}

/* The memory image of `in`, as the loader would map it (before relocation). */
static int build_image(uint8_t **out, const pe_view *v, const uint8_t *in, size_t in_len)
{
	uint8_t *img = calloc(1, v->image_size);

	*out = NULL;
	if (!img)
		return mamori_fail(MAMORI_ENOMEM, "lz: image of %u bytes", v->image_size);
	size_t hdr = v->hdr_size < in_len ? v->hdr_size : in_len;
	memcpy(img, in, hdr < v->image_size ? hdr : v->image_size);
	for (uint32_t i = 0; i < v->nsec; i++) {
		const uint8_t *s = in + v->sec + (size_t)i * SECTION_HEADER;
		uint32_t vs = rd32(s + 8), va = rd32(s + 12), raw = rd32(s + 16), ptr = rd32(s + 20);
		uint32_t n = vs && vs < raw ? vs : raw;
		if (ptr >= in_len || va >= v->image_size)
			continue;
		if (n > in_len - ptr)
			n = (uint32_t)(in_len - ptr);
		if (n > v->image_size - va)
			n = v->image_size - va;
		memcpy(img + va, in + ptr, n);
	}
	*out = img;
	return MAMORI_OK;
}

/* Read "<dir>/<name><32|64>.exe". */
static int read_stub(uint8_t **out, size_t *out_len, const char *name, bool is64,
		     const mamori_testpack_opts *opt)
{
	const char *dir = opt && opt->stub_dir ? opt->stub_dir : getenv(MAMORI_TESTPACK_STUBS_ENV);
	char path[4096];

	if (!dir || !*dir)
		dir = MAMORI_TESTPACK_STUB_DIR;
	int n = snprintf(path, sizeof(path), "%s/%s%s.exe", dir, name, is64 ? "64" : "32");
	if (n < 0 || (size_t)n >= sizeof(path))
		return mamori_fail(MAMORI_EINVAL, "%s packer: stub directory path too long", name);
	int rc = mamori_file_read(out, out_len, path, MAX_STUB);
	if (rc != MAMORI_OK)
		return mamori_fail(rc, "%s packer: cannot read stub %s (%s)", name, path,
				   mamori_error_detail());
	return MAMORI_OK;
}

/* Offset of the configuration block: the magic, exactly once. */
static int find_config(size_t *out, const uint8_t *stub, size_t len, const char *name)
{
	size_t found = 0, count = 0;

	for (size_t i = 0; i + sizeof(mpk_config) <= len; i++) {
		if (memcmp(stub + i, MPK_MAGIC, MPK_MAGIC_LEN) == 0) {
			found = i;
			count++;
		}
	}
	if (count != 1)
		return mamori_fail(MAMORI_EFORMAT, "%s packer: stub has %zu configuration blocks, wants 1",
				   name, count);
	*out = found;
	return MAMORI_OK;
}

static const char *const payload_names[] = { ".mpz",	".data1", ".rsrc2", "UPX1",
					     ".packed", ".lzd",	  ".crt1",  "CODE" };

/* Pack with the stub called `stub_name` ("lz" or "antiemu"). */
static int pack_image(uint8_t **out, size_t *out_len, mamori_testpack_image_info *info, const uint8_t *in,
		      size_t in_len, uint32_t key, const mamori_testpack_opts *opt, const char *stub_name)
{
	uint8_t *img = NULL, *payload = NULL, *stub = NULL, *o = NULL;
	size_t payload_len = 0, stub_len = 0;
	pe_view v = { 0 }, sv = { 0 };
	int rc;

	*out = NULL;
	*out_len = 0;
	if ((rc = pe_view_of(&v, in, in_len, stub_name)) != MAMORI_OK)
		goto done;
	if ((rc = build_image(&img, &v, in, in_len)) != MAMORI_OK)
		goto done;
	uint32_t data_size = v.image_size;
	while (data_size > 0 && img[data_size - 1] == 0)
		data_size--;
	if ((rc = mamori_testpack_lz_encode(&payload, &payload_len, img, data_size, key)) != MAMORI_OK)
		goto done;
	if ((rc = read_stub(&stub, &stub_len, stub_name, v.is64, opt)) != MAMORI_OK)
		goto done;
	if ((rc = pe_view_of(&sv, stub, stub_len, stub_name)) != MAMORI_OK)
		goto done;
	if (sv.is64 != v.is64) {
		rc = mamori_fail(MAMORI_EFORMAT, "%s packer: stub has the wrong architecture", stub_name);
		goto done;
	}
	size_t cfg_off = 0;
	if ((rc = find_config(&cfg_off, stub, stub_len, stub_name)) != MAMORI_OK)
		goto done;

	/* Room for one more section header below the first section's bytes. */
	uint32_t first_raw = sv.hdr_size, end_va = 0;
	for (uint32_t i = 0; i < sv.nsec; i++) {
		const uint8_t *s = stub + sv.sec + (size_t)i * SECTION_HEADER;
		uint32_t vs = rd32(s + 8), va = rd32(s + 12), raw = rd32(s + 16), ptr = rd32(s + 20);
		if (raw && ptr < first_raw)
			first_raw = ptr;
		uint32_t span = align_up(vs ? vs : raw, sv.sect_align);
		if (va + span > end_va)
			end_va = va + span;
	}
	if (sv.sec + (sv.nsec + 1) * SECTION_HEADER > first_raw) {
		rc = mamori_fail(MAMORI_EFORMAT, "%s packer: no room for a section header in the stub",
				 stub_name);
		goto done;
	}

	uint32_t layout = key ^ 0x6a09e667u;
	uint32_t pad = layout_next(&layout) % 256;
	uint32_t sec_rva = align_up(end_va, sv.sect_align);
	uint32_t sec_off = align_up((uint32_t)stub_len, sv.file_align);
	uint32_t sec_vsize = pad + (uint32_t)payload_len;
	uint32_t sec_raw = align_up(sec_vsize, sv.file_align);
	size_t olen = (size_t)sec_off + sec_raw;
	o = calloc(1, olen);
	if (!o) {
		rc = mamori_fail(MAMORI_ENOMEM, "%s packer: %zu bytes", stub_name, olen);
		goto done;
	}
	memcpy(o, stub, stub_len);
	for (uint32_t i = 0; i < pad; i++)
		o[sec_off + i] = (uint8_t)layout_next(&layout);
	memcpy(o + sec_off + pad, payload, payload_len);

	uint8_t *ns = o + sv.sec + (size_t)sv.nsec * SECTION_HEADER;
	const char *sname =
		payload_names[layout_next(&layout) % (sizeof(payload_names) / sizeof(*payload_names))];
	memset(ns, 0, SECTION_HEADER);
	memcpy(ns, sname, strlen(sname));
	wr32(ns + 8, sec_vsize);
	wr32(ns + 12, sec_rva);
	wr32(ns + 16, sec_raw);
	wr32(ns + 20, sec_off);
	wr32(ns + 36, SCN_INIT_DATA | SCN_MEM_READ);
	wr16(o + sv.pe + 6, (uint16_t)(sv.nsec + 1));
	wr32(o + sv.opt + 56, align_up(sec_rva + sec_vsize, sv.sect_align));
	wr32(o + sv.opt + 64, 0); /* CheckSum */
	/* The original's subsystem, stack and heap sizes: the stub's process is its process. */
	memcpy(o + sv.opt + 68, in + v.opt + 68, 2);
	memcpy(o + sv.opt + 72, in + v.opt + 72, v.is64 ? 32 : 16);

	uint8_t *c = o + cfg_off;
	wr32(c + offsetof(mpk_config, payload_rva), sec_rva + pad);
	wr32(c + offsetof(mpk_config, payload_size), (uint32_t)payload_len);
	wr32(c + offsetof(mpk_config, image_size), v.image_size);
	wr32(c + offsetof(mpk_config, data_size), data_size);
	wr32(c + offsetof(mpk_config, key), key);
	wr32(c + offsetof(mpk_config, flags),
	     (v.relocs ? MPK_FLAG_RELOCS : 0) | (opt && opt->run_tls ? MPK_FLAG_RUN_TLS : 0));
	wr32(c + offsetof(mpk_config, base_lo), (uint32_t)v.image_base);
	wr32(c + offsetof(mpk_config, base_hi), (uint32_t)(v.image_base >> 32));
	uint32_t seed = layout_next(&layout) ^ key;
	static const char *const api_names[] = MPK_API_NAMES;
	wr32(c + offsetof(mpk_config, hash_seed), seed);
	uint32_t kh = seed;
	for (const char *p = "kernel32.dll"; *p; p++)
		kh = mpk_hash_lower_step(kh, (uint8_t)*p);
	wr32(c + offsetof(mpk_config, kernel32_hash), kh);
	wr32(c + offsetof(mpk_config, sleep_ms), opt && opt->sleep_ms ? opt->sleep_ms : 20 + key % 64);
	wr32(c + offsetof(mpk_config, ldr_list), (key >> 8) % 3 /* MPK_LIST_LOAD, _MEMORY or _INIT */);
	for (int i = 0; i < MPK_API_COUNT; i++)
		wr32(c + offsetof(mpk_config, api_hash) + 4u * (uint32_t)i, mpk_hash(seed, api_names[i]));

	if (info) {
		memset(info, 0, sizeof(*info));
		info->oep_rva = v.entry;
		info->orig_image_base = v.image_base;
		info->orig_image_size = v.image_size;
		info->orig_relocs = v.relocs;
		info->payload_rva = sec_rva + pad;
		info->payload_off = sec_off + pad;
		info->payload_size = (uint32_t)payload_len;
		info->stub_entry_rva = sv.entry;
		info->layers = 1;
		snprintf(info->outer, sizeof(info->outer), "%s", stub_name);
	}
	*out = o;
	*out_len = olen;
	o = NULL;
done:
	free(img);
	free(payload);
	free(stub);
	free(o);
	return rc;
}

int mamori_testpack_lz(uint8_t **out, size_t *out_len, mamori_testpack_image_info *info, const uint8_t *in,
		       size_t in_len, uint32_t key, const mamori_testpack_opts *opt)
{
	return pack_image(out, out_len, info, in, in_len, key, opt, "lz");
}

int mamori_testpack_antiemu(uint8_t **out, size_t *out_len, mamori_testpack_image_info *info,
			    const uint8_t *in, size_t in_len, uint32_t key, const mamori_testpack_opts *opt)
{
	return pack_image(out, out_len, info, in, in_len, key, opt, "antiemu");
}
