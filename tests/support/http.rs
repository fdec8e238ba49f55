//! Loopback HTTP servers, two kinds on purpose:
//! * [`Server`]: a small threaded HTTP/1.1 file server on 127.0.0.1 with
//!   fault injection, for the fetch tests. It is a real server over real
//!   sockets: the client under test cannot tell it from a mirror, except
//!   when a fault says so.
//! * [`Http`]: python3's `http.server`, a server khotfix did not write, for
//!   the tests where dnf reads a published repository: what a plain static
//!   web server serves is what dnf must accept.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What to do wrong for matching requests.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 404 Not Found.
    NotFound,
    /// This status with an empty body.
    Status(u16),
    /// Announce the full length, send only this many body bytes, close.
    DropAfter(usize),
    /// Flip one byte in the middle of the body.
    Corrupt,
    /// Answer 200 with the whole file even when a Range is asked for.
    IgnoreRange,
    /// Send the body in `chunk`-byte pieces with `delay_ms` between them.
    Slow { chunk: usize, delay_ms: u64 },
    /// Send the headers, then nothing for `ms` milliseconds, then close.
    Stall { ms: u64 },
}

struct Rule {
    path_contains: String,
    fault: Fault,
    /// How many more requests this applies to; `None`: all.
    remaining: Option<usize>,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
}

pub struct Server {
    pub addr: std::net::SocketAddr,
    pub root: PathBuf,
    rules: Arc<Mutex<Vec<Rule>>>,
    log: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Server {
    /// Serve `root` on an ephemeral port.
    pub fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let log: Arc<Mutex<Vec<Request>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, l, s, root2) = (rules.clone(), log.clone(), stop.clone(), root.to_path_buf());
        let handle = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (r, l, root) = (r.clone(), l.clone(), root2.clone());
                std::thread::spawn(move || {
                    let _ = handle(conn, &root, &r, &l);
                });
            }
        });
        Server {
            addr,
            root: root.to_path_buf(),
            rules,
            log,
            stop,
            handle: Some(handle),
        }
    }

    /// `http://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Apply `fault` to requests whose path contains `path_contains`, for the
    /// next `times` of them (`None`: until cleared).
    pub fn fault(&self, path_contains: &str, fault: Fault, times: Option<usize>) {
        self.rules.lock().unwrap().push(Rule {
            path_contains: path_contains.to_string(),
            fault,
            remaining: times,
        });
    }

    pub fn clear_faults(&self) {
        self.rules.lock().unwrap().clear();
    }

    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }

    /// Requests whose path contains `s`.
    pub fn requests_for(&self, s: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.contains(s))
            .collect()
    }

    pub fn clear_log(&self) {
        self.log.lock().unwrap().clear();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn take_fault(rules: &Mutex<Vec<Rule>>, path: &str) -> Option<Fault> {
    let mut rules = rules.lock().unwrap();
    let i = rules
        .iter()
        .position(|r| path.contains(&r.path_contains) && r.remaining != Some(0))?;
    if let Some(n) = rules[i].remaining.as_mut() {
        *n -= 1;
    }
    Some(rules[i].fault.clone())
}

fn handle(
    conn: TcpStream,
    root: &Path,
    rules: &Mutex<Vec<Rule>>,
    log: &Mutex<Vec<Request>>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("/").to_string(),
    );
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    let path = target.split('?').next().unwrap_or("/").to_string();
    let fault = take_fault(rules, &path);
    let record = |status: u16| {
        log.lock().unwrap().push(Request {
            path: path.clone(),
            range: range.clone(),
            status,
        })
    };

    let respond = |out: &mut TcpStream, status: u16, extra: &str, len: usize| {
        let reason = match status {
            200 => "OK",
            206 => "Partial Content",
            404 => "Not Found",
            416 => "Range Not Satisfiable",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Status",
        };
        write!(out, "HTTP/1.1 {status} {reason}\r\nContent-Length: {len}\r\nConnection: close\r\n{extra}\r\n")
    };
    if method != "GET" {
        record(405);
        return respond(&mut out, 405, "", 0);
    }
    let rel = path.trim_start_matches('/');
    let safe = Path::new(rel)
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    let file = root.join(rel);
    let body = match (safe, std::fs::read(&file)) {
        (true, Ok(b)) if file.is_file() => b,
        _ => {
            record(404);
            return respond(&mut out, 404, "", 0);
        }
    };
    match fault {
        Some(Fault::NotFound) => {
            record(404);
            return respond(&mut out, 404, "", 0);
        }
        Some(Fault::Status(s)) => {
            record(s);
            return respond(&mut out, s, "", 0);
        }
        _ => {}
    }
    let mut body = body;
    if matches!(fault, Some(Fault::Corrupt)) && !body.is_empty() {
        let mid = body.len() / 2;
        body[mid] ^= 0xff;
    }
    let total = body.len();
    let mut start = 0usize;
    let mut status = 200;
    let mut extra = String::new();
    if let (Some(r), false) = (&range, matches!(fault, Some(Fault::IgnoreRange))) {
        if let Some(n) = r
            .strip_prefix("bytes=")
            .and_then(|s| s.strip_suffix('-'))
            .and_then(|s| s.parse::<usize>().ok())
        {
            if n >= total {
                record(416);
                return respond(
                    &mut out,
                    416,
                    &format!("Content-Range: bytes */{total}\r\n"),
                    0,
                );
            }
            start = n;
            status = 206;
            extra = format!("Content-Range: bytes {n}-{}/{total}\r\n", total - 1);
        }
    }
    record(status);
    let slice = &body[start..];
    respond(&mut out, status, &extra, slice.len())?;
    match fault {
        Some(Fault::DropAfter(n)) => {
            out.write_all(&slice[..n.min(slice.len())])?;
            out.flush()?;
            let _ = out.shutdown(std::net::Shutdown::Both);
        }
        Some(Fault::Slow { chunk, delay_ms }) => {
            for c in slice.chunks(chunk.max(1)) {
                out.write_all(c)?;
                out.flush()?;
                std::thread::sleep(Duration::from_millis(delay_ms));
            }
        }
        Some(Fault::Stall { ms }) => {
            out.flush()?;
            std::thread::sleep(Duration::from_millis(ms));
        }
        _ => out.write_all(slice)?,
    }
    // Drain nothing more: Connection: close.
    let _ = reader.read(&mut [0u8; 0]);
    Ok(())
}

/// python3 -m http.server on 127.0.0.1, an ephemeral port, killed on drop.
pub struct Http {
    child: Child,
    pub port: u16,
}

impl Http {
    /// Serve `dir`; returns once the server has said which port it took.
    pub fn serve(dir: &Path) -> Http {
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("cannot parse http.server banner {line:?}"));
        Http { child, port }
    }

    /// `http://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The URL of `path` (relative to the served directory).
    pub fn url_to(&self, path: &str) -> String {
        format!("{}{path}", self.url())
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
