//! Hand-built test packets for `BPF_PROG_TEST_RUN` and unit tests.
//!
//! Everything is written byte by byte in network order, with correct IPv4 and
//! TCP/UDP checksums, so tests do not depend on a packet library.

use std::net::Ipv4Addr;

/// Length of an Ethernet II header.
pub const ETH_HLEN: usize = 14;
/// Length of an IPv4 header without options.
pub const IPV4_HLEN: usize = 20;
/// Length of a TCP header without options.
pub const TCP_HLEN: usize = 20;
/// Length of a UDP header.
pub const UDP_HLEN: usize = 8;

/// EtherType of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// Length of an ICMP header (echo, destination unreachable).
pub const ICMP_HLEN: usize = 8;
/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;

/// ICMP types.
pub mod icmp_type {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DEST_UNREACH: u8 = 3;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Destination unreachable code: port unreachable.
    pub const CODE_PORT_UNREACH: u8 = 3;
}

/// TCP flag bits (low byte of the flags field).
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// L2/L3 addressing of a test packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Endpoints {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source address.
    pub src_ip: Ipv4Addr,
    /// Destination address.
    pub dst_ip: Ipv4Addr,
    /// IPv4 TTL.
    pub ttl: u8,
}

impl Default for Ipv4Endpoints {
    fn default() -> Self {
        Self {
            src_mac: [0x02, 0, 0, 0, 0, 0x02],
            dst_mac: [0x02, 0, 0, 0, 0, 0x01],
            src_ip: Ipv4Addr::new(10, 200, 0, 2),
            dst_ip: Ipv4Addr::new(10, 200, 0, 1),
            ttl: 64,
        }
    }
}

/// An Ethernet + IPv4 + TCP segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket {
    /// Addressing.
    pub ip: Ipv4Endpoints,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flags, see [`tcp_flags`].
    pub flags: u8,
    /// Receive window.
    pub window: u16,
    /// Payload after the TCP header.
    pub payload: Vec<u8>,
}

impl Default for TcpPacket {
    fn default() -> Self {
        Self {
            ip: Ipv4Endpoints::default(),
            src_port: 40000,
            dst_port: 80,
            seq: 1,
            ack: 0,
            flags: tcp_flags::SYN,
            window: 65535,
            payload: Vec::new(),
        }
    }
}

impl TcpPacket {
    /// Serializes the frame.
    ///
    /// # Panics
    ///
    /// If the payload does not fit in one IPv4 packet (64 KiB).
    pub fn build(&self) -> Vec<u8> {
        let mut l4 = Vec::with_capacity(TCP_HLEN + self.payload.len());
        l4.extend_from_slice(&self.src_port.to_be_bytes());
        l4.extend_from_slice(&self.dst_port.to_be_bytes());
        l4.extend_from_slice(&self.seq.to_be_bytes());
        l4.extend_from_slice(&self.ack.to_be_bytes());
        // Data offset (5 words), no reserved bits, flags.
        l4.push(((TCP_HLEN / 4) as u8) << 4);
        l4.push(self.flags);
        l4.extend_from_slice(&self.window.to_be_bytes());
        l4.extend_from_slice(&[0, 0]); // checksum, filled below
        l4.extend_from_slice(&[0, 0]); // urgent pointer
        l4.extend_from_slice(&self.payload);
        let csum = l4_checksum(&self.ip, IPPROTO_TCP, &l4);
        l4[16..18].copy_from_slice(&csum.to_be_bytes());
        ipv4_frame(&self.ip, IPPROTO_TCP, &l4)
    }
}

/// An Ethernet + IPv4 + UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket {
    /// Addressing.
    pub ip: Ipv4Endpoints,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload after the UDP header.
    pub payload: Vec<u8>,
}

impl Default for UdpPacket {
    fn default() -> Self {
        Self {
            ip: Ipv4Endpoints::default(),
            src_port: 40000,
            dst_port: 53,
            payload: Vec::new(),
        }
    }
}

