//! The writer lease: how a chest on a shared store (S3, a named memory
//! store) keeps to one writer, and fences a writer that lost it.
//!
//! The lease is the object `lease` in the chest's location, written only
//! with conditional writes ([`BackendExt::put_if`]):
//!
//! - **Taking it.** A writable open reads it. None there: it is created
//!   with a create-only write at epoch 1. Released by its holder, or
//!   expired (its `expires` is past by this process's clock): it is taken
//!   over with a compare-and-swap at epoch + 1. Held and live: the open
//!   fails with [`BackendError::Locked`], naming the holder (host, pid,
//!   since when, until when). Of several processes racing, exactly one
//!   conditional write succeeds.
//! - **Keeping it.** A thread renews it every `ttl / 6` (compare-and-swap
//!   on the version this chest last wrote). A renewal sent at instant `t`
//!   that succeeds moves the local *deadline* to `t + 3/4 ttl`, while the
//!   object says `expires = t + ttl` by the wall clock: a quarter of the
//!   TTL is the margin for clock skew between machines and for the time a
//!   request takes.
//! - **Losing it.** A renewal that finds another version (someone took the
//!   lease over), or a deadline that passes without a successful renewal,
//!   *fences* the chest: [`Lease::check`], called by the store before every
//!   write and delete, fails from then on with [`Error::Fenced`].
//! - **Releasing it.** Closing the chest (dropping its last handle) writes
//!   the lease back as released, so the next writer need not wait for it to
//!   expire.
//!
//! A check before each request cannot stop a request that was already on
//! its way when the process paused (a stopped process, a long GC pause in a
//! host application, a slow network). Two more rules make such a late
//! request harmless:
//!
//! - **Object ids are reserved in the lease.** The record carries
//!   `ids_below`: the holder writes value objects only with ids below it,
//!   and raises it (compare-and-swap, so only while it still holds the
//!   lease) before going past. The next holder starts its ids at or above
//!   the `ids_below` it took over, so a late write of the old holder can
//!   never replace an object of the new one, and the old holder only ever
//!   deletes objects it wrote itself.
//! - **Manifests are created, never replaced** (see `commit`): a commit
//!   writes `manifest.<n+1>` with a create-only write, and a new holder
//!   that took over an expired lease first writes a manifest of its own
//!   (its *fence*) before it deletes anything. A late commit of the old
//!   holder then finds its number taken and fails: it cannot overwrite a
//!   newer manifest, nor name objects the new holder removed.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::backend::BackendExt;
use crate::backend::{Backend, ObjectVersion, PutMode};
use crate::error::{BackendError, Error, Result};

/// Name of the lease object.
pub(crate) const LEASE: &str = "lease";
/// How many object ids a reservation adds.
const ID_CHUNK: u32 = 1 << 16;
/// How many times an open retries after losing a race for the lease.
const ACQUIRE_TRIES: usize = 3;

/// The lease object's contents (CBOR).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Format of the record.
    pub format: u32,
    /// Bumped by every new holder.
    pub epoch: u64,
    /// The holder's host name.
    pub host: String,
    /// The holder's process id.
    pub pid: u32,
    /// A random token of the holder's open: tells a retried write of one's
    /// own from another writer's.
    pub token: u64,
    /// When the holder took the lease (Unix time, ms).
    pub since_ms: u64,
    /// Until when the lease holds unless renewed (Unix time, ms).
    pub expires_ms: u64,
    /// The holder closed the chest: the lease is free.
    pub released: bool,
    /// The holder uses object ids below this one only.
    pub ids_below: u32,
}

impl Record {
    /// The holder, for messages.
    pub fn describe(&self) -> String {
        let now = unix_ms();
        let until = if self.expires_ms >= now {
            format!(
                "expires in {:.1} s unless renewed",
                (self.expires_ms - now) as f64 / 1e3
            )
        } else {
            format!("expired {:.1} s ago", (now - self.expires_ms) as f64 / 1e3)
        };
        format!(
            "host {}, pid {}, since {} (lease epoch {}, {until})",
            self.host,
            self.pid,
            format_unix_ms(self.since_ms),
            self.epoch
        )
    }

    fn free(&self, now_ms: u64) -> bool {
        self.released || now_ms > self.expires_ms
    }
}

