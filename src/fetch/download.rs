//! HTTP downloads into the cache: the digest is computed while the body
//! streams in (a hasher thread beside the reader, so hashing costs no extra
//! pass and little wall time), interrupted downloads resume with `Range`,
//! transient failures are retried with exponential backoff, and each mirror is
//! tried in turn.
//!
//! Time is bounded three ways. `timeout` limits connecting, the response
//! headers and each read of the body. A minimum transfer rate (`min_rate`
//! bytes/s, averaged over windows of `timeout` seconds) stops a server that
//! drips a byte at a time, which would pass every per-read limit for ever;
//! such a mirror is abandoned for the next one (not retried). An overall
//! `deadline` per file, over every attempt and mirror, ends the download
//! whatever the server does.

use super::cache::Cache;
use super::digest::{Algo, Checksum, Hasher};
use crate::progress::Reporter;
use anyhow::{anyhow, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// Seconds without progress (connect, headers or body) before giving up on a request.
pub const ENV_TIMEOUT: &str = "KHOTFIX_HTTP_TIMEOUT";
/// Attempts per mirror after the first one.
pub const ENV_RETRIES: &str = "KHOTFIX_HTTP_RETRIES";
/// First retry delay in milliseconds (doubles per retry, capped at 30 s).
pub const ENV_BACKOFF_MS: &str = "KHOTFIX_HTTP_BACKOFF_MS";
/// Slowest acceptable transfer, bytes per second over a `timeout` window (0: no limit).
pub const ENV_MIN_RATE: &str = "KHOTFIX_HTTP_MIN_RATE";
/// Seconds one file may take in all (every attempt and mirror; 0: no limit).
pub const ENV_DEADLINE: &str = "KHOTFIX_HTTP_DEADLINE";

const CHUNK: usize = 256 * 1024;

/// Network behaviour. Defaults suit real mirrors; tests shorten them.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Limit for connecting, for the response headers, and for each read of
    /// the body: a stalled transfer fails after this long without data.
    pub timeout: Duration,
    /// Retries per mirror for transient failures (5xx, resets, timeouts).
    pub retries: u32,
    /// Delay before the first retry; doubles each time, at most 30 s.
    pub backoff: Duration,
    /// Slowest acceptable body transfer in bytes/s, averaged over windows
    /// of `timeout`; a slower mirror is abandoned. 0: no minimum.
    pub min_rate: u64,
    /// Longest one file may take over all attempts and mirrors; `None`: no limit.
    pub deadline: Option<Duration>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(60),
            retries: 3,
            backoff: Duration::from_millis(500),
            // 1 KiB/s: far below any working mirror, far above a drip.
            min_rate: 1024,
            // 4 h: a 1 GiB debuginfo package at 75 KiB/s.
            deadline: Some(Duration::from_secs(4 * 3600)),
        }
    }
}

impl HttpOptions {
    /// Defaults overridden by `KHOTFIX_HTTP_TIMEOUT` (seconds, fractions
    /// allowed), `KHOTFIX_HTTP_RETRIES` and `KHOTFIX_HTTP_BACKOFF_MS`.
    pub fn from_env() -> Result<HttpOptions> {
        let mut o = HttpOptions::default();
        if let Some(v) = env_nonempty(ENV_TIMEOUT) {
            let secs: f64 = v
                .parse()
                .ok()
                .filter(|s: &f64| *s > 0.0 && s.is_finite())
                .ok_or_else(|| {
                    anyhow!("{ENV_TIMEOUT}={v:?}: expected a positive number of seconds")
                })?;
            o.timeout = Duration::from_secs_f64(secs);
        }
        if let Some(v) = env_nonempty(ENV_RETRIES) {
            o.retries = v
                .parse()
                .map_err(|_| anyhow!("{ENV_RETRIES}={v:?}: expected a whole number"))?;
        }
        if let Some(v) = env_nonempty(ENV_BACKOFF_MS) {
            o.backoff = Duration::from_millis(
                v.parse()
                    .map_err(|_| anyhow!("{ENV_BACKOFF_MS}={v:?}: expected milliseconds"))?,
            );
        }
        if let Some(v) = env_nonempty(ENV_MIN_RATE) {
            o.min_rate = v
                .parse()
                .map_err(|_| anyhow!("{ENV_MIN_RATE}={v:?}: expected bytes per second"))?;
        }
        if let Some(v) = env_nonempty(ENV_DEADLINE) {
            let secs: f64 = v
                .parse()
                .ok()
                .filter(|s: &f64| *s >= 0.0 && s.is_finite())
                .ok_or_else(|| anyhow!("{ENV_DEADLINE}={v:?}: expected seconds (0: no limit)"))?;
            o.deadline = (secs > 0.0).then(|| Duration::from_secs_f64(secs));
        }
        Ok(o)
    }
}

