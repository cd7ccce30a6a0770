/*
 * The registry of protocol classifiers and the per-flow driver around it.
 * A flow buffers its first reads (up to PROTO_PROBE_MAX bytes per direction
 * and PROTO_PROBE_SEGMENTS reads) and asks every prober about them, in both
 * directions, because SMTP, FTP and IRC servers speak first. A score of
 * PROTO_CONFIDENT or more decides at once; while some prober still asks for
 * more bytes, or the best score is weak (a bare "220 hello" banner fits SMTP
 * and FTP alike), the flow waits for more bytes or for proto_flow_settle().
 * Once decided, the buffered reads are replayed in their original order.
 * Also here: the helpers every parser shares (bounded JSON strings, events,
 * metadata lists, the line splitter).
 */
#include <stdlib.h>
#include <string.h>

#include "proto.h"

static const proto_parser *const registry[] = {
	&proto_tls, &proto_http, &proto_dns, &proto_smtp, &proto_ftp, &proto_irc,
};
#define N_PARSERS (sizeof(registry) / sizeof(registry[0]))

const proto_parser *const *proto_registry(size_t *out_count)
{
	*out_count = N_PARSERS;
	return registry;
}

const proto_parser *proto_find(const char *name)
{
	for (size_t i = 0; i < N_PARSERS; i++)
		if (strcmp(registry[i]->name, name) == 0)
			return registry[i];
	return NULL;
}

const proto_parser *proto_classify(const uint8_t *buf, size_t len, proto_dir dir, proto_transport transport,
				   int *out_confidence)
{
	const proto_parser *best = NULL;
	int best_score = 0;
	for (size_t i = 0; i < N_PARSERS; i++) {
		if (!(registry[i]->transports & transport))
			continue;
		int s = registry[i]->probe(buf, len, dir, transport);
		if (s > best_score) {
			best_score = s > 100 ? 100 : s;
			best = registry[i];
		}
	}
	if (out_confidence)
		*out_confidence = best_score;
	return best;
}

/* ------------------------------------------------------------------ */
/* Flows                                                                */
/* ------------------------------------------------------------------ */

typedef struct probe_segment {
	uint8_t dir;
	uint32_t off; /* into pending[] */
	uint32_t len;
} probe_segment;

struct proto_flow {
	proto_transport transport;
	bool decided;
	bool failed;		    /* the parser gave up; bytes are only counted */
	const proto_parser *parser; /* NULL when decided as unknown */
	int confidence;
	void *state;
	proto_out out;
	size_t parsed[2]; /* bytes handed to the parser per direction */
	bool over_budget[2];
	/* While undecided: the reads so far, in order, within one buffer
	 * (2 * PROTO_PROBE_MAX bytes, freed once the flow is decided, since a
	 * gateway holds many flows). */
	uint8_t *pending;
	size_t pending_len;
	size_t first_len[2]; /* bytes buffered per direction */
	probe_segment seg[PROTO_PROBE_SEGMENTS];
	size_t n_seg;
};

int proto_flow_new(proto_flow **out, proto_transport transport)
{
	int err = MAMORI_OK;
	proto_flow *f;
	*out = NULL;
	if (transport != PROTO_TCP && transport != PROTO_UDP)
		return mamori_fail(MAMORI_EINVAL, "proto: bad transport %d", (int)transport);
	f = calloc(1, sizeof(*f));
	if (!f)
		return mamori_fail(MAMORI_ENOMEM, "proto: no memory for a flow");
	f->transport = transport;
	f->out.meta = json_object();
	f->out.events = json_array();
	if (!f->out.meta || !f->out.events) {
		err = mamori_fail(MAMORI_ENOMEM, "proto: no memory for flow metadata");
		goto done;
	}
	*out = f;
	f = NULL;
done:
	proto_flow_free(f);
	return err;
}

void proto_flow_free(proto_flow *f)
{
	if (!f)
		return;
	if (f->parser && f->state)
		f->parser->state_free(f->state);
	json_decref(f->out.meta);
	json_decref(f->out.events);
	free(f->pending);
	free(f);
}

