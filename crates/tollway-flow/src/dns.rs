//! DNS messages captured by the datapath (the UDP payload of port 53
//! packets) into Hubble's `l7.dns`, and Hubble's DNS summaries.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::RData;
use thiserror::Error;

use crate::model::{Dns, L7FlowType, Layer7};

/// Why a payload is not a DNS message we can show.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DnsError {
    /// The bytes do not decode (truncated capture, not DNS).
    #[error("malformed DNS message ({len} bytes): {reason}")]
    Malformed {
        /// Payload length.
        len: usize,
        /// The decoder's error.
        reason: String,
    },
    /// A message without a question (nothing to show).
    #[error("DNS message {id} has no question")]
    NoQuestion {
        /// The message id.
        id: u16,
    },
}

/// The parts of a DNS message that Hubble shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsMessage {
    /// The message id.
    pub id: u16,
    /// A response (QR = 1).
    pub is_response: bool,
    /// The first question's name, with the trailing dot.
    pub query: String,
    /// The questions' types (`A`, `AAAA`).
    pub qtypes: Vec<String>,
    /// The response code (with the EDNS extension).
    pub rcode: u16,
    /// A and AAAA answers, in order.
    pub ips: Vec<IpAddr>,
    /// The smallest TTL of the A, AAAA and CNAME answers (0 if none).
    pub ttl: u32,
    /// CNAME targets, in order.
    pub cnames: Vec<String>,
    /// The type of every answer record.
    pub rrtypes: Vec<String>,
}

/// Decodes a DNS message.
pub fn parse(payload: &[u8]) -> Result<DnsMessage, DnsError> {
    let msg = Message::from_vec(payload).map_err(|e| DnsError::Malformed {
        len: payload.len(),
        reason: e.to_string(),
    })?;
    let id = msg.metadata.id;
    let first = msg.queries.first().ok_or(DnsError::NoQuestion { id })?;
    let query = first.name.to_string();
    let qtypes = msg
        .queries
        .iter()
        .map(|q| q.query_type.to_string())
        .collect();
    let mut ips = Vec::new();
    let mut cnames = Vec::new();
    let mut rrtypes = Vec::new();
    let mut ttl: Option<u32> = None;
    for rr in &msg.answers {
        rrtypes.push(rr.record_type().to_string());
        let counted = match &rr.data {
            RData::A(a) => {
                ips.push(IpAddr::V4(a.0));
                true
            }
            RData::AAAA(a) => {
                ips.push(IpAddr::V6(a.0));
                true
            }
            RData::CNAME(c) => {
                cnames.push(c.0.to_string());
                true
            }
            _ => false,
        };
        if counted {
            ttl = Some(ttl.map_or(rr.ttl, |t| t.min(rr.ttl)));
        }
    }
    Ok(DnsMessage {
        id,
        is_response: msg.metadata.message_type == MessageType::Response,
        query,
        qtypes,
        rcode: u16::from(msg.metadata.response_code),
        ips,
        ttl: ttl.unwrap_or(0),
        cnames,
        rrtypes,
    })
}

impl DnsMessage {
    /// Request or response.
    pub fn l7_type(&self) -> L7FlowType {
        if self.is_response {
            L7FlowType::Response
        } else {
            L7FlowType::Request
        }
    }

    /// Hubble's `l7` for it: requests carry only the query and its types,
    /// responses everything.
    pub fn to_layer7(&self) -> Layer7 {
        let dns = if self.is_response {
            Dns {
                query: self.query.clone(),
                ips: self.ips.iter().map(IpAddr::to_string).collect(),
                ttl: self.ttl,
                cnames: self.cnames.clone(),
                observation_source: String::new(),
                rcode: u32::from(self.rcode),
                qtypes: self.qtypes.clone(),
                rrtypes: self.rrtypes.clone(),
            }
        } else {
            Dns {
                query: self.query.clone(),
                qtypes: self.qtypes.clone(),
                ..Dns::default()
            }
        };
        Layer7 {
            l7_type: self.l7_type(),
            latency_ns: 0,
            dns: Some(dns),
            http: None,
        }
    }
}

/// Hubble's names of DNS response codes (its DNS metrics and summaries).
pub fn rcode_name(rcode: u32) -> &'static str {
    match rcode {
        0 => "No Error",
        1 => "Format Error",
        2 => "Server Failure",
        3 => "Non-Existent Domain",
        4 => "Not Implemented",
        5 => "Query Refused",
        6 => "Name Exists when it should not",
        7 => "RR Set Exists when it should not",
        8 => "RR Set that should exist does not",
        9 => "Not Authorized",
        10 => "Name not contained in zone",
        11 => "DSO-TYPE Not Implemented",
        16 => "Bad OPT Version",
        17 => "Key not recognized",
        18 => "Signature out of time window",
        19 => "Bad TKEY Mode",
        20 => "Duplicate key name",
        21 => "Algorithm not supported",
        22 => "Bad Truncation",
        23 => "Bad/missing Server Cookie",
        _ => "Unknown",
    }
}

