//! A persistent face gallery: named identities with one or more embeddings, stored in SQLite
//! (WAL mode, busy timeout, versioned schema), searched in memory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tracing::{debug, info};

use crate::embed::{cosine, l2_normalize, SFACE_COSINE_THRESHOLD};
use crate::index::{EmbeddingIndex, Match, RowSource, RowStorage, SearchPrecision};
use crate::{Error, Result};

/// The schema version this build writes and the newest it reads.
pub const SCHEMA_VERSION: i64 = 1;

/// `PRAGMA application_id` of edgeai galleries ("EAIG").
const APPLICATION_ID: i64 = 0x4541_4947;

/// Gallery settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GalleryConfig {
    /// Embedding dimension of a new gallery (an existing gallery keeps its own).
    pub dim: usize,
    /// Cosine similarity at or above which two faces are the same person.
    pub threshold: f32,
    /// Search precision.
    pub precision: SearchPrecision,
    /// Search threads.
    pub threads: usize,
    /// How long to wait for another process's write lock before failing.
    pub busy_timeout: Duration,
    /// Whether the in-memory index keeps an `f32` copy of every embedding
    /// ([`RowStorage::F32AndInt8`], `5 dim + 4` bytes per embedding) or int8 only
    /// ([`RowStorage::Int8Only`], `dim + 4`: about 0.6 kB instead of 2.7 kB per identity at
    /// 512-d, so a million faces fit a 4 GB Raspberry Pi). Without it, `Int8` and
    /// `Int8Rerank` re-score their shortlist (a few dozen rows per query) with the `f32`
    /// embeddings read back from the SQLite file, and [`SearchPrecision::F32`] (a scan of
    /// every `f32` row) is refused; [`SearchPrecision::Int8Scan`] reads nothing from the file.
    pub f32_in_memory: bool,
}

impl Default for GalleryConfig {
    /// SFace: 128-d, the OpenCV zoo cosine threshold 0.363, f32, one thread, 5 s, `f32`
    /// rows in memory.
    fn default() -> Self {
        GalleryConfig {
            dim: 128,
            threshold: SFACE_COSINE_THRESHOLD,
            precision: SearchPrecision::F32,
            threads: 1,
            busy_timeout: Duration::from_secs(5),
            f32_in_memory: true,
        }
    }
}

impl GalleryConfig {
    /// The index storage this configuration asks for.
    fn storage(&self) -> RowStorage {
        if self.f32_in_memory {
            RowStorage::F32AndInt8
        } else {
            RowStorage::Int8Only
        }
    }

    /// Refuses a precision the storage cannot serve.
    fn check(&self) -> Result<()> {
        if !self.f32_in_memory && self.precision == SearchPrecision::F32 {
            return Err(Error::InvalidArgument(
                "SearchPrecision::F32 scans every f32 embedding in memory: with \
                 f32_in_memory = false search Int8, Int8Rerank or Int8Scan"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The `f32` embeddings of a gallery's SQLite file, by embedding row id: where an
/// int8-only index re-scores its shortlist from.
struct StoredRows<'a> {
    conn: &'a Connection,
}

impl RowSource for StoredRows<'_> {
    fn fetch_row(&self, key: u64, out: &mut [f32]) -> Result<bool> {
        let Ok(id) = i64::try_from(key) else {
            return Ok(false);
        };
        let blob: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT vector FROM embeddings WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        let Some(v) = blob.and_then(|b| decode(&b, out.len())) else {
            return Ok(false);
        };
        out.copy_from_slice(&v);
        // As loaded into the index (which normalises what it is given): the same values.
        l2_normalize(out)?;
        Ok(true)
    }
}

/// The answer of [`Gallery::identify`].
#[derive(Debug, Clone, PartialEq)]
pub struct Identification {
    /// Up to k identities, best first, whatever their score.
    pub candidates: Vec<Match>,
    /// The threshold applied.
    pub threshold: f32,
}

impl Identification {
    /// The best candidate if it reaches the threshold; `None` means "unknown person".
    pub fn best(&self) -> Option<&Match> {
        self.candidates
            .first()
            .filter(|m| m.score >= self.threshold)
    }

    /// True when no candidate reaches the threshold.
    pub fn is_unknown(&self) -> bool {
        self.best().is_none()
    }
}

/// A short label for a result: `"name 0.62"` for a match, `"unknown (closest name 0.21)"`
/// below the threshold, `"unknown (empty gallery)"` with no candidate.
///
/// ```
/// use edgeai_vision::gallery::Identification;
/// use edgeai_vision::index::Match;
/// let m = |name: &str, score| Match { name: name.into(), score };
/// let id = |candidates| Identification { candidates, threshold: 0.363 };
/// assert_eq!(id(vec![m("obama", 0.71)]).to_string(), "obama 0.71");
/// assert_eq!(id(vec![m("biden", 0.12)]).to_string(), "unknown (closest biden 0.12)");
/// assert_eq!(id(vec![]).to_string(), "unknown (empty gallery)");
/// ```
impl std::fmt::Display for Identification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.best(), self.candidates.first()) {
            (Some(m), _) => write!(f, "{} {:.2}", m.name, m.score),
            (None, Some(m)) => write!(f, "unknown (closest {} {:.2})", m.name, m.score),
            (None, None) => f.write_str("unknown (empty gallery)"),
        }
    }
}

