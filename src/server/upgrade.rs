//! Binary upgrade without a dropped request, and listening sockets inherited from systemd.
//!
//! A running node listens on a Unix socket, `upgrade.sock` under the storage path (mode
//! 0600, and only a peer of the same user is answered). `outpost serve --upgrade` (the new
//! binary, same config) connects and:
//! 1. asks for the listening sockets: the old node sends them with `SCM_RIGHTS`, named
//!    (`proxy`, `admin`, `tls`). Both processes now hold the same sockets: the kernel's accept
//!    queue is shared, so no connection is refused while the two swap.
//! 2. builds everything it can without the store (config, certificates), then asks the old
//!    node to release: the old node stops accepting (connections queue for the new one), hands
//!    the store over (`Store::hand_over`: bodies being read stream on from what they pinned,
//!    fills go on streaming without being stored) and answers once the directory is free.
//! 3. opens the store and starts accepting. The old node drains its open connections (up to
//!    `drain_timeout`) and exits.
//!
//! The window in which new connections wait in the kernel's queue is the old store's close
//! plus the new store's open; the new node logs it ("took over"). If the new node fails
//! before step 2, the old one serves on as if nothing happened.
//!
//! Owns: the upgrade socket, its protocol and the inherited listeners. Must not know: HTTP,
//! caching rules (the release itself is a closure the node gives).

use std::future::Future;
use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::net::TcpListener as StdTcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorKind};

/// The socket's file name under the storage path.
pub const SOCKET: &str = "upgrade.sock";

/// How long either side waits for the other's next message.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// At most this many listeners change hands (proxy, admin, tls).
const MAX_FDS: usize = 4;

fn setup(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Setup, msg)
}

fn io_err(what: &str, e: impl std::fmt::Display) -> Error {
    setup(format!("upgrade: {what}: {e}"))
}

/// Listening sockets a node starts with instead of binding its own: from the node it
/// replaces (`--upgrade`) or from systemd (`LISTEN_FDS`).
#[derive(Default)]
pub struct Inherited {
    listeners: Vec<(String, StdTcpListener)>,
    taking: Option<Taking>,
}

impl Inherited {
    /// The listener named `name`, if one was inherited.
    pub fn take(&mut self, name: &str) -> Option<StdTcpListener> {
        let i = self.listeners.iter().position(|(n, _)| n == name)?;
        Some(self.listeners.swap_remove(i).1)
    }

    /// The upgrade in progress, if these came from a running node.
    pub fn taking(&mut self) -> Option<Taking> {
        self.taking.take()
    }

