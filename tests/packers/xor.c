/*
 * Technique 1 of the test packers: in-place rolling-key XOR of the code
 * section that holds the entry point, plus an appended RWX section ".mpk"
 * whose stub decrypts that range in memory and jumps to the original entry
 * point (OEP). The stub is hand-assembled here, position-independent
 * (call/pop on x86, RIP-relative lea on x86-64), and varies with the key
 * (base register and junk instructions), so two keys give different stubs.
 *
 * Limits, on purpose: the loader must not touch the encrypted bytes before
 * the stub runs. So DYNAMIC_BASE is cleared and RELOCS_STRIPPED set (the
 * image loads at its preferred base or not at all; no relocation is applied
 * to encrypted bytes), and TLS callbacks (which run before the entry point
 * and, in mingw programs, live in .text) are cut off by pointing the TLS
 * directory's callback list at an empty list in .mpk. DLLs are refused.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "mamori/base.h"
#include "mamori/binfmt.h"
#include "testpack.h"

#define SCN_CNT_CODE	     0x00000020u
#define SCN_MEM_EXECUTE	     0x20000000u
#define SCN_MEM_READ	     0x40000000u
#define SCN_MEM_WRITE	     0x80000000u
#define FILE_RELOCS_STRIPPED 0x0001u
#define DLLCHAR_DYNAMIC_BASE 0x0040u
#define DIR_TLS		     9u
#define STUB_MAX	     128u
#define SECTION_HEADER	     40u

uint8_t mamori_testpack_key_next(uint32_t *k)
{
	uint8_t b = (uint8_t)(*k & 0xff);

	*k = *k * 1103515245u + 12345u;
	return b;
}

/* Tiny byte emitter; the stub is far below STUB_MAX, checked at the end. */
typedef struct emit {
	uint8_t b[STUB_MAX];
	uint32_t n;
	bool over;
} emit;

static void put(emit *e, const uint8_t *bytes, uint32_t n)
{
	if (e->n + n > STUB_MAX) {
		e->over = true;
		return;
	}
	memcpy(e->b + e->n, bytes, n);
	e->n += n;
}

static void put1(emit *e, uint8_t a)
{
	put(e, &a, 1);
}

static void put_imm32(emit *e, uint32_t v)
{
	uint8_t b[4];

	wr32(b, v);
	put(e, b, 4);
}

/* Harmless instructions that only touch eax/rax (saved around the stub) or
 * nothing; which ones and how many depend on the key. */
static void put_junk(emit *e, uint32_t *seed)
{
	static const uint8_t junk[][3] = {
		{ 1, 0x90 },	   /* nop */
		{ 2, 0x89, 0xc0 }, /* mov eax, eax */
		{ 2, 0x31, 0xc0 }, /* xor eax, eax */
		{ 2, 0x87, 0xc0 }, /* xchg eax, eax */
	};
	uint32_t count = (*seed >> 16) % 4;

	for (uint32_t i = 0; i < count; i++) {
		*seed = *seed * 69069u + 1u;
		const uint8_t *j = junk[(*seed >> 16) % 4];
		put(e, j + 1, j[0]);
	}
}

/*
 * Build the stub at `stub_rva`. Register numbers: 3 ebx/rbx, 6 esi/rsi,
 * 7 edi/rdi (never ebp/esp: [ebp] with mod 00 means disp32).
 */
static void build_stub(emit *e, bool is64, uint32_t key, uint32_t stub_rva, uint32_t text_rva,
		       uint32_t text_size, uint32_t oep_rva)
{
	static const uint8_t regs[] = { 3, 6, 7 };
	uint32_t seed = key ^ 0x9e3779b9u;
	uint8_t r = regs[key % 3];

	seed = seed * 69069u + 1u;
	if (!is64) {
		put1(e, 0x60); /* pushad: the program starts with the loader's registers */
		put_junk(e, &seed);
		put(e, (const uint8_t[]){ 0xe8, 0, 0, 0, 0 }, 5); /* call next */
		uint32_t next_rva = stub_rva + e->n;
		put1(e, (uint8_t)(0x58 + r)); /* pop r = address of next */
		put1(e, 0x81);		      /* sub r, next - text: r = start of .text */
		put1(e, (uint8_t)(0xe8 + r));
		put_imm32(e, next_rva - text_rva);
	} else {
		put(e, (const uint8_t[]){ 0x50, 0x51, 0x52 }, 3); /* push rax, rcx, rdx */
		put1(e, (uint8_t)(0x50 + r));			  /* push r */
		put_junk(e, &seed);
		put(e, (const uint8_t[]){ 0x48, 0x8d, (uint8_t)(0x05 | r << 3) }, 3); /* lea r, [rip+d] */
		uint32_t next_rva = stub_rva + e->n + 4;
		put_imm32(e, text_rva - next_rva);
	}
	put1(e, 0xb9); /* mov ecx, text_size */
	put_imm32(e, text_size);
	put1(e, 0xba); /* mov edx, key */
	put_imm32(e, key);
	put_junk(e, &seed);
	uint32_t loop = e->n;
	put(e, (const uint8_t[]){ 0x30, (uint8_t)(0x10 | r) }, 2); /* xor [r], dl */
	put(e, (const uint8_t[]){ 0x69, 0xd2 }, 2);		   /* imul edx, edx, 1103515245 */
	put_imm32(e, 1103515245u);
	put(e, (const uint8_t[]){ 0x81, 0xc2 }, 2); /* add edx, 12345 */
	put_imm32(e, 12345u);
	if (is64)
		put(e, (const uint8_t[]){ 0x48, 0xff, (uint8_t)(0xc0 | r) }, 3); /* inc r */
	else
		put1(e, (uint8_t)(0x40 + r));	    /* inc r */
	put(e, (const uint8_t[]){ 0xff, 0xc9 }, 2); /* dec ecx */
	put1(e, 0x75);				    /* jnz loop */
	put1(e, (uint8_t)(int8_t)((int32_t)loop - (int32_t)(e->n + 1)));
	if (is64) {
		put1(e, (uint8_t)(0x58 + r));			  /* pop r */
		put(e, (const uint8_t[]){ 0x5a, 0x59, 0x58 }, 3); /* pop rdx, rcx, rax */
	} else {
		put1(e, 0x61); /* popad */
	}
	put1(e, 0xe9); /* jmp OEP */
	put_imm32(e, oep_rva - (stub_rva + e->n + 4));
}

