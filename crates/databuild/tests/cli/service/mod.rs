//! `databuild serve`: the real server on a loopback port, called over gRPC (tonic
//! clients), HTTP (a raw HTTP/1.1 client and Server-Sent Events), by the CLI with
//! `--remote`, and by a Python client generated from the project's proto; remote jobs and
//! lookup over gRPC.

mod backfills;
mod faults;
mod grpc;
mod hostile;
mod http;
mod jobs;
mod python;
mod remote;
mod security;
mod tls;
mod wants;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    process::{Child, Stdio},
    time::Duration,
};

use crate::util::{example_graph, wait_for, TestGraph};

/// A `databuild serve` process on a free loopback port.
pub struct Service {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    stderr: std::path::PathBuf,
}

impl Service {
    /// Starts `databuild serve --addr 127.0.0.1:0 <extra>` in the graph's directory and
    /// waits until it answers.
    pub fn start(g: &TestGraph, extra: &[&str]) -> Service {
        let stderr = g.path().join(format!("serve-{}.err", std::process::id()));
        let mut args = vec!["serve", "--addr", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = g
            .command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn databuild serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().to_string();
        assert!(
            url.starts_with("http://127.0.0.1:") || url.starts_with("https://127.0.0.1:"),
            "first line of serve's stdout: {url:?}; stderr: {}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        );
        let tls = url.starts_with("https://");
        let addr = url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_string();
        let s = Service {
            child: Some(child),
            url,
            addr,
            stderr,
        };
        wait_for("the service to answer", Duration::from_secs(10), || {
            if tls {
                // Plain HTTP gets no answer from a TLS port: a connection is enough.
                return TcpStream::connect(&s.addr).is_ok();
            }
            s.try_request("GET", "/api/v1/health", "")
                .is_ok_and(|r| r.0 == 200)
        });
        s
    }

    /// The service's stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait(&mut self) -> i32 {
        let mut child = self.child.take().unwrap();
        child.wait().unwrap().code().unwrap_or(-1)
    }

    /// Sends `sig` and waits for the process to exit; returns its exit code.
    pub fn signal_and_wait(&mut self, sig: &str) -> i32 {
        let mut child = self.child.take().unwrap();
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        child.wait().unwrap().code().unwrap_or(-1)
    }

    /// One HTTP/1.1 request; (status, body). Panics if the service cannot be reached.
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.try_request(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// One HTTP/1.1 request over a fresh connection.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> std::io::Result<(u16, String)> {
        raw_request(&self.addr, method, path, body)
    }

    /// GET `path` as JSON (asserting 200).
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.request("GET", path, "");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// POST `body` to `path` as JSON (asserting 200).
    pub fn post_json(&self, path: &str, body: &str) -> serde_json::Value {
        let (status, resp) = self.request("POST", path, body);
        assert_eq!(status, 200, "POST {path} {body}: {resp}");
        serde_json::from_str(&resp).unwrap()
    }

    /// Starts a build of `r` (`POST /api/v1/builds`, asserting 202); its graph run id.
    pub fn submit(&self, r: &str) -> String {
        let body = format!(r#"{{"outputs":[{{"str":"{r}"}}]}}"#);
        let (status, resp) = self.request("POST", "/api/v1/builds", &body);
        assert_eq!(status, 202, "POST /api/v1/builds {body}: {resp}");
        let submitted: serde_json::Value = serde_json::from_str(&resp).unwrap();
        submitted["jobGraphRunId"].as_str().unwrap().to_string()
    }

    /// A gRPC channel to the service.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .expect("connect to the service over gRPC")
    }

    /// A metric's value from `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.request("GET", "/metrics", "");
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no metric {name} in {text}"))
            .parse()
            .unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One HTTP/1.1 request to `addr` over a fresh connection with a JSON body (chunked
/// bodies decoded).
pub fn raw_request(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    raw_request_as(addr, method, path, "application/json", body)
}

/// [`raw_request`] with a body of another content type.
pub fn raw_request_as(
    addr: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    raw_request_with(
        addr,
        method,
        path,
        &[("Host", addr), ("Content-Type", content_type)],
        body,
    )
}

/// One HTTP/1.1 request with exactly these headers (and `Content-Length`); (status, body).
pub fn raw_request_with(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let (status, _, body) = raw_exchange(addr, method, path, headers, body)?;
    Ok((status, body))
}

/// [`raw_request_with`], also returning the response's head.
pub fn raw_exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((status, head.to_string(), body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The example graph with its external partition registered.
pub fn example() -> TestGraph {
    let g = example_graph();
    let out = g.run(&["partitions", "register", "catalog/podcasts"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    g
}

/// A runtime for the async clients of a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