/// Why a body read was cut short by [`RateGuard`] (carried inside an
/// `io::Error` so the streaming code can tell it from a network error).
#[derive(Debug)]
enum TooSlow {
    /// Below the minimum rate: try the next mirror.
    Rate(String),
    /// Past the overall deadline: stop.
    Deadline(String),
}

impl std::fmt::Display for TooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TooSlow::Rate(m) | TooSlow::Deadline(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for TooSlow {}

/// Enforces the minimum rate and the deadline on a response body.
struct RateGuard<R> {
    inner: R,
    window: Duration,
    min_bytes: u64,
    min_rate: u64,
    window_start: std::time::Instant,
    window_bytes: u64,
    deadline: Option<std::time::Instant>,
}

impl<R> RateGuard<R> {
    fn new(inner: R, opts: &HttpOptions, deadline: Option<std::time::Instant>) -> Self {
        RateGuard {
            inner,
            window: opts.timeout,
            min_bytes: (opts.min_rate as f64 * opts.timeout.as_secs_f64()) as u64,
            min_rate: opts.min_rate,
            window_start: std::time::Instant::now(),
            window_bytes: 0,
            deadline,
        }
    }

    fn check(&mut self, n: usize) -> std::io::Result<()> {
        let now = std::time::Instant::now();
        if let Some(d) = self.deadline {
            if now >= d {
                return Err(std::io::Error::other(TooSlow::Deadline(format!(
                    "download not finished by the deadline (set {ENV_DEADLINE} to change)"
                ))));
            }
        }
        self.window_bytes += n as u64;
        if self.min_rate > 0 && now.duration_since(self.window_start) >= self.window {
            if self.window_bytes < self.min_bytes {
                return Err(std::io::Error::other(TooSlow::Rate(format!(
                    "too slow: {} bytes in {} (minimum {} bytes/s; set {ENV_MIN_RATE} to change)",
                    self.window_bytes,
                    secs(now.duration_since(self.window_start)),
                    self.min_rate
                ))));
            }
            self.window_start = now;
            self.window_bytes = 0;
        }
        Ok(())
    }
}

impl<R: Read> Read for RateGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.check(n)?;
        Ok(n)
    }
}

/// The [`TooSlow`] inside an io::Error, if that is what it is.
fn too_slow(e: &std::io::Error) -> Option<&TooSlow> {
    e.get_ref().and_then(|i| i.downcast_ref::<TooSlow>())
}

/// When a download that starts now must end.
fn deadline_from_now(opts: &HttpOptions) -> Option<std::time::Instant> {
    opts.deadline.map(|d| std::time::Instant::now() + d)
}

fn env_nonempty(k: &str) -> Option<String> {
    std::env::var(k)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.trim().to_string())
}

/// An HTTP client with the retry policy attached.
#[derive(Clone)]
pub struct Http {
    client: reqwest::blocking::Client,
    pub opts: HttpOptions,
}