impl UdpPacket {
    /// Serializes the frame.
    ///
    /// # Panics
    ///
    /// If the payload does not fit in one IPv4 packet (64 KiB).
    pub fn build(&self) -> Vec<u8> {
        let len = u16::try_from(UDP_HLEN + self.payload.len()).expect("UDP payload too large");
        let mut l4 = Vec::with_capacity(usize::from(len));
        l4.extend_from_slice(&self.src_port.to_be_bytes());
        l4.extend_from_slice(&self.dst_port.to_be_bytes());
        l4.extend_from_slice(&len.to_be_bytes());
        l4.extend_from_slice(&[0, 0]); // checksum, filled below
        l4.extend_from_slice(&self.payload);
        let csum = match l4_checksum(&self.ip, IPPROTO_UDP, &l4) {
            0 => 0xffff, // 0 means "no checksum" in UDP
            c => c,
        };
        l4[6..8].copy_from_slice(&csum.to_be_bytes());
        ipv4_frame(&self.ip, IPPROTO_UDP, &l4)
    }
}

/// An Ethernet + IPv4 + ICMP echo request or reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcmpEchoPacket {
    /// Addressing.
    pub ip: Ipv4Endpoints,
    /// Request (type 8) or reply (type 0).
    pub request: bool,
    /// Identifier.
    pub id: u16,
    /// Sequence number.
    pub seq: u16,
    /// Payload after the ICMP header.
    pub payload: Vec<u8>,
}

impl Default for IcmpEchoPacket {
    fn default() -> Self {
        Self {
            ip: Ipv4Endpoints::default(),
            request: true,
            id: 0x4242,
            seq: 1,
            payload: b"ping".to_vec(),
        }
    }
}

impl IcmpEchoPacket {
    /// Serializes the frame.
    ///
    /// # Panics
    ///
    /// If the payload does not fit in one IPv4 packet (64 KiB).
    pub fn build(&self) -> Vec<u8> {
        let mut l4 = Vec::with_capacity(ICMP_HLEN + self.payload.len());
        l4.push(if self.request {
            icmp_type::ECHO_REQUEST
        } else {
            icmp_type::ECHO_REPLY
        });
        l4.push(0); // code
        l4.extend_from_slice(&[0, 0]); // checksum, filled below
        l4.extend_from_slice(&self.id.to_be_bytes());
        l4.extend_from_slice(&self.seq.to_be_bytes());
        l4.extend_from_slice(&self.payload);
        let csum = internet_checksum(&[&l4]);
        l4[2..4].copy_from_slice(&csum.to_be_bytes());
        ipv4_frame(&self.ip, IPPROTO_ICMP, &l4)
    }
}