/// What an open found when it took the lease.
pub(crate) struct Acquired {
    pub lease: Lease,
    /// The record it took over, if the previous holder had not released
    /// it (it expired: that writer may still be running, paused).
    pub expired: Option<Record>,
    /// Object ids below this may be in use by earlier holders.
    pub ids_floor: u32,
}

/// A held lease. Dropping it stops the renewals and releases the lease
/// (unless it was lost).
pub(crate) struct Lease {
    shared: Arc<Shared>,
    renewer: Option<JoinHandle<()>>,
}

struct Shared {
    backend: Arc<dyn Backend>,
    ttl: Duration,
    state: Mutex<State>,
    /// Serializes the writes of the lease object.
    io: Mutex<()>,
    /// `record.ids_below`, readable without the lock.
    ids_below: AtomicU32,
    stop: Mutex<bool>,
    wake: Condvar,
    /// Not released on drop: a manifest write of this holder may still land
    /// (its outcome is unknown), so the next writer must wait for the lease
    /// to expire and then fence it off.
    keep: std::sync::atomic::AtomicBool,
}

struct State {
    record: Record,
    version: ObjectVersion,
    /// Past it, the lease may be someone else's: the chest is fenced.
    deadline: Instant,
    /// Why the chest is fenced, once it is.
    fenced: Option<String>,
}

impl Lease {
    /// Takes the lease of `backend`'s location for `ttl`, or fails with
    /// [`BackendError::Locked`] naming the live holder.
    pub fn acquire(backend: Arc<dyn Backend>, ttl: Duration) -> Result<Acquired> {
        let token = random_token();
        let mut last_holder = None;
        for _ in 0..ACQUIRE_TRIES {
            let sent = Instant::now();
            let now = unix_ms();
            let current = match backend.get_versioned(LEASE) {
                Ok((bytes, version)) => Some((decode(&*backend, &bytes)?, version)),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            };
            if let Some((held, _)) = &current {
                if !held.free(now) {
                    return Err(locked(&*backend, held));
                }
            }
            let previous = current.as_ref().map(|(r, _)| r.clone());
            let ids_floor = previous.as_ref().map_or(1, |r| r.ids_below.max(1));
            let record = Record {
                format: 1,
                epoch: previous.as_ref().map_or(1, |r| r.epoch + 1),
                host: host_name(),
                pid: std::process::id(),
                token,
                since_ms: now,
                expires_ms: now + ttl.as_millis() as u64,
                released: false,
                ids_below: ids_floor.saturating_add(ID_CHUNK),
            };
            let condition = match current {
                Some((_, version)) => PutMode::Update(version),
                None => PutMode::Create,
            };
            let version = match write(&*backend, &record, condition) {
                Ok(v) => v,
                Err(e) => {
                    // Lost a race, or our own write went through although
                    // it failed or its retry was refused: the object tells.
                    let conflict = matches!(e, BackendError::Conflict { .. });
                    match read_own(&*backend, &record) {
                        Ok(Some((v, _))) => v,
                        Ok(None) if conflict => {
                            last_holder = read(&*backend)?;
                            continue;
                        }
                        Ok(None) | Err(_) => return Err(e.into()),
                    }
                }
            };
            tracing::debug!(epoch = record.epoch, "took the writer lease");
            let expired = previous.filter(|p| !p.released);
            let shared = Arc::new(Shared {
                backend,
                ttl,
                ids_below: AtomicU32::new(record.ids_below),
                io: Mutex::new(()),
                state: Mutex::new(State {
                    record,
                    version,
                    deadline: sent + ttl * 3 / 4,
                    fenced: None,
                }),
                stop: Mutex::new(false),
                wake: Condvar::new(),
                keep: std::sync::atomic::AtomicBool::new(false),
            });
            let renewer = {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name("chest-lease".into())
                    .spawn(move || shared.renew_loop())
            };
            let renewer = match renewer {
                Ok(t) => t,
                Err(e) => {
                    let location = shared.backend.location().to_string();
                    // Give the lease back: nobody will renew it.
                    drop(Lease {
                        shared,
                        renewer: None,
                    });
                    return Err(Error::Fenced {
                        location,
                        reason: format!("cannot start the thread that renews the lease: {e}"),
                    });
                }
            };
            return Ok(Acquired {
                lease: Lease {
                    shared,
                    renewer: Some(renewer),
                },
                expired,
                ids_floor,
            });
        }
        Err(match last_holder {
            Some(held) => locked(&*backend, &held),
            None => BackendError::Locked {
                location: backend.location().to_string(),
                detail: "other writers keep taking the lease".into(),
            }
            .into(),
        })
    }