/// The answer of [`Gallery::verify`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verification {
    /// Cosine similarity of the two embeddings.
    pub score: f32,
    /// The threshold applied.
    pub threshold: f32,
    /// `score >= threshold`.
    pub same_person: bool,
}

/// Whether two embeddings are the same person under `threshold` (cosine similarity).
pub fn verify(a: &[f32], b: &[f32], threshold: f32) -> Result<Verification> {
    if a.len() != b.len() || a.is_empty() {
        return Err(Error::InvalidEmbedding(format!(
            "cannot compare embeddings of dimensions {} and {}",
            a.len(),
            b.len()
        )));
    }
    if a.iter().chain(b).any(|x| !x.is_finite()) {
        return Err(Error::InvalidEmbedding("a value is not finite".into()));
    }
    let score = cosine(a, b);
    Ok(Verification {
        score,
        threshold,
        same_person: score >= threshold,
    })
}

/// A named-identity face gallery backed by a SQLite file (or memory).
///
/// Every enrolment is one transaction: after [`Gallery::enroll`] returns, the identity
/// survives a crash of the process; before, none of its embeddings are stored. The file uses
/// WAL journaling so readers in other processes are not blocked by a writer.
pub struct Gallery {
    conn: Connection,
    path: Option<PathBuf>,
    index: EmbeddingIndex,
    config: GalleryConfig,
}

impl std::fmt::Debug for Gallery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gallery")
            .field("path", &self.path)
            .field("index", &self.index)
            .field("config", &self.config)
            .finish()
    }
}

