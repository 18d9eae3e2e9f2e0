//! A DNS server on loopback for the tests: real DNS messages over UDP (encoded by
//! hickory-proto), one behaviour per name, and a count of the queries received per name.
// Each test crate uses part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_worker::dns::DnsSettings;
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

/// What the server answers for one name.
#[derive(Debug, Clone)]
pub enum Zone {
    /// These addresses, with this TTL (seconds).
    Answer(Vec<IpAddr>, u32),
    /// NXDOMAIN, with this negative TTL (the SOA's minimum, seconds).
    Missing(u32),
    /// No reply at all.
    Silent,
}

/// A DNS server on 127.0.0.1 answering from a fixed table.
pub struct DnsServer {
    addr: SocketAddr,
    queries: Arc<Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DnsServer {
    pub async fn start(zones: &[(&str, Zone)]) -> Self {
        let zones: HashMap<String, Zone> = zones
            .iter()
            .map(|(name, zone)| (format!("{name}."), zone.clone()))
            .collect();
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let queries: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let counted = queries.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(request) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(query) = request.queries().first().cloned() else {
                    continue;
                };
                let name = query.name().to_ascii().to_lowercase();
                *counted.lock().unwrap().entry(name.clone()).or_insert(0) += 1;
                let mut reply = Message::new();
                reply
                    .set_id(request.id())
                    .set_message_type(MessageType::Response)
                    .set_op_code(request.op_code())
                    .set_recursion_desired(request.recursion_desired())
                    .set_recursion_available(true)
                    .set_authoritative(true)
                    .add_query(query.clone());
                match zones.get(&name) {
                    Some(Zone::Silent) => continue,
                    Some(Zone::Answer(addrs, ttl)) => {
                        for ip in addrs {
                            let rdata = match (ip, query.query_type()) {
                                (IpAddr::V4(v4), RecordType::A) => RData::A(A(*v4)),
                                (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(*v6)),
                                _ => continue,
                            };
                            reply.add_answer(Record::from_rdata(query.name().clone(), *ttl, rdata));
                        }
                        if reply.answers().is_empty() {
                            reply.add_name_server(soa(query.name(), *ttl));
                        }
                    }
                    Some(Zone::Missing(ttl)) => {
                        reply.set_response_code(ResponseCode::NXDomain);
                        reply.add_name_server(soa(query.name(), *ttl));
                    }
                    None => {
                        reply.set_response_code(ResponseCode::Refused);
                    }
                }
                let _ = socket.send_to(&reply.to_vec().unwrap(), from).await;
            }
        });
        Self {
            addr,
            queries,
            task,
        }
    }

    /// Queries received for `name` (any type).
    pub fn queries(&self, name: &str) -> usize {
        self.queries
            .lock()
            .unwrap()
            .get(&format!("{name}."))
            .copied()
            .unwrap_or(0)
    }

    pub fn settings(&self, timeout: Duration) -> DnsSettings {
        DnsSettings {
            servers: vec![self.addr],
            timeout,
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The zone's SOA, whose minimum is the negative TTL.
pub fn soa(name: &Name, ttl: u32) -> Record {
    let zone = name.base_name();
    Record::from_rdata(
        zone.clone(),
        ttl,
        RData::SOA(SOA::new(zone.clone(), zone, 1, 3600, 600, 86400, ttl)),
    )
}
