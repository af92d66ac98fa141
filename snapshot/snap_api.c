/* SPDX-License-Identifier: MIT */
/*
 * Version, error strings and the capability probe: the public calls that
 * need no session.
 */
#include "bgsnap.h"
#include "uffd.h"

#include <stdio.h>
#include <string.h>

#define STR2(x) #x
#define STR(x)	STR2(x)

BGSNAP_API int bgsnap_version(void)
{
	return BGSNAP_VERSION_NUMBER;
}

BGSNAP_API const char *bgsnap_version_string(void)
{
	return STR(BGSNAP_VERSION_MAJOR) "." STR(BGSNAP_VERSION_MINOR) "." STR(
		BGSNAP_VERSION_PATCH);
}

BGSNAP_API const char *bgsnap_strerror(int err)
{
	switch (err) {
	case BGSNAP_EBADMAGIC:
		return "not a bgsnap snapshot (bad magic)";
	case BGSNAP_EVERSION:
		return "unsupported snapshot format version";
	case BGSNAP_ETRUNCATED:
		return "snapshot is truncated";
	case BGSNAP_ECHECKSUM:
		return "checksum mismatch";
	case BGSNAP_EOVERLAP:
		return "pages stored more than once";
	case BGSNAP_EMISSING:
		return "pages missing from the snapshot";
	case BGSNAP_ERANGE:
		return "record out of range";
	case BGSNAP_ECORRUPT:
		return "malformed snapshot record";
	case BGSNAP_EPARENT:
		return "parent snapshot missing or not the right one";
	case BGSNAP_EMISMATCH:
		return "memory regions do not match the snapshot";
	case BGSNAP_EINCONSISTENT:
		return "a page lost its write protection during the save";
	case BGSNAP_EHAZARD:
		return "memory was unmapped, moved or discarded during the save";
	case BGSNAP_EUNSAFE:
		return "memory cannot be write-protected safely";
	case BGSNAP_ETARGET:
		return "the target process went away";
	}
	if (err < 0 && err > -4096)
		return strerror(-err);
	return err >= 0 ? "success" : "unknown error";
}

BGSNAP_API int bgsnap_probe(struct bgsnap_capability *caps, size_t max)
{
	struct bgs_uffd_cap found[BGS_UFFD_MAX_CAPS];
	const int n = bgs_uffd_probe(found);
	size_t i;

	for (i = 0; i < (size_t)n && i < max; i++) {
		snprintf(caps[i].name, sizeof(caps[i].name), "%s",
			 found[i].name);
		snprintf(caps[i].detail, sizeof(caps[i].detail), "%s",
			 found[i].detail);
		caps[i].ok = found[i].ok;
		caps[i].required = found[i].required;
	}
	return (int)i;
}
