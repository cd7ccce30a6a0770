/*
 * libFuzzer target for the protocol classifiers (src/contain/proto*.c): the
 * registry-driven flow and every parser on its own, fed with the same
 * records. The input format is that of the .flow files in tests/contain/data, so the
 * captured samples are seeds as they are: one byte whose low bit picks the
 * transport (odd: UDP), then records of a direction byte (bit 4 set: server
 * to client), a 4-byte big-endian length (cut to what is left) and the
 * bytes. The low three bits of the direction byte also choose where each
 * record is split in two, so incremental parsing is exercised too. Traps
 * when an invariant breaks: scores outside -1..100, a flow without a
 * protocol after settle, more pending events or longer strings than the
 * limits allow, metadata that cannot be serialised.
 */
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define FUZZ_CHECK(cond)                  \
	do {                              \
		if (!(cond))              \
			__builtin_trap(); \
	} while (0)

#define MAX_RECORDS 512

typedef struct fuzz_record {
	proto_dir dir;
	unsigned split; /* 0..7: where to cut the record, in eighths */
	const uint8_t *data;
	size_t len;
} fuzz_record;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every string anywhere in `v` stays within PROTO_MAX_STR bytes. */
static void check_strings(const json_t *v, int depth)
{
	size_t i;
	const char *key;
	json_t *item;
	FUZZ_CHECK(depth < 16);
	if (json_is_string(v)) {
		FUZZ_CHECK(json_string_length(v) <= PROTO_MAX_STR);
	} else if (json_is_array(v)) {
		json_array_foreach((json_t *)v, i, item) check_strings(item, depth + 1);
	} else if (json_is_object(v)) {
		json_object_foreach((json_t *)v, key, item) check_strings(item, depth + 1);
	}
}

static void check_output(const json_t *meta, const json_t *events)
{
	FUZZ_CHECK(json_is_object(meta) && json_is_array(events));
	FUZZ_CHECK(json_array_size(events) <= PROTO_MAX_EVENTS);
	check_strings(meta, 0);
	check_strings(events, 0);
	char *s = json_dumps(meta, JSON_COMPACT);
	FUZZ_CHECK(s != NULL);
	free(s);
	s = json_dumps(events, JSON_COMPACT);
	FUZZ_CHECK(s != NULL);
	free(s);
}

static void run_registry(proto_transport t, const fuzz_record *rec, size_t n)
{
	proto_flow *f;
	FUZZ_CHECK(proto_flow_new(&f, t) == MAMORI_OK);
	for (size_t i = 0; i < n; i++) {
		size_t cut = t == PROTO_TCP ? rec[i].len * rec[i].split / 8 : 0;
		if (cut)
			FUZZ_CHECK(proto_flow_feed(f, rec[i].data, cut, rec[i].dir) == MAMORI_OK);
		FUZZ_CHECK(proto_flow_feed(f, rec[i].data + cut, rec[i].len - cut, rec[i].dir) == MAMORI_OK);
		if (i % 4 == 3) {
			json_t *ev = proto_flow_take_events(f);
			check_output(proto_flow_meta(f), ev);
			json_decref(ev);
		}
	}
	FUZZ_CHECK(proto_flow_settle(f) == MAMORI_OK);
	FUZZ_CHECK(proto_flow_decided(f) && proto_flow_proto(f) != NULL);
	FUZZ_CHECK(json_is_string(json_object_get(proto_flow_meta(f), "proto")));
	int c = proto_flow_confidence(f);
	FUZZ_CHECK(c >= 0 && c <= 100);
	json_t *ev = proto_flow_take_events(f);
	check_output(proto_flow_meta(f), ev);
	json_decref(ev);
	proto_flow_free(f);
}

/* One parser alone, whatever its probe says. */
static void run_parser(const proto_parser *p, proto_transport t, const fuzz_record *rec, size_t n)
{
	void *state = NULL;
	proto_out out = { .meta = json_object(), .events = json_array() };
	FUZZ_CHECK(out.meta && out.events);
	FUZZ_CHECK(p->state_new(&state, t) == MAMORI_OK);
	for (size_t i = 0; i < n; i++) {
		int s = p->probe(rec[i].data, rec[i].len, rec[i].dir, t);
		FUZZ_CHECK(s == PROTO_PROBE_MORE || (s >= 0 && s <= 100));
		int err = p->parse(state, rec[i].data, rec[i].len, rec[i].dir, &out);
		FUZZ_CHECK(err <= 0);
		if (err != MAMORI_OK)
			break; /* the flow stops feeding a parser that failed */
	}
	check_output(out.meta, out.events);
	p->state_free(state);
	json_decref(out.meta);
	json_decref(out.events);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static fuzz_record rec[MAX_RECORDS];
	size_t n = 0, pos = 1;
	if (size < 1)
		return 0;
	proto_transport t = data[0] & 1 ? PROTO_UDP : PROTO_TCP;
	while (pos < size && n < MAX_RECORDS) {
		uint8_t d = data[pos++];
		size_t len = 0;
		for (int k = 0; k < 4 && pos < size; k++)
			len = len << 8 | data[pos++];
		if (len > size - pos)
			len = size - pos;
		rec[n++] = (fuzz_record){ (d >> 4) & 1 ? PROTO_TO_CLIENT : PROTO_TO_SERVER, d & 7u,
					  data + pos, len };
		pos += len;
	}
	run_registry(t, rec, n);
	size_t np;
	const proto_parser *const *reg = proto_registry(&np);
	for (size_t i = 0; i < np; i++)
		if (reg[i]->transports & t)
			run_parser(reg[i], t, rec, n);
	return 0;
}
