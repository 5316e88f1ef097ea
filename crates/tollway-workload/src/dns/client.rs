//! The client: one question to one server, like `dig +norecurse @server name type`.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde::{Serialize, Serializer};

use super::DnsError;
use super::wire::{Transport, query_message};

/// How often a UDP query is sent again while no answer came.
const UDP_RETRY: Duration = Duration::from_millis(1000);

/// Arguments of `tollway workload dig`.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct DigArgs {
    /// The server to ask (default: the lab's kube-dns Service).
    #[arg(long, value_name = "IP:PORT", default_value = "10.96.0.10:53")]
    pub server: SocketAddr,
    /// The name to look up (always read as absolute: no search domains).
    pub name: String,
    /// The record type (A, AAAA, SOA, ANY, ...).
    #[arg(long = "type", short = 't', value_name = "TYPE", default_value = "A", value_parser = parse_record_type)]
    pub qtype: RecordType,
    /// Give up after this many milliseconds (UDP queries are resent every second).
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Ask over TCP (UDP answers with TC set are retried over TCP anyway).
    #[arg(long)]
    pub tcp: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: DigFormat,
}

/// How `tollway workload dig` prints a [`DnsAnswer`].
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DigFormat {
    /// A status line, then one zone-file line per record (dig-like).
    #[default]
    Text,
    /// One JSON object.
    Json,
}

/// Parse a record type name, case-insensitively (`a`, `AAAA`, `soa`, ...).
pub fn parse_record_type(s: &str) -> Result<RecordType, String> {
    s.to_ascii_uppercase()
        .parse()
        .map_err(|_| format!("unknown record type {s:?}"))
}

/// How to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryOptions {
    /// Overall deadline, retries and the TCP fallback included.
    pub timeout: Duration,
    /// Ask over TCP from the start.
    pub tcp: bool,
}

/// One record of an answer, as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsRecord {
    /// Owner name, absolute.
    pub name: String,
    /// `A`, `SOA`, ...
    #[serde(rename = "type")]
    pub rtype: String,
    /// TTL in seconds.
    pub ttl: u32,
    /// The data in zone-file form (`10.96.0.10`, `ns.dns.cluster.local. ...`).
    pub data: String,
}

impl DnsRecord {
    fn of(r: &Record) -> DnsRecord {
        DnsRecord {
            name: r.name.to_ascii(),
            rtype: r.record_type().to_string(),
            ttl: r.ttl,
            data: r.data.to_string(),
        }
    }
}

/// What a server answered.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsAnswer {
    /// The server asked.
    pub server: SocketAddr,
    /// The name asked, absolute.
    pub name: String,
    /// The type asked.
    #[serde(serialize_with = "display")]
    pub qtype: RecordType,
    /// The response code (`NOERROR`, `NXDOMAIN`, `REFUSED`, ... in JSON).
    #[serde(serialize_with = "mnemonic")]
    pub rcode: ResponseCode,
    /// AA: the server is authoritative for the name.
    pub authoritative: bool,
    /// TC: the answer was cut (only when it came over UDP and TCP was not tried).
    pub truncated: bool,
    /// How the answer came.
    pub transport: Transport,
    /// The answer section.
    pub answers: Vec<DnsRecord>,
    /// The authority section (the zone's SOA on a negative answer).
    pub authority: Vec<DnsRecord>,
    /// The addresses of the `A`/`AAAA` answers, in order.
    pub addresses: Vec<IpAddr>,
    /// From the first query sent to the answer, in milliseconds.
    pub rtt_ms: f64,
}

fn display<T: std::fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn mnemonic<S: Serializer>(rc: &ResponseCode, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&rcode_name(*rc))
}

/// A response code as dig names it (`NOERROR`, `NXDOMAIN`, ...; `RCODE<n>` otherwise).
pub fn rcode_name(rc: ResponseCode) -> String {
    let n = u16::from(rc);
    let name = match n {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        16 => "BADVERS",
        _ => return format!("RCODE{n}"),
    };
    name.to_string()
}

impl DnsAnswer {
    /// The IPv4 addresses answered.
    pub fn ipv4(&self) -> Vec<std::net::Ipv4Addr> {
        self.addresses
            .iter()
            .filter_map(|a| match a {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            })
            .collect()
    }

