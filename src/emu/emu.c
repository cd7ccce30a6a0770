/*
 * The first layer of the emulator: map a PE image (or raw code) into
 * Unicorn, give it a stack and a TEB/PEB, run it under limits, and track
 * which pages the guest writes so that executing one of them afterwards is
 * seen (write-then-execute).
 *
 * Fixed system area (both archs, below 2 GiB so 32-bit code reaches it):
 * stack [0x7fe00000, 0x7ff00000), then at 0x7ffd0000 a 64 KiB block with
 * the GDT, the TEB, the PEB and the exit page. An image overlapping it is
 * refused for now (no relocation yet). Every page is mapped RWX, since the
 * stubs we target decrypt their own sections; page protections come with
 * VirtualProtect in the next layer.
 *
 * Counting: a UC_HOOK_CODE counts instructions exactly (Unicorn's own
 * `count` argument costs the same per-instruction helper and does not tell
 * the count at an event). Write-then-execute is checked per block, which is
 * cheaper: UC_HOOK_BLOCK, with a cache of the last region looked up.
 */
#include <stdlib.h>
#include <string.h>

#include <unicorn/unicorn.h>

#include "mamori/emu.h"

#define PAGE	    0x1000ull
#define STACK_BASE  0x7fe00000ull
#define STACK_SIZE  0x100000ull
#define SYS_BASE    0x7ffd0000ull
#define SYS_SIZE    0x10000ull
#define GDT_VA	    (SYS_BASE + 0x0000)
#define TEB_VA	    (SYS_BASE + 0x2000)
#define PEB_VA	    (SYS_BASE + 0x8000)
#define EXIT_VA	    (SYS_BASE + 0xf000)
#define RESERVED_LO STACK_BASE
#define RESERVED_HI (SYS_BASE + SYS_SIZE)
#define MAX_REGIONS 8

/* One mapped region and its bitmap of pages written during the run. */
typedef struct region {
	uint64_t base, size;
	uint8_t *written; /* one bit per page */
} region;

struct mamori_emu {
	uc_engine *uc;
	mamori_arch arch;
	mamori_emu_limits lim;
	uint64_t entry;
	uint64_t mapped;
	region regions[MAX_REGIONS];
	size_t n_regions;
	const region *last; /* lookup cache: execution and writes stay local */
	bool ran;
	/* run state, written by the hooks */
	uint64_t insns;
	bool limit_hit, wx_stop, faulted, has_wx;
	uint64_t wx_va, wx_insns, fault_addr;
};

mamori_emu_limits mamori_emu_limits_default(void)
{
	return (mamori_emu_limits){ .max_insns = 50000000ull,
				    .max_memory = 256ull << 20,
				    .stop_at_wx = false };
}

const char *mamori_emu_status_name(mamori_emu_status s)
{
	switch (s) {
	case MAMORI_EMU_EXIT: return "exit";
	case MAMORI_EMU_WX_STOP: return "wx_stop";
	case MAMORI_EMU_LIMIT: return "limit";
	case MAMORI_EMU_FAULT: return "fault";
	}
	return "?";
}

static uint64_t round_up(uint64_t v)
{
	return (v + PAGE - 1) & ~(PAGE - 1);
}

static const region *find_region(mamori_emu *e, uint64_t va)
{
	if (e->last && va - e->last->base < e->last->size)
		return e->last;
	for (size_t i = 0; i < e->n_regions; i++) {
		if (va - e->regions[i].base < e->regions[i].size) {
			e->last = &e->regions[i];
			return e->last;
		}
	}
	return NULL;
}

/* Map [base, base+size) (page-aligned) RWX and track writes to it. */
static int map_region(mamori_emu *e, uint64_t base, uint64_t size)
{
	if (e->n_regions == MAX_REGIONS)
		return mamori_fail(MAMORI_ELIMIT, "emu: too many regions");
	if (size > e->lim.max_memory || e->mapped > e->lim.max_memory - size)
		return mamori_fail(MAMORI_ELIMIT, "emu: mapping %llu bytes exceeds max_memory %llu",
				   (unsigned long long)size, (unsigned long long)e->lim.max_memory);
	uint8_t *bits = calloc((size / PAGE + 7) / 8, 1);
	if (!bits)
		return mamori_fail(MAMORI_ENOMEM, "emu: page bitmap");
	uc_err err = uc_mem_map(e->uc, base, size, UC_PROT_ALL);
	if (err != UC_ERR_OK) {
		free(bits);
		return mamori_fail(MAMORI_EIO, "emu: cannot map 0x%llx+0x%llx: %s", (unsigned long long)base,
				   (unsigned long long)size, uc_strerror(err));
	}
	e->regions[e->n_regions++] = (region){ .base = base, .size = size, .written = bits };
	e->mapped += size;
	return MAMORI_OK;
}