/// A frame of another EtherType than IPv4: Ethernet header + `payload`.
pub fn ether_frame(dst_mac: [u8; 6], src_mac: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ETH_HLEN + payload.len());
    frame.extend_from_slice(&dst_mac);
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Inserts IPv4 `options` (padded with zeros, End of Options List, to a
/// multiple of 4 bytes and at most 40) into an Ethernet + IPv4 frame,
/// fixing IHL, total length and the header checksum. The L4 checksum needs
/// no change: options are not part of the pseudo-header.
///
/// Returns `None` if `frame` is not an IPv4 frame without options or the
/// options are too long.
pub fn with_ipv4_options(frame: &[u8], options: &[u8]) -> Option<Vec<u8>> {
    let padded = options.len().div_ceil(4) * 4;
    if padded > 40 || frame.len() < ETH_HLEN + IPV4_HLEN || frame[ETH_HLEN] != 0x45 {
        return None;
    }
    let mut out = Vec::with_capacity(frame.len() + padded);
    out.extend_from_slice(&frame[..ETH_HLEN + IPV4_HLEN]);
    out.extend_from_slice(options);
    out.resize(ETH_HLEN + IPV4_HLEN + padded, 0);
    out.extend_from_slice(&frame[ETH_HLEN + IPV4_HLEN..]);
    let ip = &mut out[ETH_HLEN..];
    ip[0] = 0x40 | u8::try_from((IPV4_HLEN + padded) / 4).ok()?;
    let tot = u16::from_be_bytes([ip[2], ip[3]]).checked_add(u16::try_from(padded).ok()?)?;
    ip[2..4].copy_from_slice(&tot.to_be_bytes());
    fix_ipv4_checksum(&mut out);
    Some(out)
}

/// Recomputes the IPv4 header checksum of an Ethernet + IPv4 frame in
/// place (after a test edited the header). Does nothing to other frames.
pub fn fix_ipv4_checksum(frame: &mut [u8]) {
    let Some(ihl) = frame.get(ETH_HLEN).map(|b| usize::from(b & 0x0f) * 4) else {
        return;
    };
    let Some(ip) = frame.get_mut(ETH_HLEN..ETH_HLEN + ihl) else {
        return;
    };
    if ihl < IPV4_HLEN {
        return;
    }
    ip[10..12].copy_from_slice(&[0, 0]);
    let csum = internet_checksum(&[ip]);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
}

/// Sets the IPv4 identification of an Ethernet + IPv4 frame in place and
/// recomputes the header checksum. Does nothing to other frames.
pub fn set_ipv4_id(frame: &mut [u8], id: u16) {
    if let Some(field) = frame.get_mut(ETH_HLEN + 4..ETH_HLEN + 6) {
        field.copy_from_slice(&id.to_be_bytes());
        fix_ipv4_checksum(frame);
    }
}

/// IPv4 "more fragments" flag (host order, in the flags + offset field).
pub const IP_MF: u16 = 0x2000;
/// IPv4 fragment offset mask (units of 8 bytes).
pub const IP_OFFSET: u16 = 0x1fff;

/// Splits an Ethernet + IPv4 frame (no IPv4 options, not a fragment
/// already) into fragments as a sender's stack does: each carries at most
/// `max_data` bytes (rounded down to a multiple of 8) of the packet's IPv4
/// payload, in order; the first has the L4 header, whose checksum still
/// covers the whole datagram. Every fragment has the original Ethernet
/// and IPv4 headers (identification included) with DF cleared, MF set on
/// all but the last, its offset, its total length and its header checksum.
///
/// Returns `None` for other frames, or if the payload fits in one
/// fragment.
pub fn ipv4_fragments(frame: &[u8], max_data: usize) -> Option<Vec<Vec<u8>>> {
    let ip = frame.get(ETH_HLEN..)?;
    if *ip.first()? != 0x45 || ip.len() < IPV4_HLEN {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & (IP_MF | IP_OFFSET) != 0 {
        return None;
    }
    let data = ip.get(IPV4_HLEN..total)?;
    let chunk = max_data / 8 * 8;
    if chunk == 0 || data.len() <= chunk {
        return None;
    }
    let mut out = Vec::new();
    for (i, part) in data.chunks(chunk).enumerate() {
        let mut f = Vec::with_capacity(ETH_HLEN + IPV4_HLEN + part.len());
        f.extend_from_slice(&frame[..ETH_HLEN + IPV4_HLEN]);
        f.extend_from_slice(part);
        let len = u16::try_from(IPV4_HLEN + part.len()).ok()?;
        f[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&len.to_be_bytes());
        let mut field = u16::try_from(i * chunk / 8).ok()?;
        if (i + 1) * chunk < data.len() {
            field |= IP_MF;
        }
        f[ETH_HLEN + 6..ETH_HLEN + 8].copy_from_slice(&field.to_be_bytes());
        fix_ipv4_checksum(&mut f);
        out.push(f);
    }
    Some(out)
}

/// Reassembles IPv4 fragments (Ethernet + IPv4 frames without options, in
/// any order) into one Ethernet + IPv4 frame: the Ethernet and IPv4
/// headers of the first fragment with the fragment bits cleared, the total
/// length and the header checksum fixed, and the fragments' data in order.
/// Returns `None` unless the fragments are one whole datagram (same
/// addresses, protocol and identification, contiguous from offset 0 to a
/// last fragment without MF).
pub fn reassemble_ipv4(fragments: &[Vec<u8>]) -> Option<Vec<u8>> {
    // (offset, MF, data, whole frame) of each fragment.
    let mut parts: Vec<(usize, bool, &[u8], &[u8])> = Vec::new();
    for f in fragments {
        let ip = f.get(ETH_HLEN..)?;
        if *ip.first()? != 0x45 || ip.len() < IPV4_HLEN {
            return None;
        }
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let field = u16::from_be_bytes([ip[6], ip[7]]);
        let data = ip.get(IPV4_HLEN..total)?;
        if let Some((_, _, _, first)) = parts.first() {
            let other = &first[ETH_HLEN..];
            // Identification, protocol and addresses name the datagram.
            if ip[4..6] != other[4..6] || ip[9] != other[9] || ip[12..20] != other[12..20] {
                return None;
            }
        }
        parts.push((
            usize::from(field & IP_OFFSET) * 8,
            field & IP_MF != 0,
            data,
            f,
        ));
    }
    parts.sort_by_key(|p| p.0);
    let (_, _, _, head) = parts.first()?;
    let mut out = head.get(..ETH_HLEN + IPV4_HLEN)?.to_vec();
    for (i, (off, more, data, _)) in parts.iter().enumerate() {
        if *off != out.len() - ETH_HLEN - IPV4_HLEN || *more != (i + 1 < parts.len()) {
            return None;
        }
        out.extend_from_slice(data);
    }
    let total = u16::try_from(out.len() - ETH_HLEN).ok()?;
    out[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&total.to_be_bytes());
    out[ETH_HLEN + 6..ETH_HLEN + 8].copy_from_slice(&[0, 0]);
    fix_ipv4_checksum(&mut out);
    Some(out)
}

/// An IPv4 header as found in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedIpv4 {
    /// Header length in bytes (IHL * 4).
    pub header_len: usize,
    /// Type of service.
    pub tos: u8,
    /// Total length.
    pub total_len: u16,
    /// Identification.
    pub id: u16,
    /// Flags and fragment offset.
    pub frag_off: u16,
    /// Time to live.
    pub ttl: u8,
    /// Protocol.
    pub proto: u8,
    /// Header checksum as found.
    pub checksum: u16,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
}

/// The L4 part of a parsed frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedL4 {
    /// A TCP segment.
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Sequence number.
        seq: u32,
        /// Acknowledgment number.
        ack: u32,
        /// Header length in bytes (data offset * 4).
        header_len: usize,
        /// Flags, see [`tcp_flags`].
        flags: u8,
        /// Window.
        window: u16,
        /// Checksum as found.
        checksum: u16,
        /// Payload.
        payload: Vec<u8>,
    },
    /// A UDP datagram.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Length field.
        len: u16,
        /// Checksum as found (0: none).
        checksum: u16,
        /// Payload.
        payload: Vec<u8>,
    },
    /// An ICMP message.
    Icmp {
        /// Type.
        icmp_type: u8,
        /// Code.
        code: u8,
        /// Checksum as found.
        checksum: u16,
        /// Bytes 4..8 of the header (echo: id and sequence).
        rest: [u8; 4],
        /// Everything after the 8-byte header (for errors: the quote).
        payload: Vec<u8>,
    },
    /// Another protocol, or a header that does not fit (raw bytes).
    Other(Vec<u8>),
}