/// What one file download needs.
#[derive(Debug, Clone)]
pub struct Want {
    /// Name of the file in the cache (validated).
    pub file_name: String,
    /// Mirrors' URLs for the same file, tried in order.
    pub urls: Vec<String>,
    /// Expected digest from metadata; `None` for direct downloads, which
    /// must then pass the `post_verify` check of [`download`].
    pub checksum: Option<Checksum>,
    /// Expected size from metadata.
    pub size: Option<u64>,
}

/// A file in the cache.
#[derive(Debug, Clone)]
pub struct Got {
    pub path: PathBuf,
    pub checksum: Checksum,
    pub size: u64,
    /// The URL it came from; `None` when it was already cached.
    pub url: Option<String>,
}

/// Why one attempt failed, and what to do next.
enum Failure {
    /// Transient: retry the same mirror after a backoff.
    Retry(String),
    /// This mirror cannot serve the file: try the next one.
    NextMirror(String),
    /// A local problem (disk, cache): stop.
    Fatal(anyhow::Error),
}

impl Http {
    pub fn new(opts: HttpOptions) -> Result<Http> {
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(opts.timeout)
            .timeout(opts.timeout)
            .user_agent(concat!("khotfix/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("creating the HTTP client")?;
        Ok(Http { client, opts })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let d = self.opts.backoff.saturating_mul(1u32 << attempt.min(16));
        d.min(Duration::from_secs(30))
    }

    /// GET a small file (repomd.xml) into memory, with retries and mirror
    /// failover. Returns the URL that answered and the body.
    pub fn get_small(&self, urls: &[String], max_bytes: u64) -> Result<(String, Vec<u8>)> {
        let mut errors = Vec::new();
        let deadline = deadline_from_now(&self.opts);
        for url in urls {
            let mut attempt = 0;
            loop {
                past_deadline(url, deadline)?;
                match self.get_small_once(url, max_bytes, deadline) {
                    Ok(body) => return Ok((url.clone(), body)),
                    Err(Failure::Retry(m)) if attempt < self.opts.retries => {
                        std::thread::sleep(self.backoff(attempt));
                        attempt += 1;
                        let _ = m;
                    }
                    Err(Failure::Retry(m)) | Err(Failure::NextMirror(m)) => {
                        errors.push(m);
                        break;
                    }
                    Err(Failure::Fatal(e)) => return Err(e),
                }
            }
        }
        Err(anyhow!(join_errors(&errors)))
    }

    fn get_small_once(
        &self,
        url: &str,
        max_bytes: u64,
        deadline: Option<std::time::Instant>,
    ) -> Result<Vec<u8>, Failure> {
        let resp = self
            .client
            .get(url)
            .send()
            .map_err(|e| self.request_failure(url, &e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(status_failure(url, status));
        }
        let mut body = Vec::new();
        RateGuard::new(resp, &self.opts, deadline)
            .take(max_bytes + 1)
            .read_to_end(&mut body)
            .map_err(|e| self.read_failure(url, 0, &e))?;
        if body.len() as u64 > max_bytes {
            return Err(Failure::NextMirror(format!(
                "{url}: larger than {max_bytes} bytes"
            )));
        }
        Ok(body)
    }

    fn request_failure(&self, url: &str, e: &reqwest::Error) -> Failure {
        if e.is_timeout() {
            Failure::Retry(format!(
                "{url}: no response within {} (timeout; set {ENV_TIMEOUT} to change)",
                secs(self.opts.timeout)
            ))
        } else if e.is_connect() {
            Failure::Retry(format!("{url}: cannot connect: {}", root_cause(e)))
        } else {
            Failure::Retry(format!("{url}: request failed: {}", root_cause(e)))
        }
    }

    fn read_failure(&self, url: &str, at: u64, e: &std::io::Error) -> Failure {
        match too_slow(e) {
            Some(TooSlow::Rate(m)) => {
                return Failure::NextMirror(format!("{url}: {m} after {at} bytes"))
            }
            Some(TooSlow::Deadline(m)) => {
                return Failure::Fatal(anyhow!(
                    "{url}: {m} ({} after {at} bytes)",
                    self.deadline_text()
                ))
            }
            None => {}
        }
        if is_timeout(e) {
            Failure::Retry(format!(
                "{url}: no data for {} after {at} bytes (timeout; set {ENV_TIMEOUT} to change)",
                secs(self.opts.timeout)
            ))
        } else {
            Failure::Retry(format!(
                "{url}: connection lost after {at} bytes: {}",
                root_cause(e)
            ))
        }
    }
}

impl Http {
    fn deadline_text(&self) -> String {
        match self.opts.deadline {
            Some(d) => format!("deadline {}", secs(d)),
            None => "no deadline".into(),
        }
    }
}

/// Fail (stop, no more mirrors) when the file's deadline has passed.
fn past_deadline(url: &str, deadline: Option<std::time::Instant>) -> Result<()> {
    if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
        anyhow::bail!(
            "{url}: download not finished by the deadline (set {ENV_DEADLINE} to change)"
        );
    }
    Ok(())
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<reqwest::Error>() {
            if r.is_timeout() {
                return true;
            }
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
            // io::Error::source() skips the wrapped error itself.
            if let Some(inner) = io.get_ref() {
                if is_timeout(inner) {
                    return true;
                }
            }
        }
        cur = c.source();
    }
    false
}

fn status_failure(url: &str, status: reqwest::StatusCode) -> Failure {
    let msg = format!("{url}: HTTP {status}");
    if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
        Failure::Retry(msg)
    } else {
        Failure::NextMirror(msg)
    }
}

