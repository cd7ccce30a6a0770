/*
 * Loader of the test packers' stubs: decode the payload (key stream +
 * LZSS, stubcfg.h) into freshly allocated memory, relocate it to where it
 * landed, bind its imports with LoadLibraryA/GetProcAddress, and hand back
 * the original entry point. The image comes from our own packer, so the
 * checks here are there to fail cleanly (an MPK_EXIT_* code) rather than to
 * resist hostile input.
 */
#include "stub.h"

mpk_config mpk_cfg __attribute__((used)) = { .magic = MPK_MAGIC };

const mpk_config *mpk_config_get(void)
{
	const mpk_config *p = &mpk_cfg;

	__asm__("" : "+r"(p));
	return p;
}

void *memcpy(void *dst, const void *src, size_t n)
{
	uint8_t *d = dst;
	const uint8_t *s = src;

	while (n--)
		*d++ = *s++;
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	uint8_t *d = dst;

	while (n--)
		*d++ = (uint8_t)c;
	return dst;
}

/* rva..rva+len inside the image of `size` bytes. */
static int in_image(uint32_t size, uint32_t rva, uint32_t len)
{
	return rva <= size && len <= size - rva;
}

static uint32_t apply_relocs(uint8_t *img, uint32_t size, IMAGE_NT_HEADERS *nt, ULONG_PTR delta)
{
	IMAGE_DATA_DIRECTORY *dir = &nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_BASERELOC];
	uint32_t off = 0;

	if (delta == 0 || dir->Size == 0)
		return 0;
	if (!in_image(size, dir->VirtualAddress, dir->Size))
		return MPK_EXIT_FORMAT;
	while (dir->Size - off >= sizeof(IMAGE_BASE_RELOCATION)) {
		IMAGE_BASE_RELOCATION *blk = (IMAGE_BASE_RELOCATION *)(img + dir->VirtualAddress + off);
		if (blk->SizeOfBlock < sizeof(*blk) || blk->SizeOfBlock > dir->Size - off)
			return MPK_EXIT_FORMAT;
		uint32_t n = (blk->SizeOfBlock - sizeof(*blk)) / 2;
		WORD *e = (WORD *)(blk + 1);
		for (uint32_t i = 0; i < n; i++) {
			uint32_t type = e[i] >> 12, rva = blk->VirtualAddress + (e[i] & 0xfff);
			if (type == IMAGE_REL_BASED_HIGHLOW && in_image(size, rva, 4))
				*(DWORD *)(img + rva) += (DWORD)delta;
			else if (type == IMAGE_REL_BASED_DIR64 && in_image(size, rva, 8))
				*(ULONGLONG *)(img + rva) += (ULONGLONG)delta;
			else if (type != IMAGE_REL_BASED_ABSOLUTE)
				return MPK_EXIT_FORMAT;
		}
		off += blk->SizeOfBlock;
	}
	nt->OptionalHeader.ImageBase += delta;
	return 0;
}