/// An Ethernet + IPv4 frame taken apart (for checking program output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFrame {
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// EtherType.
    pub ethertype: u16,
    /// The IPv4 header.
    pub ip: ParsedIpv4,
    /// The L4 part (up to the IPv4 total length).
    pub l4: ParsedL4,
}

impl ParsedFrame {
    /// Parses an Ethernet + IPv4 frame. Returns `None` for anything else
    /// or a header that does not fit; never panics.
    pub fn parse(frame: &[u8]) -> Option<ParsedFrame> {
        let be16 = |b: &[u8], at: usize| -> Option<u16> {
            Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
        };
        let be32 = |b: &[u8], at: usize| -> Option<u32> {
            Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
        };
        let eth = frame.get(..ETH_HLEN)?;
        let ethertype = be16(eth, 12)?;
        if ethertype != ETH_P_IP {
            return None;
        }
        let ip = frame.get(ETH_HLEN..)?;
        let first = *ip.first()?;
        let header_len = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || header_len < IPV4_HLEN || ip.len() < header_len {
            return None;
        }
        let total_len = be16(ip, 2)?;
        let end = usize::from(total_len).min(ip.len());
        let parsed_ip = ParsedIpv4 {
            header_len,
            tos: ip[1],
            total_len,
            id: be16(ip, 4)?,
            frag_off: be16(ip, 6)?,
            ttl: ip[8],
            proto: ip[9],
            checksum: be16(ip, 10)?,
            src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
            dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        };
        let l4 = ip.get(header_len..end.max(header_len))?;
        let parsed_l4 = match parsed_ip.proto {
            IPPROTO_TCP if l4.len() >= TCP_HLEN => {
                let hl = usize::from(l4[12] >> 4) * 4;
                ParsedL4::Tcp {
                    src_port: be16(l4, 0)?,
                    dst_port: be16(l4, 2)?,
                    seq: be32(l4, 4)?,
                    ack: be32(l4, 8)?,
                    header_len: hl,
                    flags: l4[13],
                    window: be16(l4, 14)?,
                    checksum: be16(l4, 16)?,
                    payload: l4.get(hl.max(TCP_HLEN)..).unwrap_or_default().to_vec(),
                }
            }
            IPPROTO_UDP if l4.len() >= UDP_HLEN => ParsedL4::Udp {
                src_port: be16(l4, 0)?,
                dst_port: be16(l4, 2)?,
                len: be16(l4, 4)?,
                checksum: be16(l4, 6)?,
                payload: l4[UDP_HLEN..].to_vec(),
            },
            IPPROTO_ICMP if l4.len() >= ICMP_HLEN => ParsedL4::Icmp {
                icmp_type: l4[0],
                code: l4[1],
                checksum: be16(l4, 2)?,
                rest: [l4[4], l4[5], l4[6], l4[7]],
                payload: l4[ICMP_HLEN..].to_vec(),
            },
            _ => ParsedL4::Other(l4.to_vec()),
        };
        let mut dst_mac = [0u8; 6];
        let mut src_mac = [0u8; 6];
        dst_mac.copy_from_slice(&eth[0..6]);
        src_mac.copy_from_slice(&eth[6..12]);
        Some(ParsedFrame {
            dst_mac,
            src_mac,
            ethertype,
            ip: parsed_ip,
            l4: parsed_l4,
        })
    }
}