    /// Fails with [`Error::Fenced`] once the lease is lost.
    pub fn check(&self) -> Result<()> {
        self.shared.check()
    }

    /// The holder's epoch.
    pub fn epoch(&self) -> u64 {
        self.shared.state().record.epoch
    }

    /// Makes sure object ids below `below` are reserved in the lease (a
    /// compare-and-swap when they are not yet).
    pub fn reserve_ids(&self, below: u32) -> Result<()> {
        if below <= self.shared.ids_below.load(Ordering::Acquire) {
            return Ok(());
        }
        self.shared.update(|r| {
            r.ids_below = r.ids_below.max(below.saturating_add(ID_CHUNK));
        })
    }

    /// Reads the lease object: fails with [`Error::Fenced`] (and fences the
    /// chest) unless it is still this chest's. A commit calls it after its
    /// manifest is written: no other writer can have taken over before that
    /// write if the lease is still ours after it.
    pub fn confirm(&self) -> Result<()> {
        self.check()?;
        let (epoch, token) = {
            let s = self.shared.state();
            (s.record.epoch, s.record.token)
        };
        match read(&*self.shared.backend)? {
            Some(r) if r.epoch == epoch && r.token == token => Ok(()),
            found => Err(self.shared.lose(lost_reason(epoch, found.as_ref()))),
        }
    }

    /// Leaves the lease to expire instead of releasing it on drop (see
    /// `Shared::keep`).
    pub fn keep_on_drop(&self) {
        self.shared.keep.store(true, Ordering::Relaxed);
    }

