/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every map of the node datapath, shared by all programs (lxc.c, sock.c,
 * nodeport.c). Names, key/value types and sizes are the ABI of
 * bpf/abi/{lb,ct,drop,policy,events,frag}.h; every map is pinned by name,
 * so all the objects of a node (and every later load) share the same
 * kernel maps.
 *
 * Include this header from exactly one translation unit per object (each
 * object is its own .c file, so that is every program file).
 */
#ifndef TOLLWAY_LIB_MAPS_H
#define TOLLWAY_LIB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "abi/ct.h"
#include "abi/drop.h"
#include "abi/lb.h"
#include "abi/policy.h"
#include "abi/events.h"
#include "abi/frag.h"

/*
 * Maps written only by user space (services, backends, rev NAT, source
 * ranges, socket skip list) are not preallocated: they are sized for the largest cluster
 * and mostly empty, and the datapath never inserts into them.
 */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TW_LB_SERVICES_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tw_lb4_key);
	__type(value, struct tw_lb4_service);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_lb4_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TW_LB_BACKENDS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct tw_lb4_backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_lb4_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TW_LB_REVNAT_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct tw_lb4_revnat);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_lb4_revnat SEC(".maps");

/*
 * Template of the Maglev inner tables. BPF_F_INNER_MAP makes the kernel
 * accept inner arrays of any max_entries (user space installs arrays of
 * tw_config.maglev_m entries, which need not be the default); every inner
 * array must then be created with BPF_F_INNER_MAP too, because the kernel
 * compares map_flags when an inner map is inserted.
 */
struct tw_lb4_maglev_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TW_LB_MAGLEV_M_DEFAULT);
	__uint(map_flags, BPF_F_INNER_MAP);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, TW_LB_MAGLEV_MAX);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct tw_lb4_maglev_inner);
} tw_lb4_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TW_LB_AFFINITY_MAX);
	__type(key, struct tw_lb4_affinity_key);
	__type(value, struct tw_lb_affinity);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_lb4_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TW_LB_REVERSE_SK_MAX);
	__type(key, struct tw_lb4_reverse_sk_key);
	__type(value, struct tw_lb4_reverse_sk);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_lb4_rev_sk SEC(".maps");

/* A LoadBalancer frontend's source ranges (TW_SVC_F_SRC_RANGE), written by
 * user space only. LPM tries must be created with BPF_F_NO_PREALLOC. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, TW_LB_SRC_RANGE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tw_lb4_src_range_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_lb4_srcrange SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TW_SOCK_SKIP_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_sock_skip SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tw_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TW_CT_MAX);
	__type(key, struct tw_ct4_key);
	__type(value, struct tw_ct_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_ct4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TW_NODEPORT_NAT_MAX);
	__type(key, struct tw_ct4_key);
	__type(value, struct tw_nat4_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_np_nat4 SEC(".maps");

/* The first fragments' L4 headers, for the datagrams' later fragments
 * (abi/frag.h, lib/frag.h). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TW_FRAG4_MAX);
	__type(key, struct tw_frag4_key);
	__type(value, struct tw_frag4_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_frag4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TW_DROPS_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_drops SEC(".maps");

/*
 * Identity-based policy (abi/policy.h), all written by user space only.
 *
 * tw_ipcache4: every known address or prefix -> its security identity.
 * LPM tries must be created with BPF_F_NO_PREALLOC.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, TW_IPCACHE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tw_ipcache_key);
	__type(value, struct tw_ipcache_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_ipcache4 SEC(".maps");

/* tw_endpoints: host-side veth ifindex -> the pod's endpoint. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TW_ENDPOINTS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct tw_endpoint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_endpoints SEC(".maps");

/*
 * Template of the per-endpoint policy tries. No BPF_F_INNER_MAP: every
 * inner trie has exactly this definition (the kernel compares type, key
 * and value size, map_flags and max_entries when user space inserts one),
 * so user space creates them with TW_POLICY_ENTRIES_MAX entries and
 * BPF_F_NO_PREALLOC.
 *
 * Key and value are given by size, not __type(): clang 14 emits the types
 * that only an inner map template points to as BTF forward declarations,
 * whose size no loader can resolve (the kernel compares only sizes
 * anyway).
 */
struct tw_policy_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, TW_POLICY_ENTRIES_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(struct tw_policy_key));
	__uint(value_size, sizeof(struct tw_policy_entry));
};

/* tw_policy: endpoint id -> its policy trie, replaced whole by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, TW_POLICY_ENDPOINTS_MAX);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct tw_policy_inner);
} tw_policy SEC(".maps");

/*
 * Flow events (abi/events.h): the ring buffer user space reads, its
 * config (written by user space) and the count of events the ring had no
 * room for.
 */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, TW_EVENTS_RING_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tw_events_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_events_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_events_lost SEC(".maps");

#endif /* TOLLWAY_LIB_MAPS_H */