/// Whether the IPv4 header checksum of an Ethernet + IPv4 frame is right
/// (recomputed from the bytes: a correct header sums to zero).
pub fn ipv4_checksum_ok(frame: &[u8]) -> bool {
    let Some(ihl) = frame.get(ETH_HLEN).map(|b| usize::from(b & 0x0f) * 4) else {
        return false;
    };
    match frame.get(ETH_HLEN..ETH_HLEN + ihl) {
        Some(ip) if ihl >= IPV4_HLEN => internet_checksum(&[ip]) == 0,
        _ => false,
    }
}

/// Whether the TCP, UDP or ICMP checksum of an Ethernet + IPv4 frame is
/// right, recomputed from the bytes up to the IPv4 total length (TCP and
/// UDP over the pseudo-header). A UDP checksum of 0 ("none") counts as
/// right; other protocols and malformed frames as wrong.
pub fn l4_checksum_ok(frame: &[u8]) -> bool {
    let Some(ip) = frame.get(ETH_HLEN..) else {
        return false;
    };
    let Some(&first) = ip.first() else {
        return false;
    };
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < IPV4_HLEN || ip.len() < ihl {
        return false;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let Some(l4) = ip.get(ihl..total) else {
        return false;
    };
    let Ok(l4_len) = u16::try_from(l4.len()) else {
        return false;
    };
    let proto = ip[9];
    let mut pseudo = [0u8; 12];
    pseudo[0..8].copy_from_slice(&ip[12..20]);
    pseudo[9] = proto;
    pseudo[10..12].copy_from_slice(&l4_len.to_be_bytes());
    match proto {
        IPPROTO_TCP if l4.len() >= TCP_HLEN => internet_checksum(&[&pseudo, l4]) == 0,
        IPPROTO_UDP if l4.len() >= UDP_HLEN => {
            l4[6..8] == [0, 0] || internet_checksum(&[&pseudo, l4]) == 0
        }
        IPPROTO_ICMP if l4.len() >= ICMP_HLEN => internet_checksum(&[l4]) == 0,
        _ => false,
    }
}

/// Ethernet + IPv4 header (no options, DF set, checksum filled) + `l4`.
fn ipv4_frame(ip: &Ipv4Endpoints, proto: u8, l4: &[u8]) -> Vec<u8> {
    let total = u16::try_from(IPV4_HLEN + l4.len()).expect("IPv4 packet too large");
    let mut frame = Vec::with_capacity(ETH_HLEN + usize::from(total));
    frame.extend_from_slice(&ip.dst_mac);
    frame.extend_from_slice(&ip.src_mac);
    frame.extend_from_slice(&ETH_P_IP.to_be_bytes());

    let ip_start = frame.len();
    frame.push(0x45); // version 4, IHL 5
    frame.push(0); // DSCP/ECN
    frame.extend_from_slice(&total.to_be_bytes());
    frame.extend_from_slice(&0x1234u16.to_be_bytes()); // identification
    frame.extend_from_slice(&0x4000u16.to_be_bytes()); // DF, offset 0
    frame.push(ip.ttl);
    frame.push(proto);
    frame.extend_from_slice(&[0, 0]); // checksum, filled below
    frame.extend_from_slice(&ip.src_ip.octets());
    frame.extend_from_slice(&ip.dst_ip.octets());
    let csum = internet_checksum(&[&frame[ip_start..]]);
    frame[ip_start + 10..ip_start + 12].copy_from_slice(&csum.to_be_bytes());

    frame.extend_from_slice(l4);
    frame
}

/// TCP/UDP checksum over the IPv4 pseudo-header and `l4` (whose checksum
/// field must be zero).
fn l4_checksum(ip: &Ipv4Endpoints, proto: u8, l4: &[u8]) -> u16 {
    let len = u16::try_from(l4.len()).expect("L4 segment too large");
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&ip.src_ip.octets());
    pseudo[4..8].copy_from_slice(&ip.dst_ip.octets());
    pseudo[9] = proto;
    pseudo[10..12].copy_from_slice(&len.to_be_bytes());
    internet_checksum(&[&pseudo, l4])
}

