//! The embedded entity store: one SQLite file, a writer thread that commits writes in groups (one
//! transaction for all the writes waiting, each in its own savepoint) and a reader thread for
//! snapshots and replays, so a large snapshot never holds up writes (WAL mode lets them overlap).
//!
//! Why rusqlite and not sqlx: SQLite is in-process and synchronous, so the fastest shape is a thread
//! that owns the connection and commits many writes per transaction; sqlx's SQLite driver runs a
//! worker thread per connection anyway and adds a channel hop per statement. PostgreSQL, which is a
//! network service, has its own store module.

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use tokio::sync::{mpsc as tokio_mpsc, oneshot};

use super::plan::{current_from, parse, plan, replay_gone, replayed, Plan};
use super::protocol::{Current, Entity, ServerMessage};
use super::store::{Change, Committed, EntityStore, Replay, Snapshot, StoreError, StoreFuture, Write, WriteOutcome};

/// How many changes each collection's log keeps by default (older ones are pruned; a client further
/// behind gets `refetch`).
pub const DEFAULT_LOG_LIMIT: u64 = 100_000;

/// Most writes committed in one transaction.
const MAX_GROUP: usize = 512;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sync_collections (
    name TEXT PRIMARY KEY, version INTEGER NOT NULL, log_start INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sync_entities (
    collection TEXT NOT NULL, id TEXT NOT NULL, data TEXT, version INTEGER NOT NULL,
    PRIMARY KEY (collection, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sync_changes (
    collection TEXT NOT NULL, version INTEGER NOT NULL, id TEXT NOT NULL, data TEXT,
    origin_client TEXT, origin_mutation TEXT,
    PRIMARY KEY (collection, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sync_mutations (
    client TEXT NOT NULL, mutation_id TEXT NOT NULL, answer TEXT NOT NULL,
    PRIMARY KEY (client, mutation_id)
) WITHOUT ROWID;
";

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Read {
    Snapshot(String, Option<String>, Reply<Snapshot>),
    Since(String, Option<String>, u64, Reply<Replay>),
    Current(String, String, Reply<Current>),
    Version(String, Reply<u64>),
}

/// Collections kept in one SQLite database file.
pub struct SqliteStore {
    writes: mpsc::Sender<(Write, Reply<WriteOutcome>)>,
    reads: mpsc::Sender<Read>,
    committed: Mutex<Option<tokio_mpsc::UnboundedReceiver<Committed>>>,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`, keeping [`DEFAULT_LOG_LIMIT`] changes per collection.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_log_limit(path, DEFAULT_LOG_LIMIT)
    }

    /// Opens the database, keeping the last `log_limit` changes of each collection (at least 1).
    pub fn open_with_log_limit(path: impl AsRef<Path>, log_limit: u64) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let fail = |e: rusqlite::Error| StoreError(format!("{}: {e}", path.display()));
        let writer = Connection::open(path).map_err(fail)?;
        // First: switching to WAL takes a lock too, and another process opening the same file at the
        // same moment would make it fail at once instead of waiting.
        writer.busy_timeout(std::time::Duration::from_secs(5)).map_err(fail)?;
        writer.pragma_update(None, "journal_mode", "WAL").map_err(fail)?;
        // Durable against a crash of the process (what matters for acks); FULL would also survive
        // power loss at a much higher cost per commit.
        writer.pragma_update(None, "synchronous", "NORMAL").map_err(fail)?;
        writer.execute_batch(SCHEMA).map_err(fail)?;
        let reader = Connection::open(path).map_err(fail)?;
        reader.busy_timeout(std::time::Duration::from_secs(5)).map_err(fail)?;

        let (writes, write_jobs) = mpsc::channel();
        let (reads, read_jobs) = mpsc::channel();
        let (committed_tx, committed_rx) = tokio_mpsc::unbounded_channel();
        let log_limit = log_limit.max(1);
        spawn("switchboard-sqlite-writer", move || write_loop(writer, write_jobs, committed_tx, log_limit))?;
        spawn("switchboard-sqlite-reader", move || read_loop(reader, read_jobs))?;
        Ok(Self { writes, reads, committed: Mutex::new(Some(committed_rx)) })
    }

    async fn read<T>(&self, job: impl FnOnce(Reply<T>) -> Read) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.reads.send(job(tx)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

fn spawn(name: &str, run: impl FnOnce() + Send + 'static) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(run)
        .map(drop)
        .map_err(|e| StoreError(format!("cannot start the {name} thread: {e}")))
}

fn stopped() -> StoreError {
    StoreError("the SQLite store stopped".into())
}

impl EntityStore for SqliteStore {
    fn write(&self, write: Write) -> StoreFuture<'static, Result<WriteOutcome, StoreError>> {
        let (tx, rx) = oneshot::channel();
        let queued = self.writes.send((write, tx)).map_err(|_| stopped());
        Box::pin(async move {
            queued?;
            rx.await.map_err(|_| stopped())?
        })
    }

    fn snapshot<'a>(
        &'a self,
        collection: &'a str,
        id: Option<&'a str>,
    ) -> StoreFuture<'a, Result<Snapshot, StoreError>> {
        Box::pin(self.read(move |reply| Read::Snapshot(collection.into(), id.map(Into::into), reply)))
    }

    fn changes_since<'a>(
        &'a self,
        collection: &'a str,
        id: Option<&'a str>,
        since: u64,
    ) -> StoreFuture<'a, Result<Replay, StoreError>> {
        Box::pin(self.read(move |reply| Read::Since(collection.into(), id.map(Into::into), since, reply)))
    }

    fn current<'a>(&'a self, collection: &'a str, id: &'a str) -> StoreFuture<'a, Result<Current, StoreError>> {
        Box::pin(self.read(move |reply| Read::Current(collection.into(), id.into(), reply)))
    }

    fn version<'a>(&'a self, collection: &'a str) -> StoreFuture<'a, Result<u64, StoreError>> {
        Box::pin(self.read(move |reply| Read::Version(collection.into(), reply)))
    }

    fn committed(&self) -> Option<tokio_mpsc::UnboundedReceiver<Committed>> {
        self.committed.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

fn write_loop(
    mut db: Connection,
    jobs: mpsc::Receiver<(Write, Reply<WriteOutcome>)>,
    committed: tokio_mpsc::UnboundedSender<Committed>,
    log_limit: u64,
) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let outcomes = match commit_group(&mut db, &group, log_limit) {
            Ok(outcomes) => outcomes,
            Err(error) => {
                tracing::warn!(%error, writes = group.len(), "sync: a group of writes failed to commit");
                group.iter().map(|_| Err(StoreError(format!("the database failed: {error}")))).collect()
            }
        };
        for ((_, reply), outcome) in group.into_iter().zip(outcomes) {
            if let Ok(WriteOutcome::Applied { change, .. }) = &outcome {
                let _ = committed.send(Committed::Change(Arc::new(change.clone())));
            }
            let _ = reply.send(outcome);
        }
    }
}

type Outcomes = Vec<Result<WriteOutcome, StoreError>>;

fn commit_group(
    db: &mut Connection,
    group: &[(Write, Reply<WriteOutcome>)],
    log_limit: u64,
) -> rusqlite::Result<Outcomes> {
    let mut tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(group.len());
    for (write, _) in group {
        let mut savepoint = tx.savepoint()?;
        match apply(&savepoint, write, log_limit) {
            Ok(outcome) => {
                savepoint.commit()?;
                outcomes.push(Ok(outcome));
            }
            Err(error) => {
                savepoint.rollback()?;
                outcomes.push(Err(StoreError(format!("the database failed: {error}"))));
            }
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn apply(tx: &Connection, write: &Write, log_limit: u64) -> rusqlite::Result<WriteOutcome> {
    let origin = &write.origin;
    let recorded: Option<String> = tx
        .prepare_cached("SELECT answer FROM sync_mutations WHERE client = ?1 AND mutation_id = ?2")?
        .query_row(params![origin.client, origin.mutation_id], |row| row.get(0))
        .optional()?;
    if let Some(recorded) = recorded {
        let answer = replayed(&recorded, || current_in(tx, &write.collection, &write.id).map_err(|e| e.to_string()))
            .map_err(conversion)?;
        return Ok(WriteOutcome::Answered(answer));
    }
    let (version, log_start) = collection_state(tx, &write.collection)?;
    let current = current_in(tx, &write.collection, &write.id)?;
    match plan(write, &current, version, log_start, log_limit) {
        Plan::Answer(answer) => {
            record(tx, write, &answer)?;
            Ok(WriteOutcome::Answered(answer))
        }
        Plan::Apply { change, log_start, prune, answer } => {
            let next = to_i64(change.version);
            let text = change.data.as_ref().map(Value::to_string);
            if prune {
                tx.prepare_cached("DELETE FROM sync_changes WHERE collection = ?1 AND version < ?2")?
                    .execute(params![write.collection, to_i64(log_start)])?;
            }
            tx.prepare_cached(
                "INSERT INTO sync_collections (name, version, log_start) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET version = excluded.version, log_start = excluded.log_start",
            )?
            .execute(params![write.collection, next, to_i64(log_start)])?;
            tx.prepare_cached(
                "INSERT INTO sync_entities (collection, id, data, version) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (collection, id) DO UPDATE SET data = excluded.data, version = excluded.version",
            )?
            .execute(params![write.collection, write.id, text, next])?;
            tx.prepare_cached(
                "INSERT INTO sync_changes (collection, version, id, data, origin_client, origin_mutation)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                write.collection,
                next,
                write.id,
                text,
                origin.client,
                origin.mutation_id
            ])?;
            record(tx, write, &answer)?;
            Ok(WriteOutcome::Applied { answer, change })
        }
    }
}

fn record(tx: &Connection, write: &Write, answer: &ServerMessage) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO sync_mutations (client, mutation_id, answer) VALUES (?1, ?2, ?3)")?
        .execute(params![write.origin.client, write.origin.mutation_id, answer.to_json()])?;
    Ok(())
}

fn conversion(message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, message.into())
}

fn current_in(db: &Connection, collection: &str, id: &str) -> rusqlite::Result<Current> {
    let row: Option<(Option<String>, i64)> = db
        .prepare_cached("SELECT data, version FROM sync_entities WHERE collection = ?1 AND id = ?2")?
        .query_row([collection, id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    current_from(row.map(|(data, version)| (data, to_u64(version)))).map_err(conversion)
}

fn parse_text(text: &str) -> rusqlite::Result<Value> {
    parse(text).map_err(conversion)
}

fn read_loop(mut db: Connection, jobs: mpsc::Receiver<Read>) {
    let fail = |e: rusqlite::Error| StoreError(format!("the database failed: {e}"));
    while let Ok(job) = jobs.recv() {
        match job {
            Read::Snapshot(collection, id, reply) => {
                let _ = reply.send(snapshot(&mut db, &collection, id.as_deref()).map_err(fail));
            }
            Read::Since(collection, id, since, reply) => {
                let _ = reply.send(changes_since(&mut db, &collection, id.as_deref(), since).map_err(fail));
            }
            Read::Current(collection, id, reply) => {
                let _ = reply.send(current_in(&db, &collection, &id).map_err(fail));
            }
            Read::Version(collection, reply) => {
                let _ = reply.send(collection_state(&db, &collection).map(|(version, _)| version).map_err(fail));
            }
        }
    }
}

fn collection_state(db: &Connection, collection: &str) -> rusqlite::Result<(u64, u64)> {
    Ok(db
        .prepare_cached("SELECT version, log_start FROM sync_collections WHERE name = ?1")?
        .query_row([collection], |row| Ok((to_u64(row.get(0)?), to_u64(row.get(1)?))))
        .optional()?
        .unwrap_or((0, 1)))
}

fn snapshot(db: &mut Connection, collection: &str, id: Option<&str>) -> rusqlite::Result<Snapshot> {
    let tx = db.transaction()?;
    let (version, _) = collection_state(&tx, collection)?;
    let mut entities = Vec::new();
    {
        let mut push = |row: &rusqlite::Row| -> rusqlite::Result<()> {
            let text: String = row.get(1)?;
            entities.push(Entity { id: row.get(0)?, data: parse_text(&text)?, version: to_u64(row.get(2)?) });
            Ok(())
        };
        match id {
            Some(id) => {
                let mut statement = tx.prepare_cached(
                    "SELECT id, data, version FROM sync_entities WHERE collection = ?1 AND id = ?2 AND data IS NOT NULL",
                )?;
                let mut rows = statement.query([collection, id])?;
                while let Some(row) = rows.next()? {
                    push(row)?;
                }
            }
            None => {
                let mut statement = tx.prepare_cached(
                    "SELECT id, data, version FROM sync_entities WHERE collection = ?1 AND data IS NOT NULL ORDER BY id",
                )?;
                let mut rows = statement.query([collection])?;
                while let Some(row) = rows.next()? {
                    push(row)?;
                }
            }
        }
    }
    tx.commit()?;
    Ok(Snapshot { entities, version })
}

fn changes_since(db: &mut Connection, collection: &str, id: Option<&str>, since: u64) -> rusqlite::Result<Replay> {
    let tx = db.transaction()?;
    let (version, log_start) = collection_state(&tx, collection)?;
    if let Some(reason) = replay_gone(collection, since, version, log_start) {
        return Ok(Replay::Gone(reason));
    }
    let mut changes = Vec::new();
    {
        let mut statement = tx.prepare_cached(
            "SELECT version, id, data, origin_client, origin_mutation FROM sync_changes
             WHERE collection = ?1 AND version > ?2 AND (?3 IS NULL OR id = ?3) ORDER BY version",
        )?;
        let mut rows = statement.query(params![collection, to_i64(since), id])?;
        while let Some(row) = rows.next()? {
            let data: Option<String> = row.get(2)?;
            let client: Option<String> = row.get(3)?;
            let mutation_id: Option<String> = row.get(4)?;
            changes.push(Change {
                collection: collection.to_owned(),
                id: row.get(1)?,
                data: data.as_deref().map(parse_text).transpose()?,
                version: to_u64(row.get(0)?),
                origin: client
                    .zip(mutation_id)
                    .map(|(client, mutation_id)| super::protocol::Origin { client, mutation_id }),
            });
        }
    }
    tx.commit()?;
    Ok(Replay::Changes { changes, version })
}
