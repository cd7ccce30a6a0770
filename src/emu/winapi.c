/*
 * The API stubs of the stand-in modules: one table {modules, name,
 * ordinal, nargs, convention, C function} drives the export directories
 * (winenv.c) and the dispatch. A call lands on an export's stub slot; the
 * per-instruction hook sees the stub range and calls winapi_dispatch(),
 * which reads the arguments per calling convention (x86 stdcall/cdecl, x64
 * MS ABI), runs the C function, puts the result in eax/rax, pops the
 * return address (and a stdcall's arguments) and resumes at the caller.
 *
 * What a stub does not model it fails plausibly: an export without a C
 * function returns 0 with ERROR_CALL_NOT_IMPLEMENTED (and pops the known
 * argument bytes; an export created by GetProcAddress is assumed cdecl).
 * Time is virtual (emu_clock_ns): Sleep advances it without waiting. Stubs
 * that must call guest code (_initterm) jump to guest helper code instead.
 * Memory written by a stub on the guest's behalf goes through emu_gwrite()
 * and counts as written by the call (see emu.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu_internal.h"

#define A(i)			   api_arg(e, (i))
#define MAX_STR			   4096
#define MAX_FMT_OUT		   (64u << 10)
#define BOOT_MS			   (3ull * 3600 * 1000)
#define FILETIME_2024		   133485408000000000ull /* 2024-01-01 00:00 UTC in 100 ns since 1601 */
#define ERROR_CALL_NOT_IMPLEMENTED 120
#define STD_OUT_H		   0x14
#define STD_ERR_H		   0x18

uint64_t api_arg(mamori_emu *e, unsigned i)
{
	uint64_t v = 0;
	if (!e->x64) {
		uint32_t u = 0;
		emu_get32(e, emu_reg(e, UC_X86_REG_ESP) + 4 + 4ull * i, &u);
		return u;
	}
	static const int regs[] = { UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_R8, UC_X86_REG_R9 };
	if (i < 4)
		return emu_reg(e, regs[i]);
	uint8_t b[8] = { 0 };
	emu_get(e, emu_reg(e, UC_X86_REG_RSP) + 0x28 + 8ull * (i - 4), b, 8);
	for (int k = 0; k < 8; k++)
		v |= (uint64_t)b[k] << (8 * k);
	return v;
}

static uint64_t neg1(const mamori_emu *e)
{
	return e->x64 ? ~0ull : 0xffffffffull;
}

static size_t psz(const mamori_emu *e)
{
	return e->x64 ? 8 : 4;
}

/* Guest string into `buf` (NUL-terminated, truncated to cap-1). */
static bool gstr(mamori_emu *e, uint64_t va, char *buf, size_t cap)
{
	size_t n = 0;
	while (n + 1 < cap) {
		uint8_t c;
		if (!emu_get(e, va + n, &c, 1))
			return n > 0 ? (buf[n] = 0, true) : false;
		if (!c)
			break;
		buf[n++] = (char)c;
	}
	buf[n] = 0;
	return true;
}

/* Guest UTF-16 string, folded to ASCII ('?' beyond). */
static bool gwstr(mamori_emu *e, uint64_t va, char *buf, size_t cap)
{
	size_t n = 0;
	while (n + 1 < cap) {
		uint8_t c[2];
		if (!emu_get(e, va + 2 * n, c, 2))
			return n > 0 ? (buf[n] = 0, true) : false;
		uint16_t w = (uint16_t)(c[0] | c[1] << 8);
		if (!w)
			break;
		buf[n++] = w < 0x80 ? (char)w : '?';
	}
	buf[n] = 0;
	return true;
}

static bool put_wstr(mamori_emu *e, uint64_t va, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t w[2] = { (uint8_t)s[i], 0 };
		if (!emu_gwrite(e, va + 2 * i, w, 2))
			return false;
	}
	return true;
}

static void set_err(mamori_emu *e, uint32_t v)
{
	winenv_set_last_error(e, v);
}

/* Copy guest memory to guest memory through the host, in chunks. */
static bool gcopy(mamori_emu *e, uint64_t dst, uint64_t src, uint64_t n)
{
	if (n > e->lim.max_memory)
		return false;
	uint8_t buf[4096];
	/* Overlap-safe: copy backwards when the destination is above the source. */
	bool back = dst > src && dst < src + n;
	for (uint64_t done = 0; done < n;) {
		uint64_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);
		uint64_t off = back ? n - done - k : done;
		if (!emu_get(e, src + off, buf, k) || !emu_gwrite(e, dst + off, buf, k))
			return false;
		done += k;
	}
	return true;
}

static bool gfill(mamori_emu *e, uint64_t dst, uint8_t v, uint64_t n)
{
	if (n > e->lim.max_memory)
		return false;
	uint8_t buf[4096];
	memset(buf, v, sizeof(buf));
	for (uint64_t done = 0; done < n;) {
		uint64_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);
		if (!emu_gwrite(e, dst + done, buf, k))
			return false;
		done += k;
	}
	return true;
}

/* ------------------------------------------------------------------ heap */

/* A chunk: 16-byte header holding its size, then the data. Freed chunks
 * go on a host-side list reused first-fit; arenas of at least 1 MiB come
 * from winenv_alloc_region (so the memory limit applies). */
static uint64_t heap_alloc(mamori_emu *e, uint64_t size, bool zero)
{
	size = (size + 15) & ~15ull;
	if (size == 0)
		size = 16;
	if (size > e->lim.max_memory) {
		emu_stop(e, MAMORI_EMU_LIMIT, "memory");
		return 0;
	}
	for (size_t i = 0; i < e->n_heap_free; i++) {
		if (e->heap_free[i].size >= size && e->heap_free[i].size <= 2 * size + 64) {
			uint64_t va = e->heap_free[i].va;
			e->heap_free[i] = e->heap_free[--e->n_heap_free];
			if (zero)
				gfill(e, va, 0, size);
			return va;
		}
	}
	if (e->heap_end - e->heap_cur < size + 16) {
		uint64_t arena = size + 16 > (1ull << 20) ? size + 16 : 1ull << 20;
		uint64_t b = winenv_alloc_region(e, 0, arena, MAMORI_EMU_REGION_HEAP, 0x04);
		if (!b)
			return 0;
		e->heap_cur = b;
		e->heap_end = b + ((arena + EMU_PAGE - 1) & ~(EMU_PAGE - 1));
	}
	uint64_t va = e->heap_cur + 16;
	e->heap_cur += size + 16;
	uint8_t h[8];
	for (int k = 0; k < 8; k++)
		h[k] = (uint8_t)(size >> (8 * k));
	emu_gwrite(e, va - 16, h, 8);
	return va;
}

static uint64_t heap_size(mamori_emu *e, uint64_t p)
{
	uint8_t h[8];
	if (!p || !emu_get(e, p - 16, h, 8))
		return 0;
	uint64_t s = 0;
	for (int k = 0; k < 8; k++)
		s |= (uint64_t)h[k] << (8 * k);
	return s <= e->lim.max_memory ? s : 0;
}

static void heap_release(mamori_emu *e, uint64_t p)
{
	uint64_t s = heap_size(e, p);
	if (!s || e->n_heap_free >= 4096)
		return;
	if (!e->heap_free && !(e->heap_free = calloc(4096, sizeof(*e->heap_free))))
		return;
	for (size_t i = 0; i < e->n_heap_free; i++)
		if (e->heap_free[i].va == p)
			return; /* double free: ignore */
	e->heap_free[e->n_heap_free++] = (heap_chunk){ p, s };
}

static uint64_t heap_realloc(mamori_emu *e, uint64_t p, uint64_t size, bool zero)
{
	if (!p)
		return heap_alloc(e, size, zero);
	uint64_t old = heap_size(e, p);
	if (old >= size && size)
		return p;
	uint64_t n = heap_alloc(e, size, zero);
	if (n && old)
		gcopy(e, n, p, old < size ? old : size);
	if (n)
		heap_release(e, p);
	return n;
}

/* ---------------------------------------------------------------- output */

