/*
 * The emulator's engine: Unicorn set up with the hooks, the region table
 * with per-page write tracking, layers of dynamically generated code,
 * exception dispatch to guest handlers, the run loop and the accessors.
 * The Windows environment (loader, TEB/PEB, stand-in modules) is in
 * winenv.c and the API stubs in winapi.c.
 *
 * Write tracking: every page is mapped without write permission once the
 * run starts; the first store to it faults into hook_invalid, which marks
 * the page written and dirty (written since the current layer began),
 * remembers the writing pc and opens the page, so later stores cost
 * nothing. The faulting instruction is then restarted from the run loop
 * rather than resumed: Unicorn 2.0.1 would finish the store through a stale
 * TLB entry when the page had been read before, and the bytes would be
 * lost. Writes done by API stubs on the guest's behalf (memcpy, the
 * out-parameters of any call) are marked the same way, with the call's
 * return address as the writer: code that a stub copied and that is then
 * executed is dynamically generated code. The loader's own mapping and the
 * zero fill of fresh allocations are not writes.
 *
 * Layers: a block that starts in a dirty page, entered from another page,
 * begins a new layer; then every dirty page is cleaned and write-protected
 * again, so the next layer's writes are seen afresh. Entering from the same
 * page is not a layer: a stub that keeps its variables in its own page would
 * otherwise make one per block.
 *
 * Counting: one UC_HOOK_CODE counts instructions and catches execution of
 * the stub range (API calls). The write-then-execute check runs per block.
 */
#include <stdlib.h>
#include <string.h>

#include "emu_internal.h"

#define MAX_EXCEPTIONS 100000

mamori_emu_limits mamori_emu_limits_default(void)
{
	return (mamori_emu_limits){ .max_insns = 50000000ull,
				    .max_memory = 256ull << 20,
				    .max_api_calls = 1000000ull,
				    .max_layers = 32,
				    .max_trace = 10000,
				    .settle_insns = 0,
				    .stop_at_wx = false,
				    .cmdline = "sample.exe" };
}

const char *mamori_emu_status_name(mamori_emu_status s)
{
	switch (s) {
	case MAMORI_EMU_EXIT: return "exit";
	case MAMORI_EMU_WX_STOP: return "wx_stop";
	case MAMORI_EMU_LIMIT: return "limit";
	case MAMORI_EMU_FAULT: return "fault";
	case MAMORI_EMU_SETTLED: return "settled";
	}
	return "?";
}

static uint64_t round_up(uint64_t v)
{
	return (v + EMU_PAGE - 1) & ~(EMU_PAGE - 1);
}

static bool bit(const uint8_t *bits, uint64_t p)
{
	return (bits[p / 8] >> (p % 8)) & 1u;
}

/* ---------------------------------------------------------------- regions */

region *emu_find_region(mamori_emu *e, uint64_t va)
{
	if (e->last && va - e->last->base < e->last->size)
		return e->last;
	size_t lo = 0, hi = e->n_regions;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		region *r = e->regions[mid];
		if (va < r->base)
			hi = mid;
		else if (va - r->base >= r->size)
			lo = mid + 1;
		else
			return e->last = r;
	}
	return NULL;
}

static void region_free(region *r)
{
	if (!r)
		return;
	free(r->written);
	free(r->dirty);
	free(r->writer);
	free(r);
}

/* Map [base, base+size) (page-aligned). Before the run pages are writable
 * (the loader fills them); during it they start write-protected so the
 * guest's first store to each is seen. Fails with MAMORI_ELIMIT past
 * max_memory or MAX_REGIONS. */
int emu_map(mamori_emu *e, uint64_t base, uint64_t size, mamori_emu_region_kind kind, const char *name,
	    uint32_t prot)
{
	int rc = MAMORI_OK;
	region *r = NULL;
	if (size == 0 || (base | size) & (EMU_PAGE - 1) || base + size < base)
		return mamori_fail(MAMORI_EINVAL, "emu: bad region 0x%llx+0x%llx", (unsigned long long)base,
				   (unsigned long long)size);
	if (e->n_regions >= MAX_REGIONS)
		return mamori_fail(MAMORI_ELIMIT, "emu: more than %d regions", MAX_REGIONS);
	if (size > e->lim.max_memory || e->mapped > e->lim.max_memory - size)
		return mamori_fail(MAMORI_ELIMIT, "emu: mapping %llu bytes exceeds max_memory %llu",
				   (unsigned long long)size, (unsigned long long)e->lim.max_memory);
	if (e->n_regions == e->cap_regions) {
		size_t cap = e->cap_regions ? e->cap_regions * 2 : 32;
		region **n = realloc(e->regions, cap * sizeof(region *));
		if (!n)
			return mamori_fail(MAMORI_ENOMEM, "emu: region table");
		e->regions = n;
		e->cap_regions = cap;
	}
	uint64_t pages = size / EMU_PAGE;
	r = calloc(1, sizeof(*r));
	if (!r || !(r->written = calloc((pages + 7) / 8, 1)) || !(r->dirty = calloc((pages + 7) / 8, 1)) ||
	    !(r->writer = calloc(pages, sizeof(uint64_t)))) {
		rc = mamori_fail(MAMORI_ENOMEM, "emu: page bitmaps");
		goto done;
	}
	r->base = base;
	r->size = size;
	r->kind = kind;
	r->name = name;
	r->prot = prot;
	uc_err err = uc_mem_map(e->uc, base, size, e->ran ? (UC_PROT_READ | UC_PROT_EXEC) : UC_PROT_ALL);
	if (err != UC_ERR_OK) {
		rc = mamori_fail(MAMORI_EIO, "emu: cannot map 0x%llx+0x%llx: %s", (unsigned long long)base,
				 (unsigned long long)size, uc_strerror(err));
		goto done;
	}
	size_t at = 0;
	while (at < e->n_regions && e->regions[at]->base < base)
		at++;
	memmove(&e->regions[at + 1], &e->regions[at], (e->n_regions - at) * sizeof(region *));
	e->regions[at] = r;
	e->n_regions++;
	e->mapped += size;
	r = NULL;
done:
	region_free(r);
	return rc;
}

