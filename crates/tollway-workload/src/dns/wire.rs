//! Requests to answers: the DNS message rules of an authoritative-only server (pure).

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record};

use super::zone::{Apex, Resolution, TTL, Zone, name_of};

/// The UDP payload this server advertises with EDNS, and the most it sends over UDP
/// (the DNS Flag Day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;

/// The most a UDP answer may carry without EDNS (RFC 1035).
const PLAIN_UDP_PAYLOAD: usize = 512;

/// How a request arrived: UDP answers are truncated (TC) when too large, TCP ones never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// A datagram.
    Udp,
    /// A length-prefixed message on a TCP connection.
    Tcp,
}

/// The SOA of a zone served here (negative answers carry it in the authority section, so
/// that resolvers cache them for [`TTL`] seconds).
pub fn soa_record(apex: Apex, serial: u32) -> Record {
    Record::from_rdata(
        apex.name(),
        TTL,
        RData::SOA(SOA::new(
            name_of(&["ns", "dns", "cluster", "local"]),
            name_of(&["hostmaster", "cluster", "local"]),
            serial,
            7200,
            1800,
            86400,
            TTL,
        )),
    )
}

/// The answer to a decoded request, following RFC 1035 and RFC 6891:
///
/// - id, opcode, RD and CD are copied, QR is set, RA is not (no recursion); the question
///   is echoed;
/// - an opcode other than QUERY is NOTIMP, a message that is not one question is FORMERR;
/// - an OPT record in the request gets one in the answer;
/// - a question of class IN in a zone served here is answered with AA: `A` records
///   ([`TTL`]), a `CNAME` (an ExternalName Service, whatever the type asked), NOERROR
///   without answer, or NXDOMAIN, with the zone's SOA in the authority section of
///   negative answers; any other question is REFUSED.
pub fn answer(zone: &Zone, request: &Message) -> Message {
    let mut resp = Message::response(request.id, request.op_code);
    resp.metadata = Metadata::response_from_request(&request.metadata);
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        resp.set_edns(edns);
    }
    resp.add_queries(request.queries.iter().cloned());
    if request.op_code != OpCode::Query {
        resp.metadata.response_code = ResponseCode::NotImp;
        return resp;
    }
    let [query] = request.queries.as_slice() else {
        resp.metadata.response_code = ResponseCode::FormErr;
        return resp;
    };
    if query.query_class() != DNSClass::IN {
        resp.metadata.response_code = ResponseCode::Refused;
        return resp;
    }
    let resolution = zone.resolve(query.name(), query.query_type());
    resp.metadata.authoritative = resolution.apex().is_some();
    match resolution {
        Resolution::Refused => resp.metadata.response_code = ResponseCode::Refused,
        Resolution::Addresses { addresses, .. } => {
            resp.add_answers(
                addresses
                    .into_iter()
                    .map(|ip| Record::from_rdata(query.name().clone(), TTL, RData::A(A(ip)))),
            );
        }
        Resolution::Alias { target, .. } => {
            resp.add_answer(Record::from_rdata(
                query.name().clone(),
                TTL,
                RData::CNAME(CNAME(target)),
            ));
        }
        Resolution::Soa { apex } => {
            let mut soa = soa_record(apex, zone.serial());
            // The owner as asked (case included).
            soa.name = query.name().clone();
            resp.add_answer(soa);
        }
        Resolution::NoData { apex } => {
            resp.add_authority(soa_record(apex, zone.serial()));
        }
        Resolution::NxDomain { apex } => {
            resp.metadata.response_code = ResponseCode::NXDomain;
            resp.add_authority(soa_record(apex, zone.serial()));
        }
    }
    resp
}

