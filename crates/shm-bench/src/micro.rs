//! In-process micro-benchmarks of uncontended paths (and, at the end, the
//! cross-process hand-off latency of each shm-sync primitive, see
//! [`crate::handoff`]), harness-free: each
//! body runs in a loop of `iters` iterations, seven times after a warm-up,
//! and the median and the best time per iteration are reported.
//! `std::hint::black_box` keeps the compiler from removing the work.

use std::hint::black_box;
use std::io;
use std::time::Instant;

use serde_json::{Value, json};
use shm_core::{SegmentId, Shared, SharedOptions};
use shm_queue::{Queue, QueueOptions};

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

    let pm = parking_lot::Mutex::new(0u64);
    out.push(bench("parking_lot::Mutex lock+unlock", iters, || {
        let mut g = pm.lock();
        *g = black_box(*g + 1);
    }));

    let shared =
        Shared::<shm_sync::Mutex<u64>>::create_anonymous(&SharedOptions::new(), |m| Ok(m.init(0)?))
            .map_err(io::Error::other)?;
    let mx = shared.get();
    let mut failed = false;
    out.push(bench(
        "shm_sync::Mutex lock+unlock (robust, process-shared)",
        iters,
        || match mx.lock() {
            Ok(mut g) => *g = black_box(*g + 1),
            Err(_) => failed = true,
        },
    ));
    if failed {
        return Err(io::Error::other("shm_sync::Mutex::lock failed"));
    }

    let shared = Shared::<shm_sync::Semaphore>::create_anonymous(&SharedOptions::new(), |s| {
        s.init(0);
        Ok(())
    })
    .map_err(io::Error::other)?;
    let sem = shared.get();
    out.push(bench("shm_sync::Semaphore post+wait", iters, || {
        if sem.post().is_err() {
            failed = true;
        }
        sem.wait();
    }));
    if failed {
        return Err(io::Error::other("shm_sync::Semaphore::post failed"));
    }

    let (tx, rx) = crossbeam_channel::bounded::<[u8; 64]>(1024);
    out.push(bench(
        "crossbeam-channel try_send+try_recv 64 B",
        iters,
        || {
            let _ = tx.try_send(black_box([7u8; 64]));
            let _ = black_box(rx.try_recv());
        },
    ));

    let id = SegmentId::posix(&format!("/shmrs-bench-{}-micro-queue", std::process::id()))
        .map_err(io::Error::other)?;
    let queue = Queue::create(&id, &QueueOptions::new().capacity(1024).slot_size(64))
        .map_err(io::Error::other)?;
    let result = queue_micro(&queue, iters, &mut out);
    // The creating handle would remove the segment on drop; do it now.
    let _ = queue.remove();
    result?;
    // Between two processes: what each primitive costs to pass a turn.
    out.extend(crate::handoff::run(quick)?);
    Ok(out)
}

/// The queue's uncontended paths: one registered producer and consumer in
/// this process, the queue never full nor empty when it matters.
fn queue_micro(queue: &Queue, iters: u64, out: &mut Vec<Micro>) -> io::Result<()> {
    let tx = queue.sender().map_err(io::Error::other)?;
    let rx = queue.receiver().map_err(io::Error::other)?;
    let msg = [7u8; 64];
    let mut errors = 0u64;
    out.push(bench("shm-queue try_send+try_recv 64 B", iters, || {
        if tx.try_send(black_box(&msg)).is_err() {
            errors += 1;
        }
        match rx.try_recv() {
            Ok(v) => {
                black_box(v);
            }
            Err(_) => errors += 1,
        }
    }));
    let mut buf = vec![0u8; queue.slot_size()];
    out.push(bench("shm-queue send+recv_into 64 B", iters, || {
        if tx.send(black_box(&msg)).is_err() {
            errors += 1;
        }
        if rx.recv_into(&mut buf).is_err() {
            errors += 1;
        }
    }));
    out.push(bench(
        "shm-queue send_with+recv_with 64 B (zero-copy)",
        iters,
        || {
            if tx.send_with(64, |b| b.fill(7)).is_err() {
                errors += 1;
            }
            if rx.recv_with(|m| black_box(m[0])).is_err() {
                errors += 1;
            }
        },
    ));
    if errors > 0 {
        return Err(io::Error::other(format!(
            "{errors} queue operations failed"
        )));
    }
    Ok(())
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
