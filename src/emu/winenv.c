/*
 * The Windows user-mode environment of the emulator: TEB, PEB with
 * PEB_LDR_DATA and its three module lists, process parameters,
 * KUSER_SHARED_DATA, the process heap, the stand-in modules (real little PE
 * images with export directories whose functions are stub slots served by
 * winapi.c), and the loader of the main image (sections, base relocations,
 * imports bound to the stand-ins by name and ordinal, TLS).
 *
 * Choices: LoadLibrary of a DLL we have no stand-in for gives an empty
 * stand-in (it succeeds, like a DLL that exists), so that stubs keep going;
 * GetProcAddress on it, or of an unknown name on any stand-in, creates an
 * export that is logged by name when called and fails plausibly. At most
 * MAX_MODULES modules. A relocated image goes to the first free 64 KiB
 * aligned gap from 0x10000000. Page protections are recorded (VirtualQuery
 * reports them) but not enforced: every page stays readable and executable.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu_internal.h"

#define RELOC_BASE	  0x10000000ull
#define MAX_TLS_CALLBACKS 32

static uint64_t round_page(uint64_t v)
{
	return (v + EMU_PAGE - 1) & ~(EMU_PAGE - 1);
}

static void le(uint8_t *b, uint64_t v, size_t w)
{
	for (size_t i = 0; i < w; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

static size_t ptr_size(const mamori_emu *e)
{
	return e->x64 ? 8 : 4;
}

/* Bump allocation in the environment region (16-byte aligned); 0 when full. */
uint64_t env_alloc(mamori_emu *e, uint64_t size)
{
	uint64_t at = (e->env_next + 15) & ~15ull;
	if (size > ENV_BASE + ENV_SIZE - at)
		return 0;
	e->env_next = at + size;
	return at;
}

void winenv_set_last_error(mamori_emu *e, uint32_t err)
{
	uint8_t b[4];
	le(b, err, 4);
	emu_put(e, TEB_VA + (e->x64 ? 0x68 : 0x34), b, 4);
}

/* A wide copy of ASCII `s` in the environment region; 0 when full. */
static uint64_t env_wstr(mamori_emu *e, const char *s)
{
	size_t n = strlen(s);
	uint64_t va = env_alloc(e, 2 * n + 2);
	if (!va)
		return 0;
	for (size_t i = 0; i <= n; i++) {
		uint8_t w[2] = { (uint8_t)s[i], 0 };
		if (!emu_put(e, va + 2 * i, w, 2))
			return 0;
	}
	return va;
}

static uint64_t env_str(mamori_emu *e, const char *s)
{
	size_t n = strlen(s) + 1;
	uint64_t va = env_alloc(e, n);
	return va && emu_put(e, va, s, n) ? va : 0;
}

/* UNICODE_STRING at `at` for `s`. */
static bool put_unistr(mamori_emu *e, uint64_t at, const char *s)
{
	uint64_t buf = env_wstr(e, s);
	uint8_t u[16] = { 0 };
	le(u, 2 * strlen(s), 2);
	le(u + 2, 2 * strlen(s) + 2, 2);
	le(u + (e->x64 ? 8 : 4), buf, ptr_size(e));
	return buf && emu_put(e, at, u, e->x64 ? 16 : 8);
}

/* ------------------------------------------------------------ LDR lists */

static const uint16_t ldr_head32[3] = { 0x0c, 0x14, 0x1c }, ldr_head64[3] = { 0x10, 0x20, 0x30 };
static const uint16_t ldr_link32[3] = { 0x00, 0x08, 0x10 }, ldr_link64[3] = { 0x00, 0x10, 0x20 };

static bool list_insert(mamori_emu *e, int list, uint64_t entry, bool at_head)
{
	size_t w = ptr_size(e);
	uint64_t head = e->ldr_va + (e->x64 ? ldr_head64 : ldr_head32)[list];
	uint64_t node = entry + (e->x64 ? ldr_link64 : ldr_link32)[list];
	uint64_t first = 0, last = 0;
	if (!emu_getptr(e, head, &first) || !emu_getptr(e, head + w, &last))
		return false;
	if (at_head)
		return emu_putptr(e, node, first) && emu_putptr(e, node + w, head) &&
		       emu_putptr(e, first + w, node) && emu_putptr(e, head, node);
	return emu_putptr(e, node, head) && emu_putptr(e, node + w, last) && emu_putptr(e, last, node) &&
	       emu_putptr(e, head + w, node);
}

/* An LDR_DATA_TABLE_ENTRY for a module, linked into the load and memory
 * order lists (at their head for the main image) and, for DLLs, the
 * initialisation order list. */
static uint64_t ldr_add(mamori_emu *e, uint64_t base, uint64_t entry_point, uint64_t size, const char *full,
			const char *basename, bool is_image)
{
	uint64_t ent = env_alloc(e, e->x64 ? 0x120 : 0x90);
	if (!ent)
		return 0;
	size_t w = ptr_size(e);
	uint64_t o_base = e->x64 ? 0x30 : 0x18;
	uint8_t b[4];
	le(b, (uint32_t)size, 4);
	uint8_t cnt[2] = { 0xff, 0xff };
	if (!emu_putptr(e, ent + o_base, base) || !emu_putptr(e, ent + o_base + w, entry_point) ||
	    !emu_put(e, ent + o_base + 2 * w, b, 4) || !put_unistr(e, ent + (e->x64 ? 0x48 : 0x24), full) ||
	    !put_unistr(e, ent + (e->x64 ? 0x58 : 0x2c), basename) ||
	    !emu_put(e, ent + (e->x64 ? 0x6c : 0x38), cnt, 2))
		return 0;
	if (!list_insert(e, 0, ent, is_image) || !list_insert(e, 1, ent, is_image))
		return 0;
	if (!is_image && !list_insert(e, 2, ent, false))
		return 0;
	return ent;
}