static int put(mamori_emu *e, uint64_t va, const void *p, size_t n)
{
	uc_err err = uc_mem_write(e->uc, va, p, n);
	if (err != UC_ERR_OK)
		return mamori_fail(MAMORI_EIO, "emu: write at 0x%llx: %s", (unsigned long long)va,
				   uc_strerror(err));
	return MAMORI_OK;
}

static int put_ptr(mamori_emu *e, uint64_t va, uint64_t v)
{
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	return put(e, va, b, e->arch == MAMORI_ARCH_X86 ? 4 : 8);
}

/* ------------------------------------------------------------------ hooks */

/* Write tracking by first-write faults: every page starts without write
 * permission; the first store to it lands here, marks it and opens it, so
 * later stores to it cost nothing (a UC_HOOK_MEM_WRITE would run on every
 * store). Returns false when the fault is not ours to absorb. */
static bool mark_written(mamori_emu *e, uint64_t addr, int size)
{
	const region *r = find_region(e, addr);
	if (!r)
		return false;
	uint64_t last = addr + (uint64_t)(size > 0 ? size : 1) - 1;
	if (last - r->base >= r->size)
		last = r->base + r->size - 1;
	uint64_t first_page = (addr - r->base) / PAGE, last_page = (last - r->base) / PAGE;
	bool opened = false;
	for (uint64_t p = first_page; p <= last_page; p++) {
		if (r->written[p / 8] & (1u << (p % 8)))
			continue;
		if (uc_mem_protect(e->uc, r->base + p * PAGE, PAGE, UC_PROT_ALL) != UC_ERR_OK)
			return false;
		r->written[p / 8] |= (uint8_t)(1u << (p % 8));
		opened = true;
	}
	return opened;
}

static void hook_block(uc_engine *uc, uint64_t addr, uint32_t size, void *user)
{
	(void)size;
	mamori_emu *e = user;
	if (e->has_wx && !e->lim.stop_at_wx)
		return;
	const region *r = find_region(e, addr);
	if (!r)
		return;
	uint64_t p = (addr - r->base) / PAGE;
	if (!(r->written[p / 8] & (1u << (p % 8))))
		return;
	if (!e->has_wx) {
		e->has_wx = true;
		e->wx_va = addr;
		e->wx_insns = e->insns;
	}
	if (e->lim.stop_at_wx) {
		e->wx_stop = true;
		uc_emu_stop(uc);
	}
}

static void hook_code(uc_engine *uc, uint64_t addr, uint32_t size, void *user)
{
	(void)addr, (void)size;
	mamori_emu *e = user;
	if (e->wx_stop)
		return;
	if (e->insns >= e->lim.max_insns) {
		e->limit_hit = true;
		uc_emu_stop(uc);
		return;
	}
	e->insns++;
}

static bool hook_invalid(uc_engine *uc, uc_mem_type type, uint64_t addr, int size, int64_t value, void *user)
{
	(void)uc, (void)value;
	mamori_emu *e = user;
	if (type == UC_MEM_WRITE_PROT && mark_written(e, addr, size))
		return true;
	e->faulted = true;
	e->fault_addr = addr;
	return false;
}

static uint64_t read_pc(mamori_emu *e)
{
	uint64_t pc = 0;
	if (e->arch == MAMORI_ARCH_X86) {
		uint32_t eip = 0;
		uc_reg_read(e->uc, UC_X86_REG_EIP, &eip);
		pc = eip;
	} else {
		uc_reg_read(e->uc, UC_X86_REG_RIP, &pc);
	}
	return pc;
}