int emu_unmap(mamori_emu *e, region *r)
{
	size_t at = 0;
	while (at < e->n_regions && e->regions[at] != r)
		at++;
	if (at == e->n_regions)
		return mamori_fail(MAMORI_ENOTFOUND, "emu: no such region");
	if (uc_mem_unmap(e->uc, r->base, r->size) != UC_ERR_OK)
		return mamori_fail(MAMORI_EIO, "emu: cannot unmap 0x%llx", (unsigned long long)r->base);
	for (uint64_t p = 0; p < r->size / EMU_PAGE; p++)
		if (bit(r->dirty, p))
			e->n_dirty--;
	e->mapped -= r->size;
	memmove(&e->regions[at], &e->regions[at + 1], (e->n_regions - at - 1) * sizeof(region *));
	e->n_regions--;
	if (e->last == r)
		e->last = NULL;
	region_free(r);
	return MAMORI_OK;
}

/* The lowest `align`-aligned free gap of `size` bytes in [lo, hi); 0 when
 * there is none. */
uint64_t emu_find_free(mamori_emu *e, uint64_t size, uint64_t lo, uint64_t hi, uint64_t align)
{
	uint64_t cand = (lo + align - 1) & ~(align - 1);
	for (size_t i = 0; i < e->n_regions && cand < hi; i++) {
		const region *r = e->regions[i];
		if (r->base + r->size <= cand)
			continue;
		if (r->base >= cand && r->base - cand >= size)
			break;
		cand = (r->base + r->size + align - 1) & ~(align - 1);
	}
	if (cand >= hi || hi - cand < size)
		return 0;
	return cand;
}

/* Mark page `p` of `r` written (and dirty) by `writer` and open it for
 * writing. False when Unicorn refused. */
static bool mark_page(mamori_emu *e, region *r, uint64_t p, uint64_t writer)
{
	if (bit(r->dirty, p))
		return true;
	if (uc_mem_protect(e->uc, r->base + p * EMU_PAGE, EMU_PAGE, UC_PROT_ALL) != UC_ERR_OK)
		return false;
	r->dirty[p / 8] |= (uint8_t)(1u << (p % 8));
	r->written[p / 8] |= (uint8_t)(1u << (p % 8));
	r->writer[p] = writer;
	r->any_written = true;
	e->n_dirty++;
	return true;
}

static bool mark_range(mamori_emu *e, uint64_t va, uint64_t n, uint64_t writer)
{
	uint64_t end = va + (n ? n : 1);
	if (end < va)
		return false;
	for (uint64_t a = va & ~(EMU_PAGE - 1); a < end; a += EMU_PAGE) {
		region *r = emu_find_region(e, a);
		if (!r || !mark_page(e, r, (a - r->base) / EMU_PAGE, writer))
			return false;
	}
	return true;
}

static bool mapped_range(mamori_emu *e, uint64_t va, uint64_t n)
{
	uint64_t end = va + n;
	if (end < va)
		return false;
	for (uint64_t a = va & ~(EMU_PAGE - 1); a < end; a += EMU_PAGE)
		if (!emu_find_region(e, a))
			return false;
	return true;
}

bool emu_put(mamori_emu *e, uint64_t va, const void *p, size_t n)
{
	if (n == 0)
		return true;
	if (e->ran)
		return emu_gwrite(e, va, p, n);
	return mapped_range(e, va, n) && uc_mem_write(e->uc, va, p, n) == UC_ERR_OK;
}

bool emu_gwrite(mamori_emu *e, uint64_t va, const void *p, size_t n)
{
	if (n == 0)
		return true;
	if (!mapped_range(e, va, n))
		return false;
	if (e->ran && !mark_range(e, va, n, e->api_caller))
		return false;
	return uc_mem_write(e->uc, va, p, n) == UC_ERR_OK;
}

bool emu_get(mamori_emu *e, uint64_t va, void *p, size_t n)
{
	return n == 0 || uc_mem_read(e->uc, va, p, n) == UC_ERR_OK;
}

bool emu_get32(mamori_emu *e, uint64_t va, uint32_t *v)
{
	uint8_t b[4];
	if (!emu_get(e, va, b, 4))
		return false;
	*v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
	return true;
}

bool emu_getptr(mamori_emu *e, uint64_t va, uint64_t *v)
{
	uint8_t b[8] = { 0 };
	size_t w = e->x64 ? 8 : 4;
	if (!emu_get(e, va, b, w))
		return false;
	*v = 0;
	for (size_t i = 0; i < w; i++)
		*v |= (uint64_t)b[i] << (8 * i);
	return true;
}

