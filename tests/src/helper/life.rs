//! Subcommands for a queue's name lifetime and its async interface:
//! processes that join with `open_or_create`, and tokio consumers and
//! producers.

use std::io::Write;
use std::time::{Duration, Instant};

use shm_queue::{Queue, QueueOptions, RecvError, RecvTimeoutError, SegmentId, SendError};

use super::queue::{MIN_MSG, decode, encode};

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn fail(msg: &str) -> i32 {
    eprintln!("error: {msg}");
    1
}

fn id(name: &str) -> Result<SegmentId, String> {
    name.parse::<SegmentId>().map_err(|e| e.to_string())
}

fn number(args: &[String], i: usize, what: &str) -> Result<u64, String> {
    args.get(i)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("argument {i} ({what}) missing or invalid"))
}

/// `open_or_create` with the default options (the default lifetime).
fn join(name: &str) -> Result<Queue, String> {
    let (q, created) =
        Queue::open_or_create(&id(name)?, &QueueOptions::new().capacity(16).slot_size(64))
            .map_err(|e| format!("open_or_create {name}: {e}"))?;
    say(&format!("created {created}"));
    Ok(q)
}

/// Waits until at least `n` handles are attached (30 s at most).
fn wait_attached(q: &Queue, n: u64) -> Result<(), String> {
    let start = Instant::now();
    while q.stats().attached < n {
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("fewer than {n} handles attached after 30 s"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// `life-send NAME MSG [wait-peers=N]`: joins, sends MSG, prints "sent";
/// with `wait-peers=N`, stays until N handles are attached; then leaves.
fn life_send(args: &[String]) -> Result<i32, String> {
    let name = args.first().ok_or("NAME missing")?;
    let msg = args.get(1).ok_or("MSG missing")?;
    let q = join(name)?;
    let tx = q.sender().map_err(|e| e.to_string())?;
    tx.send(msg.as_bytes()).map_err(|e| e.to_string())?;
    say("sent");
    if let Some(n) = args[2..]
        .iter()
        .find_map(|a| a.strip_prefix("wait-peers=")?.parse().ok())
    {
        wait_attached(&q, n)?;
    }
    say("leaving");
    Ok(0)
}

/// `life-recv NAME COUNT`: joins, prints "registered", receives COUNT
/// messages (30 s deadline each), printing "got MSG" for each; leaves.
fn life_recv(args: &[String]) -> Result<i32, String> {
    let name = args.first().ok_or("NAME missing")?;
    let count = number(args, 1, "count")?;
    let q = join(name)?;
    let rx = q.receiver().map_err(|e| e.to_string())?;
    say("registered");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = 0;
    while got < count {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(m) => {
                got += 1;
                say(&format!("got {}", String::from_utf8_lossy(&m)));
            }
            // Between producers: the next one may still come.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(0)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

/// `async-consume NAME [count=N] [cancel-us=N]`: a tokio consumer. Prints
/// "registered", receives with `recv_async` until every producer is gone
/// (with `count=N`: until N messages arrived, waiting out gaps between
/// producers),
/// checking each message (`queue-produce` encoding, in order per
/// producer), then prints "got COUNT torn T disorder D cancelled C".
/// With `cancel-us=N`, every receive races a timer of N µs and the losing
/// receive future is dropped (counted in C): cancelling must lose nothing.
fn async_consume(args: &[String]) -> Result<i32, String> {
    let q = Queue::open(&id(args.first().ok_or("NAME missing")?)?).map_err(|e| e.to_string())?;
    let cancel = args[1..]
        .iter()
        .find_map(|a| a.strip_prefix("cancel-us=")?.parse::<u64>().ok())
        .map(Duration::from_micros);
    let count = args[1..]
        .iter()
        .find_map(|a| a.strip_prefix("count=")?.parse::<u64>().ok());
    let mut rx = q.receiver().map_err(|e| e.to_string())?;
    say("registered");
    let rt = runtime()?;
    rt.block_on(async move {
        let (mut got, mut torn, mut disorder, mut cancelled) = (0u64, 0u64, 0u64, 0u64);
        let mut last: std::collections::BTreeMap<u32, u64> = Default::default();
        loop {
            let r = match cancel {
                Some(d) => match tokio::time::timeout(d, rx.recv_async()).await {
                    Ok(r) => r,
                    Err(_) => {
                        cancelled += 1;
                        continue;
                    }
                },
                None => rx.recv_async().await,
            };
            match r {
                Ok(m) => match decode(&m) {
                    Some((p, seq)) => {
                        got += 1;
                        if last.insert(p, seq).is_some_and(|l| seq <= l) {
                            disorder += 1;
                        }
                    }
                    None => torn += 1,
                },
                Err(RecvError::Disconnected) if count.is_some_and(|n| got < n) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(RecvError::Disconnected) => break,
                Err(e) => return Err(format!("recv_async: {e}")),
            }
            if count.is_some_and(|n| got >= n) {
                break;
            }
        }
        say(&format!(
            "got {got} torn {torn} disorder {disorder} cancelled {cancelled}"
        ));
        Ok(0)
    })
}

/// `async-produce NAME COUNT`: a tokio producer of COUNT checked messages
/// (`queue-produce` encoding, producer 0) with `send_async`; prints
/// "registered", then "done".
fn async_produce(args: &[String]) -> Result<i32, String> {
    let q = Queue::open(&id(args.first().ok_or("NAME missing")?)?).map_err(|e| e.to_string())?;
    let count = number(args, 1, "count")?;
    let mut tx = q.sender().map_err(|e| e.to_string())?;
    say("registered");
    let rt = runtime()?;
    rt.block_on(async move {
        let mut buf = vec![0u8; MIN_MSG];
        for seq in 0..count {
            encode(&mut buf, 0, seq);
            match tx.send_async(&buf).await {
                Ok(()) => {}
                Err(SendError::Disconnected) => return Err(format!("disconnected at {seq}")),
                Err(e) => return Err(format!("send_async {seq}: {e}")),
            }
        }
        say("done");
        Ok(0)
    })
}

/// Runs a `life-*` or `async-*` subcommand.
pub fn run(cmd: &str, args: &[String]) -> Option<i32> {
    let r = match cmd {
        "life-send" => life_send(args),
        "life-recv" => life_recv(args),
        "async-consume" => async_consume(args),
        "async-produce" => async_produce(args),
        _ => return None,
    };
    Some(r.unwrap_or_else(|e| fail(&e)))
}