/* ------------------------------------------------------- stand-in modules */

typedef struct known_dll {
	const char *name, *display;
	uint8_t bit;
} known_dll;

static const known_dll known_dlls[] = {
	{ "ntdll.dll", "ntdll.dll", MOD_NTDLL },	{ "kernel32.dll", "KERNEL32.DLL", MOD_K32 },
	{ "kernelbase.dll", "KERNELBASE.dll", MOD_KB }, { "user32.dll", "USER32.dll", MOD_USER32 },
	{ "advapi32.dll", "ADVAPI32.dll", MOD_ADVAPI }, { "msvcrt.dll", "msvcrt.dll", MOD_MSVCRT },
	{ "ws2_32.dll", "WS2_32.dll", MOD_WS2 },
};

uint8_t winapi_module_bit(const char *dll)
{
	for (size_t i = 0; i < sizeof(known_dlls) / sizeof(*known_dlls); i++)
		if (!strcmp(known_dlls[i].name, dll))
			return known_dlls[i].bit;
	return 0;
}

/* Canonical lower-case module name: no path, ".dll" added when there is no
 * extension, API sets folded onto their host. False when unusable. */
static bool canon_name(char out[64], const char *name)
{
	const char *s = name;
	for (const char *p = name; *p; p++)
		if (*p == '\\' || *p == '/')
			s = p + 1;
	size_t n = strlen(s);
	while (n && s[n - 1] == ' ')
		n--;
	if (n == 0 || n > 59)
		return false;
	bool dot = false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c > 0x7e)
			return false;
		out[i] = (char)tolower(c);
		dot = dot || c == '.';
	}
	out[n] = 0;
	if (!dot)
		memcpy(out + n, ".dll", 5);
	if (!strncmp(out, "api-ms-win-crt-", 15) || !strcmp(out, "ucrtbase.dll"))
		memcpy(out, "msvcrt.dll", 11);
	else if (!strncmp(out, "api-ms-win-core-", 16) || !strncmp(out, "api-ms-win-", 11))
		memcpy(out, "kernelbase.dll", 15);
	return true;
}

static int api_push(mamori_emu *e, api_entry a)
{
	if (e->n_apis == e->cap_apis) {
		size_t cap = e->cap_apis ? e->cap_apis * 2 : 512;
		api_entry *n = realloc(e->apis, cap * sizeof(*n));
		if (!n)
			return mamori_fail(MAMORI_ENOMEM, "emu: API table");
		e->apis = n;
		e->cap_apis = cap;
	}
	e->apis[e->n_apis++] = a;
	return MAMORI_OK;
}

typedef struct exp_item {
	const api_def *def;
	uint16_t ordinal;
} exp_item;

static int cmp_exp_name(const void *a, const void *b)
{
	return strcmp(((const exp_item *)a)->def->name, ((const exp_item *)b)->def->name);
}