bool proto_flow_decided(const proto_flow *f)
{
	return f->decided;
}

const char *proto_flow_proto(const proto_flow *f)
{
	if (!f->decided)
		return NULL;
	return f->parser ? f->parser->name : "unknown";
}

int proto_flow_confidence(const proto_flow *f)
{
	return f->confidence;
}

json_t *proto_flow_meta(const proto_flow *f)
{
	return f->out.meta;
}

json_t *proto_flow_take_events(proto_flow *f)
{
	json_t *fresh = json_array();
	if (!fresh)
		return NULL;
	json_t *ev = f->out.events;
	f->out.events = fresh;
	return ev;
}

/* A parser gave up on the stream: say why in the metadata and stop
 * parsing; the gateway goes on relaying or reflecting the flow. */
static void flow_record_error(proto_flow *f, int err)
{
	const char *why = mamori_error_detail()[0] ? mamori_error_detail() : mamori_strerror(err);
	f->failed = true;
	json_object_set_new(f->out.meta, "error", proto_str(why, strlen(why)));
	proto_emit(
		&f->out, "proto_error",
		json_pack("{s:s,s:o}", "proto", proto_flow_proto(f), "error", proto_str(why, strlen(why))));
}

/* Hand bytes to the parser within the per-direction budget. */
static int flow_parse(proto_flow *f, const uint8_t *buf, size_t len, proto_dir dir)
{
	if (!f->parser || f->failed || len == 0)
		return MAMORI_OK;
	if (f->parsed[dir] >= PROTO_MAX_FLOW_BYTES) {
		if (!f->over_budget[dir]) {
			f->over_budget[dir] = true;
			json_object_set_new(f->out.meta,
					    dir == PROTO_TO_SERVER ? "truncated_to_server"
								   : "truncated_to_client",
					    json_true());
		}
		return MAMORI_OK;
	}
	size_t room = PROTO_MAX_FLOW_BYTES - f->parsed[dir];
	if (f->transport == PROTO_UDP && len > room)
		return MAMORI_OK; /* a datagram is parsed whole or not at all */
	if (len > room)
		len = room;
	f->parsed[dir] += len;
	int err = f->parser->parse(f->state, buf, len, dir, &f->out);
	if (err == MAMORI_ENOMEM)
		return err;
	if (err != MAMORI_OK)
		flow_record_error(f, err);
	return MAMORI_OK;
}

/* Unknown flows keep a short hex prefix of each direction, so the report
 * can still tell one unknown protocol from another. */
static void meta_first_bytes(proto_flow *f)
{
	static const char hex[] = "0123456789abcdef";
	const char *keys[2] = { "first_bytes_to_server", "first_bytes_to_client" };
	for (int d = 0; d < 2; d++) {
		char text[2 * 32 + 1];
		size_t n = 0;
		for (size_t s = 0; s < f->n_seg && n < 32; s++) {
			if (f->seg[s].dir != d)
				continue;
			for (size_t i = 0; i < f->seg[s].len && n < 32; i++, n++) {
				uint8_t b = f->pending[f->seg[s].off + i];
				text[2 * n] = hex[b >> 4];
				text[2 * n + 1] = hex[b & 15];
			}
		}
		text[2 * n] = '\0';
		if (n)
			json_object_set_new(f->out.meta, keys[d], json_string(text));
	}
}

