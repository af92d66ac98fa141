/* SPDX-License-Identifier: MIT */
/*
 * bgsnap: point-in-time snapshots of live memory, saved in the background.
 *
 * This is the only public header of libbgsnap.
 *
 * Conventions
 *  - Functions return >= 0 on success and a negative errno or a negative
 *    BGSNAP_E* code (below -4095) on failure; bgsnap_strerror() names both.
 *  - A handle is not thread-safe except where a function says so.
 */
#ifndef BGSNAP_H
#define BGSNAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(BGSNAP_BUILDING)
#define BGSNAP_API __attribute__((visibility("default")))
#else
#define BGSNAP_API
#endif

#define BGSNAP_VERSION_MAJOR 0
#define BGSNAP_VERSION_MINOR 1
#define BGSNAP_VERSION_PATCH 0
#define BGSNAP_VERSION_NUMBER                                                 \
	(BGSNAP_VERSION_MAJOR * 10000 + BGSNAP_VERSION_MINOR * 100 +          \
	 BGSNAP_VERSION_PATCH)

/* The library's version number, e.g. 100 for 0.1.0; may differ from the
 * header's BGSNAP_VERSION_NUMBER when linked dynamically. Any thread. */
BGSNAP_API int bgsnap_version(void);
/* The same as a string, e.g. "0.1.0". Static storage. Any thread. */
BGSNAP_API const char *bgsnap_version_string(void);

/*
 * Errors specific to bgsnap. Everything else is a negative errno.
 */
enum bgsnap_error {
	BGSNAP_EBADMAGIC = -4100,    /* not a bgsnap snapshot */
	BGSNAP_EVERSION = -4101,     /* format version not supported */
	BGSNAP_ETRUNCATED = -4102,   /* the file ends too early */
	BGSNAP_ECHECKSUM = -4103,    /* a checksum does not match */
	BGSNAP_EOVERLAP = -4104,     /* a page is stored more than once */
	BGSNAP_EMISSING = -4105,     /* a page of a region is not stored */
	BGSNAP_ERANGE = -4106,       /* a record points outside its region */
	BGSNAP_ECORRUPT = -4107,     /* a malformed record or field */
	BGSNAP_EPARENT = -4108,      /* the parent snapshot is missing/wrong */
	BGSNAP_EMISMATCH = -4109,    /* regions differ from the snapshot's */
	BGSNAP_EINCONSISTENT = -4110, /* a page lost protection while saved */
	BGSNAP_EHAZARD = -4111,      /* memory was unmapped/moved/dropped */
	BGSNAP_EUNSAFE = -4112,      /* memory that cannot be protected */
	BGSNAP_ETARGET = -4113,      /* the target process went away */
};

/* A one-line description of @err (negative errno or BGSNAP_E*).
 * Static storage; any thread. */
BGSNAP_API const char *bgsnap_strerror(int err);

/*
 * Capabilities of this kernel and process, for a snapshot: one entry per
 * thing bgsnap uses, each with a one-line explanation that says how to get
 * it when it is missing.
 */
struct bgsnap_capability {
	char name[32];
	int ok;		  /* 1 available, 0 missing */
	int required;	  /* 1 if saving anonymous memory needs it */
	char detail[256]; /* one line */
};

#define BGSNAP_MAX_CAPABILITIES 16

/*
 * Probe what is available, filling up to @max entries of @caps.
 * Returns the number of entries filled (the probe has at most
 * BGSNAP_MAX_CAPABILITIES), or a negative errno. Any thread.
 */
BGSNAP_API int bgsnap_probe(struct bgsnap_capability *caps, size_t max);

#ifdef __cplusplus
}
#endif

#endif /* BGSNAP_H */
