//! iceoryx2, the zero-copy IPC middleware users compare a shared-memory
//! queue against, in two flavors (only with the `iceoryx2` feature):
//!
//! - `iceoryx2`: publish-subscribe of `[u8]` slices; the subscriber
//!   busy-polls `receive()` (spinning like the raw ring: never yielding on
//!   a CPU of its own, see [`Placement`]);
//! - `iceoryx2-event`: the same, plus an event service per channel: the
//!   publisher calls `notify()` after every `send()`, and the subscriber
//!   blocks in the listener's `blocking_wait` whenever `receive()` finds
//!   nothing, so that a waiting receiver sleeps instead of polling.
//!
//! Configured for a lossless bounded channel like every other contender:
//! no safe overflow, `RetryUntilDelivered` backpressure (the publisher
//! waits, inside iceoryx2, while the subscriber's buffer is full), a
//! subscriber buffer of the case's capacity, no history, one publisher and
//! one subscriber, a static pool of slices of the case's message size.
//!
//! The sender fills a private buffer and copies it into a loaned slice
//! (`loan_slice_uninit` + `write_from_slice`, iceoryx2's own way to send
//! existing bytes, and no `unsafe` here); the receiver checks the received
//! sample in place, iceoryx2's zero-copy receive.
//!
//! # Names and cleanup
//!
//! Each channel gets its own iceoryx2 [`Config`], derived from the run's
//! channel name `/shmrs-bench-<pid>-<run>-<i>`: the file prefix
//! `shmrs-bench-<pid>-<run>-<i>-` (so every shared-memory file iceoryx2
//! makes in `/dev/shm` carries the benchmark's per-process prefix, which
//! the end-of-run leftover check looks for) and the root directory
//! `/tmp/shmrs-bench-<pid>-<run>-<i>-iox2/` instead of `/tmp/iceoryx2/`.
//! The parent creates the services and holds them to the end of the run;
//! when it drops them (after every child has been reaped) it first cleans
//! up the nodes of children that died, then removes the root directory and,
//! as a last resort, any file with the channel's prefix left in `/dev/shm`
//! (saying so on stderr).

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::port::update_connections::UpdateConnections;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::event::PortFactory as EventFactory;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory as PubSubFactory;

use super::spin::Backoff;
use super::{ChanSpec, Check, CreateError, Placement, Rx, Tx};

type Svc = ipc::Service;

/// Suffix of the segment iceoryx2 keeps per config (`Node::global_mgmt_suffix`).
const GLOBAL_MGMT: &str = ".global_mgmt";

/// Nodes per channel: the parent and the two ends, plus one to spare.
const MAX_NODES: usize = 4;

fn err(what: &str, e: impl std::fmt::Debug) -> io::Error {
    io::Error::other(format!("iceoryx2: {what}: {e:?}"))
}

/// `/shmrs-bench-1-2-0` → `shmrs-bench-1-2-0`.
fn base(name: &str) -> &str {
    name.trim_start_matches('/')
}

/// The file prefix of channel `name`'s iceoryx2 files.
fn prefix(name: &str) -> String {
    format!("{}-", base(name))
}

/// The root directory of channel `name`'s iceoryx2 files outside /dev/shm.
fn root(name: &str) -> PathBuf {
    PathBuf::from(format!("/tmp/{}-iox2/", base(name)))
}

/// The iceoryx2 configuration of channel `name`, the same in every process.
fn config(name: &str) -> io::Result<Config> {
    let mut c = Config::default();
    c.global.prefix = FileName::new(prefix(name).as_bytes()).map_err(|e| err("prefix", e))?;
    let root = root(name);
    let root = root.to_str().ok_or_else(|| err("root", "not UTF-8"))?;
    c.global
        .set_root_path(&Path::new(root.as_bytes()).map_err(|e| err("root", e))?);
    Ok(c)
}

fn node(name: &str) -> io::Result<Node<Svc>> {
    // Errors only: a benchmark's stderr is for its own failures.
    set_log_level(LogLevel::Error);
    NodeBuilder::new()
        .config(&config(name)?)
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<Svc>()
        .map_err(|e| err("creating a node", e))
}

/// How long an end waits for its peer's port to appear.
const CONNECT: Duration = Duration::from_secs(10);