/* Build the stand-in for canonical `name` and load it (LDR entry). */
static int build_module(mamori_emu *e, const char *name, module **out)
{
	int rc = MAMORI_OK;
	exp_item *items = NULL;
	uint8_t *img = NULL;
	if (e->n_modules >= MAX_MODULES)
		return mamori_fail(MAMORI_ELIMIT, "emu: more than %d modules", MAX_MODULES);
	uint8_t bitm = winapi_module_bit(name);
	const char *display = name;
	for (size_t i = 0; i < sizeof(known_dlls) / sizeof(*known_dlls); i++)
		if (known_dlls[i].bit == bitm && bitm)
			display = known_dlls[i].display;
	size_t n = 0;
	items = calloc(winapi_n_defs + 1, sizeof(*items));
	if (!items)
		return mamori_fail(MAMORI_ENOMEM, "emu: exports");
	uint16_t next_ord = 1;
	for (size_t i = 0; bitm && i < winapi_n_defs; i++)
		if ((winapi_defs[i].mods & bitm) && winapi_defs[i].ordinal >= next_ord)
			next_ord = (uint16_t)(winapi_defs[i].ordinal + 1);
	for (size_t i = 0; bitm && i < winapi_n_defs; i++) {
		if (!(winapi_defs[i].mods & bitm))
			continue;
		items[n].def = &winapi_defs[i];
		items[n].ordinal = winapi_defs[i].ordinal ? winapi_defs[i].ordinal : next_ord++;
		n++;
	}
	qsort(items, n, sizeof(*items), cmp_exp_name);
	size_t n_code = 0, data_bytes = 0, names_bytes = strlen(display) + 1;
	uint16_t max_ord = 0;
	for (size_t i = 0; i < n; i++) {
		if (items[i].def->data_size)
			data_bytes += (items[i].def->data_size + 15) & ~15u;
		else
			n_code++;
		names_bytes += strlen(items[i].def->name) + 1;
		if (items[i].ordinal > max_ord)
			max_ord = items[i].ordinal;
	}
	/* Layout: headers, export directory, stub slots, data objects. */
	uint64_t exp_rva = 0x1000;
	uint64_t funcs = exp_rva + 40, names = funcs + 4ull * max_ord, ords = names + 4ull * n;
	uint64_t strs = ords + 2ull * n, exp_end = strs + names_bytes;
	uint64_t stub_rva = round_page(exp_end);
	uint32_t cap_stubs = (uint32_t)(n_code + MAX_DYN_EXPORTS);
	uint64_t data_rva = round_page(stub_rva + 8ull * cap_stubs);
	uint64_t size = round_page(data_rva + data_bytes + 16);
	uint64_t base = (e->mod_next + 0xffff) & ~0xffffull;
	if (base + size > MOD_HI) {
		rc = mamori_fail(MAMORI_ELIMIT, "emu: no room for module %s", name);
		goto done;
	}
	module *m = &e->modules[e->n_modules];
	memset(m, 0, sizeof(*m));
	snprintf(m->name, sizeof(m->name), "%s", name);
	m->base = base;
	m->size = size;
	m->stub_base = base + stub_rva;
	m->cap_stubs = cap_stubs;
	if (!(m->stub_api = calloc(cap_stubs, sizeof(uint32_t))) || !(img = calloc(1, size))) {
		rc = mamori_fail(MAMORI_ENOMEM, "emu: module image");
		goto done;
	}
	if ((rc = emu_map(e, base, size, MAMORI_EMU_REGION_MODULE, m->name, 0x20)))
		goto done;
	e->mod_next = base + size;
	e->stub_span = e->mod_next - STUB_LO;
	/* DOS + PE headers: enough for code that parses them by hand. */
	img[0] = 'M', img[1] = 'Z';
	le(img + 0x3c, 0x80, 4);
	uint8_t *pe = img + 0x80;
	pe[0] = 'P', pe[1] = 'E'; /* then two zero bytes */
	le(pe + 4, e->x64 ? 0x8664 : 0x14c, 2);
	le(pe + 6, 1, 2);
	le(pe + 20, e->x64 ? 0xf0 : 0xe0, 2);
	le(pe + 22, e->x64 ? 0x2022 : 0x2102, 2);
	uint8_t *opt = pe + 24;
	le(opt, e->x64 ? 0x20b : 0x10b, 2);
	if (e->x64)
		le(opt + 24, base, 8);
	else
		le(opt + 28, base, 4);
	le(opt + 32, 0x1000, 4);
	le(opt + 36, 0x200, 4);
	le(opt + 40, 10, 2);
	le(opt + 48, 10, 2);
	le(opt + 56, size, 4);
	le(opt + 60, 0x400, 4);
	le(opt + 68, 3, 2);
	le(opt + 70, 0x140, 2);
	uint8_t *dd = opt + (e->x64 ? 112 : 96);
	le(opt + (e->x64 ? 108 : 92), 16, 4);
	le(dd, exp_rva, 4);
	le(dd + 4, exp_end - exp_rva, 4);
	uint8_t *sh = opt + (e->x64 ? 0xf0 : 0xe0);
	static const uint8_t text_name[8] = ".text";
	memcpy(sh, text_name, sizeof(text_name));
	le(sh + 8, size - 0x1000, 4);
	le(sh + 12, 0x1000, 4);
	le(sh + 16, size - 0x1000, 4);
	le(sh + 20, 0x1000, 4);
	le(sh + 36, 0x60000020u, 4);
	/* Export directory. */
	uint8_t *ed = img + exp_rva;
	le(ed + 12, strs, 4); /* Name */
	le(ed + 16, 1, 4);    /* Base */
	le(ed + 20, max_ord, 4);
	le(ed + 24, n, 4);
	le(ed + 28, funcs, 4);
	le(ed + 32, names, 4);
	le(ed + 36, ords, 4);
	uint64_t s_at = strs;
	memcpy(img + s_at, display, strlen(display) + 1);
	s_at += strlen(display) + 1;
	memset(img + stub_rva, 0xcc, 8ull * cap_stubs);
	uint64_t d_at = data_rva;
	for (size_t i = 0; i < n; i++) {
		const api_def *d = items[i].def;
		uint64_t rva;
		if (d->data_size) {
			rva = d_at;
			d_at += (d->data_size + 15) & ~15u;
		} else {
			rva = stub_rva + 8ull * m->n_stubs;
			m->stub_api[m->n_stubs++] = (uint32_t)e->n_apis;
		}
		le(img + funcs + 4ull * (items[i].ordinal - 1), rva, 4);
		le(img + names + 4 * i, s_at, 4);
		le(img + ords + 2 * i, items[i].ordinal - 1, 2);
		memcpy(img + s_at, d->name, strlen(d->name) + 1);
		s_at += strlen(d->name) + 1;
		char *nm = strdup(d->name);
		if (!nm) {
			rc = mamori_fail(MAMORI_ENOMEM, "emu: export name");
			goto done;
		}
		if ((rc = api_push(e, (api_entry){ .module = (uint32_t)e->n_modules,
						   .name = nm,
						   .ordinal = items[i].ordinal,
						   .va = base + rva,
						   .def = d,
						   .is_data = d->data_size != 0 }))) {
			free(nm);
			goto done;
		}
	}
	if (!emu_put(e, base, img, size)) {
		rc = mamori_fail(MAMORI_EIO, "emu: cannot write module %s", name);
		goto done;
	}
	e->n_modules++;
	char full[128];
	snprintf(full, sizeof(full), "C:\\Windows\\System32\\%s", display);
	if (!(m->ldr_entry = ldr_add(e, base, 0, size, full, display, false))) {
		rc = mamori_fail(MAMORI_ELIMIT, "emu: environment area full");
		goto done;
	}
	if ((rc = winapi_init_data(e, m)))
		goto done;
	*out = m;
done:
	free(items);
	free(img);
	return rc;
}

int winenv_module(mamori_emu *e, const char *name, int how, module **out)
{
	char canon[64];
	*out = NULL;
	if (!canon_name(canon, name))
		return mamori_fail(MAMORI_ENOTFOUND, "emu: bad module name");
	for (size_t i = 0; i < e->n_modules; i++) {
		if (!strcmp(e->modules[i].name, canon)) {
			*out = &e->modules[i];
			return MAMORI_OK;
		}
	}
	if (how == WINENV_LOADED || (how == WINENV_KNOWN && !winapi_module_bit(canon)))
		return mamori_fail(MAMORI_ENOTFOUND, "emu: no module %s", canon);
	return build_module(e, canon, out);
}

module *winenv_module_by_base(mamori_emu *e, uint64_t base)
{
	for (size_t i = 0; i < e->n_modules; i++)
		if (e->modules[i].base == base)
			return &e->modules[i];
	return NULL;
}

module *winenv_module_at(mamori_emu *e, uint64_t va)
{
	for (size_t i = 0; i < e->n_modules; i++)
		if (va - e->modules[i].base < e->modules[i].size)
			return &e->modules[i];
	return NULL;
}

