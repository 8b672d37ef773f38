//! What `tenant.set_context` remembers between calls in one connection.
//!
//! Entering an institution means asking the registry (the SECURITY DEFINER
//! `enter_context`, through SPI) whether it may be entered and what its
//! schema and role are: most of set_context's cost in a warm connection
//! (issue 13). For the common case, an ACTIVE institution with nothing
//! unusual about it, this backend keeps the answer and set_context uses it
//! without asking again, under three rules:
//!
//! - **Forgotten on every change that could alter it.** Triggers on the
//!   registry (`tenant.context_cache_invalidate`) send PostgreSQL's own
//!   relation-cache invalidation (see `Channel`) when a row's
//!   status, name, role, institution or quota state changes or a row goes, and
//!   when an institution gets limits or a move between shared tables and a
//!   schema starts. PostgreSQL delivers it to every backend at the
//!   committing transaction's commit, before the commit returns to its client;
//!   each lookup first reads the messages already delivered
//!   (AcceptInvalidationMessages), and a relation-cache callback empties
//!   this cache. So a set_context that starts after a suspend, drop or move
//!   has committed never uses the old answer.
//! - **Remembered only from a fresh read.** An answer is kept only when it
//!   was read in a READ COMMITTED transaction (a statement snapshot taken
//!   after the messages were read), and only when no invalidation arrived
//!   while it was read. A REPEATABLE READ or SERIALIZABLE transaction neither
//!   fills nor uses the cache: its snapshot may be older than a change the
//!   cache has already heard of, and a serializable read must stay a read.
//! - **Kept one minute at most**, as long as the once-a-minute record of last
//!   access (ops/last_access): after that set_context asks the registry
//!   again, which also records the access. The answer is also bound to the
//!   role that asked (whose right to call enter_context PostgreSQL checked).
//!
//! Anything unusual (limits to apply, a quota warning, a move, any status
//! other than ACTIVE) is never remembered: those institutions always go
//! through enter_context. A new check that must refuse or alter the context
//! of an institution belongs in enter_context, with a trigger here if the
//! state it reads lives outside the registry row.

use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long an answer is used; the interval of the last-access record.
pub const KEPT_FOR: Duration = crate::ops::last_access::EVERY;

/// A remembered answer: the institution is ACTIVE, plainly.
struct Entry {
    schema: String,
    role: String,
    user: pg_sys::Oid,
    at: Instant,
}

thread_local! {
    static ENTRIES: RefCell<HashMap<uuid::Uuid, Entry>> = RefCell::new(HashMap::new());
    /// The registry's oid (tenant.tenant_schemas) and the channels' (see
    /// `Channel`), once a read of the registry was made to be kept.
    static REGISTRY: Cell<Channel> = const { Cell::new(Channel::NONE) };
    /// How many times the cache was emptied: a read spanning an emptying is not kept.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    /// How many times a registry row was added (`Channel::names`): only the
    /// answers of ops/schema_cache depend on it.
    static NEW_ROWS: Cell<u64> = const { Cell::new(0) };
}

/// Called from _PG_init: listen to relation-cache invalidations.
pub fn register() {
    // SAFETY: once per backend while the library loads.
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_invalidation), pg_sys::Datum::from(0)) };
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, relation: pg_sys::Oid) {
    // InvalidOid: every relation (the invalidation queue overflowed, say).
    let known = REGISTRY.get();
    if relation == pg_sys::InvalidOid || relation == known.registry || relation == known.channel {
        forget_all();
    } else if relation == known.names {
        NEW_ROWS.set(NEW_ROWS.get() + 1);
    }
}

fn forget_all() {
    ENTRIES.with(|entries| entries.borrow_mut().clear());
    GENERATION.set(GENERATION.get() + 1);
}

/// Whether the transaction takes a new snapshot for each statement.
fn read_committed() -> bool {
    // SAFETY: a backend global.
    (unsafe { pg_sys::XactIsoLevel } as u32) < pg_sys::XACT_REPEATABLE_READ
}

/// The user outside any SECURITY DEFINER function: the application's role
/// both in set_context and in enter_context.
fn current_user() -> pg_sys::Oid {
    // SAFETY: a backend global.
    unsafe { pg_sys::GetOuterUserId() }
}

/// The schema and role of `institution` if this connection may enter it
/// without asking the registry.
pub fn lookup(institution: uuid::Uuid) -> Option<(String, String)> {
    if !read_committed() {
        return None;
    }
    // SAFETY: inside a transaction; runs the callbacks of delivered messages.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    ENTRIES.with(|entries| {
        let entries = entries.borrow();
        let entry = entries.get(&institution)?;
        (entry.user == current_user() && entry.at.elapsed() < KEPT_FOR)
            .then(|| (entry.schema.clone(), entry.role.clone()))
    })
}

