//! A real DNS server for tests: UDP and TCP on the same port of 127.0.0.1 and [::1], built on
//! hickory-proto's message parsing and encoding. Its [`Zone`] is shared behind a lock so a test
//! can change answers between cycles (withdraw AAAA records, break a name), and every query is
//! logged so a test can prove a lookup really reached the server (the probe resolver has no
//! cache).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};

use dualprobe::model::family::Family;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::{Tasks, loopback, tcp_listener_pair, with_free_port};

/// The apex every negative answer's SOA names.
const APEX: &str = "test.";

/// What the server does for one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// The name exists with these records; an empty list for the asked type is NODATA.
    Records {
        /// A records, in answer order.
        a: Vec<Ipv4Addr>,
        /// AAAA records, in answer order.
        aaaa: Vec<Ipv6Addr>,
    },
    /// Answer SERVFAIL.
    ServFail,
    /// Never answer (the query is read and dropped), so clients time out.
    Silent,
    /// DNS rebinding: the first `first_answers` queries of each type get `first`'s records, every
    /// later one gets `then`'s (counted per name and type from the query log).
    Rebind {
        /// How many queries of a type get the first records.
        first_answers: usize,
        /// (A, AAAA) records of the first answers.
        first: (Vec<Ipv4Addr>, Vec<Ipv6Addr>),
        /// (A, AAAA) records of every later answer.
        then: (Vec<Ipv4Addr>, Vec<Ipv6Addr>),
    },
}

/// Names and how they answer. Names not in the zone answer NXDOMAIN.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    names: HashMap<String, Entry>,
    /// Answer every UDP query with an empty, truncated (TC) response so clients retry over TCP.
    pub force_tcp: bool,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Zone {
    /// Gives `name` exactly these A and AAAA records (either may be empty: NODATA).
    pub fn set(&mut self, name: &str, a: &[Ipv4Addr], aaaa: &[Ipv6Addr]) {
        self.names.insert(
            key(name),
            Entry::Records {
                a: a.to_vec(),
                aaaa: aaaa.to_vec(),
            },
        );
    }

    /// Makes `name` answer SERVFAIL.
    pub fn servfail(&mut self, name: &str) {
        self.names.insert(key(name), Entry::ServFail);
    }

    /// Makes `name` never answered.
    pub fn silent(&mut self, name: &str) {
        self.names.insert(key(name), Entry::Silent);
    }

    /// Makes `name` rebind: its first `first_answers` queries of each type are answered with
    /// `first` (A, AAAA), every later one with `then`.
    pub fn rebind(
        &mut self,
        name: &str,
        first_answers: usize,
        first: (&[Ipv4Addr], &[Ipv6Addr]),
        then: (&[Ipv4Addr], &[Ipv6Addr]),
    ) {
        self.names.insert(
            key(name),
            Entry::Rebind {
                first_answers,
                first: (first.0.to_vec(), first.1.to_vec()),
                then: (then.0.to_vec(), then.1.to_vec()),
            },
        );
    }

    /// Removes `name`: it answers NXDOMAIN from now on.
    pub fn remove(&mut self, name: &str) {
        self.names.remove(&key(name));
    }

    /// Drops `name`'s AAAA records, keeping its A records: AAAA lookups become NODATA.
    pub fn withdraw_aaaa(&mut self, name: &str) {
        if let Some(Entry::Records { aaaa, .. }) = self.names.get_mut(&key(name)) {
            aaaa.clear();
        }
    }

    /// What `name` does, if it is in the zone.
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.names.get(&key(name))
    }
}

/// How a query reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Datagram.
    Udp,
    /// Stream (length-prefixed).
    Tcp,
}

/// One query the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedQuery {
    /// The asked name, lowercased, without the trailing dot.
    pub name: String,
    /// The asked type.
    pub rtype: RecordType,
    /// UDP or TCP.
    pub transport: Transport,
    /// Which of the server's addresses it arrived on.
    pub server_family: Family,
}

#[derive(Clone)]
struct Shared {
    zone: Arc<RwLock<Zone>>,
    log: Arc<Mutex<Vec<LoggedQuery>>>,
}

/// A running DNS server; it stops (and its sockets close) when dropped.
pub struct DnsServer {
    port: u16,
    shared: Shared,
    _tasks: Tasks,
}

impl DnsServer {
    /// Starts serving `zone` on UDP and TCP, 127.0.0.1 and [::1], one port. Call inside a tokio
    /// runtime.
    pub fn start(zone: Zone) -> DnsServer {
        let shared = Shared {
            zone: Arc::new(RwLock::new(zone)),
            log: Arc::new(Mutex::new(Vec::new())),
        };
        // Resolvers use one port for UDP and TCP, so all four sockets must share it.
        let (port, udp, tcp) = with_free_port(|port| {
            let mut udp = Vec::new();
            for family in Family::ALL {
                let s = std::net::UdpSocket::bind(SocketAddr::new(loopback(family), port))?;
                s.set_nonblocking(true)?;
                udp.push((family, UdpSocket::from_std(s)?));
            }
            let tcp = tcp_listener_pair(port)?;
            Ok((port, udp, tcp))
        });
        let mut tasks = Tasks::default();
        for (family, socket) in udp {
            tasks.spawn(serve_udp(socket, family, shared.clone()));
        }
        for (family, listener) in Family::ALL.into_iter().zip(tcp) {
            tasks.spawn(serve_tcp(listener, family, shared.clone()));
        }
        DnsServer {
            port,
            shared,
            _tasks: tasks,
        }
    }