uint64_t winenv_export(mamori_emu *e, module *m, const char *name, uint16_t ordinal, bool create)
{
	if (m->is_image)
		return 0;
	uint32_t mi = (uint32_t)(m - e->modules);
	uint16_t max_ord = 0;
	for (size_t i = 0; i < e->n_apis; i++) {
		const api_entry *a = &e->apis[i];
		if (a->module != mi)
			continue;
		if (a->ordinal > max_ord)
			max_ord = a->ordinal;
		if (name ? (a->name && !strcmp(a->name, name)) : a->ordinal == ordinal)
			return a->va;
	}
	if (!create || m->n_stubs >= m->cap_stubs || (name && strlen(name) > 255))
		return 0;
	char *nm = NULL;
	if (name && !(nm = strdup(name)))
		return 0;
	uint64_t va = m->stub_base + 8ull * m->n_stubs;
	if (api_push(e, (api_entry){ .module = mi,
				     .name = nm,
				     .ordinal = name ? (uint16_t)(max_ord + 1) : ordinal,
				     .va = va }) != MAMORI_OK) {
		free(nm);
		return 0;
	}
	m->stub_api[m->n_stubs++] = (uint32_t)(e->n_apis - 1);
	return va;
}

/* ------------------------------------------------------------ allocation */

uint64_t winenv_alloc_region(mamori_emu *e, uint64_t addr, uint64_t size, mamori_emu_region_kind kind,
			     uint32_t prot)
{
	if (size == 0 || size > e->lim.max_memory)
		return 0;
	size = round_page(size);
	if (addr) {
		addr &= ~(EMU_PAGE - 1);
		region *r = emu_find_region(e, addr);
		if (r && size <= r->base + r->size - addr)
			return addr; /* committing reserved memory */
		if (r || addr < ALLOC_LO || addr >= ALLOC_HI || size > ALLOC_HI - addr ||
		    emu_find_free(e, size, addr, addr + size, EMU_PAGE) != addr)
			return 0;
	} else {
		addr = emu_find_free(e, size, e->alloc_hint ? e->alloc_hint : ALLOC_START, ALLOC_HI, 0x10000);
		if (!addr)
			addr = emu_find_free(e, size, ALLOC_LO, ALLOC_HI, 0x10000);
		if (!addr)
			return 0;
	}
	int rc = emu_map(e, addr, size, kind, NULL, prot);
	if (rc == MAMORI_ELIMIT && e->ran)
		emu_stop(e, MAMORI_EMU_LIMIT, "memory");
	return rc ? 0 : addr;
}

/* ---------------------------------------------------------------- set-up */

/* Guest code for _initterm(begin, end): call every non-null pointer. Run
 * as guest code because the pointers are guest functions. */
static const uint8_t initterm32[] = {
	0x56,			/* push esi */
	0x57,			/* push edi */
	0x8b, 0x74, 0x24, 0x0c, /* mov esi, [esp+12] */
	0x8b, 0x7c, 0x24, 0x10, /* mov edi, [esp+16] */
	0x39, 0xfe,		/* l: cmp esi, edi */
	0x73, 0x0d,		/* jae done */
	0x8b, 0x06,		/* mov eax, [esi] */
	0x85, 0xc0,		/* test eax, eax */
	0x74, 0x02,		/* jz skip */
	0xff, 0xd0,		/* call eax */
	0x83, 0xc6, 0x04,	/* skip: add esi, 4 */
	0xeb, 0xef,		/* jmp l */
	0x31, 0xc0,		/* done: xor eax, eax */
	0x5f,			/* pop edi */
	0x5e,			/* pop esi */
	0xc3,			/* ret */
};
static const uint8_t initterm64[] = {
	0x56,			/* push rsi */
	0x57,			/* push rdi */
	0x48, 0x83, 0xec, 0x28, /* sub rsp, 0x28 */
	0x48, 0x89, 0xce,	/* mov rsi, rcx */
	0x48, 0x89, 0xd7,	/* mov rdi, rdx */
	0x48, 0x39, 0xfe,	/* l: cmp rsi, rdi */
	0x73, 0x10,		/* jae done */
	0x48, 0x8b, 0x06,	/* mov rax, [rsi] */
	0x48, 0x85, 0xc0,	/* test rax, rax */
	0x74, 0x02,		/* jz skip */
	0xff, 0xd0,		/* call rax */
	0x48, 0x83, 0xc6, 0x08, /* skip: add rsi, 8 */
	0xeb, 0xeb,		/* jmp l */
	0x31, 0xc0,		/* done: xor eax, eax */
	0x48, 0x83, 0xc4, 0x28, /* add rsp, 0x28 */
	0x5f,			/* pop rdi */
	0x5e,			/* pop rsi */
	0xc3,			/* ret */
};

static int setup_kuser(mamori_emu *e)
{
	uint8_t k[0x400] = { 0 };
	le(k + 0x4, 0x0fa00000u, 4); /* TickCountMultiplier */
	le(k + 0x2c, 0x14c, 2);	     /* ImageNumberLow */
	le(k + 0x2e, 0x8664, 2);     /* ImageNumberHigh */
	const char *root = "C:\\Windows";
	for (size_t i = 0; root[i]; i++)
		k[0x30 + 2 * i] = (uint8_t)root[i];
	le(k + 0x260, 19045, 4); /* NtBuildNumber */
	le(k + 0x264, 1, 4);	 /* NtProductType: workstation */
	k[0x268] = 1;
	le(k + 0x26c, 10, 4); /* NtMajorVersion */
	le(k + 0x270, 0, 4);
	le(k + 0x2e8, 0x100000, 4);		   /* NumberOfPhysicalPages (4 GiB) */
	le(k + 0x320, 3ull * 3600 * 1000 / 16, 8); /* TickCount: 3 h at 16 ms */
	if (!emu_put(e, KUSER_VA, k, sizeof(k)))
		return mamori_fail(MAMORI_EIO, "emu: KUSER_SHARED_DATA");
	return MAMORI_OK;
}