static uint32_t bind_imports(uint8_t *img, uint32_t size, IMAGE_NT_HEADERS *nt, const mpk_api *api)
{
	IMAGE_DATA_DIRECTORY *dir = &nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_IMPORT];

	if (dir->Size == 0)
		return 0;
	for (uint32_t off = 0;; off += sizeof(IMAGE_IMPORT_DESCRIPTOR)) {
		if (!in_image(size, dir->VirtualAddress + off, sizeof(IMAGE_IMPORT_DESCRIPTOR)))
			return MPK_EXIT_FORMAT;
		IMAGE_IMPORT_DESCRIPTOR *d = (IMAGE_IMPORT_DESCRIPTOR *)(img + dir->VirtualAddress + off);
		if (d->Name == 0)
			return 0;
		if (!in_image(size, d->Name, 1) || !in_image(size, d->FirstThunk, sizeof(ULONG_PTR)))
			return MPK_EXIT_FORMAT;
		HMODULE mod = api->load_library((LPCSTR)(img + d->Name));
		if (!mod)
			return MPK_EXIT_IMPORT;
		uint32_t names = d->OriginalFirstThunk ? d->OriginalFirstThunk : d->FirstThunk;
		for (uint32_t i = 0;; i++) {
			uint32_t slot = i * (uint32_t)sizeof(ULONG_PTR);
			if (!in_image(size, names + slot, sizeof(ULONG_PTR)) ||
			    !in_image(size, d->FirstThunk + slot, sizeof(ULONG_PTR)))
				return MPK_EXIT_FORMAT;
			ULONG_PTR name = *(ULONG_PTR *)(img + names + slot);
			if (name == 0)
				break;
			FARPROC fn;
			if (IMAGE_SNAP_BY_ORDINAL(name)) {
				fn = api->get_proc_address(mod, (LPCSTR)(ULONG_PTR)IMAGE_ORDINAL(name));
			} else {
				if (!in_image(size, (uint32_t)name, 3))
					return MPK_EXIT_FORMAT;
				fn = api->get_proc_address(mod, (LPCSTR)(img + (uint32_t)name + 2));
			}
			if (!fn)
				return MPK_EXIT_IMPORT;
			*(ULONG_PTR *)(img + d->FirstThunk + slot) = (ULONG_PTR)fn;
		}
	}
}

static void run_tls(uint8_t *img, uint32_t size, IMAGE_NT_HEADERS *nt)
{
	IMAGE_DATA_DIRECTORY *dir = &nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_TLS];

	if (dir->Size == 0 || !in_image(size, dir->VirtualAddress, sizeof(IMAGE_TLS_DIRECTORY)))
		return;
	IMAGE_TLS_DIRECTORY *tls = (IMAGE_TLS_DIRECTORY *)(img + dir->VirtualAddress);
	PIMAGE_TLS_CALLBACK *cb = (PIMAGE_TLS_CALLBACK *)tls->AddressOfCallBacks;
	for (int i = 0; cb && i < 16 && cb[i]; i++)
		cb[i](img, DLL_PROCESS_ATTACH, NULL);
}

uint32_t mpk_load(void **entry, const mpk_config *cfg, const mpk_api *api)
{
	uint8_t *self = (uint8_t *)&__ImageBase;
	ULONG_PTR base = (ULONG_PTR)((uint64_t)cfg->base_hi << 32 | cfg->base_lo);
	uint32_t size = cfg->image_size;

	if (cfg->data_size > size || size < sizeof(IMAGE_DOS_HEADER))
		return MPK_EXIT_FORMAT;
	/* An image without relocations can only run at its own base. */
	void *want = (cfg->flags & MPK_FLAG_RELOCS) ? NULL : (void *)base;
	uint8_t *img = api->virtual_alloc(want, size, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
	if (!img)
		return MPK_EXIT_ALLOC;
	if (mpk_lz_decode(img, cfg->data_size, self + cfg->payload_rva, cfg->payload_size, cfg->key) != 0)
		return MPK_EXIT_DECODE;
	IMAGE_DOS_HEADER *dos = (IMAGE_DOS_HEADER *)img;
	if (dos->e_magic != IMAGE_DOS_SIGNATURE ||
	    !in_image(size, (uint32_t)dos->e_lfanew, sizeof(IMAGE_NT_HEADERS)))
		return MPK_EXIT_FORMAT;
	IMAGE_NT_HEADERS *nt = (IMAGE_NT_HEADERS *)(img + dos->e_lfanew);
	if (nt->Signature != IMAGE_NT_SIGNATURE || nt->OptionalHeader.Magic != IMAGE_NT_OPTIONAL_HDR_MAGIC ||
	    !in_image(size, nt->OptionalHeader.AddressOfEntryPoint, 1))
		return MPK_EXIT_FORMAT;
	uint32_t rc = apply_relocs(img, size, nt, (ULONG_PTR)img - base);
	if (rc == 0)
		rc = bind_imports(img, size, nt, api);
	if (rc != 0)
		return rc;
	if (cfg->flags & MPK_FLAG_RUN_TLS)
		run_tls(img, size, nt);
	*entry = img + nt->OptionalHeader.AddressOfEntryPoint;
	return 0;
}
