//! A chest's durable state in its location: the marker and the numbered
//! manifests — found at open, committed by every flush.
//!
//! Names (all the chest's own; nothing else in the location is touched):
//!
//! ```text
//! chest                      the marker, written when a chest is created
//!                            (then the empty manifest number 1)
//! lease                      the writer lease, on stores that keep to one
//!                            writer with one (see `lease`)
//! manifest.<16 hex digits>   the manifests, numbered by flush (`manifest` alone:
//!                            the one manifest of format-1 chests, number 0)
//! data/<8 hex digits>        value objects (see `record`)
//! ```
//!
//! A flush writes the next manifest under a new name with
//! [`BackendExt::put_durable`] (on a local directory: temporary file, fsync,
//! rename, fsync of the directory), after a [`Backend::sync`] has made the
//! values it names durable. Only then are the manifests before the previous
//! one deleted: the newest and the one before it are always kept. At open,
//! the newest manifest that decodes is used; a damaged newer one (torn by a
//! power loss on a store that does not honour `put_durable`) is skipped, so
//! a crash can cost at most the last flush. If no manifest decodes, the open
//! fails: a chest is never silently taken for empty.

use bytes::Bytes;

use super::lease::LEASE;
use super::manifest::{self, DecodeError, Manifest};
use crate::backend::BackendExt;
use crate::backend::{Backend, PutMode};
use crate::error::{BackendError, Error, Result};

/// Name of the marker object.
pub(crate) const MARKER: &str = "chest";
/// Contents of the marker (read back: anything starting with `chest` counts).
const MARKER_BYTES: &[u8] =
    b"chest: a spill-to-disk dictionary lives here (https://docs.rs/chest)\n";
const MANIFEST_PREFIX: &str = "manifest";
/// Name of the single manifest of chests written before manifests were numbered.
const LEGACY_MANIFEST: &str = "manifest";
/// How many names of a foreign location an error shows.
const SHOWN: usize = 5;

/// The name of manifest number `seq` (0: the single manifest of a format-1
/// chest); the inverse of [`parse_manifest_name`].
pub(crate) fn manifest_name(seq: u64) -> String {
    if seq == 0 {
        LEGACY_MANIFEST.to_string()
    } else {
        format!("{MANIFEST_PREFIX}.{seq:016x}")
    }
}

