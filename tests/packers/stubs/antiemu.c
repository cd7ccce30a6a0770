/*
 * Stub of technique 4 (`antiemu`): the lz loader behind three tricks that
 * trip naive emulators.
 *  - API hashing: no import table. kernel32 is found by walking a
 *    PEB_LDR_DATA module list (which list depends on the key) and hashing
 *    each BaseDllName; its APIs by hashing the names of its export table
 *    (forwarders followed). Hashes are seeded by the key.
 *  - Timing: GetTickCount around Sleep(sleep_ms) must show at least half of
 *    the sleep (after up to four sleeps), and two rdtsc reads around a short loop must move forward by
 *    a sane amount; otherwise the stub exits quietly with code 0.
 *  - An SEH-based jump: a deliberate read of address 0 whose handler moves
 *    the instruction pointer to the continuation. x86: a handler pushed on
 *    the FS:[0] chain returning ExceptionContinueExecution; x64: an
 *    unhandled-exception filter returning EXCEPTION_CONTINUE_EXECUTION. An
 *    emulator that skips the faulting instruction falls into a quiet exit.
 */
#include "stub.h"

/* The SEH jump (assembly below): returns 1 when the handler moved the
 * instruction pointer to mpk_seh_resume, 0 when the fault was skipped. */
int mpk_seh_jump(void *handler);
void mpk_seh_resume(void);

#ifdef _WIN64
__asm__(".text\n"
	".globl mpk_seh_jump\n"
	"mpk_seh_jump:\n\t" /* a leaf: no unwind data needed, [rsp] is the return address */
	"xorl %eax, %eax\n\t"
	"movl (%rax), %eax\n\t" /* the fault */
	"xorl %eax, %eax\n\t"
	"ret\n"
	".globl mpk_seh_resume\n"
	"mpk_seh_resume:\n\t"
	"movl $1, %eax\n\t"
	"ret\n");

static LONG WINAPI seh_filter(EXCEPTION_POINTERS *ep)
{
	ep->ContextRecord->Rip = (DWORD64)(ULONG_PTR)mpk_seh_resume;
	return EXCEPTION_CONTINUE_EXECUTION;
}
#else
__asm__(".text\n"
	".globl _mpk_seh_jump\n"
	"_mpk_seh_jump:\n\t"
	"movl 4(%esp), %eax\n\t"
	"pushl %ebx\n\t"
	"pushl %eax\n\t"  /* EXCEPTION_REGISTRATION_RECORD.Handler */
	"pushl %fs:0\n\t" /* .Next */
	"movl %esp, %fs:0\n\t"
	"xorl %ebx, %ebx\n\t"
	"movl (%ebx), %eax\n\t" /* the fault */
	"xorl %eax, %eax\n\t"
	"jmp 1f\n"
	".globl _mpk_seh_resume\n"
	"_mpk_seh_resume:\n\t"
	"movl $1, %eax\n"
	"1:\n\t"
	"movl (%esp), %ecx\n\t" /* unlink our record */
	"movl %ecx, %fs:0\n\t"
	"addl $8, %esp\n\t"
	"popl %ebx\n\t"
	"ret\n");

static EXCEPTION_DISPOSITION __cdecl seh_handler(EXCEPTION_RECORD *rec, void *frame, CONTEXT *ctx, void *disp)
{
	(void)rec;
	(void)frame;
	(void)disp;
	ctx->Eip = (DWORD)(ULONG_PTR)mpk_seh_resume;
	return ExceptionContinueExecution;
}
#endif

#define PTR ((uint32_t)sizeof(void *))

static uint8_t *peb(void)
{
	uint8_t *p;
#ifdef _WIN64
	__asm__("movq %%gs:0x60, %0" : "=r"(p));
#else
	__asm__("movl %%fs:0x30, %0" : "=r"(p));
#endif
	return p;
}

/* DllBase of the module whose lower-cased BaseDllName hashes to `want`. */
static uint8_t *find_module(const mpk_config *cfg, uint32_t list, uint32_t want)
{
	uint8_t *ldr = *(uint8_t **)(peb() + (PTR == 8 ? 0x18 : 0x0c));
	/* The three LIST_ENTRY heads follow each other in PEB_LDR_DATA, and the
	 * three links open LDR_DATA_TABLE_ENTRY in the same order. */
	LIST_ENTRY *head = (LIST_ENTRY *)(ldr + (PTR == 8 ? 0x10 : 0x0c) + list * 2 * PTR);
	uint32_t link = list * 2 * PTR;
	int n = 0;

	for (LIST_ENTRY *l = head->Flink; l && l != head && n < 256; l = l->Flink, n++) {
		uint8_t *ent = (uint8_t *)l - link;
		uint8_t *base = *(uint8_t **)(ent + (PTR == 8 ? 0x30 : 0x18));
		const uint8_t *name = ent + (PTR == 8 ? 0x58 : 0x2c);
		uint16_t len = *(const uint16_t *)name;
		const WCHAR *buf = *(WCHAR *const *)(name + PTR);
		uint32_t h = cfg->hash_seed;
		for (uint16_t i = 0; buf && i < len / 2; i++)
			h = mpk_hash_lower_step(h, buf[i]);
		if (base && h == want)
			return base;
	}
	return NULL;
}

/* The export of `mod` whose name hashes to `want`; forwarders ("DLL.Name")
 * are followed through the module list, a few levels deep. */
