//! The shared entity store: PostgreSQL, so several nodes serve one set of collections.
//!
//! Each node commits its writes in groups on one connection: one transaction for every write
//! waiting, with the same few statements whatever the group's size (collections locked in name order,
//! so two nodes never deadlock).
//! A collection's row is taken `FOR UPDATE` before anything is read, so the writes of all nodes to
//! one collection are serialised: versions stay contiguous, and of two writes on one `base_version`
//! exactly one commits.
//!
//! Other nodes learn of a commit through `LISTEN`/`NOTIFY`, chosen over the Redis broker because a
//! notification is part of its transaction: it is delivered only if the transaction commits, and
//! notifications arrive in commit order, so a poke never announces a change that is not there. The
//! poke carries only the collection and version; the change itself is read from the log, which is
//! also why a lost poke only delays delivery (the next one, or a reconnect, reads what was missed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, Client, NoTls, Transaction};

use super::plan::{current_from, parse, plan, replay_gone, replayed, Plan};
use super::protocol::{Current, Entity, Origin};
use super::store::{Change, Committed, EntityStore, Replay, Snapshot, StoreError, StoreFuture, Write, WriteOutcome};

/// The notification channel.
const CHANNEL: &str = "switchboard_sync";

/// Most writes committed in one transaction.
const MAX_GROUP: usize = 256;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sync_collections (
    name TEXT PRIMARY KEY, version BIGINT NOT NULL, log_start BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_entities (
    collection TEXT NOT NULL, id TEXT NOT NULL, data TEXT, version BIGINT NOT NULL,
    PRIMARY KEY (collection, id)
);
CREATE TABLE IF NOT EXISTS sync_changes (
    collection TEXT NOT NULL, version BIGINT NOT NULL, id TEXT NOT NULL, data TEXT,
    origin_client TEXT, origin_mutation TEXT,
    PRIMARY KEY (collection, version)
);
CREATE TABLE IF NOT EXISTS sync_mutations (
    client TEXT NOT NULL, mutation_id TEXT NOT NULL, answer TEXT NOT NULL,
    PRIMARY KEY (client, mutation_id)
);
";

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Collections kept in a PostgreSQL database shared by every node.
pub struct PostgresStore {
    url: String,
    writes: mpsc::UnboundedSender<(Write, Reply<WriteOutcome>)>,
    reader: tokio::sync::Mutex<Option<Client>>,
    committed: Mutex<Option<mpsc::UnboundedReceiver<Committed>>>,
}

fn failed(error: impl Into<Failure>) -> StoreError {
    StoreError(format!("the database is unreachable or failed: {}", error.into().0))
}

/// What went wrong, in words: a database error's own message (tokio-postgres says only "db error").
struct Failure(String);

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db) => Self(format!("{}: {}", db.severity(), db.message())),
            None => match std::error::Error::source(&error) {
                Some(source) => Self(format!("{error}: {source}")),
                None => Self(error.to_string()),
            },
        }
    }
}

impl From<&str> for Failure {
    fn from(error: &str) -> Self {
        Self(error.to_owned())
    }
}

