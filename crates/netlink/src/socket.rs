//! The rtnetlink socket: synchronous and batched. A batch of requests goes to the
//! kernel in one sendmsg(2), which handles the messages in order and acknowledges each;
//! so a pod's dozen requests cost one system call and no round trip apiece, and their
//! order still holds (a link is up before a route uses it). No async runtime: the CNI
//! plugin is a short-lived process on the hot path of every pod start.

use crate::messages::{self, LinkInfo, NeighbourInfo, Request, RouteInfo, RouteSpec, VethSpec};
use crate::{Errno, NetlinkError, Netns};
use ipnet::IpNet;
use rtnetlink::packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::net::IpAddr;
use std::time::Duration;

/// Largest batch sent in one sendmsg; larger batches go in several.
const MAX_SEND_BYTES: usize = 32 * 1024;
/// Most requests in one sendmsg. The kernel queues one ack per request on the socket
/// before we read any, and each ack is a whole skb (about 1 KiB of receive buffer): a
/// batch of hundreds overflows the default 208 KiB buffer and the kernel drops acks
/// (ENOBUFS). 128 acks stay well inside it.
const MAX_SEND_REQUESTS: usize = 128;
/// Receive buffer per recv(2): the kernel sends dumps in chunks of about a page.
const RECV_BYTES: usize = 64 * 1024;
/// How long one recv(2) waits for the kernel. rtnetlink answers are queued before the
/// sendmsg returns (and a dump's next chunk as soon as the last is read), so waiting
/// at all means an answer weft expects will never come, e.g. a request that asked for
/// no ack. An error naming the wait beats a plugin, or a convergence pass of weftd,
/// hanging for ever.
pub(crate) const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// A netlink socket of `protocol` in the calling thread's namespace, connected to the
/// kernel and with recv(2) bounded by [`RECV_TIMEOUT`]; `what` names it in errors.
/// Connecting to the kernel (port 0) also binds the socket to a port the kernel picks
/// (netlink_connect autobinds), and makes it refuse unicasts from anyone else; weft
/// matches answers by sequence number, so it never needs its port id.
pub(crate) fn open_socket(protocol: isize, what: &'static str) -> Result<Socket, NetlinkError> {
    let io = |e| NetlinkError::io(what, e);
    let socket = Socket::new(protocol).map_err(io)?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(io)?;
    socket2::SockRef::from(&socket)
        .set_read_timeout(Some(RECV_TIMEOUT))
        .map_err(io)?;
    Ok(socket)
}

/// One rtnetlink socket, bound for life to the namespace it was opened in.
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    sequence: u32,
    receive: Vec<u8>,
}

impl Netlink {
    /// Opens a socket in the calling thread's current namespace.
    pub fn connect() -> Result<Netlink, NetlinkError> {
        let what = "open rtnetlink socket";
        let socket = open_socket(NETLINK_ROUTE, what)?;
        // Acks carry only the header of the request they answer.
        socket
            .set_cap_ack(true)
            .map_err(|e| NetlinkError::io(what, e))?;
        Ok(Netlink {
            socket,
            sequence: 0,
            receive: Vec::with_capacity(RECV_BYTES),
        })
    }

    /// Opens a socket bound to `netns`, leaving the thread where it was.
    pub fn connect_in(netns: &Netns) -> Result<Netlink, NetlinkError> {
        let _inside = netns.enter()?;
        Netlink::connect()
    }