/// RFC 1071 one's-complement checksum over the concatenation of `parts`
/// (each part but the last must have even length).
pub fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // Folded above, so the truncation is exact.
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_packet_layout_and_checksums() {
        let pkt = TcpPacket {
            payload: b"hello".to_vec(),
            flags: tcp_flags::PSH | tcp_flags::ACK,
            ..TcpPacket::default()
        };
        let frame = pkt.build();
        assert_eq!(frame.len(), ETH_HLEN + IPV4_HLEN + TCP_HLEN + 5);
        assert_eq!(&frame[12..14], &[0x08, 0x00]);
        let ip = &frame[ETH_HLEN..ETH_HLEN + IPV4_HLEN];
        assert_eq!(ip[0], 0x45);
        assert_eq!(ip[9], IPPROTO_TCP);
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 45);
        // A correct header checksums to zero.
        assert_eq!(internet_checksum(&[ip]), 0);
        let l4 = &frame[ETH_HLEN + IPV4_HLEN..];
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&ip[12..16]);
        pseudo[4..8].copy_from_slice(&ip[16..20]);
        pseudo[9] = IPPROTO_TCP;
        pseudo[10..12].copy_from_slice(&(l4.len() as u16).to_be_bytes());
        assert_eq!(internet_checksum(&[&pseudo, l4]), 0);
        assert_eq!(l4[13], tcp_flags::PSH | tcp_flags::ACK);
        assert_eq!(&l4[TCP_HLEN..], b"hello");
    }

    #[test]
    fn udp_packet_layout() {
        let frame = UdpPacket {
            payload: vec![1, 2, 3],
            ..UdpPacket::default()
        }
        .build();
        assert_eq!(frame.len(), ETH_HLEN + IPV4_HLEN + UDP_HLEN + 3);
        let l4 = &frame[ETH_HLEN + IPV4_HLEN..];
        assert_eq!(u16::from_be_bytes([l4[4], l4[5]]), 11);
        assert_ne!(u16::from_be_bytes([l4[6], l4[7]]), 0);
    }

    #[test]
    fn parse_and_verify_roundtrip() {
        let frame = TcpPacket {
            payload: b"abc".to_vec(),
            ..TcpPacket::default()
        }
        .build();
        assert!(ipv4_checksum_ok(&frame));
        assert!(l4_checksum_ok(&frame));
        let p = ParsedFrame::parse(&frame).expect("parse");
        assert_eq!(p.ip.src, Ipv4Endpoints::default().src_ip);
        assert!(
            matches!(p.l4, ParsedL4::Tcp { src_port: 40000, dst_port: 80, flags: tcp_flags::SYN, ref payload, .. } if payload == b"abc")
        );

        let mut bad = frame.clone();
        bad[ETH_HLEN + IPV4_HLEN + 4] ^= 1; // flip a bit of the sequence number
        assert!(!l4_checksum_ok(&bad));
        assert!(ipv4_checksum_ok(&bad));

        let opts = with_ipv4_options(&frame, &[1, 1, 1, 1]).expect("options");
        assert_eq!(opts[ETH_HLEN], 0x46);
        assert!(ipv4_checksum_ok(&opts));
        assert!(l4_checksum_ok(&opts));
        let p = ParsedFrame::parse(&opts).expect("parse");
        assert_eq!(p.ip.header_len, 24);

        let echo = IcmpEchoPacket::default().build();
        assert!(l4_checksum_ok(&echo));
        let p = ParsedFrame::parse(&echo).expect("parse");
        assert!(matches!(
            p.l4,
            ParsedL4::Icmp {
                icmp_type: icmp_type::ECHO_REQUEST,
                rest: [0x42, 0x42, 0, 1],
                ..
            }
        ));

        let udp = UdpPacket::default().build();
        assert!(l4_checksum_ok(&udp));
        assert!(ParsedFrame::parse(&udp[..20]).is_none());
        assert!(ParsedFrame::parse(&ether_frame([0; 6], [0; 6], ETH_P_ARP, &[0; 28])).is_none());
    }

    #[test]
    fn fragments_and_reassembly() {
        let pkt = UdpPacket {
            payload: (0..3000u32).map(|i| (i % 253) as u8).collect(),
            ..UdpPacket::default()
        };
        let mut frame = pkt.build();
        set_ipv4_id(&mut frame, 0xbeef);
        assert!(ipv4_checksum_ok(&frame));
        let frags = ipv4_fragments(&frame, 1203).expect("fragments");
        // 3008 bytes of UDP in chunks of 1200.
        assert_eq!(frags.len(), 3);
        let fields: Vec<(u16, u16, u16)> = frags
            .iter()
            .map(|f| {
                let p = ParsedFrame::parse(f).unwrap();
                (p.ip.total_len, p.ip.frag_off, p.ip.id)
            })
            .collect();
        assert_eq!(
            fields,
            [
                (1220, IP_MF, 0xbeef),
                (1220, IP_MF | 150, 0xbeef),
                (628, 300, 0xbeef)
            ]
        );
        assert!(frags.iter().all(|f| ipv4_checksum_ok(f)));
        // The first fragment starts with the UDP header, whose checksum
        // covers the whole datagram (so not the fragment alone).
        assert_eq!(
            frags[0][ETH_HLEN + IPV4_HLEN..][..8],
            frame[ETH_HLEN + IPV4_HLEN..][..8]
        );
        assert!(!l4_checksum_ok(&frags[0]));

        let mut whole = reassemble_ipv4(&frags).expect("reassembly");
        assert!(l4_checksum_ok(&whole));
        // DF of the original is gone, the rest is the datagram.
        assert_eq!(
            u16::from_be_bytes([whole[ETH_HLEN + 6], whole[ETH_HLEN + 7]]),
            0
        );
        whole[ETH_HLEN + 6] = 0x40;
        fix_ipv4_checksum(&mut whole);
        assert_eq!(whole, frame);
        let shuffled = vec![frags[2].clone(), frags[0].clone(), frags[1].clone()];
        assert_eq!(reassemble_ipv4(&shuffled), reassemble_ipv4(&frags));

        assert!(reassemble_ipv4(&frags[..2]).is_none(), "no last fragment");
        assert!(reassemble_ipv4(&frags[1..]).is_none(), "no first fragment");
        let mut other = frags[1].clone();
        set_ipv4_id(&mut other, 0xbeee);
        assert!(
            reassemble_ipv4(&[frags[0].clone(), other, frags[2].clone()]).is_none(),
            "another datagram"
        );
        assert!(ipv4_fragments(&frame, 4000).is_none(), "fits whole");
        assert!(
            ipv4_fragments(&frags[1], 64).is_none(),
            "a fragment already"
        );
        assert!(ipv4_fragments(&frame, 7).is_none(), "less than 8 bytes");
    }

    #[test]
    fn checksum_rfc1071_example() {
        // RFC 1071 section 3 example: sum 0xddf2, checksum !0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&[&data]), !0xddf2);
    }
}
