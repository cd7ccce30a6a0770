/*
 * emu_speed: emulation speed of mamori's emulator (tracking on) next to
 * Unicorn alone on the same code, in one run (issue 4: "Unicorn alone runs
 * about 65 million instructions per second here"; target >= 30 M/s with
 * tracking). Three loops, each on x86 and x86-64 where the bytes mean the
 * same: registers only, a store per iteration into one page, and a
 * byte-copy loop over 64 KiB (what a decompressing stub does: loads and
 * stores walking across pages, so every page's first write is tracked).
 *
 * "unicorn" is uc_emu_start on the bytes with no hook at all; "unicorn+count"
 * adds the one per-instruction hook an exact instruction limit needs;
 * "mamori" is mamori_emu_new_raw + mamori_emu_run with every hook and the
 * write tracking. Each figure is the best of three runs. Prints a Markdown
 * table, or JSON with --json.
 *
 * usage: emu_speed [--json] [--scale N]   (N multiplies the loop counts; default 1)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <unicorn/unicorn.h>

#include "mamori/base.h"
#include "mamori/emu.h"

#define CODE_VA	 0x400000ull
#define BUF_SIZE 0x22000u /* code page + 2 * 64 KiB copy buffers + slack */

typedef struct workload {
	const char *name;
	uint8_t code[64];
	size_t len;
	uint32_t count_off; /* offset of the imm32 loop count in code */
	uint32_t count;	    /* iterations at scale 1 */
	uint32_t per_iter;  /* instructions per iteration */
	uint32_t fixed;	    /* instructions outside the loop */
} workload;

/* The same bytes decode the same in 32- and 64-bit mode (no REX, no
 * inc/dec short forms, which are REX prefixes in 64-bit mode). */
static const workload workloads[] = {
	{ "register loop",
	  {
		  0xb9, 0, 0, 0, 0, /* mov ecx, COUNT */
		  0x83, 0xe9, 0x01, /* l: sub ecx, 1 */
		  0x75, 0xfb,	    /* jnz l */
		  0xc3,		    /* ret */
	  },
	  11,
	  1,
	  20000000,
	  2,
	  2 },
	{ "store loop",
	  {
		  0xbf, 0x00, 0x10, 0x40, 0x00, /* mov edi, 0x401000 */
		  0xb9, 0, 0, 0, 0,		/* mov ecx, COUNT */
		  0x89, 0x0f,			/* l: mov [edi], ecx */
		  0x83, 0xe9, 0x01,		/* sub ecx, 1 */
		  0x75, 0xf9,			/* jnz l */
		  0xc3,				/* ret */
	  },
	  18,
	  6,
	  10000000,
	  3,
	  3 },
	{ "copy loop (64 KiB, pages tracked)",
	  {
		  0xba, 0,    0,    0,	  0,	/* mov edx, COUNT (passes) */
		  0xbe, 0x00, 0x10, 0x40, 0x00, /* p: mov esi, 0x401000 */
		  0xbf, 0x00, 0x10, 0x41, 0x00, /* mov edi, 0x411000 */
		  0xb9, 0x00, 0x00, 0x01, 0x00, /* mov ecx, 0x10000 */
		  0x8a, 0x06,			/* l: mov al, [esi] */
		  0x88, 0x07,			/* mov [edi], al */
		  0x8d, 0x76, 0x01,		/* lea esi, [esi+1] */
		  0x8d, 0x7f, 0x01,		/* lea edi, [edi+1] */
		  0x83, 0xe9, 0x01,		/* sub ecx, 1 */
		  0x75, 0xf1,			/* jnz l */
		  0x83, 0xea, 0x01,		/* sub edx, 1 */
		  0x75, 0xdd,			/* jnz p */
		  0xc3,				/* ret */
	  },
	  41,
	  1,
	  150,
	  6 * 0x10000 + 5,
	  2 },
};

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void build(uint8_t *buf, const workload *w, uint32_t scale)
{
	memset(buf, 0, BUF_SIZE);
	memcpy(buf, w->code, w->len);
	uint32_t c = w->count * scale;
	memcpy(buf + w->count_off, &c, 4); /* little-endian host (x86-64 only) */
}

static uint64_t expected_insns(const workload *w, uint32_t scale)
{
	return (uint64_t)w->count * scale * w->per_iter + w->fixed;
}

static void count_hook(uc_engine *uc, uint64_t addr, uint32_t size, void *user)
{
	(void)uc, (void)addr, (void)size;
	(*(uint64_t *)user)++;
}

/* Unicorn alone: map, write, run to the ret's return address (an unmapped
 * page holding nothing: uc_emu_start stops at `until` first). Returns
 * seconds, or a negative value on failure. */