/* The environment shared by images and raw code: KUSER_SHARED_DATA, TEB,
 * PEB, LDR, process parameters, the process heap, ntdll, kernel32 and
 * kernelbase. */
int winenv_setup(mamori_emu *e)
{
	int rc;
	size_t w = ptr_size(e);
	if (!(e->modules = calloc(MAX_MODULES, sizeof(*e->modules))))
		return mamori_fail(MAMORI_ENOMEM, "emu: module table");
	e->mod_next = MOD_LO;
	e->stub_span = MOD_LO - STUB_LO;
	e->env_next = ENV_BASE;
	if ((rc = emu_map(e, STUB_LO, EMU_PAGE, MAMORI_EMU_REGION_SYSTEM, NULL, 0x20)) ||
	    (rc = emu_map(e, ENV_BASE, ENV_SIZE, MAMORI_EMU_REGION_SYSTEM, NULL, 0x04)) ||
	    (rc = emu_map(e, KUSER_VA, EMU_PAGE, MAMORI_EMU_REGION_SYSTEM, NULL, 0x02)) ||
	    (rc = setup_kuser(e)))
		return rc;
	uint8_t cc[16];
	memset(cc, 0xcc, sizeof(cc));
	emu_put(e, STUB_LO, cc, sizeof(cc));

	/* TEB: NT_TIB (ExceptionList: end of chain), ClientId, PEB. */
	uint8_t b4[4];
	if (!emu_putptr(e, TEB_VA, e->x64 ? 0 : 0xffffffffu) ||
	    !emu_putptr(e, TEB_VA + w, STACK_BASE + STACK_SIZE) ||
	    !emu_putptr(e, TEB_VA + 2 * w, STACK_BASE) ||
	    !emu_putptr(e, TEB_VA + (e->x64 ? 0x30 : 0x18), TEB_VA) ||
	    !emu_putptr(e, TEB_VA + (e->x64 ? 0x40 : 0x20), 0x1000) ||
	    !emu_putptr(e, TEB_VA + (e->x64 ? 0x48 : 0x24), 0x1004) ||
	    !emu_putptr(e, TEB_VA + (e->x64 ? 0x60 : 0x30), PEB_VA))
		return mamori_fail(MAMORI_EIO, "emu: TEB");

	/* PEB_LDR_DATA with three empty lists. */
	if (!(e->ldr_va = env_alloc(e, 0x60)))
		return mamori_fail(MAMORI_EIO, "emu: LDR");
	le(b4, e->x64 ? 0x58 : 0x30, 4);
	emu_put(e, e->ldr_va, b4, 4);
	le(b4, 1, 4);
	emu_put(e, e->ldr_va + 4, b4, 4);
	for (int l = 0; l < 3; l++) {
		uint64_t h = e->ldr_va + (e->x64 ? ldr_head64 : ldr_head32)[l];
		emu_putptr(e, h, h);
		emu_putptr(e, h + w, h);
	}

	/* Process parameters: image path and command line. */
	const char *cmd = e->lim.cmdline ? e->lim.cmdline : "sample.exe";
	char first[200];
	size_t fi = 0;
	const char *c = cmd;
	bool quoted = *c == '"';
	if (quoted)
		c++;
	while (*c && fi + 1 < sizeof(first) && (quoted ? *c != '"' : *c != ' '))
		first[fi++] = *c++;
	first[fi] = 0;
	if (fi == 0)
		snprintf(first, sizeof(first), "sample.exe");
	const char *base_name = first;
	for (const char *p = first; *p; p++)
		if (*p == '\\' || *p == '/')
			base_name = p + 1;
	snprintf(e->image_name, sizeof(e->image_name), "%.*s", (int)sizeof(e->image_name) - 1,
		 base_name); /* long names are cut */
	char path[300];
	if (strchr(first, '\\'))
		snprintf(path, sizeof(path), "%s", first);
	else
		snprintf(path, sizeof(path), "C:\\Users\\user\\Desktop\\%s", first);
	size_t pp = e->x64 ? 0x400 : 0x2a0;
	if (!(e->params_va = env_alloc(e, pp)))
		return mamori_fail(MAMORI_EIO, "emu: process parameters");
	le(b4, (uint32_t)pp, 4);
	emu_put(e, e->params_va, b4, 4);
	emu_put(e, e->params_va + 4, b4, 4);
	le(b4, 1, 4); /* RTL_USER_PROC_PARAMS_NORMALIZED */
	emu_put(e, e->params_va + 8, b4, 4);
	uint64_t env_block = env_wstr(e, "PATH=C:\\Windows\\system32;C:\\Windows");
	if (!put_unistr(e, e->params_va + (e->x64 ? 0x38 : 0x24), "C:\\Users\\user\\Desktop\\") ||
	    !put_unistr(e, e->params_va + (e->x64 ? 0x60 : 0x38), path) ||
	    !put_unistr(e, e->params_va + (e->x64 ? 0x70 : 0x40), cmd) || !env_block ||
	    !emu_putptr(e, e->params_va + (e->x64 ? 0x80 : 0x48), env_block) ||
	    !emu_putptr(e, e->params_va + (e->x64 ? 0x20 : 0x18), 0x10) ||
	    !emu_putptr(e, e->params_va + (e->x64 ? 0x28 : 0x1c), 0x14) ||
	    !emu_putptr(e, e->params_va + (e->x64 ? 0x30 : 0x20), 0x18))
		return mamori_fail(MAMORI_ELIMIT, "emu: command line too long");
	emu_getptr(e, e->params_va + (e->x64 ? 0x78 : 0x44), &e->cmdline_w);
	emu_getptr(e, e->params_va + (e->x64 ? 0x68 : 0x3c), &e->image_path_w);
	if (!(e->cmdline_a = env_str(e, cmd)))
		return mamori_fail(MAMORI_ELIMIT, "emu: command line too long");

	/* The process heap: its first page holds a header with the flags that
	 * anti-debugging code reads (Flags = HEAP_GROWABLE, ForceFlags = 0). */
	e->process_heap = winenv_alloc_region(e, HEAP_VA, 1ull << 20, MAMORI_EMU_REGION_HEAP, 0x04);
	if (!e->process_heap)
		return mamori_fail(MAMORI_ELIMIT, "emu: no room for the process heap");
	le(b4, 2, 4);
	emu_put(e, e->process_heap + (e->x64 ? 0x70 : 0x40), b4, 4);
	e->heap_cur = e->process_heap + EMU_PAGE;
	e->heap_end = e->process_heap + (1ull << 20);

	/* PEB. */
	uint8_t b2[2] = { 0x4a, 0x65 }; /* OSBuildNumber 19018+ */
	if (!emu_putptr(e, PEB_VA + (e->x64 ? 0x18 : 0xc), e->ldr_va) ||
	    !emu_putptr(e, PEB_VA + (e->x64 ? 0x20 : 0x10), e->params_va) ||
	    !emu_putptr(e, PEB_VA + (e->x64 ? 0x30 : 0x18), e->process_heap))
		return mamori_fail(MAMORI_EIO, "emu: PEB");
	le(b4, 4, 4);
	emu_put(e, PEB_VA + (e->x64 ? 0xb8 : 0x64), b4, 4);
	le(b4, 10, 4);
	emu_put(e, PEB_VA + (e->x64 ? 0x118 : 0xa4), b4, 4);
	le(b2, 19045, 2);
	emu_put(e, PEB_VA + (e->x64 ? 0x120 : 0xac), b2, 2);
	le(b4, 2, 4);
	emu_put(e, PEB_VA + (e->x64 ? 0x124 : 0xb0), b4, 4);

	/* Helper code. */
	e->helper_initterm = HELPER_VA;
	if (!emu_put(e, HELPER_VA, e->x64 ? initterm64 : initterm32,
		     e->x64 ? sizeof(initterm64) : sizeof(initterm32)))
		return mamori_fail(MAMORI_EIO, "emu: helper code");
	e->helper_next = HELPER_VA + 0x100;

	module *m;
	if ((rc = winenv_module(e, "ntdll.dll", WINENV_KNOWN, &m)) ||
	    (rc = winenv_module(e, "kernel32.dll", WINENV_KNOWN, &m)) ||
	    (rc = winenv_module(e, "kernelbase.dll", WINENV_KNOWN, &m)))
		return rc;
	return MAMORI_OK;
}

