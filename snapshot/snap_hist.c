/* SPDX-License-Identifier: MIT */
/* The latency histogram of write-fault stalls. */
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
	for (unsigned b = 0; b < sizeof(h->bucket) / sizeof(h->bucket[0]);
	     b++) {
		seen += h->bucket[b];
		if (seen >= (want ? want : 1))
			return bucket_top(b) < h->max ? bucket_top(b) : h->max;
	}
	return h->max;
}