    /// The TTLs of the answer records, in order.
    pub fn ttls(&self) -> Vec<u32> {
        self.answers.iter().map(|r| r.ttl).collect()
    }

    /// Text (dig-like: a status line, then one zone-file line per record) or JSON.
    pub fn render(&self, format: DigFormat) -> Result<String, DnsError> {
        match format {
            DigFormat::Json => {
                serde_json::to_string(self).map_err(|source| DnsError::Serialize { source })
            }
            DigFormat::Text => {
                let mut flags = vec!["qr"];
                if self.authoritative {
                    flags.push("aa");
                }
                if self.truncated {
                    flags.push("tc");
                }
                let transport = match self.transport {
                    Transport::Udp => "udp",
                    Transport::Tcp => "tcp",
                };
                let mut out = format!(
                    ";; {} IN {}: {}, flags: {}; from {} over {transport} in {:.1} ms",
                    self.name,
                    self.qtype,
                    rcode_name(self.rcode),
                    flags.join(" "),
                    self.server,
                    self.rtt_ms
                );
                let line =
                    |r: &DnsRecord| format!("\n{}\t{}\tIN\t{}\t{}", r.name, r.ttl, r.rtype, r.data);
                for r in &self.answers {
                    out.push_str(&line(r));
                }
                if !self.authority.is_empty() {
                    out.push_str("\n;; AUTHORITY");
                    for r in &self.authority {
                        out.push_str(&line(r));
                    }
                }
                Ok(out)
            }
        }
    }
}

/// Ask `server` for `name` (read as absolute) and `qtype` over UDP, resending every second
/// and retrying over TCP if the answer is truncated, within `timeout` in all.
///
/// Any response code is an answer ([`DnsAnswer::rcode`]); errors are: an invalid name, a
/// socket error (ICMP port unreachable shows as "connection refused"), no answer in time.
pub fn query(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    timeout: Duration,
) -> Result<DnsAnswer, DnsError> {
    query_with(
        server,
        name,
        qtype,
        QueryOptions {
            timeout,
            tcp: false,
        },
    )
}

/// [`query`] with options.
pub fn query_with(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    opts: QueryOptions,
) -> Result<DnsAnswer, DnsError> {
    let qname = parse_name(name)?;
    let request = query_message(qname.clone(), qtype);
    let bytes = request.to_vec().map_err(|e| DnsError::Encode {
        name: name.to_string(),
        reason: e.to_string(),
    })?;
    let started = Instant::now();
    let deadline = started + opts.timeout;
    let (response, transport) = if opts.tcp {
        (
            ask_tcp(server, &bytes, &request, deadline, opts.timeout)?,
            Transport::Tcp,
        )
    } else {
        let r = ask_udp(server, &bytes, &request, deadline, opts.timeout)?;
        if r.truncation {
            (
                ask_tcp(server, &bytes, &request, deadline, opts.timeout)?,
                Transport::Tcp,
            )
        } else {
            (r, Transport::Udp)
        }
    };
    let rtt_ms = started.elapsed().as_secs_f64() * 1000.0;
    let addresses = response
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    Ok(DnsAnswer {
        server,
        name: qname.to_ascii(),
        qtype,
        rcode: response.response_code,
        authoritative: response.authoritative,
        truncated: response.truncation,
        transport,
        answers: response.answers.iter().map(DnsRecord::of).collect(),
        authority: response.authorities.iter().map(DnsRecord::of).collect(),
        addresses,
        rtt_ms,
    })
}

fn parse_name(name: &str) -> Result<Name, DnsError> {
    let invalid = |reason: String| DnsError::InvalidName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("empty".into()));
    }
    let mut n = Name::from_ascii(name).map_err(|e| invalid(e.to_string()))?;
    n.set_fqdn(true);
    Ok(n)
}

/// Whether `msg` answers `request`: a response with its id and question.
fn answers(msg: &Message, request: &Message) -> bool {
    msg.message_type == MessageType::Response
        && msg.id == request.id
        && (msg.queries == request.queries || msg.queries.is_empty())
}

fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