    /// Names of the listeners not taken (closed when this is dropped).
    pub fn unused(&self) -> Vec<String> {
        self.listeners.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The sockets systemd passed (`LISTEN_FDS`, for this process: `LISTEN_PID`). Each is
    /// named by `LISTEN_FDNAMES` when it says `proxy`, `admin` or `tls`, else by the
    /// configured address it is bound to, else by its position in that order. Call it
    /// before any thread starts: it clears the variables.
    pub fn from_systemd(addrs: &[(&str, Option<std::net::SocketAddr>)]) -> Result<Self, Error> {
        let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
            .map(|v| v.split(':').map(str::to_owned).collect())
            .unwrap_or_default();
        let mut fds = listenfd::ListenFd::from_env();
        let mut listeners = Vec::new();
        for i in 0..fds.len() {
            let l = fds
                .take_tcp_listener(i)
                .map_err(|e| io_err("a LISTEN_FDS socket is not a TCP listener", e))?;
            let Some(l) = l else { continue };
            let local = l.local_addr().ok();
            let named = names
                .get(i)
                .filter(|n| addrs.iter().any(|(a, _)| a == n))
                .cloned();
            let by_addr = || {
                addrs
                    .iter()
                    .find(|(_, a)| a.is_some() && *a == local)
                    .map(|(n, _)| (*n).to_owned())
            };
            let by_position = || addrs.get(i).map(|(n, _)| (*n).to_owned());
            match named.or_else(by_addr).or_else(by_position) {
                Some(n) if !listeners.iter().any(|(m, _)| *m == n) => listeners.push((n, l)),
                _ => tracing::warn!(
                    fd = 3 + i,
                    ?local,
                    "LISTEN_FDS: a socket with no use: closed"
                ),
            }
        }
        if !listeners.is_empty() {
            let names: Vec<&str> = listeners.iter().map(|(n, _)| n.as_str()).collect();
            tracing::info!(?names, "listening sockets from systemd");
        }
        Ok(Inherited {
            listeners,
            taking: None,
        })
    }

    /// Connects to the node running on `storage` and receives its listening sockets.
    pub fn from_running(storage: &Path) -> Result<Self, Error> {
        let path = storage.join(SOCKET);
        let mut stream = UnixStream::connect(&path).map_err(|e| {
            setup(format!(
                "upgrade: no running node answers on {}: {e}",
                path.display()
            ))
        })?;
        stream
            .set_read_timeout(Some(STEP_TIMEOUT))
            .map_err(|e| io_err("socket", e))?;
        stream
            .write_all(b"LISTENERS\n")
            .map_err(|e| io_err("ask for the listeners", e))?;
        let (names, fds) = recv_fds(&stream)?;
        let names: Vec<&str> = names.split_whitespace().collect();
        if names.len() != fds.len() {
            return Err(setup(format!(
                "upgrade: the running node sent {} socket(s) for {} name(s)",
                fds.len(),
                names.len()
            )));
        }
        let listeners = names
            .iter()
            .zip(fds)
            .map(|(n, fd)| ((*n).to_owned(), StdTcpListener::from(fd)))
            .collect();
        Ok(Inherited {
            listeners,
            taking: Some(Taking { stream }),
        })
    }
}

/// The new node's side of an upgrade in progress.
pub struct Taking {
    stream: UnixStream,
}

/// What the old node reported when it released.
#[derive(Debug, Clone)]
pub struct Released {
    /// The old node's own account ("store handed over in N ms, ...").
    pub report: String,
    /// From asking to the answer.
    pub took: Duration,
}

impl Taking {
    /// Asks the old node to stop accepting and hand the store over; returns once it has.
    pub async fn release(self) -> Result<Released, Error> {
        let start = Instant::now();
        let mut stream = self.stream;
        let answer = tokio::task::spawn_blocking(move || -> Result<String, Error> {
            stream
                .write_all(b"RELEASE\n")
                .map_err(|e| io_err("ask to release", e))?;
            let mut line = String::new();
            BufReader::new(&stream)
                .read_line(&mut line)
                .map_err(|e| io_err("wait for the release", e))?;
            Ok(line)
        })
        .await
        .map_err(|e| io_err("release task", e))??;
        match answer.trim().strip_prefix("RELEASED") {
            Some(report) => Ok(Released {
                report: report.trim().to_owned(),
                took: start.elapsed(),
            }),
            None => Err(setup(format!(
                "upgrade: the running node did not release: {:?}",
                answer.trim()
            ))),
        }
    }
}

/// What the old node does when asked to release: stop accepting, hand the store over;
/// returns its report.
pub type ReleaseFn = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// Answers upgrade requests on `storage/upgrade.sock` until `stop` fires or one upgrade
/// released this node (then `released` fires). `listeners` are duplicates of the node's
/// listening sockets.
pub async fn serve(
    storage: PathBuf,
    listeners: Vec<(&'static str, OwnedFd)>,
    release: ReleaseFn,
    stop: CancellationToken,
    released: CancellationToken,
) {
    let path = storage.join(SOCKET);
    let listener = match bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "no upgrade socket: this node cannot hand over to a new binary");
            return;
        }
    };
    let listeners = Arc::new(listeners);
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "upgrade socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "upgrade socket");
                continue;
            }
        };
        let (l, r) = (listeners.clone(), release.clone());
        let rt = tokio::runtime::Handle::current();
        let done = tokio::task::spawn_blocking(move || hand_over(stream, &l, &r, &rt)).await;
        match done {
            Ok(Ok(true)) => {
                released.cancel();
                break;
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "upgrade refused or abandoned; serving on"),
            Err(e) => tracing::warn!(error = %e, "upgrade task failed; serving on"),
        }
    }
    // The new node binds its own socket at this path: leave it alone once released.
    if !released.is_cancelled() {
        let _ = std::fs::remove_file(&path);
    }
}

