//! The parent side of one run: create the channels, start the children
//! (re-executing this binary), release them together, collect and check
//! what they report, and clean up whatever happens.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::BorrowedFd;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::child::{self, channels, participants};
use crate::plan::{Case, applicable};
use crate::sys::fd::set_cloexec;
use crate::transport::{Chan, CreateError, End};

/// What one run produced.
#[derive(Debug)]
pub enum Outcome {
    /// It ran and every transfer checked out.
    Ran {
        /// Each participant's output, in participant order.
        outputs: Vec<Value>,
        /// Facts about the channel (such as the depth an mq really got).
        notes: Value,
    },
    /// It does not apply, and why.
    NotApplicable(String),
}

/// The children of one run; killed and reaped on drop, whatever happened.
struct Kids {
    kids: Vec<(Child, Option<ChildStdin>, String)>,
    events: mpsc::Receiver<(usize, Option<String>)>,
    sink: mpsc::Sender<(usize, Option<String>)>,
}

impl Kids {
    fn new() -> Kids {
        let (sink, events) = mpsc::channel();
        Kids {
            kids: Vec::new(),
            events,
            sink,
        }
    }

    fn spawn(
        &mut self,
        label: String,
        spec: &Value,
        inherit: &[BorrowedFd<'_>],
    ) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        for fd in inherit {
            set_cloexec(*fd, false).map_err(|e| format!("fcntl: {e}"))?;
        }
        let spawned = Command::new(exe)
            .arg("child")
            .arg(spec.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        // Only this child may inherit them: set the flag again at once.
        for fd in inherit {
            set_cloexec(*fd, true).map_err(|e| format!("fcntl: {e}"))?;
        }
        let mut child = spawned.map_err(|e| format!("spawning {label}: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let idx = self.kids.len();
        let sink = self.sink.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if sink.send((idx, Some(l))).is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = sink.send((idx, None));
        });
        self.kids.push((child, stdin, label));
        Ok(())
    }

    /// The exit status of child `idx`, as text, waiting up to `deadline`.
    fn status(&mut self, idx: usize, deadline: Instant) -> String {
        let (child, _, label) = &mut self.kids[idx];
        loop {
            match child.try_wait() {
                Ok(Some(st)) => return format!("{label} exited: {st}"),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => return format!("{label} still running"),
                Err(e) => return format!("{label}: wait: {e}"),
            }
        }
    }

    /// Waits for one line from every child; a child that ends first fails
    /// the run with its exit status.
    fn one_line_each(&mut self, deadline: Instant, what: &str) -> Result<Vec<String>, String> {
        let mut lines: Vec<Option<String>> = vec![None; self.kids.len()];
        while lines.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok((idx, Some(line))) => {
                    if lines[idx].is_some() {
                        return Err(format!("{}: unexpected output {line:?}", self.kids[idx].2));
                    }
                    lines[idx] = Some(line);
                }
                Ok((idx, None)) if lines[idx].is_some() => {}
                Ok((idx, None)) => {
                    let st = self.status(idx, Instant::now() + Duration::from_secs(2));
                    return Err(format!("before {what}: {st}"));
                }
                Err(_) => {
                    let waiting: Vec<&str> = lines
                        .iter()
                        .zip(&self.kids)
                        .filter(|(l, _)| l.is_none())
                        .map(|(_, k)| k.2.as_str())
                        .collect();
                    return Err(format!(
                        "watchdog: no {what} from {} in time",
                        waiting.join(", ")
                    ));
                }
            }
        }
        Ok(lines.into_iter().flatten().collect())
    }

    fn go(&mut self) -> Result<(), String> {
        for (_, stdin, label) in &mut self.kids {
            let mut s = stdin.take().ok_or("stdin already closed")?;
            s.write_all(b"go\n")
                .and_then(|()| s.flush())
                .map_err(|e| format!("{label}: go: {e}"))?;
        }
        Ok(())
    }

    fn reap(&mut self, deadline: Instant) -> Result<(), String> {
        for idx in 0..self.kids.len() {
            let st = self.status(idx, deadline);
            if !st.ends_with("exit status: 0") {
                return Err(st);
            }
        }
        Ok(())
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        for (child, stdin, _) in &mut self.kids {
            drop(stdin.take());
            // Errors mean it is gone already, which is the goal.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The channel names of one run: `/shmrs-bench-<pid>-<run>-<channel>`.
fn chan_name(run: u64, i: usize) -> String {
    format!("/shmrs-bench-{}-{run}-{i}", std::process::id())
}

/// Runs `case` once. `run` numbers the run (for unique names), `cpus` are
/// the two CPUs to pin to (empty: no pinning), `timeout` the watchdog.
pub fn run_case(
    case: &Case,
    run: u64,
    cpus: &[usize],
    timeout: Duration,
) -> Result<Outcome, String> {
    if let Err(why) = applicable(case.contender, case.measure) {
        return Ok(Outcome::NotApplicable(why));
    }
    let deadline = Instant::now() + timeout;
    let mut chans = Vec::new();
    let mut names = Vec::new();
    for i in 0..channels(case) {
        let name = chan_name(run, i);
        match Chan::create(case.contender, &name, case.spec()) {
            Ok(c) => chans.push(c),
            Err(CreateError::Unsupported(why)) => return Ok(Outcome::NotApplicable(why)),
            Err(CreateError::Io(e)) => return Err(format!("creating {name}: {e}")),
        }
        names.push(name);
    }
    let mut notes = match chans.first() {
        Some(Chan::Mq(m)) => json!({ "capacity": m.capacity }),
        _ => json!({ "capacity": case.capacity }),
    };
    let mut kids = Kids::new();
    if case.contender.in_process() {
        kids.spawn("threads".into(), &child::threads_spec(case, cpus), &[])?;
    } else {
        let parts = participants(case);
        for (i, part) in parts.iter().enumerate() {
            let mut inherit = Vec::new();
            let mut end = |ch: Option<usize>, which: End| match ch {
                None => Value::Null,
                Some(c) => {
                    let (arg, fd) = chans[c].endpoint(which, &names[c]);
                    inherit.extend(fd);
                    arg
                }
            };
            let tx = end(part.tx, End::Send);
            let rx = end(part.rx, End::Recv);
            let cpu = cpus.get(part.cpu_slot).copied();
            let own_cpu = child::alone_on_cpu(&parts, i, cpus);
            let spec = child::spec(case, part, cpu, own_cpu, tx, rx);
            kids.spawn(
                format!("{} #{i}", spec["role"].as_str().unwrap_or("?")),
                &spec,
                &inherit,
            )?;
        }
    }
    // The parent's copies of the descriptors must go, or a reader would
    // never see the writers leave.
    let ready = kids.one_line_each(deadline, "ready");
    for c in &chans {
        c.unlink_early();
    }
    for (i, line) in ready?.iter().enumerate() {
        if line != "ready" {
            return Err(format!("{}: expected ready, got {line:?}", kids.kids[i].2));
        }
    }
    // Keep the queues (to read their counters at the end) and iceoryx2's
    // services (to clean up after a child that died), close the rest.
    chans.retain(Chan::keep_until_end);
    kids.go()?;
    let lines = kids.one_line_each(deadline, "result")?;
    kids.reap(deadline)?;
    if let Some(Chan::Queue(q)) = chans.first() {
        let s = q.stats();
        notes["queue_stats"] = json!({
            "sent": s.sent,
            "received": s.received,
            "blocked_sends": s.blocked_sends,
            "blocked_recvs": s.blocked_recvs,
            "recovered": s.recovered,
            "abandoned": s.abandoned,
        });
    }
    let mut outputs = Vec::new();
    for line in lines {
        let v: Value =
            serde_json::from_str(&line).map_err(|e| format!("bad result {line:?}: {e}"))?;
        match v.get("outputs").and_then(Value::as_array) {
            Some(a) => outputs.extend(a.iter().cloned()),
            None => return Err(format!("result without outputs: {line}")),
        }
    }
    check_transfers(&outputs)?;
    drop(chans);
    Ok(Outcome::Ran { outputs, notes })
}

/// Every producer's messages arrived exactly once: per producer, the
/// consumers' counts add up to what it sent and their checksums add up to
/// its checksum; no consumer got anything from a producer that did not
/// send.
pub fn check_transfers(outputs: &[Value]) -> Result<(), String> {
    let mut sent: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut got: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for o in outputs {
        for s in o["sent"].as_array().into_iter().flatten() {
            let (id, n, sum) = (s[0].as_u64(), s[1].as_u64(), s[2].as_u64());
            let (Some(id), Some(n), Some(sum)) = (id, n, sum) else {
                return Err(format!("bad sent record {s}"));
            };
            let e = sent.entry(id).or_default();
            e.0 += n;
            e.1 = e.1.wrapping_add(sum);
        }
        for (id, r) in o["received"].as_array().into_iter().flatten().enumerate() {
            let (Some(n), Some(sum)) = (r[0].as_u64(), r[1].as_u64()) else {
                return Err(format!("bad received record {r}"));
            };
            let e = got.entry(id as u64).or_default();
            e.0 += n;
            e.1 = e.1.wrapping_add(sum);
        }
    }
    for (id, &(n, sum)) in &got {
        if n == 0 {
            continue;
        }
        match sent.get(id) {
            None => {
                return Err(format!(
                    "received {n} messages from producer {id}, which sent none"
                ));
            }
            Some(&(sn, ssum)) if sn != n || ssum != sum => {
                return Err(format!(
                    "producer {id}: sent {sn} (checksum {ssum:#x}), received {n} (checksum {sum:#x})"
                ));
            }
            Some(_) => {}
        }
    }
    for (id, &(n, _)) in &sent {
        if n > 0 && got.get(id).is_none_or(|g| g.0 == 0) {
            return Err(format!("producer {id} sent {n} messages, none arrived"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_must_add_up_across_consumers() {
        let producer = json!({ "sent": [[0, 10, 1000]] });
        let a = json!({ "received": [[4, 400]] });
        let b = json!({ "received": [[6, 600]] });
        assert!(check_transfers(&[producer.clone(), a.clone(), b]).is_ok());
        // One message missing.
        let short = json!({ "received": [[5, 500]] });
        assert!(check_transfers(&[producer.clone(), a.clone(), short]).is_err());
        // Right count, wrong checksum (a duplicate in place of a loss).
        let dup = json!({ "received": [[6, 601]] });
        assert!(check_transfers(&[producer.clone(), a, dup]).is_err());
        // Nothing arrived.
        assert!(check_transfers(&[producer]).is_err());
        // From a producer that never sent.
        assert!(check_transfers(&[json!({ "received": [[0, 0], [1, 5]] })]).is_err());
    }
}
