/* SPDX-License-Identifier: MIT */
/* The latency histogram and the fault-to-copier request ring. */
#include "snap_internal.h"

/* Bucket: 8 sub-buckets per power of two (values < 8 map exactly). */
static unsigned bucket_of(uint64_t ns)
{
	unsigned msb;

	if (ns < 8)
		return (unsigned)ns;
	msb = 63u - (unsigned)__builtin_clzll(ns);
	return msb * 8 + (unsigned)((ns >> (msb - 3)) & 7);
}

/* The upper bound of a bucket, so a percentile never understates. */
static uint64_t bucket_top(unsigned b)
{
	const unsigned msb = b / 8, sub = b % 8;

	if (b < 8)
		return b;
	return ((8ULL + sub + 1) << (msb - 3)) - 1;
}

void bgs_hist_add(struct bgs_hist *h, uint64_t ns)
{
	h->bucket[bucket_of(ns)]++;
	h->count++;
	if (ns > h->max)
		h->max = ns;
}

uint64_t bgs_hist_percentile(const struct bgs_hist *h, double p)
{
	const uint64_t want = (uint64_t)((double)h->count * p / 100.0 + 0.5);
	uint64_t seen = 0;

	if (!h->count)
		return 0;
	for (unsigned b = 0; b < sizeof(h->bucket) / sizeof(h->bucket[0]); b++) {
		seen += h->bucket[b];
		if (seen >= (want ? want : 1))
			return bucket_top(b) < h->max ? bucket_top(b) : h->max;
	}
	return h->max;
}

/*
 * The ring: the producer publishes a slot with a release store of head;
 * the consumer frees it with a release store of tail. Each side reads the
 * other's index with acquire, which orders the slot contents.
 */
bool bgs_ring_push(struct bgs_ring *r, const struct bgs_request *req)
{
	const uint32_t head = atomic_load_explicit(&r->head,
						   memory_order_relaxed);
	const uint32_t tail = atomic_load_explicit(&r->tail,
						   memory_order_acquire);

	if (head - tail == BGS_RING_SLOTS)
		return false;
	r->slot[head % BGS_RING_SLOTS] = *req;
	atomic_store_explicit(&r->head, head + 1, memory_order_release);
	return true;
}

bool bgs_ring_pop(struct bgs_ring *r, struct bgs_request *req)
{
	const uint32_t tail = atomic_load_explicit(&r->tail,
						   memory_order_relaxed);
	const uint32_t head = atomic_load_explicit(&r->head,
						   memory_order_acquire);

	if (head == tail)
		return false;
	*req = r->slot[tail % BGS_RING_SLOTS];
	atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
	return true;
}
