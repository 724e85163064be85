//! In-process micro-benchmarks of uncontended paths, harness-free: each
//! body runs in a loop of `iters` iterations, seven times after a warm-up,
//! and the median and the best time per iteration are reported.
//! `std::hint::black_box` keeps the compiler from removing the work.

use std::hint::black_box;
use std::io;
use std::time::Instant;

use serde_json::{Value, json};

/// One micro-benchmark's result.
#[derive(Debug, Clone)]
pub struct Micro {
    /// What was timed.
    pub name: String,
    /// Median over the samples, ns per iteration.
    pub median_ns: f64,
    /// Best sample, ns per iteration.
    pub min_ns: f64,
}

fn bench(name: &str, iters: u64, mut body: impl FnMut()) -> Micro {
    for _ in 0..iters / 10 + 1 {
        body();
    }
    let mut samples: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                body();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    Micro {
        name: name.into(),
        median_ns: samples[samples.len() / 2],
        min_ns: samples[0],
    }
}

/// Runs every micro-benchmark; `quick` uses fewer iterations.
pub fn run(quick: bool) -> io::Result<Vec<Micro>> {
    let iters = if quick { 20_000 } else { 1_000_000 };
    let mut out = Vec::new();

    let m = std::sync::Mutex::new(0u64);
    out.push(bench("std::sync::Mutex lock+unlock", iters, || {
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        *g = black_box(*g + 1);
    }));

    let (tx, rx) = crossbeam_channel::bounded::<[u8; 64]>(1024);
    out.push(bench(
        "crossbeam-channel try_send+try_recv 64 B",
        iters,
        || {
            let _ = tx.try_send(black_box([7u8; 64]));
            let _ = black_box(rx.try_recv());
        },
    ));

    Ok(out)
}

/// As a markdown table.
pub fn markdown(results: &[Micro]) -> String {
    let mut s = String::from(
        "| micro-benchmark (one process, uncontended) | median ns/op | best ns/op |\n|---|---:|---:|\n",
    );
    for r in results {
        s.push_str(&format!(
            "| {} | {} | {} |\n",
            r.name,
            crate::report::sig(r.median_ns),
            crate::report::sig(r.min_ns)
        ));
    }
    s
}

/// As JSON.
pub fn json(results: &[Micro]) -> Value {
    Value::Array(
        results
            .iter()
            .map(|r| json!({ "name": r.name, "median_ns": r.median_ns, "min_ns": r.min_ns }))
            .collect(),
    )
}