/* File offset of `rva` inside a section's raw data, or false. */
static bool rva_to_off(const uint8_t *sec, uint16_t nsec, uint32_t rva, uint32_t len, uint32_t *out)
{
	for (uint16_t i = 0; i < nsec; i++) {
		const uint8_t *s = sec + (size_t)i * SECTION_HEADER;
		uint32_t va = rd32(s + 12), raw = rd32(s + 16), ptr = rd32(s + 20);
		if (rva >= va && rva - va < raw && len <= raw - (rva - va)) {
			*out = ptr + (rva - va);
			return true;
		}
	}
	return false;
}

int mamori_testpack_xor(uint8_t **out, size_t *out_len, mamori_testpack_info *info, const uint8_t *in,
			size_t in_len, uint32_t key)
{
	mamori_binary *bin = NULL;
	uint8_t *o = NULL;
	int rc = mamori_binary_parse(&bin, in, in_len, NULL);

	*out = NULL;
	*out_len = 0;
	if (rc != MAMORI_OK)
		goto done;
	if (bin->format != MAMORI_FMT_PE32 && bin->format != MAMORI_FMT_PE32PLUS) {
		rc = mamori_fail(MAMORI_EUNSUPPORTED, "xor packer: input is %s, not PE",
				 mamori_format_name(bin->format));
		goto done;
	}
	if (bin->is_dll || !bin->has_entry) {
		rc = mamori_fail(MAMORI_EUNSUPPORTED, "xor packer: only executables with an entry point");
		goto done;
	}
	if (in_len > UINT32_MAX / 2) {
		rc = mamori_fail(MAMORI_ELIMIT, "xor packer: input too large");
		goto done;
	}
	bool is64 = bin->format == MAMORI_FMT_PE32PLUS;
	/* The parser validated the headers; these reads are within them. */
	uint32_t pe = rd32(in + 0x3c);
	uint16_t nsec = rd16(in + pe + 6);
	uint16_t optsz = rd16(in + pe + 20);
	uint32_t opt = pe + 24;
	uint32_t sec = opt + optsz;
	uint32_t sect_align = rd32(in + opt + 32), file_align = rd32(in + opt + 36);
	uint32_t hdr_size = rd32(in + opt + 60);
	uint32_t oep = rd32(in + opt + 16);
	uint32_t ndirs = rd32(in + opt + (is64 ? 108 : 92));
	uint32_t dirs = opt + (is64 ? 112 : 96);

	if (sect_align == 0 || file_align == 0 ||
	    (size_t)sec + (size_t)(nsec + 1) * SECTION_HEADER > in_len) {
		rc = mamori_fail(MAMORI_EFORMAT, "xor packer: bad alignment or section table");
		goto done;
	}
	/* Room for one more header: below SizeOfHeaders and below every raw section. */
	uint32_t need = sec + (uint32_t)(nsec + 1) * SECTION_HEADER;
	uint32_t first_raw = hdr_size;
	uint32_t end_va = 0;
	int text = -1;
	for (uint16_t i = 0; i < nsec; i++) {
		const uint8_t *s = in + sec + (size_t)i * SECTION_HEADER;
		uint32_t vs = rd32(s + 8), va = rd32(s + 12), raw = rd32(s + 16), ptr = rd32(s + 20);
		uint32_t span = vs ? vs : raw;
		if (raw && ptr < first_raw)
			first_raw = ptr;
		if (va + align_up(span, sect_align) > end_va)
			end_va = va + align_up(span, sect_align);
		if (oep >= va && oep - va < span && (rd32(s + 36) & (SCN_CNT_CODE | SCN_MEM_EXECUTE)))
			text = i;
	}
	if (need > first_raw) {
		rc = mamori_fail(
			MAMORI_EUNSUPPORTED,
			"xor packer: no room for a section header (need %u bytes of headers, have %u)", need,
			first_raw);
		goto done;
	}
	if (text < 0) {
		rc = mamori_fail(MAMORI_EUNSUPPORTED, "xor packer: entry point is not in a code section");
		goto done;
	}
	const uint8_t *ts = in + sec + (size_t)text * SECTION_HEADER;
	uint32_t t_vs = rd32(ts + 8), t_va = rd32(ts + 12), t_raw = rd32(ts + 16), t_ptr = rd32(ts + 20);
	uint32_t t_size = t_vs && t_vs < t_raw ? t_vs : t_raw;
	if (t_size == 0 || (size_t)t_ptr + t_size > in_len) {
		rc = mamori_fail(MAMORI_EUNSUPPORTED, "xor packer: code section has no file bytes");
		goto done;
	}

	uint32_t stub_rva = align_up(end_va, sect_align);
	uint32_t stub_off = align_up((uint32_t)in_len, file_align);
	emit e = { .n = 0 };
	build_stub(&e, is64, key, stub_rva, t_va, t_size, oep);
	/* An empty TLS callback list (one zero pointer) after the stub. */
	uint32_t tls_list = align_up(e.n, 8);
	uint32_t sec_vsize = tls_list + 8;
	if (e.over || sec_vsize > STUB_MAX) {
		rc = mamori_fail(MAMORI_ELIMIT, "xor packer: stub too large");
		goto done;
	}
	uint32_t sec_raw = align_up(sec_vsize, file_align);
	size_t olen = (size_t)stub_off + sec_raw;
	o = calloc(1, olen);
	if (!o) {
		rc = mamori_fail(MAMORI_ENOMEM, "xor packer: %zu bytes", olen);
		goto done;
	}
	memcpy(o, in, in_len);
	memcpy(o + stub_off, e.b, e.n);

	uint32_t k = key;
	for (uint32_t i = 0; i < t_size; i++)
		o[t_ptr + i] ^= mamori_testpack_key_next(&k);

	uint8_t *ns = o + sec + (size_t)nsec * SECTION_HEADER;
	memset(ns, 0, SECTION_HEADER);
	memcpy(ns, MAMORI_TESTPACK_XOR_SECTION, sizeof(MAMORI_TESTPACK_XOR_SECTION) - 1);
	wr32(ns + 8, sec_vsize);
	wr32(ns + 12, stub_rva);
	wr32(ns + 16, sec_raw);
	wr32(ns + 20, stub_off);
	wr32(ns + 36, SCN_CNT_CODE | SCN_MEM_EXECUTE | SCN_MEM_READ | SCN_MEM_WRITE);
	uint8_t *tsw = o + sec + (size_t)text * SECTION_HEADER;
	wr32(tsw + 36, rd32(tsw + 36) | SCN_MEM_WRITE);

	wr16(o + pe + 6, (uint16_t)(nsec + 1));
	wr16(o + pe + 22, (uint16_t)(rd16(o + pe + 22) | FILE_RELOCS_STRIPPED));
	wr32(o + opt + 16, stub_rva);
	wr32(o + opt + 56, align_up(stub_rva + sec_vsize, sect_align));
	wr32(o + opt + 64, 0); /* CheckSum: not checked for user-mode executables */
	wr16(o + opt + 70, (uint16_t)(rd16(o + opt + 70) & ~DLLCHAR_DYNAMIC_BASE));

	int tls_cut = 0;
	uint32_t tls_cb_off = 0;
	if (ndirs > DIR_TLS && (size_t)dirs + (size_t)DIR_TLS * 8 + 8 <= sec) {
		uint32_t tls_rva = rd32(o + dirs + (size_t)DIR_TLS * 8);
		uint32_t tls_off;
		if (tls_rva && rva_to_off(in + sec, nsec, tls_rva, is64 ? 32 : 16, &tls_off)) {
			uint64_t list_va = bin->image_base + stub_rva + tls_list;
			if (is64) {
				wr32(o + tls_off + 24, (uint32_t)list_va);
				wr32(o + tls_off + 28, (uint32_t)(list_va >> 32));
			} else {
				wr32(o + tls_off + 12, (uint32_t)list_va);
			}
			tls_cut = 1;
			tls_cb_off = tls_off + (is64 ? 24 : 12);
		}
	}

	if (info) {
		*info = (mamori_testpack_info){ .text_rva = t_va,
						.text_size = t_size,
						.text_off = t_ptr,
						.oep_rva = oep,
						.stub_rva = stub_rva,
						.stub_off = stub_off,
						.stub_size = e.n,
						.tls_neutralised = tls_cut,
						.tls_cb_off = tls_cb_off };
	}
	*out = o;
	*out_len = olen;
	o = NULL;
	rc = MAMORI_OK;
done:
	free(o);
	mamori_binary_free(bin);
	return rc;
}