/* ------------------------------------------------------------ the image */

typedef struct pe_info {
	uint32_t size_of_image, size_of_headers;
	uint16_t characteristics;
	uint32_t reloc_rva, reloc_size, tls_rva, tls_size;
	uint64_t hdr_base_off; /* file offset of the ImageBase field */
} pe_info;

static int parse_headers(pe_info *pi, const mamori_binary *b)
{
	mamori_cursor c;
	uint32_t lfanew = 0, sig = 0;
	uint16_t opt_size = 0, magic = 0;
	mamori_cursor_init(&c, b->data, b->size);
	memset(pi, 0, sizeof(*pi));
	if (mamori_cursor_seek(&c, 0x3c) || mamori_read_u32le(&c, &lfanew) ||
	    mamori_cursor_seek(&c, lfanew) || mamori_read_u32le(&c, &sig) || sig != 0x4550 ||
	    mamori_cursor_skip(&c, 16) || mamori_read_u16le(&c, &opt_size) ||
	    mamori_read_u16le(&c, &pi->characteristics) || mamori_read_u16le(&c, &magic))
		return mamori_fail(MAMORI_EFORMAT, "emu: PE headers");
	bool p64 = magic == 0x20b;
	uint64_t opt = (uint64_t)lfanew + 24;
	uint32_t nrva = 0;
	pi->hdr_base_off = opt + (p64 ? 24 : 28);
	if (mamori_cursor_seek(&c, opt + 56) || mamori_read_u32le(&c, &pi->size_of_image) ||
	    mamori_read_u32le(&c, &pi->size_of_headers) || mamori_cursor_seek(&c, opt + (p64 ? 108 : 92)) ||
	    mamori_read_u32le(&c, &nrva))
		return mamori_fail(MAMORI_EFORMAT, "emu: PE optional header");
	uint64_t dd = opt + (p64 ? 112 : 96);
	if (nrva > 5 && (uint64_t)(p64 ? 112 : 96) + 48 <= opt_size &&
	    (mamori_cursor_seek(&c, dd + 40) || mamori_read_u32le(&c, &pi->reloc_rva) ||
	     mamori_read_u32le(&c, &pi->reloc_size)))
		return mamori_fail(MAMORI_EFORMAT, "emu: relocation directory");
	if (nrva > 9 && (uint64_t)(p64 ? 112 : 96) + 80 <= opt_size &&
	    (mamori_cursor_seek(&c, dd + 72) || mamori_read_u32le(&c, &pi->tls_rva) ||
	     mamori_read_u32le(&c, &pi->tls_size)))
		return mamori_fail(MAMORI_EFORMAT, "emu: TLS directory");
	return MAMORI_OK;
}

/* Apply the base relocations (HIGHLOW, DIR64) of the image mapped at
 * `base` for `delta`, reading the table from guest memory. */