fn ask_udp(
    server: SocketAddr,
    bytes: &[u8],
    request: &Message,
    deadline: Instant,
    timeout: Duration,
) -> Result<Message, DnsError> {
    let io_err = |action| {
        move |source| DnsError::Io {
            action,
            server,
            source,
        }
    };
    let local: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = UdpSocket::bind(local).map_err(io_err("binding a socket for"))?;
    socket.connect(server).map_err(io_err("connecting to"))?;
    let timed_out = || DnsError::Timeout {
        server,
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    };
    let mut buf = vec![0u8; 65535];
    loop {
        let Some(left) = remaining(deadline) else {
            return Err(timed_out());
        };
        socket.send(bytes).map_err(io_err("sending to"))?;
        let resend_at = Instant::now() + UDP_RETRY.min(left);
        // Read until an answer, or until it is time to send again.
        while let Some(wait) = remaining(resend_at) {
            socket
                .set_read_timeout(Some(wait))
                .map_err(io_err("waiting for"))?;
            match socket.recv(&mut buf) {
                Ok(n) => {
                    // Not a DNS message, or an answer to something else: keep waiting.
                    if let Ok(msg) = Message::from_vec(&buf[..n])
                        && answers(&msg, request)
                    {
                        return Ok(msg);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => return Err(io_err("receiving from")(e)),
            }
        }
    }
}

fn ask_tcp(
    server: SocketAddr,
    bytes: &[u8],
    request: &Message,
    deadline: Instant,
    timeout: Duration,
) -> Result<Message, DnsError> {
    let timed_out = || DnsError::Timeout {
        server,
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    };
    let io_err = |action: &'static str| {
        move |source: io::Error| {
            if matches!(
                source.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                timed_out()
            } else {
                DnsError::Io {
                    action,
                    server,
                    source,
                }
            }
        }
    };
    let left = remaining(deadline).ok_or_else(timed_out)?;
    let mut stream =
        TcpStream::connect_timeout(&server, left).map_err(io_err("connecting over TCP to"))?;
    let len = u16::try_from(bytes.len()).map_err(|_| DnsError::Encode {
        name: request
            .queries
            .first()
            .map(|q| q.name().to_ascii())
            .unwrap_or_default(),
        reason: "the query is longer than 65535 bytes".into(),
    })?;
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    let left = remaining(deadline).ok_or_else(timed_out)?;
    stream
        .set_write_timeout(Some(left))
        .map_err(io_err("sending to"))?;
    stream.write_all(&out).map_err(io_err("sending to"))?;
    loop {
        let left = remaining(deadline).ok_or_else(timed_out)?;
        stream
            .set_read_timeout(Some(left))
            .map_err(io_err("receiving from"))?;
        let mut len = [0u8; 2];
        stream
            .read_exact(&mut len)
            .map_err(io_err("receiving from"))?;
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream
            .read_exact(&mut msg)
            .map_err(io_err("receiving from"))?;
        let msg = Message::from_vec(&msg).map_err(|e| DnsError::BadAnswer {
            server,
            reason: e.to_string(),
        })?;
        if answers(&msg, request) {
            return Ok(msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types_parse() {
        assert_eq!(
            parse_name("kube-dns.kube-system.svc.cluster.local")
                .unwrap()
                .to_ascii(),
            "kube-dns.kube-system.svc.cluster.local."
        );
        assert_eq!(parse_name("a.b.").unwrap().to_ascii(), "a.b.");
        assert!(matches!(parse_name(""), Err(DnsError::InvalidName { .. })));
        assert!(matches!(
            parse_name(&format!("{}.x", "a".repeat(64))),
            Err(DnsError::InvalidName { .. })
        ));
        assert_eq!(parse_record_type("aaaa"), Ok(RecordType::AAAA));
        assert_eq!(parse_record_type("A"), Ok(RecordType::A));
        assert!(parse_record_type("nope").is_err());
    }

    #[test]
    fn rcodes_have_dig_names() {
        assert_eq!(rcode_name(ResponseCode::NoError), "NOERROR");
        assert_eq!(rcode_name(ResponseCode::NXDomain), "NXDOMAIN");
        assert_eq!(rcode_name(ResponseCode::Refused), "REFUSED");
        assert_eq!(rcode_name(ResponseCode::from_low(12)), "RCODE12");
    }
}