static int flow_decide(proto_flow *f, const proto_parser *p, int score)
{
	int err = MAMORI_OK;
	f->decided = true;
	f->confidence = p ? score : 0;
	if (json_object_set_new(f->out.meta, "proto", json_string(p ? p->name : "unknown")) < 0 ||
	    json_object_set_new(f->out.meta, "confidence", json_integer(f->confidence)) < 0)
		return mamori_fail(MAMORI_ENOMEM, "proto: no memory for flow metadata");
	if (!p) {
		meta_first_bytes(f);
		goto done;
	}
	err = p->state_new(&f->state, f->transport);
	if (err != MAMORI_OK)
		goto done;
	f->parser = p;
	for (size_t s = 0; s < f->n_seg && err == MAMORI_OK; s++)
		err = flow_parse(f, f->pending + f->seg[s].off, f->seg[s].len, (proto_dir)f->seg[s].dir);
done:
	f->n_seg = 0;
	f->pending_len = 0;
	free(f->pending);
	f->pending = NULL;
	return err;
}

/* Score every parser over what is buffered: each direction's first segment,
 * which on TCP holds all of that direction's bytes until the other side
 * speaks (consecutive reads are merged), and on UDP is the first datagram. */
static void flow_score(const proto_flow *f, const proto_parser **out_best, int *out_score, bool *out_more)
{
	const uint8_t *first[2] = { NULL, NULL };
	size_t first_len[2] = { 0, 0 };
	*out_best = NULL;
	*out_score = 0;
	*out_more = false;
	for (size_t s = 0; s < f->n_seg; s++) {
		int d = f->seg[s].dir;
		if (first[d])
			continue;
		first[d] = f->pending + f->seg[s].off;
		first_len[d] = f->seg[s].len;
	}
	for (size_t i = 0; i < N_PARSERS; i++) {
		const proto_parser *p = registry[i];
		if (!(p->transports & f->transport))
			continue;
		int best = 0;
		for (int d = 0; d < 2; d++) {
			if (!first[d])
				continue;
			int s = p->probe(first[d], first_len[d], (proto_dir)d, f->transport);
			if (s == PROTO_PROBE_MORE)
				*out_more = true;
			else if (s > best)
				best = s > 100 ? 100 : s;
		}
		if (best > *out_score) {
			*out_score = best;
			*out_best = p;
		}
	}
}

int proto_flow_settle(proto_flow *f)
{
	const proto_parser *best;
	int score;
	bool more;
	if (f->decided)
		return MAMORI_OK;
	flow_score(f, &best, &score, &more);
	return flow_decide(f, best, score);
}

/* Buffer one read while undecided; `*out_fits` is false when there is no
 * room left. On TCP, a read in the same direction as the last one extends
 * it, so that byte-at-a-time feeding does not use up the segments. */
static int flow_buffer(proto_flow *f, const uint8_t *buf, size_t len, proto_dir dir, bool *out_fits)
{
	bool extend = f->transport == PROTO_TCP && f->n_seg > 0 && f->seg[f->n_seg - 1].dir == dir &&
		      f->seg[f->n_seg - 1].off + f->seg[f->n_seg - 1].len == f->pending_len;
	*out_fits = false;
	if (len > PROTO_PROBE_MAX - f->first_len[dir] || (!extend && f->n_seg == PROTO_PROBE_SEGMENTS))
		return MAMORI_OK;
	if (!f->pending && !(f->pending = malloc((size_t)2 * PROTO_PROBE_MAX)))
		return mamori_fail(MAMORI_ENOMEM, "proto: no memory for first bytes");
	if (extend)
		f->seg[f->n_seg - 1].len += (uint32_t)len;
	else
		f->seg[f->n_seg++] = (probe_segment){ .dir = (uint8_t)dir,
						      .off = (uint32_t)f->pending_len,
						      .len = (uint32_t)len };
	memcpy(f->pending + f->pending_len, buf, len);
	f->pending_len += len;
	f->first_len[dir] += len;
	*out_fits = true;
	return MAMORI_OK;
}