/// Hubble's summary of a DNS flow:
/// `DNS Query kube-dns.kube-system.svc.cluster.local. A`,
/// `DNS Answer "10.96.0.10" TTL: 30 (Query kube-dns.kube-system.svc.cluster.local. A)`,
/// `DNS Answer RCode: Non-Existent Domain TTL: 0 (Query nope. A)`.
/// (`Proxy` instead of `Query` when the observation source is `proxy`.)
pub fn summary(dns: &Dns, l7_type: L7FlowType) -> String {
    let qtypes = dns.qtypes.join(",");
    match l7_type {
        L7FlowType::Request => format!("DNS Query {} {qtypes}", dns.query),
        L7FlowType::Response => {
            let answer = if dns.rcode != 0 {
                format!("RCode: {}", rcode_name(dns.rcode))
            } else {
                let mut parts = Vec::new();
                if !dns.ips.is_empty() {
                    parts.push(format!("{:?}", dns.ips.join(",")));
                }
                if !dns.cnames.is_empty() {
                    parts.push(format!("CNAMEs: {:?}", dns.cnames.join(",")));
                }
                parts.join(" ")
            };
            let source = if dns.observation_source == "proxy" {
                "Proxy"
            } else {
                "Query"
            };
            format!(
                "DNS Answer {answer} TTL: {} ({source} {} {qtypes})",
                dns.ttl, dns.query
            )
        }
        L7FlowType::Unknown | L7FlowType::Sample => String::new(),
    }
}

/// Test helpers: DNS messages as bytes.
#[cfg(test)]
pub(crate) mod testing {
    use std::net::Ipv4Addr;
    use std::str::FromStr;

    use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::rdata::{A, CNAME};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    /// A query for `name` of type A.
    pub fn query(id: u16, name: &str) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    /// A response to a query for `name`, with `cname` then A answers.
    pub fn response(
        id: u16,
        name: &str,
        rcode: ResponseCode,
        cname: Option<(&str, u32)>,
        answers: &[(Ipv4Addr, u32)],
    ) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Response, OpCode::Query);
        m.metadata.response_code = rcode;
        let qname = Name::from_str(name).unwrap();
        m.add_query(Query::query(qname.clone(), RecordType::A));
        let mut owner = qname;
        if let Some((target, ttl)) = cname {
            let t = Name::from_str(target).unwrap();
            m.add_answer(Record::from_rdata(
                owner,
                ttl,
                RData::CNAME(CNAME(t.clone())),
            ));
            owner = t;
        }
        for (ip, ttl) in answers {
            m.add_answer(Record::from_rdata(owner.clone(), *ttl, RData::A(A(*ip))));
        }
        m.to_vec().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::ResponseCode;

    use super::testing::*;
    use super::*;

    const KUBE_DNS: &str = "kube-dns.kube-system.svc.cluster.local.";

    #[test]
    fn query_decodes() {
        let m = parse(&query(7, KUBE_DNS)).unwrap();
        assert_eq!(m.id, 7);
        assert!(!m.is_response);
        assert_eq!(m.query, KUBE_DNS);
        assert_eq!(m.qtypes, vec!["A"]);
        let l7 = m.to_layer7();
        assert_eq!(l7.l7_type, L7FlowType::Request);
        let dns = l7.dns.unwrap();
        assert_eq!(
            summary(&dns, L7FlowType::Request),
            "DNS Query kube-dns.kube-system.svc.cluster.local. A"
        );
        assert!(dns.ips.is_empty() && dns.rrtypes.is_empty());
    }

    #[test]
    fn response_decodes_with_min_ttl_and_cnames() {
        let bytes = response(
            7,
            "web.example.",
            ResponseCode::NoError,
            Some(("edge.example.", 300)),
            &[
                (Ipv4Addr::new(10, 96, 0, 10), 30),
                (Ipv4Addr::new(10, 96, 0, 11), 60),
            ],
        );
        let m = parse(&bytes).unwrap();
        assert!(m.is_response);
        assert_eq!(m.rcode, 0);
        assert_eq!(m.ttl, 30);
        assert_eq!(m.cnames, vec!["edge.example."]);
        assert_eq!(m.rrtypes, vec!["CNAME", "A", "A"]);
        let dns = m.to_layer7().dns.unwrap();
        assert_eq!(dns.ips, vec!["10.96.0.10", "10.96.0.11"]);
        assert_eq!(
            summary(&dns, L7FlowType::Response),
            r#"DNS Answer "10.96.0.10,10.96.0.11" CNAMEs: "edge.example." TTL: 30 (Query web.example. A)"#
        );
    }

    #[test]
    fn nxdomain_summary_names_the_rcode() {
        let m = parse(&response(1, "nope.", ResponseCode::NXDomain, None, &[])).unwrap();
        assert_eq!(m.rcode, 3);
        let dns = m.to_layer7().dns.unwrap();
        assert_eq!(
            summary(&dns, L7FlowType::Response),
            "DNS Answer RCode: Non-Existent Domain TTL: 0 (Query nope. A)"
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            parse(b"\x01\x02"),
            Err(DnsError::Malformed { len: 2, .. })
        ));
        let mut truncated = query(3, KUBE_DNS);
        truncated.truncate(20);
        assert!(parse(&truncated).is_err());
        // A header with no question.
        let empty = [0u8, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse(&empty), Err(DnsError::NoQuestion { id: 9 }));
    }

    #[test]
    fn rcode_names_are_hubbles() {
        assert_eq!(rcode_name(0), "No Error");
        assert_eq!(rcode_name(2), "Server Failure");
        assert_eq!(rcode_name(99), "Unknown");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
                let _ = parse(&bytes);
            }
        }
    }
}