typedef struct strbuf {
	char *p;
	size_t n, cap;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n)
{
	if (n > MAX_FMT_OUT - b->n)
		n = MAX_FMT_OUT - b->n;
	if (b->n + n + 1 > b->cap) {
		size_t cap = (b->n + n + 1) * 2;
		char *q = realloc(b->p, cap);
		if (!q)
			return;
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
}

/* Where variadic arguments come from: the call's own arguments from
 * index `idx`, or a va_list at `ptr`. */
typedef struct argsrc {
	mamori_emu *e;
	bool valist;
	uint64_t ptr;
	unsigned idx;
} argsrc;

static uint64_t next_arg(argsrc *a, bool wide)
{
	mamori_emu *e = a->e;
	if (e->x64) {
		if (!a->valist)
			return api_arg(e, a->idx++);
		uint64_t v = 0;
		emu_getptr(e, a->ptr, &v);
		a->ptr += 8;
		return v;
	}
	uint64_t lo, hi = 0;
	if (!a->valist) {
		lo = api_arg(e, a->idx++);
		if (wide)
			hi = api_arg(e, a->idx++);
	} else {
		uint32_t u = 0;
		emu_get32(e, a->ptr, &u);
		lo = u;
		a->ptr += 4;
		if (wide) {
			emu_get32(e, a->ptr, &u);
			hi = u;
			a->ptr += 4;
		}
	}
	return lo | hi << 32;
}

/* printf-style formatting of a guest format string with guest arguments. */
static void format_guest(mamori_emu *e, strbuf *out, uint64_t fmt_va, argsrc *a)
{
	char fmt[MAX_STR];
	if (!gstr(e, fmt_va, fmt, sizeof(fmt)))
		return;
	for (const char *p = fmt; *p && out->n < MAX_FMT_OUT;) {
		if (*p != '%') {
			const char *q = strchr(p, '%');
			size_t n = q ? (size_t)(q - p) : strlen(p);
			sb_add(out, p, n);
			p += n;
			continue;
		}
		const char *start = p++;
		char spec[32];
		size_t sn = 0;
		spec[sn++] = '%';
		while (*p && strchr("-+ #0", *p) && sn < 8)
			spec[sn++] = *p++;
		for (int part = 0; part < 2; part++) {
			if (part == 1) {
				if (*p != '.')
					break;
				spec[sn++] = *p++;
			}
			if (*p == '*') {
				int v = (int)(int32_t)next_arg(a, false);
				sn += (size_t)snprintf(spec + sn, sizeof(spec) - sn, "%d",
						       v < -4096  ? -4096
						       : v > 4096 ? 4096
								  : v);
				p++;
			} else {
				int digits = 0;
				while (*p >= '0' && *p <= '9') {
					if (digits++ < 4 && sn < 20)
						spec[sn++] = *p;
					p++;
				}
			}
		}
		int size = 4; /* bytes of an integer argument */
		bool wide_str = false;
		for (;;) {
			if (*p == 'h')
				p++;
			else if (*p == 'l' && p[1] == 'l')
				size = 8, p += 2;
			else if (*p == 'l')
				wide_str = true, p++;
			else if (*p == 'L' || *p == 'q' || *p == 'j')
				size = 8, p++;
			else if (*p == 'I' && p[1] == '6' && p[2] == '4')
				size = 8, p += 3;
			else if (*p == 'I' && p[1] == '3' && p[2] == '2')
				size = 4, p += 3;
			else if (*p == 'I' || *p == 'z' || *p == 't')
				size = (int)psz(e), p++;
			else
				break;
		}
		char conv = *p ? *p++ : 0;
		char tmp[512];
		int n = 0;
		switch (conv) {
		case 'd':
		case 'i': {
			uint64_t v = next_arg(a, size == 8);
			long long s = size == 8 ? (long long)v : (long long)(int32_t)v;
			memcpy(spec + sn, "lld", 4);
			n = snprintf(tmp, sizeof(tmp), spec, s);
			break;
		}
		case 'u':
		case 'x':
		case 'X':
		case 'o': {
			uint64_t v = next_arg(a, size == 8);
			if (size != 8)
				v &= 0xffffffffu;
			spec[sn] = 'l', spec[sn + 1] = 'l', spec[sn + 2] = conv, spec[sn + 3] = 0;
			n = snprintf(tmp, sizeof(tmp), spec, (unsigned long long)v);
			break;
		}
		case 'c': {
			memcpy(spec + sn, "c", 2);
			n = snprintf(tmp, sizeof(tmp), spec, (int)(uint8_t)next_arg(a, false));
			break;
		}
		case 'p': {
			uint64_t v = next_arg(a, e->x64);
			n = snprintf(tmp, sizeof(tmp), e->x64 ? "%016llX" : "%08llX", (unsigned long long)v);
			break;
		}
		case 'e':
		case 'E':
		case 'f':
		case 'F':
		case 'g':
		case 'G':
		case 'a':
		case 'A': {
			uint64_t bits = next_arg(a, true);
			double d;
			memcpy(&d, &bits, sizeof(d));
			spec[sn] = conv, spec[sn + 1] = 0;
			n = snprintf(tmp, sizeof(tmp), spec, d);
			break;
		}
		case 's':
		case 'S': {
			uint64_t sva = next_arg(a, false);
			char *s = malloc(MAX_STR);
			if (!s)
				break;
			bool ok = sva && ((wide_str || conv == 'S') ? gwstr(e, sva, s, MAX_STR)
								    : gstr(e, sva, s, MAX_STR));
			if (!ok)
				snprintf(s, MAX_STR, "(null)");
			memcpy(spec + sn, "s", 2);
			int k = snprintf(NULL, 0, spec, s);
			if (k > 0) {
				char *o = malloc((size_t)k + 1);
				if (o) {
					snprintf(o, (size_t)k + 1, spec, s);
					sb_add(out, o, (size_t)k);
					free(o);
				}
			}
			free(s);
			n = 0;
			break;
		}
		case 'n': next_arg(a, false); break;
		case '%': tmp[0] = '%', n = 1; break;
		default: sb_add(out, start, (size_t)(p - start)); break;
		}
		if (n > 0)
			sb_add(out, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
	}
}

static size_t file_size(const mamori_emu *e)
{
	return e->x64 ? 48 : 32;
}

/* Whether FILE* `f` is msvcrt's stdout or stderr. */
static bool is_console(mamori_emu *e, uint64_t f)
{
	return e->iob_va && (f == e->iob_va + file_size(e) || f == e->iob_va + 2 * file_size(e));
}

static uint64_t do_fprintf(mamori_emu *e, uint64_t stream, uint64_t fmt, argsrc *a)
{
	strbuf b = { 0 };
	format_guest(e, &b, fmt, a);
	if (is_console(e, stream))
		emu_output(e, b.p, b.n);
	uint64_t n = b.n;
	free(b.p);
	return n;
}

static uint64_t do_sprintf(mamori_emu *e, uint64_t dst, uint64_t cap, uint64_t fmt, argsrc *a)
{
	strbuf b = { 0 };
	format_guest(e, &b, fmt, a);
	uint64_t n = b.n;
	if (cap) {
		uint64_t k = n < cap - 1 ? n : cap - 1;
		char z = 0;
		if ((k && !emu_gwrite(e, dst, b.p, k)) || !emu_gwrite(e, dst + k, &z, 1))
			n = 0;
	}
	free(b.p);
	return n;
}

/* ============================================================== kernel32 */

static uint64_t module_handle(mamori_emu *e, const char *name, bool load)
{
	char lower[64];
	size_t i = 0;
	for (; name[i] && i < sizeof(lower) - 1; i++)
		lower[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
	lower[i] = 0;
	const char *base = lower;
	for (const char *p = lower; *p; p++)
		if (*p == '\\' || *p == '/')
			base = p + 1;
	char img[64];
	for (i = 0; e->image_name[i] && i < sizeof(img) - 1; i++)
		img[i] = (char)(e->image_name[i] >= 'A' && e->image_name[i] <= 'Z' ? e->image_name[i] + 32
										   : e->image_name[i]);
	img[i] = 0;
	if (e->image_base && !strcmp(base, img))
		return e->image_base;
	module *m = NULL;
	if (winenv_module(e, name, load ? WINENV_ANY : WINENV_LOADED, &m) != MAMORI_OK || !m) {
		set_err(e, 126); /* ERROR_MOD_NOT_FOUND */
		return 0;
	}
	return m->base;
}

static uint64_t k_GetModuleHandleA(mamori_emu *e)
{
	char s[MAX_STR];
	if (!A(0))
		return e->image_base;
	return gstr(e, A(0), s, sizeof(s)) ? module_handle(e, s, false) : 0;
}

static uint64_t k_GetModuleHandleW(mamori_emu *e)
{
	char s[MAX_STR];
	if (!A(0))
		return e->image_base;
	return gwstr(e, A(0), s, sizeof(s)) ? module_handle(e, s, false) : 0;
}

static uint64_t get_module_handle_ex(mamori_emu *e, bool wide)
{
	uint64_t flags = A(0), name = A(1), out = A(2), h = 0;
	char s[MAX_STR];
	if (flags & 4) { /* GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS */
		module *m = winenv_module_at(e, name);
		h = m ? m->base : (name - e->image_base < e->image_size ? e->image_base : 0);
	} else if (!name) {
		h = e->image_base;
	} else if (wide ? gwstr(e, name, s, sizeof(s)) : gstr(e, name, s, sizeof(s))) {
		h = module_handle(e, s, false);
	}
	if (out)
		emu_gwriteptr(e, out, h);
	return h != 0;
}

static uint64_t k_GetModuleHandleExA(mamori_emu *e)
{
	return get_module_handle_ex(e, false);
}

static uint64_t k_GetModuleHandleExW(mamori_emu *e)
{
	return get_module_handle_ex(e, true);
}

static uint64_t k_LoadLibraryA(mamori_emu *e)
{
	char s[MAX_STR];
	return gstr(e, A(0), s, sizeof(s)) ? module_handle(e, s, true) : 0;
}

static uint64_t k_LoadLibraryW(mamori_emu *e)
{
	char s[MAX_STR];
	return gwstr(e, A(0), s, sizeof(s)) ? module_handle(e, s, true) : 0;
}

static uint64_t k_ret1(mamori_emu *e)
{
	(void)e;
	return 1;
}

static uint64_t k_ret0(mamori_emu *e)
{
	(void)e;
	return 0;
}

static uint64_t proc_address(mamori_emu *e, uint64_t h, const char *name, uint16_t ord)
{
	module *m = winenv_module_by_base(e, h);
	uint64_t va = m ? winenv_export(e, m, name, ord, true) : 0;
	if (!va)
		set_err(e, 127); /* ERROR_PROC_NOT_FOUND */
	return va;
}

static uint64_t k_GetProcAddress(mamori_emu *e)
{
	uint64_t h = A(0), n = A(1);
	if (n < 0x10000)
		return proc_address(e, h, NULL, (uint16_t)n);
	char s[512];
	if (!gstr(e, n, s, sizeof(s)) || !s[0]) {
		set_err(e, 127);
		return 0;
	}
	return proc_address(e, h, s, 0);
}

static uint64_t module_file_name(mamori_emu *e, bool wide)
{
	uint64_t h = A(0), buf = A(1), cap = A(2) & 0xffffffffu;
	char path[300];
	module *m = h ? winenv_module_by_base(e, h) : NULL;
	if (!h || h == e->image_base)
		snprintf(path, sizeof(path), "C:\\Users\\user\\Desktop\\%s", e->image_name);
	else if (m)
		snprintf(path, sizeof(path), "C:\\Windows\\System32\\%s", m->name);
	else {
		set_err(e, 126);
		return 0;
	}
	size_t n = strlen(path);
	if (cap == 0)
		return 0;
	size_t k = n < cap - 1 ? n : (size_t)cap - 1;
	if (wide) {
		if (!put_wstr(e, buf, path, k) || !put_wstr(e, buf + 2 * k, "", 1))
			return 0;
	} else {
		char z = 0;
		if (!emu_gwrite(e, buf, path, k) || !emu_gwrite(e, buf + k, &z, 1))
			return 0;
	}
	return k;
}

static uint64_t k_GetModuleFileNameA(mamori_emu *e)
{
	return module_file_name(e, false);
}

static uint64_t k_GetModuleFileNameW(mamori_emu *e)
{
	return module_file_name(e, true);
}

/* ---------------------------------------------------------------- memory */

static uint64_t virtual_alloc(mamori_emu *e, uint64_t addr, uint64_t size, uint32_t prot)
{
	uint64_t va = winenv_alloc_region(e, addr, size, MAMORI_EMU_REGION_ALLOC, prot);
	if (!va)
		set_err(e, addr ? 487 : 8);
	return va;
}

static uint64_t k_VirtualAlloc(mamori_emu *e)
{
	return virtual_alloc(e, A(0), A(1), (uint32_t)A(3));
}

static uint64_t k_VirtualAllocEx(mamori_emu *e)
{
	return virtual_alloc(e, A(1), A(2), (uint32_t)A(4));
}

static uint64_t virtual_free(mamori_emu *e, uint64_t addr, uint32_t type)
{
	region *r = emu_find_region(e, addr);
	if (!r || r->kind != MAMORI_EMU_REGION_ALLOC) {
		set_err(e, 487);
		return 0;
	}
	if ((type & 0x8000) && r->base == addr)
		emu_unmap(e, r);
	return 1;
}

static uint64_t k_VirtualFree(mamori_emu *e)
{
	return virtual_free(e, A(0), (uint32_t)A(2));
}

static uint64_t k_VirtualFreeEx(mamori_emu *e)
{
	return virtual_free(e, A(1), (uint32_t)A(3));
}

static uint64_t virtual_protect(mamori_emu *e, uint64_t addr, uint32_t prot, uint64_t old)
{
	region *r = emu_find_region(e, addr);
	if (!r) {
		set_err(e, 487);
		return 0;
	}
	if (old && !emu_gwrite32(e, old, r->prot)) {
		set_err(e, 998);
		return 0;
	}
	r->prot = prot;
	return 1;
}

static uint64_t k_VirtualProtect(mamori_emu *e)
{
	return virtual_protect(e, A(0), (uint32_t)A(2), A(3));
}

static uint64_t k_VirtualProtectEx(mamori_emu *e)
{
	return virtual_protect(e, A(1), (uint32_t)A(3), A(4));
}

static uint64_t virtual_query(mamori_emu *e, uint64_t addr, uint64_t mbi, uint64_t len)
{
	size_t need = e->x64 ? 48 : 28;
	if (len < need) {
		set_err(e, 24);
		return 0;
	}
	uint8_t b[48] = { 0 };
	uint64_t page = addr & ~(EMU_PAGE - 1);
	region *r = emu_find_region(e, addr);
	uint64_t alloc_base = 0, size, state, prot = 0, aprot = 0, type = 0;
	if (r) {
		alloc_base = r->base;
		size = r->base + r->size - page;
		state = 0x1000;
		prot = aprot = r->prot;
		type = r->kind == MAMORI_EMU_REGION_IMAGE || r->kind == MAMORI_EMU_REGION_MODULE ? 0x1000000
												 : 0x20000;
	} else {
		uint64_t next = e->x64 ? 0x7fffffff0000ull : 0x7fff0000ull;
		for (size_t i = 0; i < e->n_regions; i++)
			if (e->regions[i]->base > page && e->regions[i]->base < next)
				next = e->regions[i]->base;
		if (page >= next) {
			set_err(e, 87);
			return 0;
		}
		size = next - page;
		state = 0x10000;
		prot = 1;
	}
	size_t w = psz(e);
	for (size_t k = 0; k < w; k++) {
		b[k] = (uint8_t)(page >> (8 * k));
		b[w + k] = (uint8_t)(alloc_base >> (8 * k));
	}
	size_t o = 2 * w;
	for (int k = 0; k < 4; k++)
		b[o + k] = (uint8_t)(aprot >> (8 * k));
	o = e->x64 ? 0x18 : 12;
	for (size_t k = 0; k < w; k++)
		b[o + k] = (uint8_t)(size >> (8 * k));
	o += w;
	for (int k = 0; k < 4; k++) {
		b[o + k] = (uint8_t)(state >> (8 * k));
		b[o + 4 + k] = (uint8_t)(prot >> (8 * k));
		b[o + 8 + k] = (uint8_t)(type >> (8 * k));
	}
	return emu_gwrite(e, mbi, b, need) ? need : 0;
}

static uint64_t k_VirtualQuery(mamori_emu *e)
{
	return virtual_query(e, A(0), A(1), A(2));
}

static uint64_t k_VirtualQueryEx(mamori_emu *e)
{
	return virtual_query(e, A(1), A(2), A(3));
}

static uint64_t k_HeapCreate(mamori_emu *e)
{
	return e->process_heap;
}

static uint64_t k_GetProcessHeap(mamori_emu *e)
{
	return e->process_heap;
}

static uint64_t k_HeapAlloc(mamori_emu *e)
{
	return heap_alloc(e, A(2), A(1) & 8);
}

static uint64_t k_HeapReAlloc(mamori_emu *e)
{
	return heap_realloc(e, A(2), A(3), A(1) & 8);
}

static uint64_t k_HeapFree(mamori_emu *e)
{
	heap_release(e, A(2));
	return 1;
}

static uint64_t k_HeapSize(mamori_emu *e)
{
	uint64_t s = heap_size(e, A(2));
	return s ? s : neg1(e);
}

static uint64_t k_LocalAlloc(mamori_emu *e)
{
	return heap_alloc(e, A(1), A(0) & 0x40);
}

static uint64_t k_LocalFree(mamori_emu *e)
{
	heap_release(e, A(0));
	return 0;
}

static uint64_t k_RtlMoveMemory(mamori_emu *e)
{
	gcopy(e, A(0), A(1), A(2));
	return A(0);
}

static uint64_t k_RtlZeroMemory(mamori_emu *e)
{
	gfill(e, A(0), 0, A(1));
	return A(0);
}

static uint64_t k_RtlFillMemory(mamori_emu *e)
{
	gfill(e, A(0), (uint8_t)A(2), A(1));
	return A(0);
}

/* ------------------------------------------------------------------- TLS */

static uint64_t tls_slot_va(const mamori_emu *e, uint64_t i)
{
	return TEB_VA + (e->x64 ? 0x1480 : 0xe10) + i * psz(e);
}

static uint64_t k_TlsAlloc(mamori_emu *e)
{
	for (uint64_t i = 0; i < MAX_TLS_SLOTS; i++) {
		if (!e->tls_used[i]) {
			e->tls_used[i] = true;
			emu_gwriteptr(e, tls_slot_va(e, i), 0);
			return i;
		}
	}
	set_err(e, 8);
	return 0xffffffffu;
}

static uint64_t k_TlsGetValue(mamori_emu *e)
{
	uint64_t i = A(0) & 0xffffffffu, v = 0;
	if (i >= MAX_TLS_SLOTS) {
		set_err(e, 87);
		return 0;
	}
	emu_getptr(e, tls_slot_va(e, i), &v);
	set_err(e, 0);
	return v;
}

static uint64_t k_TlsSetValue(mamori_emu *e)
{
	uint64_t i = A(0) & 0xffffffffu;
	if (i >= MAX_TLS_SLOTS) {
		set_err(e, 87);
		return 0;
	}
	return emu_gwriteptr(e, tls_slot_va(e, i), A(1));
}

static uint64_t k_TlsFree(mamori_emu *e)
{
	uint64_t i = A(0) & 0xffffffffu;
	if (i < MAX_TLS_SLOTS)
		e->tls_used[i] = false;
	return i < MAX_TLS_SLOTS;
}

/* ------------------------------------------------------------------ time */

static uint64_t tick_ms(const mamori_emu *e)
{
	return BOOT_MS + emu_clock_ns(e) / 1000000;
}

static uint64_t k_GetTickCount(mamori_emu *e)
{
	return tick_ms(e) & 0xffffffffu;
}

static uint64_t k_GetTickCount64(mamori_emu *e)
{
	return tick_ms(e);
}

static bool put64(mamori_emu *e, uint64_t va, uint64_t v)
{
	uint8_t b[8];
	for (int k = 0; k < 8; k++)
		b[k] = (uint8_t)(v >> (8 * k));
	return emu_gwrite(e, va, b, 8);
}

static uint64_t k_QueryPerformanceCounter(mamori_emu *e)
{
	return put64(e, A(0), BOOT_MS * 10000 + emu_clock_ns(e) / 100);
}

static uint64_t k_QueryPerformanceFrequency(mamori_emu *e)
{
	return put64(e, A(0), 10000000);
}

static uint64_t filetime_now(const mamori_emu *e)
{
	return FILETIME_2024 + emu_clock_ns(e) / 100;
}

static uint64_t k_GetSystemTimeAsFileTime(mamori_emu *e)
{
	put64(e, A(0), filetime_now(e));
	return 0;
}

static uint64_t k_GetSystemTime(mamori_emu *e)
{
	uint64_t s = emu_clock_ns(e) / 1000000000ull;
	uint16_t st[8] = {
		2024, 1, 1, 1, (uint16_t)(s / 3600 % 24), (uint16_t)(s / 60 % 60), (uint16_t)(s % 60), 0
	};
	uint8_t b[16];
	for (size_t k = 0; k < 8; k++)
		b[2 * k] = (uint8_t)st[k], b[2 * k + 1] = (uint8_t)(st[k] >> 8);
	emu_gwrite(e, A(0), b, 16);
	return 0;
}

static void sleep_ms(mamori_emu *e, uint64_t ms)
{
	if (ms == 0xffffffffu)
		ms = 3600000; /* INFINITE: an hour of virtual time */
	e->sleep_ns += ms * 1000000ull;
}

static uint64_t k_Sleep(mamori_emu *e)
{
	sleep_ms(e, A(0) & 0xffffffffu);
	return 0;
}

/* --------------------------------------------------------------- process */

static uint64_t exit_with(mamori_emu *e, uint64_t code)
{
	e->exit_code = (uint32_t)code;
	emu_stop(e, MAMORI_EMU_EXIT, NULL);
	return 0;
}

static uint64_t k_ExitProcess(mamori_emu *e)
{
	return exit_with(e, A(0));
}

static uint64_t k_TerminateProcess(mamori_emu *e)
{
	uint64_t h = A(0);
	if (h == neg1(e) || h == 0)
		return exit_with(e, A(1));
	return 1;
}

static uint64_t k_GetLastError(mamori_emu *e)
{
	uint32_t v = 0;
	emu_get32(e, TEB_VA + (e->x64 ? 0x68 : 0x34), &v);
	return v;
}

static uint64_t k_SetLastError(mamori_emu *e)
{
	set_err(e, (uint32_t)A(0));
	return 0;
}

static uint64_t k_GetCommandLineA(mamori_emu *e)
{
	return e->cmdline_a;
}

static uint64_t k_GetCommandLineW(mamori_emu *e)
{
	return e->cmdline_w;
}

static uint64_t k_GetStartupInfo(mamori_emu *e)
{
	uint8_t b[104] = { 0 };
	size_t n = e->x64 ? 104 : 68;
	b[0] = (uint8_t)n;
	emu_gwrite(e, A(0), b, n);
	return 0;
}

static uint64_t k_SetUnhandledExceptionFilter(mamori_emu *e)
{
	uint64_t old = e->unhandled_filter;
	e->unhandled_filter = A(0);
	return old;
}

static uint64_t add_veh(mamori_emu *e, uint64_t first, uint64_t fn)
{
	if (!fn || e->n_veh >= MAX_VEH)
		return 0;
	if (first) {
		memmove(e->veh + 1, e->veh, e->n_veh * sizeof(*e->veh));
		e->veh[0] = fn;
	} else {
		e->veh[e->n_veh] = fn;
	}
	e->n_veh++;
	return fn;
}

static uint64_t k_AddVectoredExceptionHandler(mamori_emu *e)
{
	return add_veh(e, A(0), A(1));
}

static uint64_t k_RemoveVectoredExceptionHandler(mamori_emu *e)
{
	for (uint32_t i = 0; i < e->n_veh; i++) {
		if (e->veh[i] == A(0)) {
			memmove(e->veh + i, e->veh + i + 1, (e->n_veh - i - 1) * sizeof(*e->veh));
			e->n_veh--;
			return 1;
		}
	}
	return 0;
}

static uint64_t k_RaiseException(mamori_emu *e)
{
	emu_raise(e, (uint32_t)A(0), 0, "raised exception");
	return 0;
}

static uint64_t k_GetCurrentProcess(mamori_emu *e)
{
	return neg1(e);
}

static uint64_t k_GetCurrentThread(mamori_emu *e)
{
	return neg1(e) - 1;
}

static uint64_t k_GetCurrentProcessId(mamori_emu *e)
{
	(void)e;
	return 0x1000;
}

static uint64_t k_GetCurrentThreadId(mamori_emu *e)
{
	(void)e;
	return 0x1004;
}

static uint64_t k_CheckRemoteDebuggerPresent(mamori_emu *e)
{
	return emu_gwrite32(e, A(1), 0);
}

/* --------------------------------------------------------------- console */

static uint64_t k_GetStdHandle(mamori_emu *e)
{
	switch ((int32_t)A(0)) {
	case -10: return 0x10;
	case -11: return STD_OUT_H;
	case -12: return STD_ERR_H;
	}
	return neg1(e);
}

static void console_write(mamori_emu *e, uint64_t h, uint64_t buf, uint64_t n, bool wide)
{
	if (h != STD_OUT_H && h != STD_ERR_H)
		return;
	if (n > MAX_OUTPUT)
		n = MAX_OUTPUT;
	uint8_t tmp[4096];
	for (uint64_t done = 0; done < n;) {
		uint64_t k = n - done < sizeof(tmp) / 2 ? n - done : sizeof(tmp) / 2;
		if (!emu_get(e, buf + (wide ? 2 : 1) * done, tmp, (wide ? 2 : 1) * k))
			return;
		if (wide)
			for (uint64_t i = 0; i < k; i++)
				tmp[i] = tmp[2 * i + 1] ? '?' : tmp[2 * i];
		emu_output(e, tmp, k);
		done += k;
	}
}

static uint64_t write_common(mamori_emu *e, bool wide)
{
	uint64_t h = A(0), buf = A(1), n = A(2) & 0xffffffffu, out = A(3);
	console_write(e, h, buf, n, wide);
	if (out)
		emu_gwrite32(e, out, (uint32_t)n);
	return 1;
}

static uint64_t k_WriteFile(mamori_emu *e)
{
	return write_common(e, false);
}

static uint64_t k_WriteConsoleW(mamori_emu *e)
{
	return write_common(e, true);
}

static uint64_t k_GetConsoleMode(mamori_emu *e)
{
	return emu_gwrite32(e, A(1), 3);
}

static uint64_t k_GetFileType(mamori_emu *e)
{
	(void)e;
	return 2; /* FILE_TYPE_CHAR */
}

static uint64_t k_GetVersion(mamori_emu *e)
{
	(void)e;
	return 0x23f00206u; /* 6.2 build 9200: what an unmanifested program sees */
}

static uint64_t k_GetVersionEx(mamori_emu *e)
{
	uint8_t b[20] = { 0 };
	uint32_t v[4] = { 6, 2, 9200, 2 };
	for (int i = 0; i < 4; i++)
		for (int k = 0; k < 4; k++)
			b[4 + 4 * i + k] = (uint8_t)(v[i] >> (8 * k));
	return emu_gwrite(e, A(0) + 4, b + 4, 16);
}

static uint64_t k_GetSystemInfo(mamori_emu *e)
{
	uint8_t b[48] = { 0 };
	size_t w = psz(e);
	b[0] = e->x64 ? 9 : 0;
	b[4] = 0x00, b[5] = 0x10; /* dwPageSize */
	b[8 + 2] = 1;		  /* lpMinimumApplicationAddress 0x10000 */
	uint64_t maxa = e->x64 ? 0x7ffffffeffffull : 0x7ffeffffull;
	for (size_t k = 0; k < w; k++)
		b[8 + w + k] = (uint8_t)(maxa >> (8 * k));
	size_t o = 8 + 2 * w;
	b[o] = 0xf; /* dwActiveProcessorMask */
	o += w;
	b[o] = 4; /* dwNumberOfProcessors */
	uint32_t type = e->x64 ? 8664 : 586;
	b[o + 4] = (uint8_t)type, b[o + 5] = (uint8_t)(type >> 8);
	b[o + 10] = 1; /* dwAllocationGranularity 0x10000 */
	b[o + 12] = 6; /* wProcessorLevel */
	emu_gwrite(e, A(0), b, e->x64 ? 48 : 36);
	return 0;
}

/* ------------------------------------------------------------- strings */

/* MultiByteToWideChar and WideCharToMultiByte share their arguments from
 * the third on (source, its length or -1, destination, its capacity):
 * the text goes through a host buffer in the guest's code page (ASCII
 * here), and a zero capacity asks for the length. */
static uint64_t convert_text(mamori_emu *e, bool to_wide)
{
	uint64_t src = A(2), dst = A(4);
	int64_t n = (int32_t)A(3), cap = (int32_t)A(5);
	char s[MAX_STR];
	if (!(to_wide ? gstr(e, src, s, sizeof(s)) : gwstr(e, src, s, sizeof(s))))
		return 0;
	size_t len = n < 0 ? strlen(s) + 1 : (size_t)n < sizeof(s) ? (size_t)n : sizeof(s);
	if (cap == 0)
		return len;
	if ((int64_t)len > cap) {
		set_err(e, 122);
		return 0;
	}
	bool ok = to_wide ? put_wstr(e, dst, s, len) : emu_gwrite(e, dst, s, len);
	return ok ? len : 0;
}

static uint64_t k_MultiByteToWideChar(mamori_emu *e)
{
	return convert_text(e, true);
}

static uint64_t k_WideCharToMultiByte(mamori_emu *e)
{
	return convert_text(e, false);
}

static uint64_t k_GetACP(mamori_emu *e)
{
	(void)e;
	return 1252;
}

static uint64_t k_lstrlenA(mamori_emu *e)
{
	char s[MAX_STR];
	return A(0) && gstr(e, A(0), s, sizeof(s)) ? strlen(s) : 0;
}

static uint64_t k_lstrlenW(mamori_emu *e)
{
	char s[MAX_STR];
	return A(0) && gwstr(e, A(0), s, sizeof(s)) ? strlen(s) : 0;
}

static uint64_t k_GetEnvironmentVariable(mamori_emu *e)
{
	set_err(e, 203); /* ERROR_ENVVAR_NOT_FOUND */
	return 0;
}

static uint64_t k_IsProcessorFeaturePresent(mamori_emu *e)
{
	uint64_t f = A(0);
	return f == 6 || f == 10 || f == 13 || f == 17 || f == 23; /* MMX... SSE2, SSE3, NX, FASTFAIL */
}

static uint64_t k_GetSystemDirectoryA(mamori_emu *e)
{
	static const char d[] = "C:\\Windows\\system32";
	if ((A(1) & 0xffffffffu) < sizeof(d))
		return sizeof(d);
	return emu_gwrite(e, A(0), d, sizeof(d)) ? sizeof(d) - 1 : 0;
}

static uint64_t k_CreateFile(mamori_emu *e)
{
	set_err(e, 2);
	return neg1(e);
}

static uint64_t k_GetFileAttributes(mamori_emu *e)
{
	set_err(e, 2);
	return 0xffffffffu;
}

static uint64_t k_lstrcpyA(mamori_emu *e);
static uint64_t k_lstrcatA(mamori_emu *e);
static uint64_t k_lstrcmpA(mamori_emu *e);
static uint64_t k_lstrcmpiA(mamori_emu *e);

static uint64_t write_astr(mamori_emu *e, uint64_t buf, uint64_t cap, const char *s)
{
	size_t n = strlen(s);
	if (cap <= n)
		return n + 1; /* the size needed */
	return emu_gwrite(e, buf, s, n + 1) ? n : 0;
}

static uint64_t k_GetComputerNameA(mamori_emu *e)
{
	uint32_t cap = 0;
	if (!emu_get32(e, A(1), &cap) || cap < 16) {
		emu_gwrite32(e, A(1), 16);
		set_err(e, 111); /* ERROR_BUFFER_OVERFLOW */
		return 0;
	}
	emu_gwrite32(e, A(1), 15);
	return emu_gwrite(e, A(0), "DESKTOP-4C1F8A2", 16);
}

static uint64_t k_GetCurrentDirectoryA(mamori_emu *e)
{
	return write_astr(e, A(1), A(0) & 0xffffffffu, "C:\\Users\\user\\Desktop");
}

static uint64_t k_GetTempPathA(mamori_emu *e)
{
	return write_astr(e, A(1), A(0) & 0xffffffffu, "C:\\Users\\user\\AppData\\Local\\Temp\\");
}

/* MEMORYSTATUSEX: 8 GiB of RAM, half of it free (small sandboxes are a
 * classic anti-emulation tell). */
static uint64_t k_GlobalMemoryStatusEx(mamori_emu *e)
{
	uint8_t b[64] = { 0 };
	uint64_t total = 8ull << 30,
		 v[6] = { total, total / 2, total * 2, total, 128ull << 40, 127ull << 40 };
	b[0] = 64;
	b[4] = 50;
	for (size_t i = 0; i < 6; i++)
		for (size_t k = 0; k < 8; k++)
			b[8 + 8 * i + k] = (uint8_t)(v[i] >> (8 * k));
	return emu_gwrite(e, A(0), b, 64);
}

static uint64_t k_GetUserDefaultLCID(mamori_emu *e)
{
	(void)e;
	return 0x409;
}

static uint64_t k_invalid_handle(mamori_emu *e)
{
	set_err(e, 6); /* ERROR_INVALID_HANDLE */
	return neg1(e);
}

static uint64_t k_not_found(mamori_emu *e)
{
	set_err(e, 1813); /* ERROR_RESOURCE_TYPE_NOT_FOUND */
	return 0;
}

static uint64_t k_CreateMutex(mamori_emu *e)
{
	(void)e;
	return 0x100;
}

/* ================================================================= ntdll */

static uint64_t n_NtAllocateVirtualMemory(mamori_emu *e)
{
	uint64_t pbase = A(1), psize = A(3), base = 0, size = 0;
	if (!emu_getptr(e, pbase, &base) || !emu_getptr(e, psize, &size))
		return 0xc0000005u;
	uint64_t va = winenv_alloc_region(e, base, size, MAMORI_EMU_REGION_ALLOC, (uint32_t)A(5));
	if (!va)
		return 0xc0000017u; /* STATUS_NO_MEMORY */
	emu_gwriteptr(e, pbase, va);
	emu_gwriteptr(e, psize, (size + EMU_PAGE - 1) & ~(EMU_PAGE - 1));
	return 0;
}

static uint64_t n_NtProtectVirtualMemory(mamori_emu *e)
{
	uint64_t base = 0;
	if (!emu_getptr(e, A(1), &base))
		return 0xc0000005u;
	return virtual_protect(e, base, (uint32_t)A(3), A(4)) ? 0 : 0xc0000045u;
}

static uint64_t n_NtFreeVirtualMemory(mamori_emu *e)
{
	uint64_t base = 0;
	if (!emu_getptr(e, A(1), &base))
		return 0xc0000005u;
	return virtual_free(e, base, (uint32_t)A(3)) ? 0 : 0xc0000045u;
}

static uint64_t n_NtQueryInformationProcess(mamori_emu *e)
{
	uint64_t cls = A(1), buf = A(2);
	switch (cls) {
	case 7: /* ProcessDebugPort */ return emu_gwriteptr(e, buf, 0) ? 0 : 0xc0000005u;
	case 0x1e: /* ProcessDebugObjectHandle */
		emu_gwriteptr(e, buf, 0);
		return 0xc0000353u; /* STATUS_PORT_NOT_SET */
	case 0x1f:		    /* ProcessDebugFlags: 1 means no debugger */
		return emu_gwrite32(e, buf, 1) ? 0 : 0xc0000005u;
	case 0: /* ProcessBasicInformation: PebBaseAddress */
		return emu_gwriteptr(e, buf + psz(e), PEB_VA) ? 0 : 0xc0000005u;
	}
	return 0xc0000003u;
}

static uint64_t n_NtDelayExecution(mamori_emu *e)
{
	uint8_t b[8];
	if (emu_get(e, A(1), b, 8)) {
		int64_t v = 0;
		for (int k = 0; k < 8; k++)
			v |= (int64_t)((uint64_t)b[k] << (8 * k));
		if (v < 0 && v > -(int64_t)(3600ll * 10000000))
			e->sleep_ns += (uint64_t)(-v) * 100;
	}
	return 0;
}

static uint64_t n_NtTerminateProcess(mamori_emu *e)
{
	uint64_t h = A(0);
	if (h == 0 || h == neg1(e))
		return exit_with(e, A(1));
	return 0;
}

static uint64_t n_RtlGetVersion(mamori_emu *e)
{
	uint8_t b[16] = { 0 };
	uint32_t v[4] = { 10, 0, 19045, 2 };
	for (int i = 0; i < 4; i++)
		for (int k = 0; k < 4; k++)
			b[4 * i + k] = (uint8_t)(v[i] >> (8 * k));
	return emu_gwrite(e, A(0) + 4, b, 16) ? 0 : 0xc0000005u;
}

static bool read_counted(mamori_emu *e, uint64_t us, char *out, size_t cap, bool wide)
{
	uint8_t h[2];
	uint64_t buf = 0;
	if (!emu_get(e, us, h, 2) || !emu_getptr(e, us + psz(e), &buf))
		return false;
	size_t len = (size_t)(h[0] | h[1] << 8) / (wide ? 2 : 1);
	if (len >= cap)
		len = cap - 1;
	for (size_t i = 0; i < len; i++) {
		uint8_t c[2] = { 0, 0 };
		if (!emu_get(e, buf + (wide ? 2 : 1) * i, c, wide ? 2 : 1))
			return false;
		out[i] = wide && c[1] ? '?' : (char)c[0];
	}
	out[len] = 0;
	return true;
}

static uint64_t n_LdrLoadDll(mamori_emu *e)
{
	char s[512];
	if (!read_counted(e, A(2), s, sizeof(s), true))
		return 0xc0000005u;
	uint64_t h = module_handle(e, s, true);
	if (!h)
		return 0xc0000135u;
	emu_gwriteptr(e, A(3), h);
	return 0;
}

static uint64_t n_LdrGetProcedureAddress(mamori_emu *e)
{
	char s[512];
	uint64_t va;
	if (A(1)) {
		if (!read_counted(e, A(1), s, sizeof(s), false))
			return 0xc0000005u;
		va = proc_address(e, A(0), s, 0);
	} else {
		va = proc_address(e, A(0), NULL, (uint16_t)A(2));
	}
	if (!va)
		return 0xc0000139u; /* STATUS_ENTRYPOINT_NOT_FOUND */
	emu_gwriteptr(e, A(3), va);
	return 0;
}

static uint64_t n_RtlAllocateHeap(mamori_emu *e)
{
	return heap_alloc(e, A(2), A(1) & 8);
}

static uint64_t n_RtlAddVectoredExceptionHandler(mamori_emu *e)
{
	return add_veh(e, A(0), A(1));
}

static uint64_t n_status0(mamori_emu *e)
{
	(void)e;
	return 0;
}

/* ================================================================ msvcrt */

static uint64_t c_exit(mamori_emu *e)
{
	return exit_with(e, A(0));
}

static uint64_t c_abort(mamori_emu *e)
{
	return exit_with(e, 3);
}

static uint64_t c_amsg_exit(mamori_emu *e)
{
	return exit_with(e, 255);
}

static uint64_t c_onexit(mamori_emu *e)
{
	return A(0);
}

static uint64_t c_initterm(mamori_emu *e)
{
	e->api_jump = e->helper_initterm;
	return 0;
}

static uint64_t c_iob_func(mamori_emu *e)
{
	return e->iob_va;
}

static uint64_t c_acrt_iob_func(mamori_emu *e)
{
	return e->iob_va + (A(0) & 0xffffffffu) * file_size(e);
}

static uint64_t c_errno(mamori_emu *e)
{
	return e->crt_va;
}

static uint64_t c_mb_cur_max(mamori_emu *e)
{
	(void)e;
	return 1;
}

static uint64_t c_controlfp(mamori_emu *e)
{
	(void)e;
	return 0x9001f;
}

/* argv (narrow or wide) from the command line, Windows rules simplified:
 * whitespace separates, double quotes group. */
static int build_argv(mamori_emu *e)
{
	if (e->argv_va)
		return MAMORI_OK;
	const char *cmd = e->lim.cmdline ? e->lim.cmdline : "sample.exe";
	char *work = strdup(cmd);
	if (!work)
		return MAMORI_ENOMEM;
	char *args[256];
	int n = 0;
	char *w = work;
	for (const char *p = cmd; *p && n < 255;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		args[n++] = w;
		bool q = false;
		while (*p && (q || (*p != ' ' && *p != '\t'))) {
			if (*p == '"')
				q = !q;
			else
				*w++ = *p;
			p++;
		}
		*w++ = 0;
	}
	size_t ps = psz(e);
	uint64_t argv = env_alloc(e, ps * (n + 1)), wargv = env_alloc(e, ps * (n + 1));
	int rc = argv && wargv ? MAMORI_OK : MAMORI_ELIMIT;
	for (int i = 0; rc == MAMORI_OK && i < n; i++) {
		size_t len = strlen(args[i]);
		uint64_t s = env_alloc(e, len + 1), ws = env_alloc(e, 2 * len + 2);
		if (!s || !ws) {
			rc = MAMORI_ELIMIT;
			break;
		}
		emu_put(e, s, args[i], len + 1);
		put_wstr(e, ws, args[i], len + 1);
		emu_putptr(e, argv + ps * (uint64_t)i, s);
		emu_putptr(e, wargv + ps * (uint64_t)i, ws);
	}
	free(work);
	if (rc)
		return rc;
	e->argc = n;
	e->argv_va = argv;
	emu_gwrite32(e, e->crt_va + 8, (uint32_t)n);
	emu_gwriteptr(e, e->crt_va + 16, argv);
	emu_gwriteptr(e, e->crt_va + 32, wargv);
	return MAMORI_OK;
}

static uint64_t getmainargs(mamori_emu *e, bool wide)
{
	if (build_argv(e))
		return neg1(e);
	uint64_t argv = 0, envp = 0;
	emu_getptr(e, e->crt_va + (wide ? 32 : 16), &argv);
	emu_getptr(e, e->crt_va + (wide ? 40 : 24), &envp);
	emu_gwrite32(e, A(0), (uint32_t)e->argc);
	emu_gwriteptr(e, A(1), argv);
	emu_gwriteptr(e, A(2), envp);
	return 0;
}

static uint64_t c_getmainargs(mamori_emu *e)
{
	return getmainargs(e, false);
}

static uint64_t c_wgetmainargs(mamori_emu *e)
{
	return getmainargs(e, true);
}

static uint64_t c_p_argc(mamori_emu *e)
{
	build_argv(e);
	return e->crt_va + 8;
}

static uint64_t c_p_argv(mamori_emu *e)
{
	build_argv(e);
	return e->crt_va + 16;
}

static uint64_t data_export(mamori_emu *e, const char *name)
{
	for (size_t i = 0; i < e->n_apis; i++)
		if (e->apis[i].is_data && e->apis[i].name && !strcmp(e->apis[i].name, name))
			return e->apis[i].va;
	return 0;
}

static uint64_t c_p_acmdln(mamori_emu *e)
{
	return data_export(e, "_acmdln");
}

static uint64_t c_p_fmode(mamori_emu *e)
{
	return data_export(e, "_fmode");
}

static uint64_t c_p_commode(mamori_emu *e)
{
	return data_export(e, "_commode");
}

static uint64_t c_localeconv(mamori_emu *e)
{
	return e->lconv_va;
}

static uint64_t c_strerror(mamori_emu *e)
{
	return e->strerror_va;
}

static uint64_t c_setlocale(mamori_emu *e)
{
	return e->locale_va;
}

static uint64_t c_malloc(mamori_emu *e)
{
	return heap_alloc(e, A(0), false);
}

static uint64_t c_calloc(mamori_emu *e)
{
	uint64_t n = A(0), s = A(1);
	if (s && n > e->lim.max_memory / s)
		return 0;
	return heap_alloc(e, n * s, true);
}

static uint64_t c_realloc(mamori_emu *e)
{
	return heap_realloc(e, A(0), A(1), false);
}

static uint64_t c_free(mamori_emu *e)
{
	heap_release(e, A(0));
	return 0;
}

static uint64_t c_memcpy(mamori_emu *e)
{
	gcopy(e, A(0), A(1), A(2));
	return A(0);
}

static uint64_t c_memset(mamori_emu *e)
{
	gfill(e, A(0), (uint8_t)A(1), A(2));
	return A(0);
}

static uint64_t c_memcmp(mamori_emu *e)
{
	uint64_t a = A(0), b = A(1), n = A(2);
	for (uint64_t i = 0; i < n && i < e->lim.max_memory; i++) {
		uint8_t x = 0, y = 0;
		if (!emu_get(e, a + i, &x, 1) || !emu_get(e, b + i, &y, 1))
			return 0;
		if (x != y)
			return x < y ? neg1(e) : 1;
	}
	return 0;
}

static uint64_t c_strlen(mamori_emu *e)
{
	uint64_t s = A(0), n = 0;
	uint8_t c = 1;
	while (n < e->lim.max_memory && emu_get(e, s + n, &c, 1) && c)
		n++;
	return n;
}

static uint64_t c_wcslen(mamori_emu *e)
{
	uint64_t s = A(0), n = 0;
	uint8_t c[2] = { 1, 0 };
	while (n < e->lim.max_memory && emu_get(e, s + 2 * n, c, 2) && (c[0] | c[1]))
		n++;
	return n;
}

static uint64_t strcmp_n(mamori_emu *e, uint64_t a, uint64_t b, uint64_t n, bool fold)
{
	for (uint64_t i = 0; i < n && i < e->lim.max_memory; i++) {
		uint8_t x = 0, y = 0;
		if (!emu_get(e, a + i, &x, 1) || !emu_get(e, b + i, &y, 1))
			return 0;
		if (fold) {
			x = (uint8_t)(x >= 'A' && x <= 'Z' ? x + 32 : x);
			y = (uint8_t)(y >= 'A' && y <= 'Z' ? y + 32 : y);
		}
		if (x != y)
			return x < y ? neg1(e) : 1;
		if (!x)
			break;
	}
	return 0;
}

static uint64_t c_strcmp(mamori_emu *e)
{
	return strcmp_n(e, A(0), A(1), ~0ull, false);
}

static uint64_t c_strncmp(mamori_emu *e)
{
	return strcmp_n(e, A(0), A(1), A(2), false);
}

static uint64_t c_stricmp(mamori_emu *e)
{
	return strcmp_n(e, A(0), A(1), ~0ull, true);
}

static uint64_t c_strcpy(mamori_emu *e)
{
	uint64_t d = A(0), s = A(1), n = 0;
	uint8_t c = 1;
	while (n < e->lim.max_memory && emu_get(e, s + n, &c, 1) && c)
		n++;
	gcopy(e, d, s, n);
	emu_gwrite(e, d + n, "", 1);
	return d;
}

static uint64_t c_strcat(mamori_emu *e)
{
	uint64_t d = A(0), s = A(1), n = 0, m = 0;
	uint8_t c = 1;
	while (n < e->lim.max_memory && emu_get(e, d + n, &c, 1) && c)
		n++;
	c = 1;
	while (m < e->lim.max_memory && emu_get(e, s + m, &c, 1) && c)
		m++;
	gcopy(e, d + n, s, m);
	emu_gwrite(e, d + n + m, "", 1);
	return d;
}

static uint64_t c_strchr(mamori_emu *e)
{
	uint64_t s = A(0);
	uint8_t want = (uint8_t)A(1);
	for (uint64_t i = 0; i < e->lim.max_memory; i++) {
		uint8_t c;
		if (!emu_get(e, s + i, &c, 1))
			return 0;
		if (c == want)
			return s + i;
		if (!c)
			return 0;
	}
	return 0;
}

static uint64_t c_atoi(mamori_emu *e)
{
	char s[64];
	if (!gstr(e, A(0), s, sizeof(s)))
		return 0;
	return (uint64_t)(int64_t)(int32_t)strtol(s, NULL, 10);
}

static uint64_t c_printf(mamori_emu *e)
{
	argsrc a = { e, false, 0, 1 };
	return do_fprintf(e, e->iob_va + file_size(e), A(0), &a);
}

static uint64_t c_fprintf(mamori_emu *e)
{
	argsrc a = { e, false, 0, 2 };
	return do_fprintf(e, A(0), A(1), &a);
}

static uint64_t c_vprintf(mamori_emu *e)
{
	argsrc a = { e, true, A(1), 0 };
	return do_fprintf(e, e->iob_va + file_size(e), A(0), &a);
}

static uint64_t c_vfprintf(mamori_emu *e)
{
	argsrc a = { e, true, A(2), 0 };
	return do_fprintf(e, A(0), A(1), &a);
}

static uint64_t c_sprintf(mamori_emu *e)
{
	argsrc a = { e, false, 0, 2 };
	return do_sprintf(e, A(0), MAX_FMT_OUT, A(1), &a);
}

static uint64_t c_snprintf(mamori_emu *e)
{
	argsrc a = { e, false, 0, 3 };
	return do_sprintf(e, A(0), A(1), A(2), &a);
}

static uint64_t c_vsprintf(mamori_emu *e)
{
	argsrc a = { e, true, A(2), 0 };
	return do_sprintf(e, A(0), MAX_FMT_OUT, A(1), &a);
}

static uint64_t c_vsnprintf(mamori_emu *e)
{
	argsrc a = { e, true, A(3), 0 };
	return do_sprintf(e, A(0), A(1), A(2), &a);
}

static uint64_t c_fwrite(mamori_emu *e)
{
	uint64_t size = A(1), n = A(2), f = A(3);
	if (size && n > MAX_OUTPUT / size)
		n = MAX_OUTPUT / size;
	if (is_console(e, f)) {
		uint8_t tmp[4096];
		uint64_t total = size * n;
		for (uint64_t done = 0; done < total;) {
			uint64_t k = total - done < sizeof(tmp) ? total - done : sizeof(tmp);
			if (!emu_get(e, A(0) + done, tmp, k))
				return done / (size ? size : 1);
			emu_output(e, tmp, k);
			done += k;
		}
	}
	return n;
}

static uint64_t c_fputc(mamori_emu *e)
{
	uint8_t c = (uint8_t)A(0);
	if (is_console(e, A(1)))
		emu_output(e, &c, 1);
	return c;
}

/* The guest's standard input is empty: character reads give EOF, block
 * reads nothing, feof() says so. Without these a program that reads until
 * EOF would spin on the unknown-export result 0 until the API limit. */
static uint64_t c_eof(mamori_emu *e)
{
	(void)e;
	return (uint64_t)-1;
}

static uint64_t c_putchar(mamori_emu *e)
{
	uint8_t c = (uint8_t)A(0);
	emu_output(e, &c, 1);
	return c;
}

static uint64_t c_fputs(mamori_emu *e)
{
	char s[MAX_STR];
	if (!gstr(e, A(0), s, sizeof(s)))
		return neg1(e);
	if (is_console(e, A(1)))
		emu_output(e, s, strlen(s));
	return 0;
}

static uint64_t c_puts(mamori_emu *e)
{
	char s[MAX_STR];
	if (!gstr(e, A(0), s, sizeof(s)))
		return neg1(e);
	emu_output(e, s, strlen(s));
	emu_output(e, "\n", 1);
	return 0;
}

static uint64_t c_write(mamori_emu *e)
{
	uint64_t fd = A(0) & 0xffffffffu, n = A(2) & 0xffffffffu;
	console_write(e, fd == 1 ? STD_OUT_H : fd == 2 ? STD_ERR_H : 0, A(1), n, false);
	return n;
}

static uint64_t c_time(mamori_emu *e)
{
	uint64_t t = 1704067200ull + emu_clock_ns(e) / 1000000000ull;
	if (A(0))
		put64(e, A(0), t);
	return t;
}

static uint64_t c_clock(mamori_emu *e)
{
	return emu_clock_ns(e) / 1000000;
}

static uint64_t c_srand(mamori_emu *e)
{
	e->rand_state = (uint32_t)A(0);
	return 0;
}

static uint64_t c_rand(mamori_emu *e)
{
	e->rand_state = e->rand_state * 214013u + 2531011u;
	return (e->rand_state >> 16) & 0x7fff;
}

static uint64_t c_continue_search(mamori_emu *e)
{
	(void)e;
	return 1; /* ExceptionContinueSearch */
}

static uint64_t k_lstrcpyA(mamori_emu *e)
{
	return c_strcpy(e);
}

static uint64_t k_lstrcatA(mamori_emu *e)
{
	return c_strcat(e);
}

static uint64_t k_lstrcmpA(mamori_emu *e)
{
	return c_strcmp(e);
}

static uint64_t k_lstrcmpiA(mamori_emu *e)
{
	return c_stricmp(e);
}

/* ================================================================ others */

static uint64_t u_MessageBox(mamori_emu *e)
{
	(void)e;
	return 1; /* IDOK */
}

static uint64_t u_wsprintfA(mamori_emu *e)
{
	argsrc a = { e, false, 0, 2 };
	return do_sprintf(e, A(0), 1024, A(1), &a);
}

static uint64_t u_GetSystemMetrics(mamori_emu *e)
{
	uint64_t i = A(0);
	return i == 0 ? 1920 : i == 1 ? 1080 : 0;
}

static uint64_t u_GetDesktopWindow(mamori_emu *e)
{
	(void)e;
	return 0x10010;
}

static uint64_t u_GetCursorPos(mamori_emu *e)
{
	return emu_gwrite32(e, A(0), 400) && emu_gwrite32(e, A(0) + 4, 300);
}

static uint64_t a_RegFail(mamori_emu *e)
{
	(void)e;
	return 2; /* ERROR_FILE_NOT_FOUND */
}

static uint64_t a_GetUserNameA(mamori_emu *e)
{
	emu_gwrite32(e, A(1), 5);
	return emu_gwrite(e, A(0), "user", 5);
}

static uint64_t w_fail(mamori_emu *e)
{
	return neg1(e); /* SOCKET_ERROR / INVALID_SOCKET: the network is down */
}

static uint64_t w_WSAStartup(mamori_emu *e)
{
	uint8_t b[4] = { 2, 2, 2, 2 };
	emu_gwrite(e, A(1), b, 4);
	return 0;
}

static uint64_t w_WSAGetLastError(mamori_emu *e)
{
	(void)e;
	return 10050; /* WSAENETDOWN */
}

static uint64_t w_htons(mamori_emu *e)
{
	uint64_t v = A(0) & 0xffff;
	return ((v & 0xff) << 8) | (v >> 8);
}

static uint64_t w_htonl(mamori_emu *e)
{
	uint64_t v = A(0) & 0xffffffffu;
	return ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >> 8) & 0xff00) | (v >> 24);
}

/* Dotted quad to a network-order address; INADDR_NONE when malformed. */
static uint64_t w_inet_addr(mamori_emu *e)
{
	char s[32];
	if (!gstr(e, A(0), s, sizeof(s)))
		return 0xffffffffu;
	uint64_t addr = 0;
	const char *p = s;
	for (int part = 0; part < 4; part++) {
		char *end = NULL;
		if (*p < '0' || *p > '9')
			return 0xffffffffu;
		unsigned long v = strtoul(p, &end, 10);
		if (v > 255 || (part < 3 && *end != '.') || (part == 3 && *end))
			return 0xffffffffu;
		addr |= (uint64_t)v << (8 * part);
		p = end + 1;
	}
	return addr;
}

/* =============================================================== table */

#define K (MOD_K32 | MOD_KB)
#define STD(mods, name, n, fn)                 \
	{                                      \
		mods, name, 0, n, false, fn, 0 \
	}
#define CDE(mods, name, fn)                   \
	{                                     \
		mods, name, 0, 0, true, fn, 0 \
	}
#define DATA(mods, name, size)                     \
	{                                          \
		mods, name, 0, 0, true, NULL, size \
	}
#define WS(name, ord, n, fn)                        \
	{                                           \
		MOD_WS2, name, ord, n, false, fn, 0 \
	}
#define CRT(name, fn) CDE(MOD_MSVCRT | MOD_NTDLL, name, fn)

const api_def winapi_defs[] = {
	/* kernel32 / kernelbase */
	STD(K, "GetModuleHandleA", 1, k_GetModuleHandleA),
	STD(K, "GetModuleHandleW", 1, k_GetModuleHandleW),
	STD(K, "GetModuleHandleExA", 3, k_GetModuleHandleExA),
	STD(K, "GetModuleHandleExW", 3, k_GetModuleHandleExW),
	STD(K, "LoadLibraryA", 1, k_LoadLibraryA),
	STD(K, "LoadLibraryW", 1, k_LoadLibraryW),
	STD(K, "LoadLibraryExA", 3, k_LoadLibraryA),
	STD(K, "LoadLibraryExW", 3, k_LoadLibraryW),
	STD(K, "FreeLibrary", 1, k_ret1),
	STD(K, "GetProcAddress", 2, k_GetProcAddress),
	STD(K, "GetModuleFileNameA", 3, k_GetModuleFileNameA),
	STD(K, "GetModuleFileNameW", 3, k_GetModuleFileNameW),
	STD(K, "VirtualAlloc", 4, k_VirtualAlloc),
	STD(K, "VirtualAllocEx", 5, k_VirtualAllocEx),
	STD(K, "VirtualFree", 3, k_VirtualFree),
	STD(K, "VirtualFreeEx", 4, k_VirtualFreeEx),
	STD(K, "VirtualProtect", 4, k_VirtualProtect),
	STD(K, "VirtualProtectEx", 5, k_VirtualProtectEx),
	STD(K, "VirtualQuery", 3, k_VirtualQuery),
	STD(K, "VirtualQueryEx", 4, k_VirtualQueryEx),
	STD(K, "HeapCreate", 3, k_HeapCreate),
	STD(K, "HeapDestroy", 1, k_ret1),
	STD(K, "HeapAlloc", 3, k_HeapAlloc),
	STD(K, "HeapReAlloc", 4, k_HeapReAlloc),
	STD(K, "HeapFree", 3, k_HeapFree),
	STD(K, "HeapSize", 3, k_HeapSize),
	STD(K, "GetProcessHeap", 0, k_GetProcessHeap),
	STD(K, "LocalAlloc", 2, k_LocalAlloc),
	STD(K, "LocalFree", 1, k_LocalFree),
	STD(K, "GlobalAlloc", 2, k_LocalAlloc),
	STD(K, "GlobalFree", 1, k_LocalFree),
	STD(K | MOD_NTDLL, "RtlMoveMemory", 3, k_RtlMoveMemory),
	STD(K | MOD_NTDLL, "RtlZeroMemory", 2, k_RtlZeroMemory),
	STD(K | MOD_NTDLL, "RtlFillMemory", 3, k_RtlFillMemory),
	STD(MOD_NTDLL, "RtlCopyMemory", 3, k_RtlMoveMemory),
	STD(K, "TlsAlloc", 0, k_TlsAlloc),
	STD(K, "TlsGetValue", 1, k_TlsGetValue),
	STD(K, "TlsSetValue", 2, k_TlsSetValue),
	STD(K, "TlsFree", 1, k_TlsFree),
	STD(K, "InitializeCriticalSection", 1, k_ret0),
	STD(K, "InitializeCriticalSectionAndSpinCount", 2, k_ret1),
	STD(K, "InitializeCriticalSectionEx", 3, k_ret1),
	STD(K, "EnterCriticalSection", 1, k_ret0),
	STD(K, "LeaveCriticalSection", 1, k_ret0),
	STD(K, "TryEnterCriticalSection", 1, k_ret1),
	STD(K, "DeleteCriticalSection", 1, k_ret0),
	STD(K, "GetTickCount", 0, k_GetTickCount),
	STD(K, "GetTickCount64", 0, k_GetTickCount64),
	STD(K, "QueryPerformanceCounter", 1, k_QueryPerformanceCounter),
	STD(K, "QueryPerformanceFrequency", 1, k_QueryPerformanceFrequency),
	STD(K, "GetSystemTimeAsFileTime", 1, k_GetSystemTimeAsFileTime),
	STD(K, "GetSystemTime", 1, k_GetSystemTime),
	STD(K, "GetLocalTime", 1, k_GetSystemTime),
	STD(K, "Sleep", 1, k_Sleep),
	STD(K, "SleepEx", 2, k_Sleep),
	STD(K, "ExitProcess", 1, k_ExitProcess),
	STD(K, "ExitThread", 1, k_ExitProcess),
	STD(K, "TerminateProcess", 2, k_TerminateProcess),
	STD(K, "GetLastError", 0, k_GetLastError),
	STD(K, "SetLastError", 1, k_SetLastError),
	STD(K, "GetCommandLineA", 0, k_GetCommandLineA),
	STD(K, "GetCommandLineW", 0, k_GetCommandLineW),
	STD(K, "GetStartupInfoA", 1, k_GetStartupInfo),
	STD(K, "GetStartupInfoW", 1, k_GetStartupInfo),
	STD(K, "SetUnhandledExceptionFilter", 1, k_SetUnhandledExceptionFilter),
	STD(K, "UnhandledExceptionFilter", 1, k_ret0),
	STD(K, "AddVectoredExceptionHandler", 2, k_AddVectoredExceptionHandler),
	STD(K, "RemoveVectoredExceptionHandler", 1, k_RemoveVectoredExceptionHandler),
	STD(K, "RaiseException", 4, k_RaiseException),
	STD(K, "IsDebuggerPresent", 0, k_ret0),
	STD(K, "CheckRemoteDebuggerPresent", 2, k_CheckRemoteDebuggerPresent),
	STD(K, "GetCurrentProcess", 0, k_GetCurrentProcess),
	STD(K, "GetCurrentThread", 0, k_GetCurrentThread),
	STD(K, "GetCurrentProcessId", 0, k_GetCurrentProcessId),
	STD(K, "GetCurrentThreadId", 0, k_GetCurrentThreadId),
	STD(K, "GetStdHandle", 1, k_GetStdHandle),
	STD(K, "WriteFile", 5, k_WriteFile),
	STD(K, "WriteConsoleA", 5, k_WriteFile),
	STD(K, "WriteConsoleW", 5, k_WriteConsoleW),
	STD(K, "GetConsoleMode", 2, k_GetConsoleMode),
	STD(K, "GetFileType", 1, k_GetFileType),
	STD(K, "CloseHandle", 1, k_ret1),
	STD(K, "FlushInstructionCache", 3, k_ret1),
	STD(K, "GetVersion", 0, k_GetVersion),
	STD(K, "GetVersionExA", 1, k_GetVersionEx),
	STD(K, "GetVersionExW", 1, k_GetVersionEx),
	STD(K, "GetSystemInfo", 1, k_GetSystemInfo),
	STD(K, "GetNativeSystemInfo", 1, k_GetSystemInfo),
	STD(K, "IsDBCSLeadByteEx", 2, k_ret0),
	STD(K, "IsDBCSLeadByte", 1, k_ret0),
	STD(K, "MultiByteToWideChar", 6, k_MultiByteToWideChar),
	STD(K, "WideCharToMultiByte", 8, k_WideCharToMultiByte),
	STD(K, "GetACP", 0, k_GetACP),
	STD(K, "GetOEMCP", 0, k_GetACP),
	STD(K, "lstrlenA", 1, k_lstrlenA),
	STD(K, "lstrlenW", 1, k_lstrlenW),
	STD(K, "GetEnvironmentVariableA", 3, k_GetEnvironmentVariable),
	STD(K, "GetEnvironmentVariableW", 3, k_GetEnvironmentVariable),
	STD(K, "SetErrorMode", 1, k_ret0),
	STD(K, "IsProcessorFeaturePresent", 1, k_IsProcessorFeaturePresent),
	STD(K, "OutputDebugStringA", 1, k_ret0),
	STD(K, "OutputDebugStringW", 1, k_ret0),
	STD(K, "GetSystemDirectoryA", 2, k_GetSystemDirectoryA),
	STD(K, "GetWindowsDirectoryA", 2, k_GetSystemDirectoryA),
	STD(K, "CreateFileA", 7, k_CreateFile),
	STD(K, "CreateFileW", 7, k_CreateFile),
	STD(K, "GetFileAttributesA", 1, k_GetFileAttributes),
	STD(K, "GetFileAttributesW", 1, k_GetFileAttributes),
	STD(K, "CreateMutexA", 3, k_CreateMutex),
	STD(K, "CreateMutexW", 3, k_CreateMutex),
	STD(K, "WaitForSingleObject", 2, k_ret0),
	STD(K, "SwitchToThread", 0, k_ret1),
	STD(K, "lstrcpyA", 2, k_lstrcpyA),
	STD(K, "lstrcatA", 2, k_lstrcatA),
	STD(K, "lstrcmpA", 2, k_lstrcmpA),
	STD(K, "lstrcmpiA", 2, k_lstrcmpiA),
	STD(K, "GetComputerNameA", 2, k_GetComputerNameA),
	STD(K, "GetCurrentDirectoryA", 2, k_GetCurrentDirectoryA),
	STD(K, "GetTempPathA", 2, k_GetTempPathA),
	STD(K, "GlobalMemoryStatusEx", 1, k_GlobalMemoryStatusEx),
	STD(K, "GetUserDefaultLCID", 0, k_GetUserDefaultLCID),
	STD(K, "GetSystemDefaultLangID", 0, k_GetUserDefaultLCID),
	STD(K, "CreateToolhelp32Snapshot", 2, k_invalid_handle),
	STD(K, "CreateFileMappingA", 6, k_ret0),
	STD(K, "FindResourceA", 3, k_not_found),
	STD(K, "FindResourceW", 3, k_not_found),
	STD(K, "LoadResource", 2, k_ret0),
	STD(K, "LockResource", 1, k_ret0),
	STD(K, "SizeofResource", 2, k_ret0),
	STD(K, "GetFileSize", 2, k_invalid_handle),
	STD(K, "CreateEventA", 4, k_CreateMutex),
	STD(K, "SetEvent", 1, k_ret1),
	STD(K, "ResetEvent", 1, k_ret1),
	STD(K, "FreeConsole", 0, k_ret1),
	STD(K, "GetLogicalDrives", 0, k_GetCurrentProcessId),
	STD(K, "MapViewOfFile", 5, NULL),
	STD(K, "UnmapViewOfFile", 1, k_ret1),
	STD(K, "ResumeThread", 1, NULL),
	STD(K, "GetThreadContext", 2, NULL),
	STD(K, "SetThreadContext", 2, NULL),
	STD(K, "DeviceIoControl", 8, NULL),
	STD(K, "Process32First", 2, k_ret0),
	STD(K, "Process32Next", 2, k_ret0),
	STD(K, "GetDriveTypeA", 1, NULL),
	STD(K, "GetVolumeInformationA", 8, NULL),
	STD(K, "SetFilePointer", 4, NULL),
	STD(K, "GetTempFileNameA", 4, NULL),
	STD(K, "MoveFileA", 2, NULL),
	STD(K, "CreateDirectoryA", 2, NULL),
	STD(K, "CreateThread", 6, NULL),
	STD(K, "CreateProcessA", 10, NULL),
	STD(K, "CreateProcessW", 10, NULL),
	STD(K, "OpenProcess", 3, NULL),
	STD(K, "ReadProcessMemory", 5, NULL),
	STD(K, "WriteProcessMemory", 5, NULL),
	STD(K, "CreateRemoteThread", 7, NULL),
	STD(K, "ReadFile", 5, NULL),
	STD(K, "FindFirstFileA", 2, NULL),
	STD(K, "DeleteFileA", 1, NULL),
	STD(K, "CopyFileA", 3, NULL),
	STD(K, "WinExec", 2, NULL),
	/* ntdll */
	STD(MOD_NTDLL, "NtAllocateVirtualMemory", 6, n_NtAllocateVirtualMemory),
	STD(MOD_NTDLL, "ZwAllocateVirtualMemory", 6, n_NtAllocateVirtualMemory),
	STD(MOD_NTDLL, "NtProtectVirtualMemory", 5, n_NtProtectVirtualMemory),
	STD(MOD_NTDLL, "ZwProtectVirtualMemory", 5, n_NtProtectVirtualMemory),
	STD(MOD_NTDLL, "NtFreeVirtualMemory", 4, n_NtFreeVirtualMemory),
	STD(MOD_NTDLL, "ZwFreeVirtualMemory", 4, n_NtFreeVirtualMemory),
	STD(MOD_NTDLL, "NtQueryInformationProcess", 5, n_NtQueryInformationProcess),
	STD(MOD_NTDLL, "ZwQueryInformationProcess", 5, n_NtQueryInformationProcess),
	STD(MOD_NTDLL, "NtSetInformationThread", 4, n_status0),
	STD(MOD_NTDLL, "ZwSetInformationThread", 4, n_status0),
	STD(MOD_NTDLL, "NtDelayExecution", 2, n_NtDelayExecution),
	STD(MOD_NTDLL, "NtClose", 1, n_status0),
	STD(MOD_NTDLL, "NtTerminateProcess", 2, n_NtTerminateProcess),
	STD(MOD_NTDLL, "ZwTerminateProcess", 2, n_NtTerminateProcess),
	STD(MOD_NTDLL, "RtlExitUserProcess", 1, k_ExitProcess),
	STD(MOD_NTDLL, "RtlGetVersion", 1, n_RtlGetVersion),
	STD(MOD_NTDLL, "LdrLoadDll", 4, n_LdrLoadDll),
	STD(MOD_NTDLL, "LdrGetProcedureAddress", 4, n_LdrGetProcedureAddress),
	STD(MOD_NTDLL, "RtlAllocateHeap", 3, n_RtlAllocateHeap),
	STD(MOD_NTDLL, "RtlFreeHeap", 3, k_HeapFree),
	STD(MOD_NTDLL, "RtlReAllocateHeap", 4, k_HeapReAlloc),
	STD(MOD_NTDLL, "RtlSizeHeap", 3, k_HeapSize),
	STD(MOD_NTDLL, "RtlAddVectoredExceptionHandler", 2, n_RtlAddVectoredExceptionHandler),
	STD(MOD_NTDLL, "RtlRemoveVectoredExceptionHandler", 1, k_RemoveVectoredExceptionHandler),
	STD(MOD_NTDLL, "NtQuerySystemInformation", 4, NULL),
	STD(MOD_NTDLL, "NtCreateFile", 11, NULL),
	/* msvcrt (and the C functions ntdll exports too) */
	CDE(MOD_MSVCRT, "exit", c_exit),
	CDE(MOD_MSVCRT, "_exit", c_exit),
	CDE(MOD_MSVCRT, "_cexit", k_ret0),
	CDE(MOD_MSVCRT, "_c_exit", k_ret0),
	CDE(MOD_MSVCRT, "abort", c_abort),
	CDE(MOD_MSVCRT, "_amsg_exit", c_amsg_exit),
	CDE(MOD_MSVCRT, "_onexit", c_onexit),
	CDE(MOD_MSVCRT, "__dllonexit", c_onexit),
	CDE(MOD_MSVCRT, "atexit", k_ret0),
	CDE(MOD_MSVCRT, "_initterm", c_initterm),
	CDE(MOD_MSVCRT, "_initterm_e", c_initterm),
	CDE(MOD_MSVCRT, "__getmainargs", c_getmainargs),
	CDE(MOD_MSVCRT, "__wgetmainargs", c_wgetmainargs),
	CDE(MOD_MSVCRT, "__p___argc", c_p_argc),
	CDE(MOD_MSVCRT, "__p___argv", c_p_argv),
	CDE(MOD_MSVCRT, "__p__acmdln", c_p_acmdln),
	CDE(MOD_MSVCRT, "__p__fmode", c_p_fmode),
	CDE(MOD_MSVCRT, "__p__commode", c_p_commode),
	CDE(MOD_MSVCRT, "__set_app_type", k_ret0),
	CDE(MOD_MSVCRT, "__setusermatherr", k_ret0),
	CDE(MOD_MSVCRT, "_lock", k_ret0),
	CDE(MOD_MSVCRT, "_unlock", k_ret0),
	CDE(MOD_MSVCRT, "__iob_func", c_iob_func),
	CDE(MOD_MSVCRT, "__acrt_iob_func", c_acrt_iob_func),
	CDE(MOD_MSVCRT, "___lc_codepage_func", k_ret0),
	CDE(MOD_MSVCRT, "___mb_cur_max_func", c_mb_cur_max),
	CDE(MOD_MSVCRT, "_errno", c_errno),
	CDE(MOD_MSVCRT, "signal", k_ret0),
	CDE(MOD_MSVCRT, "localeconv", c_localeconv),
	CDE(MOD_MSVCRT, "strerror", c_strerror),
	CDE(MOD_MSVCRT, "setlocale", c_setlocale),
	CDE(MOD_MSVCRT, "_controlfp", c_controlfp),
	CDE(MOD_MSVCRT, "_fpreset", k_ret0),
	CDE(MOD_MSVCRT, "getenv", k_ret0),
	CDE(MOD_MSVCRT, "malloc", c_malloc),
	CDE(MOD_MSVCRT, "calloc", c_calloc),
	CDE(MOD_MSVCRT, "realloc", c_realloc),
	CDE(MOD_MSVCRT, "free", c_free),
	CRT("memcpy", c_memcpy),
	CRT("memmove", c_memcpy),
	CRT("memset", c_memset),
	CRT("memcmp", c_memcmp),
	CRT("strlen", c_strlen),
	CRT("wcslen", c_wcslen),
	CRT("strcmp", c_strcmp),
	CRT("strncmp", c_strncmp),
	CRT("_stricmp", c_stricmp),
	CRT("strcpy", c_strcpy),
	CRT("strcat", c_strcat),
	CRT("strchr", c_strchr),
	CRT("atoi", c_atoi),
	CRT("sprintf", c_sprintf),
	CRT("_snprintf", c_snprintf),
	CRT("_vsnprintf", c_vsnprintf),
	CDE(MOD_MSVCRT, "snprintf", c_snprintf),
	CDE(MOD_MSVCRT, "vsprintf", c_vsprintf),
	CDE(MOD_MSVCRT, "vsnprintf", c_vsnprintf),
	CDE(MOD_MSVCRT, "printf", c_printf),
	CDE(MOD_MSVCRT, "fprintf", c_fprintf),
	CDE(MOD_MSVCRT, "vprintf", c_vprintf),
	CDE(MOD_MSVCRT, "vfprintf", c_vfprintf),
	CDE(MOD_MSVCRT, "fwrite", c_fwrite),
	CDE(MOD_MSVCRT, "fputc", c_fputc),
	CDE(MOD_MSVCRT, "putc", c_fputc),
	CDE(MOD_MSVCRT, "putchar", c_putchar),
	CDE(MOD_MSVCRT, "fputs", c_fputs),
	CDE(MOD_MSVCRT, "puts", c_puts),
	CDE(MOD_MSVCRT, "fflush", k_ret0),
	CDE(MOD_MSVCRT, "fgetc", c_eof),
	CDE(MOD_MSVCRT, "getc", c_eof),
	CDE(MOD_MSVCRT, "getchar", c_eof),
	CDE(MOD_MSVCRT, "_fgetchar", c_eof),
	CDE(MOD_MSVCRT, "_getch", c_eof),
	CDE(MOD_MSVCRT, "ungetc", c_eof),
	CDE(MOD_MSVCRT, "fgets", k_ret0),
	CDE(MOD_MSVCRT, "gets", k_ret0),
	CDE(MOD_MSVCRT, "fread", k_ret0),
	CDE(MOD_MSVCRT, "_read", k_ret0),
	CDE(MOD_MSVCRT, "feof", k_ret1),
	CDE(MOD_MSVCRT, "ferror", k_ret0),
	CDE(MOD_MSVCRT, "clearerr", k_ret0),
	CDE(MOD_MSVCRT, "_write", c_write),
	CDE(MOD_MSVCRT, "time", c_time),
	CDE(MOD_MSVCRT, "clock", c_clock),
	CDE(MOD_MSVCRT, "srand", c_srand),
	CDE(MOD_MSVCRT, "rand", c_rand),
	CDE(MOD_MSVCRT, "__C_specific_handler", c_continue_search),
	CDE(MOD_MSVCRT, "_except_handler3", c_continue_search),
	CDE(MOD_MSVCRT, "_XcptFilter", k_ret0),
	CDE(MOD_MSVCRT, "qsort", NULL),
	CDE(MOD_MSVCRT, "fopen", NULL),
	DATA(MOD_MSVCRT, "_iob", 20 * 48),
	DATA(MOD_MSVCRT, "_acmdln", 8),
	DATA(MOD_MSVCRT, "_wcmdln", 8),
	DATA(MOD_MSVCRT, "_fmode", 4),
	DATA(MOD_MSVCRT, "_commode", 4),
	DATA(MOD_MSVCRT, "__initenv", 8),
	DATA(MOD_MSVCRT, "__winitenv", 8),
	DATA(MOD_MSVCRT, "__mb_cur_max", 4),
	DATA(MOD_MSVCRT, "_environ", 8),
	/* user32 */
	STD(MOD_USER32, "MessageBoxA", 4, u_MessageBox),
	STD(MOD_USER32, "MessageBoxW", 4, u_MessageBox),
	CDE(MOD_USER32, "wsprintfA", u_wsprintfA),
	STD(MOD_USER32, "GetSystemMetrics", 1, u_GetSystemMetrics),
	STD(MOD_USER32, "GetDesktopWindow", 0, u_GetDesktopWindow),
	STD(MOD_USER32, "GetForegroundWindow", 0, u_GetDesktopWindow),
	STD(MOD_USER32, "GetCursorPos", 1, u_GetCursorPos),
	STD(MOD_USER32, "FindWindowA", 2, k_ret0),
	STD(MOD_USER32, "FindWindowW", 2, k_ret0),
	STD(MOD_USER32, "ShowWindow", 2, k_ret1),
	STD(MOD_USER32, "GetKeyState", 1, k_ret0),
	STD(MOD_USER32, "GetAsyncKeyState", 1, k_ret0),
	STD(MOD_USER32, "CreateWindowExA", 12, NULL),
	STD(MOD_USER32, "GetMessageA", 4, NULL),
	/* advapi32 */
	STD(MOD_ADVAPI, "RegOpenKeyExA", 5, a_RegFail),
	STD(MOD_ADVAPI, "RegOpenKeyExW", 5, a_RegFail),
	STD(MOD_ADVAPI, "RegQueryValueExA", 6, a_RegFail),
	STD(MOD_ADVAPI, "RegQueryValueExW", 6, a_RegFail),
	STD(MOD_ADVAPI, "RegCreateKeyExA", 9, a_RegFail),
	STD(MOD_ADVAPI, "RegSetValueExA", 6, a_RegFail),
	STD(MOD_ADVAPI, "RegCloseKey", 1, k_ret0),
	STD(MOD_ADVAPI, "GetUserNameA", 2, a_GetUserNameA),
	STD(MOD_ADVAPI, "OpenProcessToken", 3, k_ret0),
	STD(MOD_ADVAPI, "CryptAcquireContextA", 5, k_ret0),
	/* ws2_32, with the real ordinals */
	WS("accept", 1, 3, w_fail),
	WS("bind", 2, 3, w_fail),
	WS("closesocket", 3, 1, k_ret0),
	WS("connect", 4, 3, w_fail),
	WS("htonl", 8, 1, w_htonl),
	WS("htons", 9, 1, w_htons),
	WS("ioctlsocket", 10, 3, w_fail),
	WS("inet_addr", 11, 1, w_inet_addr),
	WS("listen", 13, 2, w_fail),
	WS("ntohl", 14, 1, w_htonl),
	WS("ntohs", 15, 1, w_htons),
	WS("recv", 16, 4, w_fail),
	WS("select", 18, 5, w_fail),
	WS("send", 19, 4, w_fail),
	WS("sendto", 20, 6, w_fail),
	WS("setsockopt", 21, 5, w_fail),
	WS("socket", 23, 3, w_fail),
	WS("gethostbyname", 52, 1, k_ret0),
	WS("gethostname", 57, 2, w_fail),
	WS("WSAGetLastError", 111, 0, w_WSAGetLastError),
	WS("WSAStartup", 115, 2, w_WSAStartup),
	WS("WSACleanup", 116, 0, k_ret0),
};
const size_t winapi_n_defs = sizeof(winapi_defs) / sizeof(*winapi_defs);

/* msvcrt's data objects and state, once its stand-in exists. */
int winapi_init_data(mamori_emu *e, module *m)
{
	if (strcmp(m->name, "msvcrt.dll") != 0)
		return MAMORI_OK;
	e->iob_va = data_export(e, "_iob");
	if (!(e->crt_va = env_alloc(e, 64)) || !(e->lconv_va = env_alloc(e, 16 * psz(e))))
		return mamori_fail(MAMORI_ELIMIT, "emu: environment area full");
	uint64_t dot = env_alloc(e, 4), empty = dot + 2;
	uint64_t envp = env_alloc(e, 2 * psz(e)), path = env_alloc(e, 40);
	e->strerror_va = env_alloc(e, 16);
	e->locale_va = env_alloc(e, 4);
	if (!dot || !envp || !path || !e->strerror_va || !e->locale_va)
		return mamori_fail(MAMORI_ELIMIT, "emu: environment area full");
	emu_put(e, dot, ".", 2);
	emu_put(e, e->strerror_va, "Unknown error", 14);
	emu_put(e, e->locale_va, "C", 2);
	emu_put(e, path, "PATH=C:\\Windows\\system32", 25);
	emu_putptr(e, envp, path);
	emu_putptr(e, e->lconv_va, dot);
	emu_putptr(e, e->lconv_va + psz(e), empty);
	emu_putptr(e, e->lconv_va + 2 * psz(e), empty);
	emu_putptr(e, e->crt_va + 24, envp);
	emu_putptr(e, e->crt_va + 40, envp);
	emu_putptr(e, data_export(e, "_acmdln"), e->cmdline_a);
	emu_putptr(e, data_export(e, "_wcmdln"), e->cmdline_w);
	emu_putptr(e, data_export(e, "__initenv"), envp);
	emu_putptr(e, data_export(e, "_environ"), envp);
	uint8_t one[4] = { 1, 0, 0, 0 };
	emu_put(e, data_export(e, "__mb_cur_max"), one, 4);
	/* FILE._file of stdin/stdout/stderr. */
	for (int i = 0; i < 3; i++) {
		uint8_t fd[4] = { (uint8_t)i, 0, 0, 0 };
		emu_put(e, e->iob_va + (uint64_t)i * file_size(e) + (e->x64 ? 0x1c : 0x10), fd, 4);
	}
	return MAMORI_OK;
}

/* ---------------------------------------------------------------- dispatch */

void winapi_dispatch(mamori_emu *e, uint64_t pc)
{
	module *m = winenv_module_at(e, pc);
	if (!m || pc < m->stub_base || (pc - m->stub_base) % 8 || (pc - m->stub_base) / 8 >= m->n_stubs) {
		e->fault_addr = pc;
		emu_stop(e, MAMORI_EMU_FAULT, "execution of stand-in module data");
		return;
	}
	uint32_t id = m->stub_api[(pc - m->stub_base) / 8];
	const api_entry *a = &e->apis[id];
	if (e->api_calls >= e->lim.max_api_calls) {
		emu_stop(e, MAMORI_EMU_LIMIT, "api_calls");
		return;
	}
	e->api_calls++;
	uint64_t sp = emu_reg(e, e->x64 ? UC_X86_REG_RSP : UC_X86_REG_ESP), ret = 0;
	emu_getptr(e, sp, &ret);
	e->api_caller = ret;
	e->api_jump = 0;
	uint64_t rv;
	if (a->def && a->def->fn) {
		rv = a->def->fn(e);
	} else {
		e->unknown_api_calls++;
		set_err(e, ERROR_CALL_NOT_IMPLEMENTED);
		rv = 0;
	}
	if (e->n_trace < e->lim.max_trace) {
		if (!e->trace)
			e->trace = calloc(e->lim.max_trace, sizeof(*e->trace));
		if (e->trace)
			e->trace[e->n_trace++] = (mamori_emu_api_call){
				.insns = e->insns, .caller = ret, .ret = rv, .api = id
			};
	}
	if (e->stopping)
		return;
	if (e->api_jump) {
		emu_set_reg(e, e->x64 ? UC_X86_REG_RIP : UC_X86_REG_EIP, e->api_jump);
		return;
	}
	if (e->x64) {
		emu_set_reg(e, UC_X86_REG_RAX, rv);
		emu_set_reg(e, UC_X86_REG_RSP, sp + 8);
	} else {
		bool cdecl = !a->def || a->def->cdecl;
		emu_set_reg(e, UC_X86_REG_EAX, rv & 0xffffffffu);
		emu_set_reg(e, UC_X86_REG_EDX, rv >> 32);
		emu_set_reg(e, UC_X86_REG_ESP, sp + 4 + (cdecl ? 0 : 4ull * a->def->nargs));
	}
	emu_set_reg(e, e->x64 ? UC_X86_REG_RIP : UC_X86_REG_EIP, ret);
	if (e->exc_pending) {
		/* RaiseException: the exception happens at the return address;
		 * dispatch it from here (uc_emu_stop after writing the pc inside
		 * a hook would be ignored). */
		e->exc_addr = ret;
		emu_dispatch_exception(e);
	}
}