    /// Fences the chest (a commit found another writer's manifest).
    pub fn fence(&self, reason: String) {
        let mut s = self.shared.state();
        s.fenced.get_or_insert(reason);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        *self
            .shared
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        let keep = self.shared.keep.load(Ordering::Relaxed);
        if !keep && self.shared.check().is_ok() {
            let released = self.shared.update(|r| {
                r.released = true;
                r.expires_ms = unix_ms();
            });
            if let Err(e) = released {
                tracing::warn!(error = %e, "could not release the writer lease (it will expire)");
            }
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check(&self) -> Result<()> {
        let mut s = self.state();
        if s.fenced.is_none() && Instant::now() >= s.deadline {
            s.fenced = Some(format!(
                "its writer lease (epoch {}) was not renewed in time, so another writer may \
                 hold it now",
                s.record.epoch
            ));
        }
        match &s.fenced {
            None => Ok(()),
            Some(reason) => Err(self.fenced(reason.clone())),
        }
    }

    /// Writes the record changed by `change` (and a new expiry) with a
    /// compare-and-swap on the version this chest last wrote; fences the
    /// chest if another writer has written since. The state's lock is held
    /// throughout, so updates are serialized; `check` waits meanwhile, which
    /// is right: the lease's fate is being decided.
    fn update(&self, change: impl FnOnce(&mut Record)) -> Result<()> {
        // Updates are serialized by `io`; `state` is only held for moments,
        // so `check` never waits for a request.
        let _io = self.io.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut record, version) = {
            let s = self.state();
            if let Some(reason) = &s.fenced {
                return Err(self.fenced(reason.clone()));
            }
            (s.record.clone(), s.version.clone())
        };
        let epoch = record.epoch;
        change(&mut record);
        let sent = Instant::now();
        if !record.released {
            record.expires_ms = unix_ms() + self.ttl.as_millis() as u64;
        }
        let mut version = version;
        let mut tries = 0;
        let version = loop {
            tries += 1;
            let e = match write(&*self.backend, &record, PutMode::Update(version.clone())) {
                Ok(v) => break v,
                Err(e @ BackendError::Conflict { .. }) => e,
                // Unknown whether it landed: the next update finds out.
                Err(e) => return Err(e.into()),
            };
            match read_own(&*self.backend, &record)? {
                // An earlier write of ours landed although it failed: take
                // its version (and keep every id it reserved), then write.
                Some((v, stored)) if tries < 3 => {
                    version = v;
                    record.ids_below = record.ids_below.max(stored.ids_below);
                    let mut s = self.state();
                    s.record.ids_below = s.record.ids_below.max(stored.ids_below);
                }
                Some(_) => return Err(e.into()),
                None => {
                    let reason = match read(&*self.backend) {
                        Ok(found) => lost_reason(epoch, found.as_ref()),
                        Err(e) => {
                            format!("its writer lease (epoch {epoch}) changed under it ({e})")
                        }
                    };
                    return Err(self.lose(reason));
                }
            }
        };
        let mut s = self.state();
        s.version = version;
        // A deadline that passed while the request was out has fenced the
        // chest already (`check`); it stays fenced.
        s.deadline = s.deadline.max(sent + self.ttl * 3 / 4);
        self.ids_below.store(record.ids_below, Ordering::Release);
        s.record = record;
        Ok(())
    }

    /// Fences the chest for `reason` (the first reason stays) and returns
    /// the error to report.
    fn lose(&self, reason: String) -> Error {
        self.state().fenced.get_or_insert(reason.clone());
        self.fenced(reason)
    }

    fn fenced(&self, reason: String) -> Error {
        Error::Fenced {
            location: self.backend.location().to_string(),
            reason,
        }
    }

    fn renew_loop(&self) {
        let period = (self.ttl / 6).max(Duration::from_millis(10));
        loop {
            {
                let stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
                // Checks `stop` before waiting too: a stop set while this
                // thread was renewing is not missed.
                let (stop, _) = self
                    .wake
                    .wait_timeout_while(stop, period, |stop| !*stop)
                    .unwrap_or_else(PoisonError::into_inner);
                if *stop {
                    return;
                }
            }
            if self.check().is_err() {
                return;
            }
            match self.update(|_| {}) {
                Ok(()) => {}
                Err(e @ Error::Fenced { .. }) => {
                    tracing::error!(error = %e, "lost the writer lease");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "renewing the writer lease failed; retrying"),
            }
        }
    }
}

/// Why a lease of `epoch` is no longer ours, from what the lease object
/// holds now (`None`: nothing).
fn lost_reason(epoch: u64, found: Option<&Record>) -> String {
    match found {
        Some(other) => format!(
            "its writer lease (epoch {epoch}) was taken over by {}",
            other.describe()
        ),
        None => format!("its writer lease (epoch {epoch}) was deleted by someone else"),
    }
}

fn locked(backend: &dyn Backend, held: &Record) -> Error {
    BackendError::Locked {
        location: backend.location().to_string(),
        detail: format!(
            "another chest holds its writer lease: {} (open it read-only, or wait for that \
             writer to close)",
            held.describe()
        ),
    }
    .into()
}

fn encode(record: &Record) -> Bytes {
    let mut out = Vec::with_capacity(128);
    ciborium::into_writer(record, &mut out).expect("a lease record always encodes");
    Bytes::from(out)
}

fn decode(backend: &dyn Backend, bytes: &[u8]) -> Result<Record> {
    ciborium::from_reader(bytes).map_err(|e| Error::Manifest {
        location: backend.location().to_string(),
        detail: format!(
            "the writer lease object `{LEASE}` is unreadable ({e}); if no writer is open, \
             delete it"
        ),
    })
}

fn write(
    backend: &dyn Backend,
    record: &Record,
    condition: PutMode,
) -> std::result::Result<ObjectVersion, BackendError> {
    backend.put_if(LEASE, encode(record), condition)
}

fn read(backend: &dyn Backend) -> Result<Option<Record>> {
    match backend.get(LEASE) {
        Ok(bytes) => Ok(Some(decode(backend, &bytes)?)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// After a refused or failed write of `record`: the object's version and
/// contents if it is still this holder's lease (same epoch and token) — an
/// earlier write of ours landed although it reported an error, or a retried
/// request was refused after its first attempt went through.
fn read_own(backend: &dyn Backend, record: &Record) -> Result<Option<(ObjectVersion, Record)>> {
    match backend.get_versioned(LEASE) {
        Ok((bytes, version)) => {
            let stored = decode(backend, &bytes)?;
            let ours = stored.epoch == record.epoch && stored.token == record.token;
            Ok(ours.then_some((version, stored)))
        }
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `ms` (Unix time) as an ISO 8601 UTC time, to the second.
fn format_unix_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn random_token() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// The machine's name, as far as it can be found without a dependency.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_utc() {
        assert_eq!(format_unix_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix_ms(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_unix_ms(1_795_999_999_000), "2026-11-30T00:53:19Z");
    }
}