/// A read of the registry about to be made: its answer may be kept (see
/// `remember`) if nothing empties the cache meanwhile. Also serves the
/// answers of ops/schema_cache (`Reading::generation`).
pub struct Reading(Option<(u64, u64)>);

impl Reading {
    /// Which messages had been heard when the reading began (any change, new
    /// rows), or None when nothing read now may be kept (not READ
    /// COMMITTED, or no registry).
    pub fn generation(&self) -> Option<(u64, u64)> {
        self.0
    }

    /// Whether a message about the registry arrived since the reading began.
    pub fn outdated(&self) -> bool {
        self.0 != Some(generation())
    }
}

fn generation() -> (u64, u64) {
    (GENERATION.get(), NEW_ROWS.get())
}

/// Call right before reading the registry: listens to its messages from now
/// on, and reads those already delivered.
pub fn reading() -> Reading {
    if !read_committed() {
        return Reading(None);
    }
    let Some(channel) = channel() else { return Reading(None) };
    REGISTRY.set(channel);
    // SAFETY: as in lookup.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    Reading(Some(generation()))
}

/// Keep the answer of `reading`: the institution is ACTIVE, without limits,
/// quota warning or move.
pub fn remember(reading: Reading, institution: uuid::Uuid, schema: &str, role: &str) {
    let Some((changes, _)) = reading.0 else { return };
    if changes != GENERATION.get() {
        return;
    }
    let entry = Entry { schema: schema.to_string(), role: role.to_string(), user: current_user(), at: Instant::now() };
    ENTRIES.with(|entries| entries.borrow_mut().insert(institution, entry));
}

/// Where the "forget" message travels. A relation-cache invalidation names
/// a relation; PostgreSQL delivers it to every backend of the database,
/// calls each backend's relation-cache callbacks with it, and marks that
/// relation's cache entry for a reload. The triggers name the registry's
/// primary-key index: an index entry reloads cheaply, and no plan depends on
/// an index's entry, whereas naming `tenant.tenant_schemas` itself would make
/// every backend rebuild that entry (with its many triggers and policies) and
/// re-plan its statements on the registry after each sign-up. An invalidation
/// of the registry itself (TRUNCATE, ALTER TABLE) empties the cache too.
///
/// A new row cannot make a kept set_context answer wrong, but it can make a
/// "not a tenant schema" of ops/schema_cache wrong: new rows name another
/// index, the registry's live-schema-name index (`names`), which only
/// the schema cache listens to.
#[derive(Clone, Copy)]
struct Channel {
    registry: pg_sys::Oid,
    channel: pg_sys::Oid,
    names: pg_sys::Oid,
}

impl Channel {
    const NONE: Channel =
        Channel { registry: pg_sys::InvalidOid, channel: pg_sys::InvalidOid, names: pg_sys::InvalidOid };
}

fn channel() -> Option<Channel> {
    use crate::core::catalog::extension_relation;
    Some(Channel {
        registry: extension_relation(c"tenant_schemas")?,
        channel: extension_relation(c"tenant_schemas_pkey")?,
        names: extension_relation(c"tenant_schemas_schema_name_live")?,
    })
}

/// The registry and its index of live schema names (a partial unique index
/// on schema_name, status not DROPPED), for ops/schema_cache's probe.
pub fn live_names_index() -> Option<(pg_sys::Oid, pg_sys::Oid)> {
    channel().map(|found| (found.registry, found.names))
}

#[no_mangle]
pub extern "C" fn pg_finfo_tc_context_cache_invalidate() -> &'static pg_sys::Pg_finfo_record {
    const V1: &pg_sys::Pg_finfo_record = &pg_sys::Pg_finfo_record { api_version: 1 };
    V1
}

/// `tenant.context_cache_invalidate()`: the AFTER trigger on the registry
/// and on what enter_context reads besides it. Queues the "forget" message
/// (see `Channel`; a new registry row names its own channel), which PostgreSQL sends to every backend when the
/// transaction commits (and applies in this one at the end of the statement).
///
/// # Safety
/// Called by PostgreSQL as a trigger function, with `fcinfo` valid.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn tc_context_cache_invalidate(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fcinfo is valid.
    let trigger = unsafe { crate::core::trigger::trigger_data(fcinfo, "tenant.context_cache_invalidate()") };
    if let Some(Channel { registry, channel, names }) = channel() {
        // SAFETY: TriggerData and its relation are valid for the whole call.
        let new_row = unsafe {
            pgrx::trigger_support::trigger_fired_by_insert((*trigger).tg_event)
                && (*(*trigger).tg_relation).rd_id == registry
        };
        // SAFETY: inside a transaction; queued until its end.
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(if new_row { names } else { channel }) };
    }
    pg_sys::Datum::from(0)
}