fn bind(path: &Path) -> Result<tokio::net::UnixListener, Error> {
    // Whoever holds the store owns the path: a file left here is from a node that is gone,
    // or from the node this one replaced (which no longer answers on it).
    let _ = std::fs::remove_file(path);
    let l = tokio::net::UnixListener::bind(path)
        .map_err(|e| io_err(&format!("bind {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io_err(&format!("chmod {}", path.display()), e))?;
    Ok(l)
}

/// One upgrade conversation on the old node's side (blocking). `Ok(true)`: released.
fn hand_over(
    stream: std::os::unix::net::UnixStream,
    listeners: &[(&'static str, OwnedFd)],
    release: &ReleaseFn,
    rt: &tokio::runtime::Handle,
) -> Result<bool, Error> {
    stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(STEP_TIMEOUT)))
        .map_err(|e| io_err("socket", e))?;
    let peer = rustix::net::sockopt::socket_peercred(&stream).map_err(|e| io_err("peer", e))?;
    if peer.uid != rustix::process::getuid() {
        return Err(setup(format!(
            "upgrade: refused a peer of another user (uid {})",
            peer.uid.as_raw()
        )));
    }
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| io_err("read", e))?;
    if line.trim() != "LISTENERS" {
        return Err(setup(format!("upgrade: unexpected {:?}", line.trim())));
    }
    let names: Vec<&str> = listeners.iter().map(|(n, _)| *n).collect();
    let fds: Vec<_> = listeners.iter().map(|(_, fd)| fd.as_fd()).collect();
    send_fds(&stream, &format!("{}\n", names.join(" ")), &fds)?;
    tracing::info!(
        pid = peer.pid.as_raw_nonzero().get(),
        ?names,
        "upgrade: listening sockets sent to the new node"
    );
    line.clear();
    reader
        .read_line(&mut line)
        .map_err(|e| io_err("wait for the new node", e))?;
    if line.trim() != "RELEASE" {
        // The new node gave up (its config, a certificate): this one serves on.
        tracing::warn!("upgrade: the new node gave up before taking over; serving on");
        return Ok(false);
    }
    let report = rt.block_on(release());
    (&stream)
        .write_all(format!("RELEASED {report}\n").as_bytes())
        .map_err(|e| io_err("answer", e))?;
    tracing::info!(report, "upgrade: released to the new node; draining");
    Ok(true)
}

fn send_fds(
    stream: &UnixStream,
    payload: &str,
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> Result<(), Error> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if fds.len() > MAX_FDS || !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(setup("upgrade: too many sockets to send"));
    }
    rustix::net::sendmsg(
        stream,
        &[IoSlice::new(payload.as_bytes())],
        &mut control,
        SendFlags::empty(),
    )
    .map_err(|e| io_err("send the listeners", e))?;
    Ok(())
}

fn recv_fds(stream: &UnixStream) -> Result<(String, Vec<OwnedFd>), Error> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut buf = [0u8; 256];
    let got = rustix::net::recvmsg(
        stream,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| io_err("receive the listeners", e))?;
    let mut fds = Vec::new();
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = msg {
            fds.extend(received);
        }
    }
    let text = String::from_utf8_lossy(&buf[..got.bytes.min(buf.len())]).into_owned();
    Ok((text, fds))
}