fn join_errors(errors: &[String]) -> String {
    match errors {
        [] => "no URL to download from".to_string(),
        [one] => one.clone(),
        many => format!("every mirror failed: {}", many.join("; ")),
    }
}

/// Download `want` into the cache (or find it there) and return its path.
///
/// With a checksum, the file enters the cache only if the streamed digest
/// matches. Without one (direct downloads), `post_verify` must accept the
/// assembled file; it is then stored under its sha256.
pub fn download(
    http: &Http,
    cache: &Cache,
    want: &Want,
    progress: &dyn Reporter,
    post_verify: &dyn Fn(&Path) -> Result<()>,
) -> Result<Got> {
    super::cache::check_file_name(&want.file_name)?;
    if let Some(c) = &want.checksum {
        if let Some(path) = cache.lookup(c) {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            return Ok(Got {
                path,
                checksum: c.clone(),
                size,
                url: None,
            });
        }
    }
    let key = match &want.checksum {
        Some(c) => format!("{}-{}", c.algo.name(), c.hex),
        None => format!(
            "direct-{}",
            super::digest::digest(Algo::Sha256, want.urls.join("\n").as_bytes()).hex
        ),
    };
    // One process downloads a given file at a time; others wait and then
    // find it in the cache.
    let lock_path = cache.lock_path(&key);
    let lock =
        File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    fs2::FileExt::lock_exclusive(&lock)
        .with_context(|| format!("locking {}", lock_path.display()))?;
    if let Some(c) = &want.checksum {
        if let Some(path) = cache.lookup(c) {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            return Ok(Got {
                path,
                checksum: c.clone(),
                size,
                url: None,
            });
        }
    }
    let part = cache.partial_path(&key);
    let algo = want
        .checksum
        .as_ref()
        .map(|c| c.algo)
        .unwrap_or(Algo::Sha256);
    let fp = progress.child(&want.file_name, want.size);
    let mut errors = Vec::new();
    let deadline = deadline_from_now(&http.opts);
    let file = PartialFile {
        part: &part,
        algo,
        size: want.size,
        deadline,
    };
    for url in &want.urls {
        let mut attempt = 0u32;
        let mut restarted = false;
        loop {
            if let Err(e) = past_deadline(url, deadline) {
                fp.finish(false, "FAILED");
                return Err(e);
            }
            match attempt_once(http, url, file, fp.as_ref()) {
                Ok((computed, resumed)) => {
                    let size = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
                    let verified = match &want.checksum {
                        Some(expected) if *expected != computed => Err(format!(
                            "checksum mismatch for {url}: expected {expected}, got {computed}"
                        )),
                        Some(_) => Ok(()),
                        None => post_verify(&part).map_err(|e| format!("{url}: {e:#}")),
                    };
                    match verified {
                        Ok(()) => {
                            let path = cache.commit(&part, &computed, &want.file_name)?;
                            fp.finish(true, "ok");
                            return Ok(Got {
                                path,
                                checksum: computed,
                                size,
                                url: Some(url.clone()),
                            });
                        }
                        Err(msg) => {
                            // Never keep bytes that failed verification.
                            let _ = std::fs::remove_file(&part);
                            if resumed && !restarted {
                                // The kept part may be what was wrong: one clean restart.
                                restarted = true;
                                fp.note("verification failed after a resume; downloading again from the start");
                                continue;
                            }
                            errors.push(msg);
                            break;
                        }
                    }
                }
                Err(Failure::Retry(msg)) if attempt < http.opts.retries => {
                    let wait = http.backoff(attempt);
                    fp.note(&format!("{msg}; retrying in {}", secs(wait)));
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                Err(Failure::Retry(msg)) | Err(Failure::NextMirror(msg)) => {
                    errors.push(msg);
                    break;
                }
                Err(Failure::Fatal(e)) => {
                    fp.finish(false, "FAILED");
                    return Err(e);
                }
            }
        }
    }
    fp.finish(false, "FAILED");
    Err(anyhow!(join_errors(&errors)))
}

/// What every attempt at one file shares, whichever mirror it asks.
#[derive(Clone, Copy)]
struct PartialFile<'a> {
    /// The partial download, resumed across attempts.
    part: &'a Path,
    algo: Algo,
    /// Expected size, when the index says.
    size: Option<u64>,
    deadline: Option<std::time::Instant>,
}