static void *find_export(const mpk_config *cfg, uint8_t *mod, uint32_t want, int depth)
{
	IMAGE_NT_HEADERS *nt = (IMAGE_NT_HEADERS *)(mod + ((IMAGE_DOS_HEADER *)mod)->e_lfanew);
	IMAGE_DATA_DIRECTORY dir = nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_EXPORT];

	if (dir.Size == 0 || depth > 3)
		return NULL;
	IMAGE_EXPORT_DIRECTORY *ed = (IMAGE_EXPORT_DIRECTORY *)(mod + dir.VirtualAddress);
	DWORD *names = (DWORD *)(mod + ed->AddressOfNames);
	WORD *ords = (WORD *)(mod + ed->AddressOfNameOrdinals);
	DWORD *funcs = (DWORD *)(mod + ed->AddressOfFunctions);
	for (DWORD i = 0; i < ed->NumberOfNames; i++) {
		if (mpk_hash(cfg->hash_seed, (const char *)(mod + names[i])) != want)
			continue;
		if (ords[i] >= ed->NumberOfFunctions)
			return NULL;
		DWORD rva = funcs[ords[i]];
		if (rva < dir.VirtualAddress || rva - dir.VirtualAddress >= dir.Size)
			return mod + rva;
		/* Forwarder: hash "dll" + ".dll" without case, and the name after the dot. */
		const char *fwd = (const char *)(mod + rva);
		uint32_t h = cfg->hash_seed;
		while (*fwd && *fwd != '.')
			h = mpk_hash_lower_step(h, (uint8_t)*fwd++);
		if (*fwd != '.' || fwd[1] == '#')
			return NULL;
		for (const char *ext = ".dll"; *ext; ext++)
			h = mpk_hash_lower_step(h, (uint8_t)*ext);
		uint8_t *target = find_module(cfg, MPK_LIST_LOAD, h);
		return target ? find_export(cfg, target, mpk_hash(cfg->hash_seed, fwd + 1), depth + 1) : NULL;
	}
	return NULL;
}

static uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

void stub_entry(void)
{
	const mpk_config *cfg = mpk_config_get();
	void *fn[MPK_API_COUNT];

	uint8_t *k32 = find_module(cfg, cfg->ldr_list % 3, cfg->kernel32_hash);
	if (!k32)
		return;
	for (int i = 0; i < MPK_API_COUNT; i++)
		fn[i] = find_export(cfg, k32, cfg->api_hash[i], 0);
	VOID(WINAPI * exit_process)(UINT) = (VOID(WINAPI *)(UINT))fn[MPK_API_EXITPROCESS];
	if (!exit_process)
		return;
	for (int i = 0; i < MPK_API_COUNT; i++)
		if (!fn[i])
			exit_process(MPK_EXIT_RESOLVE);

	/* Timing: a sandbox or emulator that skips Sleep without moving the clock. */
	DWORD(WINAPI * tick)(void) = (DWORD(WINAPI *)(void))fn[MPK_API_GETTICKCOUNT];
	VOID(WINAPI * sleep)(DWORD) = (VOID(WINAPI *)(DWORD))fn[MPK_API_SLEEP];
	DWORD t0 = tick(), slept = 0;
	/* Wine refreshes the tick count only now and then: up to four sleeps
	 * may pass before it moves, which never helps a clock that stands still. */
	for (int i = 0; i < 4 && tick() - t0 < cfg->sleep_ms / 2; i++) {
		sleep(cfg->sleep_ms);
		slept += cfg->sleep_ms;
	}
	if (tick() - t0 < cfg->sleep_ms / 2 || slept == 0)
		exit_process(0);
	/* rdtsc must advance, and not by an absurd amount, over a short loop. */
	uint64_t c0 = rdtsc();
	volatile uint32_t spin = 0;
	for (uint32_t i = 0; i < 1000; i++)
		spin += i;
	uint64_t c1 = rdtsc();
	if (c1 <= c0 || c1 - c0 > (1ull << 40))
		exit_process(0);

#ifdef _WIN64
	LPTOP_LEVEL_EXCEPTION_FILTER(WINAPI * set_filter)
	(LPTOP_LEVEL_EXCEPTION_FILTER) =
		(LPTOP_LEVEL_EXCEPTION_FILTER(WINAPI *)(LPTOP_LEVEL_EXCEPTION_FILTER))fn[MPK_API_SETUEF];
	LPTOP_LEVEL_EXCEPTION_FILTER prev = set_filter(seh_filter);
	int jumped = mpk_seh_jump(NULL);
	set_filter(prev);
#else
	int jumped = mpk_seh_jump((void *)seh_handler);
#endif
	if (!jumped)
		exit_process(0);

	const mpk_api api = { (HMODULE(WINAPI *)(LPCSTR))fn[MPK_API_LOADLIBRARYA],
			      (FARPROC(WINAPI *)(HMODULE, LPCSTR))fn[MPK_API_GETPROCADDRESS],
			      (LPVOID(WINAPI *)(LPVOID, SIZE_T, DWORD, DWORD))fn[MPK_API_VIRTUALALLOC] };
	void *entry = NULL;
	uint32_t rc = mpk_load(&entry, cfg, &api);
	if (rc != 0)
		exit_process(rc);
	((void (*)(void))entry)();
	exit_process(0);
}