static int apply_relocs(mamori_emu *e, const pe_info *pi, uint64_t base, uint64_t span, uint64_t delta)
{
	int rc = MAMORI_OK;
	if (!mamori_span_fits(span, pi->reloc_rva, pi->reloc_size))
		return mamori_fail(MAMORI_EFORMAT, "emu: relocations outside the image");
	uint8_t *t = malloc(pi->reloc_size ? pi->reloc_size : 1);
	if (!t)
		return mamori_fail(MAMORI_ENOMEM, "emu: relocations");
	if (!emu_get(e, base + pi->reloc_rva, t, pi->reloc_size)) {
		rc = mamori_fail(MAMORI_EIO, "emu: relocations unreadable");
		goto done;
	}
	mamori_cursor c;
	mamori_cursor_init(&c, t, pi->reloc_size);
	while (mamori_cursor_left(&c) >= 8) {
		uint32_t page = 0, bsize = 0;
		mamori_read_u32le(&c, &page);
		mamori_read_u32le(&c, &bsize);
		if (bsize < 8 || bsize - 8 > mamori_cursor_left(&c)) {
			rc = mamori_fail(MAMORI_EFORMAT, "emu: relocation block of %u bytes", bsize);
			goto done;
		}
		for (uint32_t i = 0; i < (bsize - 8) / 2; i++) {
			uint16_t v = 0;
			mamori_read_u16le(&c, &v);
			unsigned type = v >> 12;
			uint64_t rva = (uint64_t)page + (v & 0xfff);
			size_t w = type == 3 ? 4 : type == 10 ? 8 : 0;
			if (!w)
				continue; /* ABSOLUTE padding; other types do not occur in x86 images */
			if (!mamori_span_fits(span, rva, w)) {
				rc = mamori_fail(MAMORI_EFORMAT,
						 "emu: relocation at rva 0x%llx outside the image",
						 (unsigned long long)rva);
				goto done;
			}
			uint8_t b[8] = { 0 };
			emu_get(e, base + rva, b, w);
			uint64_t val = 0;
			for (size_t k = 0; k < w; k++)
				val |= (uint64_t)b[k] << (8 * k);
			le(b, val + delta, w);
			emu_put(e, base + rva, b, w);
		}
		if ((bsize - 8) % 2)
			mamori_cursor_skip(&c, 1);
	}
done:
	free(t);
	return rc;
}

/* TLS: the data block, the index, and a trampoline that calls every
 * callback with DLL_PROCESS_ATTACH and then jumps to the entry. */
static int setup_tls(mamori_emu *e, const pe_info *pi, uint64_t base, uint64_t span)
{
	size_t w = ptr_size(e);
	if (!pi->tls_rva || !mamori_span_fits(span, pi->tls_rva, 4 * w + 8))
		return MAMORI_OK;
	uint64_t start = 0, end = 0, index_va = 0, cbs = 0;
	uint32_t zero_fill = 0;
	uint64_t d = base + pi->tls_rva;
	emu_getptr(e, d, &start);
	emu_getptr(e, d + w, &end);
	emu_getptr(e, d + 2 * w, &index_va);
	emu_getptr(e, d + 3 * w, &cbs);
	emu_get32(e, d + 4 * w, &zero_fill);
	uint64_t raw = end > start && end - start <= 0x10000 ? end - start : 0;
	uint64_t blk_size = raw + (zero_fill <= 0x10000 ? zero_fill : 0);
	uint64_t blk = env_alloc(e, blk_size + 16), arr = env_alloc(e, 8 * w);
	if (blk && arr) {
		uint8_t *tmp = raw ? malloc(raw) : NULL;
		if (tmp && emu_get(e, start, tmp, raw))
			emu_put(e, blk, tmp, raw);
		free(tmp);
		emu_putptr(e, arr, blk);
		emu_putptr(e, TEB_VA + (e->x64 ? 0x58 : 0x2c), arr);
		uint8_t z[4] = { 0 };
		emu_put(e, index_va, z, 4);
	}
	uint64_t cb[MAX_TLS_CALLBACKS];
	size_t n = 0;
	for (; cbs && n < MAX_TLS_CALLBACKS; n++)
		if (!emu_getptr(e, cbs + n * w, &cb[n]) || cb[n] == 0)
			break;
	if (n == 0)
		return MAMORI_OK;
	uint8_t code[MAX_TLS_CALLBACKS * 40 + 32];
	size_t k = 0;
	if (!e->x64) {
		for (size_t i = 0; i < n; i++) {
			const uint8_t call[] = { 0x6a, 0x00, 0x6a, 0x01,
						 0x68 }; /* push 0; push 1; push base */
			memcpy(code + k, call, sizeof(call)), k += sizeof(call);
			le(code + k, base, 4), k += 4;
			code[k++] = 0xb8; /* mov eax, cb */
			le(code + k, cb[i], 4), k += 4;
			code[k++] = 0xff, code[k++] = 0xd0; /* call eax */
		}
		code[k++] = 0xb8; /* mov eax, entry; jmp eax */
		le(code + k, e->entry, 4), k += 4;
		code[k++] = 0xff, code[k++] = 0xe0;
	} else {
		const uint8_t sub[] = { 0x48, 0x83, 0xec, 0x28 }; /* sub rsp, 0x28 */
		memcpy(code + k, sub, 4), k += 4;
		for (size_t i = 0; i < n; i++) {
			code[k++] = 0x48, code[k++] = 0xb9; /* mov rcx, base */
			le(code + k, base, 8), k += 8;
			const uint8_t args[] = {
				0xba, 0x01, 0x00, 0x00, 0x00, 0x45, 0x31, 0xc0
			}; /* edx=1, r8d=0 */
			memcpy(code + k, args, sizeof(args)), k += sizeof(args);
			code[k++] = 0x48, code[k++] = 0xb8; /* mov rax, cb */
			le(code + k, cb[i], 8), k += 8;
			code[k++] = 0xff, code[k++] = 0xd0; /* call rax */
		}
		const uint8_t add[] = {
			0x48, 0x83, 0xc4, 0x28, 0x48, 0xb8
		}; /* add rsp, 0x28; mov rax, entry */
		memcpy(code + k, add, sizeof(add)), k += sizeof(add);
		le(code + k, e->entry, 8), k += 8;
		code[k++] = 0xff, code[k++] = 0xe0; /* jmp rax */
	}
	if (e->helper_next + k > HELPER_VA + 0x2000 || !emu_put(e, e->helper_next, code, k))
		return mamori_fail(MAMORI_EIO, "emu: TLS trampoline");
	e->tls_trampoline = e->start_pc = e->helper_next;
	e->helper_next += (k + 15) & ~15ull;
	return MAMORI_OK;
}