/// One GET of `url` into `part`, resuming what `part` already holds.
/// Returns the digest of the whole file and whether it was a resume.
fn attempt_once(
    http: &Http,
    url: &str,
    file: PartialFile,
    fp: &dyn Reporter,
) -> Result<(Checksum, bool), Failure> {
    let PartialFile {
        part,
        algo,
        size,
        deadline,
    } = file;
    let fatal =
        |e: std::io::Error, what: &str| Failure::Fatal(anyhow!("{what} {}: {e}", part.display()));
    let mut have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if size.is_some_and(|s| have > s) {
        have = 0;
    }
    if have > 0 && size == Some(have) {
        // A complete part left by an interrupted run: verify it without a request.
        let mut hasher = algo.hasher();
        let mut f = File::open(part).map_err(|e| fatal(e, "opening"))?;
        hash_existing(&mut f, &mut hasher, have).map_err(|e| fatal(e, "reading"))?;
        return Ok((hasher.finish(), true));
    }
    let mut req = http.client.get(url);
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let resp = req.send().map_err(|e| http.request_failure(url, &e))?;
    let status = resp.status();
    let mut hasher = algo.hasher();
    let (mut file, start, resumed) = match status.as_u16() {
        206 if have > 0 => {
            let range = resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !range.starts_with(&format!("bytes {have}-")) {
                // Not the range asked for: start over.
                let _ = std::fs::remove_file(part);
                return Err(Failure::Retry(format!(
                    "{url}: unexpected Content-Range {range:?}; restarting"
                )));
            }
            // Continue the digest over the bytes already on disk, then append.
            let mut f = OpenOptions::new()
                .read(true)
                .append(true)
                .open(part)
                .map_err(|e| fatal(e, "opening"))?;
            hash_existing(&mut f, &mut hasher, have).map_err(|e| fatal(e, "reading"))?;
            fp.note(&format!("resuming at {have} bytes"));
            (f, have, true)
        }
        200 => {
            if have > 0 {
                fp.note("server ignored the Range request; downloading from the start");
            }
            let f = File::create(part).map_err(|e| fatal(e, "creating"))?;
            (f, 0, false)
        }
        416 => {
            let _ = std::fs::remove_file(part);
            return Err(Failure::Retry(format!(
                "{url}: HTTP 416 for the kept partial download; restarting"
            )));
        }
        _ if status.is_success() => {
            return Err(Failure::NextMirror(format!(
                "{url}: unexpected HTTP {status}"
            )))
        }
        _ => return Err(status_failure(url, status)),
    };
    if let (Some(want), Some(len)) = (size, resp.content_length()) {
        if start + len != want {
            let _ = std::fs::remove_file(part);
            return Err(Failure::NextMirror(format!(
                "{url}: server announces {} bytes, the metadata says {want}",
                start + len
            )));
        }
    }
    let length = size.or_else(|| resp.content_length().map(|len| start + len));
    fp.progress(start, length);
    let body = RateGuard::new(resp, &http.opts, deadline);
    let (hasher, total, err) = stream(body, &mut file, hasher, start, fp);
    let hasher = match hasher {
        Some(h) => h,
        None => return Err(Failure::Fatal(anyhow!("the hashing thread failed"))),
    };
    match err {
        Some(StreamError::Write(e)) => return Err(fatal(e, "writing")),
        Some(StreamError::Read(e)) => {
            let _ = file.sync_data();
            return Err(http.read_failure(url, total, &e));
        }
        None => {}
    }
    if let Some(s) = size {
        if total > s {
            let _ = std::fs::remove_file(part);
            return Err(Failure::NextMirror(format!(
                "{url}: sent {total} bytes, the metadata says {s}"
            )));
        }
        if total < s {
            return Err(Failure::Retry(format!(
                "{url}: body ended after {total} of {s} bytes"
            )));
        }
    }
    file.flush().map_err(|e| fatal(e, "writing"))?;
    Ok((hasher.finish(), resumed))
}

