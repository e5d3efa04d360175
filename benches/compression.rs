//! What each compression level costs and gives on a web page, as Outpost runs the codings
//! (`outpost::compress::stream::encode`, the windows it sets): bytes out and time per
//! compression of the page, for gzip 1–9, Brotli 0–11 and zstd 1–19. The defaults
//! (gzip 6, Brotli 6, zstd 9) are read off this table: an object is compressed once and
//! served many times, so a level is worth its time until the size stops falling.
//!
//! `OUTPOST_PAGE=path cargo bench --bench compression` uses that page (compression.sh
//! builds a 100 KiB HTML one); without it, a generated page of the same size.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::BodyExt;
use outpost::compress::Encoding;
use outpost::compress::stream::{Body, encode};

fn page() -> Bytes {
    if let Ok(p) = std::env::var("OUTPOST_PAGE") {
        return Bytes::from(std::fs::read(p).expect("OUTPOST_PAGE"));
    }
    let mut v = Vec::new();
    let mut i = 0u64;
    while v.len() < 102_400 {
        v.extend_from_slice(
            format!(
                "<section id=\"s{i}\" class=\"para\"><p>Paragraph {i}: the licensee may copy, \
                 modify and distribute copies of the {} under the terms of section {}.</p></section>\n",
                ["Program", "Work", "Library", "Software"][(i % 4) as usize],
                i * 7919 % 97
            )
            .as_bytes(),
        );
        i += 1;
    }
    v.truncate(102_400);
    Bytes::from(v)
}

fn body(data: &Bytes) -> Body {
    http_body_util::Full::new(data.clone())
        .map_err(|never| match never {})
        .boxed_unsync()
}

async fn size(data: &Bytes, e: Encoding, level: u32) -> usize {
    encode(body(data), e, level, None)
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .len()
}

fn levels(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let data = page();
    let mut g = c.benchmark_group("compress");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    for (e, range) in [
        (Encoding::Gzip, 1..=9),
        (Encoding::Br, 0..=11),
        (Encoding::Zstd, 1..=19),
    ] {
        for level in range {
            let out = rt.block_on(size(&data, e, level));
            eprintln!(
                "{} {level}: {} -> {out} bytes ({:.1} %)",
                e.as_str(),
                data.len(),
                out as f64 * 100.0 / data.len() as f64
            );
            g.bench_with_input(BenchmarkId::new(e.as_str(), level), &level, |b, &l| {
                b.iter(|| rt.block_on(size(&data, e, l)));
            });
        }
    }
    g.finish();
}

criterion_group!(benches, levels);
criterion_main!(benches);
