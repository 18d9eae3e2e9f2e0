//! A DNS server on loopback: real DNS messages over UDP (encoded by hickory-proto), one
//! behaviour per name ([`Zone`]), and a count of the queries received per name.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// The inner zone's reply, sent this long after the query: a slow resolver.
    Late(Duration, Box<Zone>),
}

/// A DNS server on 127.0.0.1 answering from a fixed table; names not in it are refused.
/// Stops when dropped.
#[derive(Debug)]
pub struct DnsServer {
    addr: SocketAddr,
    queries: Arc<Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DnsServer {
    /// Serves `zones` (name without the trailing dot, and its behaviour) on a free port.
    pub async fn start<N: AsRef<str>>(
        zones: impl IntoIterator<Item = (N, Zone)>,
    ) -> std::io::Result<Self> {
        let zones: HashMap<String, Zone> = zones
            .into_iter()
            .map(|(name, zone)| (format!("{}.", name.as_ref().to_lowercase()), zone))
            .collect();
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = socket.local_addr()?;
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
                let Some(name) = request.queries().first().map(|q| q.name().to_ascii()) else {
                    continue;
                };
                let name = name.to_lowercase();
                *counted
                    .lock()
                    .expect("never poisoned")
                    .entry(name.clone())
                    .or_insert(0) += 1;
                match zones.get(&name) {
                    Some(Zone::Late(after, zone)) => {
                        let (socket, zone, after) = (socket.clone(), (**zone).clone(), *after);
                        tokio::spawn(async move {
                            tokio::time::sleep(after).await;
                            if let Some(reply) = reply(&request, Some(&zone)) {
                                let _ = socket.send_to(&reply, from).await;
                            }
                        });
                    }
                    zone => {
                        if let Some(reply) = reply(&request, zone) {
                            let _ = socket.send_to(&reply, from).await;
                        }
                    }
                }
            }
        });
        Ok(Self {
            addr,
            queries,
            task,
        })
    }

    /// Where the server listens (UDP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queries received for `name` (any type).
    pub fn queries(&self, name: &str) -> usize {
        self.queries
            .lock()
            .expect("never poisoned")
            .get(&format!("{}.", name.to_lowercase()))
            .copied()
            .unwrap_or(0)
    }

    /// Queries received so far per name (without the trailing dot).
    pub fn counts(&self) -> HashMap<String, usize> {
        self.queries
            .lock()
            .expect("never poisoned")
            .iter()
            .map(|(name, &n)| (name.trim_end_matches('.').to_owned(), n))
            .collect()
    }

    /// Queries received in all, and the number of distinct names asked about.
    pub fn totals(&self) -> (usize, usize) {
        let q = self.queries.lock().expect("never poisoned");
        (q.values().sum(), q.len())
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The encoded reply to `request` from `zone` (refused when the name is not served); `None`
/// for a name that stays silent.
fn reply(request: &Message, zone: Option<&Zone>) -> Option<Vec<u8>> {
    let query = request.queries().first()?.clone();
    let mut reply = Message::new();
    reply
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true)
        .add_query(query.clone());
    match zone {
        Some(Zone::Silent) => return None,
        Some(Zone::Late(_, zone)) => return self::reply(request, Some(zone)),
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
    reply.to_vec().ok()
}

/// The zone's SOA, whose minimum is the negative TTL.
fn soa(name: &Name, ttl: u32) -> Record {
    let zone = name.base_name();
    Record::from_rdata(
        zone.clone(),
        ttl,
        RData::SOA(SOA::new(zone.clone(), zone, 1, 3600, 600, 86400, ttl)),
    )
}
