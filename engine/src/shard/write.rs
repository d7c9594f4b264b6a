//! The write path: assign a seqno, apply to the memtable, freeze it when full, and
//! stall (rather than grow memory) when flushes or L0 compactions fall behind.

use std::collections::VecDeque;
use std::rc::Rc;

use super::read::{IO_TURN, WRITES_PER_IO_TURN};
use super::Shard;
use crate::error::Result;
use crate::key::ValueKind;
use crate::memtable::Memtable;

/// The shard's memtables and its sequence numbers.
pub(crate) struct Memtables {
    /// The memtable taking writes.
    pub(crate) active: Rc<Memtable>,
    /// Frozen memtables waiting for flush, newest first.
    pub(crate) frozen: VecDeque<Rc<Memtable>>,
    /// Highest seqno assigned.
    pub(crate) last_seqno: u64,
}

impl Memtables {
    /// Empty memtables continuing after `last_seqno`.
    pub(crate) fn new(last_seqno: u64) -> Memtables {
        Memtables {
            active: Rc::new(Memtable::new()),
            frozen: VecDeque::new(),
            last_seqno,
        }
    }
}

impl Shard {
    /// Writes `value` (or a tombstone) for `state_key`. The write takes effect before
    /// the first `.await`, so its place among operations on the key is its submission
    /// order; it completes after every earlier operation on the key. A value of a
    /// TTL table is stamped with the write time (`catalog.rs`).
    pub(crate) async fn write(
        self: &Rc<Self>,
        state_key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<()> {
        match value {
            Some(v) if !self.opts.catalog.is_plain() => {
                let table = self.opts.catalog.of_state_key(state_key)?;
                table.validate_value(v)?;
                let stamped = table.stamp(v, self.opts.clock.system_time());
                self.write_kind(state_key, ValueKind::Put, &stamped).await
            }
            Some(v) => self.write_kind(state_key, ValueKind::Put, v).await,
            None => self.write_kind(state_key, ValueKind::Delete, &[]).await,
        }
    }

    /// Writes a merge operand for `state_key`, without reading it: the table's
    /// merge operator combines it on reads, flushes and compactions. A table
    /// without an operator, or an operand the operator refuses, is an
    /// InvalidArgument error and writes nothing.
    pub(crate) async fn merge(self: &Rc<Self>, state_key: &[u8], operand: &[u8]) -> Result<()> {
        let table = self.opts.catalog.of_state_key(state_key)?;
        let operand = table.encode_operand(operand)?;
        self.write_kind(state_key, ValueKind::Merge, &operand).await
    }

    async fn write_kind(
        self: &Rc<Self>,
        state_key: &[u8],
        kind: ValueKind,
        value: &[u8],
    ) -> Result<()> {
        self.check_open()?;
        if self.lanes.is_idle(state_key) {
            // Nothing on the key in flight: the write completes at once unless it
            // must stall or step aside, and only then takes a ticket — the first of
            // its lane (no await since the check), so later operations on the key
            // still complete after it.
            self.apply(state_key, kind, value);
            self.freeze(false);
            if self.reads.in_progress.get() == 0 && !self.must_stall() {
                return Ok(());
            }
            let ticket = self.lanes.enter(state_key);
            self.stall_if_needed().await?;
            self.give_reads_their_turn().await;
            ticket.finish().await;
            return Ok(());
        }
        let ticket = self.lanes.enter(state_key);
        self.apply(state_key, kind, value);
        self.stall_if_needed().await?;
        self.give_reads_their_turn().await;
        ticket.finish().await;
        Ok(())
    }

    /// Every `WRITES_PER_IO_TURN` writes, while reads are in progress, steps aside so
    /// the reactor can complete their I/O (see `WRITES_PER_IO_TURN`).
    async fn give_reads_their_turn(&self) {
        if self.reads.in_progress.get() == 0 {
            return;
        }
        let n = self.reads.writes_since_io_turn.get() + 1;
        if n < WRITES_PER_IO_TURN {
            self.reads.writes_since_io_turn.set(n);
            return;
        }
        self.reads.writes_since_io_turn.set(0);
        glommio::timer::sleep(IO_TURN).await;
    }

    fn apply(&self, state_key: &[u8], kind: ValueKind, value: &[u8]) {
        let mut m = self.mem.borrow_mut();
        m.last_seqno += 1;
        let seqno = m.last_seqno;
        m.active.insert_kind(state_key, seqno, kind, value);
        let mut c = self.counters.borrow_mut();
        match kind {
            ValueKind::Put => c.puts += 1,
            ValueKind::Delete => c.deletes += 1,
            ValueKind::Merge => c.merges += 1,
        }
    }

    /// Freezes the active memtable if it is non-empty (and there is room), waking the
    /// flush task. Returns whether it froze.
    pub(crate) fn freeze(&self, force: bool) -> bool {
        let mut m = self.mem.borrow_mut();
        let full = m.active.approximate_bytes() >= self.opts.memtable_bytes;
        if m.active.is_empty()
            || (!force && !full)
            || (!force && m.frozen.len() >= self.opts.max_immutable_memtables)
        {
            return false;
        }
        let frozen = std::mem::replace(&mut m.active, Rc::new(Memtable::new()));
        m.frozen.push_front(frozen);
        drop(m);
        self.signals.flush_wake.notify_all();
        true
    }

    fn must_stall(&self) -> bool {
        let m = self.mem.borrow();
        let mem_full = m.active.approximate_bytes() >= self.opts.memtable_bytes;
        (mem_full && m.frozen.len() >= self.opts.max_immutable_memtables)
            || self.versions.current().levels[0].len() >= self.opts.l0_stop_writes_trigger
    }

    /// Waits while the shard is over its memory or L0 budget.
    async fn stall_if_needed(&self) -> Result<()> {
        self.freeze(false);
        if !self.must_stall() {
            return Ok(());
        }
        let _stalled = Stalled::begin(self);
        loop {
            let seen = self.signals.changed.generation();
            self.check_open()?;
            self.freeze(false);
            if !self.must_stall() {
                break;
            }
            self.signals.compaction_wake.notify_all();
            self.signals
                .changed
                .changed_or_after(seen, super::FOREGROUND_RECHECK)
                .await;
        }
        Ok(())
    }
}

/// A writer stalled on its shard: counted in `writers_stalled` while it lives. The
/// stall's wall time (from the first stalled writer to the last one leaving) goes to
/// `stall_micros` once, however many writers waited together.
struct Stalled<'a> {
    shard: &'a Shard,
}

impl<'a> Stalled<'a> {
    fn begin(shard: &'a Shard) -> Stalled<'a> {
        let n = shard.writers_stalled.get();
        if n == 0 {
            shard.stall_began.set(Some(shard.opts.clock.now()));
        }
        shard.writers_stalled.set(n + 1);
        shard.counters.borrow_mut().stalls += 1;
        Stalled { shard }
    }
}

impl Drop for Stalled<'_> {
    fn drop(&mut self) {
        let s = self.shard;
        let n = s.writers_stalled.get().saturating_sub(1);
        s.writers_stalled.set(n);
        if n == 0 {
            if let Some(began) = s.stall_began.take() {
                s.counters.borrow_mut().stall_micros += s
                    .opts
                    .clock
                    .now()
                    .saturating_duration_since(began)
                    .as_micros() as u64;
            }
        }
    }
}
