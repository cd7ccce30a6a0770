/*
 * Static signs that a PE file is packed, to decide whether emulating it
 * (mamori_unpack) is worth the time before it is disassembled.
 *
 * Each sign alone is common in ordinary programs (compressed resources give
 * high entropy, some linkers make writable code, tiny programs have few
 * imports), so the verdict needs two of them, or one section name that only
 * packers use. The signs:
 *   - a section with file bytes of Shannon entropy >= 7.2 bits per byte
 *     (compressed or encrypted; compiled code stays near 6);
 *   - the entry point outside every code section, or in the last section
 *     while an earlier section holds code (a stub appended to the image);
 *   - a section both writable and executable (code that rewrites itself);
 *   - an import table of at most 5 functions, or only loader functions
 *     (LoadLibrary, GetProcAddress, VirtualAlloc, ...): the real imports are
 *     resolved by the stub at run time.
 * Limits: entropy is measured over at most the first 16 MiB of a section,
 * which is enough to tell compressed data from code. Only PE files are
 * judged; anything else is never packed here.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mamori/emu.h"

#define HIGH_ENTROPY	  7.2
#define ENTROPY_MAX_BYTES ((size_t)16 << 20)
#define ENTROPY_MIN_BYTES 512 /* shorter sections say little about their entropy */
#define FEW_IMPORTS	  5

/* Section names written by known packers (and by our own test packers). */
static const char *const packer_section_names[] = {
	"UPX0",	    "UPX1",    "UPX2",	".UPX0",    ".UPX1",	 ".aspack", ".adata",	  ".MPRESS1",
	".MPRESS2", ".petite", ".nsp0", ".nsp1",    ".nsp2",	 ".packed", ".themida",	  ".winlice",
	".vmp0",    ".vmp1",   ".vmp2", ".enigma1", ".enigma2",	 "PEC2",    "PECompact2", ".perplex",
	"pebundle", ".yP",     ".y0da", "FSG!",	    ".kkrunchy", "MEW",	    ".MaskPE",	  ".mpk",
};

/* Imports that a stub needs to find and map the real ones. */
static const char *const loader_import_names[] = {
	"LoadLibraryA",	    "LoadLibraryW",
	"LoadLibraryExA",   "LoadLibraryExW",
	"GetProcAddress",   "GetModuleHandleA",
	"GetModuleHandleW", "VirtualAlloc",
	"VirtualProtect",   "VirtualFree",
	"ExitProcess",	    "GetModuleFileNameA",
	"LdrLoadDll",	    "LdrGetProcedureAddress",
};

static double entropy_of(const uint8_t *p, size_t n)
{
	size_t count[256] = { 0 };
	for (size_t i = 0; i < n; i++)
		count[p[i]]++;
	double h = 0;
	for (int i = 0; i < 256; i++) {
		if (!count[i])
			continue;
		double q = (double)count[i] / (double)n;
		h -= q * log2(q);
	}
	return h;
}

static bool is_packer_section_name(const char *name)
{
	for (size_t i = 0; i < sizeof(packer_section_names) / sizeof(packer_section_names[0]); i++)
		if (!strcmp(name, packer_section_names[i]))
			return true;
	return false;
}

static bool is_loader_import(const mamori_import *im)
{
	if (!im->name)
		return false;
	for (size_t i = 0; i < sizeof(loader_import_names) / sizeof(loader_import_names[0]); i++)
		if (!strcmp(im->name, loader_import_names[i]))
			return true;
	return false;
}

/* Append "; text" to why (truncated quietly: it is for people). */
static void why_add(mamori_pack_hint *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void why_add(mamori_pack_hint *h, const char *fmt, ...)
{
	char part[sizeof(h->why)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(part, sizeof(part), fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized): see error.c
	va_end(ap);
	size_t used = strlen(h->why);
	snprintf(h->why + used, sizeof(h->why) - used, "%s%s", used ? "; " : "", part);
}

void mamori_pack_hint_of(mamori_pack_hint *out, const mamori_binary *b)
{
	memset(out, 0, sizeof(*out));
	if (!b || (b->format != MAMORI_FMT_PE32 && b->format != MAMORI_FMT_PE32PLUS)) {
		snprintf(out->why, sizeof(out->why), "not a PE file");
		return;
	}
	int signs = 0;
	bool named = false;
	const char *hot = NULL, *named_sec = NULL, *wx_sec = NULL;
	const mamori_section *entry_sec = NULL, *last = NULL, *first_code = NULL;
	for (size_t i = 0; i < b->n_sections; i++) {
		const mamori_section *s = &b->sections[i];
		if (s->vsize == 0 && s->raw_size == 0)
			continue;
		if (!last || s->va > last->va)
			last = s;
		if ((s->flags & MAMORI_SEC_EXEC) && (!first_code || s->va < first_code->va))
			first_code = s;
		uint64_t span = s->vsize > s->raw_size ? s->vsize : s->raw_size;
		if (b->has_entry && b->entry - s->va < span)
			entry_sec = s;
		if ((s->flags & MAMORI_SEC_WRITE) && (s->flags & MAMORI_SEC_EXEC) && !out->writable_code) {
			out->writable_code = true;
			wx_sec = s->name;
		}
		if (!named && is_packer_section_name(s->name)) {
			named = true;
			named_sec = s->name;
		}
		/* raw_off/raw_size were checked against the file by the parser. */
		if (s->raw_size >= ENTROPY_MIN_BYTES && mamori_span_fits(b->size, s->raw_off, s->raw_size)) {
			size_t n = s->raw_size < ENTROPY_MAX_BYTES ? (size_t)s->raw_size : ENTROPY_MAX_BYTES;
			double h = entropy_of(b->data + s->raw_off, n);
			if (h > out->max_entropy) {
				out->max_entropy = h;
				hot = s->name;
			}
		}
	}
	out->n_imports = b->n_imports;

	if (out->max_entropy >= HIGH_ENTROPY) {
		signs++;
		why_add(out, "entropy %.2f in %s", out->max_entropy, hot ? hot : "?");
	}
	if (b->has_entry) {
		if (!entry_sec || !(entry_sec->flags & MAMORI_SEC_EXEC)) {
			signs++;
			why_add(out, "entry outside the code sections");
		} else if (entry_sec == last && first_code && first_code != entry_sec) {
			out->entry_in_last_section = true;
			signs++;
			why_add(out, "entry in the last section %s", entry_sec->name);
		}
	}
	if (out->writable_code) {
		signs++;
		why_add(out, "writable code in %s", wx_sec);
	}
	bool only_loader = b->n_imports > 0;
	for (size_t i = 0; i < b->n_imports && only_loader; i++)
		only_loader = is_loader_import(&b->imports[i]);
	if (b->n_imports <= FEW_IMPORTS || only_loader) {
		signs++;
		if (only_loader)
			why_add(out, "only loader imports (%zu)", b->n_imports);
		else
			why_add(out, "%zu imports", b->n_imports);
	}
	if (named)
		why_add(out, "packer section name %s", named_sec);
	out->packed = named || signs >= 2;
	if (!out->why[0])
		snprintf(out->why, sizeof(out->why), "no sign of packing");
}
