//! A loopback port that refuses connections, shared by the node's and the
//! tools' test harnesses.

use std::net::SocketAddr;

/// A loopback port that refuses connections: a socket bound to it but not
/// listening. Holding the socket keeps the port from being handed to
/// another test's listener (binding port 0 and dropping the listener left a
/// window in which a parallel test could take it and answer).
pub struct DeadPort {
    _socket: tokio::net::TcpSocket,
    pub addr: SocketAddr,
}

impl DeadPort {
    pub fn bind() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        DeadPort {
            _socket: socket,
            addr,
        }
    }
}