/// The number of a manifest's name; `None` for any other name.
pub(crate) fn parse_manifest_name(name: &str) -> Option<u64> {
    if name == LEGACY_MANIFEST {
        return Some(0);
    }
    let hex = name.strip_prefix(MANIFEST_PREFIX)?.strip_prefix('.')?;
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// What a location holds.
pub(crate) enum Found {
    /// A chest: its newest readable manifest (`None`: created, never flushed).
    Chest(Option<Box<Loaded>>),
    /// Nothing at all: a chest may be created here.
    Empty,
}

/// A manifest read at open.
pub(crate) struct Loaded {
    pub manifest: Manifest,
    /// Its bytes as stored (a writer's fence copies them).
    pub raw: Bytes,
    /// The manifest before it, if it is there and readable.
    pub previous: Option<Manifest>,
    /// Newer manifests that were damaged and skipped (with why).
    pub skipped: Vec<(u64, String)>,
}

/// The manifests known to exist, for the next commit.
#[derive(Debug, Default)]
pub(crate) struct Manifests {
    /// The number of the manifest the chest's state was read from or last
    /// committed to (`None`: none yet).
    pub current: Option<u64>,
    /// Other manifests in the location (older ones, damaged ones), deleted
    /// once a newer manifest is durable.
    pub others: Vec<u64>,
    /// The highest number seen: the next manifest gets a higher one.
    pub highest: Option<u64>,
    /// What was found torn at open of a chest whose creation a crash cut
    /// short (its marker, or its creation manifest — empty by construction
    /// — left empty or cut short): the chest is taken as not yet created,
    /// and these are reported as damaged.
    pub torn_creation: Vec<String>,
    /// A conditional manifest write whose outcome is unknown (it failed
    /// with an error, not a refusal): its number and bytes. The next commit
    /// tries that number again, so a writer never skips a number — a
    /// skipped number would let a late write of it land above a new
    /// holder's fence.
    pub uncertain: Option<(u64, Bytes)>,
}

impl Manifests {
    pub fn next_seq(&self) -> u64 {
        self.highest.map_or(1, |h| h + 1)
    }
}

fn manifest_error(location: &str, detail: String) -> Error {
    Error::Manifest {
        location: location.to_string(),
        detail,
    }
}

/// Finds what `backend` holds: a chest (and its newest readable manifest),
/// nothing, or something else (an error naming what is there).
pub(crate) fn discover(backend: &dyn Backend, known: &mut Manifests) -> Result<Found> {
    for _ in 0..DISCOVER_TRIES {
        if let Some(found) = discover_once(backend, known)? {
            return Ok(found);
        }
    }
    Err(manifest_error(
        backend.location(),
        format!(
            "it kept changing while it was read ({DISCOVER_TRIES} tries: manifests listed and \
             then gone, or a chest appearing): a writer is busy there; try again"
        ),
    ))
}

/// How many times [`discover`] looks again when the location changed while
/// it looked: every manifest it listed was gone by the time it read it (a
/// writer beside a reader moved on), or a chest appeared (a writer created
/// it).
const DISCOVER_TRIES: usize = 5;

/// One listing and reading; `None`: the location changed while it looked
/// (so the answer is unknown, not "no chest" nor "not a chest").
fn discover_once(backend: &dyn Backend, known: &mut Manifests) -> Result<Option<Found>> {
    let location = backend.location();
    let mut vanished = false;
    let seqs = manifest_numbers(backend)?;
    known.highest = seqs.first().copied();
    let mut skipped = Vec::new();
    for (i, &seq) in seqs.iter().enumerate() {
        let name = manifest_name(seq);
        let bytes = match backend.get(&name) {
            Ok(b) => b,
            // Listed, then gone (a writer deleted it as superseded).
            Err(e) if e.is_not_found() => {
                vanished = true;
                continue;
            }
            // A layer could not decode it (a torn compressed manifest, or
            // one not written through this layer): damaged, as far as this
            // URL can tell.
            Err(e @ BackendError::Corrupt { .. }) => {
                skipped.push((seq, e.to_string()));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        match manifest::decode(bytes.clone()) {
            Ok(manifest) => {
                known.current = Some(seq);
                known.others = seqs[..i].iter().chain(&seqs[i + 1..]).copied().collect();
                // The manifest kept before it: its objects are spared until
                // a newer pair of manifests no longer needs them.
                let previous = seqs.get(i + 1).and_then(|&p| {
                    let bytes = backend.get(&manifest_name(p)).ok()?;
                    manifest::decode(bytes).ok()
                });
                return Ok(Some(Found::Chest(Some(Box::new(Loaded {
                    manifest,
                    raw: bytes,
                    previous,
                    skipped,
                })))));
            }
            Err(DecodeError::Damaged(detail)) => skipped.push((seq, format!("{name}: {detail}"))),
            Err(DecodeError::Foreign(detail)) => {
                return Err(manifest_error(location, format!("{name}: {detail}")))
            }
        }
    }
    if vanished {
        return Ok(None);
    }
    if !skipped.is_empty() && seqs == [CREATION_MANIFEST] && marker_is_whole(backend)? {
        // Every chest is created with an empty manifest number 1, written
        // durably after its marker; the first flush writes number 2. Only
        // that manifest, damaged, beside a whole marker: the creation was
        // cut short by a crash (a `put_durable` that is not atomic) — the
        // chest is as created. (A chest of an older build, created without
        // one, whose first flush's manifest 1 is the only one and damaged,
        // reads the same: its keys are unknowable either way.)
        known.highest = Some(CREATION_MANIFEST);
        known.others = vec![CREATION_MANIFEST];
        known.torn_creation = skipped
            .into_iter()
            .map(|(_, d)| format!("{d} (the chest's creation was cut short; taken as empty)"))
            .collect();
        return Ok(Some(Found::Empty));
    }
    if !skipped.is_empty() {
        let details: Vec<String> = skipped.into_iter().map(|(_, d)| d).collect();
        return Err(manifest_error(
            location,
            format!(
                "no manifest is readable, so the chest's keys cannot be known ({})",
                details.join("; ")
            ),
        ));
    }
    match backend.get(MARKER) {
        Ok(bytes) if bytes.starts_with(b"chest") => return Ok(Some(Found::Chest(None))),
        Ok(bytes) if MARKER_BYTES.starts_with(&bytes) => {
            // A marker cut short (empty, or a part of its first bytes): a
            // crash cut the chest's creation short, before anything else
            // was written — if nothing else is there, it is not created yet.
            let names = backend.list("")?;
            if names.iter().all(|n| n == MARKER || is_lease_name(n)) {
                known.torn_creation = vec![format!(
                    "{MARKER}: the marker is cut short ({} bytes; the chest's creation was cut \
                     short, and is done again)",
                    bytes.len()
                )];
                return Ok(Some(Found::Empty));
            }
            return Err(not_a_chest(backend, Some(&bytes)));
        }
        Ok(bytes) => return Err(not_a_chest(backend, Some(&bytes))),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    let names = backend.list("")?;
    if names.iter().all(|n| is_lease_name(n)) {
        Ok(Some(Found::Empty))
    } else if names
        .iter()
        .any(|n| n == MARKER || parse_manifest_name(n).is_some())
    {
        // A writer created the chest while this looked (its marker or
        // manifest appeared after the reads above): look again.
        Ok(None)
    } else {
        Err(not_a_chest(backend, None))
    }
}

/// The number of the newest manifest in the location (`None`: none).
pub(crate) fn newest(backend: &dyn Backend) -> Result<Option<u64>> {
    Ok(manifest_numbers(backend)?.first().copied())
}

/// The numbers of the manifests in the location, newest first.
fn manifest_numbers(backend: &dyn Backend) -> Result<Vec<u64>> {
    let mut seqs: Vec<u64> = backend
        .list(MANIFEST_PREFIX)?
        .iter()
        .filter_map(|n| parse_manifest_name(n))
        .collect();
    seqs.sort_unstable_by(|a, b| b.cmp(a));
    seqs.dedup();
    Ok(seqs)
}

/// The writer lease, or a scratch object of a backend's probe of its
/// conditional writes (`lease.probe-` and 16 hex digits): a location holding
/// only these holds no chest yet.
fn is_lease_name(name: &str) -> bool {
    name == LEASE
        || name.strip_prefix("lease.probe-").is_some_and(|hex| {
            hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
}

/// The error for a location that holds objects but no chest.
fn not_a_chest(backend: &dyn Backend, marker: Option<&Bytes>) -> Error {
    let names = backend.list("").unwrap_or_default();
    let mut found: Vec<String> = names.iter().take(SHOWN).cloned().collect();
    if names.len() > SHOWN {
        found.push(format!("and {} more", names.len() - SHOWN));
    }
    let hint = match marker {
        Some(b) if b.starts_with(b"CHZS") => {
            " (its objects were written through the zstd layer: open it with a `zstd+` URL)"
        }
        Some(_) => " (it has an object named `chest` that is not a chest's marker)",
        None => "",
    };
    Error::NotAChest {
        location: backend.location().to_string(),
        found: format!("{}{hint}", found.join(", ")),
    }
}

/// The number of the manifest every chest is created with (empty; see
/// [`create`]): its first flush writes the next one.
pub(crate) const CREATION_MANIFEST: u64 = 1;

/// Writes the marker of a new chest, durably; the store then commits the
/// empty creation manifest. So a crash that tears what a creation wrote
/// (on a store whose `put_durable` is not atomic) is recognised at open:
/// a marker cut short with nothing else, or a damaged creation manifest
/// alone beside a whole marker — and a torn first flush's manifest falls
/// back to the creation manifest, as any torn newest manifest does.
pub(crate) fn create(backend: &dyn Backend) -> Result<()> {
    backend.put_durable(MARKER, Bytes::from_static(MARKER_BYTES))?;
    Ok(())
}

/// Whether the marker is there, whole.
fn marker_is_whole(backend: &dyn Backend) -> Result<bool> {
    match backend.get(MARKER) {
        Ok(bytes) => Ok(bytes.as_ref() == MARKER_BYTES || bytes.starts_with(b"chest: ")),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Commits `manifest` as the next manifest: the values it names are made
/// durable first, then the manifest itself. Returns the manifests that are
/// now superseded (to delete once nothing else is pending).
///
/// `conditional` (a store with a writer lease): the manifest is written with
/// a create-only write, so a writer that lost its lease cannot replace a
/// newer writer's manifest; finding its number taken is [`Error::Fenced`].
pub(crate) fn commit(
    backend: &dyn Backend,
    known: &mut Manifests,
    manifest: Vec<u8>,
    conditional: bool,
) -> Result<Vec<String>> {
    backend.sync()?;
    let data = Bytes::from(manifest);
    let seq = if conditional {
        commit_conditional(backend, known, data)?
    } else {
        let seq = known.next_seq();
        // Whatever happens next, this number may now exist (even
        // half-written): never reuse it.
        known.highest = Some(seq);
        backend.put_durable(&manifest_name(seq), data)?;
        seq
    };
    // Keep the new manifest and the one before it; the rest go.
    let mut doomed: Vec<u64> = std::mem::take(&mut known.others);
    let previous = known.current.replace(seq);
    known.others.extend(previous);
    doomed.retain(|&s| Some(s) != previous && s != seq);
    Ok(doomed.into_iter().map(manifest_name).collect())
}

/// Creates the next manifest with a create-only write; returns its number.
/// A number that an earlier attempt of this writer may have written (see
/// [`Manifests::uncertain`]) is tried again first; if that attempt did
/// land, it counts as this writer's manifest and the next number is used.
fn commit_conditional(backend: &dyn Backend, known: &mut Manifests, data: Bytes) -> Result<u64> {
    let mut seq = match &known.uncertain {
        Some((s, _)) => *s,
        None => known.next_seq(),
    };
    loop {
        let name = manifest_name(seq);
        known.highest = Some(known.highest.map_or(seq, |h| h.max(seq)));
        let found = match create_only(backend, &name, data.clone()) {
            Ok(Created::Written) => {
                known.uncertain = None;
                return Ok(seq);
            }
            Ok(Created::Taken(found)) => found,
            Err(e) => {
                known.uncertain = Some((seq, data));
                return Err(e);
            }
        };
        match known.uncertain.take() {
            Some((s, earlier)) if s == seq && found.as_ref() == Some(&earlier) => {
                // An earlier attempt landed after all: it is this writer's
                // manifest; this one goes after it.
                if let Some(previous) = known.current.replace(seq) {
                    known.others.push(previous);
                }
                seq += 1;
            }
            _ => {
                return Err(Error::Fenced {
                    location: backend.location().to_string(),
                    reason: format!(
                        "another writer committed {name} first (it holds the writer lease now)"
                    ),
                })
            }
        }
    }
}

/// What a create-only write found.
enum Created {
    /// The object is ours: written now, or by an earlier attempt of this very
    /// request (a retried request is answered as refused when its first
    /// attempt went through, so identical bytes count as ours).
    Written,
    /// Something else has the name: its bytes (`None`: gone again since).
    Taken(Option<Bytes>),
}

/// Writes `data` under `name` only if nothing has that name.
fn create_only(backend: &dyn Backend, name: &str, data: Bytes) -> Result<Created> {
    match backend.put_if(name, data.clone(), PutMode::Create) {
        Ok(_) => Ok(Created::Written),
        Err(BackendError::Conflict { .. }) => match backend.get(name) {
            Ok(found) if found == data => Ok(Created::Written),
            Ok(found) => Ok(Created::Taken(Some(found))),
            Err(e) if e.is_not_found() => Ok(Created::Taken(None)),
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Writes `raw` (the newest manifest's bytes) as the next manifest with a
/// create-only write: the fence of a writer that took over an expired
/// lease. `Ok(false)`: the number is taken (a newer manifest appeared).
pub(crate) fn fence(backend: &dyn Backend, known: &mut Manifests, raw: Bytes) -> Result<bool> {
    let seq = known.next_seq();
    backend.sync()?;
    known.highest = Some(seq);
    if let Created::Taken(_) = create_only(backend, &manifest_name(seq), raw)? {
        return Ok(false);
    }
    // The fence is now the current manifest; the one it copies stays as
    // the previous, the others go at the next commit.
    if let Some(previous) = known.current.replace(seq) {
        known.others.push(previous);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_names_round_trip_and_sort_by_number() {
        for seq in [0u64, 1, 9, 10, 0xffff, u64::MAX] {
            assert_eq!(parse_manifest_name(&manifest_name(seq)), Some(seq));
        }
        assert!(manifest_name(9) < manifest_name(10));
        assert_eq!(parse_manifest_name("manifest"), Some(0));
        for other in [
            "manifest.1",
            "manifest.000000000000000G",
            "manifests",
            "manifest.0000000000000001.tmp",
            "chest",
        ] {
            assert_eq!(parse_manifest_name(other), None, "{other}");
        }
    }
}