/// The reply to one raw request, or `None` when nothing is to be sent back: the packet is
/// too short to carry a header, or it is itself a response (answering those could loop).
///
/// A request that does not decode gets FORMERR with its id. A UDP reply larger than the
/// client can take (512 bytes, or its EDNS payload size up to [`EDNS_PAYLOAD`]) is sent
/// truncated: header, question and OPT only, with TC set, so that the client retries over
/// TCP.
pub fn respond(zone: &Zone, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
    if packet.len() < 12 || packet[2] & 0x80 != 0 {
        return None;
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let op_code = OpCode::from_u8((packet[2] >> 3) & 0x0f);
    let (reply, limit) = match Message::from_vec(packet) {
        Ok(req) if req.message_type == MessageType::Query => {
            let limit = match &req.edns {
                Some(e) => usize::from(e.max_payload().clamp(512, EDNS_PAYLOAD)),
                None => PLAIN_UDP_PAYLOAD,
            };
            (answer(zone, &req), limit)
        }
        _ => (
            Message::error_msg(id, op_code, ResponseCode::FormErr),
            PLAIN_UDP_PAYLOAD,
        ),
    };
    let bytes = match reply.to_vec() {
        Ok(b) => b,
        Err(_) => {
            let mut fail = Message::error_msg(id, op_code, ResponseCode::ServFail);
            fail.add_queries(reply.queries.iter().cloned());
            return fail.to_vec().ok();
        }
    };
    if transport == Transport::Udp && bytes.len() > limit {
        return reply.truncate().to_vec().ok();
    }
    Some(bytes)
}

/// A query message for `name` and `qtype` with a random id (class IN, RD set, EDNS with
/// [`EDNS_PAYLOAD`]), as the client sends it.
pub fn query_message(name: Name, qtype: hickory_proto::rr::RecordType) -> Message {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name, qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    msg.set_edns(edns);
    msg
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::rr::RecordType;

    use super::super::zone::ServiceEntry;
    use super::*;

    fn zone() -> Zone {
        let mut z = Zone::new(42);
        z.add_service(
            "kube-system",
            "kube-dns",
            ServiceEntry::cluster_ip(Ipv4Addr::new(10, 96, 0, 10)),
        );
        z.add_service(
            "default",
            "many",
            ServiceEntry {
                headless: true,
                addresses: (1..=200).map(|i| Ipv4Addr::new(10, 244, 0, i)).collect(),
            },
        );
        z.add_alias("default", "db", Name::from_ascii("db.example.com").unwrap());
        z
    }

    #[test]
    fn an_external_name_service_is_a_cname() {
        for qtype in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
            let resp = roundtrip(&ask("db.default.svc.cluster.local.", qtype), Transport::Udp);
            assert_eq!(resp.response_code, ResponseCode::NoError, "{qtype}");
            assert!(resp.authoritative);
            assert_eq!(resp.answers.len(), 1, "{qtype}");
            let a = &resp.answers[0];
            assert_eq!(a.name.to_ascii(), "db.default.svc.cluster.local.");
            assert_eq!(
                a.data,
                RData::CNAME(CNAME(Name::from_ascii("db.example.com.").unwrap()))
            );
            assert!(resp.authorities.is_empty());
        }
    }

    fn ask(name: &str, qtype: RecordType) -> Message {
        let mut msg = query_message(Name::from_ascii(name).unwrap(), qtype);
        msg.metadata.id = 0x1234;
        msg
    }

    fn roundtrip(req: &Message, transport: Transport) -> Message {
        let bytes = respond(&zone(), &req.to_vec().unwrap(), transport).unwrap();
        Message::from_vec(&bytes).unwrap()
    }

    #[test]
    fn an_a_answer_echoes_id_flags_and_question() {
        let req = ask("Kube-DNS.kube-system.svc.cluster.local.", RecordType::A);
        let resp = roundtrip(&req, Transport::Udp);
        assert_eq!(resp.id, 0x1234);
        assert_eq!(resp.message_type, MessageType::Response);
        assert_eq!(resp.op_code, OpCode::Query);
        assert!(resp.authoritative);
        assert!(resp.recursion_desired);
        assert!(!resp.recursion_available);
        assert!(!resp.truncation);
        assert_eq!(resp.response_code, ResponseCode::NoError);
        assert_eq!(resp.queries, req.queries);
        assert_eq!(resp.answers.len(), 1);
        let a = &resp.answers[0];
        // The owner name as asked, 0x20 case included.
        assert_eq!(a.name.to_ascii(), "Kube-DNS.kube-system.svc.cluster.local.");
        assert_eq!(a.ttl, TTL);
        assert_eq!(a.dns_class, DNSClass::IN);
        assert_eq!(a.data, RData::A(A(Ipv4Addr::new(10, 96, 0, 10))));
        assert!(resp.authorities.is_empty());
        assert_eq!(
            resp.edns.as_ref().map(Edns::max_payload),
            Some(EDNS_PAYLOAD)
        );
    }

    #[test]
    fn negative_answers_carry_the_soa() {
        let resp = roundtrip(
            &ask("nope.default.svc.cluster.local.", RecordType::A),
            Transport::Udp,
        );
        assert_eq!(resp.response_code, ResponseCode::NXDomain);
        assert!(resp.authoritative);
        assert!(resp.answers.is_empty());
        assert_eq!(resp.authorities.len(), 1);
        let soa = &resp.authorities[0];
        assert_eq!(soa.name.to_ascii(), "cluster.local.");
        let RData::SOA(data) = &soa.data else {
            panic!("not an SOA: {soa:?}")
        };
        assert_eq!(data.serial, 42);
        assert_eq!(data.mname.to_ascii(), "ns.dns.cluster.local.");
        assert_eq!(data.rname.to_ascii(), "hostmaster.cluster.local.");
        assert_eq!(data.minimum, TTL);

        let resp = roundtrip(
            &ask("kube-dns.kube-system.svc.", RecordType::AAAA),
            Transport::Udp,
        );
        assert_eq!(resp.response_code, ResponseCode::NoError);
        assert!(resp.answers.is_empty());
        assert_eq!(resp.authorities[0].name.to_ascii(), "svc.");

        let resp = roundtrip(&ask("cluster.local.", RecordType::SOA), Transport::Udp);
        assert_eq!(resp.answers.len(), 1);
        assert_eq!(resp.answers[0].record_type(), RecordType::SOA);
    }

    #[test]
    fn foreign_names_other_classes_and_opcodes_are_refused_or_rejected() {
        let resp = roundtrip(&ask("example.com.", RecordType::A), Transport::Udp);
        assert_eq!(resp.response_code, ResponseCode::Refused);
        assert!(!resp.authoritative);
        assert!(resp.answers.is_empty() && resp.authorities.is_empty());
        assert_eq!(resp.queries.len(), 1);

        let mut chaos = ask("version.bind.", RecordType::TXT);
        chaos.queries[0].set_query_class(DNSClass::CH);
        assert_eq!(
            roundtrip(&chaos, Transport::Udp).response_code,
            ResponseCode::Refused
        );

        let mut notify = ask("cluster.local.", RecordType::SOA);
        notify.metadata.op_code = OpCode::Notify;
        assert_eq!(
            roundtrip(&notify, Transport::Udp).response_code,
            ResponseCode::NotImp
        );

        let mut two = ask("cluster.local.", RecordType::SOA);
        two.add_query(Query::query(
            Name::from_ascii("svc.").unwrap(),
            RecordType::SOA,
        ));
        assert_eq!(
            roundtrip(&two, Transport::Udp).response_code,
            ResponseCode::FormErr
        );
    }

    #[test]
    fn garbage_gets_formerr_and_responses_get_nothing() {
        let z = zone();
        // A header, then a question that runs off the end.
        let mut junk = vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
        junk.extend_from_slice(&[5, b'a', b'b']);
        let resp = Message::from_vec(&respond(&z, &junk, Transport::Udp).unwrap()).unwrap();
        assert_eq!(resp.id, 0xabcd);
        assert_eq!(resp.response_code, ResponseCode::FormErr);
        assert_eq!(respond(&z, &junk[..11], Transport::Udp), None);
        let mut answer = ask("cluster.local.", RecordType::SOA);
        answer.metadata.message_type = MessageType::Response;
        assert_eq!(respond(&z, &answer.to_vec().unwrap(), Transport::Udp), None);
    }

    #[test]
    fn large_udp_answers_are_truncated_and_tcp_ones_are_not() {
        let req = ask("many.default.svc.cluster.local.", RecordType::A);
        let udp = roundtrip(&req, Transport::Udp);
        assert!(udp.truncation);
        assert!(udp.answers.is_empty());
        assert_eq!(udp.id, 0x1234);
        assert_eq!(udp.queries, req.queries);
        let tcp = roundtrip(&req, Transport::Tcp);
        assert!(!tcp.truncation);
        assert_eq!(tcp.answers.len(), 200);
        // Without EDNS the limit is 512 bytes.
        let mut plain = req.clone();
        plain.edns = None;
        let bytes = respond(&zone(), &plain.to_vec().unwrap(), Transport::Udp).unwrap();
        assert!(bytes.len() <= 512);
        let resp = Message::from_vec(&bytes).unwrap();
        assert!(resp.truncation);
        assert!(resp.edns.is_none());
    }
}
