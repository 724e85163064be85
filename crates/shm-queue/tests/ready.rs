//! The readiness descriptor and the tokio futures, within one process
//! (the multi-process tests are in the `tests` package).
#![cfg(feature = "tokio")]

use std::time::Duration;

use shm_queue::{Lifetime, Queue, QueueOptions, RecvError, SegmentId, TryRecvError};

fn queue(tag: &str, capacity: u32) -> Queue {
    let id =
        SegmentId::posix(&format!("/shmrs-test-ready-{tag}-{}", std::process::id())).expect("name");
    Queue::create(
        &id,
        &QueueOptions::new()
            .capacity(capacity)
            .slot_size(32)
            .lifetime(Lifetime::Creator),
    )
    .expect("create")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn recv_async_wakes_when_another_thread_sends() {
    let q = queue("wake", 4);
    let mut rx = q.receiver().unwrap();
    let tx = q.sender().unwrap();
    let t = std::thread::spawn(move || {
        for i in 0..100u32 {
            std::thread::sleep(Duration::from_millis(1));
            tx.send(&i.to_le_bytes()).unwrap();
        }
    });
    let got = runtime().block_on(async {
        let mut got = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(20), rx.recv_async()).await {
                Ok(Ok(m)) => got.push(u32::from_le_bytes(m.try_into().unwrap())),
                Ok(Err(RecvError::Disconnected)) => break,
                Ok(Err(e)) => panic!("recv_async: {e}"),
                Err(_) => panic!("recv_async hung"),
            }
        }
        got
    });
    t.join().unwrap();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}

#[test]
fn the_ready_descriptor_turns_readable_when_a_message_arrives() {
    let q = queue("fd", 4);
    let rx = q.receiver().unwrap();
    let tx = q.sender().unwrap();
    let fd = rx.ready_fd().unwrap();
    assert!(!readable(fd, 50), "readable with nothing to take");
    tx.send(b"hi").unwrap();
    assert!(readable(fd, 5000), "not readable after a send");
    assert_eq!(rx.try_recv().unwrap(), b"hi");
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert!(!readable(fd, 50), "still readable after draining");
}

/// `poll(2)` on one descriptor: whether it turned readable within `ms`.
fn readable(fd: std::os::fd::BorrowedFd<'_>, ms: u16) -> bool {
    use nix::poll::{PollFd, PollFlags, poll};
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    poll(&mut fds, ms).expect("poll") > 0
}

#[test]
fn async_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let q = queue("send", 2);
    let mut rx = q.receiver().unwrap();
    let mut tx = q.sender().unwrap();
    let r = rx.recv_async();
    assert_send(&r);
    drop(r);
    let s = tx.send_async(b"x");
    assert_send(&s);
}
