/*
 * Technique 3 of the test packers (`nested`): layers - 1 `lz` layers, each
 * packing the previous result (so the inner stubs are themselves unpacked
 * into VirtualAlloc'd memory and relocated), then one outer layer, `xor` or
 * `lz`. xor only ever goes outside: an xor-packed file must run at its
 * preferred base with encrypted code that no loader may relocate, and the
 * lz stubs all prefer the same base, so lz around xor could not place it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mamori/base.h"
#include "testpack.h"

#define MAX_LAYERS 8u

/* Layer i's key: distinct per layer, all from the one given. */
static uint32_t layer_key(uint32_t key, uint32_t i)
{
	uint32_t k = key ^ (i * 0x9e3779b9u);

	k ^= k >> 16;
	k *= 0x85ebca6bu;
	k ^= k >> 13;
	return k;
}

int mamori_testpack_nested(uint8_t **out, size_t *out_len, mamori_testpack_image_info *info,
			   const uint8_t *in, size_t in_len, uint32_t key, const mamori_testpack_opts *opt)
{
	uint32_t layers = opt && opt->layers ? opt->layers : 2;
	mamori_testpack_outer outer = opt ? opt->outer : MAMORI_TESTPACK_OUTER_AUTO;
	uint8_t *cur = NULL;
	size_t cur_len = 0;
	mamori_testpack_image_info first = { 0 };
	int rc = MAMORI_OK;

	*out = NULL;
	*out_len = 0;
	if (layers < 2 || layers > MAX_LAYERS) {
		rc = mamori_fail(MAMORI_EINVAL, "nested packer: %u layers, wants 2..%u", layers, MAX_LAYERS);
		goto done;
	}
	if (outer == MAMORI_TESTPACK_OUTER_AUTO)
		outer = key & 1 ? MAMORI_TESTPACK_OUTER_XOR : MAMORI_TESTPACK_OUTER_LZ;
	if (outer != MAMORI_TESTPACK_OUTER_XOR && outer != MAMORI_TESTPACK_OUTER_LZ) {
		rc = mamori_fail(MAMORI_EINVAL, "nested packer: unknown outer technique %d", (int)outer);
		goto done;
	}
	mamori_testpack_image_info li = { 0 };
	for (uint32_t i = 0; i < layers; i++) {
		const uint8_t *src = i ? cur : in;
		size_t src_len = i ? cur_len : in_len;
		uint8_t *next = NULL;
		size_t next_len = 0;
		if (i + 1 == layers && outer == MAMORI_TESTPACK_OUTER_XOR) {
			mamori_testpack_info xi;
			rc = mamori_testpack_xor(&next, &next_len, &xi, src, src_len, layer_key(key, i));
			li.stub_entry_rva = xi.stub_rva;
		} else {
			rc = mamori_testpack_lz(&next, &next_len, &li, src, src_len, layer_key(key, i), opt);
		}
		if (rc != MAMORI_OK) {
			rc = mamori_fail(rc, "nested packer: layer %u: %s", i + 1, mamori_error_detail());
			free(next);
			goto done;
		}
		if (i == 0)
			first = li;
		free(cur);
		cur = next;
		cur_len = next_len;
	}
	if (info) {
		*info = first;
		info->stub_entry_rva = li.stub_entry_rva;
		info->layers = layers;
		if (outer == MAMORI_TESTPACK_OUTER_XOR) {
			info->payload_rva = info->payload_off = info->payload_size = 0;
		} else {
			info->payload_rva = li.payload_rva;
			info->payload_off = li.payload_off;
			info->payload_size = li.payload_size;
		}
		snprintf(info->outer, sizeof(info->outer), "%s",
			 outer == MAMORI_TESTPACK_OUTER_XOR ? "xor" : "lz");
	}
	*out = cur;
	*out_len = cur_len;
	cur = NULL;
done:
	free(cur);
	return rc;
}