int proto_flow_feed(proto_flow *f, const uint8_t *buf, size_t len, proto_dir dir)
{
	int err = MAMORI_OK;
	bool fits;
	const proto_parser *best;
	int score;
	bool more;
	if (dir != PROTO_TO_SERVER && dir != PROTO_TO_CLIENT)
		return mamori_fail(MAMORI_EINVAL, "proto: bad direction %d", (int)dir);
	if (f->decided)
		return flow_parse(f, buf, len, dir);
	if (len == 0)
		return MAMORI_OK;
	if ((err = flow_buffer(f, buf, len, dir, &fits)) != MAMORI_OK)
		return err;
	if (!fits) {
		/* Out of room before a decision: probe what fits of this
		 * read (a datagram is kept whole or not at all), decide, and
		 * hand the rest over to the parser. */
		size_t fit = 0;
		if (f->transport == PROTO_TCP && f->first_len[dir] < PROTO_PROBE_MAX) {
			size_t room = PROTO_PROBE_MAX - f->first_len[dir];
			if ((err = flow_buffer(f, buf, room, dir, &fits)) != MAMORI_OK)
				return err;
			fit = fits ? room : 0;
		}
		err = proto_flow_settle(f);
		if (err == MAMORI_OK)
			err = flow_parse(f, buf + fit, len - fit, dir);
		return err;
	}
	flow_score(f, &best, &score, &more);
	if (score >= PROTO_CONFIDENT)
		return flow_decide(f, best, score);
	if (!more && !best)
		return flow_decide(f, NULL, 0); /* nobody could ever claim these bytes */
	return MAMORI_OK;
}