fn not_gallery(path: &Path, reason: impl Into<String>) -> Error {
    Error::NotAGallery {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn is_not_a_database(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase
    )
}

fn encode(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode(blob: &[u8], dim: usize) -> Option<Vec<f32>> {
    if blob.len() != dim * 4 {
        return None;
    }
    Some(
        blob.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

const SCHEMA: &str = "
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE gallery_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE identities (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE TABLE embeddings (
    id INTEGER PRIMARY KEY,
    identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    vector BLOB NOT NULL
);
CREATE INDEX embeddings_identity ON embeddings(identity_id);
";

impl Gallery {
    /// Where a user's gallery lives by default, by the XDG base-directory rule:
    /// `$XDG_DATA_HOME/edgeai/gallery.sqlite`, else `$HOME/.local/share/edgeai/gallery.sqlite`,
    /// else `./edgeai/gallery.sqlite`. The library reads no environment variables: pass their
    /// values (`std::env::var_os("XDG_DATA_HOME")`, `std::env::var_os("HOME")`).
    ///
    /// ```
    /// use edgeai_vision::Gallery;
    /// let p = Gallery::default_path(None, Some("/home/pi".into()));
    /// assert_eq!(p, std::path::Path::new("/home/pi/.local/share/edgeai/gallery.sqlite"));
    /// ```
    pub fn default_path(
        xdg_data_home: Option<std::ffi::OsString>,
        home: Option<std::ffi::OsString>,
    ) -> PathBuf {
        let base = xdg_data_home
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| home.map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("edgeai").join("gallery.sqlite")
    }

    /// As [`Gallery::open`], creating the file's folder first if it does not exist (a first
    /// run at [`Gallery::default_path`]).
    pub fn open_creating(path: impl AsRef<Path>, config: GalleryConfig) -> Result<Self> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        Self::open(path, config)
    }

    /// Opens the gallery at `path`, creating it if the file does not exist (the folder must).
    ///
    /// Errors, without modifying the file, when it is not an edgeai gallery (another SQLite
    /// database, or not SQLite at all) or was written with a newer schema.
    pub fn open(path: impl AsRef<Path>, config: GalleryConfig) -> Result<Self> {
        let path = path.as_ref();
        // Refuse non-SQLite files before SQLite touches them.
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.is_dir() {
                return Err(not_gallery(path, "it is a directory"));
            }
            if meta.len() > 0 {
                let mut head = [0u8; 16];
                let n = std::io::Read::read(
                    &mut std::fs::File::open(path).map_err(|e| Error::io(path, e))?,
                    &mut head,
                )
                .map_err(|e| Error::io(path, e))?;
                if n < 16 || &head != b"SQLite format 3\0" {
                    return Err(not_gallery(path, "not a SQLite database"));
                }
            }
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| {
            if is_not_a_database(&e) {
                not_gallery(path, "not a SQLite database")
            } else {
                Error::Database(e)
            }
        })?;
        Self::init(conn, Some(path.to_path_buf()), config)
    }

    /// A gallery that lives in memory only (tests, benchmarks, throw-away sessions).
    pub fn open_in_memory(config: GalleryConfig) -> Result<Self> {
        Self::init(Connection::open_in_memory()?, None, config)
    }

    fn init(mut conn: Connection, path: Option<PathBuf>, config: GalleryConfig) -> Result<Self> {
        config.check()?;
        let shown = path.clone().unwrap_or_else(|| PathBuf::from(":memory:"));
        conn.busy_timeout(config.busy_timeout)?;
        let map_nadb = |e: rusqlite::Error| {
            if is_not_a_database(&e) {
                not_gallery(&shown, "not a SQLite database")
            } else {
                Error::Database(e)
            }
        };
        // Read-only inspection first: a foreign file is left exactly as it was.
        let tables: Vec<String> = {
            let mut st = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                .map_err(map_nadb)?;
            let rows = st
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(map_nadb)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_nadb)?
        };
        if tables.is_empty() {
            Self::create_schema(&mut conn, &config)?;
        } else if !tables.iter().any(|t| t == "schema_version") {
            return Err(not_gallery(
                &shown,
                format!(
                    "a SQLite database without edgeai's tables (has: {})",
                    tables.join(", ")
                ),
            ));
        }
        let app_id: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        if app_id != APPLICATION_ID {
            return Err(not_gallery(
                &shown,
                format!("application id {app_id:#x}, not edgeai's {APPLICATION_ID:#x}"),
            ));
        }
        let version: Option<i64> = conn
            .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
            .optional()?
            .flatten();
        match version {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(Error::NewerSchema {
                    path: shown,
                    found: v,
                    supported: SCHEMA_VERSION,
                })
            }
            Some(v) if v == SCHEMA_VERSION => {}
            other => {
                return Err(not_gallery(
                    &shown,
                    format!("unknown schema version {other:?}"),
                ))
            }
        }
        if path.is_some() {
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                debug!(mode, "WAL journaling not available");
            }
        }
        // FULL: a commit is on disk when `enroll` returns (also across power loss).
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        let dim: usize = conn
            .query_row(
                "SELECT value FROM gallery_meta WHERE key = 'dim'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| not_gallery(&shown, "no embedding dimension recorded"))?;
        let index = Self::load_index(&conn, dim, &config)?;
        info!(
            path = %shown.display(),
            identities = index.len(),
            embeddings = index.embeddings(),
            "gallery opened"
        );
        Ok(Gallery {
            conn,
            path,
            index,
            config,
        })
    }

    /// Reads every stored embedding into a new index (keyed by embedding row id), sized
    /// exactly for them first.
    fn load_index(conn: &Connection, dim: usize, config: &GalleryConfig) -> Result<EmbeddingIndex> {
        let mut index = EmbeddingIndex::with_storage(dim, config.storage())?;
        index.set_threads(config.threads)?;
        let count = |sql: &str| -> Result<usize> {
            let n: i64 = conn.query_row(sql, [], |r| r.get(0))?;
            Ok(usize::try_from(n).unwrap_or(0))
        };
        index.reserve(
            count("SELECT count(*) FROM identities")?,
            count("SELECT count(*) FROM embeddings")?,
        );
        let mut st = conn.prepare(
            "SELECT i.name, e.id, e.vector FROM embeddings e JOIN identities i ON i.id = e.identity_id
             ORDER BY i.id, e.id",
        )?;
        let mut rows = st.query([])?;
        while let Some(row) = rows.next()? {
            let name: String = row.get(0)?;
            let key: i64 = row.get(1)?;
            let blob: Vec<u8> = row.get(2)?;
            let v = decode(&blob, dim).ok_or_else(|| {
                Error::InvalidEmbedding(format!(
                    "stored embedding of `{name}` has {} bytes, expected {}",
                    blob.len(),
                    dim * 4
                ))
            })?;
            index.add_keyed(&name, &[(key as u64, v)])?;
        }
        Ok(index)
    }

    fn create_schema(conn: &mut Connection, config: &GalleryConfig) -> Result<()> {
        if config.dim == 0 {
            return Err(Error::InvalidArgument("embedding dimension 0".into()));
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process may have created it while we waited for the lock.
        let exists: i64 = tx.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
            [],
            |r| r.get(0),
        )?;
        if exists == 0 {
            tx.execute_batch(SCHEMA)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [SCHEMA_VERSION],
            )?;
            tx.execute(
                "INSERT INTO gallery_meta (key, value) VALUES ('dim', ?1)",
                [config.dim.to_string()],
            )?;
            tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The file, or `None` for an in-memory gallery.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The settings.
    pub fn config(&self) -> &GalleryConfig {
        &self.config
    }

    /// Changes threshold, precision, threads and `f32_in_memory` (the dimension is fixed by
    /// the file). A change of `f32_in_memory` reloads the index from the file (as
    /// [`Gallery::open`] does); an `f32` precision without `f32` rows in memory is refused.
    pub fn set_config(&mut self, config: GalleryConfig) -> Result<()> {
        config.check()?;
        if config.f32_in_memory != self.config.f32_in_memory {
            self.index = Self::load_index(&self.conn, self.index.dim(), &config)?;
        }
        self.index.set_threads(config.threads)?;
        self.conn.busy_timeout(config.busy_timeout)?;
        self.config = GalleryConfig {
            dim: self.index.dim(),
            ..config
        };
        Ok(())
    }

    /// The in-memory search index.
    pub fn index(&self) -> &EmbeddingIndex {
        &self.index
    }

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when nobody is enrolled.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Enrols `embeddings` (one per photo) under `name`, adding to the identity if it exists.
    /// All-or-nothing: one transaction; on error nothing is stored.
    pub fn enroll(&mut self, name: &str, embeddings: &[Vec<f32>]) -> Result<()> {
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::InvalidArgument("empty identity name".into()));
        }
        if embeddings.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "no embeddings to enrol for `{name}`"
            )));
        }
        let normed = embeddings
            .iter()
            .map(|e| self.index.normalized(e))
            .collect::<Result<Vec<_>>>()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO identities (name, created_at) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
            params![name, now],
        )?;
        let id: i64 = tx.query_row("SELECT id FROM identities WHERE name = ?1", [name], |r| {
            r.get(0)
        })?;
        let mut keyed = Vec::with_capacity(normed.len());
        {
            let mut st =
                tx.prepare_cached("INSERT INTO embeddings (identity_id, vector) VALUES (?1, ?2)")?;
            for v in normed {
                st.execute(params![id, encode(&v)])?;
                keyed.push((tx.last_insert_rowid() as u64, v));
            }
        }
        tx.commit()?;
        self.index.add_keyed(name, &keyed)?;
        debug!(name, embeddings = keyed.len(), "enrolled");
        Ok(())
    }

    /// Removes identity `name`; returns whether it existed.
    pub fn remove(&mut self, name: &str) -> Result<bool> {
        let n = self
            .conn
            .execute("DELETE FROM identities WHERE name = ?1", [name.trim()])?;
        self.index.remove(name.trim())?;
        Ok(n > 0)
    }

    /// `(name, embedding count)` per identity: in enrolment order as stored, except that a
    /// [`Gallery::remove`] in this session moves the most recently enrolled identity into
    /// the removed one's place ([`EmbeddingIndex::identities`]); a reopened gallery lists
    /// in enrolment order again.
    pub fn list(&self) -> Vec<(String, usize)> {
        self.index
            .identities()
            .map(|(n, c)| (n.to_string(), c))
            .collect()
    }

    /// The `k` best identities for `embedding`; [`Identification::best`] applies the
    /// threshold.
    ///
    /// With `f32_in_memory = false` the shortlist's `f32` embeddings are read from the file;
    /// one that another process removed or replaced since this gallery was opened is an
    /// [`Error::StaleGallery`] (reopen the gallery to see the file as it is now).
    pub fn identify(&self, embedding: &[f32], k: usize) -> Result<Identification> {
        Ok(Identification {
            candidates: self.index.search_with(
                embedding,
                k,
                self.config.precision,
                &self.stored_rows(),
            )?,
            threshold: self.config.threshold,
        })
    }

    /// [`Gallery::identify`] for several embeddings (the faces of one photo, a batch of
    /// frames): the same answers, in order, from one pass over the gallery per 32 embeddings
    /// ([`EmbeddingIndex::search_batch`]).
    pub fn identify_batch<E: AsRef<[f32]>>(
        &self,
        embeddings: &[E],
        k: usize,
    ) -> Result<Vec<Identification>> {
        Ok(self
            .index
            .search_batch_with(embeddings, k, self.config.precision, &self.stored_rows())?
            .into_iter()
            .map(|candidates| Identification {
                candidates,
                threshold: self.config.threshold,
            })
            .collect())
    }

    /// The file's embeddings as a [`RowSource`] (used only by an int8-only index).
    fn stored_rows(&self) -> StoredRows<'_> {
        StoredRows { conn: &self.conn }
    }

    /// Whether two embeddings are the same person under this gallery's threshold.
    pub fn verify(&self, a: &[f32], b: &[f32]) -> Result<Verification> {
        verify(a, b, self.config.threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn temp_path(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "edgeai-vision-{tag}-{}-{:?}.sqlite",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&p);
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
        }
        p
    }

    fn e(i: usize) -> Vec<f32> {
        let mut v = vec![0.01f32; 8];
        v[i % 8] = 1.0;
        v
    }

    fn cfg() -> GalleryConfig {
        GalleryConfig {
            dim: 8,
            threshold: 0.5,
            ..GalleryConfig::default()
        }
    }

    #[test]
    fn enroll_identify_verify_remove_and_reopen() {
        let p = temp_path("roundtrip");
        {
            let mut g = Gallery::open(&p, cfg()).unwrap();
            g.enroll("alice", &[e(0), e(1)]).unwrap();
            g.enroll("bob", &[e(2)]).unwrap();
            g.enroll("carol", &[e(3)]).unwrap();
            g.enroll("alice", &[e(4)]).unwrap();
            let id = g.identify(&e(1), 2).unwrap();
            assert_eq!(id.best().unwrap().name, "alice");
            assert_eq!(id.candidates.len(), 2);
            let unknown = g.identify(&e(6), 3).unwrap();
            assert!(unknown.is_unknown(), "{unknown:?}");
            let both = g.identify_batch(&[e(1), e(6)], 2).unwrap();
            assert_eq!(both, vec![id.clone(), g.identify(&e(6), 2).unwrap()]);
            assert!(g.verify(&e(0), &e(0)).unwrap().same_person);
            assert!(!g.verify(&e(0), &e(1)).unwrap().same_person);
            assert!(g.remove("carol").unwrap());
            assert!(!g.remove("carol").unwrap());
        }
        let g = Gallery::open(&p, cfg()).unwrap();
        assert_eq!(
            g.list(),
            vec![("alice".to_string(), 3), ("bob".to_string(), 1)]
        );
        assert_eq!(g.identify(&e(4), 1).unwrap().best().unwrap().name, "alice");
        let mode: String = g
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn bad_enrolments_store_nothing() {
        let mut g = Gallery::open_in_memory(cfg()).unwrap();
        g.enroll("alice", &[e(0)]).unwrap();
        assert!(g.enroll("", &[e(0)]).is_err());
        assert!(g.enroll("bob", &[]).is_err());
        // the second embedding has the wrong dimension: the first is not stored either
        assert!(g.enroll("bob", &[e(1), vec![1.0; 3]]).is_err());
        assert!(g.enroll("bob", &[vec![0.0; 8]]).is_err());
        assert!(g.enroll("bob", &[vec![f32::NAN; 8]]).is_err());
        assert_eq!(g.list(), vec![("alice".to_string(), 1)]);
        let n: i64 = g
            .conn
            .query_row("SELECT count(*) FROM embeddings", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn foreign_files_are_refused_untouched() {
        let p = temp_path("foreign-text");
        std::fs::write(&p, b"just some text, definitely not sqlite").unwrap();
        let err = Gallery::open(&p, cfg()).unwrap_err();
        assert!(matches!(err, Error::NotAGallery { .. }), "{err}");
        assert!(err.to_string().contains("not a SQLite database"), "{err}");
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"just some text, definitely not sqlite"
        );

        let p = temp_path("foreign-db");
        {
            let c = Connection::open(&p).unwrap();
            c.execute_batch("CREATE TABLE songs (title TEXT); INSERT INTO songs VALUES ('x');")
                .unwrap();
        }
        let before = std::fs::read(&p).unwrap();
        let err = Gallery::open(&p, cfg()).unwrap_err();
        assert!(err.to_string().contains("without edgeai's tables"), "{err}");
        assert_eq!(
            std::fs::read(&p).unwrap(),
            before,
            "the foreign database was modified"
        );
    }

    #[test]
    fn newer_schema_is_refused_and_data_kept() {
        let p = temp_path("newer");
        {
            let mut g = Gallery::open(&p, cfg()).unwrap();
            g.enroll("alice", &[e(0)]).unwrap();
        }
        {
            let c = Connection::open(&p).unwrap();
            c.execute("UPDATE schema_version SET version = 99", [])
                .unwrap();
        }
        let err = Gallery::open(&p, cfg()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::NewerSchema {
                    found: 99,
                    supported: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("upgrade edgeai"), "{err}");
        {
            let c = Connection::open(&p).unwrap();
            c.execute("UPDATE schema_version SET version = 1", [])
                .unwrap();
        }
        let g = Gallery::open(&p, cfg()).unwrap();
        assert_eq!(g.list(), vec![("alice".to_string(), 1)]);
    }

    /// A gallery without its f32 rows in memory gives the identities (and, re-scored from
    /// the file, the scores) of one with them, reopened too; `F32` is refused.
    #[test]
    fn int8_only_gallery_gives_the_same_identities() {
        let p = temp_path("lean");
        let dim = 32;
        let mut rng = crate::index::tests::Rng(12);
        let faces: Vec<Vec<Vec<f32>>> = (0..300)
            .map(|i| (0..1 + i % 2).map(|_| rng.vec(dim)).collect())
            .collect();
        let queries: Vec<Vec<f32>> = (0..20).map(|_| rng.vec(dim)).collect();
        let full_cfg = GalleryConfig {
            dim,
            precision: SearchPrecision::Int8,
            ..cfg()
        };
        let lean_cfg = GalleryConfig {
            f32_in_memory: false,
            ..full_cfg
        };
        {
            let mut g = Gallery::open(&p, lean_cfg).unwrap();
            for (i, f) in faces.iter().enumerate() {
                g.enroll(&format!("p{i}"), f).unwrap();
            }
            assert!(g.remove("p7").unwrap());
            assert_eq!(g.index().storage(), RowStorage::Int8Only);
        }
        let mut full = Gallery::open(&p, full_cfg).unwrap();
        let mut lean = Gallery::open(&p, lean_cfg).unwrap();
        assert!(lean.index().heap_bytes() * 3 < full.index().heap_bytes() * 2);
        for precision in [
            SearchPrecision::Int8,
            SearchPrecision::Int8Rerank,
            SearchPrecision::Int8Scan,
        ] {
            full.set_config(GalleryConfig {
                precision,
                ..full_cfg
            })
            .unwrap();
            lean.set_config(GalleryConfig {
                precision,
                ..lean_cfg
            })
            .unwrap();
            for k in [1, 5] {
                let want = full.identify_batch(&queries, k).unwrap();
                assert_eq!(
                    lean.identify_batch(&queries, k).unwrap(),
                    want,
                    "{precision:?}"
                );
                assert_eq!(lean.identify(&queries[3], k).unwrap(), want[3]);
            }
            // an enrolled face finds its identity
            let id = lean.identify(&faces[10][0], 1).unwrap();
            assert_eq!(id.best().unwrap().name, "p10");
        }
        let err = lean
            .set_config(GalleryConfig {
                precision: SearchPrecision::F32,
                ..lean_cfg
            })
            .unwrap_err();
        assert!(err.to_string().contains("f32_in_memory"), "{err}");
        let err = Gallery::open(
            &p,
            GalleryConfig {
                precision: SearchPrecision::F32,
                ..lean_cfg
            },
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        // switching storage reloads the index
        lean.set_config(GalleryConfig {
            f32_in_memory: true,
            ..full_cfg
        })
        .unwrap();
        assert_eq!(lean.index().storage(), RowStorage::F32AndInt8);
        full.set_config(full_cfg).unwrap();
        assert_eq!(
            lean.identify_batch(&queries, 3).unwrap(),
            full.identify_batch(&queries, 3).unwrap()
        );
        lean.set_config(lean_cfg).unwrap();
        assert_eq!(lean.index().storage(), RowStorage::Int8Only);
        // enrolling into an open int8-only gallery
        lean.enroll("new", &faces[0]).unwrap();
        assert_eq!(lean.identify(&faces[0][0], 2).unwrap().candidates.len(), 2);
    }

    /// An int8-only gallery whose rows another connection removed or replaced says so
    /// (`StaleGallery`) instead of answering from rows that no longer exist.
    #[test]
    fn int8_only_gallery_detects_rows_changed_behind_it() {
        let p = temp_path("stale");
        let lean_cfg = GalleryConfig {
            precision: SearchPrecision::Int8Rerank,
            f32_in_memory: false,
            ..cfg()
        };
        let mut writer = Gallery::open(&p, lean_cfg).unwrap();
        for i in 0..6 {
            writer.enroll(&format!("p{i}"), &[e(i)]).unwrap();
        }
        let reader = Gallery::open(&p, lean_cfg).unwrap();
        assert_eq!(
            reader.identify(&e(5), 1).unwrap().best().unwrap().name,
            "p5"
        );
        // the highest row id is reused by the next insert (no AUTOINCREMENT)
        assert!(writer.remove("p5").unwrap());
        writer.enroll("other", &[e(2)]).unwrap();
        let err = reader.identify(&e(5), 3).unwrap_err();
        assert!(matches!(err, Error::StaleGallery { .. }), "{err}");
        assert!(writer.remove("other").unwrap());
        let err = reader.identify_batch(&[e(5), e(1)], 3).unwrap_err();
        assert!(matches!(err, Error::StaleGallery { .. }), "{err}");
        assert!(err.to_string().contains("reopen"), "{err}");
        // the bare int8 scan reads nothing from the file
        let scan = GalleryConfig {
            precision: SearchPrecision::Int8Scan,
            ..lean_cfg
        };
        let mut reader = reader;
        reader.set_config(scan).unwrap();
        assert_eq!(
            reader.identify(&e(5), 1).unwrap().best().unwrap().name,
            "p5"
        );
        let reopened = Gallery::open(&p, lean_cfg).unwrap();
        let id = reopened.identify(&e(5), 10).unwrap();
        assert!(
            id.is_unknown() && id.candidates.iter().all(|m| m.name != "p5"),
            "{id:?}"
        );
    }

    #[test]
    fn existing_gallery_keeps_its_dimension() {
        let p = temp_path("dim");
        drop(Gallery::open(&p, cfg()).unwrap());
        let g = Gallery::open(&p, GalleryConfig { dim: 128, ..cfg() }).unwrap();
        assert_eq!(g.index().dim(), 8);
    }
}
