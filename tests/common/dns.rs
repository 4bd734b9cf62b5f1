//! A DNS server for tests: answers A and AAAA queries from a table, each
//! answer after its own delay (so a slow name never holds up the others),
//! NXDOMAIN for anything else. Listens on a UDP socket the caller binds
//! (127.0.0.1:0 in the test's network namespace).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;

/// One name's answer.
#[derive(Clone)]
pub struct Answer {
    pub ips: Vec<IpAddr>,
    pub delay: Duration,
}

pub struct Dns {
    pub addr: SocketAddr,
    /// Queries received, of any name.
    pub queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Dns {
    /// Serves `table` (names without the trailing dot; `*.suffix` matches
    /// any name ending in `.suffix`) on a new socket at 127.0.0.1:0.
    pub async fn start(table: Vec<(&str, Answer)>) -> Dns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind the DNS socket");
        Dns::serve(socket, table)
    }

    pub fn serve(socket: UdpSocket, table: Vec<(&str, Answer)>) -> Dns {
        let addr = socket.local_addr().expect("addr");
        let table: Arc<HashMap<String, Answer>> =
            Arc::new(table.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect());
        let socket = Arc::new(socket);
        let queries = Arc::new(AtomicUsize::new(0));
        let counted = queries.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else { continue };
                let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
                counted.fetch_add(1, Ordering::SeqCst);
                let (socket, table) = (socket.clone(), table.clone());
                tokio::spawn(async move {
                    let (reply, delay) = answer(&query, &table);
                    tokio::time::sleep(delay).await;
                    if let Ok(bytes) = reply.to_vec() {
                        let _ = socket.send_to(&bytes, peer).await;
                    }
                });
            }
        });
        Dns { addr, queries, task }
    }

    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

fn lookup<'a>(table: &'a HashMap<String, Answer>, name: &str) -> Option<&'a Answer> {
    table.get(name).or_else(|| {
        let (_, suffix) = name.split_once('.')?;
        table.get(&format!("*.{suffix}"))
    })
}

fn answer(query: &Message, table: &HashMap<String, Answer>) -> (Message, Duration) {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.message_type = MessageType::Response;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    let mut delay = Duration::ZERO;
    let mut found = false;
    for q in &query.queries {
        reply.add_query(q.clone());
        let name = q.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
        let Some(entry) = lookup(table, &name) else { continue };
        found = true;
        delay = delay.max(entry.delay);
        for ip in &entry.ips {
            let rdata = match (ip, q.query_type()) {
                (IpAddr::V4(v4), RecordType::A) => RData::A(A(*v4)),
                (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(*v6)),
                _ => continue,
            };
            reply.add_answer(Record::from_rdata(q.name().clone(), 1, rdata));
        }
    }
    if !found {
        reply.metadata.response_code = ResponseCode::NXDomain;
    }
    (reply, delay)
}
