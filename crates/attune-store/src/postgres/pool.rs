//! The connection pool and its failures: connections made lazily, reused, replaced when found
//! closed; an operation on a connection that died while idle runs once more.

use super::*;

/// An operation's failure before it becomes a [`StoreError`]: the database's error is kept so
/// that callers can look at its SQLSTATE.
pub(super) enum Failure {
    Db(::postgres::Error),
    Other(String),
}

impl Failure {
    /// The table is not there (another server dropped a partition).
    pub(super) fn is_undefined_table(&self) -> bool {
        matches!(self, Failure::Db(err) if err.code() == Some(&SqlState::UNDEFINED_TABLE))
    }
}

impl From<::postgres::Error> for Failure {
    fn from(err: ::postgres::Error) -> Failure {
        Failure::Db(err)
    }
}

impl From<Failure> for StoreError {
    fn from(failure: Failure) -> StoreError {
        match failure {
            Failure::Db(err) => match err.as_db_error() {
                // The server's message is more useful than "db error".
                Some(db) => StoreError::Backend(format!("PostgreSQL: {}: {}", db.code().code(), db.message())),
                None => StoreError::Backend(format!("PostgreSQL: {err}")),
            },
            Failure::Other(message) => StoreError::Backend(message),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The connection pool.

/// A pooled connection with its prepared statements.
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) statements: FxHashMap<String, Statement>,
}

impl Conn {
    /// Prepares `sql` once per connection.
    pub(super) fn prepare(&mut self, sql: &str) -> std::result::Result<Statement, ::postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

/// At most `max` connections, opened when needed; a closed one is dropped when it comes back.
pub(super) struct Pool {
    pub(super) config: Config,
    pub(super) max: usize,
    pub(super) state: Mutex<PoolState>,
    pub(super) returned: Condvar,
}

pub(super) struct PoolState {
    pub(super) idle: Vec<Conn>,
    pub(super) n_open: usize,
}

/// How long a caller waits for a free connection before failing.
pub(super) const POOL_WAIT: Duration = Duration::from_secs(30);

impl Pool {
    pub(super) fn new(config: Config, max: usize) -> Pool {
        Pool { config, max, state: Mutex::new(PoolState { idle: Vec::new(), n_open: 0 }), returned: Condvar::new() }
    }

    /// A connection outside the pool, set up as pooled ones are.
    pub(super) fn connect_new(&self) -> std::result::Result<Client, ::postgres::Error> {
        let mut client = self.config.connect(NoTls)?;
        // Durability is the store's promise: a server default of `off` must not break it.
        // (`local`, `remote_write`, `remote_apply` and `on` all flush the local WAL.)
        let row = client.query_one("SELECT current_setting('synchronous_commit')", &[])?;
        if row.try_get::<_, &str>(0)? == "off" {
            client.batch_execute("SET synchronous_commit = on")?;
        }
        Ok(client)
    }

    /// A connection and whether it was reused (and so may have died while idle).
    pub(super) fn checkout(&self) -> std::result::Result<(Conn, bool), Failure> {
        let deadline = Instant::now() + POOL_WAIT;
        let mut state = self.state.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                if conn.client.is_closed() {
                    state.n_open -= 1;
                    continue;
                }
                return Ok((conn, true));
            }
            if state.n_open < self.max {
                state.n_open += 1;
                drop(state);
                return match self.connect_new() {
                    Ok(client) => Ok((Conn { client, statements: FxHashMap::default() }, false)),
                    Err(err) => {
                        let mut state = self.state.lock();
                        state.n_open -= 1;
                        self.returned.notify_one();
                        Err(Failure::Db(err))
                    }
                };
            }
            if Instant::now() >= deadline {
                return Err(Failure::Other(format!(
                    "no PostgreSQL connection free after {} s ({} open)",
                    POOL_WAIT.as_secs(),
                    self.max
                )));
            }
            self.returned.wait_until(&mut state, deadline);
        }
    }

    pub(super) fn checkin(&self, conn: Conn) {
        let mut state = self.state.lock();
        if conn.client.is_closed() {
            state.n_open -= 1;
        } else {
            state.idle.push(conn);
        }
        self.returned.notify_one();
    }
}

impl PostgresStore {
    /// Runs `op` on a pooled connection. An operation that fails because a reused connection had
    /// died while idle is run once more on a fresh one.
    pub(super) fn with_conn<T>(
        &self,
        op: impl FnMut(&mut Conn) -> std::result::Result<T, ::postgres::Error>,
    ) -> Result<T> {
        self.with_conn_raw(op).map_err(StoreError::from)
    }

    pub(super) fn with_conn_raw<T>(
        &self,
        mut op: impl FnMut(&mut Conn) -> std::result::Result<T, ::postgres::Error>,
    ) -> std::result::Result<T, Failure> {
        let mut retried = false;
        loop {
            let (mut conn, reused) = self.pool.checkout()?;
            let result = op(&mut conn);
            let stale = result.is_err() && reused && conn.client.is_closed();
            self.pool.checkin(conn);
            match result {
                Ok(value) => return Ok(value),
                Err(_) if stale && !retried => retried = true,
                Err(err) => return Err(Failure::Db(err)),
            }
        }
    }
}