/* ------------------------------------------------------------------ */
/* Helpers for parsers                                                  */
/* ------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s[0..n), or 0. */
static size_t utf8_seq(const uint8_t *s, size_t n)
{
	size_t need;
	uint32_t cp;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		need = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		need = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		need = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (n < need)
		return 0;
	for (size_t i = 1; i < need; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((need == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (need == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return need;
}

json_t *proto_str(const void *buf, size_t len)
{
	const uint8_t *in = buf;
	char text[PROTO_MAX_STR + 1];
	size_t n = 0;
	for (size_t i = 0; i < len;) {
		size_t k = utf8_seq(in + i, len - i);
		if (k == 0 || (k == 1 && (in[i] < 0x20 || in[i] == 0x7f) && in[i] != '\t')) {
			k = k ? k : 1;
			if (n + 1 > PROTO_MAX_STR)
				break;
			text[n++] = '?';
		} else {
			if (n + k > PROTO_MAX_STR)
				break;
			memcpy(text + n, in + i, k);
			n += k;
		}
		i += k;
	}
	return json_stringn(text, n);
}

int proto_emit(proto_out *out, const char *type, json_t *fields)
{
	int err = MAMORI_OK;
	json_t *ev = fields ? fields : json_object();
	if (!ev)
		return mamori_fail(MAMORI_ENOMEM, "proto: no memory for an event");
	if (json_array_size(out->events) >= PROTO_MAX_EVENTS) {
		out->events_dropped++;
		proto_meta_add(out, "events_dropped", 1);
		goto done;
	}
	if (json_object_set_new(ev, "type", json_string(type)) < 0 || json_array_append(out->events, ev) < 0)
		err = mamori_fail(MAMORI_ENOMEM, "proto: no memory for an event");
done:
	json_decref(ev);
	return err;
}

int proto_meta_set(proto_out *out, const char *key, json_t *value)
{
	if (!value || json_object_set_new(out->meta, key, value) < 0)
		return mamori_fail(MAMORI_ENOMEM, "proto: no memory for metadata %s", key);
	return MAMORI_OK;
}

int proto_meta_add(proto_out *out, const char *key, json_int_t n)
{
	json_t *v = json_object_get(out->meta, key);
	json_int_t cur = json_is_integer(v) ? json_integer_value(v) : 0;
	return proto_meta_set(out, key, json_integer(cur + n));
}

int proto_meta_append(proto_out *out, const char *key, json_t *value)
{
	int err = MAMORI_OK;
	json_t *list;
	if (!value)
		return mamori_fail(MAMORI_ENOMEM, "proto: no memory for metadata %s", key);
	list = json_object_get(out->meta, key);
	if (!json_is_array(list)) {
		list = json_array();
		if (!list || json_object_set_new(out->meta, key, list) < 0) {
			err = mamori_fail(MAMORI_ENOMEM, "proto: no memory for metadata %s", key);
			goto done;
		}
	}
	if (json_array_size(list) >= PROTO_MAX_LIST) {
		char dropped[96];
		snprintf(dropped, sizeof(dropped), "%s_dropped", key);
		err = proto_meta_add(out, dropped, 1);
		goto done;
	}
	if (json_array_append(list, value) < 0)
		err = mamori_fail(MAMORI_ENOMEM, "proto: no memory for metadata %s", key);
done:
	json_decref(value);
	return err;
}

int proto_meta_append_unique(proto_out *out, const char *key, const char *s, size_t len)
{
	json_t *v = proto_str(s, len);
	json_t *list = json_object_get(out->meta, key);
	size_t i;
	json_t *item;
	if (!v)
		return mamori_fail(MAMORI_ENOMEM, "proto: no memory for metadata %s", key);
	json_array_foreach(list, i, item)
	{
		if (json_equal(item, v)) {
			json_decref(v);
			return MAMORI_OK;
		}
	}
	return proto_meta_append(out, key, v);
}

void proto_lines_init(proto_lines *pl, size_t max)
{
	pl->len = 0;
	pl->skipping = false;
	pl->max = max == 0 || max > PROTO_LINE_MAX ? PROTO_LINE_MAX : max;
}

static int lines_deliver(proto_lines *pl, bool overlong, proto_line_fn fn, void *ctx, proto_dir dir,
			 proto_out *out)
{
	size_t n = pl->len;
	if (!overlong && n > 0 && pl->buf[n - 1] == '\r')
		n--;
	pl->buf[n] = '\0';
	pl->len = 0;
	/* Flagged here for every line-based parser, not in each of them. */
	if (overlong)
		proto_meta_set(out, "overlong_lines", json_true());
	return fn(ctx, pl->buf, n, overlong, dir, out);
}

int proto_lines_feed(proto_lines *pl, const uint8_t *buf, size_t len, proto_line_fn fn, void *ctx,
		     proto_dir dir, proto_out *out, size_t *out_used)
{
	int err = MAMORI_OK;
	size_t i = 0;
	while (i < len && err == MAMORI_OK) {
		const uint8_t *nl = memchr(buf + i, '\n', len - i);
		size_t chunk = nl ? (size_t)(nl - (buf + i)) : len - i;
		if (pl->skipping) {
			if (nl)
				pl->skipping = false;
		} else {
			size_t room = pl->max - pl->len;
			size_t take = chunk < room ? chunk : room;
			memcpy(pl->buf + pl->len, buf + i, take);
			pl->len += take;
			if (chunk > room) {
				err = lines_deliver(pl, true, fn, ctx, dir, out);
				pl->skipping = nl == NULL;
			} else if (nl) {
				err = lines_deliver(pl, false, fn, ctx, dir, out);
			}
		}
		i += chunk + (nl ? 1 : 0);
	}
	if (out_used)
		*out_used = i;
	return err > 0 ? MAMORI_OK : err;
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

bool proto_prefix_ci(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);
	if (len < n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (lower(s[i]) != lower(prefix[i]))
			return false;
	return true;
}

bool proto_word_is(const char *line, size_t len, const char *word)
{
	size_t n = strlen(word);
	return proto_prefix_ci(line, len, word) && (len == n || line[n] == ' ');
}

bool proto_looks_text(const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len;) {
		size_t k = utf8_seq(buf + i, len - i);
		if (k == 0) {
			/* A multi-byte sequence cut at the end of the buffer
			 * is not evidence against text. */
			if (len - i < 4 && buf[i] >= 0xc2)
				return true;
			return false;
		}
		if (k == 1 && buf[i] < 0x20 && buf[i] != '\r' && buf[i] != '\n' && buf[i] != '\t')
			return false;
		if (k == 1 && buf[i] == 0x7f)
			return false;
		i += k;
	}
	return true;
}