    /// The server's address on `family`'s loopback.
    pub fn addr(&self, family: Family) -> SocketAddr {
        SocketAddr::new(loopback(family), self.port)
    }

    /// Changes the zone; later queries see the change.
    pub fn update(&self, change: impl FnOnce(&mut Zone)) {
        change(&mut self.shared.zone.write().expect("zone lock"));
    }

    /// Every query received so far, in arrival order.
    pub fn log(&self) -> Vec<LoggedQuery> {
        self.shared.log.lock().expect("log lock").clone()
    }

    /// How many queries arrived.
    pub fn queries(&self) -> usize {
        self.shared.log.lock().expect("log lock").len()
    }

    /// How many queries for `name` of type `rtype` arrived.
    pub fn queries_for(&self, name: &str, rtype: RecordType) -> usize {
        let name = key(name);
        self.shared
            .log
            .lock()
            .expect("log lock")
            .iter()
            .filter(|q| q.name == name && q.rtype == rtype)
            .count()
    }
}

async fn serve_udp(socket: UdpSocket, family: Family, shared: Shared) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(reply) = shared.answer(&buf[..n], Transport::Udp, family) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, family: Family, shared: Shared) {
    // Owned here so connections end when the server task is aborted.
    let mut connections = Tasks::default();
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            connections.spawn(serve_tcp_connection(stream, family, shared.clone()));
        }
    }
}

async fn serve_tcp_connection(mut stream: TcpStream, family: Family, shared: Shared) {
    loop {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let mut buf = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut buf).await.is_err() {
            return;
        }
        // A silent name leaves the connection open and unanswered, as a stuck server would.
        if let Some(reply) = shared.answer(&buf, Transport::Tcp, family) {
            let Ok(len) = u16::try_from(reply.len()) else {
                return;
            };
            let mut framed = len.to_be_bytes().to_vec();
            framed.extend_from_slice(&reply);
            if stream.write_all(&framed).await.is_err() {
                return;
            }
        }
    }
}

impl Shared {
    /// The encoded reply to one request, or `None` to stay silent.
    fn answer(&self, request: &[u8], transport: Transport, family: Family) -> Option<Vec<u8>> {
        let request = Message::from_vec(request).ok()?;
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.metadata.authoritative = true;
        let Some(query) = request.queries.first().cloned() else {
            response.metadata.response_code = ResponseCode::FormErr;
            return response.to_vec().ok();
        };
        let name = key(&query.name.to_ascii());
        self.log.lock().expect("log lock").push(LoggedQuery {
            name: name.clone(),
            rtype: query.query_type,
            transport,
            server_family: family,
        });
        response.add_query(query.clone());
        if request.metadata.op_code != OpCode::Query {
            response.metadata.response_code = ResponseCode::NotImp;
            return response.to_vec().ok();
        }
        let zone = self.zone.read().expect("zone lock").clone();
        if zone.force_tcp && transport == Transport::Udp {
            response.metadata.truncation = true;
            return response.to_vec().ok();
        }
        match zone.entry(&name) {
            None => {
                response.metadata.response_code = ResponseCode::NXDomain;
                response.add_authority(soa());
            }
            Some(Entry::Silent) => return None,
            Some(Entry::ServFail) => response.metadata.response_code = ResponseCode::ServFail,
            Some(entry @ (Entry::Records { .. } | Entry::Rebind { .. })) => {
                let (a, aaaa) = match entry {
                    Entry::Rebind {
                        first_answers,
                        first,
                        then,
                    } => {
                        // The log already holds this query: the n-th query sees n entries.
                        let seen = self
                            .log
                            .lock()
                            .expect("log lock")
                            .iter()
                            .filter(|q| q.name == name && q.rtype == query.query_type)
                            .count();
                        let (a, aaaa) = if seen <= *first_answers { first } else { then };
                        (a, aaaa)
                    }
                    Entry::Records { a, aaaa } => (a, aaaa),
                    Entry::ServFail | Entry::Silent => unreachable!("matched above"),
                };
                let answers: Vec<RData> = match query.query_type {
                    RecordType::A => a.iter().map(|ip| RData::A(A(*ip))).collect(),
                    RecordType::AAAA => aaaa.iter().map(|ip| RData::AAAA(AAAA(*ip))).collect(),
                    _ => Vec::new(),
                };
                if answers.is_empty() {
                    // NODATA: NOERROR, no answer, the SOA in authority (RFC 2308).
                    response.add_authority(soa());
                }
                for data in answers {
                    response.add_answer(Record::from_rdata(query.name.clone(), 0, data));
                }
            }
        }
        response.to_vec().ok()
    }
}

fn soa() -> Record {
    let apex = Name::from_ascii(APEX).expect("apex name");
    let mname = Name::from_ascii("ns.test.").expect("mname");
    let rname = Name::from_ascii("hostmaster.test.").expect("rname");
    Record::from_rdata(
        apex,
        0,
        RData::SOA(SOA::new(mname, rname, 1, 60, 60, 60, 0)),
    )
}
