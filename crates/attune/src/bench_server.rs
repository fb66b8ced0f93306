//! A real `attune serve` child process for the benchmarks that measure the serving process from
//! outside (`attune bench scale`, `attune bench soak`): start it on a data directory, wait for
//! `/healthz` and `/readyz`, read its resident memory and open files from `/proc`, stop it.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// A running `attune serve`, stopped (SIGTERM, then SIGKILL after 30 s) when dropped.
pub struct ServerChild {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl ServerChild {
    /// Starts this binary's `serve` on `data`, listening on `127.0.0.1:port`, open mode (loopback
    /// only), without the per-key rate limit, with `extra` arguments; its output goes to `log`.
    pub fn start(data: &Path, port: u16, extra: &[&str], log: &Path) -> anyhow::Result<ServerChild> {
        let exe = std::env::current_exe().context("finding this binary")?;
        let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(exe)
            .arg("serve")
            .arg("--data")
            .arg(data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(["--rate-limit", "0"])
            .args(extra)
            .env_remove("ATTUNE_ADMIN_KEY")
            .env_remove("ATTUNE_ADMIN_KEY_FILE")
            .env_remove("ATTUNE_STORE")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("starting attune serve")?;
        Ok(ServerChild { child, base_url: format!("http://127.0.0.1:{port}"), log: log.to_path_buf() })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the child has exited (with its exit status and the end of its log).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            bail!(
                "attune serve exited ({status}); the end of {}:\n{}",
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }

    /// Polls `path` until it answers 200, sampling resident memory meanwhile; the time it took
    /// from `since`.
    pub async fn wait_for(
        &mut self,
        client: &reqwest::Client,
        path: &str,
        since: Instant,
        timeout: Duration,
        peak_rss_kib: &mut u64,
    ) -> anyhow::Result<Duration> {
        let url = format!("{}{path}", self.base_url);
        loop {
            self.check_alive()?;
            *peak_rss_kib = (*peak_rss_kib).max(self.rss_kib());
            if let Ok(response) = client.get(&url).timeout(Duration::from_secs(2)).send().await
                && response.status().is_success()
            {
                return Ok(since.elapsed());
            }
            if since.elapsed() > timeout {
                bail!("{url} did not answer 200 within {} s", timeout.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Resident memory now (`VmRSS`), KiB; 0 when it cannot be read.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// The resident memory once it has settled, KiB, and the seconds that took: sampled every
    /// second until the last [`SETTLE_SAMPLES`] samples lie within 1% (at least 4 MiB) of each
    /// other, at most `limit`. After a training the allocator returns the training's working
    /// memory over some seconds (6.3 GiB read 5 s after `/readyz` at 1M people, 2.9 GiB a
    /// minute later), so a single early reading says little.
    pub async fn settled_rss_kib(&mut self, limit: Duration) -> anyhow::Result<(u64, f64)> {
        let started = Instant::now();
        let mut samples: Vec<u64> = Vec::new();
        loop {
            self.check_alive()?;
            samples.push(self.rss_kib());
            if let Some(last) = samples.len().checked_sub(SETTLE_SAMPLES).map(|from| &samples[from..]) {
                let (low, high) = (last.iter().min().copied().unwrap_or(0), last.iter().max().copied().unwrap_or(0));
                if high - low <= (high / 100).max(4096) || started.elapsed() >= limit {
                    return Ok((samples[samples.len() - 1], started.elapsed().as_secs_f64()));
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Peak resident memory (`VmHWM`), KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// Open file descriptors (entries of `/proc/PID/fd`): files, sockets, pipes.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |dir| dir.count())
    }

    /// Stops the server: SIGTERM (a clean shutdown flushes the decision log), SIGKILL after 30 s.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        // No `unsafe` (workspace lint) for libc's kill: the `kill` program sends the signal.
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Consecutive one-second samples [`ServerChild::settled_rss_kib`] wants within 1%.
pub const SETTLE_SAMPLES: usize = 10;

/// A `kB` field of `/proc/PID/status`.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// The one-minute load average (what else the machine was doing), from `/proc/loadavg`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "n/a".into())
}

/// KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// The `attune_memory_bytes{part="…"}` gauges of the server's `/metrics`, by part.
pub async fn memory_parts(client: &reqwest::Client, base_url: &str) -> anyhow::Result<Vec<(String, f64)>> {
    labelled_gauges(client, base_url, "attune_memory_bytes{part=\"").await
}

/// The `attune_model_bytes{model="…"}` gauges of the server's `/metrics`, by model.
pub async fn model_parts(client: &reqwest::Client, base_url: &str) -> anyhow::Result<Vec<(String, f64)>> {
    labelled_gauges(client, base_url, "attune_model_bytes{model=\"").await
}

/// The gauges of `/metrics` whose line starts with `prefix` (a name and one label, up to the
/// label value's opening quote), by label value.
async fn labelled_gauges(client: &reqwest::Client, base_url: &str, prefix: &str) -> anyhow::Result<Vec<(String, f64)>> {
    let text = client.get(format!("{base_url}/metrics")).send().await?.text().await?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(prefix)?;
            let (label, value) = rest.split_once("\"}")?;
            Some((label.to_owned(), value.trim().parse().ok()?))
        })
        .collect())
}