static void hook_intr(uc_engine *uc, uint32_t intno, void *user)
{
	(void)intno;
	mamori_emu *e = user;
	e->faulted = true;
	e->fault_addr = read_pc(e);
	uc_emu_stop(uc);
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

/* Engine, hooks, stack, TEB/PEB and the exit page: everything but the code. */
static int emu_create(mamori_emu **out, mamori_arch arch, const mamori_emu_limits *lim)
{
	int rc = MAMORI_OK;
	mamori_emu *e = calloc(1, sizeof(*e));
	if (!e)
		return mamori_fail(MAMORI_ENOMEM, "emu: new");
	e->arch = arch;
	e->lim = mamori_emu_limits_default();
	if (lim) {
		if (lim->max_insns)
			e->lim.max_insns = lim->max_insns;
		if (lim->max_memory)
			e->lim.max_memory = lim->max_memory;
		e->lim.stop_at_wx = lim->stop_at_wx;
	}
	if (arch != MAMORI_ARCH_X86 && arch != MAMORI_ARCH_X86_64) {
		rc = mamori_fail(MAMORI_EUNSUPPORTED, "emu: arch %d", (int)arch);
		goto done;
	}
	uc_err err = uc_open(UC_ARCH_X86, arch == MAMORI_ARCH_X86 ? UC_MODE_32 : UC_MODE_64, &e->uc);
	if (err != UC_ERR_OK) {
		rc = mamori_fail(MAMORI_EIO, "emu: uc_open: %s", uc_strerror(err));
		goto done;
	}
	if ((rc = map_region(e, STACK_BASE, STACK_SIZE)) || (rc = map_region(e, SYS_BASE, SYS_SIZE)))
		goto done;

	bool x86 = arch == MAMORI_ARCH_X86;
	/* NT_TIB: ExceptionList (end of chain on x86), StackBase, StackLimit, Self; then the PEB. */
	if ((rc = put_ptr(e, TEB_VA, x86 ? 0xffffffffu : 0)) ||
	    (rc = put_ptr(e, TEB_VA + (x86 ? 4 : 8), STACK_BASE + STACK_SIZE)) ||
	    (rc = put_ptr(e, TEB_VA + (x86 ? 8 : 0x10), STACK_BASE)) ||
	    (rc = put_ptr(e, TEB_VA + (x86 ? 0x18 : 0x30), TEB_VA)) ||
	    (rc = put_ptr(e, TEB_VA + (x86 ? 0x30 : 0x60), PEB_VA)))
		goto done;
	static const uint8_t hlt = 0xf4;
	if ((rc = put(e, EXIT_VA, &hlt, 1)))
		goto done;

	if (x86) {
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
		if ((rc = put(e, GDT_VA, gdt, sizeof(gdt))))
			goto done;
		uc_x86_mmr gdtr = { .base = GDT_VA, .limit = sizeof(gdt) - 1 };
		uint32_t fs = (1u << 3) | 3u, ss = 2u << 3;
		if (uc_reg_write(e->uc, UC_X86_REG_GDTR, &gdtr) != UC_ERR_OK ||
		    uc_reg_write(e->uc, UC_X86_REG_SS, &ss) != UC_ERR_OK ||
		    uc_reg_write(e->uc, UC_X86_REG_FS, &fs) != UC_ERR_OK) {
			rc = mamori_fail(MAMORI_EIO, "emu: cannot load FS");
			goto done;
		}
		uint32_t esp = (uint32_t)(STACK_BASE + STACK_SIZE - 0x100 - 4);
		if ((rc = put_ptr(e, esp, EXIT_VA)))
			goto done;
		uc_reg_write(e->uc, UC_X86_REG_ESP, &esp);
	} else {
		uint64_t gs = TEB_VA;
		uint64_t rsp = STACK_BASE + STACK_SIZE - 0x100 - 8;
		if (uc_reg_write(e->uc, UC_X86_REG_GS_BASE, &gs) != UC_ERR_OK) {
			rc = mamori_fail(MAMORI_EIO, "emu: cannot set GS base");
			goto done;
		}
		if ((rc = put_ptr(e, rsp, EXIT_VA)))
			goto done;
		uc_reg_write(e->uc, UC_X86_REG_RSP, &rsp);
	}

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

static bool overlaps_reserved(uint64_t base, uint64_t size)
{
	return base < RESERVED_HI && base + size > RESERVED_LO;
}

int mamori_emu_new_raw(mamori_emu **out, mamori_arch arch, uint64_t va, const uint8_t *code, size_t size,
		       const mamori_emu_limits *lim)
{
	*out = NULL;
	if ((va & (PAGE - 1)) || size == 0 || !code || va >= 0x70000000ull || size > 0x70000000ull - va)
		return mamori_fail(MAMORI_EINVAL, "emu: raw code at 0x%llx+%zu", (unsigned long long)va,
				   size);
	mamori_emu *e = NULL;
	int rc = emu_create(&e, arch, lim);
	if (rc)
		return rc;
	if ((rc = map_region(e, va, round_up(size))) || (rc = put(e, va, code, size)))
		goto done;
	e->entry = va;
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
	if (!b->has_entry)
		return mamori_fail(MAMORI_EUNSUPPORTED, "emu: the image has no entry point");
	uint64_t base = b->image_base;
	if (base & (PAGE - 1))
		return mamori_fail(MAMORI_EFORMAT, "emu: image base 0x%llx not page-aligned",
				   (unsigned long long)base);
	/* The span: headers page plus every section, each rounded to pages. */
	uint64_t end = base + PAGE;
	for (size_t i = 0; i < b->n_sections; i++) {
		const mamori_section *s = &b->sections[i];
		if (s->va < base || s->vsize > (1ull << 32) || s->va - base > (1ull << 32))
			return mamori_fail(MAMORI_EFORMAT, "emu: section %zu outside the image", i);
		uint64_t send = round_up(s->va + s->vsize);
		if (send > end)
			end = send;
	}
	uint64_t span = end - base;
	if (b->arch == MAMORI_ARCH_X86 && end > (1ull << 32))
		return mamori_fail(MAMORI_EFORMAT, "emu: 32-bit image beyond 4 GiB");
	if (overlaps_reserved(base, span))
		return mamori_fail(MAMORI_EUNSUPPORTED,
				   "emu: image overlaps the stack/TEB area (no relocation yet)");
	if (b->entry - base >= span)
		return mamori_fail(MAMORI_EFORMAT, "emu: entry 0x%llx outside the image",
				   (unsigned long long)b->entry);

	mamori_emu *e = NULL;
	int rc = emu_create(&e, b->arch, lim);
	if (rc)
		return rc;
	if ((rc = map_region(e, base, span)))
		goto done;
	size_t hdr = b->size < PAGE ? b->size : PAGE;
	if ((rc = put(e, base, b->data, hdr)))
		goto done;
	for (size_t i = 0; i < b->n_sections; i++) {
		const mamori_section *s = &b->sections[i];
		uint64_t n = s->raw_size < round_up(s->vsize) ? s->raw_size : round_up(s->vsize);
		if (s->raw_off > b->size || n > b->size - s->raw_off)
			n = s->raw_off > b->size ? 0 : b->size - s->raw_off;
		if (n && (rc = put(e, s->va, b->data + s->raw_off, n)))
			goto done;
	}
	if ((rc = put_ptr(e, PEB_VA + (b->arch == MAMORI_ARCH_X86 ? 8 : 0x10), base)))
		goto done;
	e->entry = b->entry;
done:
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
	/* Write permission goes now, after the host wrote the image (Unicorn's
	 * uc_mem_write honours protections); see mark_written(). */
	for (size_t i = 0; i < e->n_regions; i++) {
		uc_err perr = uc_mem_protect(e->uc, e->regions[i].base, e->regions[i].size,
					     UC_PROT_READ | UC_PROT_EXEC);
		if (perr != UC_ERR_OK)
			return mamori_fail(MAMORI_EIO, "emu: protect: %s", uc_strerror(perr));
	}
	uc_err err = uc_emu_start(e->uc, e->entry, EXIT_VA, 0, 0);
	out->pc = read_pc(e);
	out->insns = e->insns;
	out->has_wx = e->has_wx;
	out->wx_va = e->wx_va;
	out->wx_insns = e->wx_insns;
	if (e->wx_stop) {
		out->status = MAMORI_EMU_WX_STOP;
	} else if (e->limit_hit) {
		out->status = MAMORI_EMU_LIMIT;
	} else if (e->faulted || err != UC_ERR_OK) {
		out->status = MAMORI_EMU_FAULT;
		out->fault_addr = e->faulted ? e->fault_addr : out->pc;
	} else if (out->pc == EXIT_VA) {
		out->status = MAMORI_EMU_EXIT;
	} else {
		/* Stopped elsewhere without an error (e.g. hlt): count it a fault there. */
		out->status = MAMORI_EMU_FAULT;
		out->fault_addr = out->pc;
	}
	return MAMORI_OK;
}

void mamori_emu_free(mamori_emu *e)
{
	if (!e)
		return;
	if (e->uc)
		uc_close(e->uc);
	for (size_t i = 0; i < e->n_regions; i++)
		free(e->regions[i].written);
	free(e);
}