static void le_bytes(uint8_t *b, uint64_t v, size_t w)
{
	for (size_t i = 0; i < w; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

bool emu_putptr(mamori_emu *e, uint64_t va, uint64_t v)
{
	uint8_t b[8];
	le_bytes(b, v, 8);
	return emu_put(e, va, b, e->x64 ? 8 : 4);
}

bool emu_gwrite32(mamori_emu *e, uint64_t va, uint32_t v)
{
	uint8_t b[4];
	le_bytes(b, v, 4);
	return emu_gwrite(e, va, b, 4);
}

bool emu_gwriteptr(mamori_emu *e, uint64_t va, uint64_t v)
{
	uint8_t b[8];
	le_bytes(b, v, 8);
	return emu_gwrite(e, va, b, e->x64 ? 8 : 4);
}

uint64_t emu_reg(mamori_emu *e, int reg)
{
	uint64_t v = 0;
	uc_reg_read(e->uc, reg, &v);
	if (!e->x64)
		v &= 0xffffffffu;
	return v;
}

void emu_set_reg(mamori_emu *e, int reg, uint64_t v)
{
	uc_reg_write(e->uc, reg, &v);
}

static int pc_reg(const mamori_emu *e)
{
	return e->x64 ? UC_X86_REG_RIP : UC_X86_REG_EIP;
}

static int sp_reg(const mamori_emu *e)
{
	return e->x64 ? UC_X86_REG_RSP : UC_X86_REG_ESP;
}

void emu_stop(mamori_emu *e, mamori_emu_status st, const char *why)
{
	if (e->stopping)
		return;
	e->stopping = true;
	e->status = st;
	if (st == MAMORI_EMU_LIMIT)
		e->limit = why;
	else if (st == MAMORI_EMU_FAULT)
		e->fault = why;
	uc_emu_stop(e->uc);
}

void emu_output(mamori_emu *e, const void *p, size_t n)
{
	if (n > MAX_OUTPUT - e->out_len)
		n = MAX_OUTPUT - e->out_len;
	if (n == 0)
		return;
	if (!e->out && !(e->out = malloc(MAX_OUTPUT)))
		return;
	memcpy(e->out + e->out_len, p, n);
	e->out_len += n;
}

/* Virtual time: 10 ns per instruction (a 100 MHz guest) plus every sleep. */
uint64_t emu_clock_ns(const mamori_emu *e)
{
	return e->insns * 10 + e->sleep_ns;
}

/* ----------------------------------------------------------------- layers */

static void update_insn_stop(mamori_emu *e)
{
	e->insn_stop = e->lim.max_insns;
	if (e->lim.settle_insns && e->n_layers && e->last_layer_insns + e->lim.settle_insns < e->insn_stop)
		e->insn_stop = e->last_layer_insns + e->lim.settle_insns;
}

static void new_layer(mamori_emu *e, region *r, uint64_t page, uint64_t addr)
{
	if (e->n_layers >= e->lim.max_layers) {
		emu_stop(e, MAMORI_EMU_LIMIT, "layers");
		return;
	}
	uint64_t pages = r->size / EMU_PAGE, lo = page, hi = page + 1;
	while (lo > 0 && bit(r->dirty, lo - 1))
		lo--;
	while (hi < pages && bit(r->dirty, hi))
		hi++;
	if (!e->layers && !(e->layers = calloc(e->lim.max_layers, sizeof(*e->layers)))) {
		emu_stop(e, MAMORI_EMU_FAULT, "out of memory");
		return;
	}
	e->layers[e->n_layers++] = (mamori_emu_layer){ .entry = addr,
						       .from = e->prev_block,
						       .writer = r->writer[page],
						       .insns = e->insns,
						       .base = r->base + lo * EMU_PAGE,
						       .size = (hi - lo) * EMU_PAGE };
	if (!e->has_wx) {
		e->has_wx = true;
		e->wx_va = addr;
		e->wx_insns = e->insns;
	}
	e->last_layer_insns = e->insns;
	update_insn_stop(e);
	if (e->lim.stop_at_wx) {
		emu_stop(e, MAMORI_EMU_WX_STOP, NULL);
		return;
	}
	/* The next layer's writes are seen afresh. */
	for (size_t i = 0; i < e->n_regions && e->n_dirty; i++) {
		region *q = e->regions[i];
		for (uint64_t p = 0; p < q->size / EMU_PAGE; p++) {
			if (!bit(q->dirty, p))
				continue;
			q->dirty[p / 8] &= (uint8_t) ~(1u << (p % 8));
			e->n_dirty--;
			uc_mem_protect(e->uc, q->base + p * EMU_PAGE, EMU_PAGE, UC_PROT_READ | UC_PROT_EXEC);
		}
	}
}

/* ------------------------------------------------------------------ hooks */

static void hook_block(uc_engine *uc, uint64_t addr, uint32_t size, void *user)
{
	(void)uc, (void)size;
	mamori_emu *e = user;
	uint64_t prev = e->prev_block;
	e->prev_block = addr;
	if (!e->n_dirty || e->stopping)
		return;
	region *r = emu_find_region(e, addr);
	if (!r)
		return;
	uint64_t p = (addr - r->base) / EMU_PAGE;
	if (!bit(r->dirty, p) || (prev & ~(EMU_PAGE - 1)) == (addr & ~(EMU_PAGE - 1)))
		return;
	e->prev_block = prev;
	new_layer(e, r, p, addr);
	e->prev_block = addr;
}

static void exc_return(mamori_emu *e);

static void hook_code(uc_engine *uc, uint64_t addr, uint32_t size, void *user)
{
	(void)uc, (void)size;
	mamori_emu *e = user;
	if (e->stopping)
		return;
	if (e->insns >= e->insn_stop) {
		if (e->insns >= e->lim.max_insns)
			emu_stop(e, MAMORI_EMU_LIMIT, "insns");
		else
			emu_stop(e, MAMORI_EMU_SETTLED, NULL);
		return;
	}
	if (addr - STUB_LO >= e->stub_span) {
		e->insns++;
		return;
	}
	/* A stub address: an API call, not a guest instruction. */
	if (addr == EXIT_VA) {
		e->exit_code = (uint32_t)emu_reg(e, UC_X86_REG_EAX);
		emu_stop(e, MAMORI_EMU_EXIT, NULL);
	} else if (addr == EXC_RET_VA) {
		exc_return(e);
	} else {
		winapi_dispatch(e, addr);
	}
}

static void raise_pending(mamori_emu *e, uint32_t code, uint64_t addr, uint64_t info0, uint64_t info1,
			  const char *what)
{
	e->exc_pending = true;
	e->exc_code = code;
	e->exc_addr = addr;
	e->exc_info0 = info0;
	e->exc_info1 = info1;
	e->exc_what = what;
}

static bool hook_invalid(uc_engine *uc, uc_mem_type type, uint64_t addr, int size, int64_t value, void *user)
{
	(void)uc, (void)value;
	mamori_emu *e = user;
	if (type == UC_MEM_WRITE_PROT) {
		uint64_t pc = emu_reg(e, pc_reg(e));
		uint64_t n = size > 0 ? (uint64_t)size : 1;
		/* Opened, the store must be retried from the run loop: when the
		 * page was read before, returning true lets Unicorn finish the
		 * store through its stale TLB entry and the bytes are lost. */
		if (mapped_range(e, addr, n) && mark_range(e, addr, n, pc)) {
			e->write_retry = true;
			e->retry_page = addr & ~(EMU_PAGE - 1);
			return false;
		}
	}
	const char *what = "unmapped read";
	uint64_t kind = 0, at = emu_reg(e, pc_reg(e));
	switch (type) {
	case UC_MEM_WRITE_UNMAPPED:
	case UC_MEM_WRITE_PROT: what = "unmapped write", kind = 1; break;
	case UC_MEM_FETCH_UNMAPPED:
	case UC_MEM_FETCH_PROT: what = "unmapped fetch", kind = 8, at = addr; break;
	default: break;
	}
	e->fault_addr = addr;
	raise_pending(e, 0xc0000005u, at, kind, addr, what);
	return false;
}

static void hook_intr(uc_engine *uc, uint32_t intno, void *user)
{
	mamori_emu *e = user;
	uint64_t pc = emu_reg(e, pc_reg(e));
	switch (intno) {
	case 0: raise_pending(e, 0xc0000094u, pc, 0, 0, "integer divide by zero"); break;
	case 1: raise_pending(e, 0x80000004u, pc, 0, 0, "single step"); break;
	case 3: raise_pending(e, 0x80000003u, pc - 1, 0, 0, "breakpoint"); break;
	case 6: raise_pending(e, 0xc000001du, pc, 0, 0, "illegal instruction"); break;
	default: raise_pending(e, 0xc0000005u, pc - 2, 0, 0xffffffffu, "interrupt"); break;
	}
	e->fault_addr = e->exc_addr;
	uc_emu_stop(uc);
}

/* ------------------------------------------------------------- exceptions */

/* CONTEXT offsets of the general registers, per arch. */
typedef struct ctx_reg {
	int reg;
	uint16_t off;
} ctx_reg;

static const ctx_reg ctx32[] = {
	{ UC_X86_REG_EDI, 0x9c }, { UC_X86_REG_ESI, 0xa0 }, { UC_X86_REG_EBX, 0xa4 },
	{ UC_X86_REG_EDX, 0xa8 }, { UC_X86_REG_ECX, 0xac }, { UC_X86_REG_EAX, 0xb0 },
	{ UC_X86_REG_EBP, 0xb4 }, { UC_X86_REG_EIP, 0xb8 }, { UC_X86_REG_EFLAGS, 0xc0 },
	{ UC_X86_REG_ESP, 0xc4 },
};
static const ctx_reg ctx64[] = {
	{ UC_X86_REG_EFLAGS, 0x44 }, { UC_X86_REG_RAX, 0x78 }, { UC_X86_REG_RCX, 0x80 },
	{ UC_X86_REG_RDX, 0x88 },    { UC_X86_REG_RBX, 0x90 }, { UC_X86_REG_RSP, 0x98 },
	{ UC_X86_REG_RBP, 0xa0 },    { UC_X86_REG_RSI, 0xa8 }, { UC_X86_REG_RDI, 0xb0 },
	{ UC_X86_REG_R8, 0xb8 },     { UC_X86_REG_R9, 0xc0 },  { UC_X86_REG_R10, 0xc8 },
	{ UC_X86_REG_R11, 0xd0 },    { UC_X86_REG_R12, 0xd8 }, { UC_X86_REG_R13, 0xe0 },
	{ UC_X86_REG_R14, 0xe8 },    { UC_X86_REG_R15, 0xf0 }, { UC_X86_REG_RIP, 0xf8 },
};
#define CTX32_SIZE 0x2cc
#define CTX64_SIZE 0x4d0

/* Call guest function `fn` with `args`, returning to EXC_RET_VA, on a
 * stack below `sp`. */
static bool guest_call(mamori_emu *e, uint64_t fn, const uint64_t *args, unsigned n, uint64_t sp)
{
	if (!e->x64) {
		sp = (sp & ~0xfull) - 4ull * n - 4;
		for (unsigned i = 0; i < n; i++)
			if (!emu_gwrite32(e, sp + 4 + 4ull * i, (uint32_t)args[i]))
				return false;
		if (!emu_gwrite32(e, sp, (uint32_t)EXC_RET_VA))
			return false;
	} else {
		static const int argreg[] = { UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_R8, UC_X86_REG_R9 };
		sp = (sp & ~0xfull) - 0x28;
		for (unsigned i = 0; i < n && i < 4; i++)
			emu_set_reg(e, argreg[i], args[i]);
		if (!emu_gwriteptr(e, sp, EXC_RET_VA))
			return false;
	}
	emu_set_reg(e, sp_reg(e), sp);
	emu_set_reg(e, pc_reg(e), fn);
	return true;
}

static void exc_unhandled(mamori_emu *e, exc_state *s)
{
	(void)s;
	emu_stop(e, MAMORI_EMU_FAULT, e->exc_what ? e->exc_what : "unhandled exception");
}

/* Call the next handler of the innermost exception, or give up. */
static void exc_next(mamori_emu *e)
{
	exc_state *s = &e->exc[e->exc_depth - 1];
	for (int guard = 0; guard < 256; guard++) {
		switch (s->stage) {
		case 0:
			if (s->veh_idx < e->n_veh) {
				s->calling = 0;
				uint64_t a[1] = { s->ptrs_va };
				if (!guest_call(e, e->veh[s->veh_idx++], a, 1, s->frame_sp))
					goto broken;
				return;
			}
			s->stage = e->x64 ? 2 : 1;
			if (!e->x64 && !emu_getptr(e, TEB_VA, &s->seh_frame))
				s->seh_frame = 0xffffffffu;
			break;
		case 1: {
			uint64_t frame = s->seh_frame, handler = 0, next = 0;
			if (frame == 0xffffffffu || frame == 0 || !emu_getptr(e, frame, &next) ||
			    !emu_getptr(e, frame + 4, &handler)) {
				s->stage = 2;
				break;
			}
			s->seh_frame = next;
			s->calling = 1;
			uint64_t a[4] = { s->rec_va, frame, s->ctx_va, 0 };
			if (!guest_call(e, handler, a, 4, s->frame_sp))
				goto broken;
			return;
		}
		case 2:
			s->stage = 3;
			if (e->unhandled_filter) {
				s->calling = 2;
				uint64_t a[1] = { s->ptrs_va };
				if (!guest_call(e, e->unhandled_filter, a, 1, s->frame_sp))
					goto broken;
				return;
			}
			break;
		default: exc_unhandled(e, s); return;
		}
	}
broken:
	emu_stop(e, MAMORI_EMU_FAULT, "exception dispatch: stack unwritable");
}

/* Resume the guest from the (possibly modified) CONTEXT of the innermost
 * exception. */
static void exc_resume(mamori_emu *e)
{
	exc_state *s = &e->exc[e->exc_depth - 1];
	const ctx_reg *t = e->x64 ? ctx64 : ctx32;
	size_t n = e->x64 ? sizeof(ctx64) / sizeof(*ctx64) : sizeof(ctx32) / sizeof(*ctx32);
	uint8_t ctx[CTX64_SIZE];
	if (!emu_get(e, s->ctx_va, ctx, e->x64 ? CTX64_SIZE : CTX32_SIZE)) {
		emu_stop(e, MAMORI_EMU_FAULT, "exception dispatch: context unreadable");
		return;
	}
	e->exc_depth--;
	for (size_t i = 0; i < n; i++) {
		uint64_t v = 0;
		size_t w = e->x64 && t[i].reg != UC_X86_REG_EFLAGS ? 8 : 4;
		for (size_t k = 0; k < w; k++)
			v |= (uint64_t)ctx[t[i].off + k] << (8 * k);
		if (t[i].reg != pc_reg(e))
			emu_set_reg(e, t[i].reg, v);
	}
	uint64_t pc = 0;
	for (size_t k = 0; k < (e->x64 ? 8u : 4u); k++)
		pc |= (uint64_t)ctx[(e->x64 ? 0xf8 : 0xb8) + k] << (8 * k);
	emu_set_reg(e, pc_reg(e), pc);
}

/* A handler returned to EXC_RET_VA. */
static void exc_return(mamori_emu *e)
{
	if (e->exc_depth == 0) {
		emu_stop(e, MAMORI_EMU_FAULT, "return to the exception dispatcher outside an exception");
		return;
	}
	exc_state *s = &e->exc[e->exc_depth - 1];
	uint32_t r = (uint32_t)emu_reg(e, UC_X86_REG_EAX);
	switch (s->calling) {
	case 0:
		if (r == 0xffffffffu)
			exc_resume(e);
		else
			exc_next(e);
		break;
	case 1:
		if (r == 0)
			exc_resume(e);
		else
			exc_next(e);
		break;
	default:
		if (r == 0xffffffffu) {
			exc_resume(e);
		} else if (r == 1) {
			e->exit_code = s->code;
			emu_stop(e, MAMORI_EMU_EXIT, NULL);
		} else {
			exc_unhandled(e, s);
		}
		break;
	}
}

/* Start dispatching the pending exception: EXCEPTION_RECORD, CONTEXT and
 * EXCEPTION_POINTERS go on the guest stack below the faulting frame. */
static void exc_begin(mamori_emu *e)
{
	e->exc_pending = false;
	uint64_t sp = emu_reg(e, sp_reg(e));
	/* A handler that resumed by itself (set the stack and jumped instead
	 * of returning) left its exception behind: the stack is above it now. */
	while (e->exc_depth > 0 && sp > e->exc[e->exc_depth - 1].ctx_va)
		e->exc_depth--;
	if (e->exc_depth >= MAX_EXC_DEPTH) {
		emu_stop(e, MAMORI_EMU_FAULT, "nested exceptions");
		return;
	}
	uint8_t ctx[CTX64_SIZE] = { 0 };
	const ctx_reg *t = e->x64 ? ctx64 : ctx32;
	size_t n = e->x64 ? sizeof(ctx64) / sizeof(*ctx64) : sizeof(ctx32) / sizeof(*ctx32);
	for (size_t i = 0; i < n; i++) {
		uint64_t v = t[i].reg == pc_reg(e) ? e->exc_addr : emu_reg(e, t[i].reg);
		le_bytes(ctx + t[i].off, v, e->x64 && t[i].reg != UC_X86_REG_EFLAGS ? 8 : 4);
	}
	le_bytes(ctx + (e->x64 ? 0x30 : 0), e->x64 ? 0x10001f : 0x1003f, 4); /* ContextFlags: CONTEXT_ALL */
	size_t ctx_size = e->x64 ? CTX64_SIZE : CTX32_SIZE, rec_size = e->x64 ? 0x98 : 0x50;
	uint64_t ctx_va = ((sp - 0x200) & ~0xfull) - ((ctx_size + 15) & ~15ull);
	uint64_t rec_va = ctx_va - rec_size - 8;
	rec_va &= ~0xfull;
	uint64_t ptrs_va = rec_va - 16;
	uint8_t rec[0x98] = { 0 };
	le_bytes(rec, e->exc_code, 4);
	if (e->x64) {
		le_bytes(rec + 0x10, e->exc_addr, 8);
		le_bytes(rec + 0x18, e->exc_code == 0xc0000005u ? 2 : 0, 4);
		le_bytes(rec + 0x20, e->exc_info0, 8);
		le_bytes(rec + 0x28, e->exc_info1, 8);
	} else {
		le_bytes(rec + 0xc, e->exc_addr, 4);
		le_bytes(rec + 0x10, e->exc_code == 0xc0000005u ? 2 : 0, 4);
		le_bytes(rec + 0x14, e->exc_info0, 4);
		le_bytes(rec + 0x18, e->exc_info1, 4);
	}
	uint8_t ptrs[16];
	size_t w = e->x64 ? 8 : 4;
	le_bytes(ptrs, rec_va, w);
	le_bytes(ptrs + w, ctx_va, w);
	if (sp < 0x1000 || !emu_gwrite(e, ctx_va, ctx, ctx_size) || !emu_gwrite(e, rec_va, rec, rec_size) ||
	    !emu_gwrite(e, ptrs_va, ptrs, 2 * w)) {
		emu_stop(e, MAMORI_EMU_FAULT, e->exc_what ? e->exc_what : "exception");
		return;
	}
	e->exc[e->exc_depth++] = (exc_state){ .code = e->exc_code,
					      .rec_va = rec_va,
					      .ctx_va = ctx_va,
					      .ptrs_va = ptrs_va,
					      .frame_sp = ptrs_va - 0x40,
					      .stage = 0 };
	exc_next(e);
}

void emu_raise(mamori_emu *e, uint32_t code, uint64_t addr, const char *what)
{
	raise_pending(e, code, addr, 0, 0, what);
	e->fault_addr = addr;
}

void emu_dispatch_exception(mamori_emu *e)
{
	if (e->exc_pending)
		exc_begin(e);
}

/* ------------------------------------------------------------------ setup */

/* A GDT descriptor: `access` 0xf2 is a present ring-3 read/write data
 * segment; flags 0x4 is 32-bit, byte granularity. */
static uint64_t gdt_entry(uint32_t base, uint32_t limit, uint8_t access, uint8_t flags)
{
	uint64_t d = limit & 0xffffu;
	d |= (uint64_t)(base & 0xffffffu) << 16;
	d |= (uint64_t)access << 40;
	d |= (uint64_t)((limit >> 16) & 0xfu) << 48;
	d |= (uint64_t)(flags & 0xfu) << 52;
	d |= (uint64_t)((base >> 24) & 0xffu) << 56;
	return d;
}

/* FS (x86) or GS base (x64) at the TEB, the stack pointer with the exit
 * address as the return address of the entry. */
static int setup_cpu(mamori_emu *e)
{
	if (!e->x64) {
		/* Unicorn's 32-bit mode has no FS base register: FS must name a GDT
		 * descriptor whose base is the TEB. Loading a segment register
		 * recomputes the 32-bit stack flag from SS's descriptor, so SS
		 * gets a flat 32-bit one too (ring 0: SS's DPL must equal the CPL,
		 * and Unicorn runs at CPL 0). */
		uint64_t desc[3] = { 0, gdt_entry((uint32_t)TEB_VA, 0xfff, 0xf2, 0x4),
				     gdt_entry(0, 0xfffff, 0x92, 0xc) };
		uint8_t gdt[sizeof(desc)];
		for (size_t i = 0; i < sizeof(gdt); i++)
			gdt[i] = (uint8_t)(desc[i / 8] >> (8 * (i % 8)));
		if (!emu_put(e, GDT_VA, gdt, sizeof(gdt)))
			return mamori_fail(MAMORI_EIO, "emu: cannot write the GDT");
		uc_x86_mmr gdtr = { .base = GDT_VA, .limit = sizeof(gdt) - 1 };
		uint32_t fs = (1u << 3) | 3u, ss = 2u << 3;
		if (uc_reg_write(e->uc, UC_X86_REG_GDTR, &gdtr) != UC_ERR_OK ||
		    uc_reg_write(e->uc, UC_X86_REG_SS, &ss) != UC_ERR_OK ||
		    uc_reg_write(e->uc, UC_X86_REG_FS, &fs) != UC_ERR_OK)
			return mamori_fail(MAMORI_EIO, "emu: cannot load FS");
	} else {
		uint64_t gs = TEB_VA;
		if (uc_reg_write(e->uc, UC_X86_REG_GS_BASE, &gs) != UC_ERR_OK)
			return mamori_fail(MAMORI_EIO, "emu: cannot set GS base");
	}
	uint64_t sp = STACK_BASE + STACK_SIZE - 0x100 - (e->x64 ? 8 : 4);
	if (!emu_putptr(e, sp, EXIT_VA))
		return mamori_fail(MAMORI_EIO, "emu: cannot write the stack");
	emu_set_reg(e, sp_reg(e), sp);
	return MAMORI_OK;
}

/* Engine, hooks and the Windows environment: everything but the code. */
static int emu_create(mamori_emu **out, mamori_arch arch, const mamori_emu_limits *lim)
{
	int rc = MAMORI_OK;
	mamori_emu *e = calloc(1, sizeof(*e));
	if (!e)
		return mamori_fail(MAMORI_ENOMEM, "emu: new");
	e->arch = arch;
	e->x64 = arch == MAMORI_ARCH_X86_64;
	e->lim = mamori_emu_limits_default();
	if (lim) {
		if (lim->max_insns)
			e->lim.max_insns = lim->max_insns;
		if (lim->max_memory)
			e->lim.max_memory = lim->max_memory;
		if (lim->max_api_calls)
			e->lim.max_api_calls = lim->max_api_calls;
		if (lim->max_layers)
			e->lim.max_layers = lim->max_layers;
		if (lim->max_trace)
			e->lim.max_trace = lim->max_trace;
		if (lim->cmdline)
			e->lim.cmdline = lim->cmdline;
		e->lim.settle_insns = lim->settle_insns;
		e->lim.stop_at_wx = lim->stop_at_wx;
	}
	if (arch != MAMORI_ARCH_X86 && arch != MAMORI_ARCH_X86_64) {
		rc = mamori_fail(MAMORI_EUNSUPPORTED, "emu: arch %d", (int)arch);
		goto done;
	}
	/* The caller's string need not outlive this call. */
	if (strlen(e->lim.cmdline) > 8191) {
		rc = mamori_fail(MAMORI_EINVAL, "emu: command line longer than 8191 bytes");
		goto done;
	}
	if (!(e->cmdline = strdup(e->lim.cmdline))) {
		rc = mamori_fail(MAMORI_ENOMEM, "emu: command line");
		goto done;
	}
	e->lim.cmdline = e->cmdline;
	uc_err err = uc_open(UC_ARCH_X86, e->x64 ? UC_MODE_64 : UC_MODE_32, &e->uc);
	if (err != UC_ERR_OK) {
		rc = mamori_fail(MAMORI_EIO, "emu: uc_open: %s", uc_strerror(err));
		goto done;
	}
	if ((rc = emu_map(e, STACK_BASE, STACK_SIZE, MAMORI_EMU_REGION_STACK, NULL, 0x04)) ||
	    (rc = emu_map(e, SYS_BASE, SYS_SIZE, MAMORI_EMU_REGION_SYSTEM, NULL, 0x04)) ||
	    (rc = setup_cpu(e)) || (rc = winenv_setup(e)))
		goto done;
	uc_hook h;
	if (uc_hook_add(e->uc, &h, UC_HOOK_BLOCK, (void *)hook_block, e, 1, 0) != UC_ERR_OK ||
	    uc_hook_add(e->uc, &h, UC_HOOK_CODE, (void *)hook_code, e, 1, 0) != UC_ERR_OK ||
	    uc_hook_add(e->uc, &h, UC_HOOK_MEM_INVALID, (void *)hook_invalid, e, 1, 0) != UC_ERR_OK ||
	    uc_hook_add(e->uc, &h, UC_HOOK_INTR, (void *)hook_intr, e, 1, 0) != UC_ERR_OK) {
		rc = mamori_fail(MAMORI_EIO, "emu: cannot add hooks");
		goto done;
	}
done:
	if (rc) {
		mamori_emu_free(e);
		e = NULL;
	}
	*out = e;
	return rc;
}

int mamori_emu_new_raw(mamori_emu **out, mamori_arch arch, uint64_t va, const uint8_t *code, size_t size,
		       const mamori_emu_limits *lim)
{
	*out = NULL;
	if ((va & (EMU_PAGE - 1)) || size == 0 || !code || va < ALLOC_LO || va >= ALLOC_HI ||
	    size > ALLOC_HI - va)
		return mamori_fail(MAMORI_EINVAL, "emu: raw code at 0x%llx+%zu", (unsigned long long)va,
				   size);
	mamori_emu *e = NULL;
	int rc = emu_create(&e, arch, lim);
	if (rc)
		return rc;
	if ((rc = emu_map(e, va, round_up(size), MAMORI_EMU_REGION_ALLOC, NULL, 0x40)))
		goto done;
	if (!emu_put(e, va, code, size)) {
		rc = mamori_fail(MAMORI_EIO, "emu: cannot write the code");
		goto done;
	}
	e->entry = e->start_pc = va;
done:
	if (rc) {
		mamori_emu_free(e);
		e = NULL;
	}
	*out = e;
	return rc;
}

int mamori_emu_new(mamori_emu **out, const mamori_binary *b, const mamori_emu_limits *lim)
{
	*out = NULL;
	if (!b || (b->format != MAMORI_FMT_PE32 && b->format != MAMORI_FMT_PE32PLUS))
		return mamori_fail(MAMORI_EUNSUPPORTED, "emu: only PE32 and PE32+ are emulated");
	if (b->is_dll)
		return mamori_fail(MAMORI_EUNSUPPORTED, "emu: DLLs are not emulated");
	if (!b->has_entry)
		return mamori_fail(MAMORI_EUNSUPPORTED, "emu: the image has no entry point");
	mamori_emu *e = NULL;
	int rc = emu_create(&e, b->arch, lim);
	if (rc)
		return rc;
	rc = winenv_load_image(e, b);
	if (rc) {
		mamori_emu_free(e);
		e = NULL;
	}
	*out = e;
	return rc;
}

int mamori_emu_run(mamori_emu *e, mamori_emu_report *out)
{
	memset(out, 0, sizeof(*out));
	if (!e || e->ran)
		return mamori_fail(MAMORI_EINVAL, "emu: run once per emulator");
	e->ran = true;
	/* Write permission goes now, after the loader wrote the image; see
	 * mark_page(). */
	for (size_t i = 0; i < e->n_regions; i++) {
		uc_err perr = uc_mem_protect(e->uc, e->regions[i]->base, e->regions[i]->size,
					     UC_PROT_READ | UC_PROT_EXEC);
		if (perr != UC_ERR_OK)
			return mamori_fail(MAMORI_EIO, "emu: protect: %s", uc_strerror(perr));
	}
	update_insn_stop(e);
	uint64_t pc = e->start_pc;
	e->prev_block = pc;
	uint64_t exceptions = 0, last_retry_page = ~0ull;
	for (;;) {
		e->exc_pending = false;
		e->write_retry = false;
		uc_err err = uc_emu_start(e->uc, pc, 0, 0, 0);
		if (e->stopping)
			break;
		if (e->write_retry && !e->exc_pending) {
			/* The faulting instruction runs again (and is counted once). */
			/* Stuck: the same instruction faults on the same page again
			 * (a rep movs crossing into page after page is progress). */
			uint64_t at = emu_reg(e, pc_reg(e));
			e->retries = at == pc && e->retry_page == last_retry_page ? e->retries + 1 : 0;
			last_retry_page = e->retry_page;
			if (e->retries > 16) {
				e->fault_addr = at;
				emu_stop(e, MAMORI_EMU_FAULT, "write to a page that stays protected");
				break;
			}
			e->insns--;
			pc = at;
			continue;
		}
		e->retries = 0;
		if (!e->exc_pending && err == UC_ERR_INSN_INVALID) {
			uint64_t at = emu_reg(e, pc_reg(e));
			raise_pending(e, 0xc000001du, at, 0, 0, "illegal instruction");
			e->fault_addr = at;
		}
		if (e->exc_pending) {
			if (++exceptions > MAX_EXCEPTIONS) {
				emu_stop(e, MAMORI_EMU_FAULT, "exception storm");
				break;
			}
			exc_begin(e);
			if (e->stopping)
				break;
			pc = emu_reg(e, pc_reg(e));
			continue;
		}
		e->fault_addr = emu_reg(e, pc_reg(e));
		emu_stop(e, MAMORI_EMU_FAULT, err != UC_ERR_OK ? uc_strerror(err) : "halted");
		break;
	}
	out->status = e->status;
	out->limit = e->limit;
	out->fault = e->fault;
	out->pc = emu_reg(e, pc_reg(e));
	out->insns = e->insns;
	out->has_wx = e->has_wx;
	out->wx_va = e->wx_va;
	out->wx_insns = e->wx_insns;
	out->fault_addr = e->status == MAMORI_EMU_FAULT ? e->fault_addr : 0;
	out->exit_code = e->exit_code;
	out->api_calls = e->api_calls;
	out->unknown_api_calls = e->unknown_api_calls;
	out->n_layers = e->n_layers;
	return MAMORI_OK;
}

void mamori_emu_free(mamori_emu *e)
{
	if (!e)
		return;
	if (e->uc)
		uc_close(e->uc);
	for (size_t i = 0; i < e->n_regions; i++)
		region_free(e->regions[i]);
	free(e->regions);
	for (size_t i = 0; i < e->n_modules; i++)
		free(e->modules[i].stub_api);
	free(e->modules);
	for (size_t i = 0; i < e->n_apis; i++)
		free(e->apis[i].name);
	free(e->apis);
	free(e->trace);
	free(e->layers);
	free(e->heap_free);
	free(e->out);
	free(e->cmdline);
	free(e);
}

/* -------------------------------------------------------------- accessors */

size_t mamori_emu_layer_count(const mamori_emu *e)
{
	return e ? e->n_layers : 0;
}

const mamori_emu_layer *mamori_emu_layer_at(const mamori_emu *e, size_t i)
{
	return e && i < e->n_layers ? &e->layers[i] : NULL;
}

size_t mamori_emu_trace_count(const mamori_emu *e)
{
	return e ? e->n_trace : 0;
}

const mamori_emu_api_call *mamori_emu_trace_at(const mamori_emu *e, size_t i)
{
	return e && i < e->n_trace ? &e->trace[i] : NULL;
}

static void api_info(const mamori_emu *e, const api_entry *a, mamori_emu_api_info *out)
{
	*out = (mamori_emu_api_info){ .dll = e->modules[a->module].name,
				      .name = a->name,
				      .ordinal = a->ordinal,
				      .implemented = a->def && a->def->fn,
				      .va = a->va };
}

int mamori_emu_api_by_id(const mamori_emu *e, uint32_t api, mamori_emu_api_info *out)
{
	if (!e || api >= e->n_apis)
		return mamori_fail(MAMORI_ENOTFOUND, "emu: no API %u", api);
	api_info(e, &e->apis[api], out);
	return MAMORI_OK;
}

int mamori_emu_api_at(const mamori_emu *e, uint64_t va, mamori_emu_api_info *out)
{
	if (e) {
		module *m = winenv_module_at((mamori_emu *)e, va);
		if (m && va >= m->stub_base && (va - m->stub_base) % 8 == 0 &&
		    (va - m->stub_base) / 8 < m->n_stubs) {
			api_info(e, &e->apis[m->stub_api[(va - m->stub_base) / 8]], out);
			return MAMORI_OK;
		}
		for (size_t i = 0; m && i < e->n_apis; i++) {
			if (e->apis[i].is_data && e->apis[i].va == va) {
				api_info(e, &e->apis[i], out);
				return MAMORI_OK;
			}
		}
	}
	return mamori_fail(MAMORI_ENOTFOUND, "emu: no export at 0x%llx", (unsigned long long)va);
}

size_t mamori_emu_region_count(const mamori_emu *e)
{
	return e ? e->n_regions : 0;
}

int mamori_emu_region_at(const mamori_emu *e, size_t i, mamori_emu_region *out)
{
	if (!e || i >= e->n_regions)
		return mamori_fail(MAMORI_ENOTFOUND, "emu: no region %zu", i);
	const region *r = e->regions[i];
	*out = (mamori_emu_region){
		.base = r->base, .size = r->size, .kind = r->kind, .written = r->any_written, .name = r->name
	};
	return MAMORI_OK;
}

int mamori_emu_read(const mamori_emu *e, uint64_t va, void *buf, size_t n)
{
	if (!e || (n && uc_mem_read(e->uc, va, buf, n) != UC_ERR_OK))
		return mamori_fail(MAMORI_ENOTFOUND, "emu: 0x%llx+%zu not mapped", (unsigned long long)va, n);
	return MAMORI_OK;
}

bool mamori_emu_page_written(const mamori_emu *e, uint64_t va)
{
	if (!e)
		return false;
	region *r = emu_find_region((mamori_emu *)e, va);
	return r && bit(r->written, (va - r->base) / EMU_PAGE);
}

uint64_t mamori_emu_image_base(const mamori_emu *e)
{
	return e ? e->image_base : 0;
}

mamori_arch mamori_emu_arch(const mamori_emu *e)
{
	return e ? e->arch : MAMORI_ARCH_X86;
}

const uint8_t *mamori_emu_output(const mamori_emu *e, size_t *out_len)
{
	*out_len = e ? e->out_len : 0;
	return e && e->out ? e->out : (const uint8_t *)"";
}
