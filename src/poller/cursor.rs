//! Which kind of poll each feed gets next: a full scan (at start-up, on a feed's first poll,
//! every `POLL_FULL_SCAN_SECS`, when asked, and whenever no strategy is proven), or an
//! incremental poll by the feed's proven strategy. Kept in memory: a restarted bridge begins
//! with a full scan and probes again, so nothing here needs to survive it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::changes::Strategy;
use crate::config::PollStrategy;
use crate::feed::Feed;

/// How the polls of a deployment find what changed (`POLL_STRATEGY`, `POLL_STRATEGY_{NAME}`,
/// `POLL_FULL_SCAN_SECS`, `POLL_OVERLAP_SECS`), and where each feed stands.
#[derive(Debug)]
pub struct ChangePolicy {
    default: PollStrategy,
    /// Per-resource strategies, by resource name.
    per_resource: BTreeMap<String, PollStrategy>,
    /// Time between two full scans of a feed read incrementally otherwise.
    pub full_scan_every: Duration,
    /// How far before its watermark an incremental poll starts reading.
    pub overlap: Duration,
    cursors: Mutex<HashMap<String, Cursor>>,
}

/// Where one feed stands.
#[derive(Clone, Debug, Default)]
struct Cursor {
    strategy: Strategy,
    reason: String,
    /// When the last full scan committed.
    last_full: Option<Instant>,
    /// A full scan was asked for (`POST /poll/{resource}?full=true`, a deleting webhook).
    full_asked: bool,
    /// When the strategies were last probed, or the strategy turned off.
    probed: Option<Instant>,
}

/// The kind of the next poll of a feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every page, with deletes, the audit and a probe; the reason, for the log.
    Full(&'static str),
    /// Only what changed, read by the strategy.
    Incremental(Strategy),
}

impl Default for ChangePolicy {
    /// `auto` everywhere, hourly full scans, a 5-minute overlap.
    fn default() -> Self {
        ChangePolicy::new(
            PollStrategy::Auto,
            BTreeMap::new(),
            Duration::from_secs(3_600),
            Duration::from_secs(300),
        )
    }
}

impl ChangePolicy {
    /// A policy with `default` for every resource but those in `per_resource`.
    pub fn new(
        default: PollStrategy,
        per_resource: BTreeMap<String, PollStrategy>,
        full_scan_every: Duration,
        overlap: Duration,
    ) -> Self {
        ChangePolicy {
            default,
            per_resource,
            full_scan_every,
            overlap,
            cursors: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, feed: &Feed, f: impl FnOnce(&mut Cursor) -> T) -> T {
        let mut cursors = self.cursors.lock().unwrap_or_else(|e| e.into_inner());
        f(cursors.entry(feed.key().to_string()).or_default())
    }

    /// Whether the feed's polls may read only what changed (its `POLL_STRATEGY`).
    pub fn auto(&self, feed: &Feed) -> bool {
        let configured = self.per_resource.get(feed.name()).copied();
        configured.unwrap_or(self.default) == PollStrategy::Auto
    }

    /// The kind of the feed's next poll; `ask_full` asks for a full scan. The first poll of a
    /// feed is a full scan whatever its state.
    pub fn next(&self, feed: &Feed, ask_full: bool) -> Mode {
        let auto = self.auto(feed);
        let every = self.full_scan_every;
        self.with(feed, |c| match c {
            _ if !auto => Mode::Full("POLL_STRATEGY is full"),
            Cursor {
                last_full: None, ..
            } => Mode::Full("start-up"),
            _ if ask_full || c.full_asked => Mode::Full("asked for"),
            Cursor {
                last_full: Some(t), ..
            } if t.elapsed() >= every => Mode::Full("POLL_FULL_SCAN_SECS passed"),
            Cursor {
                strategy: Strategy::Full,
                ..
            } => Mode::Full("no strategy proven"),
            Cursor { strategy, .. } => Mode::Incremental(*strategy),
        })
    }

    /// Asks for a full scan at the feed's next poll.
    pub fn ask_full(&self, feed: &Feed) {
        self.with(feed, |c| c.full_asked = true);
    }

    /// A full scan committed; `strategy` is what it decided, with why; `probed` when a probe
    /// ran or the strategy was turned off (the next probe waits `full_scan_every`).
    pub fn full_scanned(&self, feed: &Feed, strategy: Strategy, reason: String, probed: bool) {
        self.with(feed, |c| {
            c.strategy = strategy;
            c.reason = reason;
            c.last_full = Some(Instant::now());
            c.full_asked = false;
            if probed {
                c.probed = Some(Instant::now());
            }
        });
    }

    /// Whether a full scan should probe the strategies: at the first, at every full scan while
    /// a strategy is in use (it costs a request or two), and once per `full_scan_every` while
    /// none is.
    pub fn probe_due(&self, feed: &Feed) -> bool {
        let every = self.full_scan_every;
        self.with(feed, |c| match (c.strategy, c.probed) {
            (_, None) => true,
            (Strategy::Full, Some(t)) => t.elapsed() >= every,
            _ => true,
        })
    }

    /// Turns the feed's strategy off until a later probe passes; the next poll scans in full.
    pub fn fail(&self, feed: &Feed, reason: String) {
        self.with(feed, |c| {
            c.strategy = Strategy::Full;
            c.reason = reason;
            c.full_asked = true;
            c.probed = Some(Instant::now());
        });
    }

    /// The feed's strategy and why.
    pub fn strategy(&self, feed: &Feed) -> (Strategy, String) {
        self.with(feed, |c| (c.strategy, c.reason.clone()))
    }
}
