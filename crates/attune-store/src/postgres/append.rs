//! Appends: the group commit (one transaction for the appends queued meanwhile), the partitions
//! they need, the insert transaction and its retries.

use super::*;

// ---------------------------------------------------------------------------------------------
// Appends: group commit, partitions, the insert transaction.

impl PostgresStore {
    /// Queues an append and waits for its result. The first waiter that finds no append in flight
    /// leads: it writes the queued appends (its own among them, or in a later round) in one
    /// transaction, then wakes the others.
    pub(super) fn append_grouped(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        // A group takes queued appends up to MAX_GROUP_EVENTS (a bigger one goes alone).
        let group_len = |waiting: &VecDeque<(u64, Vec<NewEvent>)>| {
            let mut n_events = 0;
            waiting
                .iter()
                .take_while(|(_, events)| {
                    n_events += events.len();
                    n_events <= MAX_GROUP_EVENTS
                })
                .count()
        };
        self.committer.submit(events, group_len, |group| self.commit_group(group))
    }

    /// Writes one group in one transaction. If that fails and the group holds several appends,
    /// each is retried alone, so that one caller's bad batch does not fail the others.
    pub(super) fn commit_group(&self, group: Vec<(u64, Vec<NewEvent>)>) -> Vec<(u64, Result<Vec<Appended>>)> {
        let all: Vec<&NewEvent> = group.iter().flat_map(|(_, events)| events.iter()).collect();
        match self.append_batch(&all) {
            Ok(appended) => {
                let mut rest = appended.into_iter();
                group.iter().map(|(ticket, events)| (*ticket, Ok(rest.by_ref().take(events.len()).collect()))).collect()
            }
            Err(err) if group.len() == 1 => vec![(group[0].0, Err(err))],
            Err(err) => {
                tracing::warn!("a group of {} appends failed ({err}); retrying each alone", group.len());
                group
                    .iter()
                    .map(|(ticket, events)| (*ticket, self.append_batch(&events.iter().collect::<Vec<_>>())))
                    .collect()
            }
        }
    }

    /// Appends events in one transaction, retrying after a deadlock, a serialization failure or a
    /// partition that another server dropped.
    pub(super) fn append_batch(&self, events: &[&NewEvent]) -> Result<Vec<Appended>> {
        let mut appended = vec![Appended::Duplicate; events.len()];
        // The first event with an id wins; later ones in the same batch are duplicates.
        let mut seen: FxHashSet<&str> = FxHashSet::default();
        let candidates: Vec<usize> = (0..events.len()).filter(|&idx| seen.insert(events[idx].id.as_str())).collect();
        let months: BTreeSet<i64> =
            candidates.iter().filter_map(|&idx| monthly_partition_of(events[idx].ts_ms)).collect();
        let ids: Vec<&str> = candidates.iter().map(|&idx| events[idx].id.as_str()).collect();
        let subjects: Vec<&str> = candidates.iter().map(|&idx| events[idx].subject.as_str()).collect();
        let ts: Vec<i64> = candidates.iter().map(|&idx| events[idx].ts_ms).collect();
        let expires: Vec<i64> = candidates.iter().map(|&idx| events[idx].expires_ms).collect();
        let payloads: Vec<&[u8]> = candidates.iter().map(|&idx| events[idx].payload.as_slice()).collect();
        let n_candidates = candidates.len() as i64;

        let mut attempt = 0;
        let (base, new_seqs) = loop {
            attempt += 1;
            self.ensure_partitions(&months)?;
            let result = self.with_conn_raw(|conn| {
                let lock = conn.prepare(LOCK_COUNTER_SQL)?;
                let insert = conn.prepare(INSERT_EVENTS_SQL)?;
                let bump = conn.prepare("UPDATE attune_event_counter SET next_seq = $1, n_events = n_events + $2")?;
                let mut tx = conn.client.transaction()?;
                let base: i64 = tx.query_one(&lock, &[])?.try_get(0)?;
                let seqs: Vec<i64> = (base..base + n_candidates).collect();
                // Statements of at most INSERT_CHUNK events keep each message and array small;
                // they share the transaction, so the call stays atomic.
                let mut new_seqs = Vec::with_capacity(ids.len());
                for start in (0..ids.len()).step_by(INSERT_CHUNK) {
                    let chunk = start..(start + INSERT_CHUNK).min(ids.len());
                    let params: [&(dyn ::postgres::types::ToSql + Sync); 6] = [
                        &&ids[chunk.clone()],
                        &&seqs[chunk.clone()],
                        &&subjects[chunk.clone()],
                        &&ts[chunk.clone()],
                        &&expires[chunk.clone()],
                        &&payloads[chunk],
                    ];
                    for row in tx.query(&insert, &params)? {
                        new_seqs.push(row.try_get::<_, i64>(0)?);
                    }
                }
                tx.execute(&bump, &[&(base + n_candidates), &(new_seqs.len() as i64)])?;
                tx.commit()?;
                Ok((base, new_seqs))
            });
            match result {
                Ok(done) => break done,
                Err(Failure::Db(err)) if attempt < MAX_APPEND_ATTEMPTS && is_retryable_append(&err) => {
                    if err.code() == Some(&SqlState::CHECK_VIOLATION) {
                        // A partition this process believed in was dropped (retention on another
                        // server): forget it, so that `ensure_partitions` creates it again.
                        let mut known = self.partitions.lock();
                        for month in &months {
                            known.remove(month);
                        }
                    }
                    tracing::debug!("append retried after: {err}");
                }
                Err(failure) => return Err(failure.into()),
            }
        };
        for seq in new_seqs {
            let candidate_idx = usize::try_from(seq - base).expect("a returned seq is one this append reserved");
            appended[candidates[candidate_idx]] = Appended::New(seq as u64);
        }
        Ok(appended)
    }

