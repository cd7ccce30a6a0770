// C wrapper over Debian's libtlsh (see tlsh_shim.h). Exceptions never cross
// into C: allocation failure is reported as -1.
#include "tlsh_shim.h"

#include <tlsh.h>

#include <climits>
#include <cstring>
#include <new>

struct mamori_tlsh {
	Tlsh tlsh;
	char digest[TLSH_STRING_BUFFER_LEN];
};

extern "C" int mamori_tlsh_new(mamori_tlsh **out, const unsigned char *data, size_t len)
{
	*out = nullptr;
	mamori_tlsh *t = new (std::nothrow) mamori_tlsh;
	if (!t)
		return -1;
	// Tlsh::update takes an unsigned int length; feed larger buffers in parts.
	while (len > 0) {
		unsigned int part = len > UINT_MAX / 2 ? UINT_MAX / 2 : static_cast<unsigned int>(len);
		t->tlsh.update(data, part);
		data += part;
		len -= part;
	}
	t->tlsh.final();
	const char *hex = t->tlsh.getHash(t->digest, sizeof(t->digest));
	if (!hex || hex[0] == '\0') {
		delete t;
		return -1;
	}
	*out = t;
	return 0;
}

extern "C" int mamori_tlsh_diff(const mamori_tlsh *a, const mamori_tlsh *b)
{
	return a->tlsh.totalDiff(&b->tlsh, true);
}

extern "C" const char *mamori_tlsh_digest(const mamori_tlsh *t)
{
	return t->digest;
}

extern "C" void mamori_tlsh_free(mamori_tlsh *t)
{
	delete t;
}
