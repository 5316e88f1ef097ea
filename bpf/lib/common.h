/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Includes and small definitions every datapath helper uses.
 */
#ifndef TOLLWAY_LIB_COMMON_H
#define TOLLWAY_LIB_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define TW_NSEC_PER_SEC 1000000000ULL

/* IPv4 frag_off bits (host order), as in include/net/ip.h. */
#define TW_IP_DF 0x4000
#define TW_IP_MF 0x2000
#define TW_IP_OFFSET 0x1fff

/* TCP flag bits of byte 13 of the TCP header. */
#define TW_TCP_FIN 0x01
#define TW_TCP_SYN 0x02
#define TW_TCP_RST 0x04
#define TW_TCP_PSH 0x08
#define TW_TCP_ACK 0x10

/* ICMP types used here. */
#define TW_ICMP_ECHOREPLY 0
#define TW_ICMP_DEST_UNREACH 3
#define TW_ICMP_PORT_UNREACH 3
#define TW_ICMP_ECHO 8

/*
 * The ICMP header. <linux/icmp.h> is not usable here: it includes
 * <linux/if.h>, which pulls in the C library's headers.
 */
struct tw_icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	union {
		struct {
			__be16 id;
			__be16 sequence;
		} echo;
		__be32 gateway;
		struct {
			__be16 unused;
			__be16 mtu;
		} frag;
	} un;
};

static __always_inline void *tw_data(const struct __sk_buff *skb)
{
	return (void *)(long)skb->data;
}

static __always_inline void *tw_data_end(const struct __sk_buff *skb)
{
	return (void *)(long)skb->data_end;
}

#endif /* TOLLWAY_LIB_COMMON_H */