/// Waits until `peer_ports()` counts the other end's port, then connects
/// `port` to it. iceoryx2 connects ports lazily, on a send or receive; a
/// publisher that filled the subscriber's buffer before the subscriber
/// connected would drop the sample ("no connected receiver and the buffer
/// is full"), and a notification sent before the listener connected would
/// go nowhere. Both ends do this (`Tx::connect`, `Rx::connect`) before
/// they report ready, so every connection exists before the first message.
fn connect(
    what: &str,
    peer_ports: impl Fn() -> usize,
    port: &impl UpdateConnections,
) -> io::Result<()> {
    let deadline = Instant::now() + CONNECT;
    while peer_ports() == 0 {
        if Instant::now() > deadline {
            return Err(err(what, "the other end never appeared"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    port.update_connections().map_err(|e| err(what, e))
}

fn data_name(name: &str) -> io::Result<ServiceName> {
    ServiceName::new(&format!("{}/data", base(name))).map_err(|e| err("service name", e))
}

fn event_name(name: &str) -> io::Result<ServiceName> {
    ServiceName::new(&format!("{}/event", base(name))).map_err(|e| err("service name", e))
}

/// The parent's side of one channel: the services it created, held until
/// the run ends, and what to remove afterwards.
pub struct IceChan {
    /// `None` once dropped (see `Drop`).
    live: Option<Live>,
    name: String,
}

/// Field order is drop order: the services before their node.
struct Live {
    _data: PubSubFactory<Svc, [u8], ()>,
    _event: Option<EventFactory<Svc>>,
    node: Node<Svc>,
}

impl std::fmt::Debug for IceChan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceChan").field("name", &self.name).finish()
    }
}

/// Creates the publish-subscribe service (and, with `event`, the event
/// service) of channel `name` for `spec`.
pub fn create(name: &str, spec: ChanSpec, event: bool) -> Result<IceChan, CreateError> {
    // Whatever an earlier, killed run of this name left (in practice
    // nothing: the pid is in the name).
    let _ = std::fs::remove_dir_all(root(name));
    let mut chan = IceChan {
        live: None,
        name: name.to_string(),
    };
    let node = node(name)?;
    let data = node
        .service_builder(&data_name(name)?)
        .publish_subscribe::<[u8]>()
        .enable_safe_overflow(false)
        .subscriber_max_buffer_size(spec.capacity)
        .history_size(0)
        .subscriber_max_borrowed_samples(1)
        .max_publishers(1)
        .max_subscribers(1)
        .max_nodes(MAX_NODES)
        .create()
        .map_err(|e| err("creating the publish-subscribe service", e))?;
    let event = if event {
        Some(
            node.service_builder(&event_name(name)?)
                .event()
                .max_notifiers(1)
                .max_listeners(1)
                .max_nodes(MAX_NODES)
                .create()
                .map_err(|e| err("creating the event service", e))?,
        )
    } else {
        None
    };
    chan.live = Some(Live {
        _data: data,
        _event: event,
        node,
    });
    Ok(chan)
}

impl Drop for IceChan {
    fn drop(&mut self) {
        if let Some(live) = self.live.take() {
            // Children are reaped by now; one that was killed left its node
            // and ports behind, which only this cleanup removes.
            let _ = live.node.try_cleanup_dead_nodes();
            drop(live);
        }
        // Errors: nothing there, which is the goal.
        let _ = std::fs::remove_dir_all(root(&self.name));
        let prefix = prefix(&self.name);
        let mut left = Vec::new();
        if let Ok(dir) = std::fs::read_dir("/dev/shm") {
            for e in dir.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                if !file.starts_with(&prefix) || std::fs::remove_file(e.path()).is_err() {
                    continue;
                }
                // iceoryx2 keeps one `*.global_mgmt` segment per config on
                // purpose, for every later node of that config; this
                // config has no later node, so it goes without a word.
                if !file.ends_with(GLOBAL_MGMT) {
                    left.push(file);
                }
            }
        }
        if !left.is_empty() {
            eprintln!(
                "shm-bench: iceoryx2 left {} behind in /dev/shm (now removed)",
                left.join(", ")
            );
        }
    }
}

/// Producer end.
pub struct IceTx {
    // Field order is drop order: ports, then services, then the node.
    publisher: Publisher<Svc, [u8], ()>,
    notifier: Option<Notifier<Svc>>,
    data: PubSubFactory<Svc, [u8], ()>,
    event: Option<EventFactory<Svc>>,
    _node: Node<Svc>,
    buf: Vec<u8>,
}

impl IceTx {
    /// Attaches to channel `name`; `event` notifies after every send.
    pub fn open(name: &str, spec: ChanSpec, event: bool) -> io::Result<Self> {
        let node = node(name)?;
        let data = node
            .service_builder(&data_name(name)?)
            .publish_subscribe::<[u8]>()
            .open()
            .map_err(|e| err("opening the publish-subscribe service", e))?;
        let publisher = data
            .publisher_builder()
            .initial_max_slice_len(spec.size)
            .allocation_strategy(AllocationStrategy::Static)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .max_loaned_samples(1)
            .create()
            .map_err(|e| err("creating the publisher", e))?;
        let (ev, notifier) = if event {
            let ev = node
                .service_builder(&event_name(name)?)
                .event()
                .open()
                .map_err(|e| err("opening the event service", e))?;
            let n = ev
                .notifier_builder()
                .create()
                .map_err(|e| err("creating the notifier", e))?;
            (Some(ev), Some(n))
        } else {
            (None, None)
        };
        Ok(IceTx {
            publisher,
            notifier,
            data,
            event: ev,
            _node: node,
            buf: vec![0; spec.size],
        })
    }
}

impl Tx for IceTx {
    fn connect(&mut self) -> io::Result<()> {
        connect(
            "connecting the publisher",
            || self.data.dynamic_config().number_of_subscribers(),
            &self.publisher,
        )?;
        if let (Some(ev), Some(n)) = (&self.event, &self.notifier) {
            connect(
                "connecting the notifier",
                || ev.dynamic_config().number_of_listeners(),
                n,
            )?;
        }
        Ok(())
    }

    fn send(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> io::Result<()> {
        let buf = self
            .buf
            .get_mut(..len)
            .ok_or_else(|| io::Error::other(format!("{len} B exceeds the slot size")))?;
        fill(buf);
        let sample = self
            .publisher
            .loan_slice_uninit(len)
            .map_err(|e| err("loan", e))?;
        let delivered = sample
            .write_from_slice(buf)
            .send()
            .map_err(|e| err("send", e))?;
        if delivered != 1 {
            return Err(err(
                "send",
                format!("delivered to {delivered} subscribers, not 1"),
            ));
        }
        if let Some(n) = &self.notifier {
            n.notify().map_err(|e| err("notify", e))?;
        }
        Ok(())
    }
}

/// Consumer end.
pub struct IceRx {
    // Field order is drop order: ports, then services, then the node.
    subscriber: Subscriber<Svc, [u8], ()>,
    listener: Option<Listener<Svc>>,
    data: PubSubFactory<Svc, [u8], ()>,
    _event: Option<EventFactory<Svc>>,
    _node: Node<Svc>,
    place: Placement,
}

impl IceRx {
    /// Attaches to channel `name`; `event` blocks on the listener instead
    /// of polling; `place` says whether polling may spin without yielding.
    pub fn open(name: &str, spec: ChanSpec, event: bool, place: Placement) -> io::Result<Self> {
        let node = node(name)?;
        let data = node
            .service_builder(&data_name(name)?)
            .publish_subscribe::<[u8]>()
            .open()
            .map_err(|e| err("opening the publish-subscribe service", e))?;
        let subscriber = data
            .subscriber_builder()
            .buffer_size(spec.capacity)
            .create()
            .map_err(|e| err("creating the subscriber", e))?;
        let (ev, listener) = if event {
            let ev = node
                .service_builder(&event_name(name)?)
                .event()
                .open()
                .map_err(|e| err("opening the event service", e))?;
            let l = ev
                .listener_builder()
                .create()
                .map_err(|e| err("creating the listener", e))?;
            (Some(ev), Some(l))
        } else {
            (None, None)
        };
        Ok(IceRx {
            subscriber,
            listener,
            data,
            _event: ev,
            _node: node,
            place,
        })
    }
}

impl Rx for IceRx {
    fn connect(&mut self) -> io::Result<()> {
        connect(
            "connecting the subscriber",
            || self.data.dynamic_config().number_of_publishers(),
            &self.subscriber,
        )
    }

    fn recv(&mut self, f: &mut Check<'_>) -> io::Result<()> {
        let mut backoff = Backoff::new(self.place);
        loop {
            if let Some(sample) = self.subscriber.receive().map_err(|e| err("receive", e))? {
                return f(sample.payload());
            }
            match &self.listener {
                // A notification sent after the `receive` above is latched
                // in the listener, so this wait returns at once: no lost
                // wake-up.
                Some(l) => {
                    l.blocking_wait(|_| {}).map_err(|e| err("wait", e))?;
                }
                None => backoff.snooze(),
            }
        }
    }
}