async fn connect(url: &str) -> Result<Client, StoreError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(failed)?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(error = Failure::from(error).0, "sync: a PostgreSQL connection ended");
        }
    });
    Ok(client)
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`), creates the tables if they are missing, and
    /// keeps `log_limit` changes per collection. Must be called inside a tokio runtime.
    pub async fn connect(url: &str, log_limit: u64) -> Result<Self, StoreError> {
        let mut client = connect(url).await?;
        // Two nodes starting at once must not race to create the tables.
        let tx = client.transaction().await.map_err(failed)?;
        tx.execute("SELECT pg_advisory_xact_lock(7322075)", &[]).await.map_err(failed)?;
        tx.batch_execute(SCHEMA).await.map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        let (writes, jobs) = mpsc::unbounded_channel();
        let (committed_tx, committed_rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(url.to_owned(), Some(client), jobs, committed_tx.clone(), log_limit.max(1)));
        tokio::spawn(listen_loop(url.to_owned(), committed_tx));
        Ok(Self {
            url: url.to_owned(),
            writes,
            reader: tokio::sync::Mutex::new(None),
            committed: Mutex::new(Some(committed_rx)),
        })
    }

    /// Runs `read` in a repeatable-read transaction on the reader connection (made again if lost).
    async fn read<T>(
        &self,
        read: impl AsyncFnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut reader = self.reader.lock().await;
        if reader.as_ref().is_none_or(Client::is_closed) {
            *reader = Some(connect(&self.url).await?);
        }
        let Some(client) = reader.as_mut() else { return Err(failed("no connection")) };
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(failed)?;
        let value = read(&tx).await?;
        tx.commit().await.map_err(failed)?;
        Ok(value)
    }
}

impl EntityStore for PostgresStore {
    fn write(&self, write: Write) -> StoreFuture<'static, Result<WriteOutcome, StoreError>> {
        let (tx, rx) = oneshot::channel();
        let queued = self.writes.send((write, tx)).map_err(|_| failed("the writer stopped"));
        Box::pin(async move {
            queued?;
            rx.await.map_err(|_| failed("the writer stopped"))?
        })
    }

    fn snapshot<'a>(
        &'a self,
        collection: &'a str,
        id: Option<&'a str>,
    ) -> StoreFuture<'a, Result<Snapshot, StoreError>> {
        Box::pin(self.read(async move |tx| {
            let (version, _) = collection_state(tx, collection).await?;
            let rows = tx
                .query(
                    "SELECT id, data, version FROM sync_entities
                     WHERE collection = $1 AND ($2::TEXT IS NULL OR id = $2) AND data IS NOT NULL ORDER BY id",
                    &[&collection, &id],
                )
                .await
                .map_err(failed)?;
            let mut entities = Vec::with_capacity(rows.len());
            for row in rows {
                let data: String = row.get(1);
                entities.push(Entity {
                    id: row.get(0),
                    data: parse(&data).map_err(StoreError)?,
                    version: to_u64(row.get(2)),
                });
            }
            Ok(Snapshot { entities, version })
        }))
    }

    fn changes_since<'a>(
        &'a self,
        collection: &'a str,
        id: Option<&'a str>,
        since: u64,
    ) -> StoreFuture<'a, Result<Replay, StoreError>> {
        Box::pin(self.read(async move |tx| {
            let (version, log_start) = collection_state(tx, collection).await?;
            if let Some(reason) = replay_gone(collection, since, version, log_start) {
                return Ok(Replay::Gone(reason));
            }
            let rows = tx
                .query(
                    "SELECT version, id, data, origin_client, origin_mutation FROM sync_changes
                     WHERE collection = $1 AND version > $2 AND ($3::TEXT IS NULL OR id = $3) ORDER BY version",
                    &[&collection, &to_i64(since), &id],
                )
                .await
                .map_err(failed)?;
            let mut changes = Vec::with_capacity(rows.len());
            for row in rows {
                let data: Option<String> = row.get(2);
                let client: Option<String> = row.get(3);
                let mutation_id: Option<String> = row.get(4);
                changes.push(Change {
                    collection: collection.to_owned(),
                    id: row.get(1),
                    data: data.as_deref().map(parse).transpose().map_err(StoreError)?,
                    version: to_u64(row.get(0)),
                    origin: client.zip(mutation_id).map(|(client, mutation_id)| Origin { client, mutation_id }),
                });
            }
            Ok(Replay::Changes { changes, version })
        }))
    }

    fn current<'a>(&'a self, collection: &'a str, id: &'a str) -> StoreFuture<'a, Result<Current, StoreError>> {
        Box::pin(self.read(async move |tx| current_in(tx, collection, id).await))
    }

    fn version<'a>(&'a self, collection: &'a str) -> StoreFuture<'a, Result<u64, StoreError>> {
        Box::pin(self.read(async move |tx| Ok(collection_state(tx, collection).await?.0)))
    }

    fn committed(&self) -> Option<mpsc::UnboundedReceiver<Committed>> {
        self.committed.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

async fn collection_state(tx: &Transaction<'_>, collection: &str) -> Result<(u64, u64), StoreError> {
    let row = tx
        .query_opt("SELECT version, log_start FROM sync_collections WHERE name = $1", &[&collection])
        .await
        .map_err(failed)?;
    Ok(row.map_or((0, 1), |row| (to_u64(row.get(0)), to_u64(row.get(1)))))
}

async fn current_in(tx: &Transaction<'_>, collection: &str, id: &str) -> Result<Current, StoreError> {
    let row = tx
        .query_opt("SELECT data, version FROM sync_entities WHERE collection = $1 AND id = $2", &[&collection, &id])
        .await
        .map_err(failed)?;
    current_from(row.map(|row| (row.get::<_, Option<String>>(0), to_u64(row.get(1))))).map_err(StoreError)
}

async fn write_loop(
    url: String,
    mut client: Option<Client>,
    mut jobs: mpsc::UnboundedReceiver<(Write, Reply<WriteOutcome>)>,
    committed: mpsc::UnboundedSender<Committed>,
    log_limit: u64,
) {
    while let Some(first) = jobs.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        // Locks are taken in collection order (a stable sort keeps each collection's writes in the
        // order they came), so two nodes' groups never wait on each other in a cycle.
        group.sort_by(|a, b| a.0.collection.cmp(&b.0.collection));
        if client.as_ref().is_none_or(Client::is_closed) {
            client = match connect(&url).await {
                Ok(client) => Some(client),
                Err(error) => {
                    for (_, reply) in group {
                        let _ = reply.send(Err(error.clone()));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
        }
        let Some(connection) = client.as_mut() else { continue };
        let outcomes = match commit_group(connection, &group, log_limit).await {
            Ok(outcomes) => outcomes,
            Err(error) => {
                tracing::warn!(%error, writes = group.len(), "sync: a group of writes failed to commit");
                group.iter().map(|_| Err(error.clone())).collect()
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

/// Commits a group of writes in one transaction with a fixed number of statements, whatever its
/// size: lock the group's collections, read every recorded answer and current entity at once, plan
/// each write in order in memory (later writes see earlier ones), then write each table with one
/// statement over arrays.
async fn commit_group(
    client: &mut Client,
    group: &[(Write, Reply<WriteOutcome>)],
    log_limit: u64,
) -> Result<Vec<Result<WriteOutcome, StoreError>>, StoreError> {
    let tx = client.transaction().await.map_err(failed)?;
    let mut names: Vec<&str> = group.iter().map(|(w, _)| w.collection.as_str()).collect();
    names.dedup(); // the group is sorted by collection
    tx.execute(
        "INSERT INTO sync_collections (name, version, log_start) SELECT unnest($1::TEXT[]), 0, 1
         ON CONFLICT (name) DO NOTHING",
        &[&names],
    )
    .await
    .map_err(failed)?;
    // The collections' locks, in name order: every node's writes to a collection pass one at a time.
    let mut collections: HashMap<String, CollectionState> = HashMap::new();
    for row in tx
        .query(
            "SELECT name, version, log_start FROM sync_collections WHERE name = ANY($1) ORDER BY name FOR UPDATE",
            &[&names],
        )
        .await
        .map_err(failed)?
    {
        let state = CollectionState { version: to_u64(row.get(1)), log_start: to_u64(row.get(2)), prune: false };
        collections.insert(row.get(0), state);
    }
    let mut recorded = recorded_answers(&tx, group).await?;
    let mut currents = current_entities(&tx, group).await?;

    let mut rows = Rows::default();
    let mut outcomes = Vec::with_capacity(group.len());
    for (write, _) in group {
        let key = (write.origin.client.clone(), write.origin.mutation_id.clone());
        let entity = (write.collection.clone(), write.id.clone());
        let current =
            currents.get(&entity).cloned().unwrap_or(Current { data: Value::Null, version: 0, deleted: false });
        if let Some(answer) = recorded.get(&key) {
            outcomes.push(replayed(answer, || Ok(current)).map(WriteOutcome::Answered).map_err(StoreError));
            continue;
        }
        let Some(state) = collections.get_mut(&write.collection) else {
            outcomes.push(Err(failed("the collection row is missing")));
            continue;
        };
        let outcome = match plan(write, &current, state.version, state.log_start, log_limit) {
            Plan::Answer(answer) => WriteOutcome::Answered(answer),
            Plan::Apply { change, log_start, prune, answer } => {
                state.version = change.version;
                state.log_start = log_start;
                state.prune |= prune;
                rows.change(&change);
                let data = change.data.clone().unwrap_or(Value::Null);
                currents.insert(entity, Current { data, version: change.version, deleted: change.data.is_none() });
                WriteOutcome::Applied { answer, change }
            }
        };
        let answer = match &outcome {
            WriteOutcome::Applied { answer, .. } | WriteOutcome::Answered(answer) => answer.to_json(),
        };
        rows.mutation(&key, answer.clone());
        recorded.insert(key, answer);
        outcomes.push(Ok(outcome));
    }
    rows.write(&tx, &currents).await?;
    finish_collections(&tx, &collections, &rows.changed_collections).await?;
    tx.commit().await.map_err(failed)?;
    Ok(outcomes)
}

/// A locked collection's counters as the group moves them.
struct CollectionState {
    version: u64,
    log_start: u64,
    prune: bool,
}

/// The answers already recorded for the group's mutations.
async fn recorded_answers(
    tx: &Transaction<'_>,
    group: &[(Write, Reply<WriteOutcome>)],
) -> Result<HashMap<(String, String), String>, StoreError> {
    let clients: Vec<&str> = group.iter().map(|(w, _)| w.origin.client.as_str()).collect();
    let mutation_ids: Vec<&str> = group.iter().map(|(w, _)| w.origin.mutation_id.as_str()).collect();
    let rows = tx
        .query(
            "SELECT m.client, m.mutation_id, m.answer FROM sync_mutations m
             JOIN (SELECT DISTINCT * FROM unnest($1::TEXT[], $2::TEXT[])) AS k(client, mutation_id)
             USING (client, mutation_id)",
            &[&clients, &mutation_ids],
        )
        .await
        .map_err(failed)?;
    Ok(rows.into_iter().map(|row| ((row.get(0), row.get(1)), row.get(2))).collect())
}

/// The current state of every entity the group writes.
async fn current_entities(
    tx: &Transaction<'_>,
    group: &[(Write, Reply<WriteOutcome>)],
) -> Result<HashMap<(String, String), Current>, StoreError> {
    let collections: Vec<&str> = group.iter().map(|(w, _)| w.collection.as_str()).collect();
    let ids: Vec<&str> = group.iter().map(|(w, _)| w.id.as_str()).collect();
    let rows = tx
        .query(
            "SELECT e.collection, e.id, e.data, e.version FROM sync_entities e
             JOIN (SELECT DISTINCT * FROM unnest($1::TEXT[], $2::TEXT[])) AS k(collection, id) USING (collection, id)",
            &[&collections, &ids],
        )
        .await
        .map_err(failed)?;
    let mut currents = HashMap::with_capacity(rows.len());
    for row in rows {
        let current = current_from(Some((row.get::<_, Option<String>>(2), to_u64(row.get(3))))).map_err(StoreError)?;
        currents.insert((row.get(0), row.get(1)), current);
    }
    Ok(currents)
}

/// Moves the changed collections' counters, prunes their logs where due, and pokes the other nodes.
async fn finish_collections(
    tx: &Transaction<'_>,
    collections: &HashMap<String, CollectionState>,
    changed: &std::collections::HashSet<String>,
) -> Result<(), StoreError> {
    let touched: Vec<(&String, &CollectionState)> =
        collections.iter().filter(|(name, _)| changed.contains(*name)).collect();
    if touched.is_empty() {
        return Ok(());
    }
    for (name, state) in &touched {
        if state.prune {
            tx.execute(
                "DELETE FROM sync_changes WHERE collection = $1 AND version < $2",
                &[name, &to_i64(state.log_start)],
            )
            .await
            .map_err(failed)?;
        }
    }
    let names: Vec<&str> = touched.iter().map(|(name, _)| name.as_str()).collect();
    let versions: Vec<i64> = touched.iter().map(|(_, state)| to_i64(state.version)).collect();
    let starts: Vec<i64> = touched.iter().map(|(_, state)| to_i64(state.log_start)).collect();
    tx.execute(
        "UPDATE sync_collections AS c SET version = u.version, log_start = u.log_start
         FROM unnest($1::TEXT[], $2::BIGINT[], $3::BIGINT[]) AS u(name, version, log_start) WHERE c.name = u.name",
        &[&names, &versions, &starts],
    )
    .await
    .map_err(failed)?;
    // Delivered to the other nodes only if this commits, and in commit order.
    let payloads: Vec<String> =
        names.iter().zip(&versions).map(|(name, version)| format!("{version} {name}")).collect();
    tx.execute("SELECT pg_notify($1, p) FROM unnest($2::TEXT[]) AS p", &[&CHANNEL, &payloads]).await.map_err(failed)?;
    Ok(())
}

/// The rows a group writes, gathered for one statement per table.
#[derive(Default)]
struct Rows {
    change_collections: Vec<String>,
    change_versions: Vec<i64>,
    change_ids: Vec<String>,
    change_data: Vec<Option<String>>,
    change_clients: Vec<Option<String>>,
    change_mutations: Vec<Option<String>>,
    mutation_clients: Vec<String>,
    mutation_ids: Vec<String>,
    mutation_answers: Vec<String>,
    changed_collections: std::collections::HashSet<String>,
    entities: Vec<(String, String)>,
}

impl Rows {
    fn change(&mut self, change: &Change) {
        self.change_collections.push(change.collection.clone());
        self.change_versions.push(to_i64(change.version));
        self.change_ids.push(change.id.clone());
        self.change_data.push(change.data.as_ref().map(Value::to_string));
        self.change_clients.push(change.origin.as_ref().map(|o| o.client.clone()));
        self.change_mutations.push(change.origin.as_ref().map(|o| o.mutation_id.clone()));
        self.changed_collections.insert(change.collection.clone());
        self.entities.push((change.collection.clone(), change.id.clone()));
    }

    fn mutation(&mut self, key: &(String, String), answer: String) {
        self.mutation_clients.push(key.0.clone());
        self.mutation_ids.push(key.1.clone());
        self.mutation_answers.push(answer);
    }

    /// Writes the changes, the answers, and each changed entity once, as it is after the group.
    async fn write(
        &mut self,
        tx: &Transaction<'_>,
        currents: &HashMap<(String, String), Current>,
    ) -> Result<(), StoreError> {
        if !self.change_versions.is_empty() {
            tx.execute(
                "INSERT INTO sync_changes (collection, version, id, data, origin_client, origin_mutation)
                 SELECT * FROM unnest($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[])",
                &[
                    &self.change_collections,
                    &self.change_versions,
                    &self.change_ids,
                    &self.change_data,
                    &self.change_clients,
                    &self.change_mutations,
                ],
            )
            .await
            .map_err(failed)?;
            self.entities.sort();
            self.entities.dedup();
            let (mut collections, mut ids, mut data, mut versions) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for key in &self.entities {
                let Some(current) = currents.get(key) else { continue };
                collections.push(key.0.as_str());
                ids.push(key.1.as_str());
                data.push((!current.deleted).then(|| current.data.to_string()));
                versions.push(to_i64(current.version));
            }
            tx.execute(
                "INSERT INTO sync_entities (collection, id, data, version)
                 SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[])
                 ON CONFLICT (collection, id) DO UPDATE SET data = excluded.data, version = excluded.version",
                &[&collections, &ids, &data, &versions],
            )
            .await
            .map_err(failed)?;
        }
        if !self.mutation_ids.is_empty() {
            tx.execute(
                "INSERT INTO sync_mutations (client, mutation_id, answer)
                 SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[])",
                &[&self.mutation_clients, &self.mutation_ids, &self.mutation_answers],
            )
            .await
            .map_err(failed)?;
        }
        Ok(())
    }
}

/// Listens for other nodes' commits; after a lost connection, asks the hub to check every
/// collection (notifications sent meanwhile are gone).
async fn listen_loop(url: String, committed: mpsc::UnboundedSender<Committed>) {
    let mut first = true;
    loop {
        match tokio_postgres::connect(&url, NoTls).await {
            Ok((client, mut connection)) => {
                let (notes, mut notifications) = mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        match message {
                            Ok(AsyncMessage::Notification(note)) => {
                                let _ = notes.send(note.payload().to_owned());
                            }
                            Ok(_) => {}
                            Err(error) => {
                                tracing::warn!(error = Failure::from(error).0, "sync: the PostgreSQL listener failed");
                                break;
                            }
                        }
                    }
                });
                if client.batch_execute(&format!("LISTEN {CHANNEL}")).await.is_ok() {
                    if !first {
                        let _ = committed.send(Committed::Resync);
                    }
                    first = false;
                    while let Some(payload) = notifications.recv().await {
                        let Some((version, collection)) = payload.split_once(' ') else { continue };
                        let Ok(version) = version.parse() else { continue };
                        if committed.send(Committed::Reached { collection: collection.to_owned(), version }).is_err() {
                            return;
                        }
                    }
                }
                driver.abort();
            }
            Err(error) => {
                tracing::warn!(error = Failure::from(error).0, "sync: cannot listen for other nodes' changes; retrying")
            }
        }
        if committed.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
