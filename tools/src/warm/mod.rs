//! `outpostctl warm`: fetch every URL of a list or sitemap through a node so
//! the objects enter its cache the normal way.
//!
//! Shape of a run: open the source (fails early on a missing file or a
//! broken sitemap), check the node accepts TCP connections (exit 2 if not),
//! then one producer task feeds a bounded channel and `--concurrency` worker
//! tasks take URLs from it, each sending one GET at a time to the node
//! (pooled keep-alive connections) and reading the body to the end. An
//! optional pacer spaces request starts to `--rate`. Counters live in a
//! [`tally::Tally`]; the summary goes to stdout at the end.
//!
//! Ctrl-C: stop taking URLs, give requests in flight [`GRACE`] to finish
//! (a second Ctrl-C skips the wait), abandon the rest, print the partial
//! summary and exit 130.

mod progress;
mod source;
mod tally;

use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bytes::Bytes;
use http::header::{HOST, HeaderValue, USER_AGENT};
use http::{HeaderName, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinSet;

use crate::cache_status;
use crate::cli::WarmArgs;
use crate::http::{BaseUrl, Target, classify_body_error, classify_error};
use progress::{Progress, Total};
use source::{Item, Source};
use tally::{Recorded, Tally, classify};

/// How long requests in flight may finish after Ctrl-C.
pub const GRACE: Duration = Duration::from_secs(2);

/// Everything a worker needs.
struct Ctx {
    client: Client<HttpConnector, Empty<Bytes>>,
    node: BaseUrl,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    cache_name: String,
    tally: Arc<Tally>,
    pacer: Option<Pacer>,
}

/// Spaces request starts evenly at a fixed rate, across all workers.
struct Pacer {
    interval: Duration,
    next: StdMutex<tokio::time::Instant>,
}

impl Pacer {
    fn new(rate: f64) -> Self {
        Self {
            interval: Duration::from_secs_f64(1.0 / rate),
            next: StdMutex::new(tokio::time::Instant::now()),
        }
    }

    async fn wait(&self) {
        let slot = match self.next.lock() {
            Ok(mut next) => {
                let slot = (*next).max(tokio::time::Instant::now());
                *next = slot + self.interval;
                slot
            }
            Err(_) => return,
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// Runs `warm`; returns the exit code.
pub async fn run(args: WarmArgs) -> Result<u8> {
    let node = BaseUrl::parse(&args.node)?;
    if !node.prefix.is_empty() {
        bail!(
            "--node {}: give the proxy listener's address only, without a path",
            args.node
        );
    }
    let concurrency = args.concurrency as usize;
    let client = crate::http::client::<Empty<Bytes>>(concurrency);
    let source = match (&args.urls, &args.sitemap) {
        (Some(path), _) => Source::url_file(path).await?,
        (None, Some(sitemap)) => Source::sitemap(sitemap, &client, args.timeout).await?,
        (None, None) => bail!("give --urls FILE or --sitemap FILE_OR_URL"),
    };
    node.check_reachable().await?;

    let tally = Arc::new(Tally::default());
    let total = Arc::new(Total::default());
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        node,
        headers: args.headers,
        timeout: args.timeout,
        cache_name: args.cache_name,
        tally: tally.clone(),
        pacer: args.rate.map(Pacer::new),
    });

    let started = Instant::now();
    let progress = Progress::start(tally.clone(), total.clone(), args.progress_interval);
    let (tx, rx) = mpsc::channel::<Item>(concurrency * 2);
    let (stop_tx, stop_rx) = watch::channel(false);
    let producer = tokio::spawn(source.produce(tx, total, client, args.timeout));
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        workers.spawn(worker(ctx.clone(), rx.clone(), stop_rx.clone()));
    }

    let interrupted = tokio::select! {
        () = drain(&mut workers) => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    if interrupted {
        let _ = stop_tx.send(true);
        producer.abort();
        eprintln!(
            "\noutpostctl: interrupted; waiting up to {}s for requests in flight (Ctrl-C again to stop now)",
            GRACE.as_secs()
        );
        tokio::select! {
            _ = tokio::time::timeout(GRACE, drain(&mut workers)) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        workers.shutdown().await;
    }
    let elapsed = started.elapsed();
    progress.finish();

    let snap = tally.snapshot();
    let abandoned = snap.started.saturating_sub(snap.done());
    let mut stdout = std::io::stdout().lock();
    tally.write_summary(&mut stdout, elapsed, interrupted, abandoned)?;
    if interrupted {
        return Ok(crate::EXIT_INTERRUPTED);
    }
    let produced = match producer.await {
        Ok(result) => result,
        Err(e) => Err(anyhow::anyhow!("URL producer failed: {e}")),
    };
    if let Err(e) = produced {
        eprintln!("outpostctl: {e:#}");
        return Ok(1);
    }
    Ok(if snap.failed > 0 { 1 } else { 0 })
}

/// Waits for every task of the set to end.
async fn drain(workers: &mut JoinSet<()>) {
    while workers.join_next().await.is_some() {}
}

/// Takes items until the channel closes or the run is stopped.
async fn worker(
    ctx: Arc<Ctx>,
    rx: Arc<Mutex<mpsc::Receiver<Item>>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let item = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            item = async { rx.lock().await.recv().await } => item,
        };
        let url = match item {
            None => return,
            Some(Item::Bad(reason)) => {
                ctx.tally.record(Recorded::Failed(reason));
                continue;
            }
            Some(Item::Url(url)) => url,
        };
        if let Some(pacer) = &ctx.pacer {
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return,
                () = pacer.wait() => {}
            }
        }
        let result = fetch(&ctx, &url).await;
        ctx.tally.record(result);
    }
}

/// Fetches one URL through the node and classifies the outcome.
async fn fetch(ctx: &Ctx, url: &str) -> Recorded {
    let Ok(target) = Target::parse(url) else {
        return Recorded::Failed("invalid url".to_string());
    };
    let Ok(host) = HeaderValue::from_str(&target.host) else {
        return Recorded::Failed("invalid url".to_string());
    };
    let Ok(uri) = ctx.node.join(&target.path_and_query) else {
        return Recorded::Failed("invalid url".to_string());
    };
    let mut request = Request::get(uri);
    if let Some(headers) = request.headers_mut() {
        for (name, value) in &ctx.headers {
            headers.append(name.clone(), value.clone());
        }
        headers.insert(HOST, host);
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, HeaderValue::from_static(crate::USER_AGENT));
        }
    }
    let Ok(request) = request.body(Empty::new()) else {
        return Recorded::Failed("invalid url".to_string());
    };
    ctx.tally
        .started
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let exchange = async {
        let response = match ctx.client.request(request).await {
            Ok(r) => r,
            Err(e) => return Recorded::Failed(classify_error(&e)),
        };
        let status = response.status();
        ctx.tally.status(status);
        let found = cache_status::find(
            response
                .headers()
                .get_all(cache_status::HEADER)
                .iter()
                .filter_map(|v| v.to_str().ok()),
            &ctx.cache_name,
        );
        let recorded = classify(status, found.as_ref());
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Some(data) = frame.data_ref() {
                        ctx.tally
                            .bytes
                            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Err(e) => return Recorded::Failed(classify_body_error(&e)),
            }
        }
        recorded
    };
    match tokio::time::timeout(ctx.timeout, exchange).await {
        Ok(recorded) => recorded,
        Err(_) => Recorded::Failed("timeout".to_string()),
    }
}
