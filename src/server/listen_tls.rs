//! The TLS listener: accept, the handshake within
//! `server.tls_handshake_timeout`, then HTTP/2 on hyper or HTTP/1.1 on the
//! own path ([`super::h1`], handing to hyper what it does not take), as ALPN
//! chose, into the same pipeline as cleartext with the scheme `https`.
//! Failed handshakes are counted by reason and logged at debug; graceful
//! drain as on the cleartext listener.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;

use crate::metrics::{Counters, TlsFailure};

/// Why a handshake failed, from the error tokio-rustls returned.
fn classify(e: &std::io::Error) -> Option<TlsFailure> {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return Some(TlsFailure::Other);
    };
    match tls {
        rustls::Error::PeerIncompatible(_) => Some(TlsFailure::NoSharedCipher),
        rustls::Error::InvalidMessage(_)
        | rustls::Error::DecryptError
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => Some(TlsFailure::BadRecord),
        // The certificate resolver counted it already.
        rustls::Error::General(m) if m.contains("no server certificate") => None,
        _ => Some(TlsFailure::Other),
    }
}

/// Accepts TLS connections until cancelled, then drains; returns whether
/// every connection finished within `drain`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve_tls<F, Fut, B>(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    builder: Builder<TokioExecutor>,
    stop: super::stop::Stop,
    drain: Duration,
    handshake_timeout: Duration,
    setup: super::conn::ConnSetup,
    handler: F,
    fast: Option<super::listen::Fast>,
) -> bool
where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let fast = fast.map(Arc::new);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let tracker = tokio_util::task::TaskTracker::new();
    let builder = Arc::new(builder);
    let mut backoff = super::fds::Backoff::default();
    while let Some((mut stream, peer)) =
        super::listen::accept(&listener, stop.token(), &mut backoff).await
    {
        let setup = setup.clone();
        let acceptor = acceptor.clone();
        let h = handler.clone();
        let builder = builder.clone();
        let stop = stop.clone();
        let fast = fast.clone();
        tracker.spawn(async move {
            let Some((peer, _guard)) = super::conn::open_conn(&mut stream, peer, &setup).await else {
                return;
            };
            // In a block: the handshake's result and the stream it was borrowed
            // from to read the ALPN protocol would otherwise keep their places
            // (a TLS stream's size each) in the task's state for the
            // connection's life (a local once borrowed is kept until its scope
            // ends).
            let (tls, h2) = {
                let handshake = tokio::select! {
                    _ = stop.token().cancelled() => return,
                    r = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)) => r,
                };
                let tls = match handshake {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        if let Some(why) = classify(&e) {
                            Counters::global().tls_failed(why);
                            tracing::debug!(%peer, error = %e, reason = why.as_str(), "TLS handshake failed");
                        }
                        return;
                    }
                    Err(_) => {
                        Counters::global().tls_failed(TlsFailure::Timeout);
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                Counters::global().tls_handshake();
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                (tls, h2)
            };
            let (token, limits) = (stop.token().clone(), setup.abuse);
            let with_hyper =
                move |io| super::hyper_conn::serve_hyper(io, h, peer, &builder, token, limits);
            match fast.as_deref() {
                Some(super::listen::Fast {
                    h2: Some((s, h2h)),
                    ..
                }) if h2 => {
                    // Boxed: inline, an HTTP/2 connection's state would take room
                    // in every HTTP/1.1 connection's task too.
                    Box::pin(super::h2::serve(tls, h2h.clone(), peer, *s, stop.token().clone(), setup.abuse))
                        .await;
                }
                Some(f) if !h2 => {
                    // The pipeline's own future, as on the cleartext listener.
                    let handler = move |req| {
                        let info = crate::proxy::ConnInfo {
                            peer,
                            scheme: f.scheme,
                            // `h1::serve` writes its responses.
                            wire_heads: true,
                        };
                        f.proxy.handle(req, info)
                    };
                    super::h1::serve(tls, &f.settings, &stop, handler, with_hyper).await;
                }
                // Boxed, as on the cleartext listener.
                _ => Box::pin(with_hyper(super::rewind::Rewind::new(bytes::Bytes::new(), tls))).await,
            }
        });
    }
    drop(listener);
    super::listen::drain_all(tracker, drain).await
}
