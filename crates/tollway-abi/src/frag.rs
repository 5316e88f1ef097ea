//! `bpf/abi/frag.h`: IPv4 fragment tracking.

abi_consts!(FRAG_CONSTS in "frag.h" {
    /// Capacity of `tw_frag4`.
    TW_FRAG4_MAX: u32 = 8192,
    /// Entry flag: the first fragment was TCP or UDP (`sport`/`dport` are ports).
    TW_FRAG_F_PORTS: u8 = 0x01,
    /// Entry flag: the first fragment was an ICMP echo request or reply
    /// (`sport` is its identifier).
    TW_FRAG_F_ICMP_ECHO: u8 = 0x02,
});

abi_struct! {
    /// Key of `tw_frag4`: one datagram, as a program saw it.
    pub struct Frag4Key = "tw_frag4_key" in "frag.h" {
        /// Source address (`__be32`).
        pub saddr: u32,
        /// Destination address (`__be32`).
        pub daddr: u32,
        /// IPv4 identification of the datagram (`__be16`).
        pub id: u16,
        /// IPPROTO_TCP, IPPROTO_UDP or IPPROTO_ICMP.
        pub proto: u8,
        /// Zero.
        pub pad: u8,
    }
}

abi_struct! {
    /// Value of `tw_frag4`: what the datagram's first fragment carried.
    pub struct Frag4Entry = "tw_frag4_entry" in "frag.h" {
        /// TCP/UDP source port; ICMP echo: identifier (`__be16`).
        pub sport: u16,
        /// TCP/UDP destination port; ICMP: 0 (`__be16`).
        pub dport: u16,
        /// `TW_FRAG_F_*`.
        pub flags: u8,
        /// TCP: the header's flags; ICMP: the type.
        pub l4_info: u8,
        /// Zero.
        pub pad: u16,
    }
}
