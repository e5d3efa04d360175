//! Raw HTTP/1.1 on a socket, for origins that must send what no server
//! library would (interim responses, odd framings, stalls).

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Reads from `s` until a complete request head has arrived: the bytes read
/// (the head and whatever came behind it), or `None` when the peer closed
/// or failed first.
pub async fn read_head(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(buf)
}
