/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Security identities of addresses (abi/policy.h): the ipcache.
 */
#ifndef TOLLWAY_LIB_IDENTITY_H
#define TOLLWAY_LIB_IDENTITY_H

#include "lib/common.h"
#include "lib/maps.h"

/* The identity of an address: its longest ipcache prefix, else WORLD. */
static __always_inline __u32 tw_ipcache_identity(__be32 addr)
{
	struct tw_ipcache_key key = {
		.prefixlen = 32,
		.address = addr,
	};
	struct tw_ipcache_entry *entry;

	entry = bpf_map_lookup_elem(&tw_ipcache4, &key);
	return entry ? entry->identity : TW_ID_WORLD;
}

#endif /* TOLLWAY_LIB_IDENTITY_H */
