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
    fn checksum_rfc1071_example() {
        // RFC 1071 section 3 example: sum 0xddf2, checksum !0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&[&data]), !0xddf2);
    }
}