static double run_unicorn(mamori_arch arch, const uint8_t *buf, bool count, uint64_t *insns)
{
	uc_engine *uc = NULL;
	double t = -1;
	if (uc_open(UC_ARCH_X86, arch == MAMORI_ARCH_X86 ? UC_MODE_32 : UC_MODE_64, &uc) != UC_ERR_OK)
		return -1;
	const uint64_t stack = 0x7fe00000ull, exit_va = 0x7ff00000ull;
	if (uc_mem_map(uc, CODE_VA, BUF_SIZE, UC_PROT_ALL) || uc_mem_map(uc, stack, 0x100000, UC_PROT_ALL) ||
	    uc_mem_map(uc, exit_va, 0x1000, UC_PROT_ALL) || uc_mem_write(uc, CODE_VA, buf, BUF_SIZE))
		goto done;
	uint64_t sp = stack + 0x100000 - 0x100;
	uint8_t ret_addr[8] = { 0 };
	memcpy(ret_addr, &exit_va, 8);
	if (uc_mem_write(uc, sp, ret_addr, arch == MAMORI_ARCH_X86 ? 4 : 8) ||
	    uc_reg_write(uc, arch == MAMORI_ARCH_X86 ? UC_X86_REG_ESP : UC_X86_REG_RSP, &sp))
		goto done;
	*insns = 0;
	uc_hook h;
	if (count && uc_hook_add(uc, &h, UC_HOOK_CODE, (void *)count_hook, insns, 1, 0))
		goto done;
	double t0 = now();
	uc_err err = uc_emu_start(uc, CODE_VA, exit_va, 0, 0);
	t = now() - t0;
	if (err != UC_ERR_OK)
		t = -1;
done:
	uc_close(uc);
	return t;
}

static double run_mamori(mamori_arch arch, const uint8_t *buf, uint64_t *insns)
{
	mamori_emu *e = NULL;
	mamori_emu_limits lim = mamori_emu_limits_default();
	lim.max_insns = 4000000000ull;
	if (mamori_emu_new_raw(&e, arch, CODE_VA, buf, BUF_SIZE, &lim) != MAMORI_OK)
		return -1;
	mamori_emu_report r;
	double t0 = now();
	int rc = mamori_emu_run(e, &r);
	double t = now() - t0;
	mamori_emu_free(e);
	if (rc != MAMORI_OK || r.status != MAMORI_EMU_EXIT)
		return -1;
	*insns = r.insns;
	return t;
}

int main(int argc, char **argv)
{
	bool json = false;
	uint32_t scale = 1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "--scale") && i + 1 < argc) {
			char *end = NULL;
			unsigned long v = strtoul(argv[++i], &end, 10);
			if (!end || *end || v == 0 || v > 100) {
				fprintf(stderr, "emu_speed: --scale wants 1..100\n");
				return MAMORI_EXIT_USAGE;
			}
			scale = (uint32_t)v;
		} else {
			fprintf(stderr, "usage: emu_speed [--json] [--scale N]\n");
			return MAMORI_EXIT_USAGE;
		}
	}
	uint8_t *buf = malloc(BUF_SIZE);
	if (!buf)
		return MAMORI_EXIT_FAILURE;
	int ret = MAMORI_EXIT_OK;
	if (json)
		printf("[");
	else
		printf("| workload | arch | instructions | Unicorn alone (M/s) | Unicorn + count hook (M/s) "
		       "| "
		       "mamori, tracking on (M/s) | mamori / Unicorn "
		       "|\n|---|---|---:|---:|---:|---:|---:|\n");
	bool first = true;
	for (size_t wi = 0; wi < sizeof(workloads) / sizeof(workloads[0]); wi++) {
		const workload *w = &workloads[wi];
		for (int a = 0; a < 2; a++) {
			mamori_arch arch = a ? MAMORI_ARCH_X86_64 : MAMORI_ARCH_X86;
			build(buf, w, scale);
			uint64_t want = expected_insns(w, scale);
			double best[3] = { 1e30, 1e30, 1e30 };
			for (int rep = 0; rep < 3; rep++) {
				uint64_t n0 = 0, n1 = 0, n2 = 0;
				double t0 = run_unicorn(arch, buf, false, &n0);
				double t1 = run_unicorn(arch, buf, true, &n1);
				double t2 = run_mamori(arch, buf, &n2);
				if (t0 < 0 || t1 < 0 || t2 < 0 || n1 != want || n2 != want) {
					fprintf(stderr,
						"emu_speed: %s (%s) failed or miscounted: %llu/%llu of %llu "
						"instructions\n",
						w->name, a ? "x86-64" : "x86", (unsigned long long)n1,
						(unsigned long long)n2, (unsigned long long)want);
					ret = MAMORI_EXIT_FAILURE;
					goto done;
				}
				best[0] = t0 < best[0] ? t0 : best[0];
				best[1] = t1 < best[1] ? t1 : best[1];
				best[2] = t2 < best[2] ? t2 : best[2];
			}
			double m[3];
			for (int k = 0; k < 3; k++)
				m[k] = (double)want / best[k] / 1e6;
			if (json)
				printf("%s{\"workload\":\"%s\",\"arch\":\"%s\",\"insns\":%llu,\"unicorn_"
				       "mips\":%.1f,"
				       "\"unicorn_count_mips\":%.1f,\"mamori_mips\":%.1f}",
				       first ? "" : ",", w->name, a ? "x86-64" : "x86",
				       (unsigned long long)want, m[0], m[1], m[2]);
			else
				printf("| %s | %s | %llu | %.1f | %.1f | %.1f | %.2f |\n", w->name,
				       a ? "x86-64" : "x86", (unsigned long long)want, m[0], m[1], m[2],
				       m[2] / m[0]);
			first = false;
		}
	}
done:
	if (json)
		printf("]\n");
	free(buf);
	return ret;
}