    fn encode(&mut self, request: &Request, flags: u16, out: &mut Vec<u8>) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.sequence;
        let mut message = NetlinkMessage::new(
            header,
            NetlinkPayload::InnerMessage(request.message.clone()),
        );
        message.finalize();
        let start = out.len();
        out.resize(start + message.buffer_len(), 0);
        message.serialize(&mut out[start..]);
        self.sequence
    }

    /// Reads answers until `done` says the exchange is over.
    fn read(
        &mut self,
        mut on_message: impl FnMut(NetlinkMessage<RouteNetlinkMessage>) -> bool,
    ) -> Result<(), NetlinkError> {
        loop {
            self.receive.clear();
            self.receive.reserve(RECV_BYTES);
            let n = self.socket.recv(&mut self.receive, 0).map_err(|e| {
                let e = match e.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                        std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no answer from the kernel within {RECV_TIMEOUT:?}"),
                        )
                    }
                    _ => e,
                };
                NetlinkError::io("read rtnetlink answers", e)
            })?;
            let mut offset = 0;
            while offset < n {
                let message =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.receive[offset..n])
                        .map_err(|e| {
                            NetlinkError::io(
                                "decode rtnetlink answer",
                                std::io::Error::other(e.to_string()),
                            )
                        })?;
                let length = message.header.length as usize;
                if length == 0 {
                    return Err(NetlinkError::io(
                        "decode rtnetlink answer",
                        std::io::Error::other("zero-length message"),
                    ));
                }
                offset += length.next_multiple_of(4);
                if on_message(message) {
                    return Ok(());
                }
            }
        }
    }

    /// Sends `requests` in as few system calls as fit and waits for every ack. The
    /// kernel carries on after a failed request; the first failure, in request order, is
    /// returned.
    pub fn execute(&mut self, requests: &[Request]) -> Result<(), NetlinkError> {
        match self.execute_all(requests)?.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Like [`Netlink::execute`], but reports every failed request (its index in
    /// `requests` and the error, in request order), so a caller converging many objects
    /// can tell exactly which ones are not in place. `Err` only when the socket fails.
    ///
    /// Only the last request of each sendmsg asks for an ack (NLM_F_ACK). The kernel
    /// answers a failed request with an error whether asked or not, and handles the
    /// messages of one sendmsg in order (netlink_rcv_skb), so the last ack arrives after
    /// every error before it: one recv(2) per batch instead of one per request, and no
    /// ack skbs to build for the requests that succeed.
    pub fn execute_all(
        &mut self,
        requests: &[Request],
    ) -> Result<Vec<(usize, NetlinkError)>, NetlinkError> {
        use rtnetlink::packet_core::NLM_F_ACK;
        let mut failures: Vec<(usize, NetlinkError)> = Vec::new();
        let mut start = 0;
        while start < requests.len() {
            let mut buffer = Vec::new();
            // Sequence numbers run consecutively from the chunk's first request, so an
            // answer's sequence number gives the request's index.
            let first_sequence = self.sequence.wrapping_add(1);
            let (mut end, mut last) = (start, 0);
            while end < requests.len()
                && (end == start
                    || (buffer.len() < MAX_SEND_BYTES && end - start < MAX_SEND_REQUESTS))
            {
                last = buffer.len();
                let flags = requests[end].flags & !NLM_F_ACK;
                self.encode(&requests[end], flags, &mut buffer);
                end += 1;
            }
            // The chunk is complete: its last message asks for the ack after all. Its
            // flags are the u16 at bytes 6..8 of its header (struct nlmsghdr).
            let flags = requests[end - 1].flags | NLM_F_ACK;
            buffer[last + 6..last + 8].copy_from_slice(&flags.to_ne_bytes());
            let last_sequence = self.sequence;
            self.socket
                .send(&buffer, 0)
                .map_err(|e| NetlinkError::io(requests[start].what.clone(), e))?;
            self.read(|message| {
                let sequence = message.header.sequence_number;
                if let NetlinkPayload::Error(error) = &message.payload {
                    let offset = sequence.wrapping_sub(first_sequence) as usize;
                    let index = start + offset;
                    if let Some(code) = error.code.filter(|_| offset < end - start) {
                        failures.push((
                            index,
                            NetlinkError::from_errno(requests[index].what.clone(), -code.get()),
                        ));
                    }
                    return sequence == last_sequence;
                }
                false
            })?;
            start = end;
        }
        failures.sort_by_key(|(index, _)| *index);
        Ok(failures)
    }

    /// Sends one request and waits for its ack.
    pub fn execute_one(&mut self, request: Request) -> Result<(), NetlinkError> {
        self.execute(std::slice::from_ref(&request))
    }

    /// A request's answers: for a dump (NLM_F_DUMP), every message until NLMSG_DONE; for
    /// a request with NLM_F_ECHO, its echo and then its ack; for a plain get, exactly one
    /// message (or an error) and no NLMSG_DONE.
    pub(crate) fn dump(
        &mut self,
        request: Request,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        use rtnetlink::packet_core::{NLM_F_DUMP, NLM_F_ECHO};
        let single = request.flags & NLM_F_DUMP != NLM_F_DUMP && request.flags & NLM_F_ECHO == 0;
        let mut buffer = Vec::new();
        let sequence = self.encode(&request, request.flags, &mut buffer);
        self.socket
            .send(&buffer, 0)
            .map_err(|e| NetlinkError::io(request.what.clone(), e))?;
        let mut out = Vec::new();
        let mut failure = None;
        self.read(|message| {
            if message.header.sequence_number != sequence {
                return false;
            }
            match message.payload {
                NetlinkPayload::InnerMessage(inner) => {
                    out.push(inner);
                    single
                }
                NetlinkPayload::Error(e) => {
                    failure = e
                        .code
                        .map(|c| NetlinkError::from_errno(request.what.clone(), -c.get()));
                    true
                }
                NetlinkPayload::Done(_) => true,
                _ => false,
            }
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Creates a veth pair (see [`messages::create_veth`]) and returns its host end as
    /// the kernel echoes it (None from an older kernel that does not echo RTM_NEWLINK).
    pub fn create_veth(&mut self, spec: &VethSpec<'_>) -> Result<Option<LinkInfo>, NetlinkError> {
        let answers = self.dump(messages::create_veth(spec))?;
        Ok(answers.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(link) => {
                Some(messages::link_info(link)).filter(|l| l.name == spec.host_name)
            }
            _ => None,
        }))
    }

    /// The link called `name`, if there is one.
    pub fn link(&mut self, name: &str) -> Result<Option<LinkInfo>, NetlinkError> {
        match self.dump(messages::get_link(name)) {
            Ok(messages) => Ok(messages.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(messages::link_info(link)),
                _ => None,
            })),
            Err(e) if e.errno() == Some(Errno::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link in the namespace.
    pub fn links(&mut self) -> Result<Vec<LinkInfo>, NetlinkError> {
        Ok(self
            .dump(messages::dump_links())?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(messages::link_info(link)),
                _ => None,
            })
            .collect())
    }

    /// The addresses on a link.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<IpNet>, NetlinkError> {
        Ok(self
            .dump(messages::dump_addresses())?
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => messages::address_of(a),
                _ => None,
            })
            .filter(|(i, _)| *i == index)
            .map(|(_, net)| net)
            .collect())
    }

    /// The routes of one family.
    pub fn routes(&mut self, ipv6: bool) -> Result<Vec<RouteInfo>, NetlinkError> {
        Ok(self
            .dump(messages::dump_routes(ipv6))?
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => messages::route_info(r),
                _ => None,
            })
            .collect())
    }

    /// Neighbour entries of one link (both families).
    pub fn neighbours(&mut self, index: u32) -> Result<Vec<NeighbourInfo>, NetlinkError> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            for m in self.dump(messages::dump_neighbours(family))? {
                if let RouteNetlinkMessage::NewNeighbour(n) = m {
                    out.extend(
                        messages::neighbour_info(&n)
                            .filter(|(i, _)| *i == index)
                            .map(|(_, n)| n),
                    );
                }
            }
        }
        Ok(out)
    }

    /// Adds a route (see [`messages::route`]).
    pub fn add_route(&mut self, spec: &RouteSpec) -> Result<(), NetlinkError> {
        self.execute_one(messages::route(spec)?)
    }

    /// Adds a permanent neighbour entry.
    pub fn add_permanent_neighbour(
        &mut self,
        index: u32,
        ip: IpAddr,
        mac: [u8; 6],
    ) -> Result<(), NetlinkError> {
        self.execute_one(messages::permanent_neighbour(index, ip, mac))
    }

    /// Deletes the link called `name`. `Ok(false)` when there was none.
    pub fn delete_link(&mut self, name: &str) -> Result<bool, NetlinkError> {
        Ok(!self.delete_links(&[name.to_owned()])?.is_empty())
    }

    /// Deletes the named links in one kernel operation: each is moved to a private link
    /// group, then the group is deleted, so the kernel unregisters them together and
    /// waits for one RCU grace period instead of one per link. Returns the names that
    /// existed.
    pub fn delete_links(&mut self, names: &[String]) -> Result<Vec<String>, NetlinkError> {
        let mut parked = Vec::new();
        for name in names {
            let Some(link) = self.link(name)? else {
                continue;
            };
            match self.execute_one(messages::park_for_removal(link.index, name)) {
                Ok(()) => parked.push(name.clone()),
                Err(e) if e.errno() == Some(Errno::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        if parked.is_empty() {
            return Ok(parked);
        }
        match self.execute_one(messages::delete_doomed(&parked)) {
            Err(e) if e.errno() != Some(Errno::NotFound) => Err(e),
            _ => Ok(parked),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket left waiting for an answer the kernel will never send (nothing was
    /// asked) fails with a timeout instead of blocking. Real kernel, any user: an
    /// rtnetlink socket needs no privilege.
    #[test]
    fn a_missing_answer_is_a_timeout_not_a_hang() {
        let mut netlink = Netlink::connect().unwrap();
        let socket = socket2::SockRef::from(&netlink.socket);
        assert_eq!(socket.read_timeout().unwrap(), Some(RECV_TIMEOUT));
        // Shortened, so the test does not wait the full timeout.
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let began = std::time::Instant::now();
        let error = netlink.read(|_| true).unwrap_err();
        assert!(began.elapsed() < Duration::from_secs(5));
        let NetlinkError::Io { operation, source } = &error else {
            panic!("not an I/O error: {error}");
        };
        assert_eq!(operation, "read rtnetlink answers");
        assert_eq!(source.kind(), std::io::ErrorKind::TimedOut);
        assert!(
            error
                .to_string()
                .contains("no answer from the kernel within 10s"),
            "{error}"
        );
    }
}