    /// Creates the monthly partitions that `months` need and this process does not know to exist.
    pub(super) fn ensure_partitions(&self, months: &BTreeSet<i64>) -> Result<()> {
        let missing: Vec<i64> = {
            let known = self.partitions.lock();
            months.iter().copied().filter(|month| !known.contains(month)).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        self.with_conn(|conn| {
            let mut tx = conn.client.transaction()?;
            // Two servers creating the same partition at once would collide in the catalog.
            tx.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()), $1)", &[&LOCK_PARTITIONS])?;
            for &month in &missing {
                let name = partition_name(month);
                let exists = tx
                    .query_opt(
                        "SELECT 1 FROM pg_class WHERE relname = $1 \
                         AND relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())",
                        &[&name],
                    )?
                    .is_some();
                if !exists {
                    let (from, to) = (month_start_ms(month), month_start_ms(month + 1));
                    tx.batch_execute(&format!(
                        "CREATE TABLE {name} PARTITION OF events FOR VALUES FROM ({from}) TO ({to})"
                    ))?;
                    tracing::info!("created event partition {name}");
                }
            }
            tx.commit()
        })?;
        self.partitions.lock().extend(missing);
        Ok(())
    }

    /// Runs a `DELETE FROM events ... RETURNING id, tableoid` with one parameter, deletes the ids
    /// too, keeps the count and notes the partitions for [`Store::purge`]; all in one transaction
    /// that holds the counter lock.
    /// Visits the events `sql` selects, [`EVENT_PAGE`] at a time in sequence order: its parameters
    /// are `leading`, then the sequence number to continue after, then the page size.
    pub(super) fn page_events(
        &self,
        sql: &str,
        leading: &[&(dyn ::postgres::types::ToSql + Sync)],
        mut after: i64,
        visit: &mut dyn FnMut(StoredEvent) -> Continue,
    ) -> Result<()> {
        loop {
            let rows = self.with_conn(|conn| {
                let statement = conn.prepare(sql)?;
                let mut params = leading.to_vec();
                params.extend([&after as &(dyn ::postgres::types::ToSql + Sync), &EVENT_PAGE]);
                conn.client.query(&statement, &params)
            })?;
            let n_rows = rows.len() as i64;
            for row in rows {
                let event = decode_event(&row)?;
                after = event.seq as i64;
                if !visit(event) {
                    return Ok(());
                }
            }
            if n_rows < EVENT_PAGE {
                return Ok(());
            }
        }
    }

    pub(super) fn delete_events_where(&self, sql: &str, param: &(dyn ::postgres::types::ToSql + Sync)) -> Result<u64> {
        self.delete_events_where_params(sql, &[param])
    }

    pub(super) fn delete_events_where_params(
        &self,
        sql: &str,
        params: &[&(dyn ::postgres::types::ToSql + Sync)],
    ) -> Result<u64> {
        let sql = format!(
            "WITH gone AS ({sql}), \
             gone_ids AS (DELETE FROM event_ids WHERE id IN (SELECT id FROM gone)), \
             dirty AS (INSERT INTO attune_purge_pending (relname) \
                 SELECT DISTINCT tableoid::regclass::text FROM gone ON CONFLICT DO NOTHING) \
             SELECT count(*) FROM gone"
        );
        self.with_conn(|conn| {
            let lock = conn.prepare(LOCK_COUNTER_SQL)?;
            let delete = conn.prepare(&sql)?;
            let subtract = conn.prepare(SUBTRACT_EVENTS_SQL)?;
            let mut tx = conn.client.transaction()?;
            tx.query_one(&lock, &[])?;
            let n: i64 = tx.query_one(&delete, params)?.try_get(0)?;
            if n > 0 {
                tx.execute(&subtract, &[&n])?;
            }
            tx.commit()?;
            Ok(n.max(0) as u64)
        })
    }

    /// Drops every monthly partition whose events have all expired by `now_ms` (and empty ones
    /// whose month is over). Returns how many events went with them.
    pub(super) fn drop_expired_partitions(&self, now_ms: i64) -> Result<u64> {
        let names: Vec<String> = self.with_conn(|conn| {
            let rows = conn.client.query(LIST_PARTITIONS_SQL, &[])?;
            Ok(rows.iter().filter_map(|row| row.try_get::<_, String>(0).ok()).collect())
        })?;
        let mut deleted = 0;
        for name in names {
            let Some(month) = month_of_partition(&name) else {
                continue;
            };
            let droppable = |conn: &mut Conn| -> std::result::Result<bool, ::postgres::Error> {
                let row = conn.client.query_one(&format!("SELECT max(expires_ms) FROM {name}"), &[])?;
                Ok(match row.try_get::<_, Option<i64>>(0)? {
                    Some(max_expires) => max_expires <= now_ms,
                    None => month_start_ms(month + 1) <= now_ms,
                })
            };
            // A cheap look first (the expiry index answers max), then again under the locks.
            match self.with_conn_raw(&droppable) {
                Ok(true) => {}
                Ok(false) => continue,
                // Another server's retention dropped it since we listed it.
                Err(failure) if failure.is_undefined_table() => continue,
                Err(failure) => return Err(failure.into()),
            }
            let dropped = self.with_conn_raw(|conn| {
                let lock = conn.prepare(LOCK_COUNTER_SQL)?;
                let subtract = conn.prepare(SUBTRACT_EVENTS_SQL)?;
                conn.client.batch_execute("BEGIN")?;
                let result = (|| {
                    conn.client.query_one(&lock, &[])?;
                    conn.client.batch_execute(&format!("LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE"))?;
                    if !droppable(conn)? {
                        return Ok(None);
                    }
                    let n: i64 = conn
                        .client
                        .query_one(
                            &format!(
                                "WITH gone AS (DELETE FROM event_ids USING {name} p WHERE event_ids.id = p.id RETURNING 1) \
                                 SELECT count(*) FROM gone"
                            ),
                            &[],
                        )?
                        .try_get(0)?;
                    conn.client.batch_execute(&format!("DROP TABLE {name}"))?;
                    if n > 0 {
                        conn.client.execute(&subtract, &[&n])?;
                    }
                    Ok(Some(n))
                })();
                match result {
                    Ok(outcome) => {
                        conn.client.batch_execute("COMMIT")?;
                        Ok(outcome)
                    }
                    Err(err) => {
                        // The connection may be gone; the pool drops it then.
                        let _ = conn.client.batch_execute("ROLLBACK");
                        Err(err)
                    }
                }
            });
            let dropped = match dropped {
                Ok(dropped) => dropped,
                Err(failure) if failure.is_undefined_table() => None,
                Err(failure) => return Err(failure.into()),
            };
            if let Some(n) = dropped {
                self.partitions.lock().remove(&month);
                tracing::info!("retention dropped event partition {name} ({n} events)");
                deleted += n.max(0) as u64;
            }
        }
        Ok(deleted)
    }
}

pub(super) fn is_retryable_append(err: &::postgres::Error) -> bool {
    matches!(
        err.code(),
        Some(code) if *code == SqlState::CHECK_VIOLATION
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
    )
}