fn hash_existing(f: &mut File, hasher: &mut Hasher, len: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(0))?;
    let mut r = (&mut *f).take(len);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(())
}

enum StreamError {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Copy `body` to `file` while a second thread hashes the same chunks.
/// Returns the hasher, the file's total length and the first error.
fn stream(
    mut body: impl Read,
    file: &mut File,
    hasher: Hasher,
    start: u64,
    fp: &dyn Reporter,
) -> (Option<Hasher>, u64, Option<StreamError>) {
    let (tx, rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(8);
    let (back_tx, back_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        let worker = s.spawn(move || {
            let mut hasher = hasher;
            for (buf, n) in rx {
                hasher.update(&buf[..n]);
                let _ = back_tx.send(buf);
            }
            hasher
        });
        let mut total = start;
        let mut err = None;
        loop {
            let mut buf = back_rx.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
            // Fill most of the chunk so the channel carries few, large messages.
            let mut n = 0;
            let mut eof = false;
            while n < CHUNK / 2 {
                match body.read(&mut buf[n..]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        err = Some(StreamError::Read(e));
                        break;
                    }
                }
            }
            if n > 0 {
                if let Err(e) = file.write_all(&buf[..n]) {
                    err = Some(StreamError::Write(e));
                    break;
                }
                total += n as u64;
                fp.progress(total, None);
                if tx.send((buf, n)).is_err() {
                    break;
                }
            }
            if eof || err.is_some() {
                break;
            }
        }
        drop(tx);
        let hasher = worker.join().ok();
        (hasher, total, err)
    })
}