static bool place_ok(mamori_emu *e, uint64_t base, uint64_t span)
{
	if (base < ALLOC_LO || base & 0xffff || base + span < base)
		return false;
	bool low = base + span <= ALLOC_HI;
	bool high = e->x64 && base >= (1ull << 32) && base + span <= 0x7fffffff0000ull;
	return (low || high) && emu_find_free(e, span, base, base + span, EMU_PAGE) == base;
}

int winenv_load_image(mamori_emu *e, const mamori_binary *b)
{
	int rc;
	pe_info pi;
	if ((rc = parse_headers(&pi, b)))
		return rc;
	uint64_t pref = b->image_base;
	uint64_t end = round_page(pi.size_of_image);
	if (end < EMU_PAGE)
		end = EMU_PAGE;
	for (size_t i = 0; i < b->n_sections; i++) {
		const mamori_section *s = &b->sections[i];
		if (s->va < pref || s->vsize > (1ull << 32) || s->va - pref > (1ull << 32))
			return mamori_fail(MAMORI_EFORMAT, "emu: section %zu outside the image", i);
		uint64_t send = round_page(s->va - pref + s->vsize);
		if (send > end)
			end = send;
	}
	uint64_t span = end;
	if (span > e->lim.max_memory)
		return mamori_fail(MAMORI_ELIMIT, "emu: image of %llu bytes exceeds max_memory",
				   (unsigned long long)span);
	if (b->entry - pref >= span)
		return mamori_fail(MAMORI_EFORMAT, "emu: entry 0x%llx outside the image",
				   (unsigned long long)b->entry);
	uint64_t base = pref;
	bool can_reloc = !(pi.characteristics & 0x1) && pi.reloc_rva && pi.reloc_size;
	if (!place_ok(e, base, span)) {
		if (!can_reloc)
			return mamori_fail(
				MAMORI_EUNSUPPORTED,
				"emu: image base 0x%llx cannot be used and the image has no relocations",
				(unsigned long long)pref);
		base = emu_find_free(e, span, RELOC_BASE, ALLOC_HI, 0x10000);
		if (!base)
			return mamori_fail(MAMORI_ELIMIT, "emu: no room for an image of %llu bytes",
					   (unsigned long long)span);
	}
	if ((rc = emu_map(e, base, span, MAMORI_EMU_REGION_IMAGE, e->image_name, 0x80)))
		return rc;
	e->image_base = base;
	e->image_size = span;
	uint64_t hdr = pi.size_of_headers ? pi.size_of_headers : EMU_PAGE;
	if (hdr > b->size)
		hdr = b->size;
	if (hdr > span)
		hdr = span;
	if (!emu_put(e, base, b->data, hdr))
		return mamori_fail(MAMORI_EIO, "emu: cannot write the headers");
	for (size_t i = 0; i < b->n_sections; i++) {
		const mamori_section *s = &b->sections[i];
		uint64_t n = s->raw_size < round_page(s->vsize) ? s->raw_size : round_page(s->vsize);
		if (s->raw_off > b->size || n > b->size - s->raw_off)
			n = s->raw_off > b->size ? 0 : b->size - s->raw_off;
		if (n > span - (s->va - pref))
			n = span - (s->va - pref);
		if (n && !emu_put(e, base + (s->va - pref), b->data + s->raw_off, n))
			return mamori_fail(MAMORI_EIO, "emu: cannot write section %zu", i);
	}
	uint64_t delta = base - pref;
	if (delta) {
		if ((rc = apply_relocs(e, &pi, base, span, delta)))
			return rc;
		uint8_t v[8];
		le(v, base, 8);
		if (pi.hdr_base_off + ptr_size(e) <= hdr)
			emu_put(e, base + pi.hdr_base_off, v, ptr_size(e));
	}
	e->entry = e->start_pc = b->entry + delta;
	emu_putptr(e, PEB_VA + (e->x64 ? 0x10 : 8), base);

	/* The image heads the load and memory order lists. */
	uint64_t path = 0;
	char full[300];
	snprintf(full, sizeof(full), "C:\\Users\\user\\Desktop\\%s", e->image_name);
	(void)path;
	if (!ldr_add(e, base, e->entry, span, full, e->image_name, true))
		return mamori_fail(MAMORI_ELIMIT, "emu: environment area full");

	/* Imports, bound to the stand-ins. */
	for (size_t i = 0; i < b->n_imports; i++) {
		const mamori_import *im = &b->imports[i];
		module *m = NULL;
		uint64_t va = 0;
		if (winenv_module(e, im->dll, WINENV_ANY, &m) == MAMORI_OK)
			va = winenv_export(e, m, im->name, (uint16_t)im->ordinal, true);
		uint64_t slot = im->thunk_va - pref + base;
		if (im->thunk_va - pref >= span)
			continue;
		emu_putptr(e, slot, va);
	}
	if ((rc = setup_tls(e, &pi, base, span)))
		return rc;
	/* The entry's frame: return to the exit stub; x86 gets the PEB as its
	 * argument like BaseThreadInitThunk passes it. */
	uint64_t sp = emu_reg(e, e->x64 ? UC_X86_REG_RSP : UC_X86_REG_ESP);
	if (!e->x64)
		emu_putptr(e, sp + 4, PEB_VA);
	else
		emu_set_reg(e, UC_X86_REG_RCX, PEB_VA);
	return MAMORI_OK;
}
