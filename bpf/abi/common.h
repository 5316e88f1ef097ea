/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Tollway BPF ABI: common definitions.
 *
 * Everything under bpf/abi/ is shared between the eBPF programs (C, built by
 * clang in crates/tollway-datapath/build.rs) and user space (Rust, mirrored by
 * hand in crates/tollway-abi). Nothing else is shared: programs keep private
 * structs in their own files, and the Rust side never parses program-private
 * layouts.
 *
 * ABI rules, for every struct in bpf/abi/:
 *
 *  1. Fixed-width types only (__u8/__u16/__u32/__u64 and their __be/__s
 *     variants). No int/long/size_t/bool/enum-typed fields, no pointers,
 *     no bitfields.
 *  2. Natural alignment with no implicit padding: any hole the compiler would
 *     insert is spelled out as an explicit `__u8 pad_N[K]` (or __u16/__u32)
 *     field that writers zero. Explicit padding keeps the Rust mirror
 *     (#[repr(C)]) byte-identical and makes BTF dumps honest.
 *  3. Grow by appending, or by renaming a `reserved_N` field; never reorder,
 *     resize or reuse a field in place. Structs that will grow carry
 *     `reserved` fields that writers zero and readers ignore.
 *  4. Every field carries an `offset N` comment, and every struct ends with
 *     TW_ABI_ASSERT_SIZE / TW_ABI_ASSERT_OFFSET lines. clang checks those at
 *     build time; the tollway-abi unit tests parse this directory and check the
 *     same numbers against the Rust mirror (std::mem::offset_of!), so the
 *     three views (comments, C compiler, Rust compiler) cannot drift.
 *  5. Values in maps are host byte order unless the field type says __be*.
 *  6. Shared constants are plain `#define TW_NAME value` lines (decimal or
 *     0x hex), so they can be cross-checked from Rust the same way.
 */
#ifndef TOLLWAY_ABI_COMMON_H
#define TOLLWAY_ABI_COMMON_H

#include <linux/types.h>

#define TW_ABI_ASSERT_SIZE(type, size) \
	_Static_assert(sizeof(type) == (size), "ABI: size of " #type " changed")

#define TW_ABI_ASSERT_OFFSET(type, field, offset)                       \
	_Static_assert(__builtin_offsetof(type, field) == (offset),     \
		       "ABI: offset of " #type "." #field " changed")

#endif /* TOLLWAY_ABI_COMMON_H */
